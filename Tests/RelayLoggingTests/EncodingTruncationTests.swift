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

/// The parts of an encoded record that truncation may shorten, read back with the strict parsers.
struct EncodingParsedRecord {
    /// The message as the format carries it (unescaped for JSON and logfmt; as written for RFC 5424).
    var message: String
    /// The metadata region, as comparable items in output order.
    var metadata: [String]
    /// The error description as the format carries it.
    var error: String?
}

func encodingParseRecord(_ bytes: [UInt8], format: RecordFormat) throws -> EncodingParsedRecord {
    switch format {
    case .jsonLines:
        expectEncodedSingleLine(bytes)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        // Entries are dropped whole from the end: compare the raw member texts in order.
        let text = String(decoding: bytes, as: UTF8.self)
        var members: [String] = []
        if let open = text.range(of: "\"metadata\":{"),
            let close = text.range(of: "},\"source\":\"", options: .backwards)
        {
            let region = String(text[open.upperBound..<close.lowerBound])
            members = region.isEmpty ? [] : encodingSplitJSONMembers(region)
        }
        let error = (object["error"] as? [String: Any])?["message"] as? String
        return EncodingParsedRecord(
            message: try #require(object["message"] as? String), metadata: members, error: error)
    case .logfmt:
        expectEncodedSingleLine(bytes)
        let pairs = try EncodingLogfmtParser.parse(bytes)
        let msgIndex = try #require(pairs.firstIndex { $0.key == "msg" })
        let sourceIndex = try #require(pairs.lastIndex { $0.key == "source" })
        let metadata = pairs[(msgIndex + 1)..<sourceIndex].map { "\($0.key)=\($0.value)" }
        return EncodingParsedRecord(
            message: pairs[msgIndex].value, metadata: metadata, error: pairs.first { $0.key == "error" }?.value)
    case .rfc5424(let options):
        if !options.octetCounting { expectEncodedSingleLine(bytes) }
        let parsed = try EncodingSyslogParser.parseFrame(bytes, octetCounting: options.octetCounting)
        let sourceIndex = try #require(parsed.params.lastIndex { $0.name == "source" })
        return EncodingParsedRecord(
            message: parsed.msg.map { String(decoding: $0, as: UTF8.self) } ?? "",
            metadata: parsed.params[..<sourceIndex].map { "\($0.name)=\($0.value)" },
            error: parsed.params.first { $0.name == "error" }?.value
        )
    }
}

/// Splits the members of a JSON object body at top-level commas.
func encodingSplitJSONMembers(_ body: String) -> [String] {
    var members: [String] = []
    var current = ""
    var depth = 0
    var inString = false
    var escaped = false
    for c in body {
        if inString {
            if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inString = false }
        } else if c == "\"" {
            inString = true
        } else if c == "{" || c == "[" {
            depth += 1
        } else if c == "}" || c == "]" {
            depth -= 1
        } else if c == ",", depth == 0 {
            members.append(current)
            current = ""
            continue
        }
        current.append(c)
    }
    members.append(current)
    return members
}

/// The body length of a frame (without the octet-counting prefix).
func encodingBodyLength(_ bytes: [UInt8], format: RecordFormat) -> Int {
    if case .rfc5424(let options) = format, options.octetCounting, let space = bytes.firstIndex(of: 0x20) {
        return bytes.count - space - 1
    }
    return bytes.count
}

let encodingTruncationFormats: [RecordFormat] = [
    .jsonLines,
    .logfmt,
    .rfc5424(RFC5424Options(hostname: "host", appName: "app", procID: "77")),
    .rfc5424(RFC5424Options(hostname: "host", appName: "app", procID: "77", octetCounting: true)),
]

func encodingTruncationRecord(format: RecordFormat, messageRepeats: Int, metadataEntries: Int, errorLength: Int)
    -> LogRecordFields
{
    var handler: Logger.Metadata = [:]
    var provider: Logger.Metadata = [:]
    var call: Logger.Metadata = [:]
    for i in 0..<metadataEntries {
        handler["h\(i)"] = .string("handler value \(i) \"q\"")
        provider["p\(i)"] = .array([.string("x\n\(i)"), .string("ü")])
        call["c\(i)"] = .dictionary(["n": .string("call \(i) ]")])
    }
    return LogRecordFields(
        timestampNanoseconds: encodingGoldenTimestamp,
        level: .error,
        label: "truncation",
        message: "\(String(repeating: "héllo \"wörld\"\n😀 \u{1}e\u{301} ", count: messageRepeats))",
        handlerMetadata: PreEncodedMetadata(handler, format: format),
        providerMetadata: provider,
        callMetadata: call,
        source: "Src",
        file: "Src/File.swift",
        function: "f()",
        line: 1,
        error: errorLength > 0 ? EncodingTestError(description: String(repeating: "é\"r", count: errorLength / 4)) : nil
    )
}

@Suite("Truncation")
struct EncodingTruncationTests {
    /// Encodes `record` with `maxBytes` and checks every documented property of the result against the
    /// untruncated encoding `full`. Returns whether a record was written.
    @discardableResult
    func check(
        _ record: LogRecordFields,
        format: RecordFormat,
        full: EncodedTestRecord,
        maxBytes: Int,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Bool {
        let encoded = encodeTestRecord(record, format: format, maxBytes: maxBytes, sourceLocation: sourceLocation)
        let outcome = encoded.outcome
        #expect(outcome.bytesWritten <= maxBytes, sourceLocation: sourceLocation)
        #expect(!outcome.needsLargerBuffer, "capacity was maxBytes", sourceLocation: sourceLocation)
        if maxBytes >= full.bytes.count {
            #expect(encoded.bytes == full.bytes && !outcome.truncated, sourceLocation: sourceLocation)
            return true
        }
        #expect(outcome.truncated, sourceLocation: sourceLocation)
        guard outcome.isComplete else {
            #expect(outcome.isDropped && encoded.bytes.isEmpty, sourceLocation: sourceLocation)
            return false
        }
        let fullParsed = try encodingParseRecord(full.bytes, format: format)
        let parsed = try encodingParseRecord(encoded.bytes, format: format)

        // The message keeps a whole-scalar prefix and ends with the marker.
        let match = try #require(
            parsed.message.firstMatch(of: /…\[truncated (\d+) bytes\]$/),
            "no marker in \(parsed.message.debugDescription)",
            sourceLocation: sourceLocation
        )
        let kept = String(parsed.message[..<match.range.lowerBound])
        #expect(
            Array(fullParsed.message.unicodeScalars).starts(with: kept.unicodeScalars), sourceLocation: sourceLocation)

        // Metadata entries are dropped whole, from the end; the error description keeps a prefix.
        #expect(fullParsed.metadata.starts(with: parsed.metadata), sourceLocation: sourceLocation)
        if let error = parsed.error, let fullError = fullParsed.error {
            #expect(Array(fullError.unicodeScalars).starts(with: error.unicodeScalars), sourceLocation: sourceLocation)
        }
        #expect((parsed.error == nil) == (fullParsed.error == nil), sourceLocation: sourceLocation)

        // The marker counts exactly the encoded bytes removed.
        let dropped = try #require(Int(match.1))
        let markerLength = "…[truncated \(dropped) bytes]".utf8.count
        #expect(
            encodingBodyLength(encoded.bytes, format: format) == encodingBodyLength(full.bytes, format: format)
                - dropped + markerLength,
            sourceLocation: sourceLocation
        )
        return true
    }

    @Test("a large record at many maximum sizes", arguments: encodingTruncationFormats)
    func manySizes(format: RecordFormat) throws {
        let record = encodingTruncationRecord(
            format: format, messageRepeats: 200, metadataEntries: 12, errorLength: 2000)
        let full = encodeTestRecord(record, format: format)
        #expect(full.outcome.isComplete && !full.outcome.truncated)
        var written = 0
        for maxBytes in [0, 1, 2, 3, 5, 10, 50, 100, 200, 250, 300, 400, 500, 700, 1000, 1500, 2000, 3000, 4000, 8000]
            + [full.bytes.count - 1, full.bytes.count, full.bytes.count + 1]
        {
            if try self.check(record, format: format, full: full, maxBytes: maxBytes) { written += 1 }
        }
        #expect(written >= 10)
    }

    @Test("every maximum size from 0 to the full size", arguments: encodingTruncationFormats)
    func exhaustive(format: RecordFormat) throws {
        let record = encodingTruncationRecord(format: format, messageRepeats: 4, metadataEntries: 2, errorLength: 40)
        let full = encodeTestRecord(record, format: format)
        var firstWritten: Int?
        for maxBytes in 0...(full.bytes.count + 2) {
            let written = try self.check(record, format: format, full: full, maxBytes: maxBytes)
            if written, firstWritten == nil { firstWritten = maxBytes }
            if !written, let firstWritten {
                Issue.record("dropped at \(maxBytes) after writing at \(firstWritten)")
            }
        }
        // The smallest record is the fixed fields plus the marker.
        #expect(try #require(firstWritten) < full.bytes.count / 2)
    }

    @Test("a message of a single huge scalar run and no metadata", arguments: encodingTruncationFormats)
    func messageOnly(format: RecordFormat) throws {
        let record = LogRecordFields(
            timestampNanoseconds: 0, level: .info, label: "l",
            message: "\(String(repeating: "😀", count: 5000))", source: "s", file: "f", function: "g", line: 1
        )
        let full = encodeTestRecord(record, format: format)
        for maxBytes in [150, 151, 152, 153, 154, 1000, 4096, 19_999] {
            try self.check(record, format: format, full: full, maxBytes: maxBytes)
        }
    }

    @Test("a too-small buffer reports the exact size of the truncated record", arguments: encodingTruncationFormats)
    func needsLargerBufferWhenTruncated(format: RecordFormat) throws {
        let record = encodingTruncationRecord(format: format, messageRepeats: 50, metadataEntries: 3, errorLength: 100)
        let maxBytes = 700
        let small = encodeTestRecord(record, format: format, maxBytes: maxBytes, capacity: 100)
        #expect(small.outcome.needsLargerBuffer && small.outcome.truncated)
        #expect(small.outcome.requiredCapacity <= maxBytes)
        let exact = encodeTestRecord(
            record, format: format, maxBytes: maxBytes, capacity: small.outcome.requiredCapacity)
        #expect(exact.outcome.isComplete && exact.outcome.truncated)
        #expect(exact.bytes == encodeTestRecord(record, format: format, maxBytes: maxBytes).bytes)
    }

    @Test("every capacity around the record size: written exactly when it fits", arguments: encodingTruncationFormats)
    func capacities(format: RecordFormat) throws {
        // 90...110-byte bodies cross the 2→3 digit boundary of the octet-counting prefix.
        for repeats in 0...3 {
            let record = LogRecordFields(
                timestampNanoseconds: 0, level: .info, label: "l",
                message: "\(String(repeating: "x", count: repeats * 7))", source: "s", file: "f", function: "g", line: 1
            )
            let full = encodeTestRecord(record, format: format)
            let size = full.bytes.count
            for capacity in Swift.max(0, size - 12)...(size + 3) {
                let encoded = encodeTestRecord(record, format: format, maxBytes: 4096, capacity: capacity)
                if capacity >= size {
                    #expect(encoded.outcome == .init(bytesWritten: size, truncated: false, requiredCapacity: size))
                    #expect(encoded.bytes == full.bytes)
                } else {
                    #expect(encoded.outcome == .init(bytesWritten: 0, truncated: false, requiredCapacity: size))
                }
            }
        }
    }

    @Test("octet counting: the frame never exceeds maxBytes at the digit boundaries")
    func octetCountingDigitBoundaries() throws {
        let format = encodingTruncationFormats[3]
        let record = encodingTruncationRecord(format: format, messageRepeats: 30, metadataEntries: 1, errorLength: 0)
        let full = encodeTestRecord(record, format: format)
        for maxBytes in [98, 99, 100, 101, 102, 103, 104, 998, 999, 1000, 1001, 1002, 1003, 1004, 1005] {
            try self.check(record, format: format, full: full, maxBytes: maxBytes)
        }
    }

    @Test("measuring agrees with writing, truncated or not", arguments: encodingTruncationFormats)
    func measuring(format: RecordFormat) {
        let record = encodingTruncationRecord(format: format, messageRepeats: 20, metadataEntries: 4, errorLength: 100)
        let encoder = LogRecordEncoder(format: format)
        for maxBytes in [0, 10, 200, 400, 600, 800, 1000, 100_000] {
            let measured = encoder.measure(record, maxBytes: maxBytes)
            let written = encodeTestRecord(record, format: format, maxBytes: maxBytes)
            #expect(measured == written.outcome)
        }
    }
}
