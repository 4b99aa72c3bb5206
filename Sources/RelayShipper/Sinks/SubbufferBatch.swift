internal import CRelayLinux
internal import Glibc

/// How the sinks batch sub-buffers: the ones queued behind what a sink has in flight leave
/// together, as one vectored operation (`WRITEV` for files, `SENDMSG` for sockets), so small
/// sub-buffers do not cost one io_uring operation (an io-wq punt for a buffered ext4 write,
/// a ring round trip for a socket's single send in flight) each.
///
/// A batch holds the sub-buffers in queue order, which is the order separate operations
/// would have used, so the file or the stream gets the same bytes.
enum SubbufferBatch {
    /// Most sub-buffers in one batch (below the kernel's 1024 iovecs).
    static let maxCount = 256
    /// A batch stops growing at this many bytes (a single sub-buffer may exceed it).
    static let maxBytes = 1 << 20

    /// How many queued sub-buffers go into the next batch, and their bytes.
    ///
    /// - Parameters:
    ///   - first: Bytes of the first one (always in the batch).
    ///   - queued: How many are queued, the first included.
    ///   - bytes: The byte count of queued sub-buffer `i` (`1..<queued`).
    ///   - fits: Whether a batch may grow to this many bytes (e.g. before a rotation point).
    /// - Returns: At least 1. The batch stops before an empty sub-buffer, at ``maxCount``,
    ///   at ``maxBytes`` and where `fits` says no.
    static func plan(
        first: Int, queued: Int, bytes: (Int) -> Int, fits: (Int) -> Bool = { _ in true }
    ) -> (count: Int, length: Int) {
        var count = 1
        var length = first
        while count < Self.maxCount && count < queued {
            let next = bytes(count)
            guard next > 0, length + next <= Self.maxBytes, fits(length + next) else { break }
            length += next
            count += 1
        }
        return (count, length)
    }

    /// Points `vectors` at `ranges` in order, leaving out their first `skip` bytes (what a
    /// short operation already moved). Returns how many vectors it filled (at most
    /// ``maxCount``, the capacity callers allocate).
    static func fill(
        _ vectors: UnsafeMutablePointer<iovec>, skipping skip: Int, _ ranges: some Sequence<UnsafeRawBufferPointer>
    ) -> Int {
        var skip = skip
        var count = 0
        for range in ranges {
            if skip >= range.count {
                skip -= range.count
                continue
            }
            precondition(count < Self.maxCount, "a batch holds at most \(Self.maxCount) sub-buffers")
            vectors[count] = iovec(iov_base: UnsafeMutableRawPointer(mutating: range.baseAddress! + skip), iov_len: range.count - skip)
            skip = 0
            count += 1
        }
        return count
    }
}
