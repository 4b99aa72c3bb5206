import Relay
import RelayShipper
import RelayTestSupport
import Testing

/// A region can be a memfd or /dev/shm file another process maps, so a delivered
/// sub-buffer's header can be corrupt. The shipper must not trust its sizes (a content
/// size past the sub-buffer would hand the kernel memory outside it): it skips the
/// sub-buffer, releases it, counts it, and ships the rest.
@Suite("Shipper: corrupt sub-buffers", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct ShipperCorruptSubbufferTests {
    enum Mode: String, Sendable, CaseIterable, CustomTestStringConvertible {
        case drop, overwrite
        var testDescription: String { self.rawValue }
        var relayMode: RelayMode { self == .drop ? .drop : .overwrite }
    }

    static func line(_ byte: UInt8) -> [UInt8] {
        [UInt8](repeating: byte, count: 1999) + [0x0A]  // two per 4 KiB sub-buffer
    }

    @Test(
        "a sub-buffer whose header claims content past its end is not shipped, and the rest is",
        arguments: Mode.allCases, [RelayFileSinkConfiguration.Format.plain, .packets])
    func corruptContentSize(mode: Mode, format: RelayFileSinkConfiguration.Format) throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let channel = try RelayChannel(
            RelayChannelConfiguration(name: "corrupt", subbufferSize: 4096, subbufferCount: 4, mode: mode.relayMode, buffers: 1))
        for byte in UInt8(0x41)...0x46 {
            let record = Self.line(byte)
            #expect(record.withUnsafeBytes { channel.write($0) } == .written)
        }
        channel.flush()  // sub-buffers 0 (A, B), 1 (C, D), 2 (E, F) delivered
        // Another process scribbles over sub-buffer 1's content size.
        let header = try #require(channel.subbufferArea(buffer: 0).baseAddress) + 4096
        header.storeBytes(of: UInt32(0xFFFF_FF00), toByteOffset: 40, as: UInt32.self)
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("out"), format: format))])
        try shipper.start()
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)))
        let stats = channel.stats().total
        #expect(stats.corruptSubbuffers == 1)
        #expect(stats.subbuffersConsumed == 3, "the corrupt sub-buffer was released too")
        switch format {
        case .plain:
            let bytes = try #require(readFileBytes(dir.file("out")))
            let expected = Self.line(0x41) + Self.line(0x42) + Self.line(0x45) + Self.line(0x46)
            #expect(bytes.split(separator: 0x0A).map { $0.first } == [0x41, 0x42, 0x45, 0x46])
            #expect(bytes.count == expected.count)
            #expect(bytes == expected, "records byte-identical")
        case .packets:
            var sequences: [UInt64] = []
            try RelayPacketReader(path: dir.file("out")).forEach { sequences.append($0.sequence) }
            #expect(sequences == [0, 2])
        }
    }
    /// No-overwrite modes wait for the next sub-buffer's state word to say "delivered"; one another
    /// process overwrote after the delivery never will, and the buffer would never free space.
    @Test(
        "a delivered sub-buffer whose state word was overwritten is not shipped, and the rest is",
        arguments: [RelayMode.drop, .block(timeout: .milliseconds(50))])
    func corruptStateWord(mode: RelayMode) async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let channel = try RelayChannel(
            RelayChannelConfiguration(name: "corrupt-state", subbufferSize: 4096, subbufferCount: 4, mode: mode, buffers: 1))
        for byte in UInt8(0x41)...0x46 {
            let record = Self.line(byte)
            #expect(record.withUnsafeBytes { channel.write($0) } == .written)
        }
        channel.flush()  // sub-buffers 0 (A, B), 1 (C, D), 2 (E, F) delivered
        // Another process scribbles over sub-buffer 1's slot state word (slot table at 0x200, 32 bytes a
        // slot, the state word at +8): a sequence that never comes.
        let region = try #require(channel.region(buffer: 0).baseAddress)
        (region + 0x200 + 32 + 8).storeBytes(of: UInt64(77 << 2 | 1), as: UInt64.self)
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("out")))])
        try shipper.start()
        // The shipper passes sub-buffer 1 and releases 0 to 2 (it would wait for 1 forever).
        let deadline = ContinuousClock.now + .seconds(10)
        while channel.stats().total.subbuffersConsumed < 3 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        #expect(channel.stats().total.subbuffersConsumed == 3)
        // The whole buffer again: only fits if sub-buffer 1 was released.
        for byte in UInt8(0x47)...0x4E {
            let record = Self.line(byte)
            #expect(record.withUnsafeBytes { channel.write($0) } == .written)
        }
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)))
        let stats = channel.stats().total
        #expect(stats.corruptSubbuffers == 1)
        #expect(stats.subbuffersConsumed == 7, "the corrupt sub-buffer was released too")
        #expect(stats.recordsDropped == 0)
        let bytes = try #require(readFileBytes(dir.file("out")))
        #expect(bytes.split(separator: 0x0A).map { $0.first } == [0x41, 0x42] + Array(0x45...0x4E))
    }
}
