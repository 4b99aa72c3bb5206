import Glibc
import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Testing

private let isRoot = geteuid() == 0
private let hasLoopDevices = shell("{ test -e /dev/loop-control && command -v losetup && command -v mkfs.ext4; } >/dev/null 2>&1") == 0

/// An ext4 filesystem (no journal) on a loop device whose backing file lives, sparse, on a
/// small tmpfs. Filling that tmpfs makes the loop device's writes fail, so writeback of the
/// filesystem's dirty pages fails and fsync/fdatasync report it (ENOSPC or EIO), while
/// buffered writes still succeed: they only fill the page cache. Freeing the tmpfs makes the
/// device work again. A real kernel failure, the one "fsyncgate" is about: the pages whose
/// writeback failed are marked clean, so a later fsync succeeds without writing them.
struct FailingDisk: ~Copyable {
    let directory: TemporaryDirectory
    let device: String
    var mountPoint: String { self.directory.file("mnt") }
    private var filler: String { self.directory.file("back/filler") }

    init() throws {
        let directory = TemporaryDirectory(prefix: "relay-fsync-fail")
        let back = directory.file("back")
        let mnt = directory.file("mnt")
        let image = "\(back)/image"
        let deviceFile = directory.file("device")
        var ok = shell("mkdir '\(back)' '\(mnt)'") == 0
        ok = ok && shell("mount -t tmpfs -o size=16m tmpfs '\(back)'") == 0
        // Few inodes and eagerly zeroed inode tables: nothing the kernel writes later in the
        // background needs space on the tmpfs but the file data.
        ok = ok && shell("truncate -s 256M '\(image)' && mkfs.ext4 -q -F -O ^has_journal,^resize_inode -N 128 -m 0 -E lazy_itable_init=0,nodiscard '\(image)'") == 0
        ok = ok && shell("losetup -f --show '\(image)' > '\(deviceFile)'") == 0
        let device = String(decoding: readFileBytes(deviceFile) ?? [], as: UTF8.self).filter { !$0.isWhitespace }
        ok = ok && !device.isEmpty && shell("mount -o errors=continue '\(device)' '\(mnt)'") == 0
        if !ok {
            Self.tearDown(directory: directory, device: device)
            throw SetupFailed()
        }
        self.directory = directory
        self.device = device
    }

    struct SetupFailed: Error, CustomStringConvertible {
        var description: String { "could not set up an ext4 filesystem on a loop device over a tmpfs (needs root, losetup, mkfs.ext4)" }
    }

    /// Fills the tmpfs under the loop device: writeback to the filesystem fails from now on.
    func breakDevice() {
        shell("dd if=/dev/zero of='\(self.filler)' bs=64k status=none 2>/dev/null")
    }

    /// Frees the tmpfs: writeback works again.
    func repairDevice() {
        shell("rm -f '\(self.filler)'")
    }

    deinit {
        Self.tearDown(directory: self.directory, device: self.device)
    }

    private static func tearDown(directory: TemporaryDirectory, device: String) {
        shell("umount '\(directory.file("mnt"))' 2>/dev/null")
        if !device.isEmpty { shell("losetup -d '\(device)' 2>/dev/null") }
        // The loop device lets go of its image asynchronously after the detach: until then the
        // tmpfs is busy. Never remove the directory while something is still mounted in it.
        let back = directory.file("back")
        shell("for i in $(seq 50); do mountpoint -q '\(back)' || break; umount '\(back)' 2>/dev/null && break; sleep 0.1; done")
        if shell("mountpoint -q '\(directory.file("mnt"))' || mountpoint -q '\(back)'") != 0 { directory.remove() }
    }
}

@Suite(
    "File sink: failed fsync",
    .enabled(if: ioUringAvailable, "io_uring is unavailable here"),
    .enabled(if: isRoot, "loop devices and mounts need root (CI runs as root)"),
    .enabled(if: hasLoopDevices, "no loop devices here (/dev/loop-control), or no losetup or mkfs.ext4 (util-linux, e2fsprogs)")
)
struct FileSinkFsyncFailureTests {
    /// On Linux a failed fsync may have dropped the dirty pages it could not write (they are
    /// marked clean), and the error is reported once: a later fsync succeeds without writing
    /// them. It proves nothing about the data the failed one covered, and the sink used to claim
    /// exactly that data durable at the next successful fsync.
    @Test("after a failed fsync, a later successful one does not claim the data the failed one covered as durable")
    func failedFsyncIsNotClaimedLater() throws {
        let disk = try FailingDisk()
        let path = "\(disk.mountPoint)/out.log"
        let channel = try RelayChannel(RelayChannelConfiguration(name: "fsync-fail", subbufferSize: 65536, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: path, fsync: .everyBytes(1), preallocate: 0))])
        try shipper.start()
        let line = Array("\(String(repeating: "f", count: 1023))\n".utf8)
        var written = 0
        /// One sub-buffer (63 lines), flushed, and waited for until its write and fsync ended.
        func shipOne() -> RelaySinkStats? {
            for _ in 0..<63 {
                #expect(channel.write(line) == .written)
            }
            channel.flush()
            written += 1
            let n = UInt64(written)
            // Every fsync ends as one of `fsyncs` or `errors` (no write fails: the page cache takes them).
            return waitForStats(shipper) { $0.sinks[0].subbuffers == n && $0.sinks[0].fsyncs + $0.sinks[0].errors >= n }?.sinks[0]
        }
        // Healthy: the first sub-buffer is durable.
        let healthy = try #require(shipOne())
        try #require(healthy.errors == 0 && healthy.durableSubbuffers == 1)
        // Broken device: writes land in the page cache, an fsync fails (the first one after
        // the break may still find room; the next ones do not).
        disk.breakDevice()
        var failed: RelaySinkStats? = nil
        while written < 6 {
            let stats = try #require(shipOne())
            if stats.errors > 0 {
                failed = stats
                break
            }
        }
        let atFailure = try #require(failed, "an fsync failed on the broken device")
        let lost = UInt64(written) - atFailure.durableSubbuffers  // covered by the failed fsync
        #expect(lost >= 1)
        #expect(atFailure.durabilityUnknownSubbuffers == lost, "what the failed fsync covered is counted as of unknown durability")
        // Repaired: the next sub-buffers' fsyncs succeed, and claim only themselves.
        disk.repairDevice()
        for _ in 0..<2 { _ = try #require(shipOne()) }
        let after = try #require(shipper.stats()).sinks[0]
        #expect(after.errors == atFailure.errors, "the device works again")
        #expect(after.durableSubbuffers == atFailure.durableSubbuffers + 2,
                "durable \(after.durableSubbuffers): the \(lost) sub-buffer(s) the failed fsync covered are not claimed by the later ones")
        channel.close()
        #expect(shipper.stop(timeout: .seconds(10)))
        let final = try #require(shipper.stats()).sinks[0]
        #expect(final.subbuffers == UInt64(written))
        #expect(final.durableSubbuffers == UInt64(written) - lost, "nor by the stop's final fsync")
        #expect(final.durabilityUnknownSubbuffers == lost, "counted once")
    }

    /// A rotated-away file gets a final fsync through the ring before it is closed. It claims
    /// the sub-buffers written to that file (a later failure elsewhere does not take them
    /// back); when it fails, the file's sub-buffers are of unknown durability and the stop's
    /// successful final fsync does not claim them.
    @Test("rotated files' final fsyncs: a success claims that file's sub-buffers for good, a failure is never made up for")
    func failedFsyncOfRotatedFile() throws {
        let disk = try FailingDisk()
        let path = "\(disk.mountPoint)/rot.log"
        let channel = try RelayChannel(RelayChannelConfiguration(name: "fsync-fail-rot", subbufferSize: 65536, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        // Two sub-buffers per file; no fsync of the current file while running (a threshold
        // never reached): only the rotated files' final ones, and the stop's.
        let rotation = RelayFileSinkConfiguration.Rotation(maxBytes: 2 * 65536, keep: 100)
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: path, fsync: .everyBytes(1 << 40), rotation: rotation, preallocate: 0))])
        try shipper.start()
        let line = Array("\(String(repeating: "g", count: 1023))\n".utf8)
        var written = 0
        /// One sub-buffer; waits until it is written and every rotated file's final fsync ended.
        func shipOne() -> RelaySinkStats? {
            for _ in 0..<63 { #expect(channel.write(line) == .written) }
            channel.flush()
            written += 1
            let n = UInt64(written)
            return waitForStats(shipper) { $0.sinks[0].subbuffers == n && $0.sinks[0].fsyncs + $0.sinks[0].errors >= $0.sinks[0].rotations }?.sinks[0]
        }
        // Healthy: the third sub-buffer rotates the first file away; its fsync claims its two.
        for _ in 0..<3 { _ = try #require(shipOne()) }
        let healthy = try #require(waitForStats(shipper) { $0.sinks[0].durableSubbuffers == 2 }?.sinks[0])
        try #require(healthy.errors == 0 && healthy.rotations == 1)
        #expect(healthy.durableSubbuffers == 2, "the rotated file's fsync claimed its sub-buffers")
        // Broken device: a later rotated file's fsync fails.
        disk.breakDevice()
        var failed: RelaySinkStats? = nil
        while written < 12 {
            let stats = try #require(shipOne())
            if stats.errors > 0 {
                failed = stats
                break
            }
        }
        let atFailure = try #require(failed, "a rotated file's fsync failed on the broken device")
        #expect(atFailure.durableSubbuffers >= 2, "what the first file's fsync claimed stays claimed")
        #expect(atFailure.durabilityUnknownSubbuffers >= 2, "the failed file's sub-buffers are of unknown durability")
        disk.repairDevice()
        for _ in 0..<2 { _ = try #require(shipOne()) }
        channel.close()
        #expect(shipper.stop(timeout: .seconds(10)))
        let final = try #require(shipper.stats()).sinks[0]
        #expect(final.subbuffers == UInt64(written))
        #expect(final.durabilityUnknownSubbuffers == atFailure.durabilityUnknownSubbuffers, "no later fsync claims them, nothing more lost")
        #expect(final.durableSubbuffers + final.durabilityUnknownSubbuffers == final.subbuffers, "the stop's fsync claimed the rest")
    }
}
