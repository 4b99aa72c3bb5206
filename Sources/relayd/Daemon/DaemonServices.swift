import Logging
import Relay
import RelayShipper
import ServiceLifecycle
import Synchronization

/// When the graceful shutdown started, so every stage shares one `drain_timeout` budget.
final class ShutdownClock: Sendable {
    /// The configured budget.
    let drainTimeout: Duration
    private let started = RelayMutex<ContinuousClock.Instant?>(nil)

    /// Creates the clock.
    init(drainTimeout: Duration) {
        self.drainTimeout = drainTimeout
    }

    /// Starts the budget (the first call wins) and returns its deadline.
    @discardableResult
    func begin() -> ContinuousClock.Instant {
        self.started.withLock { started in
            if started == nil { started = .now }
            return started! + self.drainTimeout
        }
    }

    /// What is left of the budget (all of it before ``begin()``).
    var remaining: Duration {
        let deadline = self.begin()
        let now = ContinuousClock.now
        return deadline > now ? deadline - now : .zero
    }
}

/// The inputs: on graceful shutdown, stops accepting input, drains what the kernel already accepted, then closes
/// the output channels (which seals their partly filled sub-buffers for the shipper). Also returns by itself when
/// every input ended (stdin at EOF), which shuts the group down gracefully.
struct InputService: Service, CustomStringConvertible {
    let control: InputControl
    let outputs: [OutputPipeline]
    let clock: ShutdownClock
    let logger: Logger

    var description: String { "inputs" }

    func run() async throws {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await self.control.finished.wait()
            } onGracefulShutdown: {
                self.control.requestStop(deadline: self.clock.begin())
            }
        } onCancel: {
            self.control.requestStop(deadline: .now)
        }
        // acquiring: pairs with the ring thread's releasing store (see `InputControl.endedByItself`).
        if self.control.endedByItself.load(ordering: .acquiring) {
            self.clock.begin()
            self.logger.info("every input ended; draining and stopping")
        }
        for output in self.outputs {
            output.channel.close()
        }
    }
}

/// The io_uring shipper: on graceful shutdown (after the inputs closed the channels) ships everything that is
/// left within what remains of `drain_timeout`.
struct ShipperService: Service, CustomStringConvertible {
    let shipper: RelayShipper
    let clock: ShutdownClock

    var description: String { "shipper" }

    func run() async throws {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await self.shipper.waitUntilExited()
            } onGracefulShutdown: {
                self.shipper.requestStop(timeout: self.clock.remaining)
            }
        } onCancel: {
            self.shipper.requestStop(timeout: .zero)
        }
    }
}

/// Accounting and metrics: reconciles output counters every 50 ms while running, serves `/metrics` (the server
/// thread is started before the group runs), and after the other services stopped does the final reconciliation
/// and logs the totals.
struct AccountingService: Service, CustomStringConvertible {
    let reconciler: Reconciler
    let server: MetricsHTTPServer?
    let logger: Logger

    var description: String { "accounting" }

    func run() async throws {
        let reconciler = self.reconciler
        let ticker = Task {
            while !Task.isCancelled {
                reconciler.tick()
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        try? await gracefulShutdown()
        ticker.cancel()
        await ticker.value
        let summary = self.reconciler.finish()
        self.server?.stop()
        var metadata: Logger.Metadata = [
            "received": "\(summary.received)",
            "written": "\(summary.written)",
            "dropped": "\(summary.dropped)",
        ]
        if summary.droppedAtShutdown > 0 {
            metadata["dropped_at_shutdown"] = "\(summary.droppedAtShutdown)"
            self.logger.warning("relayd stopped; records still in flight at the drain deadline were dropped", metadata: metadata)
        } else {
            self.logger.notice("relayd stopped", metadata: metadata)
        }
    }
}
