internal import Glibc
internal import CRelayLinux

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

/// CPU affinity for tests that need a thread on a given CPU (to force a migration
/// between two steps of a write, for example).
public enum CPUAffinity {
    /// The number of CPUs the host has online.
    public static var onlineCount: Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// Moves the calling thread to `cpu` (it runs there when this returns), or lets it
    /// run anywhere again with `nil`.
    public static func pin(to cpu: Int?) {
        let result = CRelayLinux_pin_current_thread(Int32(cpu ?? -1))
        precondition(result == 0, "sched_setaffinity(\(cpu.map(String.init) ?? "all")) failed: errno \(-result)")
    }

    /// The CPU the calling thread runs on.
    public static var current: Int { Int(CRelayLinux_sched_getcpu()) }
}
