import Glibc
@testable import Relay
import RelayTestSupport
import Synchronization
import Testing

/// Races between switches, seals, full episodes, waits and flushes, forced where the
/// engine lets a test force them (callbacks, internal words) and otherwise provoked
/// often enough to show up in one run.
@Suite("Engine races", .serialized)
struct EngineRaceTests {
    // MARK: Sub-buffer timestamps

    @Test("a sub-buffer's begin time is never later than its end time, however switches and seals interleave")
    func beginNotAfterEnd() throws {
        // One shared buffer, small sub-buffers of exactly two records each: the second
        // record fills its sub-buffer exactly, so its writer stamps the end time right
        // after its reserve, racing the switcher that stamps the begin time. More threads
        // than CPUs, so a switcher is now and then preempted right after its switch, and
        // a flusher seals partly filled sub-buffers too.
        let channel = try smallChannel(subbufferSize: 4096, subbufferCount: 16, mode: .drop, buffers: 1)
        let half = (4096 - channel.subbufferHeaderSize) / 2
        let stop = Atomic<Bool>(false)
        let inverted = Atomic<Int>(0)
        let checked = Atomic<Int>(0)
        @Sendable func drain() {
            while case .read(let (begin, end)) = channel.withNextSubbuffer(
                buffer: 0, consume: true, { ($0.beginTimeNanoseconds, $0.endTimeNanoseconds) })
            {
                checked.add(1, ordering: .relaxed)
                if begin > end { inverted.add(1, ordering: .relaxed) }
            }
        }
        let consumer = TestThreads.spawn {
            while !stop.load(ordering: .acquiring) { drain() }
        }
        let flusher = TestThreads.spawn {
            while !stop.load(ordering: .acquiring) {
                channel.flush()
                usleep(50)
            }
        }
        let deadline = ContinuousClock.now + .milliseconds(1500)
        TestThreads.run(count: 4) { producer in
            let record = [UInt8](repeating: UInt8(0x41 + producer), count: half)
            while ContinuousClock.now < deadline {
                for _ in 0..<64 { channel.write(record) }
            }
        }
        stop.store(true, ordering: .releasing)
        TestThreads.join(flusher)
        TestThreads.join(consumer)
        channel.flush()
        drain()
        #expect(checked.load(ordering: .relaxed) > 1000, "enough sub-buffers to mean anything")
        #expect(inverted.load(ordering: .relaxed) == 0, "begin time after end time")
    }

    // MARK: Buffer-full episodes

    @Test("buffer-full fires once per episode: a writer that saw the buffer full before space came back reports nothing")
    func bufferFullOncePerEpisode() throws {
        let full = EventLog<BufferFull>()
        let channel = try smallChannel(
            subbufferCount: 2, mode: .drop, callbacks: RelayCallbacks(bufferFull: { full.append($0) }))
        let record = [UInt8](repeating: 0x44, count: 2000)  // two per 4 KiB sub-buffer
        for _ in 0..<4 { #expect(channel.write(record) == .written) }
        #expect(channel.write(record) == .dropped)  // seals sub-buffer 1; sub-buffer 2 cannot start
        #expect(full.all.map(\.lastSequence) == [1])
        // Writer A found the buffer full in the sealed state (sub-buffer 2 cannot start)…
        // …then the consumer frees a sub-buffer and writer B starts sub-buffer 2…
        #expect(channel.withNextSubbuffer(buffer: 0, consume: true) { $0.records }.value == 2)
        #expect(channel.write(record) == .written)
        // …and only now does A get to report the episode B already ended.
        channel.enterFull(channel.cores[0], lastSequence: 1)
        #expect(full.all.map(\.lastSequence) == [1], "the same episode reported twice")
        #expect(channel.stats().total.bufferFullEvents == 1)
        // The next episode (sub-buffer 3 cannot start) is reported, once.
        #expect(channel.write(record) == .written)
        #expect(channel.write(record) == .dropped)
        #expect(channel.write(record) == .dropped)
        #expect(full.all.map(\.lastSequence) == [1, 2])
        #expect(channel.stats().total.bufferFullEvents == 2)
    }

    // MARK: writerWaits

    static let fill = 4096 - 64  // one record fills a 4 KiB sub-buffer (no client header)

    @Test("writerWaits: a reserve whose deadline has already passed did not wait")
    func zeroWaitIsNotAWait() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .block())
        let record = [UInt8](repeating: 0x42, count: Self.fill)
        for _ in 0..<2 { #expect(channel.write(record) == .written) }
        #expect(throws: RelayReserveError.timedOut) { _ = try channel.reserve(10, waitingAtMost: .zero) }
        #expect(channel.stats().total.writerWaits == 0)
        #expect(channel.stats().total.blockTimeouts == 1)
    }

    @Test("writerWaits counts each write that waited once, however often it was woken and lost the space again")
    func writerWaitsOncePerWrite() throws {
        // Every write finds the buffer full (each record fills a sub-buffer, and the
        // consumer frees one only while every writer is inside a wait), so every write
        // waits: a write woken for space another writer took must not count again.
        let channel = try smallChannel(subbufferCount: 2, mode: .block())
        let record = [UInt8](repeating: 0x43, count: Self.fill)
        for _ in 0..<2 { #expect(channel.write(record) == .written) }
        let writers = 8
        let perWriter = 1000
        let finished = Atomic<Int>(0)
        let written = Atomic<Int>(0)
        let threads = (0..<writers).map { _ in
            TestThreads.spawn {
                for _ in 0..<perWriter {
                    if channel.write(record) == .written { written.add(1, ordering: .relaxed) }
                }
                finished.add(1, ordering: .relaxed)
            }
        }
        let b = channel.cores[0]
        var consumed = 0
        while consumed < writers * perWriter {
            // Free one sub-buffer only once the last one freed was taken (each write seals
            // the sub-buffer it fills) and every writer still writing waits for space:
            // then every write starts on a full buffer.
            let taken = channel.producedCount(buffer: 0) == UInt64(2 + consumed)
            let live = writers - finished.load(ordering: .relaxed)
            if !taken || (live > 0 && b.waiters.pointee.load(ordering: .relaxed) < UInt64(live)) {
                sched_yield()
                continue
            }
            if case .read = channel.withNextSubbuffer(buffer: 0, consume: true, { _ in () }) {
                consumed += 1
            } else {
                sched_yield()
            }
        }
        for thread in threads { TestThreads.join(thread) }
        let stats = channel.stats().total
        #expect(written.load(ordering: .relaxed) == writers * perWriter)
        #expect(stats.writerWaits <= UInt64(writers * perWriter), "one count per write at most")
        #expect(stats.writerWaits > 0)
    }

    // MARK: Idle flushes of exclusive buffers

    @Test("an idle flush of an exclusive buffer skips the handshake; a flush after a write still delivers it")
    func idleExclusiveFlush() throws {
        let channel = try smallChannel(subbufferSize: 4096, subbufferCount: 4, mode: .drop, buffers: 1, exclusiveBuffers: 1)
        let b = channel.cores[1]
        @Sendable func handshakes() -> UInt64 { b.counter(RegionLayout.handshakesOffset) }
        do {
            let writer = try channel.makeExclusiveWriter(buffer: 1)
            // Nothing written yet: nothing to seal, no handshake.
            channel.flush()
            #expect(handshakes() == 0)
            // A record: the flush parks the writer, seals and delivers.
            #expect(writer.write(Array("first\n".utf8)) == .written)
            channel.flush()
            #expect(handshakes() == 1)
            #expect(channel.drainLines() == ["first"])
            // Nothing new since that seal: no handshake, however often.
            for _ in 0..<10 { channel.flush(buffer: 1) }
            #expect(handshakes() == 1)
        }
        // A record written on another thread before the flush (by a writer claimed and
        // released there) is still delivered by it.
        let other = TestThreads.spawn {
            let writer = try! channel.makeExclusiveWriter(buffer: 1)
            _ = writer.write(Array("second\n".utf8))
        }
        TestThreads.join(other)
        channel.flush()
        #expect(handshakes() == 2)
        #expect(channel.drainLines() == ["second"])
        let writer = try channel.makeExclusiveWriter(buffer: 1)
        // A record that fills its sub-buffer exactly is sealed (and delivered) by the
        // write itself: the flush that follows has nothing to do.
        var exact = [UInt8](repeating: 0x61, count: 4096 - channel.subbufferHeaderSize)
        exact[exact.count - 1] = 0x0A
        #expect(writer.write(exact) == .written)
        channel.flush()
        #expect(handshakes() == 2)
        #expect(channel.drainLines().count == 1)
        #expect(channel.stats(buffer: 1).flushes == 2)
        // close() still parks the writer (it sets the closed bit even with nothing to seal).
        channel.close()
        #expect(handshakes() == 3)
        #expect(writer.write(Array("late\n".utf8)) == .closed)
    }
}
