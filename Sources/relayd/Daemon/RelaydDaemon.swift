import Dispatch
import Logging
import Relay
import RelayShipper
import ServiceLifecycle
import Synchronization

import CRelayLinux

#if canImport(Glibc)
import Glibc
#endif

/// Assembles and runs relayd from a validated configuration.
///
/// Start-up order (each step fails the start with a clear message before anything runs):
/// io_uring probe → directories (`create_dirs`) → output channels → input sockets → metrics listener →
/// shipper (opens files) → input ring thread → signal thread → service group.
///
/// The service group runs `[accounting, shipper, inputs]`; swift-service-lifecycle shuts services down in reverse
/// order, which is exactly the drain order: inputs stop and close the channels, the shipper ships what is left,
/// then accounting reconciles and logs the totals.
enum RelaydDaemon {
    /// Exit status: clean stop.
    static let exitSuccess: Int32 = 0
    /// Exit status: runtime failure, io_uring unavailable, or a hard stop (second SIGTERM/SIGINT).
    static let exitFailure: Int32 = 1
    /// Exit status: configuration or start-up problem the operator must fix (as `check-config`).
    static let exitConfiguration: Int32 = 2

    /// Why io_uring cannot be used in this process (with the fix), or `nil` when it can.
    static var ioUringProblem: String? {
        RelayShipper.probeIOURing()
    }

    /// Runs relayd until it is stopped.
    ///
    /// - Parameters:
    ///   - config: The validated configuration.
    ///   - source: Where it came from (`relayd.toml`, `embedded default`), for messages.
    /// - Returns: The process exit status.
    static func run(config: RelaydConfig, source: String) async -> Int32 {
        // Diagnostics go to stderr (or the journal, which captures it under systemd), never into relayd's own pipeline.
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var configuredLogger = Logger(label: "relayd")
        configuredLogger.logLevel = Logger.Level(rawValue: config.daemon.logLevel.rawValue) ?? .info
        let logger = configuredLogger

        if let problem = Self.ioUringProblem {
            Self.report("io_uring is not usable: \(problem)")
            return Self.exitFailure
        }
        do {
            try Self.createDirectories(config)
        } catch {
            Self.report("\(source): \(error)")
            return Self.exitConfiguration
        }

        let metrics = RelaydMetrics(config: config)
        let zone = RecordEncoder.BSDZone.local(LocalZoneOffsets())
        var outputs: [OutputPipeline] = []
        do {
            for (index, output) in config.outputs.enumerated() {
                outputs.append(
                    try OutputPipeline(
                        output: output,
                        index: index,
                        channelConfig: config.channel(for: output),
                        metrics: metrics.outputs[index],
                        zone: zone
                    )
                )
            }
        } catch {
            Self.report("\(source): \(error)")
            return Self.exitConfiguration
        }
        for output in outputs {
            metrics.registerChannel(name: output.config.name) { output.channelStatistics() }
        }

        let bound: [BoundInput]
        do {
            bound = try InputSockets.bind(config)
        } catch {
            Self.report("\(source): \(error)")
            return Self.exitConfiguration
        }

        let shipper = RelayShipper(
            configuration: RelayShipperConfiguration(
                switchInterval: config.outputs.map { config.channel(for: $0).switchInterval }.min() ?? .milliseconds(100)
            ),
            drainTimeout: config.daemon.drainTimeout,
            logger: logger
        )
        let control: InputControl
        do {
            control = try InputControl()
            for output in outputs {
                do {
                    try shipper.add(output.channel, sinks: [output.sink])
                } catch {
                    throw StartupError(keyPath: "outputs[\(output.index)]", message: error.message)
                }
            }
        } catch {
            InputSockets.close(bound)
            Self.report("\(source): \(error)")
            return Self.exitConfiguration
        }

        let reconciler = Reconciler(outputs: outputs, metrics: metrics, shipper: shipper, logger: logger)
        var server: MetricsHTTPServer?
        if let address = config.daemon.metricsListen {
            do {
                server = try MetricsHTTPServer(
                    address: address,
                    // Reconciling right before rendering makes `written` current in every scrape.
                    metrics: {
                        reconciler.tick()
                        return metrics.exposition()
                    },
                    health: {
                        // acquiring: pairs with the ring thread's releasing store (see `InputControl.running`).
                        let healthy = control.running.load(ordering: .acquiring) && !control.finished.isSignalled
                            && !shipper.hasExited
                        return (healthy, healthy ? "ok" : "stopping")
                    }
                )
            } catch {
                InputSockets.close(bound)
                Self.report("\(source): daemon.metrics_listen: \(error)")
                return Self.exitConfiguration
            }
        }

        do {
            try shipper.start()
        } catch {
            InputSockets.close(bound)
            server?.stop()
            Self.report("\(source): cannot start the shipper: \(error.message)")
            return Self.exitConfiguration
        }

        let started = Self.startInputs(
            config: config,
            bound: bound,
            outputs: outputs,
            metrics: metrics,
            control: control,
            logger: logger
        )
        guard started else {
            for output in outputs { output.channel.close() }
            shipper.stop(timeout: .seconds(1))
            server?.stop()
            return Self.exitFailure
        }

        if let server {
            do {
                try server.start()
            } catch {
                logger.error("metrics server did not start", metadata: ["error": "\(error)"])
            }
        }

        let clock = ShutdownClock(drainTimeout: config.daemon.drainTimeout)
        var configuration = ServiceGroupConfiguration(
            services: [
                .init(service: AccountingService(reconciler: reconciler, server: server, logger: logger)),
                .init(service: ShipperService(shipper: shipper, clock: clock)),
                .init(
                    service: InputService(control: control, outputs: outputs, clock: clock, logger: logger),
                    successTerminationBehavior: .gracefullyShutdownGroup
                ),
            ],
            logger: logger
        )
        configuration.maximumGracefulShutdownDuration = config.daemon.drainTimeout + .seconds(5)
        let group = ServiceGroup(configuration: configuration)

        Self.logStart(config: config, source: source, bound: bound, server: server, logger: logger)
        let signals = SignalState()
        DaemonSignals.startWaiter { signal in
            switch signal {
            case SIGHUP:
                logger.notice("SIGHUP: reopening output files")
                shipper.reopen()
            default:
                if signals.firstStop() {
                    logger.notice(
                        "\(DaemonSignals.name(signal)): stopping inputs and draining",
                        metadata: ["drain_timeout": "\(config.daemon.drainTimeout)"]
                    )
                    clock.begin()
                    Task { await group.triggerGracefulShutdown() }
                } else {
                    reconciler.tick()
                    let inFlight = metrics.outputs.reduce(UInt64(0)) { $0 &+ $1.ledger.snapshot().inFlightRecords }
                    logger.critical(
                        "second \(DaemonSignals.name(signal)): hard stop without draining",
                        metadata: ["records_in_flight_lost": "\(inFlight)"]
                    )
                    fflush(nil)
                    _exit(Self.exitFailure)
                }
            }
        }

        do {
            try await group.run()
        } catch {
            logger.error("relayd stopped after an error", metadata: ["error": "\(error)"])
            return Self.exitFailure
        }
        return Self.exitSuccess
    }

    /// Creates the ring on its own thread; waits until it runs or failed.
    private static func startInputs(
        config: RelaydConfig,
        bound: [BoundInput],
        outputs: [OutputPipeline],
        metrics: RelaydMetrics,
        control: InputControl,
        logger: Logger
    ) -> Bool {
        let ready = StartupSignal()
        let context = InputThreadContext(
            config: config,
            bound: bound,
            outputs: outputs,
            metrics: metrics,
            control: control,
            logger: logger
        )
        DaemonThread.spawn(name: "relayd-inputs") {
            let loop: InputLoop
            do {
                loop = try InputLoop(
                    config: context.config,
                    bound: context.bound,
                    outputs: context.outputs,
                    metrics: context.metrics,
                    control: context.control,
                    logger: context.logger
                )
            } catch {
                Self.report("cannot create the input ring: \(error)")
                InputSockets.close(context.bound)
                ready.set(false)
                context.control.finished.signal()
                return
            }
            ready.set(true)
            loop.run()
            context.control.finished.signal()
        }
        return ready.wait()
    }

    /// `mkdir -p` for `state_dir` and the parents of sockets and files, when `create_dirs` is set.
    static func createDirectories(_ config: RelaydConfig) throws(StartupError) {
        guard config.daemon.createDirectories else { return }
        var directories: [(String, String)] = [(config.daemon.stateDirectory, "daemon.state_dir")]
        for (index, input) in config.inputs.enumerated() {
            if let path = input.kind.socketPath {
                directories.append((FileReading.parentDirectory(of: path), "inputs[\(index)].path"))
            }
        }
        for (index, output) in config.outputs.enumerated() {
            if case .file(let file) = output.kind {
                directories.append((FileReading.parentDirectory(of: file.path), "outputs[\(index)].path"))
            }
        }
        for (directory, keyPath) in directories {
            var path = directory.hasPrefix("/") ? "/" : ""
            for component in directory.split(separator: "/") {
                path += (path.isEmpty || path.hasSuffix("/") ? "" : "/") + component
                if mkdir(path, 0o755) != 0 && errno != EEXIST {
                    throw StartupError(
                        keyPath: keyPath,
                        message: "cannot create directory \(path): \(String(cString: strerror(errno))); create it or fix the permissions"
                    )
                }
            }
        }
    }

    private static func logStart(
        config: RelaydConfig,
        source: String,
        bound: [BoundInput],
        server: MetricsHTTPServer?,
        logger: Logger
    ) {
        for input in bound {
            logger.info(
                "input \"\(config.inputs[input.input].name)\" listening on \(input.description)",
                metadata: ["input": "\(config.inputs[input.input].name)"]
            )
        }
        for output in config.outputs {
            let target: String
            switch output.kind {
            case .file(let file): target = "file \(file.path)"
            case .tcp(let tcp): target = "tcp \(tcp.target) (\(tcp.framing.rawValue))"
            }
            logger.info(
                "output \"\(output.name)\" writes \(output.format.rawValue) to \(target)",
                metadata: ["inputs": "\(output.inputs.joined(separator: ","))"]
            )
        }
        if let server {
            logger.info("metrics on http://\(server.address)/metrics")
        }
        logger.notice("relayd started", metadata: ["config": "\(source)", "pid": "\(getpid())"])
    }

    /// Writes one diagnostic line to stderr (before logging is configured, and for start-up failures).
    static func report(_ line: String) {
        var text = "relayd: " + line + "\n"
        text.withUTF8 { bytes in
            _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count)
        }
    }
}

/// Everything the input thread needs, handed over once.
private struct InputThreadContext: Sendable {
    let config: RelaydConfig
    let bound: [BoundInput]
    let outputs: [OutputPipeline]
    let metrics: RelaydMetrics
    let control: InputControl
    let logger: Logger
}

/// A blocking one-shot result between the input thread and the starting task.
private final class StartupSignal: Sendable {
    private let state = RelayMutex<Bool?>(nil)
    private let ready = DispatchSemaphore(value: 0)

    func set(_ value: Bool) {
        self.state.withLock { $0 = value }
        self.ready.signal()
    }

    func wait() -> Bool {
        self.ready.wait()
        return self.state.withLock { $0 } ?? false
    }
}

/// Whether a stop signal was already received.
private final class SignalState: Sendable {
    private let stops = Atomic<Int>(0)

    /// Counts a stop signal; `true` for the first.
    func firstStop() -> Bool {
        // Relaxed: only the signal thread counts.
        self.stops.wrappingAdd(1, ordering: .relaxed).oldValue == 0
    }
}
