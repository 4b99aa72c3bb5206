//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

public import Logging
import Relay
public import RelayShipper

/// Where a ``RelayLoggingService`` ships log records.
public struct RelayLogDestination: Sendable, Hashable {
    /// The shipper sinks the channel feeds.
    public let sinks: [RelaySink]

    /// Writes to the sinks given (several sinks receive every record).
    ///
    /// - Parameter sinks: 1 to 64 sinks.
    public static func sinks(_ sinks: [RelaySink]) -> RelayLogDestination {
        RelayLogDestination(sinks: sinks)
    }

    /// Appends to a file, optionally rotated by size and age.
    ///
    /// - Parameters:
    ///   - path: The file; created with mode 0640 when missing.
    ///   - rotation: When to rotate (`path.1` … `path.N`), or `nil` for never.
    ///   - fsync: When to make data durable.
    public static func file(
        path: String,
        rotation: RelayFileSinkConfiguration.Rotation? = nil,
        fsync: RelayFileSinkConfiguration.FsyncPolicy = .none
    ) -> RelayLogDestination {
        .file(RelayFileSinkConfiguration(path: path, fsync: fsync, rotation: rotation))
    }

    /// Appends to a file configured in full.
    public static func file(_ configuration: RelayFileSinkConfiguration) -> RelayLogDestination {
        RelayLogDestination(sinks: [.file(configuration)])
    }

    /// Sends to a TCP peer (a log collector), reconnecting when the connection drops. Use RFC 5424
    /// with octet counting, or JSON Lines, for collectors that frame by newline.
    ///
    /// - Parameters:
    ///   - host: A host name or IP literal.
    ///   - port: The port.
    public static func tcp(host: String, port: Int) -> RelayLogDestination {
        .socket(RelaySocketSinkConfiguration(endpoint: .tcp(host: host, port: port)))
    }

    /// Sends to a Unix stream socket.
    ///
    /// - Parameter path: The socket's path.
    public static func unix(path: String) -> RelayLogDestination {
        .socket(RelaySocketSinkConfiguration(endpoint: .unix(path: path)))
    }

    /// Sends to a stream socket configured in full.
    public static func socket(_ configuration: RelaySocketSinkConfiguration) -> RelayLogDestination {
        RelayLogDestination(sinks: [.socket(configuration)])
    }
}

/// What a log call does when the channel has no free space.
public enum RelayLogOverload: Sendable, Hashable {
    /// Return at once and count the record as dropped; the next record that finds space is followed
    /// by one record reporting how many were dropped since when (at most one such report per
    /// ``RelayLoggingConfiguration/dropReportInterval``). The default: logging never blocks a
    /// request.
    case drop
    /// Wait for space (back-pressure), at most `timeout` (`nil`: forever); a record that still finds no
    /// space is dropped and reported like in ``drop``. After a timeout, calls drop at once until the
    /// shipper frees space (one timeout per stall, not one per call). `nil` is for services where a
    /// lost record is worse than a stalled request: while the destination takes nothing, every
    /// thread that logs waits (until it frees space, or shutdown closes the channel).
    case block(timeout: Duration?)

    var mode: RelayMode {
        switch self {
        case .drop: return .drop
        case .block(let timeout): return .block(timeout: timeout)
        }
    }
}

/// How ``RelayLoggingService`` sets up logging.
public struct RelayLoggingConfiguration: Sendable {
    /// Where records go.
    public var destination: RelayLogDestination
    /// The record format (JSON Lines by default).
    public var format: RecordFormat
    /// What a log call does when the channel is full.
    public var overload: RelayLogOverload
    /// The least time between two drop reports (`"N log records dropped since T"`) written by log
    /// calls; 1 s by default. After a report, drops keep being counted, and the first record that
    /// finds space once the interval has passed is followed by one report of all of them, so a
    /// lasting overload (of one CPU's buffer while others have room, say) costs one report per
    /// interval, not one per record. Shutdown reports the drops still pending at once. `.zero`
    /// reports after every record that finds space and follows new drops. See
    /// ``RelayLogWriter/dropReportInterval``.
    public var dropReportInterval: Duration
    /// The level of new loggers.
    public var logLevel: Logger.Level
    /// The metadata provider of new loggers.
    public var metadataProvider: Logger.MetadataProvider?
    /// Sort the keys of provider and per-call metadata in every record (see
    /// ``RelayLogWriter/sortsMetadataKeys``).
    public var sortsMetadataKeys: Bool
    /// The channel's name, used in error and shipper messages (the service's channel lives in
    /// anonymous memory, never in `/dev/shm`).
    public var channelName: String
    /// Bytes per sub-buffer (a power of two, 4 KiB to 1 GiB); records are truncated to a little less.
    public var subbufferSize: Int
    /// Sub-buffers per CPU buffer (a power of two, at least 2): how much can be in flight.
    public var subbufferCount: Int
    /// Per-CPU buffers (`nil`: one per possible CPU).
    public var buffers: Int?
    /// How often partly filled sub-buffers are shipped, so that quiet services' records arrive soon.
    public var switchInterval: Duration
    /// How long shutdown may take to write out everything logged before it.
    public var drainTimeout: Duration
    /// Where the shipper's own diagnostics go (standard error by default). Never a logger that writes
    /// into this service's channel.
    public var diagnostics: Logger

    /// Creates a configuration.
    ///
    /// - Parameters:
    ///   - destination: Where records go.
    ///   - format: The record format.
    ///   - overload: What a log call does when the channel is full.
    ///   - dropReportInterval: The least time between two drop reports written by log calls.
    ///   - logLevel: The level of new loggers.
    ///   - metadataProvider: The metadata provider of new loggers.
    ///   - sortsMetadataKeys: Sort per-record metadata keys.
    ///   - channelName: The channel's name.
    ///   - subbufferSize: Bytes per sub-buffer.
    ///   - subbufferCount: Sub-buffers per CPU buffer.
    ///   - buffers: Per-CPU buffers.
    ///   - switchInterval: The shipping interval of partly filled sub-buffers.
    ///   - drainTimeout: The longest shutdown.
    ///   - diagnostics: The shipper's logger (standard error by default).
    public init(
        destination: RelayLogDestination,
        format: RecordFormat = .jsonLines,
        overload: RelayLogOverload = .drop,
        dropReportInterval: Duration = .seconds(1),
        logLevel: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = nil,
        sortsMetadataKeys: Bool = false,
        channelName: String = "swift-log",
        subbufferSize: Int = 1 << 20,
        subbufferCount: Int = 8,
        buffers: Int? = nil,
        switchInterval: Duration = .milliseconds(100),
        drainTimeout: Duration = .seconds(10),
        diagnostics: Logger? = nil
    ) {
        self.destination = destination
        self.format = format
        self.overload = overload
        self.dropReportInterval = dropReportInterval
        self.logLevel = logLevel
        self.metadataProvider = metadataProvider
        self.sortsMetadataKeys = sortsMetadataKeys
        self.channelName = channelName
        self.subbufferSize = subbufferSize
        self.subbufferCount = subbufferCount
        self.buffers = buffers
        self.switchInterval = switchInterval
        self.drainTimeout = drainTimeout
        self.diagnostics =
            diagnostics
            ?? Logger(label: "relay.logging") { label in
                var handler = StreamLogHandler.standardError(label: label, metadataProvider: nil)
                handler.logLevel = .notice
                return handler
            }
    }
}

/// Setting up or running ``RelayLoggingService`` failed.
public struct RelayLoggingError: Error, Sendable, CustomStringConvertible {
    /// What went wrong and how to fix it.
    public var message: String

    /// Creates an error.
    public init(message: String) {
        self.message = message
    }

    public var description: String { self.message }
}
