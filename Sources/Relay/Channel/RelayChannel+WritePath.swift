import Synchronization

// The write path: reserve, commit, switch, seal, deliver.
//
// Everything here follows from three words per sub-buffer cycle (see RegionLayout):
// the buffer's position word, and each slot's commit and state words.
//
// - A writer reserves with one CAS on the position word (acquiringAndReleasing: it
//   acquires the switcher's publication of the sub-buffer and, when it becomes the
//   switcher or sealer itself, releases).
// - A writer commits with one atomic add on the slot's commit word
//   (acquiringAndReleasing: releases the record bytes; acquires every other committer's
//   bytes if this add completes the sub-buffer).
// - On a per-CPU buffer both are restartable sequences on the owner CPU instead of
//   locked instructions, with the same effect (BufferCore+PerCPU.swift).
// - The committer whose add brings the commit word to `subbufSize` delivers: it
//   resets the commit word and stores the state word `sequence << 2 | delivered`
//   (sequentiallyConsistent: releases the whole sub-buffer to readers, and is the
//   writer half of the Dekker pair with a sleeping consumer).
//
// The sub-buffer header's begin fields are written by the switcher (the begin time read
// before its switch CAS), its seal fields (end time, padding, content size, losses,
// flags) by the sealer, and its record count by the deliverer, which also raises the end
// time to the begin time if the realtime clock stepped back. Each group is published by
// that thread's own commit-word add, so the deliverer always sees all of them.
extension RelayChannel {
    /// Result of a reserve attempt on one buffer.
    enum Reserve {
        case reserved(position: UInt64)
        case full
        case timedOut
        case closed
        case lapped
    }

    // MARK: Reserve

    /// Reserves `length` bytes (1...maxRecord) in buffer `b`. Lock-free.
    ///
    /// The record path's first attempt: it reads the few fields it needs through the
    /// table pointer instead of copying the `BufferCore` (the record copy that follows
    /// writes through raw pointers, so a copy could not be elided).
    @inline(__always)
    func reserve(_ b: UnsafeMutablePointer<BufferCore>, length: UInt64) -> Reserve {
        // relaxed: only a first guess of the position; the compare-exchange validates it.
        let p = b.pointee.position.pointee.load(ordering: .relaxed)
        let offset = p & b.pointee.offsetMask
        // One comparison covers "open sub-buffer with a record in it, not closed, fits": a
        // closed position has bit 63 set, which makes `p & offsetMask` meaningless, so check
        // it too. An open sub-buffer without a record (offset == headerSize: a buffer's first
        // sub-buffer after open or reset) goes to `reserveSlow`, which stamps its begin time.
        if _fastPath(offset > b.pointee.headerSize && offset &+ length <= b.pointee.subbufSize && p & RegionLayout.closedBit == 0) {
            if _fastPath(b.pointee.compareExchangePosition(expected: p, desired: p &+ length).exchanged) {
                if _slowPath(offset &+ length == b.pointee.subbufSize) {
                    self.reservedAtEdge(b.pointee, position: p, length: length)
                }
                return .reserved(position: p)
            }
        }
        return self.reserveSlow(b.pointee, length: length)
    }

    /// A reservation that is the first record of its sub-buffer, or fills it exactly.
    ///
    /// Only a buffer's first sub-buffer after open or reset is started without a record (every
    /// other one is started by the switch that reserves its first record), so only there does
    /// a reservation land right after the header. That sub-buffer's begin time, stamped when
    /// it was started, then becomes `firstRecordTime`, read before the reservation moved the
    /// position: the header spans the records, not the idle time before the first one (which
    /// would otherwise count as delivery delay, say a buffer first written an hour after open).
    @inline(never)
    func reservedAtEdge(_ b: BufferCore, position p: UInt64, length: UInt64, firstRecordTime: UInt64 = 0) {
        let offset = p & b.offsetMask
        if offset &+ length == b.subbufSize {
            // We filled the sub-buffer exactly: we seal it with zero padding. Our own
            // commit (still to come) publishes the seal fields.
            self.writeSealFields(b, sequence: p &>> b.shift, padding: 0, flags: [])
        }
        if offset == b.headerSize {
            // Only this thread reserved at the header's end, and no reader or deliverer looks at
            // the header before our commit (still to come), which publishes this store. A sealer
            // that stamped the end time before it is evened out by the deliverer (end ≥ begin).
            if firstRecordTime != 0 {
                b.subbuffer(sequence: p &>> b.shift).storeBytes(
                    of: firstRecordTime, toByteOffset: SubbufferHeaderLayout.beginTimeOffset, as: UInt64.self)
            }
            // First data in this sub-buffer: a deep-sleeping consumer must arm its timer.
            self.wakeConsumer(threshold: .deepSleep, buffer: b.index)
        }
    }

    /// The CAS retry loop plus sub-buffer switches and full handling (a whole reserve).
    @inline(never)
    func reserveSlow(_ b: BufferCore, length: UInt64) -> Reserve {
        // relaxed (this load and the reloads after a failed seal below): a guess that the
        // loop's CAS on the position validates; the CAS orders what matters.
        var p = b.position.pointee.load(ordering: .relaxed)
        while true {
            if p & RegionLayout.closedBit != 0 {
                return .closed
            }
            let offset = p & b.offsetMask
            let sequence = p &>> b.shift
            if offset != 0 && offset &+ length <= b.subbufSize {
                // The first record of a sub-buffer started empty: its time, read before the CAS
                // like a switcher's begin time, so it precedes every reserve and seal there.
                let firstRecordTime = offset == b.headerSize ? Clock.realtimeNanoseconds : 0
                let (exchanged, current) = b.compareExchangePosition(expected: p, desired: p &+ length)
                if exchanged {
                    if offset == b.headerSize || offset &+ length == b.subbufSize {
                        self.reservedAtEdge(b, position: p, length: length, firstRecordTime: firstRecordTime)
                    }
                    return .reserved(position: p)
                }
                p = current
                continue
            }
            // The record does not fit (or the sub-buffer is sealed): switch.
            let needsSeal = offset != 0
            let next = needsSeal ? sequence &+ 1 : sequence
            var overwriting = false
            switch self.space(b, forSequence: next) {
            case .free:
                break
            case .overwritesUnconsumed:
                overwriting = true
            case .lapsStalledWriter:
                if needsSeal {
                    // Still seal what we have so it can be delivered; then report.
                    if !self.sealOnly(b, from: p) { p = b.position.pointee.load(ordering: .relaxed); continue }
                }
                return .lapped
            case .full:
                if needsSeal {
                    // Seal the current sub-buffer so it gets delivered, and leave the
                    // buffer in the sealed state until the consumer frees space.
                    if !self.sealOnly(b, from: p) {
                        p = b.position.pointee.load(ordering: .relaxed)
                        continue
                    }
                }
                self.enterFull(b, lastSequence: next &- 1)
                return .full
            }
            let desired = (next &<< b.shift) &+ b.headerSize &+ length  // + not |: an exact fill carries into the sequence
            // The begin time is read before the switch CAS: once the CAS succeeds, other
            // writers can fill and seal the new sub-buffer (stamping its end time) before
            // this thread gets to its header, so a clock read after the CAS could be later
            // than the end. Read before, it precedes every reserve and seal in the
            // sub-buffer (they all follow the CAS).
            let beginTime = Clock.realtimeNanoseconds
            let (exchanged, current) = b.compareExchangePosition(expected: p, desired: desired)
            if !exchanged {
                p = current
                continue
            }
            if b.mode == .overwrite && next >= b.subbufCount {
                // releasing fence: the seqlock writer's fence. This switch reuses a slot a
                // reader may be reading (its previous incarnation, delivered and perhaps
                // unconsumed), and the reader validates by re-reading the position after
                // its reads (`stillIntact`, whose acquiring fence this pairs with). So the
                // position store of the CAS above must be visible before any store into
                // the slot that follows: the header and state word below, this thread's
                // later records. The CAS's own release only orders what came *before* it
                // (on arm64 a later plain store can be seen before it). Other writers'
                // records in the slot come after their reserve CAS, whose acquire half
                // read this position or a later one: a reader that sees such a record
                // and then fences sees the switch too (x86-64 and arm64 are
                // multi-copy atomic), so the record path needs no fence. On x86-64
                // (TSO) this emits no instruction.
                atomicMemoryFence(ordering: .releasing)
            }
            var previousPadding: Int? = nil
            if needsSeal {
                let padding = b.subbufSize &- offset
                previousPadding = Int(padding)
                self.seal(b, sequence: sequence, padding: padding, flags: [])
            }
            self.startSubbuffer(
                b, sequence: next, beginTime: beginTime, previousPadding: previousPadding, overwriting: overwriting)
            if length == b.subbufSize &- b.headerSize {
                // This record fills the new sub-buffer exactly.
                self.writeSealFields(b, sequence: next, padding: 0, flags: [])
            }
            self.wakeConsumer(threshold: .deepSleep, buffer: b.index)
            return .reserved(position: (next &<< b.shift) | b.headerSize)
        }
    }

    enum Space {
        case free
        case overwritesUnconsumed
        case lapsStalledWriter
        case full
    }

    /// Whether sub-buffer `next` may start now.
    @inline(__always)
    func space(_ b: BufferCore, forSequence next: UInt64) -> Space {
        // acquiring: pairs with the consumer's releasing store in `subbufsConsumed`; the
        // consumer's reads of the slot we are about to reuse happen before our writes.
        let consumed = b.consumed.pointee.load(ordering: .acquiring)
        let unconsumed = next &- consumed
        if b.mode != .overwrite {
            return unconsumed >= b.subbufCount ? .full : .free
        }
        if next >= b.subbufCount {
            // Never reuse a slot whose previous incarnation is not delivered: a writer
            // is still inside it (the lesson of CVE-2024-41009).
            // acquiring: pairs with the deliverer's store, so its reset of the commit
            // word is visible before we reuse the slot.
            let state = b.stateWord(slot: b.slot(ofSequence: next)).pointee.load(ordering: .acquiring)
            let expected = ((next &- b.subbufCount) << 2) | RegionLayout.phaseDelivered
            // Unless the state word is one another process wrote over a delivered incarnation,
            // which no engine store would ever replace: repaired, the slot is reused.
            if state != expected && !self.repairCorruptState(b, forSequence: next, state: state) {
                return .lapsStalledWriter
            }
        }
        return unconsumed >= b.subbufCount ? .overwritesUnconsumed : .free
    }

    /// Overwrite mode: whether the writer switching to sub-buffer `next` of `b`, which loaded
    /// `found` (not `next - subbufCount` delivered) from its slot, may reuse the slot anyway
    /// because the state word is corrupt: this call (or a concurrent one) then stores the
    /// expected value over it, `previous` delivered, and counts the slot once in
    /// ``RelayBufferStats/corruptSubbuffers``. Nothing is lost, so ``RelayCallbacks/corrupt``
    /// (the consumer's report of a sub-buffer it passed unread) is not called: `previous`
    /// stays readable until the reuse overwrites it, like any delivered sub-buffer.
    ///
    /// The slot's state word is shared memory another process can write. Without this, a
    /// state word scribbled over after `previous` was delivered makes every later switch into
    /// the slot report a stalled writer, and the buffer drops every record as lapped forever.
    ///
    /// Corrupt means `previous` was certainly sealed and delivered, and the word is nevertheless
    /// no value the engine can have stored there or can still store before the switch into
    /// `next`. So, in this order (as `isCorruptState` on the consumer side):
    /// 1. Every sealed sub-buffer delivered, `previous` among them: the delivered count (each
    ///    delivery adds one, and only sealed sub-buffers are delivered), read *before* the
    ///    position, reaches that position's sealed count. Then no writer is inside `previous`:
    ///    a stalled one (reserved, not committed) keeps it undelivered, and the count short.
    /// 2. The slot's commit word back at 0: `previous`'s deliverer reset it before its count
    ///    (a reset still to come would clobber the header commit of `next`).
    /// 3. The state word, loaded after both, is not `previous` delivered (then it is simply
    ///    reusable). `previous`'s deliverer stored that before its count, so `previous` being
    ///    written is no legitimate value any more either: a stranger's write of exactly that
    ///    value is repaired like any other.
    /// 4. The position, loaded after the state word, has not started `next`: else the word may
    ///    be a legitimate store of a writer that switched into `next` or a later incarnation
    ///    (and our own switch CAS fails anyway). A state word stored by such a switcher (after
    ///    its releasing fence in `reserveSlow`) or its deliverer, if loaded, makes this load
    ///    see that switch. In overwrite mode the consumer stores no marks, so every other
    ///    value is corrupt: an older sequence (0 included), a later one, phase bits 2 or 3.
    ///
    /// The repair is a compare-exchange from the word loaded in 3: a store that came in
    /// meanwhile wins (the deliverer's `previous` delivered, which is what we want anyway, or a
    /// concurrent switcher's `next` being written, whose CAS then beats ours on the position).
    /// Our reuse itself needs our switch CAS from a position before `next`: it fails if anyone
    /// started `next`, so a slot is only ever reused after 1 and 2 held. And no store of
    /// `previous`'s deliverer can land after a repair: 1 needs its count, its last store.
    ///
    /// The sub-buffer switch's slow path only: never on the record path.
    @inline(never)
    func repairCorruptState(_ b: BufferCore, forSequence next: UInt64, state found: UInt64) -> Bool {
        guard b.mode == .overwrite, next >= b.subbufCount else { return false }
        let previous = next &- b.subbufCount
        let expected = (previous << 2) | RegionLayout.phaseDelivered
        // acquiring: pairs with the deliverer's releasing add (`deliver`), its last store: every
        // delivery counted here, its commit-word reset and state store, and the switcher's stores
        // before it, happen before the loads below. (A writer stalled inside `previous`, the
        // common way here, fails the guard: `previous` is sealed but not delivered.)
        let delivered = b.word(RegionLayout.deliveredOffset).pointee.load(ordering: .acquiring)
        // acquiring (in `produced`): orders the loads below after it as well.
        let sealed = self.produced(b)
        guard previous < sealed, delivered >= sealed else { return false }
        let slot = b.slot(ofSequence: next)
        // relaxed: ordered after the acquiring loads above, which is all it needs (the
        // deliverer's reset precedes the count we acquired, so 0 here is that reset).
        guard b.commitWord(slot: slot).pointee.load(ordering: .relaxed) == 0 else { return false }
        // acquiring: pairs with the releasing fence a switcher issues after the CAS that reuses
        // the slot (`reserveSlow`) and with a deliverer's state store: if the word is theirs,
        // the position load below sees that switch.
        let state = b.stateWord(slot: slot).pointee.load(ordering: .acquiring)
        if state == expected { return true }
        // `previous` being written is no longer a legitimate word here: its delivery's state
        // store came before the count that covers it. So every other word, that one included,
        // was written by someone else, unless a switch into `next` (by another writer) stored it.
        // relaxed: ordered after the state load by its acquire; compared only.
        let p = b.position.pointee.load(ordering: .relaxed) & ~RegionLayout.closedBit
        let firstUnstarted = p & b.offsetMask == 0 ? p &>> b.shift : (p &>> b.shift) &+ 1
        guard firstUnstarted <= next else { return false }
        // acquiringAndReleasing: releases `previous` (whose stores happen before this, through
        // the delivered count) to a reader whose acquiring state load reads the repaired word,
        // as the deliverer's store does; on failure, acquires a deliverer's store of `expected`
        // like the load in `space`.
        let (exchanged, current) = b.stateWord(slot: slot).pointee.compareExchange(
            expected: state, desired: expected, ordering: .acquiringAndReleasing)
        if !exchanged { return current == expected }
        b.count(RegionLayout.corruptOffset)
        return true
    }

    /// Moves the position from `p` (inside an open sub-buffer) to the sealed state and
    /// seals. Returns false if the CAS lost a race (the caller re-reads and retries).
    func sealOnly(_ b: BufferCore, from p: UInt64, flags: SubbufferFlags = []) -> Bool {
        let offset = p & b.offsetMask
        let sequence = p &>> b.shift
        let sealed = ((sequence &+ 1) &<< b.shift) | (p & RegionLayout.closedBit)
        let (exchanged, _) = b.compareExchangePosition(expected: p, desired: sealed)
        if exchanged {
            self.seal(b, sequence: sequence, padding: b.subbufSize &- offset, flags: flags)
        }
        return exchanged
    }

    /// A writer found the buffer full (sub-buffer `lastSequence + 1` cannot start): fire
    /// the buffer-full callback once per episode.
    ///
    /// An episode is named by the sub-buffer that cannot start, `lastSequence + 1`: every
    /// writer that finds the buffer full before the consumer frees space computes the same
    /// one, and the next episode's is larger (that sub-buffer must start first). The
    /// `fullFlag` word holds the latest episode reported (0: none), so a writer fires only
    /// for a later episode. Nothing has to clear the word when space comes back: a writer
    /// that saw the buffer full and gets here only after the consumer freed space and
    /// another writer started that sub-buffer reports nothing (it once found the word
    /// cleared by that switch and fired a second callback for the same episode), and a
    /// new episode found before the switcher got to a clear is not missed.
    func enterFull(_ b: BufferCore, lastSequence: UInt64) {
        let episode = lastSequence &+ 1
        // relaxed (load and CAS): the word only deduplicates callbacks; it orders nothing.
        var reported = b.fullFlag.pointee.load(ordering: .relaxed)
        while reported < episode {
            let (exchanged, current) = b.fullFlag.pointee.compareExchange(
                expected: reported, desired: episode, ordering: .relaxed)
            if exchanged {
                b.count(RegionLayout.bufferFullEventsOffset)
                self.callbacks.bufferFull?(BufferFull(buffer: b.index, lastSequence: lastSequence))
                return
            }
            reported = current
        }
    }

    // MARK: Switch, seal, deliver

    /// Initializes sub-buffer `sequence` after this thread won the switch CAS.
    ///
    /// `beginTime` is the header's begin time: CLOCK_REALTIME read *before* that CAS (see
    /// `reserveSlow`), so it is not later than any reserve or seal in the sub-buffer.
    func startSubbuffer(_ b: BufferCore, sequence: UInt64, beginTime: UInt64, previousPadding: Int?, overwriting: Bool) {
        let slot = b.slot(ofSequence: sequence)
        // relaxed: published by the header commit below (releasing).
        b.stateWord(slot: slot).pointee.store((sequence << 2) | RegionLayout.phaseWriting, ordering: .relaxed)
        let h = b.subbuffer(sequence: sequence)
        // Begin fields only: a concurrent writer may already have sealed this
        // sub-buffer (the seal fields are its to write).
        h.storeBytes(of: SubbufferHeaderLayout.magic, toByteOffset: SubbufferHeaderLayout.magicOffset, as: UInt32.self)
        h.storeBytes(
            of: SubbufferHeaderLayout.version, toByteOffset: SubbufferHeaderLayout.versionOffset, as: UInt16.self)
        h.storeBytes(
            of: UInt16(b.headerSize), toByteOffset: SubbufferHeaderLayout.headerSizeOffset, as: UInt16.self)
        h.storeBytes(of: UInt32(b.index), toByteOffset: SubbufferHeaderLayout.bufferIndexOffset, as: UInt32.self)
        h.storeBytes(of: sequence, toByteOffset: SubbufferHeaderLayout.sequenceOffset, as: UInt64.self)
        h.storeBytes(of: beginTime, toByteOffset: SubbufferHeaderLayout.beginTimeOffset, as: UInt64.self)
        h.storeBytes(
            of: UInt32(b.subbufSize), toByteOffset: SubbufferHeaderLayout.subbufSizeOffset, as: UInt32.self)
        if overwriting {
            b.count(RegionLayout.overwrittenOffset)
        }
        if let start = self.callbacks.subbufferStart {
            let client = UnsafeMutableRawBufferPointer(
                start: h + RegionLayout.engineHeaderSize, count: self.geometry.clientHeaderSize)
            start(SubbufferStart(buffer: b.index, sequence: sequence, clientHeader: client, previousPadding: previousPadding))
        }
        self.commitBytes(b, slot: slot, bytes: b.headerSize, records: 0)
    }

    /// Writes the seal fields of sub-buffer `sequence`. Published by the caller's next
    /// add on the slot's commit word.
    @inline(__always)
    func writeSealFields(_ b: BufferCore, sequence: UInt64, padding: UInt64, flags: SubbufferFlags) {
        let h = b.subbuffer(sequence: sequence)
        h.storeBytes(of: Clock.realtimeNanoseconds, toByteOffset: SubbufferHeaderLayout.endTimeOffset, as: UInt64.self)
        h.storeBytes(of: UInt32(truncatingIfNeeded: padding), toByteOffset: SubbufferHeaderLayout.paddingOffset, as: UInt32.self)
        h.storeBytes(
            of: UInt32(truncatingIfNeeded: b.subbufSize &- b.headerSize &- padding),
            toByteOffset: SubbufferHeaderLayout.contentSizeOffset, as: UInt32.self)
        h.storeBytes(
            of: b.counter(RegionLayout.lostTotalOffset), toByteOffset: SubbufferHeaderLayout.lostRecordsOffset,
            as: UInt64.self)
        h.storeBytes(of: flags.rawValue, toByteOffset: SubbufferHeaderLayout.flagsOffset, as: UInt32.self)
    }

    /// Seals sub-buffer `sequence` with `padding` unused bytes (this thread moved the
    /// position past it) and commits the padding.
    func seal(_ b: BufferCore, sequence: UInt64, padding: UInt64, flags: SubbufferFlags) {
        self.writeSealFields(b, sequence: sequence, padding: padding, flags: flags)
        if padding > 0 {
            self.commitBytes(b, slot: b.slot(ofSequence: sequence), bytes: padding, records: 0)
        } else {
            // Zero padding only happens via a flush of a sub-buffer that is exactly full,
            // which cannot be (a full sub-buffer is already sealed). Keep the invariant.
            assertionFailure("seal with zero padding must come from an exact fill")
        }
    }

    /// Adds committed bytes and records to a slot; delivers if that completes it.
    @inline(__always)
    func commitBytes(_ b: BufferCore, slot: UInt64, bytes: UInt64, records: UInt64) {
        // Releases this thread's record bytes (or header/seal fields); acquires every
        // other committer's when this add completes the slot (see `addToCommitWord`).
        let updated = b.addToCommitWord(slot: slot, bytes | (records << 32))
        if _slowPath(updated & 0xFFFF_FFFF == b.subbufSize) {
            self.deliver(b, slot: slot, records: updated >> 32)
        }
    }

    /// Commits one record of `length` bytes reserved at `position`.
    @inline(__always)
    func commitRecord(_ b: BufferCore, position: UInt64, length: UInt64) {
        self.commitBytes(b, slot: (position &>> b.shift) & b.slotMask, bytes: length, records: 1)
    }

    /// `commitRecord` for the record path: fields read through the table pointer.
    @inline(__always)
    func commitRecord(_ b: UnsafeMutablePointer<BufferCore>, position: UInt64, length: UInt64) {
        let slot = (position &>> b.pointee.shift) & b.pointee.slotMask
        let updated = b.pointee.addToCommitWord(slot: slot, length | (1 << 32))
        if _slowPath(updated & 0xFFFF_FFFF == b.pointee.subbufSize) {
            self.deliver(b.pointee, slot: slot, records: updated >> 32)
        }
    }

    /// The sub-buffer in `slot` is complete: this thread delivers it.
    @inline(never)
    func deliver(_ b: BufferCore, slot: UInt64, records: UInt64) {
        let h = b.data + Int(slot &<< b.shift)
        let sequence = h.load(fromByteOffset: SubbufferHeaderLayout.sequenceOffset, as: UInt64.self)
        let contentSize = h.load(fromByteOffset: SubbufferHeaderLayout.contentSizeOffset, as: UInt32.self)
        let padding = h.load(fromByteOffset: SubbufferHeaderLayout.paddingOffset, as: UInt32.self)
        h.storeBytes(of: UInt32(truncatingIfNeeded: records), toByteOffset: SubbufferHeaderLayout.recordsOffset, as: UInt32.self)
        // begin ≤ end even if CLOCK_REALTIME stepped back between the switch and the seal
        // (settimeofday, an NTP step): the end time is raised to the begin time. The
        // switcher's and the sealer's commit-word adds published both fields to us.
        let begin = h.load(fromByteOffset: SubbufferHeaderLayout.beginTimeOffset, as: UInt64.self)
        if _slowPath(h.load(fromByteOffset: SubbufferHeaderLayout.endTimeOffset, as: UInt64.self) < begin) {
            h.storeBytes(of: begin, toByteOffset: SubbufferHeaderLayout.endTimeOffset, as: UInt64.self)
        }
        b.count(RegionLayout.recordsWrittenOffset, records)
        b.count(RegionLayout.bytesWrittenOffset, UInt64(contentSize))
        // relaxed: published by the state store below (and by the delivered count after it).
        b.commitWord(slot: slot).pointee.store(0, ordering: .relaxed)
        // sequentiallyConsistent: releases the sub-buffer to readers (pairs with their
        // acquiring state loads) and to the overwrite-mode switcher; SC also orders it
        // before the load of the consumer's sleep state in `wakeConsumer` (Dekker).
        b.stateWord(slot: slot).pointee.store((sequence << 2) | RegionLayout.phaseDelivered, ordering: .sequentiallyConsistent)
        // releasing, and last: besides a statistic, the delivered count tells a consumer (or, in
        // overwrite mode, a switcher) that every sealed sub-buffer was delivered
        // (`isCorruptState`, `repairCorruptState`), which pairs with this by its acquiring load:
        // it then sees this delivery's commit-word reset and state store, so a sealed slot whose
        // word still reads "being written" after the count covers it was written over by someone
        // else, and its commit word reads the reset (or a later incarnation's), never the 0 from
        // before the sub-buffer started.
        b.word(RegionLayout.deliveredOffset).pointee.wrappingAdd(1, ordering: .releasing)
        if let deliver = self.callbacks.deliver {
            deliver(
                SubbufferDelivery(
                    buffer: b.index, sequence: sequence, records: Int(records), contentSize: Int(contentSize),
                    padding: Int(padding)))
        }
        self.wakeConsumer(threshold: .sleeping, buffer: b.index)
    }

    // MARK: Losses

    /// Counts `records` lost for `reason` in buffer `b`.
    func countLoss(_ b: BufferCore, _ offset: Int, records: UInt64 = 1) {
        b.count(offset, records)
        if offset != RegionLayout.closedDropsOffset {
            b.count(RegionLayout.lostTotalOffset, records)
        }
    }

    // MARK: Block mode

    /// Whether a block-mode writer of `length` bytes that found buffer `b` full must still wait
    /// at `position`: the buffer is open, the record does not fit in the open sub-buffer (which
    /// another writer may have started since, with the space the consumer freed), and the
    /// sub-buffer after it has no space either.
    @inline(__always)
    func mustWaitForSpace(_ b: BufferCore, position: UInt64, length: UInt64) -> Bool {
        if position & RegionLayout.closedBit != 0 { return false }
        let offset = position & b.offsetMask
        if offset != 0 && offset &+ length <= b.subbufSize { return false }
        let next = offset == 0 ? position &>> b.shift : (position &>> b.shift) &+ 1
        return self.space(b, forSequence: next) == .full
    }

    /// Waits until buffer `b` may have space for a record of `length` bytes, the deadline
    /// passes, or the channel closes. Returns false on timeout.
    ///
    /// `waited` is the caller's (one write's) record of whether it already slept for space:
    /// the first sleep of a write counts one `writerWaits`, later ones (spurious wake-ups,
    /// or space another writer took first, which sends the caller back here) do not, and
    /// a call that never sleeps (space came back, or the deadline had passed) counts none.
    func waitForSpace(_ b: BufferCore, length: UInt64, deadline: UInt64?, waited: inout Bool) -> Bool {
        while true {
            // sequentiallyConsistent (all three): Dekker with `subbufsConsumed`, which
            // stores `consumed`, bumps the futex word, then loads `waiters`. Either it sees
            // our registration and wakes us, or we see its new `consumed` and do not sleep.
            b.waiters.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
            let word = b.spaceFutex.pointee.load(ordering: .sequentiallyConsistent)
            let position = b.position.pointee.load(ordering: .sequentiallyConsistent)
            let stillFull = self.mustWaitForSpace(b, position: position, length: length)
            var timedOut = false
            if stillFull {
                var timeout: Int64 = -1
                if let deadline {
                    let now = Clock.monotonicNanoseconds
                    if now >= deadline {
                        timedOut = true
                    } else {
                        timeout = Int64(deadline - now)
                    }
                }
                if !timedOut {
                    if !waited {
                        waited = true
                        b.count(RegionLayout.writerWaitsOffset)
                    }
                    if Futex.wait(b.spaceFutex, expected: word, timeoutNanoseconds: timeout) == .timedOut {
                        timedOut = true
                    }
                }
            }
            // relaxed: `waiters` only tells the consumer whether to make the wake-up system
            // call. The Dekker pair needs our registration above, not this withdrawal: a
            // consumer that still sees it makes one wake-up that finds nobody.
            b.waiters.pointee.wrappingSubtract(1, ordering: .relaxed)
            if !stillFull { return true }
            if timedOut { return false }
            // Woken: loop to re-check (spurious wake-ups are possible).
            // acquiring: pairs with the releasing half of a switcher's CAS in `reserveSlow`,
            // so a switch seen here comes with the sub-buffer start it published. Only a hint
            // either way: `true` sends the caller back to `reserveSlow`, whose CAS validates
            // the position, and looping registers again with the sequentially consistent
            // loads above, where `space` acquires `consumed` itself.
            // A writer woken with others may find that one of them already took the freed
            // sub-buffer: then it still goes back if its record fits in that one.
            let position2 = b.position.pointee.load(ordering: .acquiring)
            if !self.mustWaitForSpace(b, position: position2, length: length) {
                return true
            }
        }
    }

    /// Wakes writers blocked on buffer `b` (space freed, or closing).
    func wakeBlockedWriters(_ b: BufferCore) {
        // sequentiallyConsistent fence: Dekker with a timed-out writer in `reserveFailed`,
        // which stores `blockStalled` = 1, fences, then checks the space again. The space
        // freed before this call (the caller's store of `consumed`) and the load below are
        // ordered around this fence: either that writer sees the space and clears the flag
        // itself, or this load sees its 1 and clears it. Never a flag left set over space.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        // relaxed: `blockStalled` only decides whether a writer that found the buffer full
        // waits or fails at once (ordered by the fences above and in `reserveFailed`); a
        // writer that still sees the old 1 drops one record it could have waited for, and
        // counts it.
        if b.blockStalled.pointee.load(ordering: .relaxed) != 0 {
            b.blockStalled.pointee.store(0, ordering: .relaxed)
        }
        // sequentiallyConsistent: see `waitForSpace`.
        b.spaceFutex.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        if b.waiters.pointee.load(ordering: .sequentiallyConsistent) > 0 {
            Futex.wakeAll(b.spaceFutex)
        }
    }

    /// Reserves in `b`, handling full buffers according to the mode. Counts losses.
    @inline(__always)
    func reserveHandlingMode(_ b: UnsafeMutablePointer<BufferCore>, length: UInt64, timeoutNanoseconds: Int64? = nil) -> Reserve {
        let first = self.reserve(b, length: length)
        if case .reserved = first { return first }
        return self.reserveFailed(b.pointee, length: length, first: first, timeoutNanoseconds: timeoutNanoseconds)
    }

    /// `timeoutNanoseconds` replaces the block mode's timeout (negative: wait forever).
    @inline(never)
    func reserveFailed(_ b: BufferCore, length: UInt64, first: Reserve, timeoutNanoseconds: Int64? = nil) -> Reserve {
        var outcome = first
        var deadline: UInt64? = nil
        var deadlineComputed = false
        // Whether this write slept for space yet: it counts one `writerWaits`, however
        // often it is woken (see `waitForSpace`).
        var waited = false
        while true {
            switch outcome {
            case .reserved, .timedOut:
                return outcome
            case .closed:
                self.countLoss(b, RegionLayout.closedDropsOffset)
                return .closed
            case .lapped:
                self.countLoss(b, RegionLayout.lappedOffset)
                return .lapped
            case .full:
                if b.mode != .block {
                    self.countLoss(b, RegionLayout.droppedFullOffset)
                    return .full
                }
                // relaxed: see `wakeBlockedWriters`. A writer already waited the whole
                // timeout in this full episode and the consumer has freed nothing since:
                // fail at once, so a stalled consumer costs writers one timeout, not one
                // per record (a daemon's input thread or a service's request path keeps
                // moving, and the drops are counted). Not a caller that gave a wait of its
                // own (`reserve(_:waitingAtMost:)`): it waits that long, as it asked.
                if timeoutNanoseconds == nil && b.blockStalled.pointee.load(ordering: .relaxed) != 0 {
                    self.countLoss(b, RegionLayout.droppedFullOffset)
                    return .timedOut
                }
                if !deadlineComputed {
                    deadlineComputed = true
                    let timeout = timeoutNanoseconds ?? b.blockTimeoutNanoseconds
                    if timeout >= 0 {
                        deadline = Clock.monotonicNanoseconds &+ UInt64(timeout)
                    }
                }
                if !self.waitForSpace(b, length: length, deadline: deadline, waited: &waited) {
                    self.countLoss(b, RegionLayout.droppedFullOffset)
                    b.count(RegionLayout.blockTimeoutsOffset)
                    // Only a wait with the channel's own timeout marks the buffer stalled: a
                    // caller's shorter wait (`reserve(_:waitingAtMost:)`) says nothing about
                    // the consumer, and on a `.block(timeout: nil)` channel a stall would make
                    // every later write fail at once instead of waiting forever.
                    if timeoutNanoseconds != nil { return .timedOut }
                    // relaxed + sequentiallyConsistent fence: the Dekker store of
                    // `wakeBlockedWriters` (which pairs with this fence). The consumer may
                    // have freed space since the wait timed out without seeing a flag to
                    // clear: look again after the fence, and clear the flag if it did.
                    b.blockStalled.pointee.store(1, ordering: .relaxed)
                    atomicMemoryFence(ordering: .sequentiallyConsistent)
                    // relaxed: only says which sequence the next switch needs; the check that
                    // matters is `space`'s load of `consumed`, after the fence.
                    let position = b.position.pointee.load(ordering: .relaxed)
                    if !self.mustWaitForSpace(b, position: position, length: length) {
                        // relaxed: as the store above.
                        b.blockStalled.pointee.store(0, ordering: .relaxed)
                    }
                    return .timedOut
                }
                outcome = self.reserveSlow(b, length: length)
            }
        }
    }
}

/// Flags in a sub-buffer header.
public struct SubbufferFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Sealed early by `flush()` (or the shipper's switch timer).
    public static let flushed = SubbufferFlags(rawValue: 1 << 0)
    /// Sealed by `close()`.
    public static let closed = SubbufferFlags(rawValue: 1 << 1)
}
