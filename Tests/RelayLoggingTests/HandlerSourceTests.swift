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
import Testing

@testable import RelayLogging

/// The record's `source`: the call site's, or the one swift-log derives from `#fileID`, which the JSON
/// Lines fast path writes itself when `ImplicitSourceProbe` says the event carries none.
@Suite("RelayLogHandler source")
struct HandlerSourceTests {
    /// Logs `event` through a fresh JSON Lines writer and returns the record's `source`.
    func recordedSource(of event: LogEvent) throws -> String? {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        writer.makeHandler(label: "source-test", metadataProvider: nil).log(event: event)
        let lines = splitLines(drainChannel(channel))
        #expect(lines.count == 1)
        return try #require(lines.first.flatMap { parseJSONLine($0) })["source"] as? String
    }

    func event(source: String?, file: String) -> LogEvent {
        LogEvent(
            level: .info, message: "m", metadata: ["k": "v"], source: source, file: file, function: "f()", line: 7)
    }

    @Test("the probe is enabled with the swift-log this package builds against")
    func probeEnabled() {
        // If a swift-log release changes LogEvent's layout, the probe disables itself (records then
        // read `event.source`, which is correct but slower): this test says so, so it gets looked at.
        #expect(ImplicitSourceProbe.shared.isEnabled)
    }

    @Test("the probe tells events with and without a call-site source apart")
    func probeAnswers() {
        let probe = ImplicitSourceProbe.shared
        #expect(probe.hasImplicitSource(self.event(source: nil, file: "App/File.swift")))
        for source in ["", "n/a", "S", "App", String(repeating: "a long explicit source ", count: 3)] {
            #expect(!probe.hasImplicitSource(self.event(source: source, file: "App/File.swift")), "\(source)")
        }
        // A source set after the event was built (as a wrapping handler such as MultiplexLogHandler may do).
        var rewritten = self.event(source: nil, file: "App/File.swift")
        rewritten.source = "Rewritten"
        #expect(!probe.hasImplicitSource(rewritten))
    }

    @Test(
        "a record's source is what swift-log's event.source returns",
        arguments: [
            (nil, "App/Handlers.swift"),
            (nil, "AVeryLongModuleNameIndeed/Sub/Dir/File.swift"),
            (nil, "NoSlashAtAll.swift"),
            (nil, ""),
            (nil, "/LeadingSlash.swift"),
            (nil, "Módulé\"Quote\\/F.swift"),
            ("Explicit", "App/Handlers.swift"),
            ("", "App/Handlers.swift"),
            ("n/a", "App/Handlers.swift"),
            ("An explicit source longer than fifteen bytes", "App/Handlers.swift"),
        ] as [(String?, String)])
    func sourceMatchesSwiftLog(source: String?, file: String) throws {
        let event = self.event(source: source, file: file)
        #expect(try self.recordedSource(of: event) == event.source)
    }

    @Test("a Logger call without source: writes the calling module's name")
    func loggerCallSite() throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        let logger = Logger(label: "source-test") { writer.makeHandler(label: $0, metadataProvider: nil) }
        logger.info("implicit")
        logger.info("explicit", source: "CustomSource")
        let records = splitLines(drainChannel(channel)).compactMap { parseJSONLine($0) }
        #expect(records.map { $0["source"] as? String } == ["RelayLoggingTests", "CustomSource"])
    }
}
