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

/// A record whose metadata keys are the fixed fields' names, as handler, provider and call metadata.
private func collidingRecord(format: RecordFormat) -> LogRecordFields {
    LogRecordFields(
        timestampNanoseconds: encodingGoldenTimestamp,
        level: .info,
        label: "com.example.app",
        message: "hi",
        handlerMetadata: PreEncodedMetadata(["source": "h", "file": "i"], format: format),
        providerMetadata: ["error": ["type": "p", "code": "7"], "function": "q"],
        callMetadata: [
            "ts": "a", "level": "b", "label": "c", "msg": "d", "_msg": "e", "line": "f", "status": "ok",
            "message": "m", "lines": "g",
        ],
        source: "App",
        file: "App/Handlers.swift",
        function: "login(user:)",
        line: 42,
        error: EncodingTestError(description: "boom")
    )
}

@Suite("Metadata keys never pass for fixed fields")
struct EncodingFixedFieldCollisionTests {
    @Test("logfmt: metadata named like a fixed field gets one more `_`, other keys are unchanged")
    func logfmtGolden() throws {
        let encoded = encodeTestRecord(collidingRecord(format: .logfmt), format: .logfmt)
        #expect(
            encoded.text == """
                ts=2026-11-27T15:58:35.123456Z level=info label=com.example.app msg="hi" _file=i _source=h \
                error.code=7 _error.type=p _function=q __msg=e _label=c _level=b _line=f lines=g message=m _msg=d \
                status=ok _ts=a source=App file=App/Handlers.swift function=login(user:) line=42 error="boom" \
                error.type=RelayLoggingTests.EncodingTestError

                """
        )
        let pairs = try EncodingLogfmtParser.parse(encoded.bytes)
        for fixed in ["ts", "level", "label", "msg", "source", "file", "function", "line", "error", "error.type"] {
            #expect(pairs.filter { $0.key == fixed }.count == 1, "\(fixed) appears once: \(encoded.text)")
        }
        #expect(pairs.first { $0.key == "msg" }?.value == "hi")
        #expect(pairs.first { $0.key == "line" }?.value == "42")
    }

    @Test("logfmt: the rule holds for every way a name is built (sanitised, nested, merged, truncated keys)")
    func logfmtEveryPath() throws {
        let call: Logger.Metadata = [
            " ts": "sanitised to _ts", "error": ["type": "nested"], "file": ["x": "not fixed"],
            String(repeating: "_", count: 70) + "level": "long",
        ]
        let record = LogRecordFields(
            timestampNanoseconds: encodingGoldenTimestamp, level: .info, label: "l", message: "m",
            handlerMetadata: PreEncodedMetadata(["msg": "handler"], format: .logfmt),
            providerMetadata: ["line": "provider"], callMetadata: call,
            source: "S", file: "F", function: "f()", line: 1, error: nil
        )
        for maxBytes in [1 << 20, 200] {
            let encoded = encodeTestRecord(record, format: .logfmt, maxBytes: maxBytes)
            let pairs = try EncodingLogfmtParser.parse(encoded.bytes)
            let keys = pairs.map(\.key)
            for fixed in ["ts", "level", "label", "msg", "source", "file", "function", "line"] {
                #expect(keys.filter { $0 == fixed }.count == 1, "\(fixed) appears once: \(encoded.text)")
            }
            #expect(!keys.contains("error.type") && !keys.contains("error"), "\(encoded.text)")
            if maxBytes == 1 << 20 {
                #expect(keys.contains("__ts") && keys.contains("_error.type") && keys.contains("file.x"))
                #expect(keys.contains(String(repeating: "_", count: 71) + "level"))
                #expect(keys.contains("_msg") && keys.contains("_line"))
            }
        }
    }

    @Test("RFC 5424: SD-PARAMs named like a fixed PARAM-NAME get one more `_`, within 32 bytes")
    func syslogGolden() throws {
        let format = RecordFormat.rfc5424(RFC5424Options(hostname: "host1", appName: "app", procID: "1234"))
        let encoded = encodeTestRecord(collidingRecord(format: format), format: format)
        #expect(
            encoded.text == """
                <14>1 2026-11-27T15:58:35.123456Z host1 app 1234 - [meta@32473 _file="i" _source="h" \
                error.code="7" _error.type="p" _function="q" _msg="e" label="c" level="b" _line="f" lines="g" \
                message="m" msg="d" status="ok" ts="a" source="App" file="App/Handlers.swift" \
                function="login(user:)" line="42" error="boom" error.type="RelayLoggingTests.EncodingTestError"] hi

                """
        )
        let parsed = try EncodingSyslogParser.parseFrame(encoded.bytes, octetCounting: false)
        for fixed in ["source", "file", "function", "line", "error", "error.type"] {
            #expect(parsed.params.filter { $0.name == fixed }.count == 1, "\(fixed) appears once: \(encoded.text)")
        }

        // A 32-byte name that qualifies keeps the limit: one `_` more, its last byte cut.
        var record = collidingRecord(format: format)
        record.handlerMetadata = PreEncodedMetadata()
        record.providerMetadata = nil
        record.callMetadata = [String(repeating: "_", count: 28) + "line": "v", "sou]rce": "w"]
        let long = try EncodingSyslogParser.parseFrame(encodeTestRecord(record, format: format).bytes, octetCounting: false)
        let names = long.params.map(\.name)
        #expect(names.prefix(2) == [String(repeating: "_", count: 29) + "lin", "sou_rce"])
        #expect(names.allSatisfy { (1...32).contains($0.utf8.count) })
    }

    @Test("JSON Lines: metadata is nested under \"metadata\", so its keys never meet the fixed members")
    func jsonLinesNested() throws {
        let encoded = encodeTestRecord(collidingRecord(format: .jsonLines), format: .jsonLines)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(encoded.bytes)) as? [String: Any])
        #expect(Set(object.keys) == ["timestamp", "level", "label", "message", "metadata", "source", "file", "function", "line", "error"])
        #expect(object["message"] as? String == "hi")
        #expect(object["line"] as? Int == 42)
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(metadata["msg"] as? String == "d")
        #expect(metadata["line"] as? String == "f")
        #expect(metadata["message"] as? String == "m")
        // Metadata is one member: the text holds each fixed member once (JSONSerialization would hide a duplicate).
        #expect(encoded.text.hasPrefix(#"{"timestamp":"2026-11-27T15:58:35.123456Z","level":"info","label":"com.example.app","message":"hi","metadata":{"#))
        #expect(encoded.text.hasSuffix(#"},"source":"App","file":"App/Handlers.swift","function":"login(user:)","line":42,"error":{"message":"boom","type":"RelayLoggingTests.EncodingTestError"}}"# + "\n"))
    }

    @Test("the fixed-name check")
    func fixedNameCheck() {
        func check(_ name: String, _ style: NameStyle) -> Bool {
            Array(name.utf8).withUnsafeBytes { FixedFieldNames.isFixedFieldName($0, style: style) }
        }
        #expect(check("msg", .logfmtKey) && check("__msg", .logfmtKey) && check("error.type", .logfmtKey))
        #expect(!check("msg", .structuredDataName) && check("_line", .structuredDataName))
        #expect(!check("msgs", .logfmtKey) && !check("_", .logfmtKey) && !check("", .logfmtKey) && !check("m_sg", .logfmtKey))
    }
}
