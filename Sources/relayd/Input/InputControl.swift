import CRelayLinux
import Relay
import SystemPackage
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A one-shot event that threads signal and Swift tasks await.
final class OneShotEvent: Sendable {
    private struct State {
        var signalled = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = RelayMutex(State())

    /// Creates an unsignalled event.
    init() {}

    /// Whether ``signal()`` was called.
    var isSignalled: Bool { self.state.withLock { $0.signalled } }

    /// Signals the event and resumes every waiter. Idempotent.
    func signal() {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.signalled else { return [] }
            state.signalled = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Suspends until the event is signalled.
    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = self.state.withLock { state -> Bool in
                if state.signalled { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }
}

/// The thread-safe handle to the input ring: stop requests in, life-cycle events out.
final class InputControl: Sendable {
    /// An `eventfd` the ring keeps a read on; writing to it wakes the ring.
    let eventFD: Int32
    private let stopDeadline = RelayMutex<ContinuousClock.Instant?>(nil)
    /// Signalled when the ring thread has drained its inputs and exited.
    let finished = OneShotEvent()
    /// Set when the ring stopped because every input ended by itself (stdin reached EOF), not on request.
    /// Stored releasing by the ring thread before it begins the stop, loaded acquiring by the service that
    /// reports how the daemon ended: that reader sees the ring's state as of the store.
    let endedByItself = Atomic<Bool>(false)
    /// Set once the ring runs (all inputs armed). Stored releasing by the ring thread after arming, loaded
    /// acquiring by the health endpoint: a healthy answer means every listener was armed before it.
    let running = Atomic<Bool>(false)

    /// Creates the control block.
    ///
    /// - Throws: ``StartupError`` when no `eventfd` can be created.
    init() throws(StartupError) {
        let fd = CRelayLinux_eventfd()
        guard fd >= 0 else {
            throw StartupError(keyPath: "", message: "cannot create an eventfd: \(Errno(rawValue: -fd))")
        }
        // Blocking reads: the ring's read on it must wait for a write, not fail with EAGAIN.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        self.eventFD = fd
    }

    deinit {
        _ = close(self.eventFD)
    }

    /// Asks the ring to stop accepting input, drain what the kernel already accepted (until `deadline`), and exit.
    func requestStop(deadline: ContinuousClock.Instant) {
        self.stopDeadline.withLock { current in
            if current == nil || deadline < current! { current = deadline }
        }
        var one: UInt64 = 1
        _ = write(self.eventFD, &one, 8)
    }

    /// The requested stop deadline, if a stop was requested.
    var requestedStop: ContinuousClock.Instant? {
        self.stopDeadline.withLock { $0 }
    }
}
