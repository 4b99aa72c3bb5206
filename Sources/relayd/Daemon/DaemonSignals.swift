import CRelayLinux

#if canImport(Glibc)
import Glibc
#endif

/// relayd's signal handling: SIGTERM, SIGINT and SIGHUP are blocked in every thread and taken by one thread with
/// `sigwait(2)`, so they arrive as ordinary events (no async-signal-safety constraints) and never interrupt the
/// ring threads.
enum DaemonSignals {
    /// The signals relayd handles.
    static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP]

    /// Blocks the handled signals in the calling thread (and so in every thread it creates later) and ignores
    /// SIGPIPE. Call first thing in `main`, before any other thread exists.
    static func blockInProcess() {
        var set = Self.signalSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// Unblocks the handled signals in the calling thread (for commands that do not run the daemon).
    static func unblockInThisThread() {
        var set = Self.signalSet()
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// Starts the thread that waits for the handled signals and calls `handler` for each, in order.
    static func startWaiter(_ handler: @escaping @Sendable (Int32) -> Void) {
        DaemonThread.spawn(name: "relayd-signals") {
            var set = Self.signalSet()
            while true {
                var signal: Int32 = 0
                if sigwait(&set, &signal) == 0 {
                    handler(signal)
                }
            }
        }
    }

    /// `SIGTERM`, `SIGINT`, `SIGHUP` by name.
    static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGHUP: return "SIGHUP"
        default: return "signal \(signal)"
        }
    }

    private static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in Self.handled { sigaddset(&set, signal) }
        return set
    }
}

/// Starts detached OS threads for relayd's ring and signal loops (which must not run on Swift's cooperative pool).
enum DaemonThread {
    private final class Box {
        let name: String
        let body: () -> Void

        init(name: String, body: @escaping () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Runs `body` on a new detached thread named `name` (at most 15 bytes are kept).
    static func spawn(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(
            &thread,
            nil,
            { raw in
                let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
                CRelayLinux_set_thread_name(String(box.name.utf8.prefix(15))!)
                box.body()
                return nil
            },
            box
        )
        precondition(status == 0, "pthread_create failed: \(status)")
        pthread_detach(thread)
    }
}
