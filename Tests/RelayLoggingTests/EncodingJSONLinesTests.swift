//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Logging
import Testing

@testable import RelayLogging

/// Checks that `bytes` are valid UTF-8 and one line: a single LF at the very end, and no other C0
/// control, DEL, NEL, LS or PS anywhere.
func expectEncodedSingleLine(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(
        String(validating: bytes, as: UTF8.self) != nil, "output is not valid UTF-8", sourceLocation: sourceLocation)
    #expect(bytes.last == 0x0A, "record must end with LF", sourceLocation: sourceLocation)
    let body = bytes.dropLast()
    #expect(
        !body.contains { $0 < 0x20 || $0 == 0x7F }, "raw control byte inside the record", sourceLocation: sourceLocation
    )
    let scalars = String(decoding: body, as: UTF8.self).unicodeScalars
    #expect(
        !scalars.contains { $0 == "\u{85}" || $0 == "\u{2028}" || $0 == "\u{2029}" },
        "raw Unicode line break inside the record",
        sourceLocation: sourceLocation
    )
}

/// Strict equality of strings: same Unicode scalars (not just canonically equivalent).
func encodingSameScalars(_ a: String, _ b: String) -> Bool {
    Array(a.unicodeScalars) == Array(b.unicodeScalars)
}

/// Whether a value from `JSONSerialization` equals a metadata value rendered as JSON.
func encodingJSONEquals(_ parsed: Any?, _ expected: Logger.MetadataValue) -> Bool {
    switch expected {
    case .string(let string):
        guard let parsed = parsed as? String else { return false }
        return encodingSameScalars(parsed, string)
    case .stringConvertible(let convertible):
        guard let parsed = parsed as? String else { return false }
        return encodingSameScalars(parsed, convertible.description)
    case .array(let array):
        guard let parsed = parsed as? [Any], parsed.count == array.count else { return false }
        return zip(parsed, array).allSatisfy { encodingJSONEquals($0, $1) }
    case .dictionary(let dictionary):
        return encodingJSONObjectEquals(parsed, dictionary)
    }
}

func encodingJSONObjectEquals(_ parsed: Any?, _ expected: Logger.Metadata) -> Bool {
    guard let parsed = parsed as? [String: Any], parsed.count == expected.count else { return false }
    // Keys are compared after NFC-insensitive lookup by String equality, then scalar-exact.
    for (key, value) in expected {
        guard let match = parsed.first(where: { encodingSameScalars($0.key, key) }) else { return false }
        if !encodingJSONEquals(match.value, value) { return false }
    }
    return true
}

@Suite("JSON Lines records")
struct EncodingJSONLinesTests {
    @Test("golden output")
    func golden() {
        let encoded = encodeTestRecord(encodingGoldenRecord(format: .jsonLines), format: .jsonLines)
        let expected = """
            {"timestamp":"2026-11-27T15:58:35.123456Z","level":"info","label":"com.example.app",\
            "message":"user \\"bob\\" logged in\\nsecond line","metadata":{"service":"api","zone":"eu-1",\
            "trace-id":"abc123","count":"7","path":"/a b","user":{"id":"42","roles":["admin","dev"]}},\
            "source":"App","file":"App/Handlers.swift","function":"login(user:)","line":42}

            """
        #expect(encoded.text == expected)
        #expect(
            encoded.outcome
                == EncodeOutcome(
                    bytesWritten: expected.utf8.count, truncated: false, requiredCapacity: expected.utf8.count))
    }

    @Test("golden output with an error and without metadata")
    func goldenWithError() {
        let record = LogRecordFields(
            timestampNanoseconds: 0,
            level: .critical,
            label: "l",
            message: "",
            source: "S",
            file: "S/f.swift",
            function: "f()",
            line: 0,
            error: EncodingTestError(description: "disk \"full\"\t!")
        )
        let encoded = encodeTestRecord(record, format: .jsonLines)
        #expect(
            encoded.text == """
                {"timestamp":"1970-01-01T00:00:00.000000Z","level":"critical","label":"l","message":"",\
                "source":"S","file":"S/f.swift","function":"f()","line":0,"error":{"message":"disk \\"full\\"\\t!",\
                "type":"RelayLoggingTests.EncodingTestError"}}

                """
        )
    }

    @Test("every level name", arguments: Logger.Level.allCases)
    func levels(level: Logger.Level) throws {
        var record = encodingGoldenRecord(format: .jsonLines)
        record.level = level
        let encoded = encodeTestRecord(record, format: .jsonLines)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(encoded.bytes)) as? [String: Any])
        #expect(object["level"] as? String == level.rawValue)
    }

    @Test("escapes of control characters, DEL and Unicode line breaks")
    func escapes() {
        let message = "\u{0}\u{1}\u{8}\t\n\u{B}\u{C}\r\u{1B}\u{1F}\u{7F}\u{85}\u{2028}\u{2029}\"\\/é😀"
        var record = encodingGoldenRecord(format: .jsonLines, message: "\(message)")
        record.handlerMetadata = PreEncodedMetadata()
        record.providerMetadata = nil
        record.callMetadata = nil
        let text = encodeTestRecord(record, format: .jsonLines).text
        #expect(
            text.contains(
                #""message":"\u0000\u0001\b\t\n\u000b\f\r\u001b\u001f\u007f\u0085\u2028\u2029\"\\/é😀""#
            )
        )
    }

    @Test("every record of the nasty corpus is one line that parses back to its inputs")
    func nastyCorpus() throws {
        for s in encodingNastyStrings {
            let call: Logger.Metadata = [
                s: .string(s),
                "nested": .dictionary([
                    "k": .string(s),
                    "arr": .array([.string(s), .string(""), .array([]), .dictionary([s: .string(s)])]),
                    "empty": .dictionary([:]),
                    "emptyArr": .array([]),
                ]),
                "conv": .stringConvertible(EncodingTestConvertible(description: s)),
            ]
            let provider: Logger.Metadata = ["provider": .array([.string(s), .dictionary([s: .string(s)])])]
            let handler: Logger.Metadata = [
                "handler": .string(s), "handler-nested": .dictionary([s: .array([.string(s)])]),
            ]
            let record = LogRecordFields(
                timestampNanoseconds: encodingGoldenTimestamp,
                level: .warning,
                label: s,
                message: "\(s)",
                handlerMetadata: PreEncodedMetadata(handler, format: .jsonLines),
                providerMetadata: provider,
                callMetadata: call,
                source: s,
                file: s,
                function: s,
                line: 7,
                error: EncodingTestError(description: s)
            )
            let encoded = encodeTestRecord(record, format: .jsonLines)
            #expect(encoded.outcome.isComplete && !encoded.outcome.truncated)
            expectEncodedSingleLine(encoded.bytes)
            let parsed = try JSONSerialization.jsonObject(with: Data(encoded.bytes))
            let object = try #require(parsed as? [String: Any], "not a JSON object: \(encoded.text)")
            #expect(object.count == 10)
            #expect(object["timestamp"] as? String == "2026-11-27T15:58:35.123456Z")
            #expect(object["level"] as? String == "warning")
            for key in ["label", "message", "source", "file", "function"] {
                #expect(encodingSameScalars(try #require(object[key] as? String), s), "\(key) of \(s.debugDescription)")
            }
            #expect(object["line"] as? Int == 7)
            let error = try #require(object["error"] as? [String: Any])
            #expect(encodingSameScalars(try #require(error["message"] as? String), s))
            #expect(error["type"] as? String == "RelayLoggingTests.EncodingTestError")
            let merged = MetadataMerge.merged(handler: handler, provider: provider, call: call)
            #expect(
                encodingJSONObjectEquals(object["metadata"], merged),
                "metadata of \(s.debugDescription): \(encoded.text)")
        }
    }

    @Test("repaired invalid UTF-8 comes out as U+FFFD")
    func repairedInvalidUTF8() throws {
        let repaired = String(decoding: [0x41, 0xC3, 0x28, 0xFF, 0x42], as: UTF8.self)
        let record = LogRecordFields(
            timestampNanoseconds: 0, level: .info, label: "l", message: "\(repaired)",
            source: "s", file: "f", function: "g", line: 1
        )
        let encoded = encodeTestRecord(record, format: .jsonLines)
        expectEncodedSingleLine(encoded.bytes)
        #expect(encoded.text.contains(#""message":"A\#u{FFFD}(\#u{FFFD}B""#))
    }
}
