import Foundation
import Logging
@testable import Relay
import RelayShipper
import Synchronization
import Testing

@testable import relayd

#if canImport(Glibc)
import Glibc
#endif

/// Keeps every log message for the test to look at.
final class RelaydCapturedLog: Sendable {
    private let messages = RelayMutex<[String]>([])

    /// Every message so far, as `level message`.
    var all: [String] { self.messages.withLock { $0 } }

    /// A logger that captures into this log.
    func logger(level: Logger.Level = .info) -> Logger {
        var logger = Logger(label: "relayd.test.capture") { _ in Handler(log: self) }
        logger.logLevel = level
        return logger
    }

    struct Handler: LogHandler {
        let log: RelaydCapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            self.log.messages.withLock { $0.append("\(event.level) \(event.message)") }
        }
    }
}

/// A sub-buffer whose header relayd's engine did not write (a corrupt header, as another process or a memory fault
/// would leave it) is skipped by the shipper and counted by the channel: relayd exports the count and warns.
@Suite("relayd: corrupt sub-buffers", .timeLimit(.minutes(1)))
struct ChannelCorruptionTests {
    static let record = Array(repeating: UInt8(ascii: "c"), count: 1999) + [UInt8(ascii: "\n")]  // two per 4 KiB sub-buffer

    static func config(_ directory: String) throws -> RelaydConfig {
        try RelaydConfig.parse(
            """
            [daemon]
            state_dir = "\(directory)"

            [channels.default]
            subbuf_size = "4KiB"
            subbufs = 8
            switch_interval = "1s"

            [[inputs]]
            name = "syslog"
            type = "tcp"
            listen = "127.0.0.1:0"
            max_frame = "2KiB"

            [[outputs]]
            name = "files"
            type = "file"
            format = "raw"
            path = "\(directory)/out.log"

            """
        )
    }

    /// Writes `subbuffers` full sub-buffers of records into `output`'s channel (counted as received, as the input
    /// ring does), seals them, and zeroes the magic of the header of the one at `corrupt` (a sequence number).
    static func fill(_ output: OutputPipeline, subbuffers: Int, corrupt: UInt64) {
        for _ in 0..<(2 * subbuffers) {
            output.metrics.recordReceived(bytes: Self.record.count)
            #expect(output.channel.write(Self.record) == .written)
        }
        output.channel.flush()
        output.channel.cores[0].subbuffer(sequence: corrupt)
            .storeBytes(of: UInt32(0), toByteOffset: SubbufferHeaderLayout.magicOffset, as: UInt32.self)
    }

    /// Ships what the channel holds with a shipper of its own and waits (for the consumed count, not for time)
    /// until the shipper got through `consumed` sub-buffers.
    static func ship(_ output: OutputPipeline, until consumed: UInt64, log: RelaydCapturedLog) throws -> RelayShipper {
        let shipper = RelayShipper(logger: log.logger())
        try shipper.add(output.channel, sinks: [output.sink])
        try shipper.start()
        let shipped = Eventually.wait { output.channel.stats().total.subbuffersConsumed >= consumed }
        #expect(shipped, "the shipper consumed \(output.channel.stats().total.subbuffersConsumed) of \(consumed) sub-buffers")
        return shipper
    }

    /// The pipeline of the config's one output, counting into `metrics`.
    static func pipeline(_ config: RelaydConfig, _ metrics: RelaydMetrics) throws -> OutputPipeline {
        try OutputPipeline(
            output: config.outputs[0],
            index: 0,
            channelConfig: config.channel(for: config.outputs[0]),
            metrics: metrics.outputs[0],
            zone: .fixed(0)
        )
    }

    @Test("relayd_channel_subbuffers_corrupt_total counts what the shipper skipped, and a warning says so, rate-limited")
    func corruptSubbuffersAreExportedAndLogged() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let config = try Self.config(directory)
        let metrics = RelaydMetrics(config: config)
        let output = try Self.pipeline(config, metrics)
        metrics.registerChannel(name: output.config.name) { output.channelStatistics() }
        let log = RelaydCapturedLog()
        let series = #"relayd_channel_subbuffers_corrupt_total{channel="files"}"#

        // Sub-buffers 0, 1, 2 delivered, 1 corrupt before the shipper gets to it.
        Self.fill(output, subbuffers: 3, corrupt: 1)
        let first = try Self.ship(output, until: 3, log: log)
        #expect(output.channel.stats().total.corruptSubbuffers == 1)
        // A long warning interval: a second growth within it is not logged, however slow this host is.
        let reconciler = Reconciler(
            outputs: [output],
            metrics: metrics,
            shipper: first,
            logger: log.logger(),
            warningInterval: .seconds(3600)
        )
        reconciler.tick()
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        #expect(parseExposition(Array(text.utf8))[series] == 1)
        #expect(text.contains("# TYPE relayd_channel_subbuffers_corrupt_total counter"))
        #expect(text.contains("# HELP relayd_channel_subbuffers_corrupt_total Delivered sub-buffers skipped"))
        let warnings = log.all.filter { $0.contains("corrupt") }
        #expect(warnings.count == 1, "\(log.all)")
        let warning = try #require(warnings.first)
        #expect(warning.hasPrefix("warning output \"files\" skipped 1 corrupt sub-buffer since relayd started"), "\(warning)")
        #expect(warning.contains("relayd_channel_subbuffers_corrupt_total"), "\(warning)")
        reconciler.tick()
        #expect(log.all.filter { $0.contains("corrupt") }.count == 1, "a tick without new corruption warned again")
        #expect(first.stop(timeout: .seconds(10)))

        // Another corrupt one within the interval: counted, not logged again.
        Self.fill(output, subbuffers: 2, corrupt: 4)
        let second = try Self.ship(output, until: 5, log: log)
        defer { _ = second.stop(timeout: .seconds(10)) }
        #expect(output.channel.stats().total.corruptSubbuffers == 2)
        reconciler.tick()
        #expect(parseExposition(metrics.exposition())[series] == 2)
        #expect(log.all.filter { $0.contains("corrupt") }.count == 1, "\(log.all)")
    }
    /// The shipper releases a corrupt sub-buffer like a shipped one (so the channel does not wedge), and relayd turns
    /// released sub-buffers into written records: without the channel's `corrupt` callback the records of the
    /// skipped one were counted as written, and `received = written + dropped + in_flight` held with a lie in it.
    @Test("the records of a sub-buffer the shipper skipped as corrupt are dropped (reason corrupt), never written")
    func corruptSubbufferRecordsAreDropped() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let config = try Self.config(directory)
        let metrics = RelaydMetrics(config: config)
        let output = try Self.pipeline(config, metrics)
        let log = RelaydCapturedLog()

        // Sub-buffers 0, 1, 2 delivered with two records each; 1's header is scribbled on in the shared region
        // before the shipper gets to it.
        Self.fill(output, subbuffers: 3, corrupt: 1)
        let shipper = try Self.ship(output, until: 3, log: log)
        #expect(output.channel.stats().total.corruptSubbuffers == 1)
        let reconciler = Reconciler(outputs: [output], metrics: metrics, shipper: shipper)
        reconciler.tick()
        let ledger = output.metrics.ledger.snapshot()
        #expect(ledger.receivedRecords == 6)
        #expect(ledger.completedRecords == 4, "only sub-buffers 0 and 2 reached the file")
        #expect(ledger.droppedRecords[OutputDropReason.corrupt.rawValue] == 2, "\(ledger.droppedRecords)")
        #expect(ledger.droppedTotal == 2)
        #expect(ledger.inFlightRecords == 0)
        #expect(ledger.completedBytes == 4 * UInt64(Self.record.count))
        #expect(ledger.droppedBytes == 2 * UInt64(Self.record.count))
        let series = parseExposition(metrics.exposition())
        #expect(series[#"relayd_output_written_records_total{output="files"}"#] == 4)
        #expect(series[#"relayd_output_dropped_records_total{output="files",reason="corrupt"}"#] == 2)
        // The file holds exactly the four records counted as written.
        #expect(shipper.stop(timeout: .seconds(10)))
        let file = try #require(FileManager.default.contents(atPath: "\(directory)/out.log"))
        #expect(file.count == 4 * Self.record.count)
        let summary = reconciler.finish()
        #expect(summary.written == 4 && summary.dropped == 2 && summary.droppedAtShutdown == 0, "\(summary)")
    }
    /// The same accounting when what was scribbled on is the slot's state word (the channel is in relayd's default
    /// `block` mode, where the shipper would otherwise wait for that sub-buffer forever): released unshipped, and
    /// its records dropped (reason corrupt), never written.
    @Test("the records of a sub-buffer passed for a corrupt state word are dropped (reason corrupt), never written")
    func corruptStateWordRecordsAreDropped() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let config = try Self.config(directory)
        let metrics = RelaydMetrics(config: config)
        let output = try Self.pipeline(config, metrics)
        #expect(output.channel.mode.isNoOverwrite)
        let log = RelaydCapturedLog()
        for _ in 0..<6 {
            output.metrics.recordReceived(bytes: Self.record.count)
            #expect(output.channel.write(Self.record) == .written)
        }
        output.channel.flush()  // sub-buffers 0, 1, 2 delivered
        // Another process writes a sequence that never comes over sub-buffer 1's slot state word.
        let region = try #require(output.channel.region(buffer: 0).baseAddress)
        (region + RegionLayout.slotTableOffset + RegionLayout.slotStride + RegionLayout.slotStateOffset)
            .storeBytes(of: UInt64(77 << 2 | 1), as: UInt64.self)
        let shipper = try Self.ship(output, until: 3, log: log)
        #expect(output.channel.stats().total.corruptSubbuffers == 1)
        let reconciler = Reconciler(outputs: [output], metrics: metrics, shipper: shipper)
        reconciler.tick()
        let ledger = output.metrics.ledger.snapshot()
        #expect(ledger.completedRecords == 4, "only sub-buffers 0 and 2 reached the file")
        #expect(ledger.droppedRecords[OutputDropReason.corrupt.rawValue] == 2, "\(ledger.droppedRecords)")
        #expect(ledger.inFlightRecords == 0)
        #expect(shipper.stop(timeout: .seconds(10)))
        let file = try #require(FileManager.default.contents(atPath: "\(directory)/out.log"))
        #expect(file.count == 4 * Self.record.count)
    }
}
