//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

/// Sixteen bytes scanned at once, for finding the bytes of a string that need escaping.
///
/// The lane tests use wrapping arithmetic and bit operations, which LLVM lowers to a handful of
/// SSE2 instructions per block (SSE2 has no unsigned byte comparison, so ordered tests stay
/// arithmetic); equality uses `.==`, which lowers to one `pcmpeqb` on Swift 6.3 (older toolchains
/// emitted a branch per lane for SIMD comparisons). Each test leaves the high bit of a lane set when
/// the lane matches; ``BlockFlags`` reduces a block of such lanes to two words.
internal typealias ByteBlock = SIMD16<UInt8>

/// The match bits of one ``ByteBlock``: the high bit of each byte of `low` (lanes 0–7) and `high`
/// (lanes 8–15) is set for a lane that matched.
internal struct BlockFlags {
    var low: UInt64
    var high: UInt64

    @inline(__always)
    init(_ lanes: ByteBlock) {
        let words = unsafeBitCast(lanes, to: SIMD2<UInt64>.self)
        self.low = words[0] & 0x8080_8080_8080_8080
        self.high = words[1] & 0x8080_8080_8080_8080
    }

    /// Whether no lane matched.
    @inline(__always)
    var isEmpty: Bool { (self.low | self.high) == 0 }

    /// Keeps only lanes `0..<count` (`count` in 0...16).
    @inline(__always)
    mutating func keepFirst(_ count: Int) {
        if count < 8 {
            self.low &= (UInt64(1) &<< UInt64(count &* 8)) &- 1
            self.high = 0
        } else if count < 16 {
            self.high &= (UInt64(1) &<< UInt64((count &- 8) &* 8)) &- 1
        }
    }

    /// The index of the first matching lane (16 when none matched).
    @inline(__always)
    var first: Int {
        if self.low != 0 { return self.low.trailingZeroBitCount &>> 3 }
        if self.high != 0 { return 8 &+ (self.high.trailingZeroBitCount &>> 3) }
        return 16
    }
}

extension SIMD16 where Scalar == UInt8 {
    /// Loads the `remaining` bytes at `pointer` (at most 16 are read into lanes; lanes past
    /// `remaining` hold unspecified bytes, which callers mask with ``BlockFlags/keepFirst(_:)``).
    ///
    /// When fewer than 16 bytes remain, the load still reads 16 bytes if they lie in the same
    /// 4 KiB page as the first one (a page is mapped or not as a whole, so this cannot fault; it is
    /// the technique of glibc's `strlen`). Otherwise the bytes are copied into a zeroed block.
    @inline(__always)
    static func load(from pointer: UnsafeRawPointer, remaining: Int) -> ByteBlock {
        if remaining >= 16 || Self.blockStaysInPage(pointer) {
            return pointer.loadUnaligned(as: ByteBlock.self)
        }
        return Self.loadCopying(from: pointer, count: remaining)
    }

    /// ``load(from:remaining:)`` as two 8-byte loads. For bytes that were just stored 8 at a time (a
    /// small string, which the standard library copies to the stack for `withContiguousStorage…`), a
    /// 16-byte load would wait for both stores to reach the cache (no store-to-load forwarding across
    /// two stores); two 8-byte loads are each forwarded.
    @inline(__always)
    static func loadWords(from pointer: UnsafeRawPointer, remaining: Int) -> ByteBlock {
        if remaining >= 16 || Self.blockStaysInPage(pointer) {
            let words = SIMD2<UInt64>(
                pointer.loadUnaligned(as: UInt64.self), pointer.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            return unsafeBitCast(words, to: ByteBlock.self)
        }
        return Self.loadCopying(from: pointer, count: remaining)
    }

    /// Whether 16 bytes from `pointer` lie in the page of its first byte, so a load of all of them
    /// cannot fault even where fewer belong to the caller.
    ///
    /// Builds for AddressSanitizer (`-Xswiftc -DRELAY_ADDRESS_SANITIZER`, which `scripts/sanitize
    /// address` passes) answer no: the sanitizer reports the bytes past the end, which the
    /// hardware allows but the sanitizer cannot tell from a real overflow.
    @inline(__always)
    static func blockStaysInPage(_ pointer: UnsafeRawPointer) -> Bool {
        #if RELAY_ADDRESS_SANITIZER
        return false
        #else
        return (UInt(bitPattern: pointer) & 4095) <= 4096 - 16
        #endif
    }

    @inline(never)
    static func loadCopying(from pointer: UnsafeRawPointer, count: Int) -> ByteBlock {
        var block = ByteBlock(repeating: 0)
        withUnsafeMutableBytes(of: &block) { $0.baseAddress!.copyMemory(from: pointer, byteCount: count) }
        return block
    }

    /// High bit set in lanes equal to `byte` (all bits set, in fact: a lane of the comparison's mask).
    ///
    /// `.==` on `SIMD16<UInt8>` lowers to a single `pcmpeqb` on this toolchain (Swift 6.3; the other
    /// tests here stay arithmetic because SSE2 has no unsigned byte comparison), where the wrapping
    /// arithmetic form took three instructions and a constant.
    @inline(__always)
    func lanesEqual(to byte: UInt8) -> ByteBlock {
        unsafeBitCast(self .== ByteBlock(repeating: byte), to: ByteBlock.self)
    }

    /// High bit set in lanes below `bound` (`bound` at most 0x80).
    @inline(__always)
    func lanesBelow(_ bound: UInt8) -> ByteBlock {
        (self &- ByteBlock(repeating: bound)) & ~self
    }

    /// High bit set in lanes of 0x7F (DEL) and above (every non-ASCII byte).
    @inline(__always)
    func lanesDELOrNonASCII() -> ByteBlock {
        self | (self &+ ByteBlock(repeating: 1))
    }

    /// High bit set in lanes outside 0x20...0x7E: C0 controls, DEL and every non-ASCII byte
    /// (`b + 1` has the high bit for 0x7F...0xFE, `b - 0x20` for 0x00...0x1F and 0xA0...0xFF).
    @inline(__always)
    func lanesOutsidePrintableASCII() -> ByteBlock {
        (self &+ ByteBlock(repeating: 1)) | (self &- ByteBlock(repeating: 0x20))
    }
}

/// A set of bytes to find quickly, tested 16 at a time.
///
/// A scan finds *candidates*; the caller looks at each candidate closely (for example a non-ASCII
/// byte is a candidate in JSON only because it may start U+0085, U+2028 or U+2029).
internal protocol ByteClass {
    /// High bit set in the lanes that are candidates.
    static func candidates(_ block: ByteBlock) -> ByteBlock
}

extension ByteClass {
    /// The index of the first candidate in `bytes[start..<count]`, or `count` when there is none.
    @inline(__always)
    static func firstCandidate(in base: UnsafeRawPointer, from start: Int, count: Int) -> Int {
        var i = start
        while i < count {
            let remaining = count &- i
            var flags = BlockFlags(Self.candidates(ByteBlock.load(from: base + i, remaining: remaining)))
            if remaining < 16 { flags.keepFirst(remaining) }
            if !flags.isEmpty { return i &+ flags.first }
            i &+= 16
        }
        return count
    }
}

/// Bytes that a JSON string body cannot hold as they are: C0 controls, `"`, `\`, DEL, and every
/// non-ASCII byte (a candidate for NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR).
internal enum JSONSpecialBytes: ByteClass {
    @inline(__always)
    static func candidates(_ block: ByteBlock) -> ByteBlock {
        block.lanesOutsidePrintableASCII() | block.lanesEqual(to: 0x22) | block.lanesEqual(to: 0x5C)
    }
}

/// Bytes that force a logfmt value into quotes: space and C0 controls, `=`, `"`, `\`, DEL, and
/// every non-ASCII byte (a candidate for a Unicode line break).
internal enum LogfmtSpecialBytes: ByteClass {
    @inline(__always)
    static func candidates(_ block: ByteBlock) -> ByteBlock {
        block.lanesBelow(0x21) | block.lanesEqual(to: 0x3D) | block.lanesEqual(to: 0x22) | block.lanesEqual(to: 0x5C)
            | block.lanesDELOrNonASCII()
    }
}

/// Bytes an RFC 5424 `PARAM-VALUE` escapes with a backslash: `"`, `\` and `]`.
internal enum StructuredDataSpecialBytes: ByteClass {
    @inline(__always)
    static func candidates(_ block: ByteBlock) -> ByteBlock {
        block.lanesEqual(to: 0x22) | block.lanesEqual(to: 0x5C) | block.lanesEqual(to: 0x5D)
    }
}

/// Like ``StructuredDataSpecialBytes``, plus C0 controls and DEL.
internal enum StructuredDataSpecialOrControlBytes: ByteClass {
    @inline(__always)
    static func candidates(_ block: ByteBlock) -> ByteBlock {
        block.lanesBelow(0x20) | block.lanesEqual(to: 0x22) | block.lanesEqual(to: 0x5C) | block.lanesEqual(to: 0x5D)
            | block.lanesEqual(to: 0x7F)
    }
}

/// C0 controls and DEL: what an LF-framed syslog `MSG` escapes.
internal enum ControlBytes: ByteClass {
    @inline(__always)
    static func candidates(_ block: ByteBlock) -> ByteBlock {
        block.lanesBelow(0x20) | block.lanesEqual(to: 0x7F)
    }
}
