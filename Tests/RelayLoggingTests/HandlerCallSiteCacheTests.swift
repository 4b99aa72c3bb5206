//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Logging
import Relay
import RelayTestSupport
import Synchronization
import Testing

@testable import RelayLogging

/// The JSON Lines fast path copies a call site's rendered source, file, function and line from
/// `CallSiteCache` instead of rendering them on every record.
@Suite("RelayLogHandler call-site cache")
struct HandlerCallSiteCacheTests {
    /// A run-time string (a heap string when longer than 15 bytes): never a literal.
    static func built(_ text: String) -> String {
        String(decoding: Array(text.utf8), as: UTF8.self)
    }

    static func event(
        source: String? = nil, file: String, function: String = "handle(_:)", line: UInt = 7
    ) -> LogEvent {
        LogEvent(
            level: .info, message: "m", metadata: ["k": "v"], source: source, file: file, function: function,
            line: line)
    }

    /// `line` with its timestamp masked.
    static func masked(_ line: [UInt8]) -> [UInt8] {
        guard line.count > 41 else { return line }
        var masked = line
        masked.replaceSubrange(14..<41, with: Array("<timestamp>".utf8))
        return masked
    }

    /// The records `events` produce through one writer, timestamps masked.
    static func records(of events: [LogEvent], writer: RelayLogWriter, channel: RelayChannel) -> [String] {
        let handler = writer.makeHandler(label: "cache-test", metadataProvider: nil)
        for event in events { handler.log(event: event) }
        return splitLines(drainChannel(channel)).map { String(decoding: Self.masked($0), as: UTF8.self) }
    }

    /// The general encoder's rendering of `event` (no fast path, no cache), timestamp masked.
    static func reference(of event: LogEvent, writer: RelayLogWriter) -> String {
        let fields = LogRecordFields(
            event: event, label: "cache-test", timestampNanoseconds: 0, handlerMetadata: PreEncodedMetadata(),
            providerMetadata: nil)
        return String(decoding: Self.masked(referenceEncoding(fields, writer: writer)), as: UTF8.self)
    }

    @Test("the cache is in use with this standard library")
    func supported() {
        // If a Swift release changes String's layout, the check turns the cache off (records are then
        // rendered in full, correct but slower): this test says so, so it gets looked at.
        #expect(CallSiteCache.isSupported)
        #expect(CallSiteCache().isEnabled)
    }

    @Test("literals and small strings make keys; heap strings never do")
    func keys() {
        #expect(CallSiteKey(source: nil, file: "Module/SomeFile.swift", function: "handle(_:)", line: 1) != nil)
        #expect(CallSiteKey(source: "Src", file: "M/F.swift", function: "f()", line: 1) != nil)
        // Small strings built at run time identify their text too.
        #expect(CallSiteKey(source: Self.built("Src"), file: Self.built("M/F.swift"), function: "f()", line: 1) != nil)
        let heap = Self.built("Module/A/Long/Path/To/SomeFile.swift")
        #expect(CallSiteKey(source: nil, file: heap, function: "f()", line: 1) == nil)
        let longFunction = Self.built("aFunctionWithALongName(_:)")
        #expect(CallSiteKey(source: nil, file: "M/F.swift", function: longFunction, line: 1) == nil)
        let longSource = Self.built("an explicit source of some length")
        #expect(CallSiteKey(source: longSource, file: "M/F.swift", function: "f()", line: 1) == nil)
    }

    /// `count` keys of the same slot, distinct lines.
    static func keysSharingASlot(_ count: Int) -> [CallSiteKey] {
        let first = CallSiteKey(source: nil, file: "Module/SomeFile.swift", function: "handle(_:)", line: 1)!
        let slot = first.slotIndex(count: CallSiteCache.slotCount)
        var keys = [first]
        var line: UInt = 2
        while keys.count < count {
            let key = CallSiteKey(source: nil, file: "Module/SomeFile.swift", function: "handle(_:)", line: line)!
            if key.slotIndex(count: CallSiteCache.slotCount) == slot { keys.append(key) }
            line += 1
        }
        return keys
    }

    @Test("a stored rendering comes back for its own key only")
    func storeAndCopy() {
        let cache = CallSiteCache()
        let keys = Self.keysSharingASlot(2)
        let out = UnsafeMutableRawPointer.allocate(byteCount: CallSiteCache.maxBytes + 16, alignment: 16)
        defer { out.deallocate() }
        #expect(cache.copy(keys[0], to: out) == nil)
        let first = Array("\"Module\",\"file\":\"Module/SomeFile.swift\",\"line\":1".utf8)
        first.withUnsafeBytes { cache.store(keys[0], $0) }
        #expect(cache.copy(keys[0], to: out) == first.count)
        #expect(Array(UnsafeRawBufferPointer(start: out, count: first.count)) == first)
        // Same slot, other key: a miss, never the other call site's bytes.
        #expect(cache.copy(keys[1], to: out) == nil)
        let second = Array("\"Module\",\"line\":2".utf8)
        second.withUnsafeBytes { cache.store(keys[1], $0) }
        #expect(cache.copy(keys[1], to: out) == second.count)
        #expect(Array(UnsafeRawBufferPointer(start: out, count: second.count)) == second)
        #expect(cache.copy(keys[0], to: out) == nil)
        // Too long to cache: stored nowhere.
        let long = [UInt8](repeating: 0x61, count: CallSiteCache.maxBytes + 1)
        long.withUnsafeBytes { cache.store(keys[0], $0) }
        #expect(cache.copy(keys[0], to: out) == nil)
    }

    @Test("threads filling and reading one slot never read another key's or a torn rendering")
    func concurrentSlot() {
        let cache = CallSiteCache()
        let keys = Self.keysSharingASlot(4)
        // Key i's rendering: byte i + 1 repeated, of a length that differs per key (8 to 192 bytes).
        let lengths = [8, 61, 130, CallSiteCache.maxBytes]
        let hits = Atomic<Int>(0)
        let wrong = Atomic<Int>(0)
        TestThreads.run(count: 4) { thread in
            let own = [UInt8](repeating: UInt8(thread + 1), count: lengths[thread])
            let out = UnsafeMutableRawPointer.allocate(byteCount: CallSiteCache.maxBytes + 16, alignment: 16)
            defer { out.deallocate() }
            for round in 0..<100_000 {
                if round % 3 == 0 { own.withUnsafeBytes { cache.store(keys[thread], $0) } }
                let other = (thread + round) % 4
                if let length = cache.copy(keys[other], to: out) {
                    let bytes = UnsafeRawBufferPointer(start: out, count: length)
                    if length != lengths[other] || bytes.contains(where: { $0 != UInt8(other + 1) }) {
                        wrong.add(1, ordering: .relaxed)
                    }
                    hits.add(1, ordering: .relaxed)
                }
            }
        }
        #expect(wrong.load(ordering: .relaxed) == 0)
        // The test means something only if copies succeeded while others wrote.
        #expect(hits.load(ordering: .relaxed) > 1000)
    }

    @Test("records of a cached call site equal the general encoder's, record after record")
    func cachedRecords() throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        let event = Self.event(file: "Module/SomeFile.swift")
        let records = Self.records(of: Array(repeating: event, count: 5), writer: writer, channel: channel)
        #expect(records.count == 5)
        let reference = Self.reference(of: event, writer: writer)
        for record in records { #expect(record == reference) }
        // The call site was cached by the first record (so the later ones were copies).
        let key = try #require(CallSiteKey(source: nil, file: event.file, function: event.function, line: event.line))
        let out = UnsafeMutableRawPointer.allocate(byteCount: CallSiteCache.maxBytes + 16, alignment: 16)
        defer { out.deallocate() }
        #expect(writer.callSites.copy(key, to: out) != nil)
    }

    @Test("call sites that differ in line, function or explicit source each write their own fields")
    func distinctCallSites() throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        var events: [LogEvent] = []
        for round in 0..<3 {
            for source in [nil, "A", "B", ""] as [String?] {
                let line = UInt(10 + round)
                events.append(Self.event(source: source, file: "Module/SomeFile.swift", line: line))
                events.append(Self.event(source: source, file: "Module/SomeFile.swift", function: "other()", line: line))
            }
        }
        let records = Self.records(of: events + events, writer: writer, channel: channel)
        #expect(records.count == 2 * events.count)
        for (index, record) in records.enumerated() {
            #expect(record == Self.reference(of: events[index % events.count], writer: writer), "record \(index)")
        }
    }

    @Test("file names built at run time are rendered from their text every time, even at a reused address")
    func heapStrings() throws {
        let channel = try makeTestChannel()
        let writer = RelayLogWriter(channel: channel)
        let handler = writer.makeHandler(label: "cache-test", metadataProvider: nil)
        for i in 0..<50 {
            // Each name is freed after its record, so the next one may get its address (and bits).
            let file = Self.built("RuntimeModule\(i % 7)/Generated/Path/File\(i).swift")
            let event = Self.event(file: file)
            handler.log(event: event)
            let records = splitLines(drainChannel(channel)).map { String(decoding: Self.masked($0), as: UTF8.self) }
            #expect(records == [Self.reference(of: event, writer: writer)], "record \(i)")
        }
    }
}
