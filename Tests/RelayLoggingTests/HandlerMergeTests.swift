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
import Synchronization
import Testing

@testable import RelayLogging

private enum TestContext {
    @TaskLocal static var requestID: String?
}

@Suite("RelayLogHandler metadata merge and provider")
struct HandlerMergeTests {
    @Test("handler < provider < call, each key once, handler entries first and sorted", arguments: [false, true])
    func mergeOrder(sorted: Bool) throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel, sortsMetadataKeys: sorted)
        var logger = makeTestLogger(
            writer, metadataProvider: Logger.MetadataProvider { ["b": "provider", "d": "provider", "p": "provider"] })
        logger[metadataKey: "c"] = "handler"
        logger[metadataKey: "a"] = "handler"
        logger[metadataKey: "b"] = "handler"
        let call: Logger.Metadata = ["c": "call", "d": "call", "e": "call"]
        logger.info("merge", metadata: call)

        let line = try #require(splitLines(drainChannel(channel)).first)
        let record = try #require(parseJSONLine(line))
        let metadata = try #require(record["metadata"] as? [String: String])
        #expect(
            metadata == ["a": "handler", "b": "provider", "c": "call", "d": "call", "e": "call", "p": "provider"])
        // Each key once, handler entries first in key order.
        let text = String(decoding: line, as: UTF8.self)
        for key in ["a", "b", "c", "d", "e", "p"] {
            #expect(text.components(separatedBy: "\"\(key)\":").count == 2, "key \(key) must appear once")
        }
        #expect(text.contains(#""metadata":{"a":"handler","b":"provider""#) || text.contains(#""metadata":{"a":"handler","#))
        if sorted {
            #expect(text.contains(#""metadata":{"a":"handler","b":"provider","p":"provider","c":"call","d":"call","e":"call"}"#))
        }
    }

    @Test("a provider that logs through a logger with the same provider is not asked again from inside itself")
    func providerThatLogs() throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        let calls = Atomic<Int>(0)
        // Without a guard every record the provider logs asks the provider again, without end (a
        // stack overflow); the cap only keeps the process alive when that happens.
        let inner = RelayMutex<Logger?>(nil)
        let provider = Logger.MetadataProvider {
            let call = calls.add(1, ordering: .relaxed).newValue
            if call < 20, let logger = inner.withLock({ $0 }) {
                logger.info("from the provider")
            }
            return ["provided": "yes"]
        }
        let logger = makeTestLogger(writer, metadataProvider: provider)
        inner.withLock { $0 = logger }
        // The box closes a cycle (logger → provider → box → logger): break it.
        defer { inner.withLock { $0 = nil } }
        logger.info("outer")
        #expect(calls.load(ordering: .relaxed) == 1, "the provider was asked again from inside itself")

        let records = splitLines(drainChannel(channel)).compactMap { parseJSONLine($0) }
        #expect(records.map { $0["message"] as? String } == ["from the provider", "outer"])
        #expect(records.first?["metadata"] == nil, "a record logged inside the provider gets no provider metadata")
        #expect((records.last?["metadata"] as? [String: String]) == ["provided": "yes"])
    }

    @Test("the provider is asked once per record and sees task-local values")
    func providerPerRecord() async throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        let calls = Atomic<Int>(0)
        let provider = Logger.MetadataProvider {
            calls.add(1, ordering: .relaxed)
            guard let id = TestContext.requestID else { return [:] }
            return ["request-id": .string(id)]
        }
        let logger = makeTestLogger(writer, metadataProvider: provider)
        logger.info("outside")
        TestContext.$requestID.withValue("r-1") {
            logger.info("inside")
        }
        logger.trace("also outside")
        #expect(calls.load(ordering: .relaxed) == 3)

        let records = splitLines(drainChannel(channel)).compactMap { parseJSONLine($0) }
        #expect(records.count == 3)
        #expect(records[0]["metadata"] == nil)
        #expect((records[1]["metadata"] as? [String: String]) == ["request-id": "r-1"])
        #expect(records[2]["metadata"] == nil)
    }

    @Test("event.error is encoded with its description and type")
    func errorIsEncoded() throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        let logger = makeTestLogger(writer)
        logger.error("failed", error: EncodingTestError(description: "disk \"full\"\nretry"))
        logger.info("fine")

        let records = splitLines(drainChannel(channel)).compactMap { parseJSONLine($0) }
        let error = try #require(records.first?["error"] as? [String: String])
        #expect(error["message"] == "disk \"full\"\nretry")
        #expect(error["type"]?.hasSuffix("EncodingTestError") == true)
        #expect(records.last?["error"] == nil)
    }

    @Test("the source is the call site's, or the module of the file")
    func source() throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        let logger = makeTestLogger(writer)
        logger.info("derived")
        logger.info("explicit", source: "CustomSource")
        logger.info("explicit long", source: "AVeryLongExplicitSourceName")
        logger.log(level: .info, "no module", file: "nofile", function: "f", line: 1)

        let records = splitLines(drainChannel(channel)).compactMap { parseJSONLine($0) }
        #expect(records.map { $0["source"] as? String } == ["RelayLoggingTests", "CustomSource", "AVeryLongExplicitSourceName", "n/a"])
        #expect(records.first?["file"] as? String == "RelayLoggingTests/HandlerMergeTests.swift")
        #expect(records.first?["function"] as? String == "source()")
    }

    @Test("nested and stringConvertible values from every layer")
    func nestedAndConvertible() throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        var logger = makeTestLogger(
            writer,
            metadataProvider: Logger.MetadataProvider {
                ["prov": ["list": ["x", ["y": "z"]]], "conv": .stringConvertible(EncodingTestConvertible(description: "c"))]
            })
        logger[metadataKey: "h"] = .stringConvertible(EncodingTestConvertible(description: "frozen"))
        logger.info("nested", metadata: ["call": ["a": ["1", "2"], "b": [:]], "empty": []])

        let record = try #require(splitLines(drainChannel(channel)).first.flatMap { parseJSONLine($0) })
        let expected: Logger.Metadata = [
            "h": "frozen", "prov": ["list": ["x", ["y": "z"]]], "conv": "c",
            "call": ["a": ["1", "2"], "b": [:]], "empty": [],
        ]
        #expect(encodingJSONObjectEquals(record["metadata"], expected))
    }

    @Test(
        "keys that are equal Strings with different UTF-8 bytes override like any equal key (fast path)",
        arguments: [
            ("caf\u{E9}", "cafe\u{301}"),  // precomposed and decomposed é
            ("K", "\u{212A}"),  // LATIN CAPITAL K and KELVIN SIGN (canonically equivalent)
        ])
    func canonicallyEquivalentKeys(lower: String, higher: String) throws {
        #expect(lower == higher && Array(lower.utf8) != Array(higher.utf8))
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        // Handler < call.
        var logger = makeTestLogger(writer)
        logger[metadataKey: lower] = "handler"
        logger.info("first", metadata: [higher: "call"])
        // Provider < call.
        let provided = makeTestLogger(writer, metadataProvider: Logger.MetadataProvider { [lower: "provider"] })
        provided.info("second", metadata: [higher: "call"])

        let lines = splitLines(drainChannel(channel))
        try #require(lines.count == 2)
        for line in lines {
            let text = String(decoding: line, as: UTF8.self)
            let members = text.components(separatedBy: "\":\"").count - 1
            // "level", "label", "message", source, file, function, timestamp, and one metadata member.
            #expect(!text.contains("handler") && !text.contains("provider"), "overridden entry written: \(text)")
            #expect(members == 8, "\(text)")
            let record = try #require(parseJSONLine(line))
            let metadata = try #require(record["metadata"] as? [String: String])
            #expect(metadata.count == 1 && metadata.values.first == "call", "\(text)")
        }
    }
}
