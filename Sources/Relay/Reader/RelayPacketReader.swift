internal import Glibc

/// Decodes a `packets` file: whole sub-buffers with their engine headers, as the
/// shipper's file sink writes them (`RelayFileSinkConfiguration.Format.packets`).
///
/// Each packet is self-describing (magic, version, sub-buffer size, buffer index,
/// sequence, timestamps, content size, padding, cumulative losses), so a reader can
/// check ordering and detect gaps, lapping and losses from the file alone.
///
/// ```swift
/// let reader = try RelayPacketReader(path: "/var/log/app.packets")
/// try reader.forEach { packet in
///     print(packet.buffer, packet.sequence, packet.records, packet.lostRecords)
///     consume(packet.content)
/// }
/// ```
public struct RelayPacketReader: Sendable {
    /// The file being decoded.
    public let path: String

    /// Opens `path` for decoding.
    ///
    /// - Throws: ``RelayError`` `.invalidArgument` if the file cannot be opened.
    public init(path: String) throws(RelayError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            throw RelayError(code: .invalidArgument, message: "cannot open packets file \(path); check the path", errno: errno)
        }
        close(fd)
        self.path = path
    }

    /// What the reader found wrong with the file.
    public struct Problem: Error, Sendable, Hashable, CustomStringConvertible {
        /// Byte offset of the bad packet.
        public let offset: Int
        /// What is wrong.
        public let message: String
        public var description: String { "packets file offset \(self.offset): \(self.message)" }
    }

    /// Calls `body` with every packet in file order.
    ///
    /// Zero-filled packet-sized holes (preallocated space a crashed writer never
    /// filled) are skipped. The views are valid only during the call.
    ///
    /// - Throws: ``Problem`` for a corrupt packet or a truncated tail, or what `body` throws.
    public func forEach(_ body: (RelaySubbuffer) throws -> Void) throws {
        let fd = open(self.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw RelayError(code: .invalidArgument, message: "cannot open packets file \(self.path)", errno: errno)
        }
        defer { close(fd) }
        var offset = 0
        var header = [UInt8](repeating: 0, count: RegionLayout.engineHeaderSize)
        var packet: [UInt8] = []
        while true {
            let got = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            if got == 0 { return }
            guard got == header.count else {
                throw Problem(offset: offset, message: "truncated packet header (\(got) bytes)")
            }
            let size = Int(header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.subbufSizeOffset, as: UInt32.self) })
            let magic = header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.magicOffset, as: UInt32.self) }
            if magic == 0 && header.allSatisfy({ $0 == 0 }) {
                // A hole: skip to the next page and look again.
                offset += 4096
                continue
            }
            // At most 1 GiB, the largest sub-buffer a channel accepts: a corrupt size field (up to
            // 2^31 as a power of two) must not make the decoder allocate and zero gigabytes.
            guard magic == SubbufferHeaderLayout.magic, size >= 4096, size <= 1 << 30, size & (size - 1) == 0 else {
                throw Problem(offset: offset, message: "not a relay packet (bad magic or size)")
            }
            if packet.count != size { packet = [UInt8](repeating: 0, count: size) }
            let read = packet.withUnsafeMutableBytes { pread(fd, $0.baseAddress, size, off_t(offset)) }
            guard read == size else {
                throw Problem(offset: offset, message: "truncated packet (\(read) of \(size) bytes)")
            }
            try packet.withUnsafeBytes { raw in
                guard let view = RelaySubbuffer(packet: raw) else {
                    throw Problem(offset: offset, message: "inconsistent packet header")
                }
                try body(view)
            }
            offset += size
        }
    }
}
