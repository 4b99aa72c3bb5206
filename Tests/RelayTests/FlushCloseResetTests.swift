import Relay
import RelayTestSupport
import Synchronization
import Testing

@Suite("flush, close and reset")
struct FlushCloseResetTests {
    @Test("flush delivers partly filled sub-buffers and skips empty ones")
    func flushPartial() throws {
        let delivered = EventLog<SubbufferDelivery>()
        let channel = try smallChannel(buffers: 2, callbacks: RelayCallbacks(deliver: { delivered.append($0) }))
        channel.flush()
        #expect(delivered.all.isEmpty, "nothing to flush: no empty sub-buffer is delivered")
        channel.write("partial\n")
        #expect(channel.hasPartialSubbuffer(buffer: 0) || channel.hasPartialSubbuffer(buffer: 1))
        channel.flush()
        #expect(delivered.all.count == 1)
        #expect(delivered.all.first?.records == 1)
        #expect(!channel.hasPartialSubbuffer(buffer: 0) && !channel.hasPartialSubbuffer(buffer: 1))
        channel.flush()
        #expect(delivered.all.count == 1, "flushing again delivers nothing new")
    }

    @Test("flush racing with writers loses nothing and tears nothing")
    func flushRace() throws {
        let channel = try smallChannel(subbufferSize: 8192, subbufferCount: 16, mode: .block(), buffers: 2)
        let producers = 4
        let perProducer = 20_000
        // The flusher stops (and is joined) before the consumer's final flush and drain: a
        // flush that finds the position already sealed by a concurrent flush returns before
        // that flush delivers the sub-buffer, so "my flush returned" only means "everything
        // is delivered" when no other flush is running. (A shipper compares what it consumed
        // with the sealed count instead, and so waits for that delivery.)
        let stopFlusher = Atomic<Bool>(false)
        let stopConsumer = Atomic<Bool>(false)
        let flusher = TestThreads.spawn {
            while !stopFlusher.load(ordering: .relaxed) { channel.flush() }
        }
        let collected = RelayMutex<[StressRecord.Decoded]>([])
        let torn = Atomic<Int>(0)
        let consumer = TestThreads.spawn {
            var local: [StressRecord.Decoded] = []
            func drain() {
                for buffer in 0..<channel.buffers {
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
        TestThreads.run(count: producers) { producer in
            var scratch = [UInt8](repeating: 0, count: 256)
            for sequence in 0..<perProducer {
                let size = 32 + (sequence % 7) * 24
                scratch.withUnsafeMutableBytes { raw in
                    StressRecord.encode(producer: UInt32(producer), sequence: UInt64(sequence), size: size, into: raw)
                    _ = channel.write(UnsafeRawBufferPointer(rebasing: raw[0..<size]))
                }
            }
        }
        stopFlusher.store(true, ordering: .relaxed)
        TestThreads.join(flusher)
        stopConsumer.store(true, ordering: .relaxed)
        TestThreads.join(consumer)
        let records = collected.withLock { $0 }
        #expect(torn.load(ordering: .relaxed) == 0)
        #expect(records.count == producers * perProducer)
        var seen = Set<UInt64>()
        for r in records { seen.insert(UInt64(r.producer) << 32 | r.sequence) }
        #expect(seen.count == producers * perProducer, "exactly once")
        #expect(channel.stats().total.flushes > 0)
    }

    @Test("close refuses further writes and delivers what is pending")
    func close() throws {
        let channel = try smallChannel()
        channel.write("before\n")
        let pending = try channel.reserve(6)
        channel.close()
        #expect(channel.isClosed)
        #expect(channel.write("after\n") == .closed)
        #expect(throws: RelayReserveError.closed) { _ = try channel.reserve(4) }
        #expect(channel.stats().total.recordsRefusedClosed == 2)
        #expect(channel.drainLines().isEmpty, "the pending reservation holds its sub-buffer back")
        pending.withUnsafeMutableBytes { $0.copyBytes(from: "later\n".utf8) }
        pending.commit()
        #expect(channel.drainLines() == ["before", "later"])
        channel.close()  // idempotent
    }

    @Test("reset brings an idle channel back to its initial state")
    func reset() throws {
        let channel = try smallChannel()
        for i in 0..<10 { channel.write("old \(i)\n") }
        channel.close()
        _ = channel.drainLines()
        try channel.reset()
        #expect(!channel.isClosed)
        let stats = channel.stats().total
        #expect(stats.recordsWritten == 0 && stats.subbuffersProduced == 0 && stats.subbuffersConsumed == 0)
        channel.write("new\n")
        channel.flush()
        let subs = channel.drainSubbuffers()
        #expect(subs.map(\.sequence) == [0])
        #expect(subs.first?.content == Array("new\n".utf8))
    }

    @Test("reset refuses a channel with an uncommitted reservation")
    func resetNotIdle() throws {
        let channel = try smallChannel()
        let reservation = try channel.reserve(8)
        let error = #expect(throws: RelayError.self) { try channel.reset() }
        #expect(error?.code == .notIdle)
        reservation.commit()
        try channel.reset()
    }

    @Test("reset refuses a channel with a writer blocked for space, which would otherwise sleep through it for good")
    func resetNotIdleWithBlockedWriter() throws {
        // The timeout only bounds the test if reset wrongly succeeds (the writer then sleeps on
        // a futex nobody wakes); a correct run frees space long before it.
        let channel = try smallChannel(subbufferCount: 2, mode: .block(timeout: .seconds(15)))
        let record = [UInt8](repeating: 0x44, count: 2000)  // two per 4 KiB sub-buffer
        for _ in 0..<4 { #expect(channel.write(record) == .written) }
        let result = RelayMutex<RelayWriteResult?>(nil)
        let writer = TestThreads.spawn {
            let outcome = channel.write(record)
            result.withLock { $0 = outcome }
        }
        #expect(waitUntil { channel.stats().total.writerWaits >= 1 }, "the writer never waited for space")
        let error = #expect(throws: RelayError.self) { try channel.reset() }
        #expect(error?.code == .notIdle)
        // Left unchanged: consuming frees space and wakes the writer.
        #expect(channel.withNextSubbuffer(buffer: 0, consume: true) { $0.sequence }.value == 0)
        TestThreads.join(writer)
        #expect(result.withLock { $0 } == .written)
    }

    @Test("reset keeps an exclusive buffer owned by its writer: no second claim, no shared plain stores")
    func resetKeepsExclusiveOwner() throws {
        let channel = try smallChannel(buffers: 1, exclusiveBuffers: 1)
        let writer = try channel.makeExclusiveWriter(buffer: 1)
        #expect(writer.write(Array("before\n".utf8)) == .written)
        channel.close()
        #expect(channel.drainLines() == ["before"])
        try channel.reset()
        #expect(throws: RelayError.self, "the buffer still belongs to `writer`") {
            _ = try channel.makeExclusiveWriter(buffer: 1)
        }
        #expect(writer.write(Array("after\n".utf8)) == .written)
        channel.flush()
        #expect(channel.drainLines() == ["after"])
    }
}
