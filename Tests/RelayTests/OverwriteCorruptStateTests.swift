@testable import Relay
import RelayTestSupport
import Synchronization
import Testing

import Glibc

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
            Garbage(name: "exactly 'being written' (what the slot said before its delivery)", value: (1 << 2) | RegionLayout.phaseWriting),
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

    @Test("writers, a reader and a process scribbling over state words: no torn record is accepted, and the buffer never wedges")
    func scribblingUnderLoad() throws {
        let channel = try smallChannel(subbufferCount: 4, mode: .overwrite)
        let producers = 4
        let perProducer = 50_000
        let done = Atomic<Bool>(false)
        let torn = Atomic<Int>(0)
        let duplicates = Atomic<Int>(0)
        let consumer = TestThreads.spawn {
            var copy = [UInt8](repeating: 0, count: 4096)
            var last = [UInt64?](repeating: nil, count: producers)
            func drainOnce() -> Bool {
                let read = channel.withNextSubbuffer(buffer: 0, consume: true) { sub -> Int in
                    // Copy first, validate after: the bytes may change under the reader.
                    copy.withUnsafeMutableBytes { $0.copyMemory(from: sub.content) }
                    return sub.content.count
                }
                switch read {
                case .none: return false
                case .overwritten, .corrupt: return true
                case .read(let count):
                    copy.withUnsafeBytes { raw in
                        var offset = 0
                        while offset < count {
                            guard let r = StressRecord.decode(UnsafeRawBufferPointer(rebasing: raw[offset..<count])) else {
                                torn.add(1, ordering: .relaxed)
                                return
                            }
                            let producer = Int(r.producer)
                            if let previous = last[producer], r.sequence <= previous { duplicates.add(1, ordering: .relaxed) }
                            last[producer] = r.sequence
                            offset += r.size
                        }
                    }
                    return true
                }
            }
            while !done.load(ordering: .acquiring) {
                if !drainOnce() { sched_yield() }
            }
            while drainOnce() {}
        }
        // Another process writing phase bits 3 (never an engine value) with any sequence over
        // any slot's state word, whatever the slot is doing.
        let scribbler = TestThreads.spawn {
            var random = SplitMix64(state: 0x5C21_881E)
            while !done.load(ordering: .acquiring) {
                let sequence = random.next() % 4
                let value = ((random.next() % 64) << 2) | 3
                Self.stateWord(channel, sequence: sequence).assumingMemoryBound(to: Atomic<UInt64>.self).pointee
                    .store(value, ordering: .relaxed)
                usleep(20)
            }
        }
        let dropped = Atomic<Int>(0)
        TestThreads.run(count: producers) { producer in
            var scratch = [UInt8](repeating: 0, count: 512)
            for sequence in 0..<perProducer {
                let size = 32 + ((sequence &* 2_654_435_761) % 13) * 16
                let result = scratch.withUnsafeMutableBytes { raw -> RelayWriteResult in
                    StressRecord.encode(producer: UInt32(producer), sequence: UInt64(sequence), size: size, into: raw)
                    return channel.write(UnsafeRawBufferPointer(rebasing: raw[0..<size]))
                }
                if result != .written { dropped.add(1, ordering: .relaxed) }
            }
        }
        done.store(true, ordering: .releasing)
        TestThreads.join(scribbler)
        TestThreads.join(consumer)
        #expect(torn.load(ordering: .relaxed) == 0, "no accepted sub-buffer contained a torn record")
        #expect(duplicates.load(ordering: .relaxed) == 0)
        let stats = channel.stats().total
        #expect(UInt64(dropped.load(ordering: .relaxed)) == stats.recordsLapped, "every drop counted as lapped")
        #expect(stats.corruptSubbuffers > 0, "the scribbler must hit delivered slots for this test to mean anything")
        // The scribbling stopped: whatever it left in the slots, writers go on (two laps).
        for _ in 0..<16 { #expect(channel.write(Self.record) == .written) }
        #expect(channel.stats().total.recordsLapped == stats.recordsLapped)
    }
}
