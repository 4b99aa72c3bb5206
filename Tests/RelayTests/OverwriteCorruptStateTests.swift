@testable import Relay
import Testing

/// A region can be a memfd or /dev/shm file another process maps, so a slot's state word can be
/// overwritten after its sub-buffer was delivered. In overwrite mode the writer that switches into
/// the slot's next incarnation needs the word to say "previous incarnation delivered" (else a
/// writer may still be inside it); a word no engine store will ever replace would make every
/// later switch into the slot report a stalled writer, and every record of the buffer dropped as
/// lapped. The writer repairs such a word when it is certain the previous incarnation was
/// delivered, counts it and reuses the slot; a real stalled writer still holds the slot.
@Suite("Overwrite: corrupt slot state words")
struct OverwriteCorruptStateTests {
    static let record = [UInt8](repeating: 0x4F, count: 2000)  // two per 4 KiB sub-buffer

    /// A state word another process could write over sub-buffer 1's slot (4 sub-buffers per
    /// buffer), after sub-buffer 1 was delivered and before the switch into sub-buffer 5.
    struct Garbage: Sendable, CustomTestStringConvertible {
        let name: String
        let value: UInt64
        var testDescription: String { self.name }

        static let all: [Garbage] = [
            Garbage(name: "a sequence that never comes", value: (77 << 2) | RegionLayout.phaseDelivered),
            Garbage(name: "phase bits 2", value: (1 << 2) | 2),
            Garbage(name: "phase bits 3", value: (1 << 2) | 3),
            Garbage(name: "the 0 of a never-used slot", value: 0),
            Garbage(name: "all ones", value: .max),
            Garbage(name: "the next incarnation delivered, before it started", value: (5 << 2) | RegionLayout.phaseDelivered),
            Garbage(name: "the next incarnation being written, before it started", value: (5 << 2) | RegionLayout.phaseWriting),
        ]
    }

    /// The state word of sub-buffer `sequence`'s slot, in the region's memory.
    static func stateWord(_ channel: RelayChannel, sequence: UInt64) -> UnsafeMutableRawPointer {
        let slot = Int(sequence % UInt64(channel.configuration.subbufferCount))
        return channel.region(buffer: 0).baseAddress!
            + RegionLayout.slotTableOffset + slot * RegionLayout.slotStride + RegionLayout.slotStateOffset
    }

    @Test(
        "a delivered slot whose state word was overwritten is repaired by the next switch into it, counted once, and reused",
        arguments: Garbage.all)
    func corruptStateWordRepaired(garbage: Garbage) throws {
        let passed = EventLog<SubbufferCorruption>()
        let channel = try smallChannel(
            subbufferCount: 4, mode: .overwrite, callbacks: RelayCallbacks(corrupt: { passed.append($0) }))
        for _ in 0..<10 { #expect(channel.write(Self.record) == .written) }  // 0...3 delivered, 4 open in slot 0
        Self.stateWord(channel, sequence: 1).storeBytes(of: garbage.value, as: UInt64.self)
        // 5, 6, 7, 8: the switch into 5 reuses sub-buffer 1's slot.
        for _ in 0..<8 { #expect(channel.write(Self.record) == .written) }
        var stats = channel.stats().total
        #expect(stats.recordsLapped == 0, "the scribbled slot is reused: no record dropped as lapped")
        #expect(stats.corruptSubbuffers == 1)
        #expect(Self.stateWord(channel, sequence: 5).load(as: UInt64.self) == (5 << 2) | RegionLayout.phaseDelivered)
        // Another lap over the same slot (the switch into 9) is the ordinary reuse: counted once.
        for _ in 0..<8 { #expect(channel.write(Self.record) == .written) }
        channel.flush()
        stats = channel.stats().total
        #expect(stats.recordsLapped == 0)
        #expect(stats.recordsWritten == 26)
        #expect(stats.corruptSubbuffers == 1, "counted once per scribbled slot")
        #expect(passed.all.isEmpty, "nothing was passed unread: the corrupt callback is the consumer's")
        // The reader gets the last lap whole: 9...12, after the 9 sub-buffers overwritten before it.
        var reads: [String] = []
        while true {
            let read = channel.withNextSubbuffer(buffer: 0, consume: true) { "\($0.sequence)/\($0.records)/\($0.skippedBefore)" }
            guard case .read(let description) = read else {
                if case .none = read { break }
                Issue.record("unexpected \(read)")
                break
            }
            reads.append(description)
        }
        #expect(reads == ["9/2/9", "10/2/0", "11/2/0", "12/2/0"])
    }

    /// The same kinds of garbage over sub-buffer 5's slot, which the switch into 9 needs. Not
    /// `5` delivered itself: a stranger's write of exactly the value the delivery stores cannot be
    /// told from the delivery (by any state-word check; the same before the repair existed).
    static let overStalledSlot: [UInt64?] = [
        (77 << 2) | RegionLayout.phaseDelivered, (5 << 2) | 2, (5 << 2) | 3, 0, .max,
        (1 << 2) | RegionLayout.phaseDelivered, (9 << 2) | RegionLayout.phaseDelivered, (9 << 2) | RegionLayout.phaseWriting,
    ]

    @Test(
        "a writer stalled inside the previous incarnation still holds the slot, even under a scribbled state word",
        arguments: [nil] + Self.overStalledSlot)
    func stalledWriterStillHoldsTheSlot(garbage: UInt64?) throws {
        let channel = try smallChannel(subbufferCount: 4, mode: .overwrite)
        for _ in 0..<10 { #expect(channel.write(Self.record) == .written) }  // 0...3 delivered, 4 open
        let held = try channel.reserve(Self.record.count)  // switches into 5 (slot 1): held open
        for _ in 0..<7 { #expect(channel.write(Self.record) == .written) }  // 5 sealed (undelivered), 6, 7, 8
        if let garbage {
            Self.stateWord(channel, sequence: 5).storeBytes(of: garbage, as: UInt64.self)
        }
        // The switch into 9 would reuse 5's slot while the reservation is still inside it.
        for _ in 0..<4 { #expect(channel.write(Self.record) == .dropped) }
        var stats = channel.stats().total
        #expect(stats.recordsLapped == 4, "the stall is reported as before")
        #expect(stats.corruptSubbuffers == 0)
        #expect(channel.producedCount(buffer: 0) == 9, "9 never started: 8 was only sealed")
        let state = Self.stateWord(channel, sequence: 5).load(as: UInt64.self)
        #expect(state == garbage ?? (5 << 2) | RegionLayout.phaseWriting, "the slot was left alone")
        // The reservation's commit delivers 5, whose state store replaces whatever was there.
        held.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0x48) }
        held.commit()
        #expect(Self.stateWord(channel, sequence: 5).load(as: UInt64.self) == (5 << 2) | RegionLayout.phaseDelivered)
        #expect(channel.write(Self.record) == .written, "the switch into 9 goes ahead")
        stats = channel.stats().total
        #expect(stats.recordsLapped == 4)
        #expect(stats.corruptSubbuffers == 0, "a real stall is never counted as corruption")
    }
}
