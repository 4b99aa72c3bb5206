import Glibc
import Relay
import RelayShipper
import RelayTestSupport
import Testing

/// Shell commands that make an ext4 image of `size` at `image` and mount it (loop device) at
/// `mountPoint`, which they create.
private func mountExt4Command(image: String, size: String, at mountPoint: String) -> String {
    "truncate -s \(size) '\(image)' && mkfs.ext4 -q -F '\(image)' && mkdir '\(mountPoint)' && mount -o loop '\(image)' '\(mountPoint)'"
}

/// Thaws every one of `mountPoints`, then unmounts them in order (a filesystem mounted inside
/// another first), retrying each unmount for up to 5 s: a ring's exit may still hold a file
/// there for a moment after its last operation completed.
private func thawAndUnmount(_ mountPoints: [String]) {
    for mountPoint in mountPoints { shell("fsfreeze -u '\(mountPoint)' >/dev/null 2>&1") }
    for mountPoint in mountPoints {
        for _ in 0..<50 where shell("umount '\(mountPoint)' >/dev/null 2>&1") != 0 { usleep(100_000) }
    }
}

/// Whether this process can mount an ext4 image through a loop device and freeze it: root,
/// a loop device, mkfs.ext4 and fsfreeze (CI has them all). Probed by doing it once.
private let frozenFilesystemUnavailableReason: String? = {
    guard geteuid() == 0 else { return "mounting and freezing a filesystem needs root (CI runs as root)" }
    let dir = TemporaryDirectory(prefix: "relay-freeze-probe")
    defer { dir.remove() }
    let mountPoint = dir.file("mnt")
    let probe = mountExt4Command(image: dir.file("fs.img"), size: "8M", at: mountPoint)
        + " && fsfreeze -f '\(mountPoint)' && fsfreeze -u '\(mountPoint)'"
    let status = shell("(\(probe)) >/dev/null 2>&1")
    thawAndUnmount([mountPoint])
    return status == 0 ? nil : "cannot mount and freeze an ext4 image here (needs a loop device, mkfs.ext4 and fsfreeze)"
}()

@Suite(
    "A filesystem that stops completing writes",
    .enabled(if: ioUringAvailable, "io_uring is unavailable here"),
    .enabled(if: frozenFilesystemUnavailableReason == nil, "\(frozenFilesystemUnavailableReason ?? "")")
)
struct FrozenFilesystemTests {
    /// `fsfreeze` blocks every write to the filesystem inside the kernel (the io-wq worker
    /// waits for the thaw), like an NFS server that went away or a failing disk, but it can be
    /// undone. A buffered write reads its source memory only when it runs: if the channel's
    /// region were unmapped once its owners let go, the write would fail (`EFAULT`) or copy
    /// whatever was mapped there next.
    @Test("a write stuck in the kernel at stop (frozen filesystem): the stop returns at its deadline, the channel's memory outlives its owners, and the write lands intact after the thaw")
    func writeStuckAtStop() throws {
        let dir = TemporaryDirectory(prefix: "relay-frozen")
        let mountPoint = dir.file("mnt")
        defer {
            thawAndUnmount([mountPoint])
            dir.remove()
        }
        try #require(shell(mountExt4Command(image: dir.file("fs.img"), size: "32M", at: mountPoint)) == 0)
        let path = "\(mountPoint)/out.log"
        var expected: [UInt8] = []
        do {
            // One sub-buffer of records, so exactly one write is in flight when the stop gives
            // up (the ring's exit cancels writes still queued behind it, never the one running).
            let channel = try RelayChannel(RelayChannelConfiguration(name: "frozen", subbufferSize: 65536, subbufferCount: 8, mode: .block(), buffers: 1))
            let shipper = RelayShipper(logger: testLogger())
            try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: path, fsync: .everyBytes(1 << 30), preallocate: 0))])
            try shipper.start()
            try #require(shell("fsfreeze -f '\(mountPoint)'") == 0)
            var refused = 0
            expected = writeSequentialLines(channel, count: 600, refused: &refused) { i in
                "frozen line \(i) \(String(repeating: "f", count: 80 - String(i).count))\n"
            }
            #expect(refused == 0)
            try #require(expected.count < 65536 - 4096, "the records fit in one sub-buffer")
            channel.close()
            let kept = KernelHeldMemory.count
            let started = monotonicSeconds()
            let drained = shipper.stop(timeout: .seconds(1))
            let took = monotonicSeconds() - started
            #expect(!drained, "the write could not complete on the frozen filesystem")
            #expect(took < 15, "the stop returned \(took) s after it was asked, not when the filesystem thawed")
            #expect(shipper.stats()?.sinks[0].subbuffers == 0, "nothing was written yet")
            #expect(KernelHeldMemory.count > kept, "the shipper kept the channel for the kernel's write")
        }
        // The shipper and the channel are gone as far as this test is concerned.
        try #require(shell("fsfreeze -u '\(mountPoint)'") == 0)
        let deadline = monotonicSeconds() + 20
        var written = readFileBytes(path) ?? []
        while written.count < expected.count && monotonicSeconds() < deadline {
            usleep(20_000)
            written = readFileBytes(path) ?? []
        }
        #expect(written.count == expected.count, "the stuck write landed after the thaw: \(written.count) of \(expected.count) bytes")
        let intact = written == expected  // not in the expectation: it would print 54 KB
        #expect(intact, "it copied the channel's records, from memory that was still mapped")
    }

    /// An fsync that does not complete: the file sink's filesystem (inner) lives in an image
    /// file on another loop-mounted filesystem (outer), and the test freezes the outer one. The
    /// inner filesystem still takes buffered writes (into the page cache), but its writeback,
    /// and so every fsync, waits for the thaw, as on a disk that stopped answering.
    @Test("an fsync stuck in the kernel at stop (its disk stopped answering): no final fsync blocks the stop, and what it would have covered is of unknown durability")
    func fsyncStuckAtStop() throws {
        let dir = TemporaryDirectory(prefix: "relay-stuck-fsync")
        let outer = dir.file("outer")
        let inner = dir.file("inner")
        defer {
            shell("pkill -f \"sleep 30; fsfreeze -u '\(outer)'\" >/dev/null 2>&1")  // the watchdog below
            thawAndUnmount([inner, outer])
            dir.remove()
        }
        try #require(shell(mountExt4Command(image: dir.file("outer.img"), size: "96M", at: outer)) == 0)
        try #require(shell(mountExt4Command(image: "\(outer)/inner.img", size: "48M", at: inner)) == 0)
        let channel = try RelayChannel(RelayChannelConfiguration(name: "stuckfsync", subbufferSize: 65536, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: "\(inner)/out.log", fsync: .interval(.milliseconds(20)), preallocate: 0))])
        try shipper.start()
        var refused = 0
        _ = writeSequentialLines(channel, count: 500, refused: &refused) { "before the freeze \($0)\n" }
        channel.flush()
        let synced = waitForStats(shipper) { $0.sinks[0].subbuffers >= 1 && $0.sinks[0].durableSubbuffers >= 1 }
        try #require(synced != nil, "the first sub-buffer was written and fsynced")

        try #require(shell("fsfreeze -f '\(outer)'") == 0)
        // Whatever happens below, thaw after 30 s, so a stop that waits for the thaw ends (late).
        shell("(sleep 30; fsfreeze -u '\(outer)') >/dev/null 2>&1 &")
        _ = writeSequentialLines(channel, count: 500, refused: &refused) { "after the freeze \($0)\n" }
        #expect(refused == 0)
        channel.flush()
        // The second sub-buffer reaches the page cache; the fsync that follows it cannot finish.
        let stuck = waitForStats(shipper) { $0.sinks[0].subbuffers >= 2 && $0.sinks[0].inFlight >= 1 }
        try #require(stuck != nil, "the second sub-buffer was written and an fsync is in flight")
        usleep(100_000)
        let started = monotonicSeconds()
        _ = shipper.stop(timeout: .seconds(1))
        let took = monotonicSeconds() - started
        #expect(took < 15, "the stop returned \(took) s after it was asked: no final fsync(2) waited for the disk")
        let sink = try #require(shipper.stats()?.sinks[0])
        #expect(sink.durabilityUnknownSubbuffers >= 1, "the sub-buffer written after the last completed fsync is of unknown durability")
        #expect(sink.durableSubbuffers + sink.durabilityUnknownSubbuffers == sink.subbuffers)
        shell("fsfreeze -u '\(outer)' >/dev/null 2>&1")
    }
}
