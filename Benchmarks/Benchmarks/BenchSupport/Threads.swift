import CBenchSupport
import Glibc

/// Runs `body(thread, count)` on `threads` OS threads (pthreads, not tasks: producers of a
/// log shipper are ordinary threads), splitting `total` iterations between them, and waits
/// for all of them.
///
/// By default a single thread's `body` runs on the caller's thread and several threads float
/// wherever the scheduler puts them, as an application's producers do. With `pinned`, every
/// `body` (also a single one) runs on a new thread pinned to CPU `thread` (modulo the usable
/// CPUs): 1-thread and 2-thread runs then differ only in the number of threads, not in which
/// CPU or kind of thread (main or new) runs them, which is what a scaling ratio must compare.
public func onThreads(
    _ threads: Int, total: Int, pinned: Bool = false, _ body: @escaping @Sendable (Int, Int) -> Void
) {
    if threads == 1 && !pinned {
        body(0, total)
        return
    }
    final class Box: @unchecked Sendable {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }
    let cpus = max(1, Int(CBenchSupport_usable_cpus()))
    var handles: [pthread_t] = []
    for t in 0..<threads {
        let share = total / threads + (t < total % threads ? 1 : 0)
        let box = Unmanaged.passRetained(
            Box {
                if pinned {
                    let rc = CBenchSupport_pin_to_cpu(Int32(t % cpus))
                    precondition(rc == 0, "sched_setaffinity(CPU \(t % cpus)) failed: errno \(rc)")
                }
                body(t, share)
            }
        ).toOpaque()
        var handle = pthread_t()
        pthread_create(
            &handle, nil,
            { raw in
                Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().run()
                return nil
            }, box)
        handles.append(handle)
    }
    for handle in handles { pthread_join(handle, nil) }
}
