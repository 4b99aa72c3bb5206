//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

/// A bounded, append-only writer over caller-provided raw memory.
///
/// A cursor writes into an `UnsafeMutableRawBufferPointer` it does not own (typically the memory a
/// relay channel reserved for one record) and never writes past its end. Every append either fits
/// completely and is written, or does not fit and is **not** written at all; in both cases ``count``
/// advances by the logical size of the append. So after an encoding pass:
///
/// - `count <= capacity`: the bytes `[0, count)` are written and valid;
/// - `count > capacity` (``overflowed``): nothing was written past the first append that did not
///   fit, and `count` is the **exact** number of bytes the pass needed, so a caller can size a
///   second reservation exactly.
///
/// A *measuring* cursor (``measuring()``) has no memory at all: it only counts, which computes the
/// exact encoded length of a record without writing it.
///
/// ```
///   buffer.baseAddress                                        buffer.baseAddress + capacity
///   |<-------------- written (valid) -------------->|<------ free ------>|
///   0                                             count                capacity
/// ```
///
/// Decimal integers are rendered straight into the buffer (no `String`, no allocation).
///
/// - Warning: The cursor holds a pointer to memory it does not own. Do not use it after that memory
///   is released or committed, and do not let it escape the scope that provides the memory.
package struct ByteCursor {
    /// Start of the destination memory; `nil` for a measuring cursor or an empty buffer.
    internal let base: UnsafeMutableRawPointer?

    /// Whether this cursor only counts (see ``measuring()``).
    package let isMeasuring: Bool

    /// The number of bytes this cursor may write (`Int.max` for an unlimited measuring cursor).
    package let capacity: Int

    /// The logical number of bytes appended so far, including appends that did not fit.
    ///
    /// When ``overflowed`` is `false` these bytes are all written. When it is `true`, this is the
    /// exact size the appends would have needed.
    package private(set) var count: Int

    /// Creates a cursor that writes into `buffer`, starting at its first byte.
    ///
    /// - Parameter buffer: The destination memory. The cursor writes at most `buffer.count` bytes.
    ///
    /// - Warning: Do not escape the pointer: the cursor must not outlive `buffer`.
    package init(_ buffer: UnsafeMutableRawBufferPointer) {
        self.base = buffer.baseAddress
        self.isMeasuring = false
        self.capacity = buffer.baseAddress == nil ? 0 : buffer.count
        self.count = 0
    }

    internal init(base: UnsafeMutableRawPointer?, measuring: Bool, capacity: Int) {
        self.base = measuring ? nil : base
        self.isMeasuring = measuring
        self.capacity = base == nil && !measuring ? 0 : capacity
        self.count = 0
    }

    /// Creates a cursor that writes nothing and only counts bytes.
    ///
    /// Encoding a record into a measuring cursor computes its exact encoded length.
    ///
    /// - Returns: A cursor with unlimited capacity and no memory.
    package static func measuring() -> ByteCursor {
        ByteCursor(base: nil, measuring: true, capacity: Int.max)
    }

    /// Creates a cursor that writes nothing and only counts bytes, and reports ``overflowed`` once
    /// more than `limit` bytes were appended.
    ///
    /// - Parameter limit: The capacity to pretend.
    /// - Returns: A measuring cursor with capacity `limit`.
    package static func measuring(limit: Int) -> ByteCursor {
        ByteCursor(base: nil, measuring: true, capacity: Swift.max(0, limit))
    }

    /// Whether an append did not fit: the written bytes are incomplete and ``count`` is the size
    /// that would have been needed.
    package var overflowed: Bool {
        self.count > self.capacity
    }

    /// The number of bytes that can still be appended without overflowing (0 once overflowed).
    package var remainingCapacity: Int {
        self.count >= self.capacity ? 0 : self.capacity - self.count
    }

    // MARK: - Core

    /// Advances ``count`` by `n` and returns where the `n` bytes must be written, or `nil` when they
    /// must not be written (measuring, or they do not fit).
    internal mutating func claim(_ n: Int) -> UnsafeMutableRawPointer? {
        let start = self.count
        self.count = start &+ n
        guard let base = self.base, n <= self.capacity &- start, start <= self.capacity else {
            return nil
        }
        return base + start
    }

    /// Moves ``count`` back to an earlier value, discarding everything appended after it.
    ///
    /// - Parameter mark: A value ``count`` had earlier in this pass.
    package mutating func rewind(to mark: Int) {
        precondition(mark >= 0 && mark <= self.count, "ByteCursor.rewind(to:) needs an earlier count")
        self.count = mark
    }

    // MARK: - Appending

    /// Appends one byte.
    ///
    /// - Parameter byte: The byte to append.
    package mutating func append(_ byte: UInt8) {
        if let p = self.claim(1) {
            p.storeBytes(of: byte, as: UInt8.self)
        }
    }

    /// Appends `count` copies of a byte.
    ///
    /// - Parameters:
    ///   - byte: The byte to append.
    ///   - count: How many times to append it.
    package mutating func append(repeating byte: UInt8, count: Int) {
        guard count > 0 else { return }
        if let p = self.claim(count) {
            p.initializeMemory(as: UInt8.self, repeating: byte, count: count)
        }
    }

    /// Appends raw bytes.
    ///
    /// - Parameter bytes: The bytes to copy.
    package mutating func append(contentsOf bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        if let p = self.claim(bytes.count) {
            p.copyMemory(from: source, byteCount: bytes.count)
        }
    }

    /// Appends the UTF-8 bytes of a buffer.
    ///
    /// - Parameter bytes: The bytes to copy.
    package mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>) {
        self.append(contentsOf: UnsafeRawBufferPointer(bytes))
    }

    /// Appends the UTF-8 bytes of a static string (for fixed syntax such as `"level":"`).
    ///
    /// - Parameter string: A static string with a pointer representation (any literal that is not a
    ///   single Unicode scalar).
    package mutating func append(_ string: StaticString) {
        if string.hasPointerRepresentation {
            self.append(contentsOf: UnsafeRawBufferPointer(start: string.utf8Start, count: string.utf8CodeUnitCount))
        } else {
            string.withUTF8Buffer { self.append(contentsOf: $0) }
        }
    }

    /// Appends the UTF-8 bytes of a string verbatim (no escaping).
    ///
    /// - Parameter string: The string to copy.
    package mutating func appendVerbatim(_ string: String) {
        withUTF8Bytes(of: string) { self.append(contentsOf: $0) }
    }

    // MARK: - Decimal integers

    /// The number of decimal digits of `value` (1 for 0).
    ///
    /// - Parameter value: A non-negative value.
    /// - Returns: The number of digits `value` prints with.
    package static func decimalDigitCount(_ value: UInt64) -> Int {
        var digits = 1
        var v = value
        while v >= 10_000 {
            v /= 10_000
            digits &+= 4
        }
        if v >= 1000 { return digits &+ 3 }
        if v >= 100 { return digits &+ 2 }
        if v >= 10 { return digits &+ 1 }
        return digits
    }

    /// Appends an unsigned integer in decimal, without leading zeros.
    ///
    /// - Parameter value: The value to append.
    package mutating func appendDecimal(_ value: UInt64) {
        self.appendDecimal(value, minimumDigits: 1)
    }

    /// Appends a signed integer in decimal (with a leading `-` when negative).
    ///
    /// - Parameter value: The value to append.
    package mutating func appendDecimal(_ value: Int64) {
        if value < 0 {
            self.append(UInt8(ascii: "-"))
        }
        self.appendDecimal(value.magnitude, minimumDigits: 1)
    }

    /// Appends an integer in decimal (with a leading `-` when negative).
    ///
    /// - Parameter value: The value to append.
    package mutating func appendDecimal(_ value: Int) {
        self.appendDecimal(Int64(value))
    }

    /// Appends an unsigned integer in decimal.
    ///
    /// - Parameter value: The value to append.
    package mutating func appendDecimal(_ value: UInt) {
        self.appendDecimal(UInt64(value), minimumDigits: 1)
    }

    /// Appends an unsigned integer in decimal, left-padded with `0` to at least `minimumDigits`
    /// digits (for example `7` with 2 digits is `07`).
    ///
    /// - Parameters:
    ///   - value: The value to append.
    ///   - minimumDigits: The minimum number of digits to write.
    package mutating func appendDecimal(_ value: UInt64, minimumDigits: Int) {
        let digits = Swift.max(Self.decimalDigitCount(value), minimumDigits)
        guard let p = self.claim(digits) else { return }
        var v = value
        var i = digits
        while i > 0 {
            i &-= 1
            let (q, r) = v.quotientAndRemainder(dividingBy: 10)
            p.storeBytes(of: UInt8(truncatingIfNeeded: r) &+ UInt8(ascii: "0"), toByteOffset: i, as: UInt8.self)
            v = q
        }
    }

    // MARK: - Moving written bytes

    /// Copies `length` written bytes from offset `source` to offset `destination` (the ranges may
    /// overlap). Does nothing for a measuring cursor.
    ///
    /// - Parameters:
    ///   - source: Offset of the first byte to move.
    ///   - destination: Offset to move it to.
    ///   - length: Number of bytes to move; `max(source, destination) + length` must not exceed
    ///     ``capacity``.
    package mutating func moveBytes(from source: Int, to destination: Int, length: Int) {
        guard let base = self.base, length > 0 else { return }
        precondition(
            source >= 0 && destination >= 0 && Swift.max(source, destination) <= self.capacity &- length,
            "ByteCursor.moveBytes out of bounds"
        )
        (base + destination).copyMemory(from: base + source, byteCount: length)
    }

    /// A cursor over the memory that starts `offset` bytes after the current ``count`` and is at most
    /// `limit` bytes long. A measuring cursor returns a measuring cursor limited to `limit`.
    ///
    /// - Parameters:
    ///   - offset: How many bytes after ``count`` the new cursor starts.
    ///   - limit: The largest capacity the new cursor may have.
    /// - Returns: The new cursor; its capacity is 0 when the region is empty.
    internal func subcursor(skipping offset: Int, limit: Int) -> ByteCursor {
        let start = self.count &+ offset
        let available = self.capacity == Int.max ? Int.max : Swift.max(0, self.capacity &- start)
        let capacity = Swift.max(0, Swift.min(available, limit))
        guard let base = self.base else {
            return ByteCursor(base: nil, measuring: self.isMeasuring, capacity: capacity)
        }
        return ByteCursor(base: capacity > 0 ? base + start : base, measuring: false, capacity: capacity)
    }

    /// Advances ``count`` over `n` bytes that were written through a ``subcursor(skipping:limit:)``.
    internal mutating func advance(by n: Int) {
        self.count &+= n
    }

    /// A read-only view of the written bytes `[0, count)`, for tests and callers that check output.
    ///
    /// - Parameter body: Receives the written bytes (empty for a measuring or overflowed cursor).
    /// - Returns: What `body` returns.
    ///
    /// - Warning: Do not escape the pointer.
    package func withWrittenBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        guard let base = self.base, !self.overflowed else {
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        return try body(UnsafeRawBufferPointer(start: base, count: self.count))
    }
}

/// Calls `body` with the contiguous UTF-8 bytes of `string` without copying them (native Swift
/// strings, which include all strings on Linux, are contiguous; others are copied once).
internal func withUTF8Bytes<R>(of string: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
    if let result = string.utf8.withContiguousStorageIfAvailable(body) {
        return result
    }
    var copy = string
    return copy.withUTF8(body)
}
