public import Synchronization

/// A writer that owns one buffer: the `__relay_write` analogue.
///
/// relayfs's `__relay_write` skips interrupt protection because the caller guarantees
/// nothing else writes that CPU's buffer. Here a thread claims one of the channel's
/// *exclusive buffers* (``RelayChannelConfiguration/exclusiveBuffers``, never used by
/// the shared path) and writes into it with plain loads and stores: no locked
/// instruction per record.
///
/// Flushes and closes from other threads stay safe through an asymmetric handshake:
/// the writer marks itself busy with a plain store and a compiler barrier, and a
/// flusher requests the buffer, issues membarrier(2) so every thread passes a full
/// fence, then waits for the writer to leave. See `AsymmetricFence`.
///
/// The type is `~Copyable`: one owner at a time. Do not use it from two threads
/// concurrently (it is not `Sendable`; moving it to another thread between writes is
/// fine). Releasing it (deinit) frees the buffer for another claim.
public struct RelayExclusiveWriter: ~Copyable {
    /// Keeps the channel (and so the buffer memory `corePointer` and `fast` point into)
    /// alive for as long as the writer exists: a writer can outlive the caller's last use
    /// of the channel.
    let channel: RelayChannel
    /// The same channel, used through `_withUnsafeGuaranteedRef` on slow paths so no
    /// reference counting happens per record.
    let unmanagedChannel: Unmanaged<RelayChannel>
    /// The buffer's `BufferCore`, inside the channel's table (valid while the channel
    /// lives), for the out-of-line paths, which hand it to the channel's shared algorithm.
    let corePointer: UnsafeMutablePointer<BufferCore>
    /// What the record path reads, copied out of the `BufferCore` when the buffer is
    /// claimed: ``write(_:)-(UnsafeRawBufferPointer)`` is `@inlinable`, so callers in other
    /// modules compile the fast path into their own loops, where these fields stay in
    /// registers.
    @usableFromInline
    let fast: ExclusiveFastPath

    init(channel: RelayChannel, core: UnsafeMutablePointer<BufferCore>) {
        self.channel = channel
        self.unmanagedChannel = Unmanaged.passUnretained(channel)
        self.corePointer = core
        self.fast = ExclusiveFastPath(core.pointee)
    }

    var core: BufferCore { self.corePointer.pointee }

    @inline(__always)
    func withChannel<R>(_ body: (RelayChannel) -> R) -> R {
        self.unmanagedChannel._withUnsafeGuaranteedRef(body)
    }

    /// The buffer this writer owns.
    public var buffer: Int { self.corePointer.pointee.index }

    deinit {
        // releasing: pairs with the acquiring CAS of the next claimant.
        self.corePointer.pointee.exclusiveOwner.pointee.store(0, ordering: .releasing)
    }

    /// Writes one record. Same results and accounting as ``RelayChannel/write(_:)-(UnsafeRawBufferPointer)``.
    ///
    /// The common case (the record lies strictly inside the current sub-buffer) is inlined
    /// into the caller: plain loads and stores of this buffer's words, the record copy and
    /// no call. Anything else (a full sub-buffer, a sub-buffer's first or last record, a
    /// flusher holding the buffer, a record too big) continues out of line.
    @inlinable
    @inline(__always)
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer) -> RelayWriteResult {
        let length = UInt64(bytes.count)
        // `inlineMaxRecord` is 0 where membarrier(2) is not expedited: there every record
        // continues out of line, which pays the full fence that `enter` then needs, so this
        // inlined path has no fence and no test for it.
        guard _fastPath(length &- 1 < self.fast.inlineMaxRecord) else {
            return self.writeOutOfLine(length: length) { RecordCopy.copy($0, from: bytes.baseAddress.unsafelyUnwrapped, count: $1) }
        }
        self.enter(expedited: true)
        let f = self.fast
        // relaxed: while we are busy, only this thread moves the position or commits
        // into this buffer (flushers wait for us to leave).
        let p = f.position.pointee.load(ordering: .relaxed)
        // One range check: the record lies strictly inside the current sub-buffer, after its
        // first record and before its last byte. With the closed bit kept in `offset`, a
        // closed buffer's offset is at least 2^63 and never passes.
        let offset = p & (ExclusiveFastPath.closedBit | f.offsetMask)
        guard _fastPath(offset > f.headerSize && offset &+ length < f.subbufSize) else {
            return self.writeAtEdge(length: length) { RecordCopy.copy($0, from: bytes.baseAddress.unsafelyUnwrapped, count: $1) }
        }
        f.position.pointee.store(p &+ length, ordering: .relaxed)
        RecordCopy.copy(
            f.data + Int(truncatingIfNeeded: p & f.dataMask), from: bytes.baseAddress.unsafelyUnwrapped, count: Int(length))
        self.commit(position: p, length: length)
        self.leave()
        return .written
    }

    /// Writes one record of `count` bytes that `body` renders in place, straight into the
    /// buffer: no copy (relayfs's `relay_reserve` on a buffer the caller owns, with the
    /// commit done on return). Same results and accounting as ``write(_:)-(UnsafeRawBufferPointer)``;
    /// `body` runs only when the record was accepted (`.written`), exactly once.
    ///
    /// As with ``write(_:)-(UnsafeRawBufferPointer)``, the common case is inlined into the
    /// caller, `body` included, so a formatter that renders into the buffer costs no call
    /// and no copy per record.
    ///
    /// `body` must write all `count` bytes (whatever it leaves is shipped as it was: bytes of
    /// an older record of the same slot) and return promptly: it runs while this writer is
    /// marked busy, so a `flush()` or `close()` on another thread waits for it (a flush gives
    /// up after 2 ms and counts a skip). It must not write to this writer or to its channel.
    ///
    /// - Parameters:
    ///   - count: The record's length in bytes: 1 up to the channel's largest record
    ///     (`subbufferSize` minus the header). A longer one is rejected as `.tooBig` (and
    ///     counted); 0 writes nothing and returns `.written`.
    ///   - body: Renders the record into the `count` bytes it is given.
    /// - Precondition: `count >= 0`.
    @inlinable
    @inline(__always)
    @discardableResult
    public func write(count: Int, _ body: (UnsafeMutableRawBufferPointer) -> Void) -> RelayWriteResult {
        // truncating: a negative count becomes huge and takes the out-of-line path, which traps.
        let length = UInt64(truncatingIfNeeded: count)
        guard _fastPath(length &- 1 < self.fast.inlineMaxRecord) else {
            precondition(count >= 0, "a record cannot have a negative length (\(count))")
            return self.writeOutOfLine(length: length) { body(UnsafeMutableRawBufferPointer(start: $0, count: $1)) }
        }
        self.enter(expedited: true)
        // The same steps as `write(_:)`, spelled out: one inlined helper taking the fill as a
        // closure, shared by both, made this path slower (relay-bench --api exclusive, --sink
        // null: 12.0–14.4 against 14.9–17.0 GB/s, alternating builds).
        let f = self.fast
        // relaxed: as in `write(_:)`.
        let p = f.position.pointee.load(ordering: .relaxed)
        // The same range check as `write(_:)`.
        let offset = p & (ExclusiveFastPath.closedBit | f.offsetMask)
        guard _fastPath(offset > f.headerSize && offset &+ length < f.subbufSize) else {
            return self.writeAtEdge(length: length) { body(UnsafeMutableRawBufferPointer(start: $0, count: $1)) }
        }
        f.position.pointee.store(p &+ length, ordering: .relaxed)
        body(UnsafeMutableRawBufferPointer(start: f.data + Int(truncatingIfNeeded: p & f.dataMask), count: count))
        self.commit(position: p, length: length)
        self.leave()
        return .written
    }

    /// Writes a record into the `length` bytes at a position it was given: `(start, length)`.
    @usableFromInline
    typealias Fill = (UnsafeMutableRawPointer, Int) -> Void

    /// A record that the inlined path does not take: too long (rejected and counted), empty
    /// (nothing to write), or any record on a host without expedited membarrier(2) (written
    /// here, behind a full fence).
    @usableFromInline
    @inline(never)
    func writeOutOfLine(length: UInt64, _ fill: Fill) -> RelayWriteResult {
        guard length &- 1 < self.fast.maxRecord else {
            return self.rejectLength(length)
        }
        self.enter(expedited: false)
        let f = self.fast
        // relaxed: as in `write(_:)`.
        let p = f.position.pointee.load(ordering: .relaxed)
        let offset = p & (ExclusiveFastPath.closedBit | f.offsetMask)
        guard offset > f.headerSize && offset &+ length < f.subbufSize else {
            return self.writeAtEdge(length: length, fill)
        }
        f.position.pointee.store(p &+ length, ordering: .relaxed)
        fill(f.data + Int(truncatingIfNeeded: p & f.dataMask), Int(length))
        self.commit(position: p, length: length)
        self.leave()
        return .written
    }

    /// Counts the record written at `position` in its sub-buffer's commit word, and delivers
    /// the sub-buffer if that completed it.
    @inlinable
    @inline(__always)
    func commit(position p: UInt64, length: UInt64) {
        let f = self.fast
        let slot = (p &>> f.shift) & f.slotMask
        let commit = f.commitWord(slot: slot)
        // relaxed: while busy this thread is the word's only writer: a flusher, whose seal adds
        // the padding here, parks it first, and `enter` acquired that flusher's clear; the
        // deliverer's reset is this thread's own. So the load returns the latest value.
        let updated = commit.pointee.load(ordering: .relaxed) &+ (length | (1 << 32))
        // releasing: orders the record bytes before the commit for any reader of
        // the word (the deliverer below is this thread).
        commit.pointee.store(updated, ordering: .releasing)
        if _slowPath(updated & 0xFFFF_FFFF == f.subbufSize) {
            self.deliver(slot: slot, records: updated &>> 32)
        }
    }

    /// The record path's other cases, while busy: a sub-buffer's first record (after its
    /// header) or last one (ending exactly at its end), or (``writeSlow(length:_:)``) a
    /// record that does not fit, a closed buffer. Returns having left.
    @usableFromInline
    @inline(never)
    func writeAtEdge(length: UInt64, _ fill: Fill) -> RelayWriteResult {
        let f = self.fast
        // relaxed: as in `write` (we are busy).
        let p = f.position.pointee.load(ordering: .relaxed)
        let offset = p & f.offsetMask
        guard offset != 0 && offset &+ length <= f.subbufSize && p & ExclusiveFastPath.closedBit == 0 else {
            return self.writeSlow(length: length, fill)
        }
        // The first record of the buffer's first sub-buffer (started empty at open or reset)
        // gives that sub-buffer its begin time, read before the position moves, as the shared
        // path does (`RelayChannel.reservedAtEdge`).
        let firstRecordTime = offset == f.headerSize ? Clock.realtimeNanoseconds : 0
        f.position.pointee.store(p &+ length, ordering: .relaxed)
        fill(f.data + Int(truncatingIfNeeded: p & f.dataMask), Int(length))
        self.reservedAtEdge(position: p, length: length, firstRecordTime: firstRecordTime)
        self.commit(position: p, length: length)
        self.leave()
        return .written
    }

    /// Writes one record from a contiguous collection of bytes.
    @inlinable
    @discardableResult
    public func write<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> RelayWriteResult {
        if let result = bytes.withContiguousStorageIfAvailable({ self.write(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return Array(bytes).withUnsafeBytes { self.write($0) }
    }

    /// A record longer than the largest record: rejected and counted.
    @usableFromInline
    @inline(never)
    func rejectLength(_ length: UInt64) -> RelayWriteResult {
        self.withChannel { $0.rejectLength(self.corePointer.pointee, length: length) }
    }

    /// The first or last record of a sub-buffer was reserved at `position` (headers,
    /// timestamps, the client's sub-buffer start callback).
    @usableFromInline
    @inline(never)
    func reservedAtEdge(position: UInt64, length: UInt64, firstRecordTime: UInt64) {
        self.withChannel {
            $0.reservedAtEdge(self.corePointer.pointee, position: position, length: length, firstRecordTime: firstRecordTime)
        }
    }

    /// The commit that completed sub-buffer `slot`: deliver it.
    @usableFromInline
    @inline(never)
    func deliver(slot: UInt64, records: UInt64) {
        self.withChannel { $0.deliver(self.corePointer.pointee, slot: slot, records: records) }
    }

    /// Switches, full buffers and block-mode waits: the shared algorithm (atomics).
    /// Called while busy; returns having left.
    @usableFromInline
    @inline(never)
    func writeSlow(length: UInt64, _ fill: Fill) -> RelayWriteResult {
        self.withChannel { self.writeSlow(length: length, fill, channel: $0) }
    }

    private func writeSlow(length: UInt64, _ fill: Fill, channel: RelayChannel) -> RelayWriteResult {
        let b = self.core
        var outcome = channel.reserveSlow(b, length: length)
        if case .full = outcome, b.mode == .block {
            // Never wait for space while marked busy: the consumer may need to flush us.
            self.leave()
            outcome = channel.reserveFailed(b, length: length, first: outcome)
            self.enter(expedited: b.expeditedFence)
        } else if case .reserved = outcome {
        } else {
            outcome = channel.reserveFailed(b, length: length, first: outcome)
        }
        let result: RelayWriteResult
        switch outcome {
        case .reserved(let position):
            fill(b.address(of: position), Int(length))
            channel.commitRecord(b, position: position, length: length)
            result = .written
        case .full, .lapped:
            result = .dropped
        case .timedOut:
            result = .timedOut
        case .closed:
            result = .closed
        }
        self.leave()
        return result
    }

    /// Marks the writer busy, waiting while a flusher holds the buffer.
    @inlinable
    @inline(__always)
    func enter(expedited: Bool) {
        let f = self.fast
        // relaxed + light fence: the asymmetric Dekker store (see AsymmetricFence); the
        // requester's membarrier orders it before our load below. `expedited` is a constant
        // at every call (true on the inlined path, which only runs where it holds).
        f.busy.pointee.store(1, ordering: .relaxed)
        AsymmetricFence.light(expedited: expedited)
        // acquiring: pairs with the flusher's releasing clear of the request, so its
        // seal is visible before we touch the position.
        if _slowPath(f.flushRequest.pointee.load(ordering: .acquiring) != 0) {
            self.enterAfterFlush()
        }
    }

    /// A flusher holds the buffer: step aside until it is done, then enter again.
    @usableFromInline
    @inline(never)
    func enterAfterFlush() {
        let b = self.core
        while true {
            // releasing: pairs with the flusher's acquiring load of `busy`.
            b.busy.pointee.store(0, ordering: .releasing)
            var spins = 0
            // acquiring: pairs with the flusher's releasing clear of the request.
            while b.flushRequest.pointee.load(ordering: .acquiring) != 0 {
                spins += 1
                if spins > 64 { sched_yield_() }
            }
            // As in `enter()`: relaxed store + light fence, then the acquiring check.
            b.busy.pointee.store(1, ordering: .relaxed)
            AsymmetricFence.light(expedited: b.expeditedFence)
            if b.flushRequest.pointee.load(ordering: .acquiring) == 0 { return }
        }
    }

    @inlinable
    @inline(__always)
    func leave() {
        // releasing: pairs with the flusher's acquiring load of `busy`: our position,
        // commit and record bytes happen before its seal.
        self.fast.busy.pointee.store(0, ordering: .releasing)
    }
}

/// The part of a `BufferCore` the exclusive writer's inlined record path reads: pointers
/// to the buffer's words inside its region and the geometry, all fixed while the channel
/// lives (see `BufferCore` for the region's invariants).
@usableFromInline
struct ExclusiveFastPath: @unchecked Sendable {
    /// The region's first byte: the position, `busy`, the flush request and the commit words
    /// are at fixed offsets from it, so the inlined path keeps one pointer live for all of
    /// them (fewer registers spilled around the record copy's call).
    @usableFromInline let control: UnsafeMutableRawPointer
    @usableFromInline let data: UnsafeMutableRawPointer
    @usableFromInline let subbufSize: UInt64
    @usableFromInline let shift: UInt64
    @usableFromInline let offsetMask: UInt64
    @usableFromInline let dataMask: UInt64
    @usableFromInline let slotMask: UInt64
    @usableFromInline let headerSize: UInt64
    @usableFromInline let maxRecord: UInt64
    /// `maxRecord` where membarrier(2) is expedited, else 0 (every record out of line).
    @usableFromInline let inlineMaxRecord: UInt64

    /// `RegionLayout`'s offsets, `slotStride` and `closedBit`, as literals the inlined path can
    /// fold (checked against the layout in `init`).
    @inlinable static var positionOffset: Int { 0x040 }
    @inlinable static var busyOffset: Int { 0x080 }
    @inlinable static var flushRequestOffset: Int { 0x0C0 }
    @inlinable static var commitWordsOffset: Int { 0x200 }
    @inlinable static var slotStride: Int { 32 }
    @inlinable static var closedBit: UInt64 { 1 << 63 }

    init(_ b: BufferCore) {
        precondition(
            Self.slotStride == RegionLayout.slotStride && Self.closedBit == RegionLayout.closedBit
                && b.base + Self.positionOffset == UnsafeMutableRawPointer(b.position)
                && b.base + Self.busyOffset == UnsafeMutableRawPointer(b.busy)
                && b.base + Self.flushRequestOffset == UnsafeMutableRawPointer(b.flushRequest)
                && b.base + Self.commitWordsOffset == UnsafeMutableRawPointer(b.commitWord(slot: 0))
                && b.base + Self.commitWordsOffset + Self.slotStride == UnsafeMutableRawPointer(b.commitWord(slot: 1)),
            "ExclusiveFastPath's offsets disagree with RegionLayout")
        self.control = b.base
        self.data = b.data
        self.subbufSize = b.subbufSize
        self.shift = b.shift
        self.offsetMask = b.offsetMask
        self.dataMask = b.dataMask
        self.slotMask = b.slotMask
        self.headerSize = b.headerSize
        self.maxRecord = b.maxRecord
        self.inlineMaxRecord = b.expeditedFence ? b.maxRecord : 0
    }

    @inlinable
    @inline(__always)
    func word(_ offset: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (self.control + offset).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    @inlinable @inline(__always) var position: UnsafeMutablePointer<Atomic<UInt64>> { self.word(Self.positionOffset) }
    @inlinable @inline(__always) var busy: UnsafeMutablePointer<Atomic<UInt64>> { self.word(Self.busyOffset) }
    @inlinable @inline(__always) var flushRequest: UnsafeMutablePointer<Atomic<UInt64>> {
        self.word(Self.flushRequestOffset)
    }

    @inlinable
    @inline(__always)
    func commitWord(slot: UInt64) -> UnsafeMutablePointer<Atomic<UInt64>> {
        self.word(Self.commitWordsOffset &+ Int(truncatingIfNeeded: slot) &* Self.slotStride)
    }
}

extension RelayChannel {
    /// Claims exclusive buffer `index` (in `sharedBuffers..<buffers`) for the calling owner.
    ///
    /// - Throws: ``RelayError`` `.exclusiveUnavailable` if the index is not an exclusive
    ///   buffer or another writer holds it.
    public func makeExclusiveWriter(buffer index: Int) throws(RelayError) -> RelayExclusiveWriter {
        guard index >= self.sharedBufferCount && index < self.bufferCount else {
            throw RelayError(
                code: .exclusiveUnavailable,
                message: "buffer \(index) is not an exclusive buffer; open the channel with "
                    + "exclusiveBuffers > 0 and use indexes \(self.sharedBufferCount)..<\(self.bufferCount)")
        }
        let b = self.cores[index]
        // acquiringAndReleasing: pairs with the previous owner's releasing store in deinit.
        guard b.exclusiveOwner.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged
        else {
            throw RelayError(
                code: .exclusiveUnavailable,
                message: "exclusive buffer \(index) is already owned by another writer; release it first")
        }
        _ = AsymmetricFence.isExpedited  // register membarrier before the first flush needs it
        return RelayExclusiveWriter(channel: self, core: self.cores + index)
    }

    /// Runs `body` while no exclusive writer is inside buffer `b`. For shared buffers it
    /// just runs `body` (their writers are lock-free against it).
    func withExclusiveWriterParked(_ b: BufferCore, waitForever: Bool, _ body: () -> Void) {
        // acquiring: pairs with the claim CAS.
        if b.exclusiveOwner.pointee.load(ordering: .acquiring) == 0 && b.index < self.sharedBufferCount {
            body()
            return
        }
        // Serialize flushers of this buffer.
        // acquiringAndReleasing: the acquiring half pairs with the previous flusher's
        // releasing clear at the end of this function, so its body (a seal) happens before
        // ours. Nothing relies on the releasing half: a writer that loads the request as 1
        // waits for the clear, which is what releases, and our own view of the writer's
        // `busy` is ordered by the heavy fence below, not by this CAS.
        var spins = 0
        while !b.flushRequest.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged {
            spins += 1
            if spins > 64 { sched_yield_() }
        }
        AsymmetricFence.heavy()
        b.count(RegionLayout.handshakesOffset)
        // acquiring: pairs with the writer's releasing store of busy = 0.
        let start = Clock.monotonicNanoseconds
        var parked = true
        spins = 0
        while b.busy.pointee.load(ordering: .acquiring) != 0 {
            spins += 1
            if spins > 64 {
                sched_yield_()
                if !waitForever && Clock.monotonicNanoseconds - start > 2_000_000 {
                    parked = false
                    break
                }
            }
        }
        if parked {
            body()
        } else {
            b.count(RegionLayout.flushSkipsOffset)
        }
        // releasing: pairs with the writer's acquiring load in `enter`.
        b.flushRequest.pointee.store(0, ordering: .releasing)
    }
}
