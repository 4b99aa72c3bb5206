import Glibc
import Relay
import RelayTestSupport
import Testing

@Suite("Writing and reading")
struct WriteReadTests {
    @Test("records come back in order, byte for byte")
    func roundTrip() throws {
        let channel = try smallChannel()
        for i in 0..<30 {
            #expect(channel.write("line \(i)\n") == .written)
        }
        channel.flush()
        #expect(channel.drainLines() == (0..<30).map { "line \($0)" })
    }

    @Test("records of every length from 1 to 300 bytes come back byte for byte, on every write path")
    func everyLength() throws {
        // The shared path with restartable sequences (one buffer per CPU) and with locked
        // instructions, and the exclusive path: each copies records with its own inline copy.
        defer { CPUAffinity.pin(to: nil) }
        CPUAffinity.pin(to: 0)
        for perCPU in [true, false] {
            let channel = try RelayChannel(
                RelayChannelConfiguration(
                    name: "lengths-\(UInt32.random(in: 0...UInt32.max))", subbufferSize: 65536, subbufferCount: 4,
                    mode: .drop, exclusiveBuffers: 1, perCPUFastPath: perCPU))
            let exclusive = channel.sharedBuffers
            let writer = try channel.makeExclusiveWriter(buffer: exclusive)
            // Each record's bytes differ from their neighbours', so a misplaced block shows.
            func record(_ length: Int) -> [UInt8] { (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ length) } }
            for length in 1...300 {
                #expect(channel.write(record(length)) == .written)
                #expect(writer.write(record(length)) == .written)
            }
            channel.flush()
            for buffer in [0, exclusive] {
                var bytes: [UInt8] = []
                while case .read = channel.withNextSubbuffer(buffer: buffer, consume: true, { bytes += $0.content }) {}
                #expect(bytes == (1...300).flatMap(record), "buffer \(buffer), perCPU \(perCPU)")
            }
        }
    }

    @Test("records never span sub-buffers; the tail is padding")
    func paddingRecorded() throws {
        let channel = try smallChannel(subbufferSize: 4096, subbufferCount: 4)
        // 64-byte header leaves 4032 bytes: 4 records of 1000 fit, the 5th does not.
        let record = [UInt8](repeating: 0x61, count: 1000)
        for _ in 0..<5 { #expect(channel.write(record) == .written) }
        channel.flush()
        var paddings: [Int] = []
        var records: [Int] = []
        while case .read(let (padding, count)) = channel.withNextSubbuffer(buffer: 0, consume: true, { ($0.padding, $0.records) }) {
            paddings.append(padding)
            records.append(count)
        }
        #expect(records == [4, 1])
        #expect(paddings == [4032 - 4000, 4032 - 1000])
    }

    @Test("the engine header describes each sub-buffer")
    func headerFields() throws {
        let channel = try smallChannel(buffers: 2)
        for i in 0..<3 { channel.write("x\(i)\n") }
        channel.flush()
        channel.write("late\n")
        channel.flush()
        var seen: [(UInt64, Int, Int, UInt64, UInt64, SubbufferFlags)] = []
        while case .read(let h) = channel.withNextSubbuffer(buffer: 0, consume: true, { sub in
            (sub.sequence, sub.records, sub.content.count, sub.beginTimeNanoseconds, sub.endTimeNanoseconds, sub.flags)
        }) {
            seen.append(h)
        }
        // Writes from this thread may land in buffer 0 or 1 depending on the CPU.
        let total = seen.map(\.1).reduce(0, +)
        if total > 0 {
            #expect(seen.first?.0 == 0)
            for (index, entry) in seen.enumerated() {
                #expect(entry.0 == UInt64(index), "sequence numbers are consecutive")
                #expect(entry.3 > 1_700_000_000_000_000_000, "begin time is wall-clock ns")
                #expect(entry.4 >= entry.3, "end ≥ begin")
                #expect(entry.5.contains(.flushed))
            }
        }
    }

    @Test("a buffer's first sub-buffer (started empty at open, and again at reset) begins at its first record, not at open: shared and exclusive paths")
    func firstSubbufferBeginsAtFirstRecord() throws {
        let channel = try smallChannel(buffers: 1, exclusiveBuffers: 1)
        let writer = try channel.makeExclusiveWriter(buffer: 1)
        func wallNow() -> UInt64 {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
        }
        func firstBegin(buffer: Int) -> UInt64? {
            var begins: [UInt64] = []
            while case .read(let begin) = channel.withNextSubbuffer(buffer: buffer, consume: true, { $0.beginTimeNanoseconds }) {
                begins.append(begin)
            }
            return begins.first
        }
        for round in 0..<2 {
            // Idle long enough that a begin time from open (or reset) could not pass.
            usleep(100_000)
            let beforeWrites = wallNow()
            #expect(channel.write("shared \(round)\n") == .written)
            #expect(writer.write(count: 4) { $0.copyBytes(from: Array("ex\(round)\n".utf8)) } == .written)
            channel.flush()
            let shared = try #require(firstBegin(buffer: 0))
            let exclusive = try #require(firstBegin(buffer: 1))
            #expect(shared >= beforeWrites, "round \(round): the shared buffer's first sub-buffer begins at its first record")
            #expect(exclusive >= beforeWrites, "round \(round): the exclusive buffer's first sub-buffer begins at its first record")
            #expect(shared <= wallNow() && exclusive <= wallNow())
            if round == 0 { try channel.reset() }
        }
    }

    @Test("a packet decodes to the same header the reader sees")
    func packetDecoding() throws {
        let channel = try smallChannel()
        channel.write("hello\n")
        channel.flush()
        let result = channel.withNextSubbuffer(buffer: 0) { sub -> Bool in
            let copy = Array(sub.packet)
            return copy.withUnsafeBytes { raw in
                guard let decoded = RelaySubbuffer(packet: raw) else { return false }
                return decoded.sequence == sub.sequence && Array(decoded.content) == Array("hello\n".utf8)
                    && decoded.buffer == 0 && decoded.records == 1
            }
        }
        guard case .read(let ok) = result else {
            Issue.record("nothing delivered")
            return
        }
        #expect(ok)
        // A corrupted magic is rejected.
        var garbage = [UInt8](repeating: 0, count: 4096)
        garbage[0] = 1
        #expect(garbage.withUnsafeBytes { RelaySubbuffer(packet: $0) } == nil)
    }

    @Test("a packet whose header no engine writes is rejected: odd header size, more records than bytes")
    func packetDecodingRejectsImpossibleHeaders() throws {
        let channel = try smallChannel(clientHeaderSize: 8)
        channel.write("hello\n")
        channel.flush()
        guard case .read(let packet) = channel.withNextSubbuffer(buffer: 0, { Array($0.packet) }) else {
            Issue.record("nothing delivered")
            return
        }
        #expect(packet.withUnsafeBytes { RelaySubbuffer(packet: $0) } != nil, "the packet as delivered decodes")
        func corrupted(_ offset: Int, _ value: some FixedWidthInteger) -> [UInt8] {
            var copy = packet
            withUnsafeBytes(of: value.littleEndian) { copy.replaceSubrange(offset..<(offset + $0.count), with: $0) }
            return copy
        }
        // Header size 76 instead of 72, content size 4 bytes less: sizes still add up.
        var oddHeader = corrupted(6, UInt16(76))
        oddHeader = {
            var copy = oddHeader
            let content = copy.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 40, as: UInt32.self) }
            withUnsafeBytes(of: (content - 4).littleEndian) { copy.replaceSubrange(40..<44, with: $0) }
            return copy
        }()
        #expect(oddHeader.withUnsafeBytes { RelaySubbuffer(packet: $0) } == nil, "header size not a multiple of 8")
        let content = packet.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 40, as: UInt32.self) }
        #expect(corrupted(56, content + 1).withUnsafeBytes { RelaySubbuffer(packet: $0) } == nil, "more records than bytes")
    }

    @Test("a packets file whose header claims a sub-buffer over 1 GiB is not a relay packet")
    func packetFileOversizedSize() throws {
        let channel = try smallChannel()
        channel.write("hello\n")
        channel.flush()
        guard case .read(var packet) = channel.withNextSubbuffer(buffer: 0, { Array($0.packet) }) else {
            Issue.record("nothing delivered")
            return
        }
        // The header's sub-buffer size (a UInt32 at byte 60) corrupted to 2 GiB, still a power of two.
        withUnsafeBytes(of: UInt32(1 << 31).littleEndian) { packet.replaceSubrange(60..<64, with: $0) }
        let path = "/tmp/relay-oversized-\(UInt32.random(in: 0...UInt32.max)).packets"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { unlink(path) }
        let written = packet.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        try #require(written == packet.count)
        var packets = 0
        let problem = #expect(throws: RelayPacketReader.Problem.self) {
            try RelayPacketReader(path: path).forEach { _ in packets += 1 }
        }
        #expect(packets == 0)
        #expect(problem?.offset == 0)
        #expect(problem?.message.contains("not a relay packet") == true, "got: \(String(describing: problem))")
    }

    @Test("too-big records are rejected and counted, never truncated")
    func tooBig() throws {
        let channel = try smallChannel()
        let big = [UInt8](repeating: 1, count: channel.maxRecordSize + 1)
        #expect(channel.write(big) == .tooBig)
        let exact = [UInt8](repeating: 2, count: channel.maxRecordSize)
        #expect(channel.write(exact) == .written)
        let stats = channel.stats().total
        #expect(stats.recordsTooBig == 1)
        #expect(stats.recordsLost == 1)
        let subs = channel.drainSubbuffers()
        #expect(subs.count == 1, "an exact fill seals the sub-buffer by itself")
        #expect(subs.first?.content == exact)
    }

    @Test("deliver fires once per sub-buffer, from the completing commit")
    func deliverCallback() throws {
        let delivered = EventLog<SubbufferDelivery>()
        let channel = try smallChannel(
            subbufferSize: 4096, subbufferCount: 8,
            callbacks: RelayCallbacks(deliver: { delivered.append($0) }))
        let record = [UInt8](repeating: 0x62, count: 1000)
        for _ in 0..<9 { channel.write(record) }
        #expect(delivered.all.map(\.sequence) == [0, 1], "two sub-buffers sealed by switches")
        #expect(delivered.all.map(\.records) == [4, 4])
        #expect(delivered.all.allSatisfy { $0.contentSize == 4000 && $0.padding == 32 })
        channel.flush()
        #expect(delivered.all.map(\.sequence) == [0, 1, 2])
        #expect(delivered.all.last?.records == 1)
    }

    @Test("the start callback fills the client header of every sub-buffer")
    func startCallbackClientHeader() throws {
        let starts = EventLog<(UInt64, Int?)>()
        let channel = try smallChannel(
            clientHeaderSize: 16,
            callbacks: RelayCallbacks(subbufferStart: { start in
                start.clientHeader.storeBytes(of: 0xABCD_0000 + start.sequence, toByteOffset: 0, as: UInt64.self)
                starts.append((start.sequence, start.previousPadding))
            }))
        let record = [UInt8](repeating: 0x63, count: 2000)
        for _ in 0..<5 { channel.write(record) }
        channel.flush()
        #expect(starts.all.map(\.0) == [0, 1, 2])
        #expect(starts.all.map(\.1) == [nil, 4096 - 80 - 4000, 4096 - 80 - 4000])
        var tags: [UInt64] = []
        while case .read(let tag) = channel.withNextSubbuffer(buffer: 0, consume: true, {
            $0.clientHeader.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
        }) {
            tags.append(tag)
        }
        #expect(tags == [0xABCD_0000, 0xABCD_0001, 0xABCD_0002])
    }

    @Test("consumed never exceeds what was delivered")
    func consumedClamped() throws {
        let channel = try smallChannel()
        channel.write("a\n")
        channel.flush()
        channel.subbufsConsumed(buffer: 0, count: 100)
        let stats = channel.stats(buffer: 0)
        #expect(stats.subbuffersProduced == 1)
        #expect(stats.subbuffersConsumed == 1)
    }

    @Test("stats count records and bytes per buffer and per channel")
    func stats() throws {
        let channel = try smallChannel(buffers: 2)
        for i in 0..<100 { channel.write("r\(i)\n") }
        channel.flush()
        let stats = channel.stats()
        #expect(stats.total.recordsWritten == 100)
        #expect(stats.total.bytesWritten == UInt64((0..<100).map { "r\($0)\n".utf8.count }.reduce(0, +)))
        #expect(stats.buffers.map(\.recordsWritten).reduce(0, +) == 100)
        #expect(stats.total.subbuffersDelivered == stats.total.subbuffersProduced)
    }
}
