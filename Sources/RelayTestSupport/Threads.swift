internal import Glibc

/// Runs closures on real OS threads (pthreads), so tests exercise migration and
/// preemption the way production writers do, and waits for all of them.
public enum TestThreads {
    private final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// A started thread.
    public struct Handle: @unchecked Sendable {
        let thread: pthread_t
    }

    /// Starts `count` threads running `body(index)` and joins them.
    public static func run(count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        var threads: [Handle] = []
        threads.reserveCapacity(count)
        for index in 0..<count {
            threads.append(self.spawn { body(index) })
        }
        for thread in threads {
            self.join(thread)
        }
    }

    /// Starts one thread; join it with ``join(_:)``.
    public static func spawn(_ body: @escaping @Sendable () -> Void) -> Handle {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        precondition(result == 0, "pthread_create failed: \(result)")
        return Handle(thread: thread)
    }

    /// Waits for a thread started with ``spawn(_:)``.
    public static func join(_ handle: Handle) {
        pthread_join(handle.thread, nil)
    }
}
