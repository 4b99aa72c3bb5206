import Relay
import RelayTestSupport
import Synchronization
import Testing

@Suite("Modes")
struct ModeTests {
    static let record = [UInt8](repeating: 0x44, count: 2000)  // two per 4 KiB sub-buffer

    @Test("drop: writes fail when every sub-buffer is unconsumed, are counted, and resume after consume")
    func dropMode() throws {
        let full = EventLog<BufferFull>()
        let channel = try smallChannel(
            subbufferCount: 2, mode: .drop, callbacks: RelayCallbacks(bufferFull: { full.append($0) }))
        var results: [RelayWriteResult] = []
        for _ in 0..<8 { results.append(channel.write(Self.record)) }
        // Two sub-buffers × 2 records fit; the 5th fails (and seals sub-buffer 1).
        #expect(results == [.written, .written, .written, .written, .dropped, .dropped, .dropped, .dropped])
        #expect(full.all.count == 1, "buffer-full fires once per episode")
        var stats = channel.stats().total
        #expect(stats.recordsDropped == 4)
        #expect(stats.recordsLost == 4)
        #expect(stats.bufferFullEvents == 1)
        #expect(channel.withNextSubbuffer(buffer: 0, consume: true) { $0.records } .value == 2)
        #expect(channel.write(Self.record) == .written, "space freed by subbufsConsumed")
        stats = channel.stats().total
        #expect(stats.recordsWritten == 4)
        // The second episode fires the callback again.
        for _ in 0..<3 { channel.write(Self.record) }
        #expect(full.all.count == 2)
    }

    @Test("every sub-buffer header carries the cumulative loss count")
    func lossInHeaders() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .drop)
        for _ in 0..<7 { channel.write(Self.record) }  // 3 dropped
        var lost: [UInt64] = []
        while case .read(let l) = channel.withNextSubbuffer(buffer: 0, consume: true, { $0.lostRecords }) {
            lost.append(l)
        }
        #expect(lost == [0, 0], "sealed before the losses")
        for _ in 0..<3 { channel.write(Self.record) }
        channel.flush()
        var after: [UInt64] = []
        while case .read(let l) = channel.withNextSubbuffer(buffer: 0, consume: true, { $0.lostRecords }) {
            after.append(l)
        }
        #expect(after.last == 3, "a reader learns about the 3 drops from the data alone")
    }

    @Test("block: a writer waits for space and finishes when the consumer frees it")
    func blockMode() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .block())
        for _ in 0..<4 { #expect(channel.write(Self.record) == .written) }
        let done = Atomic<Int>(0)
        let writer = TestThreads.spawn {
            for _ in 0..<4 {
                if channel.write(Self.record) == .written { done.add(1, ordering: .relaxed) }
            }
        }
        // The channel is full: the writer must go to sleep for space before anything is consumed
        // (consuming at once could free the space before the new thread even ran).
        let waiting = waitUntil { channel.stats().total.writerWaits >= 1 }
        #expect(waiting, "the writer never waited for space")
        #expect(done.load(ordering: .relaxed) == 0, "a write succeeded into a full channel")
        // Consume until the writer has finished.
        var consumed = 0
        while done.load(ordering: .relaxed) < 4 {
            if case .read = channel.withNextSubbuffer(buffer: 0, consume: true, { _ in () }) {
                consumed += 1
            } else {
                usleep(1000)
            }
        }
        TestThreads.join(writer)
        let stats = channel.stats().total
        #expect(stats.recordsDropped == 0)
        #expect(stats.writerWaits >= 1)
        channel.flush()
        while case .read = channel.withNextSubbuffer(buffer: 0, consume: true, { _ in () }) { consumed += 1 }
        #expect(channel.stats().total.recordsWritten == 8)
    }

    @Test("block: writers woken together all get into the sub-buffer the freed space started, when they fit")
    func blockWakesEveryWriterThatFits() throws {
        // With 5 s to wait, a writer sent back to sleep after another took the freed sub-buffer
        // (its record would have fitted there too) times out and drops its record.
        let channel = try smallChannel(subbufferCount: 2, mode: .block(timeout: .seconds(5)))
        for _ in 0..<4 { #expect(channel.write(Self.record) == .written) }
        let results = RelayMutex<[RelayWriteResult]>([])
        let writers = (0..<2).map { _ in
            TestThreads.spawn {
                let result = channel.write(Self.record)
                results.withLock { $0.append(result) }
            }
        }
        // Both asleep for space (each counts one wait) before any is freed.
        #expect(waitUntil { channel.stats().total.writerWaits >= 2 }, "the writers never both waited for space")
        #expect(results.withLock { $0.isEmpty }, "a write succeeded into a full channel")
        // One sub-buffer freed: room for both records (two fit in a sub-buffer), and nothing
        // else is consumed until both have returned.
        guard case .read = channel.withNextSubbuffer(buffer: 0, consume: true, { _ in () }) else {
            Issue.record("sub-buffer 0 was not delivered")
            for writer in writers { TestThreads.join(writer) }
            return
        }
        for writer in writers { TestThreads.join(writer) }
        #expect(results.withLock { $0 } == [.written, .written])
        let stats = channel.stats().total
        #expect(stats.recordsDropped == 0)
        #expect(stats.blockTimeouts == 0)
        channel.flush()
        var records: [Int] = []
        while case .read(let n) = channel.withNextSubbuffer(buffer: 0, consume: true, { $0.records }) { records.append(n) }
        #expect(records == [2, 2], "sub-buffers 1 and 2, the second holding both woken writers' records")
    }

    @Test("block with a timeout: a stalled buffer does not make reserve(_:waitingAtMost:) fail before its own wait")
    func blockStalledWaitingAtMostWaits() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .block(timeout: .milliseconds(20)))
        for _ in 0..<4 { #expect(channel.write(Self.record) == .written) }
        // The channel's own timeout runs out: the buffer is stalled, and a plain write fails at once.
        #expect(channel.write(Self.record) == .timedOut)
        let start = ContinuousClock.now
        #expect(channel.write(Self.record) == .timedOut)
        #expect(ContinuousClock.now - start < .milliseconds(15), "a write into a stalled buffer waited again")
        let waitsBefore = channel.stats().total.writerWaits
        let result = RelayMutex<Bool?>(nil)
        let writer = TestThreads.spawn {
            do {
                let reservation = try channel.reserve(Self.record.count, waitingAtMost: .seconds(30))
                reservation.commit()
                result.withLock { $0 = true }
            } catch {
                result.withLock { $0 = false }
            }
        }
        // It sleeps for space, as it asked, instead of failing at once.
        #expect(waitUntil { channel.stats().total.writerWaits > waitsBefore || result.withLock { $0 } != nil })
        #expect(result.withLock { $0 } == nil, "reserve(_:waitingAtMost:) failed at once on a stalled buffer")
        guard case .read = channel.withNextSubbuffer(buffer: 0, consume: true, { _ in () }) else {
            Issue.record("sub-buffer 0 was not delivered")
            TestThreads.join(writer)
            return
        }
        TestThreads.join(writer)
        #expect(result.withLock { $0 } == true)
    }

    @Test("block with a timeout: the record is dropped and counted when no space comes")
    func blockTimeout() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .block(timeout: .milliseconds(50)))
        for _ in 0..<4 { channel.write(Self.record) }
        let start = ContinuousClock.now
        #expect(channel.write(Self.record) == .timedOut)
        let waited = ContinuousClock.now - start
        #expect(waited >= .milliseconds(45))
        let stats = channel.stats().total
        #expect(stats.recordsDropped == 1)
        #expect(stats.blockTimeouts == 1)
    }

    @Test("block without a timeout: reserve(_:waitingAtMost:) waits only that long")
    func blockReserveWaitingAtMost() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .block())
        for _ in 0..<4 { channel.write(Self.record) }
        let start = ContinuousClock.now
        #expect(throws: RelayReserveError.timedOut) { _ = try channel.reserve(Self.record.count, waitingAtMost: .milliseconds(50)) }
        let waited = ContinuousClock.now - start
        #expect(waited >= .milliseconds(45) && waited < .seconds(5))
        #expect(channel.stats().total.blockTimeouts == 1)
    }

    @Test("block without a timeout: a reserve(_:waitingAtMost:) that times out does not make later writes fail fast")
    func blockWaitingAtMostDoesNotStall() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .block())
        for _ in 0..<4 { #expect(channel.write(Self.record) == .written) }
        #expect(throws: RelayReserveError.timedOut) { _ = try channel.reserve(100, waitingAtMost: .milliseconds(20)) }
        // A plain write on a `.block(timeout: nil)` channel waits forever for space: it must
        // still be waiting when the consumer frees a sub-buffer, then succeed. (Had the
        // per-call timeout stalled the buffer, it would return .timedOut at once.)
        let waitsBefore = channel.stats().total.writerWaits
        let result = RelayMutex<RelayWriteResult?>(nil)
        let writer = TestThreads.spawn {
            let r = channel.write(Self.record)
            result.withLock { $0 = r }
        }
        // The writer is asleep waiting for space before the consumer frees any (a fixed sleep
        // here let a starved writer start only after the space was back, proving nothing).
        #expect(waitUntil { channel.stats().total.writerWaits > waitsBefore || result.withLock { $0 } != nil })
        #expect(result.withLock { $0 } == nil, "the write returned without waiting for space")
        guard case .read = channel.withNextSubbuffer(buffer: 0, consume: true, { _ in () }) else {
            Issue.record("sub-buffer 0 was not delivered")
            TestThreads.join(writer)
            return
        }
        TestThreads.join(writer)
        #expect(result.withLock { $0 } == .written)
        let stats = channel.stats().total
        #expect(stats.recordsDropped == 1, "only the per-call reservation was dropped")
        #expect(stats.blockTimeouts == 1)
    }

    @Test("block with a timeout beyond Int64 nanoseconds opens (it waits as long as it can), not a crash")
    func blockHugeTimeout() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .block(timeout: .seconds(Int64.max)))
        #expect(channel.write(Self.record) == .written)
    }

    @Test("block with a timeout: after one timed-out wait, writes fail at once until the consumer frees space, then wait again")
    func blockStallFailsFastUntilSpaceReturns() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .block(timeout: .milliseconds(200)))
        for _ in 0..<4 { #expect(channel.write(Self.record) == .written) }
        #expect(channel.write(Self.record) == .timedOut, "the first writer waits the whole timeout")
        let start = ContinuousClock.now
        for _ in 0..<20 { #expect(channel.write(Self.record) == .timedOut) }
        // Waiting each time would take 20 × 200 ms = 4 s.
        #expect(ContinuousClock.now - start < .seconds(2), "the stalled buffer fails writes at once")
        var stats = channel.stats().total
        #expect(stats.recordsDropped == 21, "every refused record is counted")
        #expect(stats.blockTimeouts == 1, "only the first one waited")

        // The consumer frees a sub-buffer: writes are taken again.
        guard case .read = channel.withNextSubbuffer(buffer: 0, consume: true, { _ in () }) else {
            Issue.record("sub-buffer 0 was not delivered")
            return
        }
        #expect(channel.write(Self.record) == .written)
        #expect(channel.write(Self.record) == .written)
        // Full again: a new stall waits the timeout again before failing fast.
        let second = ContinuousClock.now
        #expect(channel.write(Self.record) == .timedOut)
        #expect(ContinuousClock.now - second >= .milliseconds(180), "a new stall waits again")
        stats = channel.stats().total
        #expect(stats.blockTimeouts == 2)
        #expect(stats.recordsDropped == 22)
    }

    @Test("block: close wakes blocked writers, which fail with .closed")
    func closeWakesBlocked() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .block())
        for _ in 0..<4 { channel.write(Self.record) }
        let waitsBefore = channel.stats().total.writerWaits
        let result = RelayMutex<RelayWriteResult?>(nil)
        let writer = TestThreads.spawn {
            let r = channel.write(Self.record)
            result.withLock { $0 = r }
        }
        // Close only once the writer sleeps for space, so it is woken rather than refused.
        #expect(waitUntil { channel.stats().total.writerWaits > waitsBefore })
        channel.close()
        TestThreads.join(writer)
        #expect(result.withLock { $0 } == .closed)
    }

    @Test("overwrite: writes never fail; the oldest sub-buffers are reused and counted")
    func overwriteMode() throws {
        let channel = try smallChannel(subbufferCount: 4, mode: .overwrite)
        for i in 0..<40 {
            var record = Self.record
            record[0] = UInt8(i)
            #expect(channel.write(record) == .written)
        }
        channel.flush()
        let stats = channel.stats().total
        #expect(stats.subbuffersOverwritten > 0)
        #expect(stats.recordsDropped == 0)
        // The reader skips what was lost and sees the newest sub-buffers.
        var sequences: [UInt64] = []
        var skipped: UInt64 = 0
        var firstBytes: [UInt8] = []
        while true {
            let read = channel.withNextSubbuffer(buffer: 0, consume: true) { sub in
                (sub.sequence, sub.skippedBefore, sub.content.first ?? 0)
            }
            guard case .read(let (sequence, skip, first)) = read else { break }
            sequences.append(sequence)
            skipped += skip
            firstBytes.append(first)
        }
        #expect(sequences == [16, 17, 18, 19])
        #expect(skipped == 16)
        #expect(firstBytes == [32, 34, 36, 38])
    }

    @Test("overwrite: a reader lapped while a sub-buffer is open is told every sub-buffer it missed")
    func overwriteSkippedWhileOpen() throws {
        let channel = try smallChannel(subbufferCount: 4, mode: .overwrite)
        for _ in 0..<41 { channel.write(Self.record) }  // sub-buffers 0...19 full, 20 open (in slot 0)
        let read = channel.withNextSubbuffer(buffer: 0, consume: true) { ($0.sequence, $0.skippedBefore) }
        guard case .read(let (sequence, skipped)) = read else {
            Issue.record("expected a read, got \(read)")
            return
        }
        #expect(sequence == 17, "16 shares its slot with the open 20")
        #expect(skipped == 17, "0...16 were overwritten before the reader got to them")
    }

    @Test("overwrite: a consumer that fell behind sees at most a buffer's worth of unconsumed sub-buffers, not what was overwritten")
    func overwriteUnconsumedBounded() throws {
        let channel = try smallChannel(subbufferCount: 4, mode: .overwrite, buffers: 1, exclusiveBuffers: 1)
        // Fill each buffer five times over: sub-buffers 0...19, all sealed, none consumed.
        let writer = try channel.makeExclusiveWriter(buffer: 1)
        for _ in 0..<40 {
            channel.write(Self.record)
            writer.write(Self.record)
        }
        channel.flush()
        let stats = channel.stats()
        #expect(stats.buffers[0].subbuffersProduced == 20)
        #expect(stats.buffers[0].subbuffersOverwritten == 16)
        #expect(stats.buffers[0].unconsumedSubbuffers == 4, "only four sub-buffers fit in the buffer")
        #expect(stats.buffers[1].unconsumedSubbuffers == 4)
        #expect(stats.total.unconsumedSubbuffers == 8, "the total sums the buffers' bounded counts")
        for buffer in 0..<2 {
            var read = 0
            while case .read = channel.withNextSubbuffer(buffer: buffer, consume: true, { _ in () }) { read += 1 }
            #expect(read == 4)
        }
        #expect(channel.stats().total.unconsumedSubbuffers == 0)
    }

    @Test("overwrite: a lapped reader waiting for a stalled sub-buffer still reports what it skipped")
    func overwriteSkippedAcrossNone() throws {
        let channel = try smallChannel(subbufferCount: 4, mode: .overwrite)
        for _ in 0..<10 { channel.write(Self.record) }  // sub-buffers 0...4 full
        let stalled = try channel.reserve(Self.record.count)  // sub-buffer 5, held
        for _ in 0..<8 { channel.write(Self.record) }  // 5, 6, 7, 8 full; starting 9 in 5's slot is refused
        #expect(channel.stats().total.recordsLapped > 0)
        let first = channel.withNextSubbuffer(buffer: 0) { $0.sequence }
        guard case .none = first else {
            Issue.record("sub-buffer 5 must wait for its reservation, got \(first)")
            return
        }
        stalled.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0x45) }
        stalled.commit()
        let read = channel.withNextSubbuffer(buffer: 0) { ($0.sequence, $0.skippedBefore) }
        guard case .read(let (sequence, skipped)) = read else {
            Issue.record("expected a read, got \(read)")
            return
        }
        #expect(sequence == 5)
        #expect(skipped == 5, "0...4 were overwritten before the reader got to them")
    }

    @Test("overwrite: subbufsConsumed with a count beyond what was delivered stops at a sealed sub-buffer a writer is still in")
    func overwriteConsumedStopsAtUndelivered() throws {
        let channel = try smallChannel(subbufferCount: 4, mode: .overwrite)
        let held = try channel.reserve(10)  // sub-buffer 0
        channel.flush()  // sealed, not delivered: the reservation is still open
        channel.subbufsConsumed(buffer: 0, count: 3)
        var stats = channel.stats().total
        #expect(stats.subbuffersDelivered == 0)
        #expect(stats.subbuffersConsumed == 0, "nothing was delivered, so nothing can have been consumed")
        held.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0x41) }
        held.commit()
        let read = channel.withNextSubbuffer(buffer: 0, consume: true) { ($0.sequence, $0.records) }
        guard case .read(let (sequence, records)) = read else {
            Issue.record("sub-buffer 0 was delivered but the reader never gets it: \(read)")
            return
        }
        #expect(sequence == 0 && records == 1)
        stats = channel.stats().total
        #expect(stats.subbuffersConsumed == 1)
    }

    @Test("overwrite: a lapped reader that consumes what it reads has consumed everything it skipped, and says which")
    func overwriteConsumeAfterLap() throws {
        let skipped = EventLog<SubbufferOverwrite>()
        let channel = try smallChannel(
            subbufferCount: 4, mode: .overwrite, callbacks: RelayCallbacks(overwritten: { skipped.append($0) }))
        for _ in 0..<40 { channel.write(Self.record) }  // sub-buffers 0...19
        channel.flush()
        var sequences: [UInt64] = []
        while case .read(let s) = channel.withNextSubbuffer(buffer: 0, consume: true, { $0.sequence }) {
            sequences.append(s)
        }
        #expect(sequences == [16, 17, 18, 19])
        // The client learns of exactly the sub-buffers passed unread, once.
        #expect(skipped.all.map(\.sequences) == [0..<16])
        #expect(skipped.all.allSatisfy { $0.buffer == 0 })
        var stats = channel.stats().total
        #expect(stats.subbuffersConsumed == 20)
        #expect(stats.unconsumedSubbuffers == 0)
        let overwritten = stats.subbuffersOverwritten
        for _ in 0..<4 { channel.write(Self.record) }  // sub-buffers 20 and 21: nothing unconsumed is reused
        stats = channel.stats().total
        #expect(stats.subbuffersOverwritten == overwritten)
    }

    @Test("overwrite: a consuming reader has consumed the sub-buffers overwritten under it, too")
    func overwriteConsumeAfterTornRead() throws {
        let skipped = EventLog<SubbufferOverwrite>()
        let channel = try smallChannel(
            subbufferCount: 2, mode: .overwrite, callbacks: RelayCallbacks(overwritten: { skipped.append($0) }))
        for _ in 0..<4 { channel.write(Self.record) }  // sub-buffer 0 full, 1 open
        let torn = channel.withNextSubbuffer(buffer: 0, consume: true) { sub -> UInt64 in
            for _ in 0..<4 { channel.write(Self.record) }  // 2 and 3 reuse both slots
            return sub.sequence
        }
        guard case .overwritten(let sequence, _) = torn else {
            Issue.record("expected .overwritten, got \(torn)")
            return
        }
        #expect(sequence == 0)
        #expect(skipped.all.map(\.sequences) == [0..<1], "the torn read is reported as overwritten")
        channel.flush()
        var sequences: [UInt64] = []
        while case .read(let s) = channel.withNextSubbuffer(buffer: 0, consume: true, { $0.sequence }) {
            sequences.append(s)
        }
        #expect(sequences == [2, 3])
        let stats = channel.stats().total
        #expect(stats.subbuffersConsumed == stats.subbuffersProduced, "the reader is caught up")
        #expect(stats.unconsumedSubbuffers == 0)
    }

    @Test("overwrite: a reader never accepts a sub-buffer that was overwritten while it read")
    func overwriteTornRead() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .overwrite)
        for _ in 0..<4 { channel.write(Self.record) }  // sub-buffers 0 and 1 full
        let result = channel.withNextSubbuffer(buffer: 0) { sub -> UInt64 in
            // While we "read" sub-buffer 0, writers lap it.
            for _ in 0..<4 { channel.write(Self.record) }
            return sub.sequence
        }
        guard case .overwritten(let sequence, _) = result else {
            Issue.record("expected .overwritten, got \(result)")
            return
        }
        #expect(sequence == 0)
    }
}

extension RelayRead {
    var value: Value? {
        if case .read(let value) = self { return value }
        return nil
    }
}

import Glibc
