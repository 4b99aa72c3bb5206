//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

// Shared fixtures and helpers of the Encoding*Tests suites, plus the checks of the helpers themselves.

import Logging
import Testing

@testable import RelayLogging

/// An error with a nasty description, for the error fields.
struct EncodingTestError: Error, CustomStringConvertible {
    var description: String
}

/// A `CustomStringConvertible & Sendable` metadata value.
struct EncodingTestConvertible: CustomStringConvertible, Sendable {
    var description: String
}

/// The instant of the golden records: 2026-11-27T15:58:35.123456789Z.
let encodingGoldenTimestamp: Int64 = 1_795_795_115_123_456_789

/// The fixed record of the golden tests.
func encodingGoldenRecord(
    format: RecordFormat,
    message: Logger.Message = "user \"bob\" logged in\nsecond line",
    error: (any Error)? = nil
) -> LogRecordFields {
    LogRecordFields(
        timestampNanoseconds: encodingGoldenTimestamp,
        level: .info,
        label: "com.example.app",
        message: message,
        handlerMetadata: PreEncodedMetadata(["service": "api", "zone": "eu-1"], format: format),
        providerMetadata: ["trace-id": "abc123"],
        callMetadata: [
            "user": ["id": "42", "roles": ["admin", "dev"]],
            "path": "/a b",
            "count": .stringConvertible(EncodingTestConvertible(description: "7")),
        ],
        source: "App",
        file: "App/Handlers.swift",
        function: "login(user:)",
        line: 42,
        error: error
    )
}

/// The result of encoding one record into a fresh buffer.
struct EncodedTestRecord {
    var outcome: EncodeOutcome
    var bytes: [UInt8]
    var text: String { String(decoding: self.bytes, as: UTF8.self) }
}

/// Encodes `record` into a buffer of `capacity` bytes (default: `maxBytes`), checks the cursor and the
/// measuring pass agree with the outcome and that nothing was written past the record, and returns the
/// written bytes.
func encodeTestRecord(
    _ record: LogRecordFields,
    format: RecordFormat,
    maxBytes: Int = 1 << 20,
    capacity: Int? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) -> EncodedTestRecord {
    let encoder = LogRecordEncoder(format: format)
    let capacity = capacity ?? Swift.min(maxBytes, 1 << 20)
    let guardBytes = 64
    var storage = [UInt8](repeating: 0xEE, count: capacity + guardBytes)
    var cursorCount = -1
    let outcome = storage.withUnsafeMutableBytes { raw in
        var cursor = ByteCursor(UnsafeMutableRawBufferPointer(rebasing: raw[0..<capacity]))
        let outcome = encoder.encode(record, into: &cursor, maxBytes: maxBytes)
        cursorCount = cursor.count
        return outcome
    }
    #expect(cursorCount == outcome.bytesWritten, "cursor must advance by bytesWritten", sourceLocation: sourceLocation)
    #expect(outcome.bytesWritten <= maxBytes, sourceLocation: sourceLocation)
    #expect(storage[capacity...].allSatisfy { $0 == 0xEE }, "wrote past the buffer", sourceLocation: sourceLocation)
    if outcome.isComplete {
        let measured = encoder.measure(record, maxBytes: maxBytes)
        #expect(measured == outcome, "measure() must predict encode()", sourceLocation: sourceLocation)
    }
    return EncodedTestRecord(outcome: outcome, bytes: Array(storage[0..<outcome.bytesWritten]))
}

/// Every string a record field might carry that tends to break encoders.
let encodingNastyStrings: [String] = {
    var strings: [String] = [
        "",
        "plain",
        "with space",
        "quote \" inside",
        "\"",
        "backslash \\ inside \\\\",
        "\\",
        "trailing backslash\\",
        "new\nline",
        "\r\n",
        "tab\there",
        "key=value",
        "a=b=c",
        "bracket ] and [",
        "]",
        "emoji 😀👩‍👩‍👧‍👦🏳️‍🌈",
        "combining e\u{301} a\u{308}\u{301}",
        "\u{301}starts with a combining mark",
        "non-BMP 𝄞 𐍈",
        "CJK 日本語テキスト",
        "RTL עברית",
        "line separators \u{2028} \u{2029} \u{85}",
        "nbsp\u{A0}here",
        "zero width \u{200B}\u{FEFF}",
        "DEL \u{7F} end",
        "NUL \u{0} end",
        String(decoding: [0x61, 0xFF, 0x62, 0xC3, 0x28, 0xE2, 0x82, 0xED, 0xA0, 0x80, 0x63], as: UTF8.self),
        String(decoding: [0xF0, 0x9F, 0x98], as: UTF8.self),
        "#012 looks like an escape",
        "\\u0041 looks like an escape",
        String(repeating: "long ", count: 50),
    ]
    for scalar in UInt32(0)...0x1F {
        strings.append("c\(Unicode.Scalar(scalar)!)c")
    }
    strings.append("all controls: " + String(String.UnicodeScalarView((UInt32(0)...0x1F).map { Unicode.Scalar($0)! })))
    return strings
}()

@Suite("Encoding test helpers")
struct EncodingFixturesTests {
    @Test("the nasty corpus contains repaired invalid UTF-8 and every C0 control")
    func corpusIsNasty() {
        #expect(encodingNastyStrings.contains { $0.unicodeScalars.contains("\u{FFFD}") })
        for scalar in UInt32(0)...0x1F {
            #expect(encodingNastyStrings.contains { $0.unicodeScalars.contains(Unicode.Scalar(scalar)!) })
        }
    }

    @Test("encodeTestRecord detects a buffer overrun")
    func guardDetectsNothingWrittenPast() {
        let record = encodingGoldenRecord(format: .jsonLines)
        let encoded = encodeTestRecord(record, format: .jsonLines, capacity: 10)
        #expect(encoded.outcome.needsLargerBuffer)
        #expect(encoded.bytes.isEmpty)
    }
}
