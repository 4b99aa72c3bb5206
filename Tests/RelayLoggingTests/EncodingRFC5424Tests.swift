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

/// A strict RFC 5424 parser (§6 ABNF) with RFC 6587 §3.4.1 octet-counting or LF framing.
struct EncodingSyslogParser {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    struct Message {
        var pri: Int
        var timestamp: String
        var hostname: String
        var appName: String
        var procID: String
        var msgID: String
        var sdID: String
        var params: [(name: String, value: String)]
        var msg: [UInt8]?
    }

    /// Parses one frame; `octetCounting` requires `MSG-LEN SP` with the exact length and no trailer,
    /// otherwise the frame must end with its only LF.
    static func parseFrame(_ frame: [UInt8], octetCounting: Bool) throws(Failure) -> Message {
        var body = frame[...]
        if octetCounting {
            guard let space = frame.firstIndex(of: 0x20) else { throw Failure(description: "no MSG-LEN") }
            let digits = frame[..<space]
            guard !digits.isEmpty, digits.first != UInt8(ascii: "0"), digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                let length = Int(String(decoding: digits, as: UTF8.self))
            else { throw Failure(description: "bad MSG-LEN") }
            body = frame[(space + 1)...]
            guard body.count == length else { throw Failure(description: "MSG-LEN \(length) but \(body.count) octets") }
        } else {
            guard frame.last == 0x0A, frame.firstIndex(of: 0x0A) == frame.count - 1 else {
                throw Failure(description: "LF framing needs exactly one LF, at the end")
            }
            body = frame[..<(frame.count - 1)]
        }
        return try parse(Array(body))
    }

    static func parse(_ b: [UInt8]) throws(Failure) -> Message {
        var i = 0
        func fail(_ what: String) -> Failure { Failure(description: "\(what) at \(i)") }
        func expect(_ c: UInt8) throws(Failure) {
            guard i < b.count, b[i] == c else { throw fail("expected \(Character(Unicode.Scalar(c)))") }
            i += 1
        }
        func printable(max: Int) throws(Failure) -> String {
            let start = i
            while i < b.count, b[i] >= 33, b[i] <= 126 { i += 1 }
            guard i > start, i - start <= max else { throw fail("bad field length \(i - start)") }
            return String(decoding: b[start..<i], as: UTF8.self)
        }
        func sdName() throws(Failure) -> String {
            let start = i
            while i < b.count, b[i] >= 33, b[i] <= 126, b[i] != UInt8(ascii: "="), b[i] != UInt8(ascii: "]"),
                b[i] != UInt8(ascii: "\"")
            {
                i += 1
            }
            guard i > start, i - start <= 32 else { throw fail("bad SD-NAME length \(i - start)") }
            return String(decoding: b[start..<i], as: UTF8.self)
        }

        try expect(UInt8(ascii: "<"))
        let priStart = i
        while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }
        guard i > priStart, i - priStart <= 3, let pri = Int(String(decoding: b[priStart..<i], as: UTF8.self)),
            pri <= 191,
            i - priStart == 1 || b[priStart] != UInt8(ascii: "0")
        else { throw fail("bad PRIVAL") }
        try expect(UInt8(ascii: ">"))
        try expect(UInt8(ascii: "1"))
        try expect(0x20)
        let timestamp = try printable(max: 32)
        let pattern = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})/
        guard (try? pattern.wholeMatch(in: timestamp)) != nil else { throw fail("bad TIMESTAMP \(timestamp)") }
        try expect(0x20)
        let hostname = try printable(max: 255)
        try expect(0x20)
        let appName = try printable(max: 48)
        try expect(0x20)
        let procID = try printable(max: 128)
        try expect(0x20)
        let msgID = try printable(max: 32)
        try expect(0x20)

        // Exactly one SD-ELEMENT (the encoder never writes NIL structured data).
        try expect(UInt8(ascii: "["))
        let sdID = try sdName()
        var params: [(name: String, value: String)] = []
        while i < b.count, b[i] == 0x20 {
            i += 1
            let name = try sdName()
            try expect(UInt8(ascii: "="))
            try expect(UInt8(ascii: "\""))
            var value: [UInt8] = []
            while true {
                guard i < b.count else { throw fail("unterminated PARAM-VALUE") }
                let c = b[i]
                if c == UInt8(ascii: "\"") { break }
                if c == UInt8(ascii: "]") { throw fail("unescaped ] in PARAM-VALUE") }
                if c == UInt8(ascii: "\\") {
                    guard i + 1 < b.count,
                        [UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "]")].contains(b[i + 1])
                    else {
                        throw fail("unescaped backslash in PARAM-VALUE")
                    }
                    value.append(b[i + 1])
                    i += 2
                    continue
                }
                value.append(c)
                i += 1
            }
            i += 1
            guard let text = String(validating: value, as: UTF8.self) else { throw fail("PARAM-VALUE is not UTF-8") }
            params.append((name, text))
        }
        try expect(UInt8(ascii: "]"))
        var msg: [UInt8]?
        if i < b.count {
            try expect(0x20)
            msg = Array(b[i...])
            guard String(validating: msg!, as: UTF8.self) != nil else { throw fail("MSG is not UTF-8") }
        }
        return Message(
            pri: pri, timestamp: timestamp, hostname: hostname, appName: appName, procID: procID, msgID: msgID,
            sdID: sdID, params: params, msg: msg
        )
    }
}

/// What the encoder writes for `s` in a value or MSG: as is (octet counting) or with C0 controls and
/// DEL as `#ooo` (LF framing).
func encodingExpectedSyslogText(_ s: String, octetCounting: Bool) -> String {
    if octetCounting { return s }
    var out = ""
    for scalar in s.unicodeScalars {
        if scalar.value < 0x20 || scalar.value == 0x7F {
            let v = scalar.value
            out += "#\(v >> 6)\((v >> 3) & 7)\(v & 7)"
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}

/// The SD-NAME the encoder is documented to produce for a (flattened) key.
func encodingExpectedSDName(_ key: String) -> String {
    var out = ""
    for scalar in key.unicodeScalars {
        let v = scalar.value
        let ok = v > 0x20 && v < 0x7F && v != 0x3D && v != 0x5D && v != 0x22
        out.append(ok ? Character(scalar) : "_")
    }
    return String(out.prefix(32))
}

@Suite("RFC 5424 records")
struct EncodingRFC5424Tests {
    static let lfOptions = RFC5424Options(hostname: "host1", appName: "app", procID: "1234")
    static let tcpOptions = RFC5424Options(hostname: "host1", appName: "app", procID: "1234", octetCounting: true)

    @Test("golden output, LF framing")
    func goldenLF() {
        let format = RecordFormat.rfc5424(Self.lfOptions)
        let encoded = encodeTestRecord(
            encodingGoldenRecord(format: format, error: EncodingTestError(description: "a]b")), format: format)
        #expect(
            encoded.text == """
                <14>1 2026-11-27T15:58:35.123456Z host1 app 1234 - [meta@32473 service="api" zone="eu-1" \
                trace-id="abc123" count="7" path="/a b" user.id="42" user.roles.0="admin" user.roles.1="dev" \
                source="App" file="App/Handlers.swift" function="login(user:)" line="42" error="a\\]b" \
                error.type="RelayLoggingTests.EncodingTestError"] user "bob" logged in#012second line

                """
        )
    }

    @Test("golden output, octet counting")
    func goldenOctetCounting() {
        let format = RecordFormat.rfc5424(Self.tcpOptions)
        let encoded = encodeTestRecord(encodingGoldenRecord(format: format), format: format)
        let body = """
            <14>1 2026-11-27T15:58:35.123456Z host1 app 1234 - [meta@32473 service="api" zone="eu-1" \
            trace-id="abc123" count="7" path="/a b" user.id="42" user.roles.0="admin" user.roles.1="dev" \
            source="App" file="App/Handlers.swift" function="login(user:)" line="42"] user "bob" logged in
            second line
            """
        #expect(body.utf8.count == 288)
        #expect(encoded.text == "288 " + body)
    }

    @Test("NIL header fields, facility and an empty message")
    func nilFields() throws {
        let options = RFC5424Options(facility: .local7, structuredDataID: "my id=\"x\"]")
        let record = LogRecordFields(
            timestampNanoseconds: 0, level: .error, label: "l", message: "", source: "S", file: "f", function: "g",
            line: 3
        )
        let encoded = encodeTestRecord(record, format: .rfc5424(options))
        #expect(
            encoded.text
                == "<187>1 1970-01-01T00:00:00.000000Z - - - - [my_id__x__ source=\"S\" file=\"f\" function=\"g\" line=\"3\"]\n"
        )
        let parsed = try EncodingSyslogParser.parseFrame(encoded.bytes, octetCounting: false)
        #expect(parsed.msg == nil)
    }

    @Test("header fields are sanitised and cut to their maximum length")
    func headerSanitised() throws {
        let options = RFC5424Options(
            hostname: String(repeating: "h", count: 300),
            appName: "my app\u{1}é" + String(repeating: "a", count: 60),
            procID: "",
            msgID: String(repeating: "m", count: 40)
        )
        let record = LogRecordFields(
            timestampNanoseconds: 0, level: .info, label: "l", message: "m", source: "S", file: "f", function: "g",
            line: 3
        )
        let parsed = try EncodingSyslogParser.parseFrame(
            encodeTestRecord(record, format: .rfc5424(options)).bytes, octetCounting: false)
        #expect(parsed.hostname == String(repeating: "h", count: 255))
        #expect(parsed.appName == "my_app__" + String(repeating: "a", count: 40))
        #expect(parsed.procID == "-")
        #expect(parsed.msgID == String(repeating: "m", count: 32))
    }

    @Test("PRI is facility * 8 + severity for every level and facility")
    func pri() throws {
        let severities: [Logger.Level: Int] = [
            .trace: 7, .debug: 7, .info: 6, .notice: 5, .warning: 4, .error: 3, .critical: 2,
        ]
        for facility in SyslogFacility.allCases {
            for level in Logger.Level.allCases {
                let format = RecordFormat.rfc5424(
                    RFC5424Options(facility: facility, octetCounting: facility.rawValue % 2 == 0))
                var record = encodingGoldenRecord(format: format)
                record.level = level
                let parsed = try EncodingSyslogParser.parseFrame(
                    encodeTestRecord(record, format: format).bytes,
                    octetCounting: facility.rawValue % 2 == 0
                )
                #expect(parsed.pri == Int(facility.rawValue) * 8 + severities[level]!)
                #expect(Int(level.syslogSeverity) == severities[level]!)
            }
        }
    }

    @Test("SD-NAMEs are sanitised and cut to 32 bytes")
    func sdNames() throws {
        let keys = [
            "plain", "with space", "eq=ual", "quo\"te", "brack]et", "émoji😀", "ctl\u{1}", "",
            String(repeating: "k", count: 40),
        ]
        var call: Logger.Metadata = [:]
        for key in keys { call[key] = .string("v") }
        call["deep"] = .dictionary([String(repeating: "x", count: 30): .array(["a"])])
        let format = RecordFormat.rfc5424(Self.lfOptions)
        var record = encodingGoldenRecord(format: format)
        record.handlerMetadata = PreEncodedMetadata()
        record.providerMetadata = nil
        record.callMetadata = call
        let parsed = try EncodingSyslogParser.parseFrame(
            encodeTestRecord(record, format: format).bytes, octetCounting: false)
        let names = parsed.params.map(\.name)
        var expected = call.keys.sorted { utf8Precedes($0, $1) }.map { $0.isEmpty ? "_" : encodingExpectedSDName($0) }
        expected[expected.firstIndex(of: "deep")!] = encodingExpectedSDName(
            "deep." + String(repeating: "x", count: 30) + ".0")
        #expect(Array(names.prefix(expected.count)) == expected)
        #expect(names.allSatisfy { $0.utf8.count <= 32 })
    }

    @Test("every record of the nasty corpus matches the ABNF and round-trips", arguments: [false, true])
    func nastyCorpus(octetCounting: Bool) throws {
        let format = RecordFormat.rfc5424(RFC5424Options(hostname: "h", appName: "a", octetCounting: octetCounting))
        for s in encodingNastyStrings {
            var call: Logger.Metadata = [
                "v": .string(s),
                "nested": .dictionary(["k": .string(s), "arr": .array([.string(s)])]),
                "conv": .stringConvertible(EncodingTestConvertible(description: s)),
            ]
            call[s] = .string("x")
            let record = LogRecordFields(
                timestampNanoseconds: encodingGoldenTimestamp,
                level: .notice,
                label: s,
                message: "\(s)",
                handlerMetadata: PreEncodedMetadata(["h": .string(s)], format: format),
                providerMetadata: ["p": .string(s)],
                callMetadata: call,
                source: s,
                file: s,
                function: s,
                line: 5,
                error: EncodingTestError(description: s)
            )
            let encoded = encodeTestRecord(record, format: format)
            #expect(encoded.outcome.isComplete)
            #expect(String(validating: encoded.bytes, as: UTF8.self) != nil)
            let parsed = try EncodingSyslogParser.parseFrame(encoded.bytes, octetCounting: octetCounting)
            #expect(parsed.pri == 8 + 5)
            #expect(parsed.sdID == "meta@32473")
            func value(_ name: String) -> String? { parsed.params.first { $0.name == name }?.value }
            let text = encodingExpectedSyslogText(s, octetCounting: octetCounting)
            for name in ["h", "p", "v", "nested.k", "nested.arr.0", "conv", "source", "file", "function", "error"] {
                #expect(value(name).map { encodingSameScalars($0, text) } == true, "\(name) of \(s.debugDescription)")
            }
            #expect(value(s.isEmpty ? "_" : encodingExpectedSDName(s)) != nil)
            #expect(value("line") == "5")
            #expect(value("error.type") == "RelayLoggingTests.EncodingTestError")
            if s.isEmpty {
                #expect(parsed.msg == nil)
            } else {
                #expect(parsed.msg.map { encodingSameScalars(String(decoding: $0, as: UTF8.self), text) } == true)
            }
        }
    }
}
