//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Logging
import Relay
import Testing

@testable import RelayLogging

@Suite("RelayLogHandler value semantics")
struct HandlerValueSemanticsTests {
    /// swift-log's `LogHandler` documentation test, with the handler made by a factory instead of
    /// `LoggingSystem.bootstrap` (which a process can do once; the bootstrap test runs it verbatim).
    @Test("the value-semantics test from swift-log's LogHandler documentation")
    func logHandlerValueSemantics() throws {
        let writer = RelayLogWriter(channel: try makeTestChannel())
        var logger1 = Logger(label: "first logger") { writer.makeHandler(label: $0) }
        logger1.logLevel = .debug
        logger1[metadataKey: "only-on"] = "first"

        var logger2 = logger1
        logger2.logLevel = .error  // Must not affect logger1
        logger2[metadataKey: "only-on"] = "second"  // Must not affect logger1

        #expect(logger1.logLevel == .debug)
        #expect(logger2.logLevel == .error)
        #expect(logger1[metadataKey: "only-on"] == "first")
        #expect(logger2[metadataKey: "only-on"] == "second")
    }

    @Test("each copy logs with its own level and metadata")
    func copiesLogTheirOwnValues() throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        var logger1 = makeTestLogger(writer, label: "copies", level: .debug)
        logger1[metadataKey: "only-on"] = "first"
        var logger2 = logger1
        logger2.logLevel = .error
        logger2[metadataKey: "only-on"] = "second"
        logger2[metadataKey: "extra"] = "2"

        logger1.debug("one")
        logger2.debug("dropped by level")
        logger2.error("two")
        logger1.info("three")

        let lines = splitLines(drainChannel(channel)).compactMap { parseJSONLine($0) }
        #expect(lines.map { $0["message"] as? String } == ["one", "two", "three"])
        #expect(lines.map { ($0["metadata"] as? [String: Any])?["only-on"] as? String } == ["first", "second", "first"])
        #expect(lines.map { ($0["metadata"] as? [String: Any])?["extra"] as? String } == [nil, "2", nil])
        #expect(lines.map { $0["level"] as? String } == ["debug", "error", "info"])
    }

    @Test("metadataProvider is a value too")
    func metadataProviderValueSemantics() throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        let logger1 = makeTestLogger(writer, metadataProvider: Logger.MetadataProvider { ["p": "1"] })
        var handler2 = logger1.handler as! RelayLogHandler
        handler2.metadataProvider = Logger.MetadataProvider { ["p": "2"] }
        let logger2 = Logger(label: "test") { _ in handler2 }

        #expect(logger1.metadataProvider?.get()["p"] == "1")
        #expect(logger2.metadataProvider?.get()["p"] == "2")
        logger1.info("a")
        logger2.info("b")
        var handler3 = handler2
        handler3.metadataProvider = nil
        Logger(label: "test") { _ in handler3 }.info("c")

        let lines = splitLines(drainChannel(channel)).compactMap { parseJSONLine($0) }
        #expect(lines.map { ($0["metadata"] as? [String: Any])?["p"] as? String } == ["1", "2", nil])
    }

    @Test("handler metadata is rendered when it is set, not per record")
    func handlerMetadataPreEncoded() throws {
        let writer = RelayLogWriter(channel: try makeTestChannel())
        var handler = writer.makeHandler(label: "x")
        #expect(handler.encodedMetadata.isEmpty)
        handler[metadataKey: "b"] = "2"
        handler[metadataKey: "a"] = ["x": "y"]
        #expect(String(decoding: handler.encodedMetadata.bytes, as: UTF8.self) == #","a":{"x":"y"},"b":"2""#)
        handler.metadata = ["only": "one"]
        #expect(String(decoding: handler.encodedMetadata.bytes, as: UTF8.self) == #","only":"one""#)
        #expect(handler.metadata == ["only": "one"])
        handler[metadataKey: "only"] = nil
        #expect(handler.encodedMetadata.isEmpty)
        #expect(handler.metadata.isEmpty)
    }

    @Test("handler metadata is rendered in the writer's format")
    func handlerMetadataFollowsFormat() throws {
        let writer = RelayLogWriter(channel: try makeTestChannel(), format: .logfmt)
        var handler = writer.makeHandler(label: "x")
        handler[metadataKey: "k"] = "v w"
        #expect(String(decoding: handler.encodedMetadata.bytes, as: UTF8.self) == #" k="v w""#)
    }
}
