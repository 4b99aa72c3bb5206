import CRelayLinux
import Glibc

/// A joinable OS thread for benchmark producers and receivers.
///
/// Foundation's `Thread` cannot be joined and Swift tasks share a cooperative pool, so benchmark
/// workers are plain pthreads: start with ``init(name:body:)``, wait with ``join()``.
final class BenchThread: @unchecked Sendable {
    // @unchecked: `handle` is written once in init before the object is shared and read once in join.
    private var handle: pthread_t
    private var joined = false

    private final class Box {
        let name: String
        let body: @Sendable () -> Void
        init(_ name: String, _ body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts a thread that runs `body`.
    ///
    /// - Parameters:
    ///   - name: A short thread name, used in error messages and given to the thread (its
    ///     first 15 bytes, the kernel's limit), so `perf`, `top -H` and traces show it.
    ///   - body: The work to run.
    /// - Throws: ``BenchError`` when the thread cannot be created.
    init(name: String, body: @escaping @Sendable () -> Void) throws(BenchError) {
        // The kernel keeps 15 bytes of a thread name (a longer one fails with ERANGE).
        let box = Unmanaged.passRetained(Box(String(name.utf8.prefix(15))!, body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { argument in
            let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
            CRelayLinux_set_thread_name(box.name)
            box.body()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            throw BenchError.system("cannot start thread '\(name)'", errno: rc, fix: "lower --producers or raise the thread limit (ulimit -u)")
        }
        self.handle = thread
    }

    /// Waits for the thread to finish. Calling it twice is harmless.
    func join() {
        guard !self.joined else { return }
        self.joined = true
        _ = pthread_join(self.handle, nil)
    }

    deinit {
        if !self.joined {
            _ = pthread_detach(self.handle)
        }
    }

    /// Runs `count` threads, each calling `body(index)`, and waits for all of them.
    ///
    /// - Parameters:
    ///   - count: The number of threads.
    ///   - name: The thread name prefix; the index is appended.
    ///   - body: The per-thread work.
    /// - Throws: ``BenchError`` when a thread cannot be started (already started threads are joined first).
    static func runAll(count: Int, name: String, _ body: @escaping @Sendable (Int) -> Void) throws(BenchError) {
        var threads: [BenchThread] = []
        threads.reserveCapacity(count)
        var failure: BenchError?
        for index in 0..<count {
            do {
                threads.append(try BenchThread(name: "\(name)\(index)") { body(index) })
            } catch {
                failure = error
                break
            }
        }
        for thread in threads { thread.join() }
        if let failure { throw failure }
    }
}
