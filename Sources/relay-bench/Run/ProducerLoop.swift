import ArgumentParser
import Dispatch
import Glibc
import Relay
import Synchronization

/// How producers hand records to the channel (`--api`).
enum WriteAPI: String, CaseIterable, Sendable, Codable, ExpressibleByArgument {
    /// `reserve(size)`, format in place, `commit()`: no copy (relayfs `relay_reserve`).
    case reserve
    /// Format into a per-thread scratch record, then `write(_:)` copies it in (relayfs `relay_write`).
    case write
    /// Each producer claims an exclusive buffer (``RelayExclusiveWriter``, relayfs
    /// `__relay_write`) and formats each record in place (`write(count:_:)`) with plain
    /// stores: no locked instruction and no copy per record.
    case exclusive
}

extension WriteAPI {
    /// A few words for tables.
    var summary: String {
        switch self {
        case .reserve: return "reserve+commit"
        case .write: return "write (copy)"
        case .exclusive: return "exclusive buffers"
        }
    }
}

/// What one producer thread did.
struct ProducerResult: Sendable {
    /// Records offered (sequences `0..<offered` were attempted).
    var offered: UInt64 = 0
    /// Records the channel accepted.
    var written: UInt64 = 0
    /// Records the channel refused: no free sub-buffer (drop mode, overwrite lapping a stalled
    /// writer) or block timeout.
    var dropped: UInt64 = 0
    /// Records refused because the channel was closed (never expected; counted as dropped too).
    var refusedClosed: UInt64 = 0
    /// Sampled per-record cost in nanoseconds.
    var latency = LatencyRecorder()
    /// Why the producer could not write at all (e.g. no exclusive buffer to claim).
    var failure: String?
    /// The thread's CPU time (user + system).
    var cpuSeconds: Double = 0
}

/// The shared state of one run's producers: a start gate, a stop flag and the results.
final class ProducerControl: Sendable {
    /// Opened once per producer when the clock starts.
    let gate = DispatchSemaphore(value: 0)
    /// Signalled once by each producer when it is done.
    let done = DispatchSemaphore(value: 0)
    /// Set when a `--seconds` run is over; producers poll it.
    let stop = Atomic<Bool>(false)
    /// The `BenchClock` time the run started; written before the gate opens.
    let startNanoseconds = Atomic<UInt64>(0)
    /// The `BenchClock` time a `--seconds` run ends (0: count-bound); written before the gate opens.
    let deadlineNanoseconds = Atomic<UInt64>(0)
    /// One slot per producer.
    let results: RelayMutex<[ProducerResult?]>
    /// Whether producers time sampled records (see ``RunOptions/sampleProducerCost``).
    let samplesCost: Bool

    /// Creates the state for `producers` producers.
    init(producers: Int, samplesCost: Bool = true) {
        self.results = RelayMutex([ProducerResult?](repeating: nil, count: producers))
        self.samplesCost = samplesCost
    }
}

/// The producer thread body of `relay-bench run`: records in the documented format, written
/// straight into channel reservations (`reserve`, format in place, `commit`; no copy).
///
/// ## Accounting
/// Every sequence number a producer reaches is offered exactly once: it ends up in `written`
/// or in `dropped` (or `refusedClosed`), so offered = written + dropped. A dropped record's
/// sequence is not reused, so `verify` sees it as a gap.
///
/// ## Latency sampling
/// Timing every record would cost two clock reads per record, about as much as the write
/// itself. Instead about one record in 64 is timed on its own (from before `reserve` to after
/// `commit`, with the vDSO `CLOCK_MONOTONIC`), at pseudo-random intervals of 32...95 records so
/// the samples do not line up with sub-buffer boundaries. The cost of one clock read, measured
/// at start-up, is subtracted. Blocked waits (block mode) are part of the sampled cost.
enum ProducerLoop {
    /// Average records between latency samples.
    static let sampleInterval: UInt64 = 64

    /// The smallest difference between two back-to-back clock reads: what a sample's own
    /// clock read adds to it.
    static func clockOverhead() -> UInt64 {
        var best = UInt64.max
        for _ in 0..<2_000 {
            let first = BenchClock.nanoseconds()
            let second = BenchClock.nanoseconds()
            best = min(best, second &- first)
        }
        return best
    }

    /// Runs one producer to the end of its work.
    ///
    /// - Parameters:
    ///   - channel: The channel to write to.
    ///   - formatter: Renders records.
    ///   - producer: This producer's id.
    ///   - limit: Records to offer (`UInt64.max` for a `--seconds` run, which ends on `control.stop`).
    ///   - rate: Records per second (open loop), or `nil`.
    ///   - clockOverhead: Subtracted from every latency sample.
    ///   - control: Start time and stop flag.
    static func run(
        channel: RelayChannel,
        formatter: RecordFormatter,
        producer: Int,
        limit: UInt64,
        rate: Double?,
        api: WriteAPI = .reserve,
        clockOverhead: UInt64,
        control: ProducerControl
    ) -> ProducerResult {
        var result = ProducerResult()
        let cpuStart = ResourceUsage.currentThread()
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: formatter.size, alignment: 64)
        defer { scratch.deallocate() }
        switch api {
        case .reserve, .write:
            let writer = RecordWriter(
                channel: channel, cursor: RecordCursor(formatter: formatter, producer: producer), producer: producer, api: api,
                scratch: scratch)
            ProducerLoop.run(writer, limit: limit, rate: rate, clockOverhead: clockOverhead, control: control, result: &result)
        case .exclusive:
            do {
                let exclusive = try channel.makeExclusiveWriter(buffer: channel.sharedBuffers + producer)
                let writer = ExclusiveRecordWriter(
                    writer: exclusive, cursor: RecordCursor(formatter: formatter, producer: producer), producer: producer,
                    scratch: scratch)
                ProducerLoop.run(writer, limit: limit, rate: rate, clockOverhead: clockOverhead, control: control, result: &result)
            } catch {
                result.failure = "producer \(producer) could not claim an exclusive buffer: \(error.message)"
            }
        }
        result.cpuSeconds = ResourceUsage.currentThread().since(cpuStart).cpuSeconds
        return result
    }

    private static func run<Writer: ProducerWriter & ~Copyable>(
        _ writer: borrowing Writer, limit: UInt64, rate: Double?, clockOverhead: UInt64, control: ProducerControl, result: inout ProducerResult
    ) {
        if let rate {
            ProducerLoop.paced(writer, limit: limit, rate: rate, clockOverhead: clockOverhead, control: control, result: &result)
        } else {
            ProducerLoop.unpaced(writer, limit: limit, clockOverhead: clockOverhead, control: control, result: &result)
        }
    }

    /// As fast as the channel takes records.
    @inline(never)
    private static func unpaced<Writer: ProducerWriter & ~Copyable>(
        _ writer: borrowing Writer,
        limit: UInt64,
        clockOverhead: UInt64,
        control: ProducerControl,
        result: inout ProducerResult
    ) {
        var writes = SampledWrites(producer: writer.producer, clockOverhead: clockOverhead, sampling: control.samplesCost)
        var sequence: UInt64 = 0
        let timed = limit == UInt64.max
        while sequence < limit {
            // Relaxed: the flag only ends the loop; no data is published with it. Count-bound
            // runs never set it, so they skip the load.
            if timed && control.stop.load(ordering: .relaxed) { break }
            let open = writes.write(writer, sequence, latency: &result.latency)
            sequence &+= 1
            if !open { break }
        }
        writes.report(offered: sequence, into: &result)
    }

    /// Open loop: record `n` is due at `start + n / rate`; a producer that falls behind writes
    /// the overdue records at once (the schedule does not slip), one ahead of it sleeps. A
    /// `--seconds` run offers exactly the records due before its deadline (unless it stalls).
    @inline(never)
    private static func paced<Writer: ProducerWriter & ~Copyable>(
        _ writer: borrowing Writer,
        limit: UInt64,
        rate: Double,
        clockOverhead: UInt64,
        control: ProducerControl,
        result: inout ProducerResult
    ) {
        var writes = SampledWrites(producer: writer.producer, clockOverhead: clockOverhead, sampling: control.samplesCost)
        var sequence: UInt64 = 0
        // Relaxed: written by the main thread before it opened the gate (a semaphore, which
        // orders it before this load).
        let start = control.startNanoseconds.load(ordering: .relaxed)
        let nanosecondsPerRecord = 1e9 / rate
        var limit = limit
        // Relaxed: as `startNanoseconds`.
        let deadline = control.deadlineNanoseconds.load(ordering: .relaxed)
        if deadline > start {
            // Exactly the records due before the deadline: record n is due at start + n / rate.
            let due = (Double(deadline - start) / nanosecondsPerRecord).rounded(.up)
            limit = min(limit, due >= 1.8e19 ? UInt64.max : UInt64(due))
        }
        var allowed: UInt64 = 0
        while sequence < limit {
            // Relaxed: see unpaced(_:).
            if control.stop.load(ordering: .relaxed) { break }
            if sequence >= allowed {
                let now = BenchClock.nanoseconds()
                let due = UInt64(Double(now &- start) / nanosecondsPerRecord) &+ 1
                if sequence >= due {
                    let wake = start &+ UInt64(Double(sequence) * nanosecondsPerRecord)
                    // Sleep in slices of at most 50 ms so a --seconds deadline is noticed.
                    ProducerLoop.sleep(until: min(wake, now &+ 50_000_000))
                    continue
                }
                allowed = due
            }
            let open = writes.write(writer, sequence, latency: &result.latency)
            sequence &+= 1
            if !open { break }
        }
        writes.report(offered: sequence, into: &result)
    }

    /// Sleeps until `BenchClock` time `deadline` (absolute, `CLOCK_MONOTONIC`).
    private static func sleep(until deadline: UInt64) {
        var target = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        while clock_nanosleep(CLOCK_MONOTONIC, ProducerLoop.absoluteTime, &target, nil) == EINTR {}
    }

    /// `TIMER_ABSTIME`.
    private static let absoluteTime: Int32 = 1
}

/// Writes one record per call and counts the outcome; the producer loops are generic over it
/// (specialized, no existentials).
/// The write step both loops share: writes one record, times about one record in 64 (at a
/// random offset, so the samples do not beat with sub-buffer boundaries), and counts outcomes.
struct SampledWrites {
    private var random: SplitMix64
    private var nextSample: UInt64
    private let clockOverhead: UInt64
    private var written: UInt64 = 0
    private var dropped: UInt64 = 0
    private var closed: UInt64 = 0

    /// Creates the sampler of one producer; without `sampling` no record is timed (no
    /// sequence reaches `UInt64.max`).
    init(producer: Int, clockOverhead: UInt64, sampling: Bool = true) {
        self.random = SplitMix64(seed: UInt64(producer) &+ 0x5EED)
        self.nextSample = sampling ? self.random.next() & 63 : UInt64.max
        self.clockOverhead = clockOverhead
    }

    /// Writes record `sequence`. Returns `false` once the channel is closed (a stalled run
    /// that was stopped): it refuses everything from then on.
    @inline(__always)
    mutating func write<Writer: ProducerWriter & ~Copyable>(
        _ writer: borrowing Writer, _ sequence: UInt64, latency: inout LatencyRecorder
    ) -> Bool {
        if sequence == self.nextSample {
            let begin = BenchClock.nanoseconds()
            writer.write(sequence, written: &self.written, dropped: &self.dropped, closed: &self.closed)
            let cost = BenchClock.nanoseconds() &- begin
            latency.record(cost > self.clockOverhead ? cost - self.clockOverhead : 0)
            self.nextSample = sequence &+ 32 &+ (self.random.next() & 63)
        } else {
            writer.write(sequence, written: &self.written, dropped: &self.dropped, closed: &self.closed)
        }
        return self.closed == 0
    }

    /// Stores the counts in `result`.
    func report(offered: UInt64, into result: inout ProducerResult) {
        result.offered = offered
        result.written = self.written
        result.dropped = self.dropped + self.closed
        result.refusedClosed = self.closed
    }
}

protocol ProducerWriter: ~Copyable {
    /// The producer id.
    var producer: Int { get }

    /// Writes record `sequence` and counts the outcome.
    func write(_ sequence: UInt64, written: inout UInt64, dropped: inout UInt64, closed: inout UInt64)
}

/// Writes through the shared path: ``WriteAPI/reserve`` or ``WriteAPI/write``.
struct RecordWriter: ProducerWriter, ~Copyable {
    let channel: RelayChannel
    /// Renders this producer's records in order (every call writes the next sequence).
    let cursor: RecordCursor
    let producer: Int
    let api: WriteAPI
    /// One record of scratch space for ``WriteAPI/write``.
    let scratch: UnsafeMutableRawPointer

    /// Writes record `sequence` and counts the outcome.
    @inline(__always)
    func write(_ sequence: UInt64, written: inout UInt64, dropped: inout UInt64, closed: inout UInt64) {
        assert(self.cursor.sequence == sequence, "producer loops offer every sequence once, in order")
        switch self.api {
        case .reserve:
            do {
                let reservation = try self.channel.reserve(self.cursor.size)
                reservation.withUnsafeMutableBytes { bytes in
                    self.cursor.next(to: bytes.baseAddress.unsafelyUnwrapped)
                }
                reservation.commit()
                written &+= 1
            } catch {
                self.cursor.skip()
                switch error {
                case .closed: closed &+= 1
                case .dropped, .timedOut, .tooBig, .emptyReservation: dropped &+= 1
                }
            }
        case .write:
            self.cursor.next(to: self.scratch)
            switch self.channel.write(UnsafeRawBufferPointer(start: self.scratch, count: self.cursor.size)) {
            case .written: written &+= 1
            case .closed: closed &+= 1
            case .dropped, .timedOut, .tooBig: dropped &+= 1
            }
        case .exclusive:
            preconditionFailure("exclusive writes go through ExclusiveRecordWriter")
        }
    }
}

/// Writes through an exclusive buffer (``WriteAPI/exclusive``).
struct ExclusiveRecordWriter: ProducerWriter, ~Copyable {
    let writer: RelayExclusiveWriter
    /// Renders this producer's records in order (every call writes the next sequence).
    let cursor: RecordCursor
    let producer: Int
    /// One record of scratch space.
    let scratch: UnsafeMutableRawPointer

    /// Formats record `sequence` straight into the owned buffer (no scratch copy).
    @inline(__always)
    func write(_ sequence: UInt64, written: inout UInt64, dropped: inout UInt64, closed: inout UInt64) {
        assert(self.cursor.sequence == sequence, "producer loops offer every sequence once, in order")
        switch self.writer.write(count: self.cursor.size, { self.cursor.next(to: $0.baseAddress.unsafelyUnwrapped) }) {
        case .written: written &+= 1
        case .closed:
            self.cursor.skip()
            closed &+= 1
        case .dropped, .timedOut, .tooBig:
            self.cursor.skip()
            dropped &+= 1
        }
    }
}

/// A tiny, fast pseudo-random generator (SplitMix64) for sampling intervals.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    /// Creates a generator; equal seeds give equal sequences.
    init(seed: UInt64) {
        self.state = seed
    }

    /// The next 64 random bits.
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
