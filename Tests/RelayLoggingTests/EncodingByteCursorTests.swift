//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Testing

@testable import RelayLogging

@Suite("ByteCursor")
struct EncodingByteCursorTests {
    /// Runs `body` on a cursor over `capacity` bytes and returns the written bytes and the cursor.
    func write(capacity: Int, _ body: (inout ByteCursor) -> Void) -> (bytes: [UInt8], cursor: ByteCursor) {
        var storage = [UInt8](repeating: 0xEE, count: capacity + 8)
        var result: ByteCursor!
        storage.withUnsafeMutableBytes { raw in
            var cursor = ByteCursor(UnsafeMutableRawBufferPointer(rebasing: raw[0..<capacity]))
            body(&cursor)
            result = cursor
        }
        #expect(storage[capacity...].allSatisfy { $0 == 0xEE }, "wrote past the end")
        return (Array(storage[0..<Swift.min(result.count, capacity)]), result)
    }

    @Test("appends bytes, static strings and verbatim strings")
    func appends() {
        let (bytes, cursor) = write(capacity: 32) { c in
            c.append(UInt8(ascii: "a"))
            c.append("bc")
            c.appendVerbatim("dé")
            c.append(repeating: UInt8(ascii: "-"), count: 3)
        }
        #expect(String(decoding: bytes, as: UTF8.self) == "abcdé---")
        #expect(cursor.count == 9)
        #expect(!cursor.overflowed)
        #expect(cursor.remainingCapacity == 23)
    }

    @Test(
        "decimal integers without String",
        arguments: [
            (UInt64(0), "0"), (7, "7"), (9, "9"), (10, "10"), (99, "99"), (100, "100"), (9999, "9999"),
            (10_000, "10000"), (123_456_789, "123456789"), (UInt64.max, "18446744073709551615"),
        ])
    func decimals(value: UInt64, expected: String) {
        let (bytes, _) = write(capacity: 32) { $0.appendDecimal(value) }
        #expect(String(decoding: bytes, as: UTF8.self) == expected)
        #expect(ByteCursor.decimalDigitCount(value) == expected.utf8.count)
    }

    @Test("signed and padded decimals")
    func signedAndPadded() {
        let (bytes, _) = write(capacity: 64) { c in
            c.appendDecimal(Int64.min)
            c.append(" ")
            c.appendDecimal(-42)
            c.append(" ")
            c.appendDecimal(UInt64(7), minimumDigits: 3)
            c.append(" ")
            c.appendDecimal(UInt64(12345), minimumDigits: 3)
            c.append(" ")
            c.appendDecimal(UInt(0))
        }
        #expect(String(decoding: bytes, as: UTF8.self) == "-9223372036854775808 -42 007 12345 0")
    }

    @Test("every decimal 0...100_000 matches String(describing:)")
    func decimalSweep() {
        var storage = [UInt8](repeating: 0, count: 16)
        storage.withUnsafeMutableBytes { raw in
            for value in UInt64(0)...100_000 {
                var cursor = ByteCursor(raw)
                cursor.appendDecimal(value)
                let text = String(decoding: UnsafeRawBufferPointer(rebasing: raw[0..<cursor.count]), as: UTF8.self)
                if text != String(value) {
                    Issue.record("\(value) encoded as \(text)")
                    return
                }
            }
        }
    }

    @Test("an append that does not fit is not written, and count reports the size needed")
    func overflow() {
        let (bytes, cursor) = write(capacity: 5) { c in
            c.append("abc")
            c.append("defg")  // does not fit: nothing of it is written
            c.append("h")  // after an overflow nothing is written either
            c.appendDecimal(UInt64(12345))
        }
        #expect(bytes == Array("abc".utf8) + [0xEE, 0xEE])
        #expect(cursor.overflowed)
        #expect(cursor.count == 13)
        #expect(cursor.remainingCapacity == 0)
    }

    @Test("rewinding below the overflow point makes the cursor usable again")
    func rewind() {
        let (bytes, cursor) = write(capacity: 6) { c in
            c.append("abc")
            let mark = c.count
            c.append("defghij")
            #expect(c.overflowed)
            c.rewind(to: mark)
            #expect(!c.overflowed)
            c.append("xyz")
        }
        #expect(String(decoding: bytes, as: UTF8.self) == "abcxyz")
        #expect(!cursor.overflowed)
    }

    @Test("a measuring cursor counts exactly and writes nothing")
    func measuring() {
        var measure = ByteCursor.measuring()
        measure.append("abc")
        measure.appendDecimal(UInt64(1_000_000))
        measure.appendRFC3339(nanosecondsSinceEpoch: 0)
        measure.appendEscaped("a\"b\n", style: .json)
        #expect(measure.isMeasuring)
        #expect(!measure.overflowed)
        #expect(measure.count == 3 + 7 + 27 + 6)
        measure.withWrittenBytes { #expect($0.isEmpty) }

        var limited = ByteCursor.measuring(limit: 4)
        limited.append("abcd")
        #expect(!limited.overflowed)
        limited.append("e")
        #expect(limited.overflowed)
        #expect(limited.count == 5)
    }

    @Test("an empty buffer overflows on the first byte")
    func emptyBuffer() {
        var cursor = ByteCursor(UnsafeMutableRawBufferPointer(start: nil, count: 0))
        #expect(cursor.capacity == 0)
        cursor.append(UInt8(0))
        #expect(cursor.overflowed)
        #expect(!cursor.isMeasuring)
    }

    @Test("moveBytes handles overlapping ranges")
    func moveBytes() {
        let (bytes, _) = write(capacity: 8) { c in
            c.append("..abcdef")
            c.moveBytes(from: 2, to: 0, length: 6)
        }
        #expect(String(decoding: bytes, as: UTF8.self) == "abcdefef")
    }
}
