import Synchronization

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
    /// Keeps the channel (and so the buffer memory `corePointer` points into) alive for as
    /// long as the writer exists: a writer can outlive the caller's last use of the channel.
    let channel: RelayChannel
    /// The same channel, used through `_withUnsafeGuaranteedRef` on slow paths so no
    /// reference counting happens per record.
    let unmanagedChannel: Unmanaged<RelayChannel>
    /// The buffer's `BufferCore`, inside the channel's table (valid while the channel
    /// lives). Read through the pointer so the record path never copies the struct.
    let corePointer: UnsafeMutablePointer<BufferCore>

    init(channel: RelayChannel, core: UnsafeMutablePointer<BufferCore>) {
        self.channel = channel
        self.unmanagedChannel = Unmanaged.passUnretained(channel)
        self.corePointer = core
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
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer) -> RelayWriteResult {
        let b = self.corePointer
        let length = UInt64(bytes.count)
        guard _fastPath(length &- 1 < b.pointee.maxRecord) else {
            return self.withChannel { $0.rejectLength(b.pointee, length: length) }
        }
        self.enter()
        // relaxed: while we are busy, only this thread moves the position or commits
        // into this buffer (flushers wait for us to leave).
        let position = b.pointee.position
        let p = position.pointee.load(ordering: .relaxed)
        let offset = p & b.pointee.offsetMask
        let fits = offset != 0 && offset &+ length <= b.pointee.subbufSize
        if _fastPath(fits && p & RegionLayout.closedBit == 0) {
            position.pointee.store(p &+ length, ordering: .relaxed)
            RecordCopy.copy(
                b.pointee.data + Int(p & b.pointee.dataMask), from: bytes.baseAddress.unsafelyUnwrapped,
                count: Int(length))
            let atEdge = offset == b.pointee.headerSize || offset &+ length == b.pointee.subbufSize
            if _slowPath(atEdge) {
                self.withChannel { $0.reservedAtEdge(b.pointee, position: p, length: length) }
            }
            let slot = (p &>> b.pointee.shift) & b.pointee.slotMask
            let commit = b.pointee.commitWord(slot: slot)
            let updated = commit.pointee.load(ordering: .relaxed) &+ (length | (1 << 32))
            // releasing: orders the record bytes before the commit for any reader of
            // the word (the deliverer below is this thread).
            commit.pointee.store(updated, ordering: .releasing)
            if _slowPath(updated & 0xFFFF_FFFF == b.pointee.subbufSize) {
                self.withChannel { $0.deliver(b.pointee, slot: slot, records: updated &>> 32) }
            }
            self.leave()
            return .written
        }
        return self.writeSlow(bytes, length: length)
    }

    /// Writes one record from a contiguous collection of bytes.
    @discardableResult
    public func write<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> RelayWriteResult {
        if let result = bytes.withContiguousStorageIfAvailable({ self.write(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return Array(bytes).withUnsafeBytes { self.write($0) }
    }

    /// Switches, full buffers and block-mode waits: the shared algorithm (atomics).
    @inline(never)
    func writeSlow(_ bytes: UnsafeRawBufferPointer, length: UInt64) -> RelayWriteResult {
        self.withChannel { self.writeSlow(bytes, length: length, channel: $0) }
    }

    private func writeSlow(_ bytes: UnsafeRawBufferPointer, length: UInt64, channel: RelayChannel) -> RelayWriteResult {
        let b = self.core
        var outcome = channel.reserveSlow(b, length: length)
        if case .full = outcome, b.mode == .block {
            // Never wait for space while marked busy: the consumer may need to flush us.
            self.leave()
            outcome = channel.reserveFailed(b, length: length, first: outcome)
            self.enter()
        } else if case .reserved = outcome {
        } else {
            outcome = channel.reserveFailed(b, length: length, first: outcome)
        }
        let result: RelayWriteResult
        switch outcome {
        case .reserved(let position):
            RecordCopy.copy(b.address(of: position), from: bytes.baseAddress.unsafelyUnwrapped, count: Int(length))
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
    @inline(__always)
    func enter() {
        let b = self.corePointer
        while true {
            // relaxed + light fence: the asymmetric Dekker store (see AsymmetricFence).
            b.pointee.busy.pointee.store(1, ordering: .relaxed)
            AsymmetricFence.light(expedited: b.pointee.expeditedFence)
            // acquiring: pairs with the flusher's releasing clear of the request, so its
            // seal is visible before we touch the position.
            if _fastPath(b.pointee.flushRequest.pointee.load(ordering: .acquiring) == 0) {
                return
            }
            self.yieldToFlusher()
        }
    }

    @inline(never)
    func yieldToFlusher() {
        let b = self.core
        // releasing: pairs with the flusher's acquiring load of `busy`.
        b.busy.pointee.store(0, ordering: .releasing)
        var spins = 0
        while b.flushRequest.pointee.load(ordering: .acquiring) != 0 {
            spins += 1
            if spins > 64 { sched_yield_() }
        }
    }

    @inline(__always)
    func leave() {
        // releasing: pairs with the flusher's acquiring load of `busy`: our position,
        // commit and record bytes happen before its seal.
        self.corePointer.pointee.busy.pointee.store(0, ordering: .releasing)
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
        var spins = 0
        while !b.flushRequest.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged {
            spins += 1
            if spins > 64 { sched_yield_() }
        }
        AsymmetricFence.heavy()
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
