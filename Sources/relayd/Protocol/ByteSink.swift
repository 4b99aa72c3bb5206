/// Where encoders put bytes: a counter (for exact-length computation) or a bounded buffer writer.
///
/// Encoders are generic over the sink, so ``RecordEncoder/encodedLength(of:context:)`` and
/// ``RecordEncoder/encode(_:context:into:)`` run the *same* code; the length is exact by construction.
protocol ByteSink {
    /// Appends one byte.
    mutating func append(_ byte: UInt8)
    /// Appends bytes.
    mutating func append(_ bytes: UnsafeRawBufferPointer)
}

extension ByteSink {
    /// Appends a non-negative decimal number without leading zeros.
    @inline(__always)
    mutating func appendDecimal(_ value: Int) {
        precondition(value >= 0)
        self.appendZeroPadded(value, width: 1)
    }

    /// Appends a non-negative decimal number, left-padded with zeros to at least `width` digits.
    mutating func appendZeroPadded(_ value: Int, width: Int) {
        var divisor = 1
        var digits = 1
        while divisor <= value / 10 {
            divisor *= 10
            digits += 1
        }
        if digits < width {
            for _ in digits..<width { self.append(UInt8(ascii: "0")) }
        }
        var rest = value
        while divisor > 0 {
            self.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest / divisor))
            rest %= divisor
            divisor /= 10
        }
    }

    /// Appends the UTF-8 of a static string.
    mutating func append(_ string: StaticString) {
        self.append(UnsafeRawBufferPointer(start: string.utf8Start, count: string.utf8CodeUnitCount))
    }
}

/// Counts bytes without storing them.
struct ByteCounter: ByteSink {
    /// Bytes appended so far.
    var count = 0

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        self.count += 1
    }

    @inline(__always)
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        self.count += bytes.count
    }
}

/// Writes into caller-provided memory; never writes past `capacity` (sets ``overflowed`` instead).
struct BufferWriter: ByteSink {
    /// Destination.
    let base: UnsafeMutableRawPointer
    /// Bytes available at `base`.
    let capacity: Int
    /// Bytes written so far.
    private(set) var count = 0
    /// Set when an append did not fit; the output is then incomplete.
    private(set) var overflowed = false

    /// Creates a writer over `buffer`.
    ///
    /// - Parameter buffer: The destination; must stay valid while the writer is used.
    init(_ buffer: UnsafeMutableRawBufferPointer) {
        self.base = buffer.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 0x10)!
        self.capacity = buffer.baseAddress == nil ? 0 : buffer.count
    }

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        guard self.count < self.capacity else {
            self.overflowed = true
            return
        }
        self.base.storeBytes(of: byte, toByteOffset: self.count, as: UInt8.self)
        self.count += 1
    }

    @inline(__always)
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
        guard bytes.count <= self.capacity - self.count else {
            self.overflowed = true
            return
        }
        (self.base + self.count).copyMemory(from: source, byteCount: bytes.count)
        self.count += bytes.count
    }
}
