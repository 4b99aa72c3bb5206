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

@Suite("Metadata merge")
struct EncodingMetadataMergeTests {
    func record(
        format: RecordFormat,
        handler: Logger.Metadata,
        provider: Logger.Metadata?,
        call: Logger.Metadata?,
        handlerFormat: RecordFormat? = nil
    ) -> LogRecordFields {
        LogRecordFields(
            timestampNanoseconds: 0, level: .info, label: "l", message: "m",
            handlerMetadata: PreEncodedMetadata(handler, format: handlerFormat ?? format),
            providerMetadata: provider, callMetadata: call,
            source: "S", file: "f", function: "g", line: 1
        )
    }

    /// The metadata part of a JSON line, as written.
    func jsonMetadata(_ text: String) -> String? {
        guard let open = text.range(of: ",\"metadata\":{"),
            let close = text.range(of: "},\"source\":", options: .backwards)
        else {
            return nil
        }
        return String(text[open.upperBound..<close.lowerBound])
    }

    @Test("merged dictionary follows swift-log's order: handler < provider < call")
    func mergedDictionary() {
        let merged = MetadataMerge.merged(
            handler: ["a": "h", "b": "h", "c": "h"],
            provider: ["b": "p", "d": "p"],
            call: ["c": "c", "d": "c", "e": "c"]
        )
        #expect(merged == ["a": "h", "b": "p", "c": "c", "d": "c", "e": "c"])
        #expect(MetadataMerge.merged(handler: ["a": "h"], provider: nil, call: nil) == ["a": "h"])
        #expect(MetadataMerge.isHandlerKeyOverridden("b", provider: ["b": "p"], call: nil))
        #expect(!MetadataMerge.isHandlerKeyOverridden("a", provider: ["b": "p"], call: ["c": "c"]))
        #expect(MetadataMerge.overridesAny(["x": "1", "b": "2"], in: ["b": "h"]))
        #expect(MetadataMerge.overridesAny(["b": "2"], in: ["a": "h", "b": "h", "c": "h"]))
        #expect(!MetadataMerge.overridesAny(["x": "1"], in: ["b": "h"]))
        #expect(!MetadataMerge.overridesAny(nil, in: ["b": "h"]))
    }

    @Test("collisions: overridden keys are left out of the lower layers, in every format")
    func collisionsInEveryFormat() throws {
        let handler: Logger.Metadata = ["a": "h", "b": "h", "c": "h"]
        let provider: Logger.Metadata = ["b": "p", "d": "p"]
        let call: Logger.Metadata = ["c": "c", "d": "c", "e": "c"]

        let json = encodeTestRecord(
            record(format: .jsonLines, handler: handler, provider: provider, call: call), format: .jsonLines)
        #expect(jsonMetadata(json.text) == #""a":"h","b":"p","c":"c","d":"c","e":"c""#)

        let logfmt = encodeTestRecord(
            record(format: .logfmt, handler: handler, provider: provider, call: call), format: .logfmt)
        #expect(logfmt.text.contains(#"msg="m" a=h b=p c=c d=c e=c source=S"#))

        let format = RecordFormat.rfc5424(RFC5424Options())
        let syslog = encodeTestRecord(
            record(format: format, handler: handler, provider: provider, call: call), format: format)
        #expect(syslog.text.contains(#"[meta@32473 a="h" b="p" c="c" d="c" e="c" source="S""#))
    }

    @Test("the first handler entry overridden: no stray comma in JSON")
    func firstEntryOverridden() throws {
        let r = record(format: .jsonLines, handler: ["a": "h", "b": "h"], provider: nil, call: ["a": "c"])
        let encoded = encodeTestRecord(r, format: .jsonLines)
        #expect(jsonMetadata(encoded.text) == #""b":"h","a":"c""#)
        _ = try JSONSerialization.jsonObject(with: Data(encoded.bytes))

        let all = record(format: .jsonLines, handler: ["a": "h"], provider: ["a": "p"], call: nil)
        #expect(jsonMetadata(encodeTestRecord(all, format: .jsonLines).text) == #""a":"p""#)
    }

    @Test("no metadata at all: no metadata object; only one layer: only its entries")
    func layers() {
        let none = encodeTestRecord(
            record(format: .jsonLines, handler: [:], provider: [:], call: [:]), format: .jsonLines)
        #expect(!none.text.contains("metadata"))
        let providerOnly = encodeTestRecord(
            record(format: .jsonLines, handler: [:], provider: ["p": "1"], call: nil), format: .jsonLines)
        #expect(jsonMetadata(providerOnly.text) == #""p":"1""#)
        let callOnly = encodeTestRecord(
            record(format: .jsonLines, handler: [:], provider: nil, call: ["z": "1", "y": "2"]), format: .jsonLines)
        #expect(jsonMetadata(callOnly.text) == #""y":"2","z":"1""#)
    }

    @Test("random layers: the JSON metadata equals the merged dictionary, with no duplicate key")
    func randomLayers() throws {
        var generator = SystemRandomNumberGenerator()
        let keys = ["a", "b", "c", "d", "e", "f", "é", "A", "a.b", ""]
        func layer() -> Logger.Metadata? {
            if Int.random(in: 0..<5, using: &generator) == 0 { return nil }
            var m: Logger.Metadata = [:]
            for key in keys where Bool.random(using: &generator) {
                m[key] =
                    Bool.random(using: &generator)
                    ? .string("\(key)-\(Int.random(in: 0..<100))") : .array([.string(key)])
            }
            return m
        }
        for format in [RecordFormat.jsonLines, .logfmt] {
            for _ in 0..<300 {
                let handler = layer() ?? [:]
                let provider = layer()
                let call = layer()
                let encoded = encodeTestRecord(
                    record(format: .jsonLines, handler: handler, provider: provider, call: call, handlerFormat: format),
                    format: .jsonLines)
                let object = try #require(try JSONSerialization.jsonObject(with: Data(encoded.bytes)) as? [String: Any])
                let merged = MetadataMerge.merged(handler: handler, provider: provider, call: call)
                if merged.isEmpty {
                    #expect(object["metadata"] == nil)
                    continue
                }
                #expect(encodingJSONObjectEquals(object["metadata"], merged), "\(encoded.text)")
                let members = encodingSplitJSONMembers(try #require(jsonMetadata(encoded.text)))
                #expect(members.count == merged.count, "duplicate keys in \(encoded.text)")
            }
        }
    }

    @Test("handler metadata is rendered once, sorted, and copied verbatim")
    func preEncoded() {
        let metadata: Logger.Metadata = ["zeta": "1", "alpha": ["x": "y"], "mid": ["1", "2"]]
        let json = PreEncodedMetadata(metadata, format: .jsonLines)
        #expect(json.count == 3)
        #expect(String(decoding: json.bytes, as: UTF8.self) == #","alpha":{"x":"y"},"mid":["1","2"],"zeta":"1""#)
        let logfmt = PreEncodedMetadata(metadata, format: .logfmt)
        #expect(String(decoding: logfmt.bytes, as: UTF8.self) == " alpha.x=y mid.0=1 mid.1=2 zeta=1")
        let sd = PreEncodedMetadata(metadata, format: .rfc5424(RFC5424Options()))
        #expect(String(decoding: sd.bytes, as: UTF8.self) == #" alpha.x="y" mid.0="1" mid.1="2" zeta="1""#)
        #expect(PreEncodedMetadata().isEmpty)
        #expect(PreEncodedMetadata([:], format: .logfmt).isEmpty)
    }

    @Test("stringConvertible handler values are captured when the metadata is set")
    func stringConvertibleFrozen() {
        final class Counter: CustomStringConvertible, @unchecked Sendable {
            var value = 0
            var description: String {
                self.value += 1
                return "call \(self.value)"
            }
        }
        let counter = Counter()
        let pre = PreEncodedMetadata(["c": .stringConvertible(counter)], format: .logfmt)
        #expect(counter.value == 1)
        let r = LogRecordFields(
            timestampNanoseconds: 0, level: .info, label: "l", message: "m", handlerMetadata: pre,
            source: "S", file: "f", function: "g", line: 1
        )
        let first = encodeTestRecord(r, format: .logfmt).text
        let second = encodeTestRecord(r, format: .logfmt).text
        #expect(first == second)
        #expect(first.contains(#"c="call 1""#))
        #expect(counter.value == 1)
    }

    @Test("handler metadata built for another format renders like a matching one")
    func otherFormat() {
        let handler: Logger.Metadata = ["a": ["b": "c"], "d": "e f", "g": "x"]
        for format in [RecordFormat.jsonLines, .logfmt, .rfc5424(RFC5424Options())] {
            for other in [RecordFormat.jsonLines, .logfmt, .rfc5424(RFC5424Options(octetCounting: true))] {
                let matching = encodeTestRecord(
                    record(format: format, handler: handler, provider: nil, call: ["g": "y"]), format: format)
                let mismatched = encodeTestRecord(
                    record(format: format, handler: handler, provider: nil, call: ["g": "y"], handlerFormat: other),
                    format: format
                )
                #expect(matching.bytes == mismatched.bytes)
            }
        }
    }

    @Test("nested dictionaries are written with sorted keys")
    func nestedSorted() {
        var nested: Logger.Metadata = [:]
        for i in (0..<100).shuffled() { nested["k\(i)"] = .string("\(i)") }
        let text = encodeTestRecord(
            record(format: .jsonLines, handler: [:], provider: nil, call: ["n": .dictionary(nested)]),
            format: .jsonLines
        ).text
        let order = nested.keys.sorted { utf8Precedes($0, $1) }
        let expected = "\"n\":{" + order.map { "\"\($0)\":\"\(nested[$0]!.description)\"" }.joined(separator: ",") + "}"
        #expect(jsonMetadata(text) == expected)
    }
}
