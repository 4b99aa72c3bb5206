//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Glibc
import Logging
public import Relay
public import RelayShipper
public import ServiceLifecycle
import Synchronization

/// swift-log logging through a relay channel and an io_uring shipper, in one object.
///
/// ```swift
/// let logging = try RelayLoggingService.bootstrap(
///     RelayLoggingConfiguration(destination: .file(path: "/var/log/app.jsonl",
///                                                  rotation: .init(maxBytes: 64 << 20, keep: 5))))
/// let group = ServiceGroup(services: [logging, app], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
///
/// ``bootstrap(_:)`` opens a channel, starts a ``RelayShipper`` that writes its sub-buffers to the
/// destination, and bootstraps `LoggingSystem` with ``RelayLogHandler``s. As a swift-service-lifecycle
/// `Service`, it runs until graceful shutdown and then writes out everything logged before it: put it
/// **first** in the `ServiceGroup`, so that it shuts down last, after the services that log. Without
/// service-lifecycle, call ``shutdown()`` before the process exits.
///
/// Shutdown reports drops that were not reported yet, closes the channel (later log calls are
/// counted as ``RelayLogStats/recordsRefusedClosed``), and waits until the shipper has written and
/// acknowledged every sub-buffer, within ``RelayLoggingConfiguration/drainTimeout``.
public final class RelayLoggingService: Service, Sendable {
    /// The configuration.
    public let configuration: RelayLoggingConfiguration
    /// The writer every handler writes through.
    public let writer: RelayLogWriter
    /// The shipper.
    public let shipper: RelayShipper

    private enum Phase {
        case running
        case shuttingDown
        case stopped(drained: Bool)
    }

    private let phase = RelayMutex<Phase>(.running)

    /// The channel records are written into.
    public var channel: RelayChannel { self.writer.channel }

    /// Sets up a channel and a started shipper, without touching `LoggingSystem` (use
    /// ``makeHandler(label:)`` for loggers, or ``bootstrap(_:)``).
    ///
    /// - Throws: ``RelayLoggingError`` when the channel cannot be opened (invalid sizes) or the
    ///   shipper cannot start (io_uring unavailable, the file cannot be opened), with how to fix it.
    public init(_ configuration: RelayLoggingConfiguration) throws(RelayLoggingError) {
        self.configuration = configuration
        let channel: RelayChannel
        do {
            channel = try RelayChannel(
                RelayChannelConfiguration(
                    name: configuration.channelName,
                    subbufferSize: configuration.subbufferSize,
                    subbufferCount: configuration.subbufferCount,
                    mode: configuration.overload.mode,
                    buffers: configuration.buffers,
                    filler: .logLines
                ))
        } catch {
            throw RelayLoggingError(message: "cannot open the logging channel: \(error)")
        }
        let shipper = RelayShipper(
            configuration: RelayShipperConfiguration(switchInterval: configuration.switchInterval),
            drainTimeout: configuration.drainTimeout,
            logger: configuration.diagnostics
        )
        do {
            try shipper.add(channel, sinks: configuration.destination.sinks)
            try shipper.start()
        } catch {
            channel.close()
            throw RelayLoggingError(message: "cannot start shipping logs: \(error.message)")
        }
        self.writer = RelayLogWriter(
            channel: channel, format: configuration.format, sortsMetadataKeys: configuration.sortsMetadataKeys,
            dropReportInterval: configuration.dropReportInterval)
        self.shipper = shipper
    }

    /// Whether ``bootstrap(_:)`` has bootstrapped `LoggingSystem` in this process (or is doing so).
    private static let bootstrapped = RelayMutex<Bool>(false)

    /// Sets up logging and bootstraps `LoggingSystem` with this service's handlers (and the
    /// configuration's metadata provider). `LoggingSystem` can be bootstrapped once per process: a
    /// second call throws (before it opens a channel or starts a shipper) instead of reaching
    /// swift-log's precondition, which would end the process. For more services, use
    /// ``init(_:)`` and ``makeHandler(label:)``. A call that throws a setup error can be retried.
    ///
    /// - Returns: The service; run it in a `ServiceGroup`, or call ``shutdown()`` before exiting.
    /// - Throws: ``RelayLoggingError`` (see ``init(_:)``), or when `bootstrap` already succeeded.
    public static func bootstrap(_ configuration: RelayLoggingConfiguration) throws(RelayLoggingError)
        -> RelayLoggingService
    {
        let first = Self.bootstrapped.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else {
            throw RelayLoggingError(
                message:
                    "LoggingSystem was already bootstrapped by RelayLoggingService.bootstrap: it can be bootstrapped "
                    + "once per process; create further services with RelayLoggingService(_:) and use their "
                    + "makeHandler(label:)")
        }
        let service: RelayLoggingService
        do {
            service = try RelayLoggingService(configuration)
        } catch {
            Self.bootstrapped.withLock { $0 = false }
            throw error
        }
        let writer = service.writer
        let level = configuration.logLevel
        if let provider = configuration.metadataProvider {
            LoggingSystem.bootstrap(
                { label, provider in writer.makeHandler(label: label, metadataProvider: provider, logLevel: level) },
                metadataProvider: provider)
        } else {
            LoggingSystem.bootstrap { label in writer.makeHandler(label: label, metadataProvider: nil, logLevel: level) }
        }
        return service
    }

    /// A handler writing through this service, for `Logger(label:factory:)` or your own bootstrap.
    ///
    /// - Parameter label: The logger's label.
    public func makeHandler(label: String) -> RelayLogHandler {
        self.writer.makeHandler(
            label: label, metadataProvider: self.configuration.metadataProvider, logLevel: self.configuration.logLevel)
    }

    /// The writer's and channel's counters, and the shipper's latest.
    public func stats() -> RelayLoggingStats {
        RelayLoggingStats(log: self.writer.stats(), shipper: self.shipper.stats())
    }

    // MARK: - Service

    /// Runs until graceful shutdown, then shuts down (see ``shutdown()``). When the task is cancelled
    /// instead, it still writes out what it can, within a tenth of the drain timeout.
    public func run() async throws {
        var drainTimeout = self.configuration.drainTimeout
        do {
            // Until the graceful shutdown: also write drop reports that the rate limit held back
            // and no later log call has written (see `reportHeldDrops`). Only the graceful shutdown
            // ends the wait: the reporter returns at once when there is no interval to wait for.
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await gracefulShutdown()
                    return true
                }
                group.addTask {
                    await self.reportHeldDrops()
                    return false
                }
                while let isShutdown = try await group.next(), !isShutdown {}
                group.cancelAll()
            }
        } catch {
            drainTimeout = drainTimeout / 10
        }
        guard self.beginShutdown() else {
            await self.waitForShutdown()
            return
        }
        let deadline = ContinuousClock.now + drainTimeout
        while !self.writer.reportDrops(waitingAtMost: deadline - ContinuousClock.now), ContinuousClock.now < deadline {
            self.shipper.flush()
            // A cancelled task's sleep throws at once: sleep the thread instead of spinning.
            do { try await Task.sleep(for: .milliseconds(1)) } catch { usleep(1000) }
        }
        self.channel.close()
        let remaining = deadline - ContinuousClock.now
        if self.shipper.requestStop(timeout: remaining > .zero ? remaining : .zero) {
            await self.shipper.waitUntilExited()
        }
        self.finishShutdown()
    }

    /// While the service runs (until cancelled): once per ``RelayLoggingConfiguration/dropReportInterval``,
    /// writes the report of drops that are still pending. Log calls write reports themselves, at most
    /// one per interval, so without this a report held back by the interval would wait for the next
    /// log call, however late that comes. Never waits for space (a full channel keeps the drops
    /// pending for the next attempt).
    private func reportHeldDrops() async {
        let interval = self.writer.dropReportInterval
        guard interval > .zero else { return }  // log calls report at once
        while true {
            do { try await Task.sleep(for: interval) } catch { return }
            if self.writer.hasPendingDrops {
                _ = self.writer.reportDrops(waitingAtMost: .zero)
            }
        }
    }

    /// Writes out everything logged so far and stops: reports pending drops, closes the channel and
    /// waits for the shipper to write and acknowledge every sub-buffer. Blocks the calling thread for
    /// at most ``RelayLoggingConfiguration/drainTimeout`` (a call made while another shutdown drains
    /// waits for it, at most that long plus a second). Idempotent; later log calls are counted as
    /// refused.
    ///
    /// - Returns: `true` when everything was shipped.
    @discardableResult
    public func shutdown() -> Bool {
        guard self.beginShutdown() else {
            // Another caller (or `run()`) drains: wait for it, within the same bound. Past it,
            // report "not drained" rather than block on a drain that cannot make progress
            // (e.g. `run()` waiting for a cooperative thread that blocked callers hold).
            let deadline = ContinuousClock.now + self.configuration.drainTimeout + .seconds(1)
            while ContinuousClock.now < deadline {
                if case .stopped(let drained) = self.phase.withLock({ $0 }) { return drained }
                usleep(1000)
            }
            return false
        }
        let timeout = self.configuration.drainTimeout
        let deadline = ContinuousClock.now + timeout
        while !self.writer.reportDrops(waitingAtMost: deadline - ContinuousClock.now), ContinuousClock.now < deadline {
            self.shipper.flush()
            usleep(1000)
        }
        self.channel.close()
        let remaining = deadline - ContinuousClock.now
        self.shipper.stop(timeout: remaining > .zero ? remaining : .zero)
        return self.finishShutdown()
    }

    /// Marks the start of shutdown; `false` when it already started.
    private func beginShutdown() -> Bool {
        self.phase.withLock { phase in
            guard case .running = phase else { return false }
            phase = .shuttingDown
            return true
        }
    }

    @discardableResult
    private func finishShutdown() -> Bool {
        // The ring thread's own verdict: shipped == released misses sub-buffers it never took
        // (sealed, but a writer was still inside a record at the deadline).
        let drained = self.shipper.drained
        self.phase.withLock { $0 = .stopped(drained: drained) }
        return drained
    }

    private func waitForShutdown() async {
        while true {
            if case .stopped = self.phase.withLock({ $0 }) { return }
            // A cancelled task's sleep throws at once: sleep the thread instead of spinning.
            do { try await Task.sleep(for: .milliseconds(1)) } catch { usleep(1000) }
        }
    }
}

/// The counters of a ``RelayLoggingService``.
public struct RelayLoggingStats: Sendable {
    /// The writer's and channel's counters.
    public var log: RelayLogStats
    /// The shipper's latest counters (`nil` before its first report).
    public var shipper: RelayShipperStats?
}
