@testable import Relay
import Synchronization
import Testing

/// A region can be a memfd or /dev/shm file another process maps, so a delivered
/// sub-buffer's header can be corrupt: the reader reports it, counts it, moves past it
/// and goes on, in every mode.
@Suite("Reader: corrupt sub-buffers")
struct ReaderCorruptionTests {
    static let record = [UInt8](repeating: 0x43, count: 2000)  // two per 4 KiB sub-buffer

    /// One way to corrupt a header: the field's offset and the value written there.
    struct Corruption: Sendable, CustomTestStringConvertible {
        let name: String
        let offset: Int
        let value: UInt64
        let size: Int
        var testDescription: String { self.name }

        static let all: [Corruption] = [
            Corruption(name: "zeroed magic", offset: SubbufferHeaderLayout.magicOffset, value: 0, size: 4),
            Corruption(name: "wrong version", offset: SubbufferHeaderLayout.versionOffset, value: 77, size: 2),
            Corruption(name: "content past the end", offset: SubbufferHeaderLayout.contentSizeOffset, value: 0xFFFF_FF00, size: 4),
            Corruption(name: "header size of another channel", offset: SubbufferHeaderLayout.headerSizeOffset, value: 128, size: 2),
            Corruption(name: "another sequence", offset: SubbufferHeaderLayout.sequenceOffset, value: 9, size: 8),
            Corruption(name: "another buffer", offset: SubbufferHeaderLayout.bufferIndexOffset, value: 3, size: 4),
        ]

        func apply(to header: UnsafeMutableRawPointer) {
            switch self.size {
            case 2: header.storeBytes(of: UInt16(self.value), toByteOffset: self.offset, as: UInt16.self)
            case 4: header.storeBytes(of: UInt32(self.value), toByteOffset: self.offset, as: UInt32.self)
            default: header.storeBytes(of: self.value, toByteOffset: self.offset, as: UInt64.self)
            }
            if self.offset == SubbufferHeaderLayout.headerSizeOffset {
                // Keep the sizes consistent: only the header size disagrees with the channel.
                let content = header.load(fromByteOffset: SubbufferHeaderLayout.contentSizeOffset, as: UInt32.self)
                header.storeBytes(of: content - 64, toByteOffset: SubbufferHeaderLayout.contentSizeOffset, as: UInt32.self)
            }
        }
    }

    enum Mode: String, Sendable, CaseIterable, CustomTestStringConvertible {
        case drop, block, overwrite
        var testDescription: String { self.rawValue }
        var relayMode: RelayMode {
            switch self {
            case .drop: .drop
            case .block: .block(timeout: .milliseconds(50))
            case .overwrite: .overwrite
            }
        }
    }

    static func describe(_ read: RelayRead<UInt64>) -> String {
        switch read {
        case .none: "none"
        case .read(let sequence): "read \(sequence)"
        case .overwritten(let sequence, let skipped): "overwritten \(sequence) after \(skipped)"
        case .corrupt(let sequence, let skipped): "corrupt \(sequence) after \(skipped)"
        }
    }

    @Test(
        "a delivered sub-buffer with a corrupt header is reported, counted and consumed; the reader goes on",
        arguments: Mode.allCases, Corruption.all)
    func corruptHeaderSkipped(mode: Mode, corruption: Corruption) throws {
        let channel = try smallChannel(subbufferCount: 4, mode: mode.relayMode)
        for _ in 0..<6 { channel.write(Self.record) }
        channel.flush()  // sub-buffers 0, 1, 2 delivered
        corruption.apply(to: channel.cores[0].subbuffer(sequence: 1))
        var results: [String] = []
        while true {
            let read = channel.withNextSubbuffer(buffer: 0, consume: true) { $0.sequence }
            if case .none = read { break }
            results.append(Self.describe(read))
        }
        #expect(results == ["read 0", "corrupt 1 after 0", "read 2"])
        let stats = channel.stats().total
        #expect(stats.corruptSubbuffers == 1)
        #expect(stats.subbuffersConsumed == 3, "the corrupt sub-buffer was consumed too: the channel does not wedge")
        // Writers go on: the whole buffer is free again (no-overwrite modes would refuse or
        // wait if the corrupt sub-buffer still held its slot).
        for _ in 0..<8 { #expect(channel.write(Self.record) == .written) }
        channel.flush()
        var sequences: [UInt64] = []
        while case .read(let sequence) = channel.withNextSubbuffer(buffer: 0, consume: true, { $0.sequence }) {
            sequences.append(sequence)
        }
        #expect(sequences == [3, 4, 5, 6])
        #expect(channel.stats().total.recordsDropped == 0)
    }

    @Test("without consume: the reader moves past a corrupt sub-buffer, and subbufsConsumed frees it", arguments: [Mode.drop, .block])
    func corruptHeaderWithoutConsume(mode: Mode) throws {
        let channel = try smallChannel(subbufferCount: 2, mode: mode.relayMode)
        for _ in 0..<4 { channel.write(Self.record) }  // sub-buffers 0 and 1 full, the buffer too
        channel.flush()
        channel.cores[0].subbuffer(sequence: 0).storeBytes(of: 0, toByteOffset: 0, as: UInt32.self)
        let first = channel.withNextSubbuffer(buffer: 0) { $0.sequence }
        #expect(Self.describe(first) == "corrupt 0 after 0")
        let second = channel.withNextSubbuffer(buffer: 0) { $0.sequence }
        #expect(Self.describe(second) == "read 1")
        #expect(channel.stats().total.subbuffersConsumed == 0, "nothing consumed until the reader says so")
        channel.subbufsConsumed(buffer: 0, count: 2)
        #expect(channel.stats().total.subbuffersConsumed == 2)
        #expect(channel.write(Self.record) == .written)
    }

    @Test("the corrupt callback names the sub-buffer the reader skipped, before it is consumed", arguments: Mode.allCases)
    func corruptCallbackBeforeRelease(mode: Mode) throws {
        /// Each call: the sequence reported, and the channel's consumed count at that moment.
        let reports = RelayMutex<[(sequence: UInt64, consumed: UInt64)]>([])
        let channelBox = RelayMutex<RelayChannel?>(nil)
        let callbacks = RelayCallbacks(corrupt: { corruption in
            let consumed = channelBox.withLock { $0?.consumedCount(buffer: corruption.buffer) } ?? .max
            reports.withLock { $0.append((corruption.sequence, consumed)) }
        })
        let channel = try RelayChannel(
            RelayChannelConfiguration(name: "cb", subbufferSize: 4096, subbufferCount: 4, mode: mode.relayMode, buffers: 1),
            callbacks: callbacks)
        channelBox.withLock { $0 = channel }
        // The box closes a cycle (channel → callbacks → box → channel): break it.
        defer { channelBox.withLock { $0 = nil } }
        for _ in 0..<6 { channel.write(Self.record) }
        channel.flush()
        Corruption.all[0].apply(to: channel.cores[0].subbuffer(sequence: 1))
        while true {
            if case .none = channel.withNextSubbuffer(buffer: 0, consume: true, { $0.sequence }) { break }
        }
        let seen = reports.withLock { $0 }
        #expect(seen.map(\.sequence) == [1])
        #expect(seen.map(\.consumed) == [1], "reported after 0 was consumed and before 1 was")
        #expect(channel.consumedCount(buffer: 0) == 3)
    }

    @Test("the packet of a corrupt sub-buffer is never handed to the reader's closure")
    func corruptHeaderNotRead() throws {
        let channel = try smallChannel(subbufferCount: 2, mode: .drop)
        for _ in 0..<2 { channel.write(Self.record) }
        channel.flush()
        Corruption.all[2].apply(to: channel.cores[0].subbuffer(sequence: 0))
        var ran = false
        let read = channel.withNextSubbuffer(buffer: 0, consume: true) { _ in ran = true }
        guard case .corrupt(let sequence, let skipped) = read else {
            Issue.record("expected .corrupt, got \(read)")
            return
        }
        #expect(sequence == 0 && skipped == 0)
        #expect(!ran)
    }
}
