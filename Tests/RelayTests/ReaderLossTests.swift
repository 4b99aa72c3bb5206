@testable import Relay
import Synchronization
import Testing

/// The reader's loss accounting: every sub-buffer a reader never gets is reported to it
/// exactly once, however it was lost.
@Suite("Reader losses")
struct ReaderLossTests {
    static let record = [UInt8](repeating: 0x52, count: 2000)  // two per 4 KiB sub-buffer

    /// What a reader learned from its reads: the sequences it read, and how many
    /// sub-buffers it was told it lost (skipped before a result, or the result itself).
    struct Ledger {
        var read: [UInt64] = []
        var lost: UInt64 = 0
        /// The sequence the next result must account from: every earlier one was read or
        /// reported lost.
        var next: UInt64 = 0

        /// Adds one result; returns false when there was none. Checks that the result
        /// accounts for every sequence between the previous one and its own.
        mutating func add(_ result: RelayRead<(UInt64, UInt64)>) -> Bool {
            switch result {
            case .none:
                return false
            case .read(let (sequence, skipped)):
                #expect(sequence == self.next + skipped, "sequences \(self.next)..<\(sequence) were lost unreported")
                self.read.append(sequence)
                self.lost += skipped
                self.next = sequence + 1
            case .overwritten(let sequence, let skipped), .corrupt(let sequence, let skipped):
                #expect(sequence == self.next + skipped, "sequences \(self.next)..<\(sequence) were lost unreported")
                self.lost += skipped + 1
                self.next = sequence + 1
            }
            return true
        }
    }

    static func read(_ channel: RelayChannel, consume: Bool = true, _ body: () -> Void = {}) -> RelayRead<(UInt64, UInt64)> {
        channel.withNextSubbuffer(buffer: 0, consume: consume) { sub in
            body()
            return (sub.sequence, sub.skippedBefore)
        }
    }

    @Test("overwrite: a read overwritten under the reader reports the sub-buffers lapped before it too")
    func overwrittenWhileReadingReportsSkipped() throws {
        let channel = try smallChannel(subbufferCount: 4, mode: .overwrite)
        for _ in 0..<40 { channel.write(Self.record) }
        channel.flush()  // sub-buffers 0...19, all sealed
        var ledger = Ledger()
        // The reader skips to 16 (0...15 are gone); while it reads 16, writers lap it.
        let torn = Self.read(channel) { for _ in 0..<8 { channel.write(Self.record) } }  // 20...23
        guard case .overwritten(let sequence, _) = torn else {
            Issue.record("expected .overwritten, got \(torn)")
            return
        }
        #expect(sequence == 16)
        _ = ledger.add(torn)
        channel.flush()
        while ledger.add(Self.read(channel)) {}
        #expect(ledger.read == [20, 21, 22, 23])
        #expect(ledger.lost == 20, "0...19 were lost, each reported once")
        let stats = channel.stats().total
        #expect(UInt64(ledger.read.count) + ledger.lost == stats.subbuffersProduced)
        #expect(stats.subbuffersConsumed == stats.subbuffersProduced)
    }

    @Test("overwrite: a sub-buffer whose header is being rewritten by a lapping writer reports the sub-buffers skipped before it too")
    func unreadableLappedHeaderReportsSkipped() throws {
        let channel = try smallChannel(subbufferCount: 4, mode: .overwrite)
        for _ in 0..<41 { channel.write(Self.record) }  // sub-buffers 0...19 full, 20 open in slot 0
        let core = channel.cores[0]
        // The race, frozen: the reader sees slot 0 still holding delivered sub-buffer 16
        // (the switcher to 20 has moved the position but not yet stored the slot's state)
        // while the new header is half written.
        let state = core.stateWord(slot: 0).pointee.load(ordering: .relaxed)
        core.stateWord(slot: 0).pointee.store((16 << 2) | RegionLayout.phaseDelivered, ordering: .relaxed)
        let header = core.subbuffer(sequence: 20)
        let magic = header.load(fromByteOffset: SubbufferHeaderLayout.magicOffset, as: UInt32.self)
        header.storeBytes(of: 0, toByteOffset: SubbufferHeaderLayout.magicOffset, as: UInt32.self)
        var ledger = Ledger()
        let torn = Self.read(channel) { Issue.record("the body must not see an unreadable header") }
        guard case .overwritten(let sequence, _) = torn else {
            Issue.record("expected .overwritten, got \(torn)")
            return
        }
        #expect(sequence == 16)
        _ = ledger.add(torn)
        // The switcher finishes.
        header.storeBytes(of: magic, toByteOffset: SubbufferHeaderLayout.magicOffset, as: UInt32.self)
        core.stateWord(slot: 0).pointee.store(state, ordering: .relaxed)
        channel.write(Self.record)
        channel.flush()  // 20 sealed
        while ledger.add(Self.read(channel)) {}
        #expect(ledger.read == [17, 18, 19, 20])
        #expect(ledger.lost == 17, "0...16 were lost, each reported once")
        #expect(channel.stats().total.subbuffersConsumed == 21)
    }

    @Test("overwrite: a reader that does not consume still hears of every loss once")
    func lossesReportedWithoutConsume() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .overwrite)
        var ledger = Ledger()
        for round in 0..<5 {
            for _ in 0..<6 { channel.write(Self.record) }  // three more sub-buffers: laps the reader
            let result = Self.read(channel, consume: false) {
                if round.isMultiple(of: 2) { for _ in 0..<4 { channel.write(Self.record) } }
            }
            let added = ledger.add(result)
            #expect(added)
        }
        channel.flush()
        while ledger.add(Self.read(channel, consume: false)) {}
        let produced = channel.stats().total.subbuffersProduced
        #expect(UInt64(ledger.read.count) + ledger.lost == produced)
        #expect(ledger.next == produced)
    }
}
