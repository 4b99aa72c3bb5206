//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Logging
import Relay
import RelayTestSupport
import Testing

@testable import RelayLogging

@Suite("RelayLogHandler encoding")
struct HandlerEncodingTests {
    /// Replaces the 27-byte timestamp of a JSON Lines record (right after `{"timestamp":"`).
    func maskJSONTimestamp(_ line: [UInt8]) -> [UInt8] {
        guard line.count > 41 else { return line }
        var masked = line
        masked.replaceSubrange(14..<41, with: Array("<timestamp>".utf8))
        return masked
    }

    func randomString(_ rng: inout SplitMix64) -> String {
        switch rng.next() % 4 {
        case 0: return encodingNastyStrings[Int(rng.next() % UInt64(encodingNastyStrings.count))]
        case 1: return "k\(rng.next() % 100)"
        case 2: return String(repeating: "abcdefgh", count: Int(rng.next() % 5))
        default: return "value-\(rng.next() % 1000)-\(encodingNastyStrings[Int(rng.next() % 8)])"
        }
    }

    func randomValue(_ rng: inout SplitMix64, depth: Int = 0) -> Logger.MetadataValue {
        switch depth < 2 ? rng.next() % 6 : 0 {
        case 1:
            return .array((0..<Int(rng.next() % 4)).map { _ in self.randomValue(&rng, depth: depth + 1) })
        case 2:
            var dictionary: Logger.Metadata = [:]
            for _ in 0..<Int(rng.next() % 4) { dictionary[self.randomString(&rng)] = self.randomValue(&rng, depth: depth + 1) }
            return .dictionary(dictionary)
        default:
            return .string(self.randomString(&rng))
        }
    }

    func randomMetadata(_ rng: inout SplitMix64, maxCount: Int) -> Logger.Metadata {
        var metadata: Logger.Metadata = [:]
        for _ in 0..<Int(rng.next() % UInt64(maxCount + 1)) {
            metadata[rng.next() % 3 == 0 ? "k\(rng.next() % 6)" : self.randomString(&rng)] = self.randomValue(&rng)
        }
        return metadata
    }

    /// Large sub-buffers: records up to 1 KiB take the fast path, larger ones the general encoder. 4 KiB
    /// ones: some records are truncated (general encoder).
    @Test(
        "the fast path writes exactly what the general encoder writes",
        arguments: [false, true], [1 << 20, 4096])
    func fastPathMatchesGeneralEncoder(sorted: Bool, subbufferSize: Int) throws {
        let channel = try makeTestChannel(subbufferSize: subbufferSize, subbufferCount: 2)
        let writer = RelayLogWriter(channel: channel, sortsMetadataKeys: sorted)
        var rng = SplitMix64(state: sorted ? 1 : 2)
        for round in 0..<400 {
            let label = round % 7 == 0 ? self.randomString(&rng) : "com.example.label"
            var handler = writer.makeHandler(label: label, logLevel: .trace)
            handler.metadata = self.randomMetadata(&rng, maxCount: 4)
            // One dictionary instance for the provider, so both encoders see the same iteration order.
            let provided = self.randomMetadata(&rng, maxCount: 3)
            handler.metadataProvider = rng.next() % 2 == 0 ? Logger.MetadataProvider { provided } : nil
            let event = LogEvent(
                level: Logger.Level.allCases[Int(rng.next() % 7)],
                message: "\(self.randomString(&rng))",
                error: rng.next() % 5 == 0 ? EncodingTestError(description: self.randomString(&rng)) : nil,
                metadata: rng.next() % 4 == 0 ? nil : self.randomMetadata(&rng, maxCount: 20),
                source: rng.next() % 3 == 0 ? self.randomString(&rng) : nil,
                file: rng.next() % 5 == 0 ? self.randomString(&rng) : "Module/File.swift",
                function: self.randomString(&rng),
                line: UInt(rng.next() % 100_000)
            )
            handler.log(event: event)
            let written = splitLines(drainChannel(channel))
            try #require(written.count == 1, "round \(round): \(written.count) records")
            let reference = referenceEncoding(
                LogRecordFields(
                    event: event, label: label, timestampNanoseconds: 0, handlerMetadata: handler.encodedMetadata,
                    providerMetadata: handler.metadataProvider?.get()),
                writer: writer)
            #expect(
                self.maskJSONTimestamp(written[0]) == self.maskJSONTimestamp(reference),
                "round \(round):\n\(String(decoding: written[0], as: UTF8.self))\n\(String(decoding: reference, as: UTF8.self))")
            expectEncodedSingleLine(written[0])
        }
    }

    @Test("golden records in every format")
    func golden() throws {
        let formats: [(RecordFormat, String)] = [
            (
                .jsonLines,
                #"{"timestamp":"<ts>","level":"warning","label":"com.example.app","message":"user \"bob\" logged in\nsecond line","metadata":{"service":"api","zone":"eu-1","trace-id":"abc123","path":"/a b","user":{"id":"42","roles":["admin","dev"]}},"source":"App","file":"App/Handlers.swift","function":"login(user:)","line":42}"#
                    + "\n"
            ),
            (
                .logfmt,
                #"ts=<ts> level=warning label=com.example.app msg="user \"bob\" logged in\nsecond line" service=api zone=eu-1 trace-id=abc123 path="/a b" user.id=42 user.roles.0=admin user.roles.1=dev source=App file=App/Handlers.swift function=login(user:) line=42"#
                    + "\n"
            ),
            (
                .rfc5424(RFC5424Options(hostname: "host", appName: "app", procID: "7")),
                #"<12>1 <ts> host app 7 - [meta@32473 service="api" zone="eu-1" trace-id="abc123" path="/a b" user.id="42" user.roles.0="admin" user.roles.1="dev" source="App" file="App/Handlers.swift" function="login(user:)" line="42"] user "bob" logged in#012second line"#
                    + "\n"
            ),
        ]
        for (format, expected) in formats {
            let channel = try makeTestChannel()
            let writer = RelayLogWriter(channel: channel, format: format, sortsMetadataKeys: true)
            var logger = makeTestLogger(
                writer, label: "com.example.app", metadataProvider: Logger.MetadataProvider { ["trace-id": "abc123"] })
            logger[metadataKey: "zone"] = "eu-1"
            logger[metadataKey: "service"] = "api"
            logger.warning(
                "user \"bob\" logged in\nsecond line",
                metadata: ["user": ["id": "42", "roles": ["admin", "dev"]], "path": "/a b"],
                source: "App", file: "App/Handlers.swift", function: "login(user:)", line: 42)
            let text = maskTimestamp(String(decoding: drainChannel(channel), as: UTF8.self))
            #expect(text == expected, "\(format)")
        }
    }

    @Test("every JSON line parses and round-trips nasty messages, labels and metadata")
    func nastyJSON() throws {
        let channel = try makeTestChannel(subbufferSize: 1 << 20, subbufferCount: 2)
        let writer = RelayLogWriter(channel: channel)
        for (index, nasty) in encodingNastyStrings.enumerated() {
            var logger = makeTestLogger(writer, label: nasty)
            logger[metadataKey: nasty] = .string(nasty)
            let call: Logger.Metadata = ["call-\(nasty)": .string(nasty), "nested": [.string(nasty), ["k": .string(nasty)]]]
            logger.notice(
                "\(nasty)", error: index % 3 == 0 ? EncodingTestError(description: nasty) : nil, metadata: call,
                source: nasty, file: nasty, function: nasty, line: UInt(index))
            let lines = splitLines(drainChannel(channel))
            try #require(lines.count == 1)
            expectEncodedSingleLine(lines[0])
            let record = try #require(parseJSONLine(lines[0]))
            #expect(encodingSameScalars(record["message"] as? String ?? "<missing>", nasty))
            #expect(encodingSameScalars(record["label"] as? String ?? "<missing>", nasty))
            #expect(encodingSameScalars(record["source"] as? String ?? "<missing>", nasty))
            #expect(encodingSameScalars(record["file"] as? String ?? "<missing>", nasty))
            #expect(encodingSameScalars(record["function"] as? String ?? "<missing>", nasty))
            #expect((record["line"] as? Int) == index)
            var expected = call
            expected[nasty] = .string(nasty)
            #expect(encodingJSONObjectEquals(record["metadata"], expected), "metadata of \(nasty.debugDescription)")
            if index % 3 == 0 {
                let error = record["error"] as? [String: String]
                #expect(encodingSameScalars(error?["message"] ?? "<missing>", nasty))
            }
        }
    }

    @Test("RFC 5424: structure, escaping and octet counts", arguments: [false, true])
    func rfc5424(octetCounting: Bool) throws {
        let channel = try makeTestChannel(subbufferSize: 1 << 20, subbufferCount: 2)
        let options = RFC5424Options(hostname: "h", appName: "app", procID: "42", msgID: "m", octetCounting: octetCounting)
        let writer = RelayLogWriter(channel: channel, format: .rfc5424(options))
        let logger = makeTestLogger(writer)
        for nasty in encodingNastyStrings {
            logger.error("\(nasty)", metadata: ["k": .string(nasty)])
        }
        var bytes = drainChannel(channel)[...]
        var frames: [ArraySlice<UInt8>] = []
        if octetCounting {
            while !bytes.isEmpty {
                let space = try #require(bytes.firstIndex(of: 0x20))
                let length = try #require(Int(String(decoding: bytes[bytes.startIndex..<space], as: UTF8.self)))
                let start = space + 1
                try #require(bytes.endIndex - start >= length, "frame shorter than its MSG-LEN")
                frames.append(bytes[start..<start + length])
                bytes = bytes[(start + length)...]
            }
        } else {
            // LF framing: control characters are escaped as #ooo, so each record is one LF-terminated line.
            frames = splitLines(Array(bytes)).map { line in
                #expect(line.last == 0x0A)
                #expect(!line.dropLast().contains { $0 < 0x20 || $0 == 0x7F })
                return line.dropLast()[...]
            }
        }
        #expect(frames.count == encodingNastyStrings.count)
        for frame in frames {
            let text = String(decoding: frame, as: UTF8.self)
            #expect(text.hasPrefix("<11>1 "), "PRI of user.error is 11: \(text)")
            let fields = text.split(separator: " ", maxSplits: 6, omittingEmptySubsequences: false)
            #expect(fields.count == 7)
            #expect(fields.count > 5 && fields[2] == "h" && fields[3] == "app" && fields[4] == "42" && fields[5] == "m")
            #expect(fields.count > 6 && fields[6].utf8.starts(with: "[meta@32473 k=\"".utf8), "\(text.debugDescription)")
        }
    }

    @Test("a record larger than a sub-buffer is truncated with a marker and counted")
    func truncation() throws {
        let channel = try makeTestChannel(subbufferSize: 4096, subbufferCount: 4)
        let writer = RelayLogWriter(channel: channel)
        let logger = makeTestLogger(writer)
        let huge = String(repeating: "0123456789", count: 1000)
        logger.info("\(huge)", metadata: ["k": "v"])
        logger.info("small")
        // Its worst case (every byte a 6-byte escape) exceeds the largest record, the record does not.
        let fits = String(repeating: "abcdefghij", count: 300)
        logger.info("\(fits)")
        let lines = splitLines(drainChannel(channel))
        #expect(lines.count == 3)
        #expect(parseJSONLine(lines[2])?["message"] as? String == fits)
        #expect(lines[0].count <= channel.maxRecordSize)
        let record = try #require(parseJSONLine(lines[0]))
        let message = try #require(record["message"] as? String)
        #expect(message.hasPrefix("0123456789"))
        #expect(message.range(of: #"…\[truncated \d+ bytes\]$"#, options: .regularExpression) != nil)
        #expect(writer.stats().recordsTruncated == 1)
        #expect(parseJSONLine(lines[1])?["message"] as? String == "small")
    }

    /// Every text length around the 16-byte blocks, with a byte that needs escaping at every position
    /// (or none), in every field; records around the size of the fast path's stack buffer; and
    /// `stringConvertible` values, which the fast path renders too.
    @Test("the fast path matches the general encoder at every block boundary and buffer size")
    func fastPathBoundaries() throws {
        let channel = try makeTestChannel(subbufferSize: 1 << 20, subbufferCount: 2)
        let writer = RelayLogWriter(channel: channel)
        let handler = writer.makeHandler(label: "boundaries", logLevel: .trace)
        func check(_ event: LogEvent, _ what: String) throws {
            handler.log(event: event)
            let written = splitLines(drainChannel(channel))
            try #require(written.count == 1, "\(what): \(written.count) records")
            let reference = referenceEncoding(
                LogRecordFields(
                    event: event, label: "boundaries", timestampNanoseconds: 0, handlerMetadata: PreEncodedMetadata(),
                    providerMetadata: nil),
                writer: writer)
            #expect(
                self.maskJSONTimestamp(written[0]) == self.maskJSONTimestamp(reference),
                "\(what):\n\(String(decoding: written[0], as: UTF8.self))\n\(String(decoding: reference, as: UTF8.self))")
            expectEncodedSingleLine(written[0])
        }
        let specials = ["\"", "\\", "\n", "\u{01}", "\u{7F}", "é", "\u{2028}", "😀"]
        for length in 0...50 {
            for position in -1..<length {
                var bytes = Array(repeating: UInt8(ascii: "a"), count: length)
                for i in bytes.indices { bytes[i] = UInt8(ascii: "a") + UInt8(i % 26) }
                var text = String(decoding: bytes, as: UTF8.self)
                if position >= 0 {
                    let special = specials[(length + position) % specials.count]
                    let index = text.index(text.startIndex, offsetBy: position)
                    text.replaceSubrange(index...index, with: special)
                }
                let field = (length + position) % 4
                let event = LogEvent(
                    level: .info, message: field == 0 ? "\(text)" : "m",
                    metadata: field == 1 ? [text: .string(text)] : (field == 3 ? ["k": .stringConvertible(text)] : nil),
                    source: field == 2 ? text : nil,
                    file: field == 3 ? "\(text)/File.swift" : "Module/File.swift",
                    function: field == 2 ? text : "f()", line: UInt(length))
                try check(event, "length \(length), special at \(position), field \(field)")
            }
        }
        // Records of about 900 to 1150 bytes: the last ones do not fit the stack buffer.
        for padding in stride(from: 800, through: 1050, by: 7) {
            let event = LogEvent(
                level: .warning, message: "\(String(repeating: "x", count: padding))", metadata: ["k": "v"],
                source: nil, file: "Module/File.swift", function: "f()", line: 1)
            try check(event, "message of \(padding) bytes")
        }
        // A long text with escapes every few bytes (the worst case of the room check).
        let escapes = String(repeating: "\u{01}\"", count: 70)
        try check(
            LogEvent(
                level: .error, message: "\(escapes)", metadata: ["e": .string(escapes)], source: nil,
                file: "Module/File.swift", function: "f()", line: 2),
            "escapes")
    }

    @Test("records with more entries than fit the stack buffer, and deep nesting")
    func manyEntries() throws {
        let channel = try makeTestChannel(subbufferSize: 1 << 20, subbufferCount: 2)
        let writer = RelayLogWriter(channel: channel)
        let logger = makeTestLogger(writer)
        var many: Logger.Metadata = [:]
        for i in 0..<200 { many["key-\(i)"] = i % 2 == 0 ? "v\(i)" : ["a": ["b", "c", ["d": "\(i)"]]] }
        logger.info("many", metadata: many)
        var deep: Logger.MetadataValue = "leaf"
        for level in 0..<40 { deep = level % 2 == 0 ? ["d": deep] : [deep, "x"] }
        logger.info("deep", metadata: ["deep": deep])
        let records = splitLines(drainChannel(channel)).compactMap { parseJSONLine($0) }
        #expect(records.count == 2)
        #expect(encodingJSONObjectEquals(records.first?["metadata"], many))
        #expect(encodingJSONObjectEquals(records.last?["metadata"], ["deep": deep]))
    }
}
