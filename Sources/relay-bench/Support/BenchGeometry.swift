import ArgumentParser

/// What `run` does when a producer finds no free sub-buffer (`--mode`).
enum BenchMode: String, CaseIterable, Sendable, Codable, ExpressibleByArgument {
    /// Wait for the shipper to free a sub-buffer: no loss, producers slow down.
    case block
    /// Drop the new record and count it.
    case drop
    /// Overwrite the oldest unshipped sub-buffer (flight-recorder mode).
    case overwrite
}

/// The relay and record geometry of a run, checked before anything is allocated.
struct BenchGeometry: Sendable, Equatable {
    /// The smallest sub-buffer size (one page).
    static let minimumSubbufferSize = 4096
    /// The largest sub-buffer size (1 GiB).
    static let maximumSubbufferSize = 1 << 30
    /// The largest sub-buffer count per buffer.
    static let maximumSubbufferCount = 1 << 16
    /// The largest buffer (sub-buffer size × count) per CPU: the io_uring fixed-buffer limit.
    static let maximumBufferSize = 1 << 30

    /// Producer threads (`--producers`).
    var producers: Int
    /// Record size in bytes (`--record-size`).
    var recordSize: Int
    /// Sub-buffer size in bytes (`--subbuf-size`).
    var subbufferSize: Int
    /// Sub-buffers per buffer (`--subbufs`).
    var subbufferCount: Int
    /// Bytes of each sub-buffer the engine keeps for its own header (padding count etc.).
    var subbufferHeaderBytes: Int

    /// Creates a geometry description.
    init(producers: Int, recordSize: Int, subbufferSize: Int, subbufferCount: Int, subbufferHeaderBytes: Int = 0) {
        self.producers = producers
        self.recordSize = recordSize
        self.subbufferSize = subbufferSize
        self.subbufferCount = subbufferCount
        self.subbufferHeaderBytes = subbufferHeaderBytes
    }

    /// The payload bytes of one sub-buffer.
    var subbufferPayload: Int { self.subbufferSize - self.subbufferHeaderBytes }

    /// Checks every rule; the first broken one is thrown.
    ///
    /// Rules (the engine's): producers in 1...``RecordFormatter/maxProducers``; record size ≥ 32
    /// and ≤ the sub-buffer payload; sub-buffer size a power of two in 4 KiB...1 GiB; sub-buffer
    /// count a power of two in 2...65536; the buffer (size × count) at most 1 GiB per CPU.
    ///
    /// - Throws: ``BenchError`` naming the offending flag and a value that works.
    func validate() throws(BenchError) {
        guard self.producers >= 1 else {
            throw BenchError("producer count \(self.producers) is invalid: use --producers 1 or more")
        }
        guard self.producers <= RecordFormatter.maxProducers else {
            throw BenchError("producer count \(self.producers) is too large: use --producers \(RecordFormatter.maxProducers) or fewer")
        }
        guard self.recordSize >= RecordFormatter.minimumSize else {
            throw BenchError("record size \(self.recordSize) is too small: use --record-size \(RecordFormatter.minimumSize) or more")
        }
        let size = self.subbufferSize
        guard size >= BenchGeometry.minimumSubbufferSize, size <= BenchGeometry.maximumSubbufferSize, size & (size - 1) == 0 else {
            let suggestion = BenchGeometry.nextPowerOfTwo(max(size, BenchGeometry.minimumSubbufferSize))
            throw BenchError(
                "sub-buffer size \(size) is invalid: use a power of two from 4096 to 1 GiB for --subbuf-size, e.g. \(min(suggestion, BenchGeometry.maximumSubbufferSize))"
            )
        }
        guard self.subbufferCount >= 2 else {
            throw BenchError("sub-buffer count \(self.subbufferCount) is too small: use --subbufs 2 or more so producers can fill one while another ships")
        }
        let count = self.subbufferCount
        guard count <= BenchGeometry.maximumSubbufferCount, count & (count - 1) == 0 else {
            let suggestion = min(BenchGeometry.nextPowerOfTwo(count), BenchGeometry.maximumSubbufferCount)
            throw BenchError("sub-buffer count \(count) is invalid: use a power of two from 2 to 65536 for --subbufs, e.g. \(suggestion)")
        }
        guard self.recordSize <= self.subbufferPayload else {
            let needed = BenchGeometry.nextPowerOfTwo(self.recordSize + self.subbufferHeaderBytes)
            throw BenchError(
                "record size \(self.recordSize) does not fit a \(size)-byte sub-buffer (payload \(self.subbufferPayload)): use --subbuf-size \(needed) or a smaller --record-size"
            )
        }
        let (total, overflow) = size.multipliedReportingOverflow(by: self.subbufferCount)
        guard !overflow, total <= BenchGeometry.maximumBufferSize else {
            throw BenchError(
                "buffer of \(self.subbufferCount) × \(size) bytes exceeds 1 GiB per CPU (the io_uring fixed-buffer limit): lower --subbufs or --subbuf-size"
            )
        }
    }

    /// The smallest power of two ≥ `value` (for `value` ≥ 1).
    static func nextPowerOfTwo(_ value: Int) -> Int {
        guard value > 1 else { return 1 }
        return 1 << (Int.bitWidth - (value - 1).leadingZeroBitCount)
    }
}
