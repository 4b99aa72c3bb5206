import Foundation
@testable import Relay
import RelayTestSupport
import Synchronization
import Testing

@Suite("Exclusive writers")
struct ExclusiveWriterTests {
    @Test("an exclusive writer owns its buffer; claims are exclusive")
    func claim() throws {
        let channel = try smallChannel(buffers: 1, exclusiveBuffers: 2)
        #expect(throws: RelayError.self) { _ = try channel.makeExclusiveWriter(buffer: 0) }
        do {
            let writer = try channel.makeExclusiveWriter(buffer: 1)
            #expect(writer.buffer == 1)
            #expect(throws: RelayError.self) { _ = try channel.makeExclusiveWriter(buffer: 1) }
        }
        // Released at the end of scope.
        _ = try channel.makeExclusiveWriter(buffer: 1)
    }

    @Test("writes through the exclusive path read back in order, across switches")
    func roundTrip() throws {
        let channel = try smallChannel(subbufferSize: 4096, subbufferCount: 8, mode: .block(), buffers: 1, exclusiveBuffers: 1)
        let writer = try channel.makeExclusiveWriter(buffer: 1)
        var expected: [String] = []
        for i in 0..<200 {
            let line = "exclusive record number \(i)"
            expected.append(line)
            var text = line + "\n"
            let result = text.withUTF8 { writer.write(UnsafeRawBufferPointer($0)) }
            #expect(result == .written)
        }
        channel.flush()
        #expect(channel.drainLines() == expected)
        #expect(channel.stats(buffer: 1).recordsWritten == 200)
    }

    @Test("records rendered in place read back byte for byte, across sub-buffer switches")
    func inPlaceRoundTrip() throws {
        // 4096-byte sub-buffers: records of 12...300 bytes land on every kind of edge. About
        // 90 KB in all, so 64 sub-buffers hold everything (nothing consumes before the end).
        let channel = try smallChannel(subbufferSize: 4096, subbufferCount: 64, mode: .drop, buffers: 1, exclusiveBuffers: 1)
        let writer = try channel.makeExclusiveWriter(buffer: 1)
        var expected: [String] = []
        var calls = 0
        for i in 0..<600 {
            let line = "in place \(i) " + String(repeating: "x", count: (i * 37) % 280)
            expected.append(line)
            let bytes = Array((line + "\n").utf8)
            let result = writer.write(count: bytes.count) { buffer in
                calls += 1
                #expect(buffer.count == bytes.count)
                buffer.copyBytes(from: bytes)
            }
            #expect(result == .written)
        }
        channel.flush()
        #expect(calls == 600)
        #expect(channel.drainLines() == expected)
        let stats = channel.stats(buffer: 1)
        #expect(stats.recordsWritten == 600)
        #expect(stats.bytesWritten == UInt64(expected.reduce(0) { $0 + $1.utf8.count + 1 }))
    }

    @Test("an in-place record that exactly fills a sub-buffer seals it with no padding")
    func inPlaceExactFill() throws {
        let channel = try smallChannel(subbufferSize: 4096, subbufferCount: 4, mode: .block(), buffers: 1, exclusiveBuffers: 1)
        let writer = try channel.makeExclusiveWriter(buffer: 1)
        let room = channel.maxRecordSize
        #expect(writer.write(count: room) { $0.initializeMemory(as: UInt8.self, repeating: 0x61) } == .written)
        #expect(writer.write(count: 100) { $0.initializeMemory(as: UInt8.self, repeating: 0x62) } == .written)
        channel.flush()
        let subbuffers = channel.drainSubbuffers()
        #expect(subbuffers.count == 2)
        #expect(subbuffers.first?.content == [UInt8](repeating: 0x61, count: room))
        #expect(subbuffers.last?.content == [UInt8](repeating: 0x62, count: 100))
    }

    @Test("in place: nothing to write, too big, full (drop mode) and closed never call the body, and are counted like write(_:)")
    func inPlaceRefusals() throws {
        let channel = try smallChannel(subbufferSize: 4096, subbufferCount: 2, mode: .drop, buffers: 1, exclusiveBuffers: 1)
        let writer = try channel.makeExclusiveWriter(buffer: 1)
        var calls = 0
        #expect(writer.write(count: 0) { _ in calls += 1 } == .written)
        #expect(writer.write(count: channel.maxRecordSize + 1) { _ in calls += 1 } == .tooBig)
        #expect(calls == 0)
        // Fill both sub-buffers (nothing consumes), then one more record is dropped.
        var written = 0
        while writer.write(count: 1000, { calls += 1; $0.initializeMemory(as: UInt8.self, repeating: 0x63) }) == .written {
            written += 1
        }
        #expect(calls == written)
        #expect(written == 2 * (channel.maxRecordSize / 1000))
        var stats = channel.stats(buffer: 1)
        #expect(stats.recordsTooBig == 1)
        #expect(stats.recordsDropped == 1)
        #expect(stats.recordsWritten == UInt64(written))
        channel.close()
        #expect(writer.write(count: 10) { _ in calls += 1 } == .closed)
        #expect(calls == written)
        stats = channel.stats(buffer: 1)
        #expect(stats.recordsRefusedClosed == 1)
    }

    @Test("in place, block mode: a writer waits for space, then renders the record once")
    func inPlaceBlocks() throws {
        let channel = try smallChannel(subbufferSize: 4096, subbufferCount: 2, mode: .block(), buffers: 1, exclusiveBuffers: 1)
        let writer = try channel.makeExclusiveWriter(buffer: 1)
        var written = 0
        // Two sub-buffers of 1000-byte records, then the next record must wait.
        let perSubbuffer = channel.maxRecordSize / 1000
        for _ in 0..<(2 * perSubbuffer) {
            #expect(writer.write(count: 1000) { $0.initializeMemory(as: UInt8.self, repeating: 0x64) } == .written)
            written += 1
        }
        let consumer = TestThreads.spawn {
            // Let the writer find the buffer full and sleep first.
            #expect(waitUntil { channel.stats(buffer: 1).writerWaits == 1 })
            _ = channel.withNextSubbuffer(buffer: 1, consume: true) { _ in }
        }
        var calls = 0
        #expect(writer.write(count: 1000) { calls += 1; $0.initializeMemory(as: UInt8.self, repeating: 0x65) } == .written)
        TestThreads.join(consumer)
        #expect(calls == 1)
        channel.flush()
        let rest = channel.drainSubbuffers()
        #expect(rest.last?.content == [UInt8](repeating: 0x65, count: 1000))
        #expect(channel.stats(buffer: 1).recordsDropped == 0)
    }

    @Test("flush from another thread while an exclusive writer runs loses and tears nothing")
    func flushRace() throws {
        try Self.flushRace()
    }

    @Test("without expedited membarrier(2), exclusive writers take the fenced out-of-line path: flushes still lose and tear nothing")
    func flushRaceWithoutMembarrier() throws {
        let (status, output) = try ChildTestProcess.run(
            filter: "NoMembarrierProbe", environment: [noMembarrierProbeVariable: "1", "RELAY_DISABLE_MEMBARRIER": "1"])
        #expect(status == 0, "the probe failed:\n\(output)")
        #expect(output.contains("NO-MEMBARRIER-PROBE-PASSED"), "the probe did not run:\n\(output)")
    }

    /// Two exclusive writers (one copying records in, one rendering them in place), a thread
    /// flushing in a loop and a consumer: every record once, in order.
    static func flushRace() throws {
        let channel = try smallChannel(subbufferSize: 8192, subbufferCount: 16, mode: .block(), buffers: 1, exclusiveBuffers: 2)
        // As in FlushCloseResetTests.flushRace: the flusher is joined before the consumer's
        // final flush and drain, which would otherwise race with the flusher's last delivery.
        let stopFlusher = Atomic<Bool>(false)
        let stopConsumer = Atomic<Bool>(false)
        let flusher = TestThreads.spawn {
            while !stopFlusher.load(ordering: .relaxed) {
                channel.flush()
                sched_yield()
            }
        }
        let collected = RelayMutex<[StressRecord.Decoded]>([])
        let torn = Atomic<Int>(0)
        let consumer = TestThreads.spawn {
            var local: [StressRecord.Decoded] = []
            func drain() {
                for buffer in 1..<3 {
                    while case .read = channel.withNextSubbuffer(buffer: buffer, consume: true, { sub in
                        var offset = 0
                        while offset < sub.content.count {
                            guard let record = StressRecord.decode(UnsafeRawBufferPointer(rebasing: sub.content[offset...])) else {
                                torn.add(1, ordering: .relaxed)
                                return
                            }
                            local.append(record)
                            offset += record.size
                        }
                    }) {}
                }
            }
            while !stopConsumer.load(ordering: .relaxed) { drain() }
            channel.flush()
            drain()
            collected.withLock { $0 = local }
        }
        let perProducer = 30_000
        TestThreads.run(count: 2) { producer in
            let writer = try! channel.makeExclusiveWriter(buffer: 1 + producer)
            var scratch = [UInt8](repeating: 0, count: 256)
            for sequence in 0..<perProducer {
                let size = 32 + (sequence % 5) * 40
                if producer == 0 {
                    scratch.withUnsafeMutableBytes { raw in
                        StressRecord.encode(producer: UInt32(producer), sequence: UInt64(sequence), size: size, into: raw)
                        _ = writer.write(UnsafeRawBufferPointer(rebasing: raw[0..<size]))
                    }
                } else {
                    // The other producer renders in place, while flushes wait for it.
                    _ = writer.write(count: size) { raw in
                        StressRecord.encode(producer: UInt32(producer), sequence: UInt64(sequence), size: size, into: raw)
                    }
                }
            }
        }
        stopFlusher.store(true, ordering: .relaxed)
        TestThreads.join(flusher)
        stopConsumer.store(true, ordering: .relaxed)
        TestThreads.join(consumer)
        let records = collected.withLock { $0 }
        #expect(torn.load(ordering: .relaxed) == 0)
        #expect(records.count == 2 * perProducer)
        // Per producer, in order, exactly once.
        for producer in 0..<2 {
            let sequences = records.filter { $0.producer == producer }.map(\.sequence)
            #expect(sequences == (0..<UInt64(perProducer)).map { $0 })
        }
    }
}

import Glibc

private let noMembarrierProbeVariable = "RELAY_NO_MEMBARRIER_PROBE"

/// Runs only in the child process started by ``ExclusiveWriterTests/flushRaceWithoutMembarrier()``.
@Suite("NoMembarrierProbe", .enabled(if: ProcessInfo.processInfo.environment[noMembarrierProbeVariable] != nil))
struct NoMembarrierProbe {
    @Test("exclusive writers without expedited membarrier")
    func probe() throws {
        #expect(!AsymmetricFence.isExpedited, "RELAY_DISABLE_MEMBARRIER must turn expedited membarrier off")
        try ExclusiveWriterTests.flushRace()
        print("NO-MEMBARRIER-PROBE-PASSED")
    }
}
