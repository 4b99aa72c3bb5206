import Synchronization

// The public write API: relayfs's relay_write, relay_reserve/relay_commit.
extension RelayChannel {
    /// Writes one record into the buffer of the CPU the caller runs on (relayfs
    /// `relay_write`). Lock-free; no system call and no allocation unless the mode
    /// makes the caller wait for space.
    ///
    /// Callable from any thread at any time. Records never span sub-buffers; a record
    /// larger than ``maxRecordSize`` is rejected and counted, never truncated.
    ///
    /// - Returns: whether the record was written, and if not why (every loss is counted
    ///   in ``stats()``).
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer) -> RelayWriteResult {
        return self.write(bytes, into: self.currentSharedCore())
    }

    /// Writes one record from a contiguous collection of bytes (`[UInt8]`, a
    /// `String.UTF8View` with contiguous storage, …).
    @discardableResult
    public func write<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> RelayWriteResult {
        if let result = bytes.withContiguousStorageIfAvailable({ self.write(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        let copy = Array(bytes)
        return copy.withUnsafeBytes { self.write($0) }
    }

    @inline(__always)
    func write(_ bytes: UnsafeRawBufferPointer, into b: UnsafeMutablePointer<BufferCore>) -> RelayWriteResult {
        let length = UInt64(bytes.count)
        // `length - 1 < maxRecord` rejects 0 and anything too big in one comparison.
        guard _fastPath(length &- 1 < b.pointee.maxRecord) else {
            return self.rejectLength(b.pointee, length: length)
        }
        switch self.reserveHandlingMode(b, length: length) {
        case .reserved(let position):
            RecordCopy.copy(
                b.pointee.address(of: position), from: bytes.baseAddress.unsafelyUnwrapped, count: Int(length))
            self.commitRecord(b, position: position, length: length)
            return .written
        case .full, .lapped:
            return .dropped
        case .timedOut:
            return .timedOut
        case .closed:
            return .closed
        }
    }

    @inline(never)
    func rejectLength(_ b: BufferCore, length: UInt64) -> RelayWriteResult {
        if length == 0 { return .written }  // nothing to write; not a record
        self.countLoss(b, RegionLayout.tooBigOffset)
        return .tooBig
    }

    /// Reserves `length` bytes for one record in the buffer of the CPU the caller runs on
    /// (relayfs `relay_reserve`). Write into the reservation, then call
    /// ``RelayReservation/commit()``; until then the sub-buffer holding it cannot be
    /// delivered, but every other sub-buffer can.
    ///
    /// - Throws: ``RelayReserveError`` (each counted in ``stats()`` except `.emptyReservation`).
    /// - Warning: The channel must outlive the reservation.
    public func reserve(_ length: Int) throws(RelayReserveError) -> RelayReservation {
        return try self.reserve(length, in: self.currentSharedCore())
    }

    /// Reserves like ``reserve(_:)``, but in ``RelayMode/block(timeout:)`` waits for space at
    /// most `timeout` instead of the channel's timeout (in the other modes it is
    /// ``reserve(_:)``). For a write that must not wait longer than a deadline of its own,
    /// such as a last record written at shutdown.
    ///
    /// Running out of `timeout` does not mark the buffer stalled (only the channel's own
    /// timeout does, see ``RelayMode/block(timeout:)``): other writes keep waiting as the
    /// mode says, forever on a `.block(timeout: nil)` channel. Nor does a buffer already
    /// marked stalled make this call fail at once, as it does other writes: it waits for
    /// space for up to `timeout`.
    ///
    /// - Throws: ``RelayReserveError``; `.timedOut` when `timeout` passed without space.
    public func reserve(_ length: Int, waitingAtMost timeout: Duration) throws(RelayReserveError) -> RelayReservation {
        return try self.reserve(length, in: self.currentSharedCore(), timeoutNanoseconds: Clock.nanoseconds(timeout))
    }

    @inline(__always)
    func reserve(
        _ length: Int, in b: UnsafeMutablePointer<BufferCore>, timeoutNanoseconds: Int64? = nil
    ) throws(RelayReserveError) -> RelayReservation {
        // truncating: a negative length becomes huge and fails the check below, which
        // reports it as empty (a plain conversion would trap first).
        let size = UInt64(truncatingIfNeeded: length)
        guard _fastPath(size &- 1 < b.pointee.maxRecord) else {
            if length <= 0 { throw .emptyReservation }
            self.countLoss(b.pointee, RegionLayout.tooBigOffset)
            throw .tooBig
        }
        switch self.reserveHandlingMode(b, length: size, timeoutNanoseconds: timeoutNanoseconds) {
        case .reserved(let position):
            return RelayReservation(channel: self, core: b, position: position, length: size)
        case .full, .lapped:
            throw .dropped
        case .timedOut:
            throw .timedOut
        case .closed:
            throw .closed
        }
    }

    // MARK: Flush, close, reset

    /// Forces a sub-buffer switch on every buffer (relayfs `relay_flush`): each partly
    /// filled sub-buffer is sealed, and delivered as soon as its in-flight reservations
    /// commit. Empty sub-buffers are left alone, so flushing an idle channel costs a few
    /// loads per buffer (an exclusive buffer with nothing written since its last seal
    /// included: its writer is not disturbed, and no membarrier(2) is paid).
    ///
    /// Safe to call from any thread (a timer) while writers run: the seal is a CAS on the
    /// position word, like a reserve, so nothing is lost or torn. Concurrent flushes are
    /// safe too, but a flush that finds a sub-buffer already sealed by another one returns
    /// at once, possibly before that call delivered it: a reader that drains after its own
    /// flush sees everything only when no other flush runs at the same time.
    public func flush() {
        for index in 0..<self.bufferCount {
            self.flush(buffer: index)
        }
    }

    /// Flushes one buffer. See ``flush()``.
    public func flush(buffer index: Int) {
        self.checkBufferIndex(index)
        let b = self.cores[index]
        // Nothing written since the last seal (the position is at a sub-buffer start):
        // nothing to seal, so no handshake with an exclusive writer either (a shared
        // buffer's `sealCurrent` makes the same check before its CAS).
        // relaxed: an exclusive writer moves the position with plain (relaxed) stores, so
        // no ordering could be acquired from it anyway; what flush must deliver is what
        // was committed before this call, and such a write's position store happens
        // before this load, which by coherence returns it or a later value. The position
        // only moves forward, so a later value at a sub-buffer start means that
        // sub-buffer was sealed after the write, and it is delivered as soon as the
        // reservations in it commit (the same promise a sealing flush makes). A write
        // concurrent with this call is not flush's to deliver.
        if b.position.pointee.load(ordering: .relaxed) & b.offsetMask <= b.headerSize {
            return
        }
        self.withExclusiveWriterParked(b, waitForever: false) {
            self.sealCurrent(b, close: false)
        }
    }

    /// Whether buffer `index` holds records in a sub-buffer that is not sealed yet.
    /// A few loads; used by shippers to decide whether a switch timer is needed.
    public func hasPartialSubbuffer(buffer index: Int) -> Bool {
        self.checkBufferIndex(index)
        let b = self.cores[index]
        // relaxed: a hint; the flush itself is a CAS.
        let p = b.position.pointee.load(ordering: .relaxed)
        let offset = p & b.offsetMask
        return offset != 0 && offset > b.headerSize
    }

    /// Seals the open sub-buffer of `b` if it has records; with `close`, also sets the
    /// closed bit so no further reserve succeeds.
    func sealCurrent(_ b: BufferCore, close: Bool) {
        // relaxed: a guess that the loop's CAS on the position validates.
        var p = b.position.pointee.load(ordering: .relaxed)
        while true {
            let offset = p & b.offsetMask
            let sequence = (p & ~RegionLayout.closedBit) &>> b.shift
            let sealNeeded = offset != 0 && offset > b.headerSize
            var desired = p
            if sealNeeded {
                desired = ((sequence &+ 1) &<< b.shift) | (p & RegionLayout.closedBit)
            }
            if close {
                desired |= RegionLayout.closedBit
            }
            if desired == p { return }
            let (exchanged, current) = b.compareExchangePosition(expected: p, desired: desired)
            if !exchanged {
                p = current
                continue
            }
            if sealNeeded {
                b.count(RegionLayout.flushesOffset)
                self.seal(b, sequence: sequence, padding: b.subbufSize &- offset, flags: close ? .closed : .flushed)
            }
            return
        }
    }

    /// Closes the channel (relayfs `relay_close`): further writes fail with `.closed`,
    /// blocked writers wake up and fail, and every partly filled sub-buffer is sealed so
    /// that it is delivered once its in-flight reservations commit. Idempotent.
    ///
    /// The memory stays mapped until the channel is deinitialized, so a consumer can
    /// drain what was delivered.
    public func close() {
        // acquiringAndReleasing: the exchange picks the one call that closes. Its releasing half
        // pairs with the acquiring load in `isClosed`: whoever sees the channel closed sees what
        // this thread did before closing it; the acquiring half gives a later call (which returns
        // at once) the same of the first. Writers do not look at this flag: the closed bit that
        // `sealCurrent` sets in each position word below is what stops them.
        if self.closedState.exchange(true, ordering: .acquiringAndReleasing) { return }
        for index in 0..<self.bufferCount {
            let b = self.cores[index]
            self.withExclusiveWriterParked(b, waitForever: true) {
                self.sealCurrent(b, close: true)
            }
            self.wakeBlockedWriters(b)
        }
        // Whatever the consumer sleeps for, it learns of the close now.
        self.wakeConsumer(threshold: .waitingForCompletions, buffer: self.bufferCount)
    }

    /// Resets the channel to its initial state without remapping memory (relayfs
    /// `relay_reset`): positions, sequences, consumed counts and statistics go back to
    /// zero and a closed channel reopens.
    ///
    /// Only for an idle channel: no thread may write, reserve or read concurrently.
    ///
    /// - Throws: ``RelayError`` `.notIdle` if a reservation is still uncommitted, or a
    ///   block-mode writer is asleep waiting for space (the channel is left unchanged).
    public func reset() throws(RelayError) {
        for index in 0..<self.bufferCount {
            let b = self.cores[index]
            // A writer asleep in `waitForSpace` would sleep on through the reset: zeroing the
            // futex word and `waiters` wakes no one, and with `waiters` zeroed no later
            // `subbufsConsumed` or `close()` would wake it either (forever, without a timeout).
            // sequentiallyConsistent: pairs with the writer's sequentially consistent increment
            // of `waiters` in `waitForSpace`, made before it counts its wait and sleeps.
            if b.waiters.pointee.load(ordering: .sequentiallyConsistent) != 0 {
                throw RelayError(
                    code: .notIdle,
                    message: "reset() needs an idle channel, but a writer is blocked waiting for space in buffer "
                        + "\(index); free space with subbufsConsumed, or close() the channel and let blocked "
                        + "writers return, first")
            }
            // acquiring (position, commit and state words): each pairs with the releasing half of
            // the writer's CAS or commit-word add, or the deliverer's state store, that left the
            // value, so a writer's last reservation, commit or delivery happens before the
            // reinitialization below. On an idle channel (the caller's promise) they are final.
            let p = b.position.pointee.load(ordering: .acquiring)
            let offset = p & b.offsetMask
            let sequence = (p & ~RegionLayout.closedBit) &>> b.shift
            if offset != 0 {
                let committed = b.commitWord(slot: b.slot(ofSequence: sequence)).pointee.load(ordering: .acquiring)
                if committed & 0xFFFF_FFFF != offset {
                    throw RelayError(
                        code: .notIdle,
                        message: "reset() needs an idle channel, but buffer \(index) has an uncommitted reservation; "
                            + "commit or drop every reservation and stop writers first")
                }
            }
            // Sealed sub-buffers are those before `sequence` either way: at offset 0 the
            // position names the next sub-buffer, not started yet, and otherwise the open one.
            let sealedLimit = sequence
            let firstUnsettled = sealedLimit > b.subbufCount ? sealedLimit - b.subbufCount : 0
            var s = firstUnsettled
            while s < sealedLimit {
                let state = b.stateWord(slot: b.slot(ofSequence: s)).pointee.load(ordering: .acquiring)
                // Skipped (a corrupt state word the consumer passed) is settled too.
                if state >> 2 == s && state & 3 != RegionLayout.phaseDelivered && state & 3 != RegionLayout.phaseSkipped {
                    throw RelayError(
                        code: .notIdle,
                        message: "reset() needs an idle channel, but buffer \(index) sub-buffer \(s) still has an "
                            + "uncommitted reservation; commit or drop every reservation first")
                }
                s += 1
            }
        }
        for index in 0..<self.bufferCount {
            let b = self.cores[index]
            // An exclusive buffer stays claimed by its writer, which outlives the reset: only
            // its deinit may release it (else a second writer could claim it and both would
            // move its words with plain stores).
            // relaxed (both): the channel is idle (the caller's promise); the claim CAS and the
            // writer's releasing store in deinit still pair with each other.
            let owner = b.exclusiveOwner.pointee.load(ordering: .relaxed)
            Self.initializeRegion(b, geometry: self.geometry, mode: b.mode)
            b.exclusiveOwner.pointee.store(owner, ordering: .relaxed)
            self.readCursors[index].store(0, ordering: .relaxed)
            // Idle channel (the caller's promise): locked instructions, no remote path.
            self.startSubbuffer(
                b.withoutOwner, sequence: 0, beginTime: Clock.realtimeNanoseconds, previousPadding: nil, overwriting: false)
        }
        // releasing: pairs with the acquiring load in `isClosed`, so a thread that sees the
        // channel open again sees the reinitialized regions.
        self.closedState.store(false, ordering: .releasing)
    }
}
