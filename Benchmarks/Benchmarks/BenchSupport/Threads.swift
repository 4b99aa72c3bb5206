import Glibc

/// Runs `body(thread, count)` on `threads` OS threads (pthreads, not tasks: producers of a
/// log shipper are ordinary threads), splitting `total` iterations between them, and waits
/// for all of them. With one thread, `body` runs on the caller's thread.
public func onThreads(_ threads: Int, total: Int, _ body: @escaping @Sendable (Int, Int) -> Void) {
    if threads == 1 {
        body(0, total)
        return
    }
    final class Box: @unchecked Sendable {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }
    var handles: [pthread_t] = []
    for t in 0..<threads {
        let share = total / threads + (t < total % threads ? 1 : 0)
        let box = Unmanaged.passRetained(Box { body(t, share) }).toOpaque()
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
