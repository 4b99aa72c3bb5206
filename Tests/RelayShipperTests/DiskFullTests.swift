import Glibc
import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Testing

private let isRoot = geteuid() == 0

@Suite(
    "Disk full",
    .enabled(if: ioUringAvailable, "io_uring is unavailable here"),
    .enabled(if: isRoot, "mounting a small tmpfs needs root (CI runs as root)")
)
struct DiskFullTests {
    /// Queue depth 1 makes the sub-buffers that pile up during the failure leave in
    /// `WRITEV` batches, so a short write inside a batch is resumed mid-vector.
    @Test("ENOSPC on a small tmpfs: no crash, nothing lost; after space is freed the rest arrives (single and batched writes)", arguments: [8, 1])
    func enospc(queueDepth: Int) throws {
        let dir = TemporaryDirectory(prefix: "relay-enospc")
        defer {
            shell("umount '\(dir.path)' 2>/dev/null")
            dir.remove()
        }
        try #require(shell("mount -t tmpfs -o size=2m tmpfs '\(dir.path)'") == 0, "mount tmpfs")
        // Leave ~192 KiB free.
        try #require(shell("dd if=/dev/zero of='\(dir.file("filler"))' bs=64k count=29 status=none") == 0)
        let channel = try RelayChannel(RelayChannelConfiguration(name: "enospc", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(fileQueueDepth: queueDepth), logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("out.log"), preallocate: 0))])
        try shipper.start()
        let perProducer = 10_000  // 640 KB of lines: does not fit until the filler goes
        let writer = TestThreads.spawn {
            writeLines(channel, producers: 1, perProducer: perProducer, width: 64)
        }
        // Wait until the sink reports the failure (and the writer is blocked).
        let deadline = monotonicSeconds() + 20
        while (shipper.stats()?.sinks[0].errors ?? 0) == 0 && monotonicSeconds() < deadline { usleep(10_000) }
        let during = try #require(shipper.stats())
        #expect(during.sinks[0].errors > 0, "ENOSPC was reported")
        #expect(during.sinks[0].failing)
        #expect(channel.stats().total.recordsDropped == 0, "block mode: writers wait instead of losing")
        // Free space: the retry (with backoff) succeeds and the rest arrives.
        #expect(shell("rm -f '\(dir.file("filler"))'") == 0)
        TestThreads.join(writer)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)))
        let bytes = try #require(readFileBytes(dir.file("out.log")))
        let parsed = parseLines(bytes)
        #expect(parsed.malformed == 0, "no holes: failed writes were retried at their offsets")
        expectExactlyOnce(parsed.records, producers: 1, perProducer: perProducer)
        #expect(shipper.stats()?.sinks[0].failing == false)
        if queueDepth == 1 {
            #expect((shipper.stats()?.sinks[0].batches ?? 0) > 0, "the backlog left in batches")
        }
    }

    /// Every write of a round failing (here 8 in flight on a full disk) is one failure, not 8:
    /// each failed completion used to take the next backoff step, so the first retry came
    /// after 50 ms × 2^7 (the 5 s cap) instead of 50 ms, and every later round after 5 s.
    @Test("ENOSPC with several writes in flight: one backoff step per retry round, so a freed disk is written within a fraction of the 5 s cap")
    func enospcBackoffPerRound() throws {
        let dir = TemporaryDirectory(prefix: "relay-enospc-backoff")
        defer {
            shell("umount '\(dir.path)' 2>/dev/null")
            dir.remove()
        }
        try #require(shell("mount -t tmpfs -o size=1m tmpfs '\(dir.path)'") == 0, "mount tmpfs")
        let channel = try RelayChannel(RelayChannelConfiguration(name: "enospc-backoff", subbufferSize: 16384, subbufferCount: 32, mode: .block(), buffers: 1))
        // 16 sub-buffers delivered before the shipper starts: its first pump issues 8 writes at
        // once (`fixedBufferWrites: .always` writes one sub-buffer per write, no WRITEV batch).
        let line = Array("\(String(repeating: "b", count: 99))\n".utf8)
        var expected: [UInt8] = []
        for _ in 0..<(16 * 163) {
            #expect(channel.write(line) == .written)
            expected += line
        }
        channel.flush()
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(fileQueueDepth: 8), logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("out.log"), preallocate: 0, fixedBufferWrites: .always))])
        // The disk is full before the first write (dd stops at ENOSPC).
        shell("dd if=/dev/zero of='\(dir.file("filler"))' bs=4k status=none 2>/dev/null")
        try shipper.start()
        let failing = waitForStats(shipper) { $0.sinks[0].failing && $0.sinks[0].errors >= 8 }
        try #require(failing?.sinks[0].failing == true, "ENOSPC was reported")
        #expect(shell("rm -f '\(dir.file("filler"))'") == 0)
        let freed = monotonicSeconds()
        let done = waitForStats(shipper) { !$0.sinks[0].failing && $0.sinks[0].subbuffers >= 16 }
        let recovery = monotonicSeconds() - freed
        #expect(done?.sinks[0].subbuffers ?? 0 >= 16)
        #expect(recovery < 2.5, "written \(recovery) s after the disk was freed: the backoff took a step per failed write")
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)))
        #expect(readFileBytes(dir.file("out.log")) == expected)
    }

    /// Out of inodes: the rename to `path.1` works, opening the fresh `path` fails. The
    /// rotation must be retried with backoff (opening only, not shifting the files again,
    /// which would delete the rotated data once `path.keep` is reached) and writing must
    /// resume when it succeeds.
    @Test("a rotation whose open fails (no inodes) is retried; no rotated file is deleted, nothing lost")
    func rotationOpenFails() throws {
        let dir = TemporaryDirectory(prefix: "relay-noinodes")
        defer {
            shell("umount '\(dir.path)' 2>/dev/null")
            dir.remove()
        }
        try #require(shell("mount -t tmpfs -o size=4m,nr_inodes=64 tmpfs '\(dir.path)'") == 0, "mount tmpfs")
        let channel = try RelayChannel(
            RelayChannelConfiguration(name: "noinodes", subbufferSize: 4096, subbufferCount: 8, mode: .block(timeout: .seconds(10)), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        let rotation = RelayFileSinkConfiguration.Rotation(maxBytes: 16 * 1024, keep: 20)
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("out.log"), rotation: rotation, preallocate: 0))])
        try shipper.start()
        // Use up every inode left (out.log exists already).
        var fillers = 0
        while shell("touch '\(dir.file("filler\(fillers)"))' 2>/dev/null") == 0 { fillers += 1 }
        try #require(fillers > 0)
        let perProducer = 2_000  // 128 KB of lines: 8 files of 16 KiB
        let writer = TestThreads.spawn {
            writeLines(channel, producers: 1, perProducer: perProducer, width: 64)
        }
        let deadline = monotonicSeconds() + 10
        while shipper.stats()?.sinks[0].failing != true && monotonicSeconds() < deadline { usleep(5_000) }
        #expect(shipper.stats()?.sinks[0].failing == true, "the failed rotation is reported")
        usleep(200_000)
        #expect(shell("rm -f '\(dir.path)'/filler*") == 0)
        TestThreads.join(writer)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)))
        #expect(channel.stats().total.recordsDropped == 0)
        let files = readRotatedFiles(dir.file("out.log"))
        let all = files.reversed().flatMap { $0 } + (readFileBytes(dir.file("out.log")) ?? [])
        let parsed = parseLines(all)
        #expect(parsed.malformed == 0)
        expectExactlyOnce(parsed.records, producers: 1, perProducer: perProducer)
        #expect(shipper.stats()?.sinks[0].failing == false)
    }

    @Test("ENOSPC with an interval fsync policy: the failing sink waits for its retry, no busy loop")
    func enospcIntervalFsyncSleeps() throws {
        let dir = TemporaryDirectory(prefix: "relay-enospc-fsync")
        defer {
            shell("umount '\(dir.path)' 2>/dev/null")
            dir.remove()
        }
        try #require(shell("mount -t tmpfs -o size=2m tmpfs '\(dir.path)'") == 0, "mount tmpfs")
        try #require(shell("dd if=/dev/zero of='\(dir.file("filler"))' bs=64k count=29 status=none") == 0)
        let channel = try RelayChannel(RelayChannelConfiguration(name: "enospc-fsync", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("out.log"), fsync: .interval(.milliseconds(10)), preallocate: 0))])
        try shipper.start()
        let perProducer = 10_000
        let writer = TestThreads.spawn {
            writeLines(channel, producers: 1, perProducer: perProducer, width: 64)
        }
        let deadline = monotonicSeconds() + 20
        while shipper.stats()?.sinks[0].failing != true && monotonicSeconds() < deadline { usleep(10_000) }
        // While it fails, the loop only wakes for its retries (backoff from 50 ms).
        usleep(100_000)
        let before = try #require(shipper.stats())
        usleep(500_000)
        let after = try #require(shipper.stats())
        #expect(after.sinks[0].failing)
        let iterations = after.loopIterations - before.loopIterations
        #expect(iterations < 200, "\(iterations) loop iterations in 0.5 s while failing")
        #expect(shell("rm -f '\(dir.file("filler"))'") == 0)
        TestThreads.join(writer)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)))
        let parsed = parseLines(try #require(readFileBytes(dir.file("out.log"))))
        #expect(parsed.malformed == 0)
        expectExactlyOnce(parsed.records, producers: 1, perProducer: perProducer)
    }

    /// A stop whose deadline passes during ENOSPC leaves the failed writes unfinished (a
    /// short write may have put part of a sub-buffer in the file). The next shipper of the
    /// channel ships those sub-buffers again, whole, at the file's end: the file must end
    /// where the first unfinished write starts, or it holds a torn record and duplicates.
    @Test("ENOSPC until the stop deadline, then a new shipper of the channel: no torn record, nothing twice", arguments: [8, 1])
    func enospcThenRestart(queueDepth: Int) throws {
        let dir = TemporaryDirectory(prefix: "relay-enospc-restart")
        defer {
            shell("umount '\(dir.path)' 2>/dev/null")
            dir.remove()
        }
        try #require(shell("mount -t tmpfs -o size=1m tmpfs '\(dir.path)'") == 0, "mount tmpfs")
        // Leave 40 KiB: the third 16 KiB sub-buffer is written in part (a page-aligned short write).
        try #require(shell("dd if=/dev/zero of='\(dir.file("filler"))' bs=4k count=246 status=none") == 0)
        let channel = try RelayChannel(
            RelayChannelConfiguration(name: "enospc-restart", subbufferSize: 16384, subbufferCount: 8, mode: .block(timeout: .milliseconds(50)), buffers: 1))
        let configuration = RelayShipperConfiguration(fileQueueDepth: queueDepth)
        let sink = RelaySink.file(RelayFileSinkConfiguration(path: dir.file("out.log"), preallocate: 0))
        let first = RelayShipper(configuration: configuration, logger: testLogger())
        try first.add(channel, sinks: [sink])
        try first.start()
        // 100-byte lines: a page boundary falls inside a line.
        let lines = 1000
        var refused = 0
        writeSequentialLines(channel, count: lines, refused: &refused) { i in
            let head = "p0 \(i) "
            return head + String(repeating: "e", count: 99 - head.utf8.count) + "\n"
        }
        try #require(refused == 0)
        channel.flush()
        let failing = waitForStats(first) { $0.sinks[0].failing }
        try #require(failing?.sinks[0].failing == true)
        #expect(!first.stop(timeout: .milliseconds(200)))
        #expect(shell("rm -f '\(dir.file("filler"))'") == 0)
        let second = RelayShipper(configuration: configuration, logger: testLogger())
        try second.add(channel, sinks: [sink])
        try second.start()
        channel.close()
        #expect(second.stop(timeout: .seconds(10)))
        let bytes = try #require(readFileBytes(dir.file("out.log")))
        let torn = bytes.split(separator: 0x0A).filter { $0.count != 99 }.count
        #expect(torn == 0, "no torn record where the first shipper's write stopped")
        let parsed = parseLines(bytes)
        #expect(parsed.malformed == 0)
        expectExactlyOnce(parsed.records, producers: 1, perProducer: lines)
    }
}
