import Relay

/// Everything `relay-bench run` needs, validated: the workload, the channel geometry and the sinks.
///
/// Built from command-line options by ``RunCommand/makeConfiguration()`` (and by `compare` and
/// `sweep` for their swift-relay variant); ``validate()`` checks every rule without touching the
/// sinks (``Preflight`` does that).
struct RunConfiguration: Sendable, Equatable {
    /// How much work the producers offer.
    enum Amount: Sendable, Equatable, CustomStringConvertible {
        /// Exactly this many records in total, split over the producers as ``RecordSplit`` does.
        case records(UInt64)
        /// As many records as the producers manage (or the rate allows) in this many seconds.
        case seconds(Double)

        var description: String {
            switch self {
            case .records(let count): return "\(count) records"
            case .seconds(let seconds): return "\(seconds) s"
            }
        }
    }

    /// Producer threads.
    var producers: Int
    /// The amount of work.
    var amount: Amount
    /// Open-loop rate per producer in records per second, or `nil` for as fast as possible.
    var ratePerProducer: Double?
    /// Record size in bytes, newline included.
    var recordSize: Int
    /// Sub-buffer size in bytes.
    var subbufferSize: Int
    /// Sub-buffers per buffer.
    var subbufferCount: Int
    /// Per-CPU buffers, or `nil` for one per possible CPU.
    var buffers: Int?
    /// What producers do when no sub-buffer is free.
    var mode: BenchMode
    /// Where sub-buffers go (fan-out when more than one).
    var sinks: [SinkSpec]
    /// How producers hand records to the channel.
    var api: WriteAPI
    /// Whether the shipper registers the relay buffers as io_uring fixed buffers (zero-copy
    /// `WRITE_FIXED`/`SEND_ZC`); off, it uses plain `WRITE`/`SEND` from the same memory.
    var registerBuffers = true

    /// Creates a configuration.
    init(
        producers: Int,
        amount: Amount,
        ratePerProducer: Double? = nil,
        recordSize: Int,
        subbufferSize: Int = 1 << 20,
        subbufferCount: Int = 8,
        buffers: Int? = nil,
        mode: BenchMode = .block,
        sinks: [SinkSpec] = [.null],
        api: WriteAPI = .reserve
    ) {
        self.api = api
        self.producers = producers
        self.amount = amount
        self.ratePerProducer = ratePerProducer
        self.recordSize = recordSize
        self.subbufferSize = subbufferSize
        self.subbufferCount = subbufferCount
        self.buffers = buffers
        self.mode = mode
        self.sinks = sinks
    }

    /// The engine's channel configuration for this run.
    func channelConfiguration(name: String) -> RelayChannelConfiguration {
        let mode: RelayMode
        switch self.mode {
        case .block: mode = .block(timeout: nil)
        case .drop: mode = .drop
        case .overwrite: mode = .overwrite
        }
        return RelayChannelConfiguration(
            name: name,
            subbufferSize: self.subbufferSize,
            subbufferCount: self.subbufferCount,
            mode: mode,
            buffers: self.buffers,
            exclusiveBuffers: self.api == .exclusive ? self.producers : 0
        )
    }

    /// The geometry check, with the engine's real sub-buffer header size.
    var geometry: BenchGeometry {
        let probe = self.channelConfiguration(name: "relay-bench")
        // The engine keeps a header at the start of every sub-buffer; a record must fit after it.
        let header = max(0, self.subbufferSize - probe.maxRecordSize)
        return BenchGeometry(
            producers: self.producers,
            recordSize: self.recordSize,
            subbufferSize: self.subbufferSize,
            subbufferCount: self.subbufferCount,
            subbufferHeaderBytes: header
        )
    }

    /// The most records one producer offers, for the record format's sequence limit.
    var recordsPerProducerLimit: UInt64 {
        switch self.amount {
        case .records(let total):
            return RecordSplit.count(forProducer: 0, total: total, producers: max(1, self.producers))
        case .seconds(let seconds):
            // A producer writes far fewer than 10^9 records per second.
            let estimate = (seconds * (self.ratePerProducer ?? 1e9)).rounded(.up)
            return estimate >= 1.8e19 ? UInt64.max : UInt64(estimate)
        }
    }

    /// Checks every rule; the first broken one is thrown.
    ///
    /// - Throws: ``BenchError`` (exit code 2) naming the flag and the fix.
    func validate() throws(BenchError) {
        try self.geometry.validate()
        _ = try RecordFormatter(size: self.recordSize)
        switch self.amount {
        case .records(let count):
            guard count >= 1 else {
                throw BenchError("record count 0 is invalid: use --records 1 or more")
            }
        case .seconds(let seconds):
            guard seconds.isFinite, seconds > 0, seconds <= 86_400 else {
                throw BenchError("duration \(seconds) s is invalid: use --seconds with a value above 0 and at most 86400")
            }
        }
        if let rate = self.ratePerProducer {
            // Below 0.001 records/s the open-loop schedule's nanosecond deadlines overflow.
            guard rate.isFinite, rate >= 0.001, rate <= 1e10 else {
                throw BenchError("rate \(rate) records/s is invalid: use --rate from 0.001 up to 10G")
            }
        }
        if let buffers = self.buffers {
            guard (1...4096).contains(buffers) else {
                throw BenchError("buffer count \(buffers) is invalid: use --buffers from 1 to 4096, or leave it out for one per CPU")
            }
        }
        if self.api == .exclusive && self.producers > 4096 {
            throw BenchError("--api exclusive gives each producer its own buffer, at most 4096: use fewer --producers or --api reserve")
        }
        let limit = self.recordsPerProducerLimit
        if case .records = self.amount {
            try RecordFormatter.validate(producers: self.producers, recordsPerProducer: limit)
        } else {
            try RecordFormatter.validate(producers: self.producers, recordsPerProducer: min(limit, RecordFormatter.maxSequence + 1))
        }
        try RunSinks.validate(self.sinks)
    }
}
