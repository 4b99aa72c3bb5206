internal import CRelayLinux
internal import Glibc
import Logging
import SystemPackage

/// Writes sub-buffers to files with io_uring, straight from relay memory.
///
/// - Offsets are assigned at submit time (`offset += length`), so several writes can be
///   in flight per file and still land in order (offset -1 / O_APPEND would reorder).
/// - Sub-buffers queued behind a full queue depth go out together (``SubbufferBatch``):
///   one `WRITEV` at consecutive offsets, exactly as separate writes would place them.
///   Every buffered write to ext4 is punted to an io-wq worker, so the count of writes
///   matters for small sub-buffers. `WRITE_FIXED` writes (O_DIRECT) go one at a time.
/// - Short writes are resubmitted for the rest. ENOSPC/EIO stop new writes and retry
///   the failed one at the same offset with backoff: the data stays in the relay
///   buffers, so no-overwrite channels apply back-pressure or drop (and count).
/// - An fsync is only claimed to cover writes that had completed when it was submitted.
/// - A failed fsync (or fdatasync) is never made up for by a later one ("fsyncgate"): Linux
///   may have dropped the dirty pages it could not write (marking them clean) and reports the
///   error once, so a later fsync succeeds without writing them. The sub-buffers the failed
///   fsync covered, those completed while it ran and those whose writes were in flight when
///   its failure arrived count in ``RelaySinkStats/durabilityUnknownSubbuffers``, are reported
///   once (in the failure's log line) and are never counted in
///   ``RelaySinkStats/durableSubbuffers``; only writes submitted after the failure was seen
///   can be claimed durable again. The sink cannot write them again: a sub-buffer is released
///   to the channel when its write completes, before any fsync.
/// - One writer per file: an exclusive `flock` on every file the sink opens (held until the
///   last descriptor of it closes, and released explicitly at a stop with nothing left in the
///   kernel, so it is gone when `stop()` returns) refuses a second sink on the same file, in
///   this process or another; see ``open(file:now:reopening:)``.
/// - Rotation and reopen retire the old descriptor; it is closed (after an optional
///   fsync) when its last write completes. Rotation never overwrites a rotated file (see
///   ``rotate(file:loop:now:)``).
final class FileSink {
    /// One write in flight: the sub-buffers in `opItems[op]`, `length` bytes at `offset`.
    struct Op {
        var file: Int
        var generation: UInt32
        var length: Int
        var offset: Int64
        var written: Int
        /// The file's ``OutputFile/fsyncFailures`` when the write was submitted: a write
        /// submitted before a failed fsync was seen may have been in its failed writeback
        /// (a retry keeps the first submission's value).
        var epoch: UInt32
    }

    struct Retired {
        var fd: FileDescriptor
        var generation: UInt32
        /// Where this sink's writes to it started (``OutputFile/generationStart``).
        var start: Int64
        var inFlight: Int
        /// Its final fsync is in flight; close at completion.
        var closing = false
        /// Sub-buffers whose writes to it completed: its final fsync claims them.
        var unsynced: UInt64 = 0
        /// The file's ``OutputFile/fsyncFailures`` when its final fsync was submitted.
        var fsyncEpoch: UInt32 = 0
    }

    struct OutputFile {
        var path: String
        var fd: FileDescriptor?
        var generation: UInt32 = 0
        /// Where the current descriptor's writes started: the file's size when it was opened.
        var generationStart: Int64 = 0
        var offset: Int64 = 0
        var allocatedThrough: Int64 = 0
        var inFlight = 0
        /// When the descriptor was opened, or when an empty file got its first write (age rotation).
        var openedAt: UInt64 = 0
        var bytesSinceFsync: Int64 = 0
        var fsyncInFlight = false
        /// Sub-buffers whose writes to the current descriptor completed and that no fsync covers
        /// yet (a retired descriptor keeps its own), and those the fsync in flight covers
        /// (claimed at its success).
        var unsyncedSubbuffers: UInt64 = 0
        var fsyncCovers: UInt64 = 0
        /// Failed fsyncs of this file (of any of its descriptors), and their count when the
        /// fsync in flight was submitted: if one failed since, its success proves nothing
        /// about what it covers (the failed one may have taken the error report for pages
        /// both wrote back).
        var fsyncFailures: UInt32 = 0
        var fsyncEpoch: UInt32 = 0
        /// Interval policy: when this file's next fsync is due (each file has its own, so a
        /// busy file does not take every interval from the others).
        var nextFsyncAt: UInt64? = nil
        /// Writeback policy: the offset up to which writeback was requested on the current
        /// descriptor (it starts where the descriptor's writes start), and whether a request
        /// is in flight on it. When the descriptor is retired, a request in flight counts in
        /// the retired record's `inFlight`, so the descriptor stays open until it completes.
        var writebackFrom: Int64 = 0
        var writebackInFlight = false
        var queue = RingQueue<ShipItem>(capacity: 64)
        var retired: [Retired] = []
        /// A rotation that stopped half-way, retried after the backoff from where it stopped
        /// (shifting the older files again would delete rotated data at `keep`).
        var pendingRotation: PendingRotation? = nil
        var rotationPending: Bool { self.pendingRotation != nil }
    }

    /// Where a failed rotation goes on when it is retried.
    enum PendingRotation: Equatable {
        /// Nothing was moved: start over.
        case start
        /// `path.(n+1)` and the older files were shifted: rename `path.n` → `path.(n+1)` next,
        /// down to `path.1`, then `path` → `path.1` (`shift(0)`: only that one). Starting over
        /// instead would drop `path.keep` again, which is now a file the rotation meant to keep.
        case shift(Int)
        /// `path` was moved away but no fresh one could be opened: open only.
        case open
    }

    let index: Int
    let position: Int
    let configuration: RelayFileSinkConfiguration
    let queueDepth: Int
    var files: [OutputFile]
    var ops: [Op?]
    /// The sub-buffers of each op, in file order (capacity kept between ops: each grows to
    /// the largest batch it carried, so memory follows the batches written, not queue depth
    /// × files × ``SubbufferBatch/maxCount``).
    var opItems: [[ShipItem]]
    /// Per op, `SubbufferBatch.maxCount` iovecs for its `WRITEV`, allocated the first time it
    /// carries a batch; valid until the ring is torn down (the sink lives as long as the
    /// loop that owns the ring).
    var iovecs: [UnsafeMutablePointer<iovec>?]
    var freeOps: [Int]
    var failingSince: UInt64? = nil
    var retryAt: UInt64? = nil
    var backoff = Backoff(first: .milliseconds(50), longest: .seconds(5))
    var lastErrorLog: UInt64 = 0
    var stats: RelaySinkStats

    let subbufferSize: Int
    /// The channel's buffers (all of them share the one file of the per-channel layout).
    let buffers: Int

    /// Whether writes use `WRITE_FIXED` when the regions are registered: always for
    /// O_DIRECT; for buffered files only when asked (see
    /// ``RelayFileSinkConfiguration/FixedBufferWrites``).
    var writesFixed: Bool {
        self.configuration.directIO || self.configuration.fixedBufferWrites == .always
    }

    init(
        index: Int, position: Int, configuration: RelayFileSinkConfiguration, buffers: Int, subbufferSize: Int,
        queueDepth: Int, label: String
    ) throws(RelayShipperError) {
        self.index = index
        self.subbufferSize = subbufferSize
        self.buffers = buffers
        self.position = position
        self.configuration = configuration
        self.queueDepth = max(1, queueDepth)
        self.stats = RelaySinkStats(label: label)
        let count = configuration.layout == .perChannel ? 1 : buffers
        self.files = (0..<count).map { i in
            OutputFile(path: configuration.layout == .perChannel ? configuration.path : "\(configuration.path)\(i)")
        }
        let capacity = self.queueDepth * count
        self.ops = [Op?](repeating: nil, count: capacity)
        self.opItems = [[ShipItem]](repeating: [], count: capacity)
        self.iovecs = [UnsafeMutablePointer<iovec>?](repeating: nil, count: capacity)
        self.freeOps = Array((0..<capacity).reversed())
        if case .everyBytes(let bytes) = configuration.writeback, bytes < RelayFileSinkConfiguration.Writeback.smallestChunk {
            throw RelayShipperError(
                message: "file sink \(configuration.path): writeback every \(bytes) bytes is too often (each request is a "
                    + "system call's worth of work in the kernel); use at least \(RelayFileSinkConfiguration.Writeback.smallestChunk / 1024) KiB, "
                    + "or .kernel to leave writeback to the kernel")
        }
        if configuration.directIO && configuration.format == .plain {
            throw RelayShipperError(
                message: "file sink \(configuration.path): O_DIRECT needs the packets format (plain records are not "
                    + "block aligned); set format to packets or turn direct I/O off")
        }
        for i in self.files.indices {
            do {
                try self.open(file: i, now: Clock.now, reopening: false)  // age rotation counts from here
            } catch {
                self.closeAll(fsync: false)  // the files opened before this one
                throw error
            }
        }
    }

    /// Opens (or reopens) file `i` at its current end.
    func open(file i: Int, now: UInt64, reopening: Bool) throws(RelayShipperError) {
        let path = self.files[i].path
        var fd: FileDescriptor
        switch Files.openForWriting(path, permissions: self.configuration.permissions, direct: self.configuration.directIO) {
        case .success(let opened):
            fd = opened
        case .failure(let errno):
            let hint: String
            switch errno {
            case .noSuchFileOrDirectory: hint = "the directory does not exist; create it"
            case .permissionDenied: hint = "permission denied; fix the directory's permissions or run as its owner"
            case .invalidArgument where self.configuration.directIO: hint = "the filesystem does not support O_DIRECT; turn direct I/O off"
            default: hint = "check the path"
            }
            throw RelayShipperError(message: "cannot open \(path) for writing: \(errno) — \(hint)", errno: errno)
        }
        // One writer per file: two sinks (in this process or another) would each write at
        // offsets of their own and corrupt the file. An exclusive flock, held as long as the
        // sink has the file open, refuses the second one. It belongs to the open file
        // description, so every later open of the path needs its own: a rotation's or a
        // logrotate reopen's fresh file gets a fresh lock, while a reopen that finds one of
        // this sink's own files (not moved) goes on with a duplicate of that descriptor, which
        // shares its lock (a new open of it could not take the lock its old one holds).
        if let own = self.descriptorOfSameFile(as: fd, file: i) {
            Files.close(fd)
            switch Files.duplicate(own) {
            case .success(let duplicate):
                fd = duplicate
            case .failure(let errno):
                throw RelayShipperError(message: "cannot reopen \(path): duplicating its descriptor failed: \(errno) — raise the open files limit (ulimit -n)", errno: errno)
            }
        } else {
            switch Files.lockExclusive(fd) {
            case .success:
                break
            case .failure(.wouldBlock):
                Files.close(fd)
                throw RelayShipperError(
                    message: "file sink \(path): another file sink is writing this file (in this process, or another process such as "
                        + "a second relayd); two writers would interleave and corrupt it — give each sink its own path, or stop the "
                        + "other writer first",
                    errno: .wouldBlock)
            case .failure:
                break  // the filesystem has no flock (some FUSE or NFS setups): nothing to enforce it with
            }
        }
        if self.configuration.directIO {
            // Checked where the alignment is reported. Where it is not, sub-buffers (page
            // aligned, a power of two of at least 4 KiB) at offsets rounded up to 4 KiB meet
            // every logical block size up to 4 KiB; a write that still does not fails (EINVAL),
            // is logged and retried, never dropped.
            if case .success(let align) = Files.directIOAlignment(fd) {
                let size = self.subbufferSize
                if align.offset == 0 || (size > 0 && size % align.offset != 0) || align.memory > 4096 {
                    Files.close(fd)
                    throw RelayShipperError(
                        message: "file sink \(path): O_DIRECT alignment here is memory \(align.memory) / offset "
                            + "\(align.offset) bytes (STATX_DIOALIGN), which sub-buffers of \(size) bytes cannot meet; "
                            + "turn direct I/O off or use a filesystem that supports it")
                }
            }
        }
        // Writes go at explicit offsets from this size: guessing 0 for a file whose size cannot
        // be read would write over its beginning.
        var size: Int64
        switch Files.size(fd) {
        case .success(let s):
            size = s
        case .failure(let errno):
            Files.close(fd)
            throw RelayShipperError(
                message: "cannot read the size of \(path) after opening it (fstat: \(errno)), so there is no safe "
                    + "offset to append at; check the filesystem (a stale NFS handle, a failing device) and the path",
                errno: errno)
        }
        let sameFile = self.files[i].fd.map { Files.isSameFile($0, fd) } ?? false
        if sameFile, self.files[i].inFlight > 0 || self.files[i].retired.contains(where: { $0.inFlight > 0 }) {
            // The same file again (a reopen without a rename, e.g. a reload): continue after
            // every write already issued. The size does not count writes still in flight or
            // parked (on this descriptor or one an earlier reopen retired), and new writes
            // there would land on them. With none, the size is right: a file truncated in
            // place (copytruncate) goes on at its end, not after a hole as long as the cut.
            size = max(size, self.files[i].offset)
        }
        if self.configuration.directIO, size % 4096 != 0 {
            // Keep O_DIRECT writes aligned: continue at the next aligned offset.
            size = (size + 4095) / 4096 * 4096
        }
        if let old = self.files[i].fd {
            // A writeback request in flight names the old descriptor too: it stays open until
            // that completes (``writebackCompleted(sequence:result:loop:now:)``).
            let inFlight = self.files[i].inFlight + (self.files[i].writebackInFlight ? 1 : 0)
            self.files[i].retired.append(
                Retired(
                    fd: old, generation: self.files[i].generation, start: self.files[i].generationStart, inFlight: inFlight,
                    unsynced: self.files[i].unsyncedSubbuffers))
            self.files[i].unsyncedSubbuffers = 0
        }
        self.files[i].writebackInFlight = false
        self.files[i].fd = fd
        self.files[i].generation &+= 1
        self.files[i].generationStart = size
        self.files[i].offset = size
        self.files[i].allocatedThrough = size
        self.files[i].writebackFrom = size
        self.files[i].inFlight = 0
        if !sameFile || size == 0 {
            // The same file keeps its age (a reopen that moved nothing must not postpone its
            // age rotation); an empty one's age starts at its first write anyway.
            self.files[i].openedAt = now
        }
        // `bytesSinceFsync` carries over (the policy counts across a rotation or reopen); the
        // retired descriptor's final fsync covers and claims its own writes, and the fresh
        // file's next fsync waits until that one has closed (see `maybeFsync`).
        self.files[i].pendingRotation = nil
        if reopening { self.stats.reopens += 1 }
    }

    /// This sink's descriptor (current or retired) of file `i` that refers to the same file as
    /// `fd`, if any.
    private func descriptorOfSameFile(as fd: FileDescriptor, file i: Int) -> FileDescriptor? {
        if let current = self.files[i].fd, Files.isSameFile(current, fd) { return current }
        return self.files[i].retired.first { Files.isSameFile($0.fd, fd) }?.fd
    }

    deinit {
        for vectors in self.iovecs { vectors?.deallocate() }
    }

    /// What this sink writes of `item`.
    private func bytes(of item: ShipItem) -> UnsafeRawBufferPointer {
        self.configuration.format == .plain ? item.content : item.packet
    }

    var hasWork: Bool {
        self.files.contains { !$0.queue.isEmpty || $0.inFlight > 0 || !$0.retired.isEmpty || $0.fsyncInFlight || $0.writebackInFlight }
    }

    /// Whether a sub-buffer queued now would wait for a completion already in flight before
    /// its write is submitted: every file has its queue depth of writes in flight, and no
    /// retry is pending.
    var awaitsCompletions: Bool {
        self.retryAt == nil && self.files.allSatisfy { $0.fd != nil && $0.inFlight >= self.queueDepth }
    }

    var inFlight: Int {
        self.files.reduce(0) { total, file in
            total + file.inFlight + (file.fsyncInFlight ? 1 : 0) + (file.writebackInFlight ? 1 : 0)
                + file.retired.reduce(0) { $0 + $1.inFlight + ($1.closing ? 1 : 0) }
        }
    }

    func enqueue(_ item: ShipItem, buffer: Int) {
        let file = self.configuration.layout == .perChannel ? 0 : buffer
        self.files[file].queue.append(item)
    }

    /// Submits queued writes (up to the queue depth per file).
    func pump(_ loop: ShipperLoop, now: UInt64) {
        if let retryAt = self.retryAt {
            if now < retryAt { return }
            self.retryAt = nil
            let hadParked = !self.parked.isEmpty
            self.retryFailedOps(loop)
            for i in self.files.indices where self.files[i].rotationPending {
                self.rotate(file: i, loop: loop, now: now)
            }
            // A failed rotation parks no write, so no write completion ends the failure.
            if !hadParked && !self.files.contains(where: \.rotationPending) { self.noteSuccess() }
        }
        if self.failingSince != nil { return }
        for i in self.files.indices {
            while self.files[i].inFlight < self.queueDepth, let item = self.files[i].queue.first {
                guard let fd = self.files[i].fd else { break }
                let bytes = self.bytes(of: item)
                if bytes.count == 0 {
                    self.files[i].queue.popFirst()
                    loop.sinkFinished(self.position, item: item, bytes: 0)
                    continue
                }
                if self.shouldRotate(file: i, adding: bytes.count, now: now) {
                    self.rotate(file: i, loop: loop, now: now)
                    if self.failingSince != nil { return }  // retried after the backoff
                    continue
                }
                guard let opIndex = self.freeOps.popLast() else { break }
                if self.files[i].offset == 0 {
                    // An empty file's age counts from its first write: one that stayed empty past
                    // maxAge would otherwise be rotated away right after it, holding one batch.
                    self.files[i].openedAt = now
                }
                // The batch: this sub-buffer and the ones queued behind it, up to the next
                // rotation point (`WRITE_FIXED` writes go one at a time). They leave the
                // queue only once the write is submitted.
                let (count, length) = SubbufferBatch.plan(
                    first: bytes.count, queued: self.writesFixed ? 1 : self.files[i].queue.count,
                    bytes: { self.bytes(of: self.files[i].queue[$0]).count },
                    fits: { self.fitsBeforeRotation(file: i, length: $0, now: now) })
                for k in 0..<count { self.opItems[opIndex].append(self.files[i].queue[k]) }
                let offset = self.files[i].offset
                self.files[i].offset += Int64(length)
                self.preallocate(file: i, fd: fd)
                self.ops[opIndex] = Op(
                    file: i, generation: self.files[i].generation, length: length, offset: offset, written: 0,
                    epoch: self.files[i].fsyncFailures)
                if !self.submit(op: opIndex, loop: loop) {
                    // SQ full even after a flush: undo and try next round.
                    self.ops[opIndex] = nil
                    self.opItems[opIndex].removeAll(keepingCapacity: true)
                    self.freeOps.append(opIndex)
                    self.files[i].offset -= Int64(length)
                    return
                }
                for _ in 0..<count { self.files[i].queue.popFirst() }
                self.files[i].inFlight += 1
            }
            self.maybeFsync(file: i, loop: loop, now: now)
            self.maybeWriteback(file: i, loop: loop)
            // A rotated-away descriptor whose final fsync found the SQ full has no completion
            // left to try again from.
            if self.files[i].retired.contains(where: { $0.inFlight == 0 && !$0.closing }) {
                self.closeRetiredIfIdle(file: i, loop: loop)
            }
        }
    }

    private func submit(op opIndex: Int, loop: ShipperLoop) -> Bool {
        guard let op = self.ops[opIndex], let fd = self.fd(file: op.file, generation: op.generation) else { return false }
        let userData = URingUserData(kind: ShipperLoop.OpKind.fileWrite.rawValue, index: UInt16(self.index), sequence: UInt64(opIndex)).rawValue
        let at = UInt64(op.offset + Int64(op.written))
        let items = self.opItems[opIndex]
        do {
            if items.count == 1 {
                let remaining = UnsafeRawBufferPointer(rebasing: self.bytes(of: items[0])[op.written...])
                if let fixed = items[0].fixedIndex, loop.buffersRegistered, self.writesFixed {
                    try loop.ring.writeFixed(fd, remaining, at: at, bufferIndex: fixed, userData: userData)
                    self.stats.fixedWrites += 1
                } else {
                    try loop.ring.write(fd, remaining, at: at, userData: userData)
                }
                return true
            }
            // The unwritten part of the batch: skip what a short write already wrote.
            let vectors: UnsafeMutablePointer<iovec>
            if let allocated = self.iovecs[opIndex] {
                vectors = allocated
            } else {
                vectors = .allocate(capacity: SubbufferBatch.maxCount)
                vectors.initialize(repeating: iovec(), count: SubbufferBatch.maxCount)
                self.iovecs[opIndex] = vectors
            }
            let count = SubbufferBatch.fill(vectors, skipping: op.written, items.lazy.map { self.bytes(of: $0) })
            try loop.ring.writev(fd, vectors, count: count, at: at, userData: userData)
            self.stats.batches += 1
            return true
        } catch {
            return false
        }
    }

    private func fd(file: Int, generation: UInt32) -> FileDescriptor? {
        if self.files[file].generation == generation { return self.files[file].fd }
        return self.files[file].retired.first { $0.generation == generation }?.fd
    }

    /// A write completed.
    func completed(op opIndex: Int, result: Int32, loop: ShipperLoop, now: UInt64) {
        guard var op = self.ops[opIndex] else { return }
        if result < 0 {
            let errno = Errno(rawValue: -result)
            self.stats.errors += 1
            // Keep the op: it is retried at the same offset when the backoff expires.
            self.parked.insert(opIndex)
            self.enterFailure(errno, loop: loop, now: now, path: self.files[op.file].path)
            return
        }
        op.written += Int(result)
        if op.written < op.length {
            if result == 0 {
                // No progress without an error: treat as ENOSPC-like and back off.
                self.ops[opIndex] = op
                self.parked.insert(opIndex)
                self.enterFailure(.noSpace, loop: loop, now: now, path: self.files[op.file].path)
                return
            }
            // Short write: resubmit the rest at offset + written.
            self.ops[opIndex] = op
            if !self.submit(op: opIndex, loop: loop) {
                self.parked.insert(opIndex)
                self.enterFailure(.resourceTemporarilyUnavailable, loop: loop, now: now, path: self.files[op.file].path)
            }
            return
        }
        self.noteSuccess()
        self.ops[opIndex] = nil
        self.freeOps.append(opIndex)
        self.noteWriteDone(file: op.file, generation: op.generation, loop: loop)
        if op.generation == self.files[op.file].generation { self.maybeWriteback(file: op.file, loop: loop) }
        self.files[op.file].bytesSinceFsync += Int64(op.length)
        self.stats.bytes += UInt64(op.length)
        let items = self.opItems[opIndex].count
        if op.epoch == self.files[op.file].fsyncFailures {
            if op.generation == self.files[op.file].generation {
                self.files[op.file].unsyncedSubbuffers += UInt64(items)
            } else if let r = self.files[op.file].retired.firstIndex(where: { $0.generation == op.generation }) {
                self.files[op.file].retired[r].unsynced += UInt64(items)
            }
        } else {
            // In flight when an fsync of the file failed: its pages may have been in the failed
            // writeback, which a later fsync does not report again.
            self.stats.durabilityUnknownSubbuffers += UInt64(items)
        }
        self.stats.subbuffers += UInt64(items)
        self.stats.sentSubbuffers += UInt64(items)
        self.stats.reusableSubbuffers += UInt64(items)
        for item in self.opItems[opIndex] {
            loop.sinkFinished(self.position, item: item, bytes: self.bytes(of: item).count)
        }
        self.opItems[opIndex].removeAll(keepingCapacity: true)
    }

    private func noteWriteDone(file: Int, generation: UInt32, loop: ShipperLoop) {
        if self.files[file].generation == generation {
            self.files[file].inFlight -= 1
            return
        }
        if let r = self.files[file].retired.firstIndex(where: { $0.generation == generation }) {
            self.files[file].retired[r].inFlight -= 1
            self.closeRetiredIfIdle(file: file, loop: loop)
        }
    }

    /// Closes retired descriptors whose writes all completed. With an fsync policy, an
    /// fsync goes through the ring first and the close happens at its completion, so the
    /// ring thread never blocks on the disk.
    private func closeRetiredIfIdle(file: Int, loop: ShipperLoop) {
        var keep: [Retired] = []
        for retired in self.files[file].retired {
            guard retired.inFlight == 0 else {
                keep.append(retired)
                continue
            }
            // At most one fsync of a file in flight. The file's own (`maybeFsync`) may have been
            // issued on this very descriptor before it was retired; two fsyncs of one open file
            // share its one writeback-error report, so whichever the kernel checks second can
            // succeed over pages whose writeback failed, and its completion may come first. The
            // file's fsync completion (or the next pump) issues this final one.
            if !retired.closing && self.files[file].fsyncInFlight {
                keep.append(retired)
                continue
            }
            if !retired.closing { self.releasePreallocation(retired.fd, file: file) }
            if case .none = self.configuration.fsync {
                Files.close(retired.fd)
                continue
            }
            if retired.inFlight == 0 && !retired.closing {
                let sequence = Self.retiredFsyncBit | (UInt64(file) << Self.retiredFileShift)
                    | (UInt64(retired.generation) & Self.retiredGenerationMask)
                let userData = URingUserData(kind: ShipperLoop.OpKind.fileFsync.rawValue, index: UInt16(self.index), sequence: sequence).rawValue
                var closing = retired
                do {
                    try loop.ring.fsync(retired.fd, datasync: true, userData: userData)
                    closing.closing = true
                    closing.fsyncEpoch = self.files[file].fsyncFailures
                } catch {
                    // SQ full: try again at the next pump.
                }
                keep.append(closing)
                continue
            }
            keep.append(retired)
        }
        self.files[file].retired = keep
    }

    /// Gives back the blocks preallocated past the end of `fd`'s file: KEEP_SIZE blocks stay
    /// allocated after the close, so a rotated file would hold the whole chunk for good.
    /// Only once no write of `fd` is in the kernel, and not while its file is still written
    /// through another descriptor (the current one, or a retired one with writes, after a
    /// same-file reopen): a write landing between the size and the truncation would be cut.
    private func releasePreallocation(_ fd: FileDescriptor, file i: Int) {
        guard self.configuration.preallocate > 0 else { return }
        if let current = self.files[i].fd, current != fd, Files.isSameFile(current, fd) { return }
        for other in self.files[i].retired where other.fd != fd && other.inFlight > 0 {
            if Files.isSameFile(other.fd, fd) { return }
        }
        guard case .success(let size) = Files.size(fd) else { return }
        _ = Files.truncate(fd, to: size)  // to its own size: frees only the blocks past the end
    }

    // MARK: Writeback

    /// The most one writeback request covers (`sync_file_range`'s length is 32 bits in the SQE).
    static let largestWritebackRange: Int64 = 1 << 30

    /// Where requests end: a multiple of the largest power of two up to `chunk`, at most 2 MiB.
    /// Folios are naturally aligned and at most 2 MiB (x86-64's PMD size), so with chunks of
    /// 2 MiB or more no folio straddles a request's end; with smaller ones only a folio larger
    /// than the chunk could (the sink's writes, at most 1 MiB each, rarely make one).
    static func writebackAlignment(chunk: Int) -> Int64 {
        let powerOfTwo = 1 << (Int.bitWidth - 1 - chunk.leadingZeroBitCount)
        return Int64(min(powerOfTwo, 2 << 20))
    }

    /// Under ``RelayFileSinkConfiguration/Writeback/everyBytes(_:)``: once that many bytes of
    /// file `i` are written (their writes completed) past the last request, asks the kernel to
    /// start their writeback (`SYNC_FILE_RANGE_WRITE`, which does not wait for it), one request
    /// in flight per file. The range ends at the lowest offset a write of the current
    /// descriptor still has in the kernel or parked for a retry, so it never takes pages a
    /// write has yet to fill. Nothing here is a durability claim (see ``maybeFsync(file:loop:now:)``).
    private func maybeWriteback(file i: Int, loop: ShipperLoop) {
        guard case .everyBytes(let chunk) = self.configuration.writeback, !self.configuration.directIO,
            self.failingSince == nil, !self.files[i].writebackInFlight, let fd = self.files[i].fd
        else { return }
        let start = self.files[i].writebackFrom
        // Everything issued ends at `offset`: with less than a chunk issued past the last
        // request, none can be ready (this check spares the scan below on most completions).
        guard self.files[i].offset - start >= Int64(chunk) else { return }
        let generation = self.files[i].generation
        var end = self.files[i].offset
        for case let op? in self.ops where op.file == i && op.generation == generation {
            end = min(end, op.offset)
        }
        // End on a boundary no page-cache folio straddles: a folio the range ended inside would
        // be re-dirtied by the writes that fill the rest of it while its writeback runs, and the
        // next request, which skips pages under write-out, would leave it to the kernel.
        end -= end % Self.writebackAlignment(chunk: chunk)
        guard end - start >= Int64(chunk) else { return }
        let length = min(end - start, Self.largestWritebackRange)
        let sequence = (UInt64(i) << Self.retiredFileShift) | (UInt64(generation) & Self.retiredGenerationMask)
        let userData = URingUserData(kind: ShipperLoop.OpKind.fileWriteback.rawValue, index: UInt16(self.index), sequence: sequence).rawValue
        do {
            try loop.ring.syncFileRange(
                fd, offset: UInt64(start), length: UInt32(length), flags: CRelayLinux_SYNC_FILE_RANGE_WRITE(), userData: userData)
        } catch {
            return  // SQ full: the next completion or pump asks again
        }
        self.files[i].writebackFrom = start + length
        self.files[i].writebackInFlight = true
        self.stats.writebacks += 1
    }

    /// A writeback request completed. A failure loses nothing: the pages stay dirty, the
    /// kernel writes them later, and an fsync reports an I/O error of that writeback (a
    /// `SYNC_FILE_RANGE_WRITE` does not consume it). It is counted and logged.
    func writebackCompleted(sequence: UInt64, result: Int32, loop: ShipperLoop, now: UInt64) {
        let i = Int(sequence >> Self.retiredFileShift)
        let generation = sequence & Self.retiredGenerationMask
        guard i < self.files.count else { return }
        if result < 0 {
            self.stats.errors += 1
            if self.lastErrorLog == 0 || now - self.lastErrorLog > 1_000_000_000 {
                self.lastErrorLog = now
                loop.logger.warning(
                    "file sink could not start writeback",
                    metadata: ["path": "\(self.files[i].path)", "errno": "\(Errno(rawValue: -result))",
                               "advice": "nothing is lost: the data stays in the page cache and the kernel writes it back later"])
            }
        }
        if UInt64(self.files[i].generation) & Self.retiredGenerationMask == generation && self.files[i].writebackInFlight {
            self.files[i].writebackInFlight = false
            self.maybeWriteback(file: i, loop: loop)
            return
        }
        if let r = self.files[i].retired.firstIndex(where: { UInt64($0.generation) & Self.retiredGenerationMask == generation }) {
            self.files[i].retired[r].inFlight -= 1
            self.closeRetiredIfIdle(file: i, loop: loop)
        }
    }

    /// Marks fsync completions of retired descriptors (in `user_data.sequence`, 40 bits):
    /// bit 39, then the file index in bits 26...38 (13 bits: a channel has at most 8192
    /// buffers, so files) and the low 26 bits of the retired descriptor's generation.
    static let retiredFsyncBit: UInt64 = 1 << 39
    static let retiredFileShift: UInt64 = 26
    static let retiredGenerationMask: UInt64 = (1 << 26) - 1

    private func enterFailure(_ errno: Errno, loop: ShipperLoop, now: UInt64, path: String) {
        if self.failingSince == nil { self.failingSince = now }
        // One backoff step per retry round: the other writes of the round that fail (up to
        // the queue depth per file) join the retry already scheduled instead of each
        // doubling the delay.
        if self.retryAt == nil {
            self.retryAt = now.saturatingAdding(self.backoff.next())
        }
        let delay = self.retryAt.map { $0 > now ? $0 - now : 0 } ?? 0
        self.stats.failing = true
        if now - self.lastErrorLog > 1_000_000_000 || self.lastErrorLog == 0 {
            self.lastErrorLog = now
            let advice: String
            switch errno {
            case .noSpace: advice = "the disk is full; free space — data stays in the relay buffers and is retried"
            case .ioError: advice = "I/O error; check the device — data stays in the relay buffers and is retried"
            case .fileTooLarge: advice = "the file hit RLIMIT_FSIZE or the filesystem limit; configure rotation"
            default: advice = "retrying"
            }
            loop.logger.error(
                "file sink write failed",
                metadata: ["path": "\(path)", "errno": "\(errno)", "retry_in_ms": "\(delay / 1_000_000)", "advice": "\(advice)"])
        }
    }

    /// Ops whose last attempt failed: not in the kernel, retried after the backoff.
    var parked = Set<Int>()

    private func retryFailedOps(_ loop: ShipperLoop) {
        for opIndex in self.parked.sorted() {
            guard self.submit(op: opIndex, loop: loop) else {
                self.retryAt = 0  // SQ full: again at the next pump
                return
            }
            self.parked.remove(opIndex)
        }
        // Still "failing" until one of them succeeds (see `noteSuccess`).
    }

    /// A write succeeded: leave failure mode once nothing is parked.
    func noteSuccess() {
        if self.failingSince != nil && self.parked.isEmpty && self.retryAt == nil {
            self.failingSince = nil
            self.stats.failing = false
            self.backoff.reset()
        }
    }

    // MARK: Preallocation, rotation, fsync

    private func preallocate(file i: Int, fd: FileDescriptor) {
        let chunk = Int64(self.configuration.preallocate)
        guard chunk > 0, self.files[i].offset > self.files[i].allocatedThrough else { return }
        let start = self.files[i].allocatedThrough
        let length = max(chunk, self.files[i].offset - start)
        // KEEP_SIZE: blocks are reserved (fewer extent updates, early ENOSPC), the file
        // size still grows with the data, so readers never see preallocated zeros.
        if case .success = Files.fallocate(fd, keepSize: true, offset: start, length: length) {
            self.files[i].allocatedThrough = start + length
        } else {
            self.files[i].allocatedThrough = Int64.max  // unsupported here: stop trying
        }
    }

    /// Whether the file must rotate before `bytes` more are written to it. A fresh (empty)
    /// file takes its first sub-buffer whatever its size.
    private func shouldRotate(file i: Int, adding bytes: Int, now: UInt64) -> Bool {
        self.files[i].offset > 0 && !self.fitsBeforeRotation(file: i, length: bytes, now: now)
    }

    /// Whether `length` more bytes at the file's offset stay before the next rotation point
    /// (size or age). A `WRITEV` batch only grows while this holds, at offset 0 too.
    private func fitsBeforeRotation(file i: Int, length: Int, now: UInt64) -> Bool {
        guard let rotation = self.configuration.rotation else { return true }
        if let maxBytes = rotation.maxBytes, self.files[i].offset + Int64(length) > Int64(maxBytes) { return false }
        if let maxAge = rotation.maxAge, now - self.files[i].openedAt >= maxAge.nanoseconds { return false }
        return true
    }

    /// Renames `path` → `path.1` (shifting older ones, deleting beyond `keep`) and opens
    /// a fresh `path`. In-flight writes finish on the old descriptor.
    ///
    /// No rotated file is ever overwritten: every rename refuses an existing target
    /// (`RENAME_NOREPLACE`), and the only file removed is `path.keep`, and only when
    /// `path.1` … `path.(keep-1)` all exist (the shift needs its slot; a missing one stops
    /// the shift there instead). If a rename or the open fails, the failure is logged and
    /// counted, the sink writes nothing (the data stays in the relay buffers), and the
    /// rotation is retried after the backoff from the step that failed.
    func rotate(file i: Int, loop: ShipperLoop, now: UInt64) {
        let path = self.files[i].path
        let keep = max(1, self.configuration.rotation?.keep ?? 1)
        var next: Int  // the rotated file to shift next (`path.next` → `path.(next+1)`); 0: `path` itself
        var moved = false
        switch self.files[i].pendingRotation {
        case nil, .start:
            // Shift up to the first free slot; only with none free, drop the oldest.
            next = 0
            while next + 1 < keep && Files.exists("\(path).\(next + 1)") { next += 1 }
            if next + 1 == keep { Files.remove("\(path).\(keep)") }
        case .shift(let n):
            next = n
            moved = true
        case .open:
            next = -1
        }
        while next >= 0 {
            let from = next == 0 ? path : "\(path).\(next)"
            let to = "\(path).\(next + 1)"
            switch Files.renameNoReplace(from, to) {
            case .success:
                moved = true
            case .failure(.noSuchFileOrDirectory):
                // Gone already (`path`: an external rotation without a reopen moved it away).
                break
            case .failure(let errno):
                // Renaming the younger files on would overwrite `from`; opening `path` now (if
                // `from` is `path`) would open the same file again, still over the limit, and
                // the next write would rotate again, for ever. Write nothing until it moves.
                self.files[i].pendingRotation = moved ? .shift(next) : .start
                self.stats.errors += 1
                let blocker = errno == .fileExists || errno == .isDirectory || errno == .directoryNotEmpty
                loop.logger.error(
                    next == 0 ? "file sink rotation failed: cannot rename the file" : "file sink rotation failed: cannot shift a rotated file",
                    metadata: [
                        "path": "\(path)", "from": "\(from)", "to": "\(to)", "errno": "\(errno)",
                        "advice": blocker
                            ? "something that cannot be replaced is at \(to) (a directory?); move or remove it — no rotated file was overwritten, data stays in the relay buffers and the rotation is retried"
                            : "fix the directory's permissions or the filesystem — no rotated file was overwritten, data stays in the relay buffers and the rotation is retried",
                    ])
                self.enterFailure(errno, loop: loop, now: now, path: path)
                return
            }
            next -= 1
        }
        do {
            try self.open(file: i, now: now, reopening: false)
            self.stats.rotations += 1
        } catch {
            self.files[i].pendingRotation = .open
            self.stats.errors += 1
            loop.logger.error("file sink rotation failed", metadata: ["path": "\(path)", "error": "\(error)"])
            self.enterFailure(.ioError, loop: loop, now: now, path: path)
        }
        self.closeRetiredIfIdle(file: i, loop: loop)
    }

    /// Reopens every file at its path (logrotate moved them away).
    func reopen(loop: ShipperLoop, now: UInt64) {
        for i in self.files.indices {
            do {
                try self.open(file: i, now: now, reopening: true)
            } catch {
                loop.logger.error("file sink reopen failed", metadata: ["path": "\(self.files[i].path)", "error": "\(error)"])
            }
            self.closeRetiredIfIdle(file: i, loop: loop)
        }
    }

    /// Age-based rotation for idle files.
    func rotateByAge(loop: ShipperLoop, now: UInt64) {
        guard let maxAge = self.configuration.rotation?.maxAge?.nanoseconds else { return }
        for i in self.files.indices where self.files[i].offset > 0 && !self.files[i].rotationPending && now - self.files[i].openedAt >= maxAge {
            self.rotate(file: i, loop: loop, now: now)
        }
    }

    var nextAgeRotation: UInt64? {
        guard let maxAge = self.configuration.rotation?.maxAge?.nanoseconds else { return nil }
        // Saturating: a huge maxAge means "never", and `openedAt` is a real time now (not 0).
        return self.files.filter { $0.offset > 0 && !$0.rotationPending }.map { $0.openedAt.saturatingAdding(maxAge) }.min()
    }

    private func maybeFsync(file i: Int, loop: ShipperLoop, now: UInt64) {
        guard !self.files[i].fsyncInFlight, self.files[i].bytesSinceFsync > 0, let fd = self.files[i].fd else { return }
        // Not while a rotated-away descriptor of this file is still open: the fsync could claim
        // nothing (see below), and with the writes counted in `bytesSinceFsync` already taken,
        // an idle file would get no later fsync to claim them. The pump after its final fsync
        // (or close) issues this one.
        guard self.files[i].retired.isEmpty else { return }
        switch self.configuration.fsync {
        case .none:
            return
        case .everyBytes(let n):
            if self.files[i].bytesSinceFsync < Int64(n) { return }
        case .interval(let interval):
            if let next = self.files[i].nextFsyncAt, now < next { return }
            self.files[i].nextFsyncAt = now.saturatingAdding(interval.nanoseconds)
        }
        let userData = URingUserData(kind: ShipperLoop.OpKind.fileFsync.rawValue, index: UInt16(self.index), sequence: UInt64(i)).rawValue
        do {
            try loop.ring.fsync(fd, datasync: true, userData: userData)
        } catch {
            return
        }
        // The fsync covers exactly the writes to this descriptor completed by now: remember
        // them (a rotated-away descriptor's final fsync claimed its own).
        self.files[i].fsyncCovers = self.files[i].unsyncedSubbuffers
        self.files[i].unsyncedSubbuffers = 0
        self.files[i].fsyncEpoch = self.files[i].fsyncFailures
        self.files[i].fsyncInFlight = true
        self.files[i].bytesSinceFsync = 0
    }

    func fsyncCompleted(sequence: UInt64, result: Int32, loop: ShipperLoop, now: UInt64) {
        if sequence & Self.retiredFsyncBit != 0 {
            let file = Int((sequence & ~Self.retiredFsyncBit) >> Self.retiredFileShift)
            let generation = sequence & Self.retiredGenerationMask
            guard let r = self.files[file].retired.firstIndex(where: { UInt64($0.generation) & Self.retiredGenerationMask == generation })
            else { return }
            let retired = self.files[file].retired.remove(at: r)
            Files.close(retired.fd)
            if result < 0 {
                self.stats.errors += 1
                self.durabilityLost(file: file, covered: retired.unsynced, errno: Errno(rawValue: -result), rotated: true, loop: loop)
            } else {
                self.stats.fsyncs += 1
                if retired.fsyncEpoch == self.files[file].fsyncFailures {
                    self.stats.durableSubbuffers += retired.unsynced
                } else {
                    self.stats.durabilityUnknownSubbuffers += retired.unsynced  // another fsync of the file failed meanwhile
                }
            }
            return
        }
        let i = Int(sequence)
        self.files[i].fsyncInFlight = false
        let covered = self.files[i].fsyncCovers
        self.files[i].fsyncCovers = 0
        if result < 0 {
            self.stats.errors += 1
            self.durabilityLost(file: i, covered: covered, errno: Errno(rawValue: -result), rotated: false, loop: loop)
        } else {
            self.stats.fsyncs += 1
            if self.files[i].fsyncEpoch == self.files[i].fsyncFailures {
                self.stats.durableSubbuffers += covered
            } else {
                // Another fsync of the file failed while this one ran (a rotated-away
                // descriptor's final one): this success may only mean that one took the error
                // report.
                self.stats.durabilityUnknownSubbuffers += covered
            }
        }
        // A rotated-away descriptor's final fsync waited for this one (see `closeRetiredIfIdle`).
        if self.files[i].retired.contains(where: { $0.inFlight == 0 && !$0.closing }) {
            self.closeRetiredIfIdle(file: i, loop: loop)
        }
    }

    /// An fsync of file `i` failed: what it covered (`covered`), every write to the file that
    /// completed and is not yet covered by a successful fsync (on any of its descriptors:
    /// after a reopen of the same file they share the error report), and (at their
    /// completion) the writes in flight now may be lost, and no later fsync will say so. They
    /// are counted as of unknown durability, once, and never claimed durable. What a
    /// successful fsync claimed before stays claimed.
    private func durabilityLost(file i: Int, covered: UInt64, errno: Errno, rotated: Bool, loop: ShipperLoop) {
        self.files[i].fsyncFailures &+= 1
        var unknown = covered + self.files[i].unsyncedSubbuffers
        self.files[i].unsyncedSubbuffers = 0
        for r in self.files[i].retired.indices {
            unknown += self.files[i].retired[r].unsynced
            self.files[i].retired[r].unsynced = 0
        }
        self.stats.durabilityUnknownSubbuffers += unknown
        loop.logger.error(
            rotated ? "fsync of a rotated file failed" : "fsync failed",
            metadata: [
                "path": "\(self.files[i].path)", "errno": "\(errno)",
                "durability_unknown_subbuffers": "\(unknown)",
                "writes_in_flight": "\(self.files[i].inFlight + self.files[i].retired.reduce(0) { $0 + $1.inFlight })",
                "advice": "check the device (dmesg): the kernel may have dropped data written before this fsync, and a later fsync will not report it; those sub-buffers (and the writes in flight) are counted in durabilityUnknownSubbuffers and never claimed durable",
            ])
    }

    var nextFsyncDeadline: UInt64? {
        // While failing, pump issues no fsync: the retry (`retryAt`) is the deadline.
        guard self.failingSince == nil else { return nil }
        guard case .interval = self.configuration.fsync else { return nil }
        var deadline: UInt64? = nil
        // A file whose fsync is in flight is due again only after its completion (which wakes the loop);
        // so is one with a rotated-away descriptor whose writes or final fsync are in flight.
        for i in self.files.indices where self.files[i].bytesSinceFsync > 0 && !self.files[i].fsyncInFlight
            && !self.files[i].retired.contains(where: { $0.inFlight > 0 || $0.closing })
        {
            let due = self.files[i].nextFsyncAt ?? 0
            deadline = min(deadline ?? due, due)
        }
        return deadline
    }

    /// At shutdown, once none of this sink's writes is in the kernel: cuts every file back to
    /// where its first unfinished (failed, parked) write starts. Those sub-buffers were not
    /// released, so whoever ships the channel next writes them again, whole, at the file's
    /// end; without the cut, what a short write put there of one (and later writes that did
    /// complete, of sub-buffers not released either) would stay in front of them: a torn
    /// record and duplicates. Where no one ships the channel again (relayd's anonymous
    /// buffers at exit), the cut keeps the file and the loss accounting in agreement: every
    /// sub-buffer not released is counted lost, and none of its bytes stays behind a hole.
    ///
    /// Each descriptor is cut at its own first unfinished write, and a descriptor opened after
    /// one with an unfinished write (a rotation's fresh file, a reopen) back to where this
    /// sink's writes to it started: everything written there came after that write, so none of
    /// it was released either. Only where everything in the file is this buffer's: with several
    /// buffers in one file, a later write may be another buffer's, already released. Every cut
    /// is logged.
    func cutUnfinishedWrites(loop: ShipperLoop) {
        guard self.configuration.layout != .perChannel || self.buffers == 1 else { return }
        struct Descriptor: Hashable {
            let file: Int
            let generation: UInt32
        }
        var cuts: [Descriptor: Int64] = [:]
        // Per file, the oldest generation with an unfinished write.
        var oldest: [Int: UInt32] = [:]
        // Generations count up by one per open (wrapping): `a` is later than `b`.
        func isLater(_ a: UInt32, than b: UInt32) -> Bool { Int32(bitPattern: a &- b) > 0 }
        for opIndex in self.ops.indices {
            guard let op = self.ops[opIndex] else { continue }
            // Still in the kernel (the shutdown gave up waiting): it could write after any cut.
            guard self.parked.contains(opIndex) else { return }
            let descriptor = Descriptor(file: op.file, generation: op.generation)
            cuts[descriptor] = min(cuts[descriptor] ?? op.offset, op.offset)
            if let known = oldest[op.file], !isLater(known, than: op.generation) { continue }
            oldest[op.file] = op.generation
        }
        for (file, generation) in oldest {
            let later =
                self.files[file].retired.filter { isLater($0.generation, than: generation) }.map { ($0.generation, $0.start) }
                + (isLater(self.files[file].generation, than: generation) && self.files[file].fd != nil
                    ? [(self.files[file].generation, self.files[file].generationStart)] : [])
            for (laterGeneration, start) in later {
                let descriptor = Descriptor(file: file, generation: laterGeneration)
                cuts[descriptor] = min(cuts[descriptor] ?? start, start)
            }
        }
        for (descriptor, offset) in cuts {
            guard let fd = self.fd(file: descriptor.file, generation: descriptor.generation),
                case .success(let size) = Files.size(fd), size > offset
            else { continue }
            let outcome: String
            switch Files.truncate(fd, to: offset) {
            case .success: outcome = "cut"
            case .failure(let errno): outcome = "not cut: \(errno)"
            }
            loop.logger.warning(
                "file sink cut a file back at shutdown: writes after one that failed were not released from the channel",
                metadata: [
                    "path": "\(self.files[descriptor.file].path)",
                    "rotated_away": "\(descriptor.generation != self.files[descriptor.file].generation)",
                    "from_bytes": "\(size)", "to_bytes": "\(offset)", "outcome": "\(outcome)",
                    "advice": "the channel still holds those sub-buffers: a shipper that ships it again writes them again, whole; else they are counted lost (see the failed write's earlier error for its cause)",
                ])
        }
    }

    /// Closes every descriptor, rotated-away ones still open included, giving back
    /// preallocated blocks and, when the policy asks for one, after a final fsync. Where every
    /// final fsync of a file succeeded, the sub-buffers whose writes to it had completed are
    /// durable (a write still in the kernel after the shutdown's wait is not among them),
    /// except those an earlier failed fsync already counted as of unknown durability; where
    /// one failed, they count as of unknown durability too.
    ///
    /// With an operation of this sink still in the kernel after the shutdown's wait (a write, an
    /// fsync, a writeback request), the device is not completing I/O, and a final `fsync(2)` (which
    /// runs on the ring thread) could block the stop for as long: then there is none, and what it
    /// would have covered counts as of unknown durability.
    func closeAll(fsync requested: Bool, loop: ShipperLoop? = nil) {
        // Preallocated blocks are given back only if no write is in the kernel (a stop whose
        // wait ran out may leave some there). Likewise the lock: with nothing in the kernel it
        // is released explicitly, so it is gone when `stop()` returns and a sink started right
        // after on the same path never finds it held (after `close` alone, the kernel may still
        // hold the file for a moment: a completed request's reference, dropped by an io-wq
        // worker on its own schedule). With a write still in the kernel, it stays until that
        // write's reference goes, so no other writer takes the file while the write can land.
        let quiet = self.ops.indices.allSatisfy { self.ops[$0] == nil || self.parked.contains($0) }
        // Any operation of the sink still in the kernel (a write, an fsync of the ring, a writeback
        // request, a rotated file's final fsync): the device is not completing I/O.
        let stuck = self.inFlight - self.parked.count > 0
        let fsync = requested && !stuck
        if requested && stuck {
            loop?.logger.error(
                "file sink closed without its final fsync: its I/O is still in the kernel after the stop's wait",
                metadata: [
                    "advice": "the device or filesystem is not completing I/O (a frozen filesystem, NFS down, a failing disk?); what was written since the last successful fsync is counted in durabilityUnknownSubbuffers"
                ])
        }
        for i in self.files.indices {
            var synced = true
            // Unlocked and closed once every descriptor of the file is synced: a rotated-away
            // descriptor can share its open file description (and lock) with the current one.
            var finished: [FileDescriptor] = []
            func finish(_ fd: FileDescriptor) {
                if quiet { self.releasePreallocation(fd, file: i) }
                if fsync {
                    switch syscall({ Glibc.fsync(fd.rawValue) }) {
                    case .success:
                        self.stats.fsyncs += 1
                    case .failure(let errno):
                        synced = false
                        self.stats.errors += 1
                        loop?.logger.error("final fsync failed", metadata: ["path": "\(self.files[i].path)", "errno": "\(errno)"])
                    }
                }
                finished.append(fd)
            }
            // Before the current descriptor, so its fsync is the last one of the file.
            var covered = self.files[i].unsyncedSubbuffers
            self.files[i].unsyncedSubbuffers = 0
            for retired in self.files[i].retired {
                finish(retired.fd)
                covered += retired.unsynced
            }
            self.files[i].retired = []
            if let fd = self.files[i].fd {
                finish(fd)
                self.files[i].fd = nil
            }
            for fd in finished {
                if quiet { Files.unlock(fd) }
                Files.close(fd)
            }
            guard fsync else {
                if requested {
                    // Skipped (above): nothing claims these writes any more.
                    let unclaimed = covered + (self.files[i].fsyncInFlight ? self.files[i].fsyncCovers : 0)
                    self.files[i].fsyncCovers = 0
                    self.stats.durabilityUnknownSubbuffers += unclaimed
                }
                continue
            }
            // An fsync of the ring still in flight (the shutdown's wait ran out) is covered by
            // these final ones too, unless a failure since it was submitted voids it.
            if self.files[i].fsyncInFlight {
                if self.files[i].fsyncEpoch == self.files[i].fsyncFailures {
                    covered += self.files[i].fsyncCovers
                } else {
                    self.stats.durabilityUnknownSubbuffers += self.files[i].fsyncCovers
                }
                self.files[i].fsyncCovers = 0
            }
            if synced {
                self.stats.durableSubbuffers += covered
            } else {
                self.files[i].fsyncFailures &+= 1
                self.stats.durabilityUnknownSubbuffers += covered
            }
        }
    }
}
