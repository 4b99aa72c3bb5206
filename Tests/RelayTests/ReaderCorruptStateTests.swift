@testable import Relay
import Testing

/// A region can be a memfd or /dev/shm file another process maps, so a slot's state word can
/// be overwritten after its sub-buffer was delivered. In the no-overwrite modes the consumer
/// waits for the state word to say "delivered"; nothing in the engine stores it again until the
/// consumer releases the slot, so a reader (and then blocked writers) would wait forever. The
/// reader passes such a sub-buffer as corrupt, counts it and goes on; a state word the engine
/// can legitimately leave there is never taken for corruption.
@Suite("Reader: corrupt slot state words")
struct ReaderCorruptStateTests {
    static let record = [UInt8](repeating: 0x43, count: 2000)  // two per 4 KiB sub-buffer

    enum Mode: String, Sendable, CaseIterable, CustomTestStringConvertible {
        case drop, block
        var testDescription: String { self.rawValue }
        var relayMode: RelayMode { self == .drop ? .drop : .block(timeout: .milliseconds(50)) }
    }

    /// A state word another process could write over sub-buffer 1's (4 sub-buffers per buffer).
    struct Garbage: Sendable, CustomTestStringConvertible {
        let name: String
        let value: UInt64
        var testDescription: String { self.name }

        static let all: [Garbage] = [
            Garbage(name: "a sequence that never comes", value: (77 << 2) | RegionLayout.phaseDelivered),
            Garbage(name: "invalid phase bits", value: (1 << 2) | 3),
            Garbage(name: "the 0 of a never-used slot", value: 0),
            Garbage(name: "the next incarnation, delivered", value: (5 << 2) | RegionLayout.phaseDelivered),
            Garbage(name: "exactly 'being written' (what the slot said before its delivery)", value: (1 << 2) | RegionLayout.phaseWriting),
            Garbage(name: "all ones", value: .max),
        ]
    }

    /// The state word of sub-buffer `sequence`'s slot, in the region's memory.
    static func stateWord(_ channel: RelayChannel, sequence: UInt64) -> UnsafeMutableRawPointer {
        let slot = Int(sequence % UInt64(channel.configuration.subbufferCount))
        return channel.region(buffer: 0).baseAddress!
            + RegionLayout.slotTableOffset + slot * RegionLayout.slotStride + RegionLayout.slotStateOffset
    }

    static func readAll(_ channel: RelayChannel) -> [String] {
        var results: [String] = []
        while true {
            let read = channel.withNextSubbuffer(buffer: 0, consume: true) { $0.sequence }
            if case .none = read { break }
            results.append(ReaderCorruptionTests.describe(read))
        }
        return results
    }

    @Test(
        "a delivered sub-buffer whose state word was overwritten is passed as corrupt, counted and consumed",
        arguments: Mode.allCases, Garbage.all)
    func corruptStateWordPassed(mode: Mode, garbage: Garbage) throws {
        let channel = try smallChannel(subbufferCount: 4, mode: mode.relayMode)
        for _ in 0..<6 { #expect(channel.write(Self.record) == .written) }
        channel.flush()  // sub-buffers 0, 1, 2 delivered
        Self.stateWord(channel, sequence: 1).storeBytes(of: garbage.value, as: UInt64.self)
        #expect(Self.readAll(channel) == ["read 0", "corrupt 1 after 0", "read 2"])
        let stats = channel.stats().total
        #expect(stats.corruptSubbuffers == 1)
        #expect(stats.subbuffersConsumed == 3, "the corrupt sub-buffer was consumed too: the buffer does not wedge")
        // Writers go on: the whole buffer is free again (with sub-buffer 1 still held, the
        // fourth of these sub-buffers could not start: dropped, or a block-mode timeout).
        for _ in 0..<8 { #expect(channel.write(Self.record) == .written) }
        channel.flush()
        #expect(Self.readAll(channel) == ["read 3", "read 4", "read 5", "read 6"])
        #expect(channel.stats().total.recordsDropped == 0)
        #expect(channel.stats().total.corruptSubbuffers == 1, "counted once")
    }

    @Test("without consume: the reader passes the corrupt state word, and subbufsConsumed releases the slot later")
    func corruptStateWordWithoutConsume() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .block(timeout: .milliseconds(50)))
        for _ in 0..<4 { #expect(channel.write(Self.record) == .written) }  // the buffer is full
        channel.flush()
        Self.stateWord(channel, sequence: 0).storeBytes(of: (9 << 2) | 3, as: UInt64.self)
        #expect(ReaderCorruptionTests.describe(channel.withNextSubbuffer(buffer: 0) { $0.sequence }) == "corrupt 0 after 0")
        #expect(ReaderCorruptionTests.describe(channel.withNextSubbuffer(buffer: 0) { $0.sequence }) == "read 1")
        #expect(channel.stats().total.subbuffersConsumed == 0, "nothing consumed until the reader says so")
        channel.subbufsConsumed(buffer: 0, count: 2)
        #expect(channel.stats().total.subbuffersConsumed == 2)
        #expect(channel.write(Self.record) == .written, "a block-mode writer finds space")
        #expect(channel.stats().total.corruptSubbuffers == 1)
    }

    @Test("legitimate state words are never passed: a sealed sub-buffer with a writer still inside, the open one")
    func legitimateStatesAreNotCorrupt() throws {
        let channel = try smallChannel(subbufferCount: 4, mode: .drop)
        for _ in 0..<2 { #expect(channel.write(Self.record) == .written) }  // sub-buffer 0 delivered
        let held = try channel.reserve(100)  // sub-buffer 1, not committed
        channel.flush()  // sealed, but not delivered: a writer is inside
        #expect(Self.readAll(channel) == ["read 0"])
        // Its slot says "sub-buffer 1 being written": a reader must wait, however often it looks.
        for _ in 0..<100 {
            #expect(ReaderCorruptionTests.describe(channel.withNextSubbuffer(buffer: 0) { $0.sequence }) == "none")
        }
        #expect(Self.stateWord(channel, sequence: 1).load(as: UInt64.self) == (1 << 2) | RegionLayout.phaseWriting)
        _ = held.withUnsafeMutableBytes { $0.initializeMemory(as: UInt8.self, repeating: 0x0A) }
        held.commit()
        #expect(Self.readAll(channel) == ["read 1"])
        // The slot of the sub-buffer after it still holds the 0 it started with: not started, not corrupt.
        #expect(ReaderCorruptionTests.describe(channel.withNextSubbuffer(buffer: 0) { $0.sequence }) == "none")
        channel.write(Self.record)  // sub-buffer 2 open
        #expect(ReaderCorruptionTests.describe(channel.withNextSubbuffer(buffer: 0) { $0.sequence }) == "none")
        #expect(channel.stats().total.corruptSubbuffers == 0)
    }
}
