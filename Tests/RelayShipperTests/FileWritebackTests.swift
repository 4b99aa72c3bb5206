import Glibc
import Relay
import RelayShipper
import RelayTestSupport
import Testing

/// Page-cache pages of a file that are dirty or under writeback, read from the kernel's own
/// page flags: the file is mapped read-only (MAP_POPULATE maps the pages it has cached),
/// /proc/self/pagemap gives each page's frame number, /proc/kpageflags that frame's flags
/// (KPF_DIRTY is bit 4, KPF_WRITEBACK bit 8). Only root sees frame numbers.
private enum PageFlags {
    static let dirtyBit: UInt64 = 1 << 4
    static let writebackBit: UInt64 = 1 << 8

    /// Whether this process can read page frames and their flags.
    static var readable: Bool {
        geteuid() == 0 && access("/proc/kpageflags", R_OK) == 0 && access("/proc/self/pagemap", R_OK) == 0
    }

    /// Of the pages in `[0, length)` of `path`: how many are in the page cache, and how many
    /// of those are dirty or under writeback (not yet on the disk).
    static func unwritten(_ path: String, length: Int) throws -> (cached: Int, unwritten: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0, "open \(path)")
        defer { close(fd) }
        let mapped = try #require(mmap(nil, length, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0))
        try #require(mapped != MAP_FAILED, "mmap \(path)")
        defer { munmap(mapped, length) }
        let pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        let flags = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC)
        defer {
            close(pagemap)
            close(flags)
        }
        try #require(pagemap >= 0 && flags >= 0)
        let first = Int(bitPattern: mapped) / page
        var cached = 0
        var unwritten = 0
        for index in 0..<(length / page) {
            var entry: UInt64 = 0
            try #require(pread(pagemap, &entry, 8, off_t((first + index) * 8)) == 8)
            guard entry & (1 << 63) != 0 else { continue }  // not present: not cached
            let frame = entry & ((1 << 55) - 1)
            try #require(frame != 0, "pagemap hides frame numbers (needs CAP_SYS_ADMIN)")
            var pageFlags: UInt64 = 0
            try #require(pread(flags, &pageFlags, 8, off_t(frame * 8)) == 8)
            cached += 1
            if pageFlags & (Self.dirtyBit | Self.writebackBit) != 0 { unwritten += 1 }
        }
        return (cached, unwritten)
    }
}

/// A directory on a disk-backed filesystem (tmpfs pages are never written back), found by
/// the ring tests' ``RingTestSupport/diskDirectory()``; nil if this host has none writable.
private let writebackBase: String? = RingTestSupport.diskDirectory()

/// A fresh directory under ``writebackBase`` (or /var/tmp, for the tests that only need files).
private func diskDirectory() -> TemporaryDirectory {
    TemporaryDirectory(prefix: "relay-writeback", base: writebackBase ?? "/var/tmp")
}

@Suite("File sink: writeback", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct FileWritebackTests {
    /// Ships `mebibytes` of 128-byte lines through a one-buffer channel into `path` with
    /// `writeback`, and returns the bytes the file must hold and the sink's stats.
    private func ship(
        to path: String, mebibytes: Int, writeback: RelayFileSinkConfiguration.Writeback,
        rotation: RelayFileSinkConfiguration.Rotation? = nil
    ) throws -> (expected: [UInt8], stats: RelaySinkStats) {
        let channel = try RelayChannel(
            RelayChannelConfiguration(name: "writeback", subbufferSize: 64 << 10, subbufferCount: 16, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: path, writeback: writeback, rotation: rotation))])
        try shipper.start()
        var refused = 0
        let lines = mebibytes << 13  // 8192 lines of 128 bytes per MiB
        let expected = writeSequentialLines(channel, count: lines, refused: &refused) { i in
            let head = "writeback line \(i) "
            return head + String(repeating: "w", count: 127 - head.utf8.count) + "\n"
        }
        #expect(refused == 0)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)))
        let stats = try #require(shipper.stats()?.sinks.first)
        #expect(stats.errors == 0)
        return (expected, stats)
    }

    @Test(
        "with writeback every 1 MiB, the written pages reach the disk soon after, though nothing fsyncs: none stays dirty",
        .enabled(if: PageFlags.readable, "needs root to read page frames and their flags (CI runs as root)"),
        .enabled(if: writebackBase != nil, "no writable disk-backed directory here (tmpfs pages are never written back)"))
    func pagesWrittenBack() throws {
        let dir = diskDirectory()
        defer { dir.remove() }
        let path = dir.file("wb.log")
        let (expected, stats) = try self.ship(to: path, mebibytes: 32, writeback: .everyBytes(1 << 20))
        #expect(readFileBytes(path) == expected)
        // One request per MiB of completed writes (a request may cover more when completions
        // came in a batch); the last part, under 1 MiB, may have none.
        #expect(stats.writebacks >= 8 && stats.writebacks <= 32, "writeback requests: \(stats.writebacks)")
        // Without the requests these pages stay dirty for the kernel's 30 s expiry (no fsync
        // here: the policy is none). With them, the disk has them within moments.
        let covered = expected.count - (2 << 20)
        var seen = (cached: 0, unwritten: -1)
        for _ in 0..<200 {
            seen = try PageFlags.unwritten(path, length: covered)
            if seen.unwritten == 0 { break }
            usleep(50_000)
        }
        #expect(seen.cached > 0, "the file's pages are in the page cache")
        #expect(seen.unwritten == 0, "\(seen.unwritten) of \(seen.cached) cached pages still dirty or under writeback after 10 s")
    }

    @Test("writeback left to the kernel issues no requests; the file is complete")
    func kernelWriteback() throws {
        let dir = diskDirectory()
        defer { dir.remove() }
        let path = dir.file("kernel.log")
        let (expected, stats) = try self.ship(to: path, mebibytes: 4, writeback: .kernel)
        #expect(readFileBytes(path) == expected)
        #expect(stats.writebacks == 0)
    }

    @Test("writeback across rotations: every rotated file is complete and in order, no write or request fails")
    func acrossRotations() throws {
        let dir = diskDirectory()
        defer { dir.remove() }
        let path = dir.file("rot.log")
        // A request names the descriptor it was issued on; a rotation retires that
        // descriptor, which must stay open until the request completes.
        let rotation = RelayFileSinkConfiguration.Rotation(maxBytes: 512 << 10, keep: 100)
        let (expected, stats) = try self.ship(to: path, mebibytes: 8, writeback: .everyBytes(64 << 10), rotation: rotation)
        let files = readRotatedFiles(path)
        #expect(files.count >= 10)
        #expect(files.reversed().flatMap { $0 } + (readFileBytes(path) ?? []) == expected)
        #expect(stats.writebacks >= UInt64(files.count), "requests on the rotated files too: \(stats.writebacks)")
    }

    @Test("a writeback chunk under 64 KiB is refused at start with a message that says what to use")
    func tinyChunkRefused() throws {
        let dir = diskDirectory()
        defer { dir.remove() }
        let error = try fileSinkStartError(RelayFileSinkConfiguration(path: dir.file("t.log"), writeback: .everyBytes(4096)))
        #expect(error?.message.contains("64 KiB") == true)
        #expect(error?.message.contains(".kernel") == true)
    }
}
