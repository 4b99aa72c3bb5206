import Glibc
import Relay
import Synchronization

/// The resolver threads of a shipper's socket sinks (host name look-ups, see
/// `SocketSink.startLookUp`), so that none outlives the shipper unaccounted for.
///
/// A resolver thread is joinable. It posts its result through ``finish(_:post:)``, which
/// runs the post only while the shipper still takes results. The ring thread joins
/// finished threads as their results arrive (``joinFinished()``), and at shutdown
/// (``reap(timeout:)``) waits a bounded time for the rest and joins them. getaddrinfo cannot
/// be interrupted safely, so a look-up still running at that deadline is *abandoned*: its
/// thread is detached, and when getaddrinfo returns it posts nothing and touches no shipper
/// state (it only drops its own references), then exits.
final class ResolverThreads: Sendable {
    private struct State {
        /// Started threads by look-up id; an id may finish before its thread is recorded.
        var threads: [UInt64: pthread_t] = [:]
        var finished: Set<UInt64> = []
        /// Set at shutdown once the deadline passed: later results are dropped.
        var abandoned = false
        var nextID: UInt64 = 0
    }

    /// What ``reap(timeout:)`` did.
    struct ReapResult: Equatable {
        /// Threads that finished (in time) and were joined.
        var joined: Int
        /// Threads still in their look-up at the deadline: detached, their result dropped.
        var abandoned: Int
    }

    private let state = RelayMutex(State())

    /// How long shutdown waits for running look-ups (default 2 s, as for the final
    /// completions). Tests shorten it. Relaxed everywhere: a setting read on its own, which
    /// publishes nothing.
    let joinTimeoutNanoseconds = Atomic<UInt64>(2_000_000_000)

    /// Started and not yet joined or abandoned.
    var outstanding: Int { self.state.withLock { $0.threads.count } }

    /// Threads joined so far, and threads abandoned at shutdown (for tests and the stop log).
    private let counters = RelayMutex<ReapResult>(ReapResult(joined: 0, abandoned: 0))
    var totals: ReapResult { self.counters.withLock { $0 } }

    /// Starts `body` on a joinable thread named `name`; `body` gets the look-up id to pass to
    /// ``finish(_:post:)``. Returns pthread_create's error (0 on success).
    func spawn(name: String, _ body: @escaping @Sendable (UInt64) -> Void) -> Int32 {
        let id = self.state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        var thread = pthread_t()
        let rc = ShipperThread.trySpawnJoinable(name: name, thread: &thread) { body(id) }
        if rc == 0 { self.state.withLock { $0.threads[id] = thread } }
        return rc
    }

    /// Called by the resolver thread when its look-up returned: runs `post` (which sends the
    /// result to the ring thread) unless the shipper abandoned it, and marks it finished.
    /// Under the lock, so shutdown never sees a post start after it abandoned the rest.
    func finish(_ id: UInt64, post: () -> Void) {
        self.state.withLock { state in
            if !state.abandoned { post() }
            state.finished.insert(id)
        }
    }

    /// Joins the threads that finished (they are past their post: the join waits only for
    /// their return). Ring thread only.
    func joinFinished() {
        let done = self.state.withLock { state -> [pthread_t] in
            var done: [pthread_t] = []
            for id in state.finished {
                if let thread = state.threads.removeValue(forKey: id) {
                    done.append(thread)
                    state.finished.remove(id)
                }
            }
            return done
        }
        for thread in done { pthread_join(thread, nil) }
        if !done.isEmpty { self.counters.withLock { $0.joined += done.count } }
    }

    /// At shutdown: waits up to ``joinTimeoutNanoseconds`` for every running look-up and
    /// joins its thread; the ones still running then are detached and their results dropped.
    /// Returns what happened in this call. Ring thread only; no thread is started after it.
    @discardableResult
    func reap() -> ReapResult {
        let deadline = Clock.now.saturatingAdding(self.joinTimeoutNanoseconds.load(ordering: .relaxed))
        let joinedBefore = self.totals.joined
        var abandoned = 0
        while true {
            self.joinFinished()
            if self.outstanding == 0 { break }
            if Clock.now >= deadline {
                let left = self.state.withLock { state -> [pthread_t] in
                    state.abandoned = true
                    // Finished ones (past their post) are joined below; the rest are left to
                    // exit on their own.
                    var left: [pthread_t] = []
                    for (id, thread) in state.threads where !state.finished.contains(id) {
                        left.append(thread)
                        state.threads.removeValue(forKey: id)
                    }
                    return left
                }
                for thread in left { pthread_detach(thread) }
                abandoned = left.count
                self.counters.withLock { $0.abandoned += left.count }
                self.joinFinished()
                break
            }
            usleep(1000)
        }
        return ReapResult(joined: self.totals.joined - joinedBefore, abandoned: abandoned)
    }
}
