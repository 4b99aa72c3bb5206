//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import RelayTestSupport
import Testing

@testable import RelayLogging

/// The block scans that find bytes to escape (16 bytes at a time, ``JSONSpecialBytes``,
/// ``ByteBlock/lanesEqual(to:)``) against a straightforward per-scalar JSON escaper.
@Suite("JSON escaping, differential")
struct EncodingEscapingDifferentialTests {
    /// The JSON string body of `string`, one scalar at a time: `\b \t \n \f \r \" \\`, `\u00xx` for
    /// the other C0 controls and DEL, `\u0085 \u2028 \u2029` (line breaks some readers split on),
    /// everything else as it is.
    static func referenceEscape(_ string: String) -> [UInt8] {
        var out: [UInt8] = []
        for scalar in string.unicodeScalars {
            switch scalar.value {
            case 0x08: out += Array(#"\b"#.utf8)
            case 0x09: out += Array(#"\t"#.utf8)
            case 0x0A: out += Array(#"\n"#.utf8)
            case 0x0C: out += Array(#"\f"#.utf8)
            case 0x0D: out += Array(#"\r"#.utf8)
            case 0x22: out += Array(#"\""#.utf8)
            case 0x5C: out += Array(#"\\"#.utf8)
            case 0x00..<0x20, 0x7F, 0x85, 0x2028, 0x2029:
                let hex = String(scalar.value, radix: 16)
                out += Array(("\\u" + String(repeating: "0", count: 4 - hex.count) + hex).utf8)
            default:
                out += Array(String(scalar).utf8)
            }
        }
        return out
    }

    /// Random strings: mostly letters (long clean runs cross block boundaries), with quotes,
    /// backslashes, `/`, every C0 control, DEL, the three escaped line breaks and their UTF-8
    /// neighbours (U+0084, U+00A0, U+2027, U+202A, which must stay as they are), and 4-byte scalars.
    static func randomString(_ rng: inout SplitMix64) -> String {
        let specials: [Unicode.Scalar] =
            ["\"", "\\", "/", "\u{7F}", "\u{84}", "\u{85}", "\u{A0}", "é", "\u{2027}", "\u{2028}", "\u{2029}", "\u{202A}", "😀"]
            + (0..<0x20).map { Unicode.Scalar(UInt8($0)) }
        let length = Int(rng.next() % 90)
        var scalars = String.UnicodeScalarView()
        for _ in 0..<length {
            if rng.next() % 4 != 0 {
                scalars.append(Unicode.Scalar(UInt8(ascii: "a") + UInt8(rng.next() % 26)))
            } else {
                scalars.append(specials[Int(rng.next() % UInt64(specials.count))])
            }
        }
        return String(scalars)
    }

    @Test("the fast path and the general encoder escape random strings like a per-scalar reference")
    func randomStrings() {
        var rng = SplitMix64(state: 0x5EED)
        for round in 0..<20_000 {
            let string = Self.randomString(&rng)
            let expected = Self.referenceEscape(string)
            // The fast path (JSONLineRenderer.string, as for messages, keys and values).
            let fast = withUnsafeTemporaryAllocation(byteCount: 4096, alignment: 16) { buffer -> [UInt8]? in
                var renderer = JSONLineRenderer(buffer)
                guard renderer.string(string) else { return nil }
                return Array(renderer.rendered)
            }
            #expect(fast == expected, "round \(round): \(string.debugDescription)")
            // The general encoder (ByteCursor).
            var measure = ByteCursor.measuring()
            measure.appendEscaped(string, style: .json)
            let general = [UInt8](unsafeUninitializedCapacity: measure.count) { buffer, initialized in
                var cursor = ByteCursor(UnsafeMutableRawBufferPointer(buffer))
                cursor.appendEscaped(string, style: .json)
                initialized = cursor.count
            }
            #expect(general == expected, "round \(round): \(string.debugDescription)")
        }
    }

    @Test("lanesEqual marks exactly the lanes equal to the byte, for every byte value")
    func lanesEqual() {
        var rng = SplitMix64(state: 7)
        for _ in 0..<2_000 {
            var lanes = ByteBlock()
            for i in 0..<16 { lanes[i] = UInt8(truncatingIfNeeded: rng.next()) }
            let byte = rng.next() % 2 == 0 ? lanes[Int(rng.next() % 16)] : UInt8(truncatingIfNeeded: rng.next())
            let marked = lanes.lanesEqual(to: byte)
            for i in 0..<16 {
                #expect((marked[i] & 0x80 != 0) == (lanes[i] == byte))
            }
        }
    }
}
