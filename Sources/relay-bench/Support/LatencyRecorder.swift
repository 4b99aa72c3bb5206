import Histogram

/// p50/p99/p99.9 of a latency distribution (`producer_ns_per_record` in the report).
struct LatencyPercentiles: Codable, Sendable, Equatable {
    /// Median.
    var p50: Double
    /// 99th percentile.
    var p99: Double
    /// 99.9th percentile.
    var p999: Double
}

/// p50/p99 of end-to-end latency (`e2e_latency_ms` in the report).
struct EndToEndLatency: Codable, Sendable, Equatable {
    var p50: Double
    var p99: Double
}

/// One thread's latency histogram (HdrHistogram, 3 significant digits, 1 ns ... 60 s).
///
/// Keep one per producer thread as a local `var` (or in memory only that thread touches) and call
/// ``record(_:)`` on the hot path: with a fixed range and auto-resize off, `Histogram.record`
/// only increments a preallocated counter (values above the range are clamped to it), so it
/// never allocates or locks. Merge the threads' recorders with ``merge(_:)`` at the end.
struct LatencyRecorder: Sendable {
    /// The largest recordable value, in nanoseconds (60 s); larger values are clamped.
    static let highestTrackable: UInt64 = 60_000_000_000

    private(set) var histogram: Histogram<UInt64>

    /// Creates an empty recorder; this allocates the counts array (about 200 KB) up front.
    init() {
        self.histogram = Histogram<UInt64>(
            lowestDiscernibleValue: 1,
            highestTrackableValue: LatencyRecorder.highestTrackable,
            numberOfSignificantValueDigits: .three
        )
        self.histogram.autoResize = false
    }

    /// Records one value in nanoseconds; no allocation.
    @inline(__always)
    mutating func record(_ nanoseconds: UInt64) {
        self.histogram.record(min(nanoseconds, LatencyRecorder.highestTrackable))
    }

    /// The number of recorded values.
    var count: UInt64 { self.histogram.totalCount }

    /// Adds `other`'s counts to this recorder.
    mutating func merge(_ other: LatencyRecorder) {
        self.histogram.add(other.histogram)
    }

    /// Merges per-thread recorders into one.
    static func merged(_ recorders: [LatencyRecorder]) -> LatencyRecorder {
        var total = LatencyRecorder()
        for recorder in recorders { total.merge(recorder) }
        return total
    }

    /// The value at `percentile` (0...100), in nanoseconds; 0 when empty.
    func value(atPercentile percentile: Double) -> UInt64 {
        self.count == 0 ? 0 : self.histogram.valueAtPercentile(percentile)
    }

    /// p50/p99/p99.9 in nanoseconds.
    var percentiles: LatencyPercentiles {
        LatencyPercentiles(
            p50: Double(self.value(atPercentile: 50)),
            p99: Double(self.value(atPercentile: 99)),
            p999: Double(self.value(atPercentile: 99.9))
        )
    }

    /// p50/p99 converted to milliseconds, for end-to-end latency recorded in nanoseconds.
    var endToEndMilliseconds: EndToEndLatency {
        EndToEndLatency(p50: Double(self.value(atPercentile: 50)) / 1e6, p99: Double(self.value(atPercentile: 99)) / 1e6)
    }
}
