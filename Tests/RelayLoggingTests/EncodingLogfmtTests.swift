//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Logging
import Testing

@testable import RelayLogging

/// A strict logfmt parser: `key=value` pairs separated by single spaces, ending with LF. A key is
/// one or more bytes other than space, controls, `=` and `"`. A value is either bare (no space,
/// control, `=`, `"` or `\`) or double-quoted with JSON escapes.
struct EncodingLogfmtParser {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func parse(_ bytes: [UInt8]) throws(Failure) -> [(key: String, value: String)] {
        guard bytes.last == 0x0A else { throw Failure(description: "no LF at the end") }
        var pairs: [(key: String, value: String)] = []
        var i = 0
        let end = bytes.count - 1
        while i < end {
            if !pairs.isEmpty {
                guard bytes[i] == 0x20 else { throw Failure(description: "expected a space at \(i)") }
                i += 1
            }
            let keyStart = i
            while i < end, bytes[i] > 0x20, bytes[i] != UInt8(ascii: "="), bytes[i] != UInt8(ascii: "\""),
                bytes[i] != 0x7F
            {
                i += 1
            }
            guard i > keyStart else { throw Failure(description: "empty key at \(i)") }
            let key = String(decoding: bytes[keyStart..<i], as: UTF8.self)
            guard i < end, bytes[i] == UInt8(ascii: "=") else { throw Failure(description: "expected = after \(key)") }
            i += 1
            if i < end, bytes[i] == UInt8(ascii: "\"") {
                i += 1
                var value: [UInt8] = []
                var closed = false
                while i < end {
                    let b = bytes[i]
                    if b == UInt8(ascii: "\"") {
                        closed = true
                        i += 1
                        break
                    }
                    guard b >= 0x20, b != 0x7F else { throw Failure(description: "raw control in quoted value") }
                    if b == UInt8(ascii: "\\") {
                        guard i + 1 < end else { throw Failure(description: "dangling backslash") }
                        let e = bytes[i + 1]
                        i += 2
                        switch e {
                        case UInt8(ascii: "\""): value.append(e)
                        case UInt8(ascii: "\\"): value.append(e)
                        case UInt8(ascii: "/"): value.append(e)
                        case UInt8(ascii: "b"): value.append(0x08)
                        case UInt8(ascii: "f"): value.append(0x0C)
                        case UInt8(ascii: "n"): value.append(0x0A)
                        case UInt8(ascii: "r"): value.append(0x0D)
                        case UInt8(ascii: "t"): value.append(0x09)
                        case UInt8(ascii: "u"):
                            guard i + 4 <= end,
                                let code = UInt32(String(decoding: bytes[i..<i + 4], as: UTF8.self), radix: 16),
                                let scalar = Unicode.Scalar(code)
                            else { throw Failure(description: "bad \\u escape") }
                            value.append(contentsOf: String(Character(scalar)).utf8)
                            i += 4
                        default:
                            throw Failure(description: "unknown escape \\\(Character(Unicode.Scalar(e)))")
                        }
                    } else {
                        value.append(b)
                        i += 1
                    }
                }
                guard closed else { throw Failure(description: "unterminated quoted value of \(key)") }
                pairs.append((key, String(decoding: value, as: UTF8.self)))
            } else {
                let valueStart = i
                while i < end, bytes[i] > 0x20, bytes[i] != UInt8(ascii: "="), bytes[i] != UInt8(ascii: "\""),
                    bytes[i] != UInt8(ascii: "\\"), bytes[i] != 0x7F
                {
                    i += 1
                }
                guard i > valueStart else { throw Failure(description: "empty bare value of \(key)") }
                pairs.append((key, String(decoding: bytes[valueStart..<i], as: UTF8.self)))
            }
        }
        return pairs
    }
}

/// The logfmt key the encoder is documented to produce for `key`.
func encodingExpectedLogfmtKey(_ key: String) -> String {
    if key.isEmpty { return "_" }
    var result = String.UnicodeScalarView()
    for scalar in key.unicodeScalars {
        let v = scalar.value
        let bad = v <= 0x20 || v == 0x3D || v == 0x22 || v == 0x7F || v == 0x85 || v == 0x2028 || v == 0x2029
        result.append(bad ? "_" : scalar)
    }
    return String(result)
}

/// The flattened `(key, value)` pairs the encoder is documented to produce for a metadata entry.
func encodingExpectedLogfmtPairs(_ key: String, _ value: Logger.MetadataValue) -> [(String, String)] {
    switch value {
    case .string(let s): return [(key, s)]
    case .stringConvertible(let c): return [(key, c.description)]
    case .array(let a):
        if a.isEmpty { return [(key, "[]")] }
        return a.enumerated().flatMap { encodingExpectedLogfmtPairs("\(key).\($0.offset)", $0.element) }
    case .dictionary(let d):
        if d.isEmpty { return [(key, "{}")] }
        return d.sorted { utf8Precedes($0.key, $1.key) }.flatMap {
            encodingExpectedLogfmtPairs("\(key).\(encodingExpectedLogfmtKey($0.key))", $0.value)
        }
    }
}

@Suite("logfmt records")
struct EncodingLogfmtTests {
    @Test("golden output")
    func golden() {
        let encoded = encodeTestRecord(
            encodingGoldenRecord(format: .logfmt, error: EncodingTestError(description: "boom")),
            format: .logfmt
        )
        #expect(
            encoded.text == """
                ts=2026-11-27T15:58:35.123456Z level=info label=com.example.app \
                msg="user \\"bob\\" logged in\\nsecond line" service=api zone=eu-1 trace-id=abc123 count=7 \
                path="/a b" user.id=42 user.roles.0=admin user.roles.1=dev source=App file=App/Handlers.swift \
                function=login(user:) line=42 error="boom" error.type=RelayLoggingTests.EncodingTestError

                """
        )
    }

    @Test("the parser rejects broken lines")
    func parserIsStrict() {
        for bad in ["k=v", "k=\"v\n", "k=a b=\"c\n", "=v\n", "k=\"a\nb\"\n", "k=\"\\x\"\n", "k v\n", "k=\n"] {
            #expect(throws: EncodingLogfmtParser.Failure.self, "\(bad.debugDescription)") {
                try EncodingLogfmtParser.parse(Array(bad.utf8))
            }
        }
        #expect(throws: Never.self) { try EncodingLogfmtParser.parse(Array("a=b c=\"d e\" f=\"\"\n".utf8)) }
    }

    @Test("every record of the nasty corpus is one line whose values round-trip")
    func nastyCorpus() throws {
        for s in encodingNastyStrings {
            var nested: Logger.Metadata = ["k": .string(s), "arr": .array([.string(s), .dictionary([:])])]
            nested[s] = .array([])
            var call: Logger.Metadata = [
                "plain": .string(s),
                "nested": .dictionary(nested),
                "conv": .stringConvertible(EncodingTestConvertible(description: s)),
            ]
            call[s] = .string("v")
            let handler: Logger.Metadata = ["h": .string(s)]
            let provider: Logger.Metadata = ["p": .array([.string(s)])]
            let record = LogRecordFields(
                timestampNanoseconds: encodingGoldenTimestamp,
                level: .debug,
                label: s,
                message: "\(s)",
                handlerMetadata: PreEncodedMetadata(handler, format: .logfmt),
                providerMetadata: provider,
                callMetadata: call,
                source: s,
                file: s,
                function: s,
                line: 9,
                error: EncodingTestError(description: s)
            )
            let encoded = encodeTestRecord(record, format: .logfmt)
            expectEncodedSingleLine(encoded.bytes)
            let pairs = try EncodingLogfmtParser.parse(encoded.bytes)

            var expected: [(String, String)] = [
                ("ts", "2026-11-27T15:58:35.123456Z"), ("level", "debug"), ("label", s), ("msg", s),
            ]
            expected += encodingExpectedLogfmtPairs("h", .string(s))
            expected += encodingExpectedLogfmtPairs("p", .array([.string(s)]))
            for (key, value) in call.sorted(by: { utf8Precedes($0.key, $1.key) }) {
                expected += encodingExpectedLogfmtPairs(encodingExpectedLogfmtKey(key), value)
            }
            expected += [
                ("source", s), ("file", s), ("function", s), ("line", "9"),
                ("error", s), ("error.type", "RelayLoggingTests.EncodingTestError"),
            ]
            #expect(pairs.count == expected.count, "\(encoded.text)")
            for (got, want) in zip(pairs, expected) {
                #expect(
                    encodingSameScalars(got.key, want.0) && encodingSameScalars(got.value, want.1),
                    "\(got) != \(want) in \(encoded.text)")
            }
        }
    }

    @Test(
        "bare values stay bare, others are quoted",
        arguments: [
            ("abc", "abc"), ("a.b/c:d", "a.b/c:d"), ("é😀", "é😀"), ("", "\"\""), ("a b", "\"a b\""),
            ("a=b", "\"a=b\""), ("a\"b", "\"a\\\"b\""), ("a\\b", "\"a\\\\b\""), ("\u{7F}", "\"\\u007f\""),
            ("a\u{2028}", "\"a\\u2028\""), ("\u{A0}", "\u{A0}"),
        ])
    func quoting(value: String, rendered: String) {
        var storage = [UInt8](repeating: 0, count: 64)
        let count = storage.withUnsafeMutableBytes { raw in
            var cursor = ByteCursor(raw)
            cursor.appendLogfmtValue(value)
            return cursor.count
        }
        #expect(String(decoding: storage[0..<count], as: UTF8.self) == rendered)
    }
}
