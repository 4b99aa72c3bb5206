import Relay
import RelayTestSupport
import Testing

@Suite("Reservations")
struct ReservationTests {
    @Test("reserve, write in place, commit")
    func reserveCommit() throws {
        let channel = try smallChannel()
        let reservation = try channel.reserve(6)
        #expect(reservation.count == 6)
        reservation.withUnsafeMutableBytes { bytes in
            bytes.copyBytes(from: "hello\n".utf8)
        }
        reservation.commit()
        channel.flush()
        #expect(channel.drainLines() == ["hello"])
    }

    @Test("commit(usedBytes:) hands the tail back when nothing follows")
    func shrinkGivesBack() throws {
        let channel = try smallChannel()
        let reservation = try channel.reserve(100)
        reservation.withUnsafeMutableBytes { $0.copyBytes(from: "short\n".utf8) }
        reservation.commit(usedBytes: 6)
        channel.write("next\n")
        channel.flush()
        #expect(channel.drainLines() == ["short", "next"])
    }

    @Test("commit(usedBytes:) pads with the filler when a record follows, keeping the newline last")
    func shrinkFills() throws {
        let channel = try smallChannel()
        let first = try channel.reserve(12)
        let second = try channel.reserve(5)
        second.withUnsafeMutableBytes { $0.copyBytes(from: "next\n".utf8) }
        second.commit()
        first.withUnsafeMutableBytes { $0.copyBytes(from: "{\"a\":1}\n".utf8) }
        first.commit(usedBytes: 8)
        channel.flush()
        #expect(channel.drainLines() == ["{\"a\":1}    ", "next"])
    }

    @Test("a dropped reservation is filled and committed: it never wedges the buffer")
    func abandonedReservation() throws {
        let delivered = EventLog<UInt64>()
        let channel = try smallChannel(callbacks: RelayCallbacks(deliver: { delivered.append($0.sequence) }))
        do {
            let dropped = try channel.reserve(10)
            _ = dropped.count
            // `dropped` goes out of scope here without commit.
        }
        channel.write("after\n")
        channel.flush()
        #expect(delivered.all == [0], "the sub-buffer was delivered despite the abandoned reservation")
        #expect(channel.drainLines() == ["         ", "after"], "blank text, ending in a newline")
        #expect(channel.stats().total.reservationsAbandoned == 1)
    }

    @Test("a zero-length reservation is an error; an oversized one is counted")
    func badLengths() throws {
        let channel = try smallChannel()
        #expect(throws: RelayReserveError.emptyReservation) { _ = try channel.reserve(0) }
        #expect(throws: RelayReserveError.tooBig) { _ = try channel.reserve(channel.maxRecordSize + 1) }
        #expect(channel.stats().total.recordsTooBig == 1)
    }

    @Test("a negative reservation length is an empty reservation, not a crash")
    func negativeLength() throws {
        let channel = try smallChannel()
        #expect(throws: RelayReserveError.emptyReservation) { _ = try channel.reserve(-1) }
        #expect(channel.stats().total.recordsTooBig == 0)
    }

    @Test("a writer stalled between reserve and commit holds back only its own sub-buffer")
    func stalledWriter() throws {
        let delivered = EventLog<UInt64>()
        let channel = try smallChannel(
            subbufferSize: 4096, subbufferCount: 8,
            callbacks: RelayCallbacks(deliver: { delivered.append($0.sequence) }))
        let stalled = try channel.reserve(100)  // in sub-buffer 0
        let record = [UInt8](repeating: 0x41, count: 1000)
        for _ in 0..<12 { channel.write(record) }  // fills sub-buffers 0 (partly), 1, 2 and starts 3
        #expect(delivered.all == [1, 2], "later sub-buffers are delivered while 0 waits")
        // The reader goes in order, so nothing is readable yet.
        let first = channel.withNextSubbuffer(buffer: 0) { $0.sequence }
        guard case .none = first else {
            Issue.record("sub-buffer 0 must not be readable before its reservation commits")
            return
        }
        stalled.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0x42) }
        stalled.commit()
        #expect(delivered.all == [1, 2, 0], "delivery resumes when it commits")
        var sequences: [UInt64] = []
        while case .read(let s) = channel.withNextSubbuffer(buffer: 0, consume: true, { $0.sequence }) {
            sequences.append(s)
        }
        #expect(sequences == [0, 1, 2])
    }
}
