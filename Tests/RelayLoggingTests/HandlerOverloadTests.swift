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
import Synchronization
import Testing

@testable import RelayLogging

/// The records of a drained channel, sorted into log records and drop reports.
struct DrainedRecords {
    var records: [[String: Any]] = []
    var reports: [[String: Any]] = []
    var blankLines = 0
    var droppedReported: Int { self.reports.reduce(0) { $0 + (Int(($1["metadata"] as? [String: String])?["relay.dropped"] ?? "") ?? -1_000_000) } }

    init(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        for line in splitLines(bytes) {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0A }) {
                self.blankLines += 1
                continue
            }
            guard let record = parseJSONLine(line, sourceLocation: sourceLocation) else { continue }
            if record["label"] as? String == "relay.logging" {
                self.reports.append(record)
            } else {
                self.records.append(record)
            }
        }
    }
}

/// A description that is short the first time and long afterwards.
final class ChangingDescription: CustomStringConvertible, Sendable {
    let calls = Atomic<Int>(0)
    var description: String {
        self.calls.add(1, ordering: .relaxed).oldValue == 0 ? "short" : "a-much-longer-description-than-before"
    }
}

/// An error whose description is short the first time and long afterwards.
final class ChangingError: Error, CustomStringConvertible, Sendable {
    let calls = Atomic<Int>(0)
    var description: String {
        self.calls.add(1, ordering: .relaxed).oldValue == 0 ? "short" : "a-much-longer-description-than-before"
    }
}

@Suite("RelayLogHandler overload, drops and losses")
struct HandlerOverloadTests {
    @Test("drop mode: every dropped record is reported exactly once, after space returns (no report interval)")
    func dropAccounting() throws {
        let channel = try makeTestChannel(mode: .drop, subbufferSize: 4096, subbufferCount: 2, buffers: 2)
        // Interval zero: a report after every record that finds space and follows new drops, so the
        // record logged once space returns reports the rest at once.
        let writer = RelayLogWriter(channel: channel, dropReportInterval: .zero)
        let threads = 4
        let perThread = 3000
        TestThreads.run(count: threads) { thread in
            let logger = makeTestLogger(writer)
            for i in 0..<perThread {
                logger.info("record", metadata: ["thread": "\(thread)", "i": "\(i)"])
            }
        }
        let during = writer.stats()
        #expect(during.recordsDropped > 0, "a 16 KiB channel without a consumer must drop")
        // While one CPU buffer is full another may still have room: records written there report
        // the drops so far.
        #expect(during.dropsPending + during.dropsReported == during.recordsDropped)

        // Space returns: the next record is preceded by the report.
        var bytes = drainChannel(channel)
        makeTestLogger(writer).info("after")
        bytes += drainChannel(channel)

        let drained = DrainedRecords(bytes)
        let stats = writer.stats()
        #expect(drained.blankLines == 0)
        #expect(drained.reports.count >= 1)
        #expect(stats.dropReports == UInt64(drained.reports.count))
        #expect(stats.dropsPending == 0)
        #expect(drained.droppedReported == Int(stats.recordsDropped))
        #expect(stats.dropsReported == stats.recordsDropped)
        #expect(drained.records.count + drained.droppedReported == threads * perThread + 1)
        #expect(drained.records.last?["message"] as? String == "after")
        // Unique records: nothing written twice.
        let keys = Set(drained.records.compactMap { ($0["metadata"] as? [String: String]).map { "\($0["thread"]!)/\($0["i"]!)" } })
        #expect(keys.count == drained.records.count - 1)

        for report in drained.reports {
            #expect(report["level"] as? String == "warning")
            let message = try #require(report["message"] as? String)
            let metadata = try #require(report["metadata"] as? [String: String])
            let count = try #require(metadata["relay.dropped"])
            let since = try #require(metadata["relay.dropped_since"])
            #expect(message == "\(count) log records dropped since \(since): the relay channel was full")
            #expect(since <= (report["timestamp"] as? String ?? ""))
        }
    }

    @Test("block mode: nothing is lost while a consumer frees space")
    func blockModeLosesNothing() throws {
        let channel = try makeTestChannel(mode: .block(timeout: nil), subbufferSize: 4096, subbufferCount: 2, buffers: 1)
        let writer = RelayLogWriter(channel: channel)
        let collected = RelayMutex<[UInt8]>([])
        let stop = Atomic<Bool>(false)
        let consumer = TestThreads.spawn {
            while !stop.load(ordering: .acquiring) {
                let bytes = drainChannel(channel, flush: false)
                collected.withLock { $0 += bytes }
                // A pause after every drain, not only an empty one: the producers must find the
                // buffer full however fast they run (a sanitizer build runs them several times
                // slower, and then a consumer that drains at once kept up with them).
                usleep(1000)
            }
            let rest = drainChannel(channel)
            collected.withLock { $0 += rest }
        }
        let threads = 4
        let perThread = 2000
        TestThreads.run(count: threads) { thread in
            let logger = makeTestLogger(writer)
            for i in 0..<perThread {
                logger.info("record", metadata: ["thread": "\(thread)", "i": "\(i)"])
            }
        }
        stop.store(true, ordering: .releasing)
        TestThreads.join(consumer)

        let drained = DrainedRecords(collected.withLock { $0 })
        #expect(drained.records.count == threads * perThread)
        #expect(drained.reports.isEmpty)
        #expect(writer.stats().recordsDropped == 0)
        #expect(channel.stats().total.writerWaits > 0, "the producers must have waited for space")
    }

    @Test("block mode with a timeout: records that find no space are dropped and reported; one wait per stall")
    func blockTimeout() throws {
        let channel = try makeTestChannel(
            mode: .block(timeout: .milliseconds(2)), subbufferSize: 4096, subbufferCount: 2, buffers: 1)
        let writer = RelayLogWriter(channel: channel)
        let logger = makeTestLogger(writer)
        for i in 0..<60 { logger.info("record \(i)", metadata: ["pad": .string(String(repeating: "x", count: 200))]) }
        let dropped = writer.stats().recordsDropped
        #expect(dropped > 0)
        var bytes = drainChannel(channel)
        logger.info("after")
        bytes += drainChannel(channel)
        let drained = DrainedRecords(bytes)
        #expect(drained.droppedReported == Int(dropped))
        #expect(drained.records.count + drained.droppedReported == 61)
        // One wait per stall: the first drop waited its timeout, the rest of the stall failed at once.
        #expect(channel.stats().total.blockTimeouts == 1)
        #expect(channel.stats().total.recordsDropped == dropped)
    }

    @Test("a report that finds no space keeps the drops for the next one")
    func reportWithoutSpace() throws {
        let channel = try makeTestChannel(mode: .drop, subbufferSize: 4096, subbufferCount: 2, buffers: 1)
        let writer = RelayLogWriter(channel: channel)
        let logger = makeTestLogger(writer)
        for i in 0..<200 { logger.info("fill \(i)") }
        let first = writer.stats().recordsDropped
        #expect(first > 0)
        // Still full: reporting fails and keeps the count; more drops join the same episode.
        #expect(!writer.reportDrops())
        logger.info("dropped too")
        #expect(writer.stats().dropsPending == first + 1)
        var bytes = drainChannel(channel)
        #expect(writer.reportDrops())
        bytes += drainChannel(channel)
        let drained = DrainedRecords(bytes)
        #expect(drained.reports.count == 1)
        #expect(drained.droppedReported == Int(first) + 1)
    }

    @Test("a record that cannot fit even truncated (a huge label) is dropped and reported, not counted as truncated")
    func unencodableRecord() throws {
        let channel = try makeTestChannel(subbufferSize: 4096, subbufferCount: 4)
        let writer = RelayLogWriter(channel: channel)
        makeTestLogger(writer, label: String(repeating: "L", count: 5000)).info("lost")
        makeTestLogger(writer).info("kept")
        let drained = DrainedRecords(drainChannel(channel))
        #expect(drained.records.map { $0["message"] as? String } == ["kept"])
        #expect(drained.droppedReported == 1)
        let stats = writer.stats()
        #expect(stats.recordsDropped == 1)
        #expect(stats.recordsWritten == 1)
        // Truncated records are written records with a marker; this one was not written at all.
        #expect(stats.recordsTruncated == 0)
    }

    @Test("the report of a record dropped for being too large says so, not that the channel was full")
    func tooLargeDropReportReason() throws {
        let channel = try makeTestChannel(subbufferSize: 4096, subbufferCount: 4)
        let writer = RelayLogWriter(channel: channel)
        makeTestLogger(writer, label: String(repeating: "L", count: 5000)).info("lost")
        makeTestLogger(writer).info("kept")
        let drained = DrainedRecords(drainChannel(channel))
        let report = try #require(drained.reports.first)
        let message = try #require(report["message"] as? String)
        // The channel had space all along: only the label was too long for its largest record.
        #expect(!message.contains("was full"), "misleading reason: \(message)")
        #expect(message.contains("too large"), "no reason given: \(message)")
        #expect((report["metadata"] as? [String: String])?["relay.dropped_too_large"] == "1")
        #expect(drained.droppedReported == 1)
    }

    @Test("records logged after the channel closed are counted as refused")
    func closedChannel() throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        let logger = makeTestLogger(writer)
        logger.info("before")
        channel.close()
        for _ in 0..<3 { logger.info("after close", metadata: ["k": "v"]) }
        let stats = writer.stats()
        #expect(stats.recordsRefusedClosed == 3)
        #expect(stats.recordsDropped == 0)
        #expect(DrainedRecords(drainChannel(channel, flush: false)).records.count == 1)
    }

    @Test(
        "the general path takes a description that changes length once: no blank line, in any format",
        arguments: ["logfmt", "json-long"])
    func changingDescription(format: String) throws {
        // logfmt always takes the general encoder, which measures before it writes; JSON Lines takes
        // it for a message too long for the fast path.
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel, format: format == "logfmt" ? .logfmt : .jsonLines)
        let logger = makeTestLogger(writer)
        let message = format == "logfmt" ? "flaky" : "flaky " + String(repeating: "m", count: 600)
        logger.info("\(message)", metadata: ["v": .stringConvertible(ChangingDescription())])
        logger.error("\(message)", error: ChangingError())
        let bytes = drainChannel(channel)
        let lines = splitLines(bytes)
        let blank = lines.filter { $0.allSatisfy { $0 == 0x20 || $0 == 0x0A } }
        let records = lines.filter { !$0.allSatisfy { $0 == 0x20 || $0 == 0x0A } }
        #expect(blank.isEmpty, "a blank line is not a record (and not JSON)")
        #expect(writer.stats().blankRecords == 0)
        #expect(records.count == 2)
        let first = String(decoding: records.first ?? [], as: UTF8.self)
        if format == "logfmt" {
            #expect(first.contains("v=short"), "the description as first taken: \(first)")
        } else {
            let object = try JSONSerialization.jsonObject(with: Data(records.first ?? [])) as? [String: Any]
            #expect((object?["metadata"] as? [String: String])?["v"] == "short")
            for record in records {
                #expect((try? JSONSerialization.jsonObject(with: Data(record))) != nil, "not JSON: \(String(decoding: record, as: UTF8.self))")
            }
        }
    }

    @Test(
        "RFC 5424: a description that changes length between passes keeps every frame valid",
        arguments: [false, true])
    func changingDescriptionSyslog(octetCounting: Bool) throws {
        // A blank filler line is not a syslog message, and between octet-counted frames it breaks the framing.
        let channel = try makeTestChannel()
        let options = RFC5424Options(hostname: "h", appName: "app", octetCounting: octetCounting)
        let writer = RelayLogWriter(channel: channel, format: .rfc5424(options))
        let logger = makeTestLogger(writer)
        logger.info("flaky value", metadata: ["v": .stringConvertible(ChangingDescription())])
        logger.info("flaky nested", metadata: ["d": ["n": .stringConvertible(ChangingDescription())]])
        logger.error("flaky error", error: ChangingError())
        logger.info("after")
        var bytes = drainChannel(channel)[...]
        var frames: [[UInt8]] = []
        while !bytes.isEmpty {
            if octetCounting {
                let space = try #require(bytes.firstIndex(of: 0x20))
                let length = try #require(Int(String(decoding: bytes[bytes.startIndex..<space], as: UTF8.self)))
                let end = try #require(space + 1 + length <= bytes.endIndex ? space + 1 + length : nil)
                frames.append(Array(bytes[bytes.startIndex..<end]))
                bytes = bytes[end...]
            } else {
                let end = try #require(bytes.firstIndex(of: 0x0A)) + 1
                frames.append(Array(bytes[bytes.startIndex..<end]))
                bytes = bytes[end...]
            }
        }
        let messages = try frames.map { frame in
            try EncodingSyslogParser.parseFrame(frame, octetCounting: octetCounting)
        }
        #expect(messages.map { String(decoding: $0.msg ?? [], as: UTF8.self) } == [
            "flaky value", "flaky nested", "flaky error", "after",
        ])
        #expect(writer.stats().blankRecords == 0)
    }

    @Test("JSON Lines renders a stringConvertible value once, in one pass: no blank line")
    func changingDescriptionFastPath() throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        let logger = makeTestLogger(writer)
        logger.info("flaky", metadata: ["v": .stringConvertible(ChangingDescription())])
        let drained = DrainedRecords(drainChannel(channel))
        #expect(drained.blankLines == 0)
        #expect(writer.stats().blankRecords == 0)
        #expect((drained.records.first?["metadata"] as? [String: String])?["v"] == "short")
        #expect(drained.records.count == 1)
    }

    @Test("a drop report interval too long for Int64 nanoseconds is clamped, not wrapped to a negative one")
    func hugeDropReportInterval() throws {
        let channel = try makeTestChannel()
        // 9_223_372_036.9 s: the whole seconds fit Int64 nanoseconds, the fraction does not.
        let huge = Duration(secondsComponent: 9_223_372_036, attosecondsComponent: 900_000_000_000_000_000)
        let writer = RelayLogWriter(channel: channel, dropReportInterval: huge)
        #expect(writer.dropReportIntervalNanoseconds == Int64.max)
        let exact = RelayLogWriter(
            channel: channel,
            dropReportInterval: Duration(secondsComponent: 1, attosecondsComponent: 500_000_000_000_000_000))
        #expect(exact.dropReportIntervalNanoseconds == 1_500_000_000)
    }
}
