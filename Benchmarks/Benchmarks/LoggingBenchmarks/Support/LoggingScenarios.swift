//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

// The scenarios of the RelayLogging benchmarks, shared by the package-benchmark target
// (LoggingBenchmarks) and the markdown table tool (logging-bench-table).

import BenchSupport
import Glibc
import Logging
import Relay
import RelayLogging

/// How the benchmarked `Logger` logs.
public enum LoggingScenario: String, CaseIterable, Sendable {
    /// A handler whose `log(event:)` does nothing: what swift-log itself costs (building the event,
    /// the metadata dictionary, the level check).
    case noop
    /// A handler that only reads `event.source` (and touches its bytes): the part of every
    /// source-writing handler's cost that swift-log itself adds, since it derives the source from
    /// `#fileID` and builds a `String` on every access when the call site passes no `source:`.
    case noopReadingSource = "noop-source"
    /// `RelayLogHandler` into an overwrite-mode channel nobody reads: the handler alone, encoding
    /// and the channel's write path, without I/O.
    case relay
    /// `RelayLogHandler` through `RelayLoggingService` to a file (block mode: back-pressure, nothing
    /// lost), including the shipper's work and the final drain.
    case relayToFile = "relay-file"
    /// swift-log's `StreamLogHandler` writing to a file the way it writes to a redirected stdout:
    /// `fwrite` and `fflush` under the stream's lock, per call.
    case streamToFile = "stream-file"
}

/// A handler that does nothing, logging at `.info` (swift-log's `SwiftLogNoOpLogHandler` logs at
/// `.critical`, so `Logger` would skip building the event and be no baseline). With `readsSource`
/// it only reads `event.source` (see ``LoggingScenario/noopReadingSource``).
public struct NoOpLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let readsSource: Bool
    public init(readsSource: Bool = false) {
        self.readsSource = readsSource
    }
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }
    public func log(event: LogEvent) {
        if self.readsSource {
            var source = event.source
            source.withUTF8 { consume($0.count) }
        }
    }
}

/// Keeps the optimizer from dropping a computation whose result is otherwise unused.
@_optimize(none)
func consume(_ value: Int) {}

/// `StdioOutputStream` (what `StreamLogHandler.standardOutput` uses) for a file: lock, `fwrite`,
/// unlock, `fflush`.
public struct FileTextStream: TextOutputStream, @unchecked Sendable {
    let file: UnsafeMutablePointer<FILE>

    public init(file: UnsafeMutablePointer<FILE>) {
        self.file = file
    }

    public mutating func write(_ string: String) {
        var string = string
        string.withUTF8 { bytes in
            flockfile(self.file)
            if let base = bytes.baseAddress, bytes.count > 0 {
                _ = fwrite(base, 1, bytes.count, self.file)
            }
            funlockfile(self.file)
        }
        fflush(self.file)
    }
}

/// Where file scenarios write (`RELAY_BENCH_DIR`, default `/var/tmp`).
public let benchmarkDirectory: String = {
    if let value = getenv("RELAY_BENCH_DIR") { return String(cString: value) }
    return "/var/tmp"
}()

/// The metadata entry counts benchmarked.
public let metadataCounts = [0, 3, 10]

/// One log call with `entries` metadata entries (0, 3 or 10). Out of line, so every scenario runs
/// the same call site. It passes no `source:`, so handlers that write the source read the one swift-log
/// derives from `#fileID`: this module's name, `LogBenchSupport`, is 15 bytes, the longest that stays a
/// small (inline) string; a longer one would cost a malloc per call in swift-log.
@inline(never)
public func logOnce(_ logger: Logger, entries: Int) {
    switch entries {
    case 0:
        logger.info("request handled in the benchmark loop")
    case 3:
        logger.info(
            "request handled in the benchmark loop",
            metadata: ["request-id": "8f2c1a0b", "user": "alice", "path": "/api/v1/items"])
    default:
        logger.info(
            "request handled in the benchmark loop",
            metadata: [
                "request-id": "8f2c1a0b", "user": "alice", "path": "/api/v1/items", "method": "GET",
                "status": "200", "bytes": "5120", "region": "eu-west-1", "host": "api-7f9c",
                "trace-id": "4bf92f3577b34da6", "span-id": "00f067aa0ba902b7",
            ])
    }
}


/// A quiet logger for the shipper's own diagnostics.
let quietLogger = Logger(label: "bench") { _ in NoOpLogHandler() }

/// Runs `calls` log calls of `scenario` with `entries` metadata entries on `threads` threads, set up
/// and torn down around them (file scenarios include opening the file and draining it at the end).
public func runScenario(_ scenario: LoggingScenario, entries: Int, threads: Int, calls: Int) {
    switch scenario {
    case .noop:
        let logger = Logger(label: "bench") { _ in NoOpLogHandler() }
        onThreads(threads, total: calls) { _, count in
            for _ in 0..<count { logOnce(logger, entries: entries) }
        }
    case .noopReadingSource:
        let logger = Logger(label: "bench") { _ in NoOpLogHandler(readsSource: true) }
        onThreads(threads, total: calls) { _, count in
            for _ in 0..<count { logOnce(logger, entries: entries) }
        }
    case .relay:
        let logger = RelayChannelLogger.shared.logger
        onThreads(threads, total: calls) { _, count in
            for _ in 0..<count { logOnce(logger, entries: entries) }
        }
    case .relayToFile:
        let path = "\(benchmarkDirectory)/relay-logging-bench-\(getpid()).jsonl"
        unlink(path)
        let service = try! RelayLoggingService(
            RelayLoggingConfiguration(
                destination: .file(path: path), overload: .block(timeout: nil), diagnostics: quietLogger))
        let logger = Logger(label: "com.example.benchmark") { service.makeHandler(label: $0) }
        onThreads(threads, total: calls) { _, count in
            for _ in 0..<count { logOnce(logger, entries: entries) }
        }
        precondition(service.shutdown(), "the logging service did not drain")
        precondition(service.stats().log.recordsDropped == 0)
        unlink(path)
    case .streamToFile:
        let path = "\(benchmarkDirectory)/stream-logging-bench-\(getpid()).log"
        let file = fopen(path, "w")!
        let stream = FileTextStream(file: file)
        let logger = Logger(label: "com.example.benchmark") { label in
            StreamLogHandler(label: label, stream: stream, metadataProvider: nil)
        }
        onThreads(threads, total: calls) { _, count in
            for _ in 0..<count { logOnce(logger, entries: entries) }
        }
        fclose(file)
        unlink(path)
    }
}

/// The `.relay` scenario's logger: one overwrite-mode channel for the whole process (opening one
/// maps and prefaults memory, which is not what is measured).
final class RelayChannelLogger: Sendable {
    static let shared = RelayChannelLogger()

    let channel: RelayChannel
    let logger: Logger

    private init() {
        let channel = try! RelayChannel(
            RelayChannelConfiguration(
                name: "logging-bench-\(getpid())", subbufferSize: 1 << 20, subbufferCount: 8, mode: .overwrite))
        let writer = RelayLogWriter(channel: channel)
        self.channel = channel
        self.logger = Logger(label: "com.example.benchmark") { writer.makeHandler(label: $0, metadataProvider: nil) }
    }
}
