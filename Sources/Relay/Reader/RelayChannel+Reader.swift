import Synchronization

// The consumer side: in-order iteration of delivered sub-buffers, and
// relay_subbufs_consumed.
//
// One consumer per buffer at a time (a reader, or a shipper). The consumer owns the
// buffer's read cursor and its `consumed` word. So its own accesses to both are relaxed where
// they only read back what it stored (the cursor is never read by anyone else); its stores of
// `consumed` are sequentially consistent, because writers read that word (see
// `subbufsConsumed`).
extension RelayChannel {
    /// Runs `body` on the next delivered sub-buffer of `buffer`, in sequence order,
    /// seen in place without copying, and moves the read cursor past it.
    ///
    /// Reading does not release the sub-buffer: call ``subbufsConsumed(buffer:count:)``
    /// when done with it (relayfs's contract), or pass `consume: true`.
    ///
    /// In overwrite mode the reader may have been lapped: it skips to the oldest
    /// sub-buffer still in the buffer (``RelaySubbuffer/skippedBefore`` says how many
    /// were lost), and if a writer reuses the sub-buffer while `body` runs, the result is
    /// `.overwritten` instead of `.read`: a torn sub-buffer is never accepted. An
    /// `.overwritten` result carries the count of sub-buffers skipped before it as well, so
    /// every lost sub-buffer is reported exactly once (see ``RelayRead``).
    ///
    /// A delivered sub-buffer whose header this channel's engine did not write (the region
    /// can be shared memory another process writes) is not a programming error: the result
    /// is `.corrupt`, `body` does not run, the reader moves past it (and consumes it with
    /// `consume: true`) and ``RelayBufferStats/corruptSubbuffers`` counts it. So is, in the
    /// no-overwrite modes, a delivered sub-buffer whose slot state word another process
    /// overwrote (which would otherwise keep the reader, and then blocked writers, waiting
    /// forever): see `isCorruptState` for what counts as such.
    public func withNextSubbuffer<Value>(
        buffer index: Int,
        consume: Bool = false,
        _ body: (RelaySubbuffer) throws -> Value
    ) rethrows -> RelayRead<Value> {
        self.checkBufferIndex(index)
        let b = self.cores[index]
        let cursorWord = self.readCursors + index
        // relaxed (both): the consumer's own words, read back (see the top of this file).
        let first = max(cursorWord.pointee.load(ordering: .relaxed), b.consumed.pointee.load(ordering: .relaxed))
        var cursor = first
        while true {
            if b.mode == .overwrite {
                let produced = self.produced(b)
                if produced > b.subbufCount && cursor < produced - b.subbufCount {
                    cursor = produced - b.subbufCount
                }
            }
            let slot = b.slot(ofSequence: cursor)
            let expected = (cursor << 2) | RegionLayout.phaseDelivered
            // acquiring: pairs with the deliverer's store; the whole sub-buffer is visible.
            let state = b.stateWord(slot: slot).pointee.load(ordering: .acquiring)
            if state == expected { break }
            if b.mode == .overwrite && state >> 2 > cursor {
                // Lapped (the open sub-buffer, or one started since our produced check,
                // reuses the slot): try the next one.
                cursor += 1
                continue
            }
            if b.mode != .overwrite && self.passCorruptState(b, sequence: cursor, state: state) {
                // Delivered, but its state word is not one the engine stores: passed as corrupt
                // (reported before it is consumed). No-overwrite modes skip nothing before it.
                cursorWord.pointee.store(cursor + 1, ordering: .relaxed)
                if consume { self.subbufsConsumed(buffer: index, count: 1) }
                return .corrupt(sequence: cursor, skippedBefore: 0)
            }
            // Not delivered yet. The cursor stays put, so the call that reads it still
            // counts every sub-buffer skipped before it in `skippedBefore`.
            return .none
        }
        // Overwrite mode: sub-buffers lapped before the reader got to them.
        let skipped = cursor - first
        let packet = UnsafeRawBufferPointer(start: b.subbuffer(sequence: cursor), count: Int(b.subbufSize))
        guard let view = RelaySubbuffer(packet: packet, skippedBefore: skipped),
            self.isOwnHeader(view, of: b, sequence: cursor)
        else {
            // Overwrite mode: a writer lapped us and is rewriting the header, not corruption.
            // (Right after the header reads, which the check's fence orders before its load.)
            let lapped = b.mode == .overwrite && !self.stillIntact(b, sequence: cursor)
            cursorWord.pointee.store(cursor + 1, ordering: .relaxed)
            // Delivered (and, in overwrite mode, not reused since) with a header the engine did
            // not write: another process wrote into the region. An input error: report it and go
            // on, so the channel does not wedge. Reported before it is consumed below (see
            // `RelayCallbacks.corrupt`).
            if !lapped { self.reportCorrupt(b, sequence: cursor) }
            self.reportOverwritten(buffer: index, sequences: first..<(lapped ? cursor + 1 : cursor))
            // Gone like the skipped ones: consumed too (see the read below). The cursor moved
            // past the skipped ones, so this result reports them: no later read will.
            if consume { self.subbufsConsumed(buffer: index, count: Int(skipped) + 1) }
            if lapped { return .overwritten(sequence: cursor, skippedBefore: skipped) }
            return .corrupt(sequence: cursor, skippedBefore: skipped)
        }
        let value = try body(view)
        cursorWord.pointee.store(cursor + 1, ordering: .relaxed)
        if b.mode == .overwrite && !self.stillIntact(b, sequence: cursor) {
            self.reportOverwritten(buffer: index, sequences: first..<cursor + 1)
            // Gone like the skipped ones: consumed too (see below).
            if consume { self.subbufsConsumed(buffer: index, count: Int(skipped) + 1) }
            // With the skipped ones: the cursor moved past them, so no later read reports them.
            return .overwritten(sequence: cursor, skippedBefore: skipped)
        }
        self.reportOverwritten(buffer: index, sequences: first..<cursor)
        if consume {
            // With the sub-buffers skipped before it: they are gone, so consumed too (else
            // the consumed count lags behind the reader and every later reuse counts as
            // overwriting unconsumed data).
            self.subbufsConsumed(buffer: index, count: Int(skipped) + 1)
        }
        return .read(value)
    }

    /// Overwrite mode: the consumer passes the sub-buffers `sequences` of buffer `index` without
    /// reading them, because writers reused their slots first: tells the client
    /// (``RelayCallbacks/overwritten``). The caller releases them only after this returns.
    package func reportOverwritten(buffer index: Int, sequences: Range<UInt64>) {
        guard !sequences.isEmpty, let overwritten = self.callbacks.overwritten else { return }
        overwritten(SubbufferOverwrite(buffer: index, sequences: sequences))
    }

    /// The consumer passes sub-buffer `sequence` of `b` without reading it because it is corrupt:
    /// counts it in ``RelayBufferStats/corruptSubbuffers`` and tells the client
    /// (``RelayCallbacks/corrupt``). The caller releases it only after this returns.
    func reportCorrupt(_ b: BufferCore, sequence: UInt64) {
        b.count(RegionLayout.corruptOffset)
        self.callbacks.corrupt?(SubbufferCorruption(buffer: b.index, sequence: sequence))
    }

    /// No-overwrite modes: whether the consumer, which needs sub-buffer `sequence` of `b` next and
    /// loaded `state` (not `sequence` delivered) from its slot, may pass it as corrupt: the slot
    /// already holds the skipped mark, or `isCorruptState` holds and this call stores the mark
    /// (then it counts and reports the sub-buffer, before the caller releases it). The mark is
    /// what lets `subbufsConsumed` release the slot later, whatever else changes meanwhile.
    func passCorruptState(_ b: BufferCore, sequence: UInt64, state: UInt64) -> Bool {
        let skipped = (sequence << 2) | RegionLayout.phaseSkipped
        if state == skipped { return true }
        guard let corrupt = self.isCorruptState(b, sequence: sequence) else { return false }
        // relaxed: the mark only has to be seen by this consumer's own `subbufsConsumed` (program
        // order), and the releasing store of `consumed` there orders it before the stores of the
        // slot's next incarnation, which writers make only after acquiring that store; the
        // compare-exchange keeps a delivery store that came in meanwhile (then this is no longer
        // corrupt).
        guard b.stateWord(slot: b.slot(ofSequence: sequence)).pointee
            .compareExchange(expected: corrupt, desired: skipped, ordering: .relaxed).exchanged
        else { return false }
        self.reportCorrupt(b, sequence: sequence)
        return true
    }

    /// No-overwrite modes: the state word of sub-buffer `sequence`'s slot if it is corrupt, else `nil`.
    ///
    /// Corrupt means no engine store can have left it there and no engine store will ever change
    /// it, so a consumer waiting for `sequence` to be delivered would wait forever (and then, the
    /// consumed count standing still, so would block-mode writers). That is certain only for a
    /// sub-buffer that was delivered: a sub-buffer that is not sealed yet, or still has writers
    /// inside, gets its state word stored by the engine again (the switch stores `sequence`
    /// being written, the delivery `sequence` delivered), which overwrites anything another
    /// process wrote before. So the check needs, in this order:
    /// 1. `sequence` sealed, and every sealed sub-buffer delivered: the delivered count (each
    ///    delivery adds one, and only sealed sub-buffers are delivered) read *before* the position
    ///    reaches the position's sealed count. Then `sequence`'s switcher stored `sequence` being
    ///    written before its header commit, which came before the delivery we count.
    /// 2. The slot's commit word back at 0 (the deliverer resets it before its count, so after
    ///    the count it reads 0 unless someone else wrote it: a consumer that released the slot
    ///    before a reset could see the reset clobber the next incarnation's header commit).
    /// 3. The state word, loaded after both, is not `sequence` delivered. The deliverer stores
    ///    that before its count, so after the count nothing else is legitimate: not `sequence`
    ///    being written (a stranger's write of exactly that value is detected too), an older
    ///    sequence (the slot's previous incarnation, or the 0 of a never-used slot), a later one
    ///    (no writer is ahead of the consumer in these modes), or phase bits 2 or 3 (the skipped
    ///    mark is handled by the caller).
    ///
    /// Overwrite mode is not checked: there writers may be ahead of the consumer, and the writer
    /// that switches into the slot next checks its state word instead (`repairCorruptState`).
    func isCorruptState(_ b: BufferCore, sequence: UInt64) -> UInt64? {
        // A cheap filter first: the common case, waiting for the open sub-buffer, ends here.
        guard b.mode != .overwrite, sequence < self.produced(b) else { return nil }
        // acquiring: pairs with the deliverer's releasing add (`deliver`): every delivery counted
        // here, its seal, and the switcher's stores before it, happen before the loads below.
        let delivered = b.word(RegionLayout.deliveredOffset).pointee.load(ordering: .acquiring)
        // acquiring (in `produced`): orders the loads below after it as well.
        let sealed = self.produced(b)
        guard sequence < sealed, delivered >= sealed else { return nil }
        let slot = b.slot(ofSequence: sequence)
        // relaxed (both): ordered after the acquiring loads above, which is all they need.
        guard b.commitWord(slot: slot).pointee.load(ordering: .relaxed) == 0 else { return nil }
        let state = b.stateWord(slot: slot).pointee.load(ordering: .relaxed)
        if state == (sequence << 2) | RegionLayout.phaseDelivered { return nil }
        if state == (sequence << 2) | RegionLayout.phaseSkipped { return nil }
        return state
    }

    /// Whether `view`, decoded from sub-buffer `sequence` of `b`, is a header this engine wrote
    /// there: `RelaySubbuffer(packet:)` checked that it is consistent in itself; this checks
    /// that it belongs to this channel, buffer and sequence.
    func isOwnHeader(_ view: RelaySubbuffer, of b: BufferCore, sequence: UInt64) -> Bool {
        view.sequence == sequence && view.buffer == b.index
            && RegionLayout.engineHeaderSize + view.clientHeader.count == Int(b.headerSize)
    }

    /// Seqlock-style validation: were the reads of sub-buffer `sequence` that precede
    /// this call free of concurrent overwrites? A slot is reused only when the switch to
    /// `sequence + subbufCount` moves the position word, and writers write only after
    /// that CAS; so if the position has not reached it after our reads, they were clean.
    ///
    /// Correct without TSO: the reader's fence here and the switcher's fence after its
    /// CAS (`reserveSlow`) make "saw a byte of the new incarnation" imply "sees the
    /// switch" on arm64 too.
    func stillIntact(_ b: BufferCore, sequence: UInt64) -> Bool {
        // acquiring fence: the seqlock reader's fence. Orders the caller's reads of the
        // sub-buffer (header and records, plain loads) before the position load below;
        // pairs with the releasing fence a switcher issues after the CAS that reuses the
        // slot (`reserveSlow`): if any of our reads saw a store made after that fence,
        // the load below sees the switch. Without it an arm64 core may satisfy the
        // position load before the data loads and accept a torn sub-buffer.
        atomicMemoryFence(ordering: .acquiring)
        // relaxed: ordered after the reads by the fence above; compared only.
        let p = b.position.pointee.load(ordering: .relaxed) & ~RegionLayout.closedBit
        let open = p &>> b.shift
        let started = p & b.offsetMask == 0 ? open &- 1 : open
        return started < sequence &+ b.subbufCount
    }

    /// Tells the channel that `count` more sub-buffers of `buffer` were consumed
    /// (relayfs `relay_subbufs_consumed`: the number newly consumed, not a total).
    /// Frees them for writers in no-overwrite mode and wakes blocked writers.
    ///
    /// The consumed count never exceeds what was delivered in order: extra counts are
    /// ignored (relayfs clamps to produced; clamping to delivered also protects a
    /// sub-buffer that still has a writer inside, so the reader still gets it once that
    /// writer commits). In overwrite mode, sub-buffers overwritten before the consumer got
    /// to them count as delivered.
    public func subbufsConsumed(buffer index: Int, count: Int) {
        self.checkBufferIndex(index)
        precondition(count >= 0, "consumed count must not be negative")
        let b = self.cores[index]
        // relaxed: only the consumer writes `consumed`.
        let old = b.consumed.pointee.load(ordering: .relaxed)
        var consumed = old
        let target = old &+ UInt64(count)
        if b.mode == .overwrite {
            // Sub-buffers a whole buffer behind the newest sealed one were overwritten: gone,
            // so they count as consumed without looking at their slots.
            let produced = self.produced(b)
            if produced > b.subbufCount && consumed < produced - b.subbufCount {
                consumed = min(target, produced - b.subbufCount)
            }
        }
        while consumed < target {
            // acquiring: pairs with the deliverer's store.
            let state = b.stateWord(slot: b.slot(ofSequence: consumed)).pointee.load(ordering: .acquiring)
            // Skipped: a corrupt state word the consumer passed (`passCorruptState`), released like
            // a delivered sub-buffer.
            if state != (consumed << 2) | RegionLayout.phaseDelivered && state != (consumed << 2) | RegionLayout.phaseSkipped {
                // Overwrite mode: a later incarnation in the slot means this one was delivered
                // and then overwritten (a slot is reused only after delivery): gone, consumed.
                // Anything else (sealed but a writer still inside, or not sealed) stops here.
                if b.mode != .overwrite || state >> 2 <= consumed { break }
            }
            consumed &+= 1
        }
        if consumed == old { return }
        // sequentiallyConsistent: releases our reads of the consumed sub-buffers to the
        // writers that reuse them (pairs with the acquiring load in `space`), and is the
        // consumer half of the Dekker pair with `waitForSpace`.
        b.consumed.pointee.store(consumed, ordering: .sequentiallyConsistent)
        self.wakeBlockedWriters(b)
    }

    /// Moves buffer `index`'s consumed count to `sequence` (the next sub-buffer the
    /// consumer needs) if that is ahead. For shippers that track completions themselves.
    package func setConsumed(buffer index: Int, to sequence: UInt64) {
        let b = self.cores[index]
        // relaxed: the consumer's own word, read back (see the top of this file).
        let old = b.consumed.pointee.load(ordering: .relaxed)
        if sequence > old {
            self.subbufsConsumed(buffer: index, count: Int(sequence - old))
        }
    }
}

// MARK: Package API for shippers (zero-copy access to regions)

/// Where one delivered sub-buffer lives, for a shipper that hands memory to the kernel.
package struct DeliveredSubbuffer: Sendable, Hashable {
    /// Buffer index.
    package let buffer: Int
    /// Sequence number.
    package let sequence: UInt64
    /// Byte offset of the sub-buffer within the buffer's region.
    package let regionOffset: Int
    /// Sub-buffer size (a packet).
    package let size: Int
    /// Offset of the first record within the sub-buffer.
    package let headerSize: Int
    /// Bytes of records.
    package let contentSize: Int
    /// Records.
    package let records: Int
    /// CLOCK_REALTIME ns of the seal.
    package let endTimeNanoseconds: UInt64
    /// CLOCK_REALTIME ns of the start.
    package let beginTimeNanoseconds: UInt64
}

extension RelayChannel {
    /// The mapped region of buffer `index`: control state, then the sub-buffers.
    package func region(buffer index: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: self.regions[index].base, count: self.regions[index].size)
    }

    /// The sub-buffers of buffer `index`, from the first to the region's end: what a shipper
    /// registers with io_uring. Every sub-buffer (header included) lies inside it, and at
    /// most 1 GiB (the configuration's limit), io_uring's limit per registered buffer, which
    /// the whole region, control state included, can exceed by a few pages.
    package func subbufferArea(buffer index: Int) -> UnsafeMutableRawBufferPointer {
        let offset = self.cores[index].data - self.regions[index].base
        return UnsafeMutableRawBufferPointer(start: self.regions[index].base + offset, count: self.regions[index].size - offset)
    }

    /// The memfd / shm descriptor behind buffer `index`, or -1 for anonymous memory.
    package func regionDescriptor(buffer index: Int) -> Int32 {
        self.regions[index].fd
    }

    /// The shared-memory file of buffer `index`, for `.sharedMemory` backing.
    public func regionPath(buffer index: Int) -> String? {
        self.regions[index].path
    }

    /// Sub-buffers sealed so far in buffer `index`.
    package func producedCount(buffer index: Int) -> UInt64 {
        self.produced(self.cores[index])
    }

    /// Buffer `index`'s consumed count.
    package func consumedCount(buffer index: Int) -> UInt64 {
        // relaxed: a count read on its own; its callers (the shipper's bookkeeping, relayd's
        // accounting) read no memory through it. `space` acquires it where writers rely on it.
        self.cores[index].consumed.pointee.load(ordering: .relaxed)
    }

    /// Sub-buffer `sequence` of buffer `index` if it is delivered (and, in overwrite
    /// mode, not yet reused).
    package func delivered(buffer index: Int, sequence: UInt64) -> DeliveredSubbuffer? {
        let b = self.cores[index]
        let slot = b.slot(ofSequence: sequence)
        // acquiring: pairs with the deliverer's store; header and records are visible.
        let state = b.stateWord(slot: slot).pointee.load(ordering: .acquiring)
        guard state == (sequence << 2) | RegionLayout.phaseDelivered else { return nil }
        let h = b.subbuffer(sequence: sequence)
        return DeliveredSubbuffer(
            buffer: index,
            sequence: sequence,
            regionOffset: h - b.base,
            size: Int(b.subbufSize),
            headerSize: Int(b.headerSize),
            contentSize: Int(h.load(fromByteOffset: SubbufferHeaderLayout.contentSizeOffset, as: UInt32.self)),
            records: Int(h.load(fromByteOffset: SubbufferHeaderLayout.recordsOffset, as: UInt32.self)),
            endTimeNanoseconds: h.load(fromByteOffset: SubbufferHeaderLayout.endTimeOffset, as: UInt64.self),
            beginTimeNanoseconds: h.load(fromByteOffset: SubbufferHeaderLayout.beginTimeOffset, as: UInt64.self)
        )
    }

    /// Whether `packet`, the bytes of delivered sub-buffer `d` (in place, or in overwrite mode a
    /// copy that ``isIntact(buffer:sequence:)`` then vouched for), has a header this engine wrote
    /// there, and the sizes `d` was built from. A shipper must check before handing `d`'s content
    /// to the kernel: the region can be shared memory another process wrote, and a corrupt
    /// content size would point past the sub-buffer. A corrupt one counts in
    /// ``RelayBufferStats/corruptSubbuffers`` and is reported to ``RelayCallbacks/corrupt``
    /// before this returns; the shipper must not ship it, and must release it.
    package func isSound(_ d: DeliveredSubbuffer, packet: UnsafeRawBufferPointer) -> Bool {
        let b = self.cores[d.buffer]
        if let view = RelaySubbuffer(packet: packet), self.isOwnHeader(view, of: b, sequence: d.sequence),
            view.content.count == d.contentSize, view.records == d.records
        {
            return true
        }
        self.reportCorrupt(b, sequence: d.sequence)
        return false
    }

    /// No-overwrite modes: whether the shipper, which needs sub-buffer `sequence` of buffer `index`
    /// next and found it not delivered, may pass it as corrupt: its slot's state word is not one
    /// the engine stores, and the sub-buffer was delivered (see `isCorruptState`). A `true` counts
    /// it in ``RelayBufferStats/corruptSubbuffers`` and reports it to ``RelayCallbacks/corrupt``
    /// (once, when the slot is first marked); the shipper must not ship it, and must release it.
    package func passCorruptSlot(buffer index: Int, sequence: UInt64) -> Bool {
        let b = self.cores[index]
        guard b.mode != .overwrite else { return false }
        // acquiring: as in `delivered(buffer:sequence:)`.
        let state = b.stateWord(slot: b.slot(ofSequence: sequence)).pointee.load(ordering: .acquiring)
        if state == (sequence << 2) | RegionLayout.phaseDelivered { return false }
        return self.passCorruptState(b, sequence: sequence, state: state)
    }

    /// Whether ``passCorruptSlot(buffer:sequence:)`` would pass sub-buffer `sequence` now; changes
    /// nothing (for a shipper's re-check before it sleeps).
    package func hasCorruptSlot(buffer index: Int, sequence: UInt64) -> Bool {
        let b = self.cores[index]
        guard b.mode != .overwrite else { return false }
        // relaxed: compared only; `passCorruptSlot` decides.
        let state = b.stateWord(slot: b.slot(ofSequence: sequence)).pointee.load(ordering: .relaxed)
        return state == (sequence << 2) | RegionLayout.phaseSkipped || self.isCorruptState(b, sequence: sequence) != nil
    }

    /// The oldest sequence still present in buffer `index` when the consumer was lapped
    /// (overwrite mode), else `nil`.
    package func lapTarget(buffer index: Int, nextSequence: UInt64) -> UInt64? {
        let b = self.cores[index]
        guard b.mode == .overwrite else { return nil }
        let produced = self.produced(b)
        if produced > b.subbufCount && nextSequence < produced - b.subbufCount {
            return produced - b.subbufCount
        }
        // acquiring: pairs with the deliverer's state store, as in `space`. A later incarnation's
        // "being written" word (its switcher's relaxed store) orders nothing, and nothing is
        // read through it here: only its sequence number is used.
        let state = b.stateWord(slot: b.slot(ofSequence: nextSequence)).pointee.load(ordering: .acquiring)
        if state >> 2 > nextSequence { return nextSequence + 1 }
        return nil
    }

    /// Whether sub-buffer `sequence` of buffer `index` is still intact (overwrite mode:
    /// not reused since it was delivered).
    package func isIntact(buffer index: Int, sequence: UInt64) -> Bool {
        self.stillIntact(self.cores[index], sequence: sequence)
    }

    /// The channel's mode.
    public var mode: RelayMode { self.configuration.mode }
}
