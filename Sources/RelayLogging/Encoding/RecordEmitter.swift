//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

/// Receives the pieces of one record, in order.
///
/// The fast path renders a record with one generic function twice: once into a ``RecordSizer``
/// (which computes the size to reserve in a relay channel: exact, or an upper bound when texts were
/// not measured), then into a ``RecordWriter`` over the reservation. Both passes see the same
/// inputs, so the writer never runs out of space.
internal protocol RecordEmitter {
    /// Raw bytes, copied as they are.
    mutating func bytes(_ pointer: UnsafeRawPointer, count: Int)
    /// A fixed piece of syntax.
    mutating func literal(_ string: StaticString)
    /// One byte.
    mutating func byte(_ byte: UInt8)
    /// An unsigned integer in decimal.
    mutating func decimal(_ value: UInt64)
    /// Text, as the body of a JSON string (see ``EscapeStyle/json`` and ``TextPiece``).
    mutating func piece(_ piece: TextPiece)
    /// Up to 7 bytes of syntax packed like ``Syntax`` (bytes in the low 56 bits, first byte lowest;
    /// the count in the top byte).
    mutating func syntax(_ packed: UInt64)
}

/// UTF-8 text with its length as a JSON string body.
///
/// A piece is either *measured* (``escapedCount`` is exact: the writer copies text that needs no
/// escaping with plain block copies) or not yet (``escapedCount`` is ``unmeasured``: the sizer counts
/// the worst case, 6 bytes per input byte, and the writer escapes while it copies, in one pass).
internal struct TextPiece {
    /// The text (never `nil` when `count > 0`).
    var base: UnsafeRawPointer?
    /// The number of UTF-8 bytes.
    var count: UInt32
    /// The length as a JSON string body (`count` when nothing needs escaping), or ``unmeasured``.
    var escapedCount: UInt32

    /// The ``escapedCount`` of a piece that was not measured.
    static let unmeasured = UInt32.max

    /// Text that is measured later, if at all (see ``measure()``).
    @inline(__always)
    init(unmeasuredJSONText bytes: UnsafeRawBufferPointer) {
        self.base = bytes.baseAddress
        self.count = UInt32(truncatingIfNeeded: bytes.count)
        self.escapedCount = bytes.isEmpty ? 0 : Self.unmeasured
    }

    /// Computes the exact escaped length (scans the text once).
    @inline(__always)
    mutating func measure() {
        if self.escapedCount == Self.unmeasured, let base = self.base {
            self.escapedCount = UInt32(truncatingIfNeeded: jsonEscapedLength(base, count: Int(self.count)))
        }
    }

    /// The escaped length, or its upper bound when the piece is not measured (a JSON escape is at most
    /// 6 bytes per input byte).
    @inline(__always)
    var escapedBound: Int {
        self.escapedCount == Self.unmeasured ? Int(self.count) &* 6 : Int(self.escapedCount)
    }

    /// Bytes that are copied as they are (already rendered).
    @inline(__always)
    init(raw bytes: UnsafeRawBufferPointer) {
        self.base = bytes.baseAddress
        self.count = UInt32(truncatingIfNeeded: bytes.count)
        self.escapedCount = self.count
    }

}

extension RecordEmitter {
    /// UTF-8 bytes, copied as they are.
    @inline(__always)
    mutating func bytes(_ buffer: UnsafeRawBufferPointer) {
        if let base = buffer.baseAddress { self.bytes(base, count: buffer.count) }
    }
}

/// Computes the length of a record: exact when every ``TextPiece`` is measured, an upper bound
/// otherwise.
internal struct RecordSizer: RecordEmitter {
    /// The bytes counted so far.
    var count = 0

    @inline(__always)
    mutating func bytes(_ pointer: UnsafeRawPointer, count: Int) {
        self.count &+= count
    }

    @inline(__always)
    mutating func literal(_ string: StaticString) {
        self.count &+= string.utf8CodeUnitCount
    }

    @inline(__always)
    mutating func byte(_ byte: UInt8) {
        self.count &+= 1
    }

    @inline(__always)
    mutating func decimal(_ value: UInt64) {
        self.count &+= ByteCursor.decimalDigitCount(value)
    }

    @inline(__always)
    mutating func piece(_ piece: TextPiece) {
        self.count &+= piece.escapedBound
    }

    @inline(__always)
    mutating func syntax(_ packed: UInt64) {
        self.count &+= Int(packed &>> 56)
    }
}

/// The length of `bytes` as a JSON string body.
@inline(__always)
internal func jsonEscapedLength(_ base: UnsafeRawPointer, count: Int) -> Int {
    var length = count
    var i = JSONSpecialBytes.firstCandidate(in: base, from: 0, count: count)
    while i < count {
        let (input, escaped) = jsonEscapeClass(base, at: i, count: count)
        if escaped != 0 { length &+= escaped &- input }
        i = JSONSpecialBytes.firstCandidate(in: base, from: i &+ input, count: count)
    }
    return length
}

/// Writes a record into memory that is known to be large enough (sized by a ``RecordSizer``).
///
/// Copies of up to 16 bytes are done as one unaligned 16-byte store whenever 16 bytes of room are
/// left, so the bytes after a piece may be scribbled on before the next piece overwrites them; the
/// writer never stores past `end`.
internal struct RecordWriter: RecordEmitter {
    /// Where the next byte goes.
    var position: UnsafeMutableRawPointer
    /// The end of the memory.
    let end: UnsafeMutableRawPointer

    /// Creates a writer over `buffer`.
    @inline(__always)
    init(_ buffer: UnsafeMutableRawBufferPointer) {
        self.position = buffer.baseAddress!
        self.end = buffer.baseAddress! + buffer.count
    }

    /// The bytes written since `start`.
    @inline(__always)
    func written(since start: UnsafeMutableRawPointer) -> Int {
        self.position - start
    }

    @inline(__always)
    mutating func bytes(_ pointer: UnsafeRawPointer, count: Int) {
        self.copyPlain(pointer, count: count)
    }

    @inline(__always)
    mutating func literal(_ string: StaticString) {
        self.bytes(UnsafeRawPointer(string.utf8Start), count: string.utf8CodeUnitCount)
    }

    @inline(__always)
    mutating func piece(_ piece: TextPiece) {
        guard let base = piece.base else { return }
        if piece.escapedCount == piece.count {
            self.copyPlain(base, count: Int(piece.count))
        } else {
            self.jsonEscaped(base, count: Int(piece.count))
        }
    }

    @inline(__always)
    mutating func syntax(_ packed: UInt64) {
        let count = Int(packed &>> 56)
        assert(self.end - self.position >= count, "RecordWriter overflow")
        if self.end - self.position >= 8 {
            self.position.storeBytes(of: packed, as: UInt64.self)
        } else {
            var bytes = packed
            var i = 0
            while i < count {
                self.position.storeBytes(of: UInt8(truncatingIfNeeded: bytes), toByteOffset: i, as: UInt8.self)
                bytes &>>= 8
                i &+= 1
            }
        }
        self.position += count
    }

    /// Copies bytes that need no escaping; up to 32 as one or two 16-byte blocks when there is room
    /// for them (no call to `memcpy`).
    @inline(__always)
    mutating func copyPlain(_ source: UnsafeRawPointer, count: Int) {
        assert(self.end - self.position >= count, "RecordWriter overflow")
        let room = self.end - self.position
        if count <= 16 && room >= 16 {
            self.position.storeBytes(of: ByteBlock.load(from: source, remaining: count), as: ByteBlock.self)
        } else if count <= 32 && room >= 32 {
            self.position.storeBytes(of: source.loadUnaligned(as: ByteBlock.self), as: ByteBlock.self)
            self.position.storeBytes(
                of: ByteBlock.load(from: source + 16, remaining: count &- 16), toByteOffset: 16, as: ByteBlock.self)
        } else {
            self.position.copyMemory(from: source, byteCount: count)
        }
        self.position += count
    }

    @inline(__always)
    mutating func byte(_ byte: UInt8) {
        assert(self.end - self.position >= 1, "RecordWriter overflow")
        self.position.storeBytes(of: byte, as: UInt8.self)
        self.position += 1
    }

    /// Copies `count` bytes as a JSON string body, escaping while it copies: 16 bytes are loaded,
    /// stored and tested at once, and only a block with a candidate byte is looked at byte by byte.
    @inline(__always)
    mutating func jsonEscaped(_ source: UnsafeRawPointer, count: Int) {
        var i = 0
        while i < count {
            let remaining = count &- i
            let block = ByteBlock.load(from: source + i, remaining: remaining)
            var flags = BlockFlags(JSONSpecialBytes.candidates(block))
            var chunk = 16
            if remaining < 16 {
                flags.keepFirst(remaining)
                chunk = remaining
            }
            // The escaped form of these input bytes is at least as long as they are, so storing
            // `chunk` bytes stays within this string's output.
            if self.end - self.position >= 16 {
                self.position.storeBytes(of: block, as: ByteBlock.self)
            } else {
                self.position.copyMemory(from: source + i, byteCount: chunk)
            }
            if flags.isEmpty {
                self.position += chunk
                i &+= chunk
                continue
            }
            let plain = flags.first
            self.position += plain
            i &+= plain
            let (input, escaped) = jsonEscapeClass(source, at: i, count: count)
            if escaped == 0 {
                self.position.copyMemory(from: source + i, byteCount: input)
                self.position += input
            } else {
                assert(self.end - self.position >= escaped, "RecordWriter overflow")
                writeJSONEscape(source, at: i, input: input, escaped: escaped, to: self.position)
                self.position += escaped
            }
            i &+= input
        }
    }

    @inline(__always)
    mutating func decimal(_ value: UInt64) {
        let digits = ByteCursor.decimalDigitCount(value)
        assert(self.end - self.position >= digits, "RecordWriter overflow")
        var v = value
        var offset = digits
        while offset >= 2 {
            offset &-= 2
            let q = v / 100
            RFC3339.pair(v &- q &* 100, at: offset, self.position)
            v = q
        }
        if offset == 1 {
            self.position.storeBytes(of: UInt8(truncatingIfNeeded: v) &+ 0x30, as: UInt8.self)
        }
        self.position += digits
    }
}

/// Calls `body` with the UTF-8 bytes of `string` (native strings are read in place; small strings
/// are copied to the stack by the standard library).
@inline(__always)
internal func withRawUTF8<R>(of string: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    if let result = string.utf8.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) {
        return result
    }
    return withRawUTF8Copying(string, body)
}

@inline(never)
internal func withRawUTF8Copying<R>(_ string: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    var copy = string
    return copy.withUTF8 { body(UnsafeRawBufferPointer($0)) }
}

/// The UTF-8 bytes of `string` without a closure around their use, or `nil` for a string without
/// contiguous UTF-8 (which native Swift strings always have).
///
/// A string of more than 15 bytes keeps its bytes in its storage object (or in the binary, for a
/// literal), so the returned buffer points there and stays valid while that storage is alive: the
/// caller must keep a reference to it (a `LogEvent` being logged does). A string of up to 15 bytes
/// may be a *small* string whose bytes only exist inside the standard library's closure, so they are
/// copied into `slot` (16 bytes of the caller's stack).
@inline(__always)
internal func borrowUTF8(_ string: String, smallStringSlot slot: UnsafeMutableRawPointer) -> UnsafeRawBufferPointer? {
    string.utf8.withContiguousStorageIfAvailable { buffer -> UnsafeRawBufferPointer in
        let count = buffer.count
        if count > 15 {
            return UnsafeRawBufferPointer(buffer)
        }
        if count > 0 {
            slot.storeBytes(of: ByteBlock.load(from: buffer.baseAddress!, remaining: count), as: ByteBlock.self)
        }
        return UnsafeRawBufferPointer(start: slot, count: count)
    }
}
