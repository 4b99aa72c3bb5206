/// Self-checking records for stress tests: producer id, sequence, length and a
/// checksum over the payload, so a reader can tell intact, torn, duplicated and
/// missing records apart.
///
/// Layout (little-endian): `magic:u32 producer:u32 sequence:u64 length:u32 reserved:u32
/// payload[length-32] checksum:u64`; `length` is the whole record size (≥ 32).
public enum StressRecord {
    public static let magic: UInt32 = 0x5354_5231  // "1RTS"
    public static let minimumSize = 32

    /// Writes a record of exactly `size` bytes into `buffer`.
    public static func encode(producer: UInt32, sequence: UInt64, size: Int, into buffer: UnsafeMutableRawBufferPointer) {
        precondition(size >= self.minimumSize && buffer.count >= size)
        buffer.storeBytes(of: self.magic, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: producer, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: sequence, toByteOffset: 8, as: UInt64.self)
        buffer.storeBytes(of: UInt32(size), toByteOffset: 16, as: UInt32.self)
        buffer.storeBytes(of: 0, toByteOffset: 20, as: UInt32.self)
        var state = sequence &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(producer)
        for i in 24..<(size - 8) {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            buffer[i] = UInt8(truncatingIfNeeded: state >> 33)
        }
        buffer.storeBytes(of: self.checksum(UnsafeRawBufferPointer(rebasing: buffer[0..<(size - 8)])),
                          toByteOffset: size - 8, as: UInt64.self)
    }

    /// FNV-1a over `bytes`.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return hash
    }

    /// A decoded record header.
    public struct Decoded: Sendable, Hashable {
        public var producer: UInt32
        public var sequence: UInt64
        public var size: Int
    }

    /// Decodes and verifies the record at the start of `bytes`; `nil` if torn or corrupt.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Decoded? {
        guard bytes.count >= self.minimumSize,
            bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self) == self.magic
        else { return nil }
        let size = Int(bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
        guard size >= self.minimumSize, size <= bytes.count else { return nil }
        let stored = bytes.loadUnaligned(fromByteOffset: size - 8, as: UInt64.self)
        guard stored == self.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<(size - 8)])) else { return nil }
        return Decoded(
            producer: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self),
            sequence: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
            size: size)
    }
}
