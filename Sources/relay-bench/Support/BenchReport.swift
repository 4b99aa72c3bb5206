/// The final report of `relay-bench run`: `--json` prints it as one object with these snake_case keys.
///
/// Required keys: `producers`, `record_size`, `mode`, `sinks`, `offered_records`,
/// `written_records`, `dropped_records`, `shipped_bytes`, `elapsed_seconds`, `records_per_second`,
/// `bytes_per_second`, `cpu_seconds`, `peak_rss_bytes`, `producer_ns_per_record` (`p50`, `p99`,
/// `p999`), and `e2e_latency_ms` (`p50`, `p99`) when measured. Extras: `subbuf_size`, `subbufs`,
/// `config`, `sink_stats`, `verify` (when the run verified its output).
struct BenchReport: Codable, Sendable, Equatable {
    /// The run's inputs that do not have a top-level key.
    struct Config: Codable, Sendable, Equatable {
        /// `--records`, when the run was count-bound.
        var records: UInt64?
        /// `--seconds`, when the run was time-bound.
        var seconds: Double?
        /// `--rate` per producer (open loop), when set.
        var ratePerProducer: Double?
        /// The CPU count the relay used.
        var cpus: Int?
        /// The swift-relay version or git revision, when known.
        var version: String?
        /// How producers wrote records: `reserve` (reserve + commit) or `write` (copy in).
        var api: String?

        init(records: UInt64? = nil, seconds: Double? = nil, ratePerProducer: Double? = nil, cpus: Int? = nil, version: String? = nil) {
            self.records = records
            self.seconds = seconds
            self.ratePerProducer = ratePerProducer
            self.cpus = cpus
            self.version = version
        }

        enum CodingKeys: String, CodingKey {
            case records, seconds
            case ratePerProducer = "rate_per_producer"
            case cpus, version, api
        }
    }

    /// What one sink shipped.
    struct SinkStats: Codable, Sendable, Equatable {
        /// The sink spec as given (``SinkSpec/description``).
        var sink: String
        var shippedBytes: UInt64
        /// Sub-buffers the sink finished (written, or acknowledged by the peer).
        var subbuffers: UInt64
        /// Failed operations.
        var errors: UInt64
        /// Sub-buffers this sink lost (e.g. a slow consumer in overwrite mode), when known.
        var droppedSubbuffers: UInt64?
        /// Writes (`WRITEV`) or sends (`SENDMSG`) that carried several sub-buffers at once.
        var batches: UInt64?
        /// Writes issued as `WRITE_FIXED` from the registered regions (files only; 0 for sockets).
        var fixedWrites: UInt64?
        /// Writeback requests (`sync_file_range`, `SYNC_FILE_RANGE_WRITE`) issued under the
        /// sink's `writeback=` policy (file sinks only; absent for the others).
        var writebacks: UInt64?

        init(
            sink: String, shippedBytes: UInt64, subbuffers: UInt64, errors: UInt64 = 0, droppedSubbuffers: UInt64? = nil,
            batches: UInt64? = nil, fixedWrites: UInt64? = nil, writebacks: UInt64? = nil
        ) {
            self.sink = sink
            self.shippedBytes = shippedBytes
            self.subbuffers = subbuffers
            self.errors = errors
            self.droppedSubbuffers = droppedSubbuffers
            self.batches = batches
            self.fixedWrites = fixedWrites
            self.writebacks = writebacks
        }

        enum CodingKeys: String, CodingKey {
            case sink
            case shippedBytes = "shipped_bytes"
            case subbuffers, errors
            case droppedSubbuffers = "dropped_subbuffers"
            case batches
            case fixedWrites = "fixed_writes"
            case writebacks
        }
    }

    /// Producer threads.
    var producers: Int
    /// Record size in bytes.
    var recordSize: Int
    /// `block`, `drop` or `overwrite`.
    var mode: String
    /// The `--sink` specs, canonical form.
    var sinks: [String]
    /// Records producers tried to write.
    var offeredRecords: UInt64
    /// Records that made it into the relay (offered minus dropped).
    var writtenRecords: UInt64
    /// Records dropped (drop mode) or overwritten (overwrite mode).
    var droppedRecords: UInt64
    /// Bytes shipped, summed over all sinks (per-sink counts are in `sink_stats`).
    var shippedBytes: UInt64
    /// Wall-clock seconds from the first record to the last byte shipped.
    var elapsedSeconds: Double
    /// Written records per second.
    var recordsPerSecond: Double
    /// Shipped bytes per second.
    var bytesPerSecond: Double
    /// Process CPU seconds, user + system (`getrusage(RUSAGE_SELF)`).
    var cpuSeconds: Double
    /// Peak resident set size in bytes.
    var peakRSSBytes: UInt64
    /// Producer-side cost per record (reserve + format + commit), nanoseconds.
    var producerNsPerRecord: LatencyPercentiles
    /// End-to-end latency in milliseconds, when measured: per sub-buffer, from the moment it
    /// started (the engine stamps `CLOCK_REALTIME` when a sub-buffer opens, at or before its first
    /// record's commit) to the completion that released it: written to the page cache for files,
    /// acknowledged by the peer's TCP for sockets, accounted for the null sink. It is the delay of
    /// each sub-buffer's oldest record, an upper bound for the others in it; with a fast producer
    /// it is about the time to fill a sub-buffer plus the I/O, with a slow one the switch timer
    /// (100 ms) bounds it.
    var e2eLatencyMs: EndToEndLatency?
    /// Sub-buffer size in bytes.
    var subbufSize: Int
    /// Sub-buffers per buffer.
    var subbufs: Int
    /// Other run inputs.
    var config: Config
    /// Per-sink counters.
    var sinkStats: [SinkStats]
    /// The verification of the run's output, when it was verified.
    var verify: VerifyReport?
    /// Overwrite mode: records the channel accepted but a writer overwrote before the shipper
    /// copied them (written minus shipped); `nil` in other modes or when a sink's byte count
    /// does not tell records (packets format).
    var overwrittenRecords: UInt64?
    /// How many records' costs went into ``producerNsPerRecord`` (about one in 64 is timed).
    var producerSamples: UInt64?
    /// What the shipper thread did, when a shipper ran.
    var shipper: ShipperSummary?
    /// The channel's own counters, when a channel ran.
    var channel: ChannelSummary?

    /// The relay channel's counters for a run (summed over buffers).
    struct ChannelSummary: Codable, Sendable, Equatable {
        /// Relay buffers (one per CPU by default).
        var buffers: Int
        /// Sub-buffers sealed.
        var subbuffersProduced: UInt64
        /// Times a producer waited for a free sub-buffer (block mode).
        var writerWaits: UInt64
        /// Episodes of every sub-buffer of a buffer being unconsumed.
        var bufferFullEvents: UInt64
        /// Partly filled sub-buffers sealed by flush or close.
        var flushes: UInt64

        enum CodingKeys: String, CodingKey {
            case buffers
            case subbuffersProduced = "subbuffers_produced"
            case writerWaits = "writer_waits"
            case bufferFullEvents = "buffer_full_events"
            case flushes
        }
    }
    /// Anything that makes the numbers suspect (e.g. the sinks did not finish draining).
    var warnings: [String]?

    /// The shipper's own counters for a run.
    struct ShipperSummary: Codable, Sendable, Equatable {
        /// Sub-buffers taken from the channel.
        var subbuffersShipped: UInt64
        /// Sub-buffers that switch timer or close sealed before they were full.
        var timerFlushes: UInt64
        /// CPU seconds (user + system) of the shipper thread.
        var threadCPUSeconds: Double
        /// Times the shipper slept in its ring.
        var sleeps: UInt64
        /// Times writers or commands woke it through its doorbell (a futex wake each).
        var doorbellRings: UInt64
        /// Relay regions registered as io_uring fixed buffers.
        var registeredBuffers: Int
        /// Whether registration failed and unregistered operations were used.
        var registrationFallback: Bool
        /// The io_uring setup in use.
        var ringSetup: String
        /// Sub-buffers behind `e2e_latency_ms`.
        var latencySamples: UInt64
        /// The largest sub-buffer delay, in milliseconds.
        var latencyMaxMs: Double

        enum CodingKeys: String, CodingKey {
            case subbuffersShipped = "subbuffers_shipped"
            case timerFlushes = "timer_flushes"
            case threadCPUSeconds = "thread_cpu_seconds"
            case sleeps
            case doorbellRings = "doorbell_rings"
            case registeredBuffers = "registered_buffers"
            case registrationFallback = "registration_fallback"
            case ringSetup = "ring_setup"
            case latencySamples = "latency_samples"
            case latencyMaxMs = "latency_max_ms"
        }
    }

    /// Creates a report; the rates are derived from the counts and `elapsedSeconds`
    /// (`records_per_second` = written records / s, `bytes_per_second` = shipped bytes / s).
    init(
        producers: Int,
        recordSize: Int,
        mode: String,
        sinks: [String],
        offeredRecords: UInt64,
        writtenRecords: UInt64,
        droppedRecords: UInt64,
        shippedBytes: UInt64,
        elapsedSeconds: Double,
        cpuSeconds: Double,
        peakRSSBytes: UInt64,
        producerNsPerRecord: LatencyPercentiles,
        e2eLatencyMs: EndToEndLatency? = nil,
        subbufSize: Int,
        subbufs: Int,
        config: Config = Config(),
        sinkStats: [SinkStats] = [],
        verify: VerifyReport? = nil
    ) {
        self.producers = producers
        self.recordSize = recordSize
        self.mode = mode
        self.sinks = sinks
        self.offeredRecords = offeredRecords
        self.writtenRecords = writtenRecords
        self.droppedRecords = droppedRecords
        self.shippedBytes = shippedBytes
        self.elapsedSeconds = elapsedSeconds
        self.recordsPerSecond = elapsedSeconds > 0 ? Double(writtenRecords) / elapsedSeconds : 0
        self.bytesPerSecond = elapsedSeconds > 0 ? Double(shippedBytes) / elapsedSeconds : 0
        self.cpuSeconds = cpuSeconds
        self.peakRSSBytes = peakRSSBytes
        self.producerNsPerRecord = producerNsPerRecord
        self.e2eLatencyMs = e2eLatencyMs
        self.subbufSize = subbufSize
        self.subbufs = subbufs
        self.config = config
        self.sinkStats = sinkStats
        self.verify = verify
    }

    enum CodingKeys: String, CodingKey {
        case producers
        case recordSize = "record_size"
        case mode, sinks
        case offeredRecords = "offered_records"
        case writtenRecords = "written_records"
        case droppedRecords = "dropped_records"
        case shippedBytes = "shipped_bytes"
        case elapsedSeconds = "elapsed_seconds"
        case recordsPerSecond = "records_per_second"
        case bytesPerSecond = "bytes_per_second"
        case cpuSeconds = "cpu_seconds"
        case peakRSSBytes = "peak_rss_bytes"
        case producerNsPerRecord = "producer_ns_per_record"
        case e2eLatencyMs = "e2e_latency_ms"
        case subbufSize = "subbuf_size"
        case subbufs
        case config
        case sinkStats = "sink_stats"
        case verify
        case overwrittenRecords = "overwritten_records"
        case producerSamples = "producer_ns_samples"
        case shipper
        case channel
        case warnings
    }

    /// The human-readable report: aligned `label  value` rows with units.
    func renderTable() -> String {
        var rows: [(String, String)] = [
            ("producers", "\(self.producers)"),
            ("record size", "\(self.recordSize) B"),
            ("geometry", "\(self.subbufs) × \(SizeParser.formatSize(UInt64(max(0, self.subbufSize)))) sub-buffers"),
            ("mode", self.mode),
            ("sinks", self.sinks.joined(separator: ", ")),
            ("offered", "\(self.offeredRecords) records"),
            ("written", "\(self.writtenRecords) records"),
            ("dropped", "\(self.droppedRecords) records" + (self.offeredRecords > 0 && self.droppedRecords > 0
                ? " (\(BenchUnits.fixed(100 * Double(self.droppedRecords) / Double(self.offeredRecords), 2))%)" : "")),
            ("shipped", BenchUnits.bytes(Double(self.shippedBytes))),
            ("elapsed", "\(BenchUnits.fixed(self.elapsedSeconds, 3)) s"),
            ("throughput", "\(BenchUnits.recordRate(self.recordsPerSecond))   \(BenchUnits.byteRate(self.bytesPerSecond))"),
            ("cpu", "\(BenchUnits.fixed(self.cpuSeconds, 3)) s" + (self.elapsedSeconds > 0
                ? " (\(BenchUnits.fixed(self.cpuSeconds / self.elapsedSeconds, 2)) cores)" : "")),
            ("peak rss", BenchUnits.bytes(Double(self.peakRSSBytes))),
            ("producer ns/record", "p50 \(BenchUnits.fixed(self.producerNsPerRecord.p50, 0))  p99 \(BenchUnits.fixed(self.producerNsPerRecord.p99, 0))  p99.9 \(BenchUnits.fixed(self.producerNsPerRecord.p999, 0))"),
        ]
        if let overwritten = self.overwrittenRecords {
            rows.insert(("overwritten", "\(overwritten) records (accepted, then overwritten before shipping)"), at: 8)
        }
        if let latency = self.e2eLatencyMs {
            rows.append(("end-to-end latency", "p50 \(BenchUnits.fixed(latency.p50, 3)) ms  p99 \(BenchUnits.fixed(latency.p99, 3)) ms"))
        }
        if let channel = self.channel {
            rows.append(("channel", "\(channel.buffers) buffers, \(channel.subbuffersProduced) sub-buffers, \(channel.writerWaits) writer waits, \(channel.bufferFullEvents) buffer-full events"))
        }
        if let shipper = self.shipper {
            rows.append(("shipper", "\(shipper.subbuffersShipped) sub-buffers, \(BenchUnits.fixed(shipper.threadCPUSeconds, 3)) s cpu, "
                + "\(shipper.sleeps) sleeps, \(shipper.doorbellRings) doorbell rings, "
                + (shipper.registrationFallback ? "unregistered buffers" : "\(shipper.registeredBuffers) registered buffers")))
        }
        for stats in self.sinkStats {
            var value = "\(BenchUnits.bytes(Double(stats.shippedBytes))) in \(stats.subbuffers) sub-buffers"
            if let batches = stats.batches, batches > 0 { value += ", \(batches) batches" }
            if let fixed = stats.fixedWrites, fixed > 0 { value += ", \(fixed) WRITE_FIXED" }
            if let writebacks = stats.writebacks, writebacks > 0 { value += ", \(writebacks) writeback requests" }
            if stats.errors > 0 { value += ", \(stats.errors) errors" }
            if let dropped = stats.droppedSubbuffers, dropped > 0 { value += ", \(dropped) sub-buffers lost" }
            rows.append(("  \(stats.sink)", value))
        }
        if let verify = self.verify {
            rows.append(("verify", verify.ok ? "OK (\(verify.distinctRecords) records, \(verify.missingRecords) missing)" : "FAILED: " + verify.problems.joined(separator: "; ")))
        }
        for warning in self.warnings ?? [] {
            rows.append(("warning", warning))
        }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { BenchUnits.pad($0.0, to: width) + "  " + $0.1 }.joined(separator: "\n")
    }
}

/// Unit formatting for tables: decimal SI units (1 MB = 10^6 bytes, 1 M rec/s = 10^6 records/s).
enum BenchUnits {
    /// `value` with exactly `digits` decimals, e.g. `fixed(3.14159, 2)` = `"3.14"`.
    static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return "\(value)" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (abs(value) * scale).rounded()
        guard rounded < 9e18 else { return "\(value)" }
        let whole = UInt64(rounded)
        let integer = whole / UInt64(scale)
        let fraction = whole % UInt64(scale)
        var text = (value < 0 && whole != 0 ? "-" : "") + "\(integer)"
        if digits > 0 {
            let fractionText = "\(fraction)"
            text += "." + String(repeating: "0", count: digits - fractionText.count) + fractionText
        }
        return text
    }

    /// A record rate: `1.23 M rec/s`, `45.6 k rec/s`, `789 rec/s`.
    static func recordRate(_ perSecond: Double) -> String {
        if perSecond >= 1e6 { return "\(BenchUnits.fixed(perSecond / 1e6, 2)) M rec/s" }
        if perSecond >= 1e3 { return "\(BenchUnits.fixed(perSecond / 1e3, 1)) k rec/s" }
        return "\(BenchUnits.fixed(perSecond, 0)) rec/s"
    }

    /// A byte rate: `1.23 GB/s` from 1 GB/s up, else `456.7 MB/s`.
    static func byteRate(_ perSecond: Double) -> String {
        if perSecond >= 1e9 { return "\(BenchUnits.fixed(perSecond / 1e9, 2)) GB/s" }
        return "\(BenchUnits.fixed(perSecond / 1e6, 1)) MB/s"
    }

    /// A byte count: `512 B`, `4.1 kB`, `12.3 MB`, `1.50 GB`.
    static func bytes(_ count: Double) -> String {
        if count >= 1e9 { return "\(BenchUnits.fixed(count / 1e9, 2)) GB" }
        if count >= 1e6 { return "\(BenchUnits.fixed(count / 1e6, 1)) MB" }
        if count >= 1e3 { return "\(BenchUnits.fixed(count / 1e3, 1)) kB" }
        return "\(BenchUnits.fixed(count, 0)) B"
    }

    /// `text` padded with spaces on the right to `width` characters.
    static func pad(_ text: String, to width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    /// `text` padded with spaces on the left to `width` characters.
    static func padLeft(_ text: String, to width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }
}
