import Synchronization

/// Counters of one sink.
public struct RelaySinkStats: Sendable, Hashable {
    /// The sink's label (`file:PATH`, `tcp:HOST:PORT`, `unix:PATH`, `null`).
    public var label: String
    /// Bytes the sink finished (written to the file, or acknowledged by the peer's TCP).
    public var bytes: UInt64 = 0
    /// Sub-buffers the sink finished: written to the file, or acknowledged by the peer's
    /// TCP. These are released to the channel (once every sink of it finished).
    public var subbuffers: UInt64 = 0
    /// Watermark: sub-buffers handed to the kernel completely (write or send completed).
    /// Each counts once: a sub-buffer sent again after a reconnect does not count again.
    public var sentSubbuffers: UInt64 = 0
    /// Watermark: sub-buffers whose memory the kernel no longer references (for
    /// zero-copy sends, after the notification). Each counts once, like ``sentSubbuffers``.
    public var reusableSubbuffers: UInt64 = 0
    /// Files: sub-buffers covered by a successful fsync, i.e. written before that fsync was
    /// submitted. Never those a failed fsync covered (see ``durabilityUnknownSubbuffers``):
    /// a later success says nothing about them.
    public var durableSubbuffers: UInt64 = 0
    /// Files: sub-buffers that may have been lost after they were written, because an fsync
    /// failed: the ones it covered, those whose writes completed while it ran and those whose
    /// writes were in the kernel when its failure arrived. Linux may drop the dirty pages
    /// it failed to write back and reports that once, so no later fsync can prove them
    /// durable; they are never counted in ``durableSubbuffers``. Each failure is logged with
    /// its count. Non-zero means the device failed: check it (`dmesg`), and the file's
    /// contents, around the time of the logged failure.
    public var durabilityUnknownSubbuffers: UInt64 = 0
    /// I/O errors seen (each retried; nothing is dropped by the shipper).
    public var errors: UInt64 = 0
    /// Of ``errors``, failed connection attempts of a socket sink (address resolution, socket
    /// creation, connect refused or timed out); the rest are write and send errors. For a
    /// host name with several addresses, one attempt tries them all in turn and fails (counts
    /// once) only if none accepts.
    public var connectFailures: UInt64 = 0
    /// Socket reconnects.
    public var reconnects: UInt64 = 0
    /// Sub-buffers re-sent after a reconnect because the peer had not acknowledged them.
    public var resentSubbuffers: UInt64 = 0
    /// Zero-copy sends, and how many of them the kernel reported as copied anyway.
    public var zeroCopySends: UInt64 = 0
    public var zeroCopyCopied: UInt64 = 0
    /// Zero-copy sends that moved bytes and whose notification arrived (``zeroCopyCopied`` of
    /// them copied): a send's outcome is only known then. A send that failed before sending
    /// anything is in neither count (its notification always says "copied").
    public var zeroCopyNotifications: UInt64 = 0
    /// File writes issued as `WRITE_FIXED` from a registered region (see
    /// ``RelayFileSinkConfiguration/FixedBufferWrites``); the others were plain `WRITE`.
    public var fixedWrites: UInt64 = 0
    /// Writes (files: one `WRITEV`) or sends (sockets: one `SENDMSG`) that carried several
    /// sub-buffers at once, issued when sub-buffers queue up behind what the sink has in
    /// flight.
    public var batches: UInt64 = 0
    /// fsyncs completed.
    public var fsyncs: UInt64 = 0
    /// Writeback requests issued (files, under ``RelayFileSinkConfiguration/Writeback/everyBytes(_:)``):
    /// each asked the kernel to start writing a range of completed writes to the disk.
    public var writebacks: UInt64 = 0
    /// File rotations and reopens.
    public var rotations: UInt64 = 0
    public var reopens: UInt64 = 0
    /// Operations in flight now: handed to the kernel (or queued for it) and not completed.
    /// A file write that failed and waits for its retry is not counted until it is retried.
    public var inFlight: UInt64 = 0
    /// Whether the sink is currently failing (retrying with backoff).
    public var failing: Bool = false
    /// Socket sinks: whether a connection is established now (not while connecting).
    public var connected: Bool = false

    /// The fraction of zero-copy sends the kernel copied (1.0 on loopback).
    public var zeroCopyCopiedRatio: Double {
        self.zeroCopySends == 0 ? 0 : Double(self.zeroCopyCopied) / Double(self.zeroCopySends)
    }
}

/// Counters of a shipper.
public struct RelayShipperStats: Sendable, Hashable {
    /// Per sink, in configuration order.
    public var sinks: [RelaySinkStats]
    /// Relay regions registered as io_uring fixed buffers.
    public var registeredBuffers: Int
    /// Whether registration failed and unregistered operations are used instead.
    public var registrationFallback: Bool
    /// The io_uring setup in use (flags, fallbacks).
    public var ringSetup: String
    /// Sub-buffers taken from channels.
    public var subbuffersShipped: UInt64
    /// Sub-buffers released back to channels (consumed by every sink).
    public var subbuffersReleased: UInt64
    /// Overwrite-mode sub-buffers lost because a writer reused them before they were copied.
    public var subbuffersOverwritten: UInt64
    /// Switch-timer flushes.
    public var timerFlushes: UInt64
    /// End-to-end delay per sub-buffer: from its first possible commit (its begin time: the
    /// switch that reserved its first record, or for a buffer's first sub-buffer after open
    /// or reset that record's reserve, so idle time before it is not counted) to the
    /// completion that released it, in microseconds.
    public var delayMicroseconds: LatencySummary
    /// Loop iterations and sleeps (for CPU accounting).
    public var loopIterations: UInt64
    public var sleeps: UInt64
    /// Times writers (at deliveries, first records and closes) or commands woke the sleeping
    /// shipper through its doorbell: one futex wake each. Writers do not ring while every
    /// sink waits for completions already in flight (see `RelayConsumerWakeup`).
    public var doorbellRings: UInt64
    /// CPU seconds (user + system) used by the shipper thread.
    public var threadCPUSeconds: Double
}

/// Quantiles of a latency histogram.
public struct LatencySummary: Sendable, Hashable {
    public var count: UInt64
    public var p50: Double
    public var p99: Double
    public var max: Double
}

/// A log-linear histogram of microsecond values (HdrHistogram-like, 3 significant
/// bits per power of two), updated only by the shipper thread.
struct DelayHistogram {
    private var buckets = [UInt64](repeating: 0, count: 64 * 8)
    private(set) var count: UInt64 = 0
    private(set) var maximum: UInt64 = 0

    mutating func record(_ value: UInt64) {
        self.count += 1
        self.maximum = Swift.max(self.maximum, value)
        self.buckets[Self.bucket(value)] += 1
    }

    static func bucket(_ value: UInt64) -> Int {
        if value < 8 { return Int(value) }
        let exponent = 63 - value.leadingZeroBitCount  // >= 3
        let mantissa = Int((value >> UInt64(exponent - 3)) & 7)
        return (exponent - 2) * 8 + mantissa
    }

    static func lowerBound(_ bucket: Int) -> UInt64 {
        if bucket < 8 { return UInt64(bucket) }
        let exponent = bucket / 8 + 2
        let mantissa = UInt64(bucket % 8)
        return (8 + mantissa) << UInt64(exponent - 3)
    }

    func quantile(_ q: Double) -> Double {
        if self.count == 0 { return 0 }
        let target = UInt64((Double(self.count) * q).rounded(.up))
        var seen: UInt64 = 0
        for (index, n) in self.buckets.enumerated() where n > 0 {
            seen += n
            if seen >= target { return Double(Self.lowerBound(index)) }
        }
        return Double(self.maximum)
    }

    var summary: LatencySummary {
        LatencySummary(count: self.count, p50: self.quantile(0.5), p99: self.quantile(0.99), max: Double(self.maximum))
    }
}
