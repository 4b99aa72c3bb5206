import Synchronization

/// A relay channel: per-CPU buffers of sub-buffers that any thread can write records
/// into, lock-free, without a system call or an allocation per record.
///
/// This is relayfs's `rchan` in user space. Open one with a configuration (relayfs
/// `relay_open`), write with ``write(_:)-(UnsafeRawBufferPointer)`` or
/// ``reserve(_:)`` + ``RelayReservation/commit()``, and consume delivered
/// sub-buffers with ``withNextSubbuffer(buffer:_:)`` and
/// ``subbufsConsumed(buffer:count:)`` (or hand the channel to a shipper).
///
/// ```swift
/// let channel = try RelayChannel(RelayChannelConfiguration(name: "app", subbufferSize: 1 << 20))
/// "hello\n".utf8.withContiguousStorageIfAvailable { channel.write(UnsafeRawBufferPointer($0)) }
/// channel.flush()   // seal partly filled sub-buffers so they get delivered
/// ```
///
/// Writers pick the buffer of the CPU they run on (rseq `cpu_id`). Threads migrate,
/// so the reserve is a CAS on the buffer's position word, and each sub-buffer has a
/// commit counter; whoever's commit completes a sub-buffer delivers it. Records never
/// span sub-buffers: the unused tail is recorded as padding.
///
/// Thread safety: every method may be called from any thread, except ``reset()``,
/// which needs an idle channel (relayfs's rule). The channel must outlive every
/// ``RelayReservation`` made from it.
public final class RelayChannel: @unchecked Sendable {
    /// The configuration the channel was opened with.
    public let configuration: RelayChannelConfiguration
    let geometry: Geometry
    let callbacks: RelayCallbacks
    let regions: [MappedRegion]
    /// One `BufferCore` per buffer: the shared (per-CPU) ones first, then the exclusive ones.
    let cores: UnsafeMutablePointer<BufferCore>
    let bufferCount: Int
    let sharedBufferCount: Int
    /// For every possible CPU, its shared buffer's `BufferCore` (a pointer into `cores`):
    /// the record path finds its buffer with one load.
    let cpuMap: UnsafeMutablePointer<UnsafeMutablePointer<BufferCore>>
    let cpuMapCount: Int
    /// `PerCPU.rseqOffset` when the channel uses restartable sequences.
    let rseqOffset: Int?
    /// Address of the attached consumer's wake-up storage (0: none). Read on
    /// delivery and at the first record of each sub-buffer, without ARC traffic.
    let consumerWakeupAddress = Atomic<UInt>(0)
    /// Keeps the attached consumer wake-up alive.
    let consumerWakeup = RelayMutex<RelayConsumerWakeup?>(nil)
    /// Writers inside `wakeConsumer` (from their load of `consumerWakeupAddress` to their
    /// last use of the storage it names): one `Atomic<Int64>` per buffer plus one for
    /// `close()`, each on its own 64-byte line of process memory (not in the regions, which
    /// another process may map: a writer that died there would hold a counter forever).
    /// `detachConsumer` waits for every counter to read 0 after clearing the address, so a
    /// detached wake-up is let go at once instead of being kept until the channel dies.
    let doorbellUsers: UnsafeMutableRawPointer
    /// Reader cursors of ``withNextSubbuffer(buffer:_:)``, one per buffer.
    let readCursors: UnsafeMutablePointer<Atomic<UInt64>>
    let closedState = Atomic<Bool>(false)

    /// Opens a channel: maps and initializes one region per buffer.
    ///
    /// - Throws: ``RelayError`` with code `.invalidConfiguration` (with the fix in the
    ///   message) or `.mappingFailed`.
    public init(_ configuration: RelayChannelConfiguration, callbacks: RelayCallbacks = RelayCallbacks())
        throws(RelayError)
    {
        RegionLayout.checkAtomicLayout()
        try configuration.validate()
        let pageSize = MappedRegion.pageSize
        let geometry = Geometry(
            subbufSize: configuration.subbufferSize,
            subbufCount: configuration.subbufferCount,
            clientHeaderSize: configuration.clientHeaderSize,
            pageSize: pageSize
        )
        let shared = configuration.buffers ?? CPU.possibleCount
        let total = shared + configuration.exclusiveBuffers

        var regions: [MappedRegion] = []
        regions.reserveCapacity(total)
        do {
            for index in 0..<total {
                let region = try MappedRegion.map(
                    size: geometry.regionSize,
                    backing: configuration.backing,
                    channelName: configuration.name,
                    bufferIndex: index,
                    prefault: configuration.prefault
                )
                regions.append(region)
            }
        } catch {
            for region in regions { region.unmap() }
            throw error
        }

        let cpuCount = max(CPU.possibleCount, 1)
        // One buffer per CPU: buffer i belongs to CPU i alone, and its writers can use
        // restartable sequences (see PerCPU). Fewer buffers than CPUs: every writer uses
        // locked instructions.
        let perCPU = shared == cpuCount && configuration.perCPUFastPath && PerCPU.isAvailable
        let cores = UnsafeMutablePointer<BufferCore>.allocate(capacity: total)
        for index in 0..<total {
            let core = BufferCore(
                region: regions[index], index: index, geometry: geometry, mode: configuration.mode,
                ownerCPU: perCPU && index < shared ? UInt32(index) : PerCPU.noOwner)
            Self.initializeRegion(core, geometry: geometry, mode: core.mode)
            (cores + index).initialize(to: core)
        }
        let cpuMap = UnsafeMutablePointer<UnsafeMutablePointer<BufferCore>>.allocate(capacity: cpuCount)
        for cpu in 0..<cpuCount {
            cpuMap[cpu] = cores + cpu % shared
        }
        let cursors = UnsafeMutablePointer<Atomic<UInt64>>.allocate(capacity: total)
        for index in 0..<total {
            (cursors + index).initialize(to: Atomic(0))
        }

        self.configuration = configuration
        self.geometry = geometry
        self.callbacks = callbacks
        self.regions = regions
        self.cores = cores
        self.bufferCount = total
        self.sharedBufferCount = shared
        self.cpuMap = cpuMap
        self.cpuMapCount = cpuCount
        self.rseqOffset = perCPU ? PerCPU.rseqOffset : nil
        self.readCursors = cursors
        self.doorbellUsers = UnsafeMutableRawPointer.allocate(byteCount: (total + 1) * 64, alignment: 64)
        for index in 0...total {
            (self.doorbellUsers + index * 64).bindMemory(to: Atomic<Int64>.self, capacity: 1).initialize(to: Atomic(0))
        }

        // relayfs calls subbuf_start for the first sub-buffer of every buffer at open. No other
        // thread can see the regions yet: locked instructions, no remote path.
        for index in 0..<total {
            self.startSubbuffer(
                cores[index].withoutOwner, sequence: 0, beginTime: Clock.realtimeNanoseconds, previousPadding: nil,
                overwriting: false)
        }
        if let mapped = callbacks.bufferMapped {
            for index in 0..<total {
                mapped(BufferMapping(buffer: index, base: regions[index].base, size: regions[index].size))
            }
        }
    }

    deinit {
        if let unmapped = self.callbacks.bufferUnmapped {
            for index in 0..<self.bufferCount {
                unmapped(BufferMapping(buffer: index, base: self.regions[index].base, size: self.regions[index].size))
            }
        }
        for region in self.regions { region.unmap() }
        self.cores.deinitialize(count: self.bufferCount)
        self.cores.deallocate()
        self.cpuMap.deallocate()
        self.readCursors.deinitialize(count: self.bufferCount)
        self.readCursors.deallocate()
        for index in 0...self.bufferCount { self.doorbellUsers(index).deinitialize(count: 1) }
        self.doorbellUsers.deallocate()
    }

    /// Writes the identity line and zeroes every control word. Runs before the region is
    /// visible to any other thread.
    static func initializeRegion(_ core: BufferCore, geometry: Geometry, mode: BufferCore.ModeCode) {
        let base = core.base
        // Bind the control area's 8-byte words to Atomic<UInt64> and zero them. The
        // futex word at spaceFutexOffset is rebound to Atomic<UInt32> (same bytes).
        let words = geometry.controlSize / 8
        let atomics = base.bindMemory(to: Atomic<UInt64>.self, capacity: words)
        for word in 0..<words {
            (atomics + word).initialize(to: Atomic(0))
        }
        (base + RegionLayout.spaceFutexOffset).bindMemory(to: Atomic<UInt32>.self, capacity: 2)
            .initialize(to: Atomic(0))
        // Identity line: plain stores, read-only from now on.
        base.storeBytes(of: RegionLayout.magic, toByteOffset: RegionLayout.magicOffset, as: UInt32.self)
        base.storeBytes(of: RegionLayout.version, toByteOffset: RegionLayout.versionOffset, as: UInt16.self)
        base.storeBytes(
            of: UInt16(RegionLayout.engineHeaderSize), toByteOffset: RegionLayout.engineHeaderSizeOffset,
            as: UInt16.self)
        base.storeBytes(of: UInt32(core.index), toByteOffset: RegionLayout.bufferIndexOffset, as: UInt32.self)
        base.storeBytes(
            of: UInt32(geometry.subbufCount), toByteOffset: RegionLayout.subbufCountOffset, as: UInt32.self)
        base.storeBytes(of: UInt64(geometry.subbufSize), toByteOffset: RegionLayout.subbufSizeOffset, as: UInt64.self)
        base.storeBytes(of: mode.rawValue, toByteOffset: RegionLayout.modeOffset, as: UInt32.self)
        base.storeBytes(of: UInt32(geometry.headerSize), toByteOffset: RegionLayout.headerSizeOffset, as: UInt32.self)
        base.storeBytes(of: UInt64(geometry.dataOffset), toByteOffset: RegionLayout.dataOffsetOffset, as: UInt64.self)
        base.storeBytes(of: UInt64(geometry.regionSize), toByteOffset: RegionLayout.regionSizeOffset, as: UInt64.self)
        base.storeBytes(
            of: UInt32(geometry.clientHeaderSize), toByteOffset: RegionLayout.clientHeaderSizeOffset, as: UInt32.self)
        // Sub-buffer 0 is open, empty, its header about to be written by startSubbuffer.
        // relaxed: no writer can see the region yet; the channel is published to other threads
        // (or reset() is called on an idle one) only after this returns.
        core.position.pointee.store(core.headerSize, ordering: .relaxed)
    }

    // MARK: Shape

    /// The number of buffers: per-CPU shared buffers plus exclusive ones.
    public var buffers: Int { self.bufferCount }

    /// The number of buffers the shared write path spreads over (one per CPU by default).
    public var sharedBuffers: Int { self.sharedBufferCount }

    /// The largest record (or reservation) the channel accepts, in bytes.
    public var maxRecordSize: Int { Int(self.cores[0].maxRecord) }

    /// Bytes at the start of each sub-buffer before the first record (engine + client header).
    public var subbufferHeaderSize: Int { self.geometry.headerSize }

    /// Whether the shared write path uses restartable sequences (rseq(2)) instead of
    /// locked instructions: true when the channel has one shared buffer per possible CPU,
    /// ``RelayChannelConfiguration/perCPUFastPath`` is on, and the host supports it
    /// (x86-64, glibc's rseq registration, `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ`).
    public var usesRestartableSequences: Bool {
        self.cores[0].ownerCPU != PerCPU.noOwner
    }

    /// Whether ``close()`` was called.
    public var isClosed: Bool {
        // acquiring: pairs with the releasing halves of the stores in `close()` and `reset()`.
        self.closedState.load(ordering: .acquiring)
    }

    @inline(__always)
    func core(_ index: Int) -> BufferCore {
        self.cores[index]
    }

    func checkBufferIndex(_ buffer: Int) {
        precondition(buffer >= 0 && buffer < self.bufferCount, "buffer index \(buffer) out of range 0..<\(self.bufferCount)")
    }

    /// The shared buffer of the CPU the caller runs on.
    @inline(__always)
    func currentSharedCore() -> UnsafeMutablePointer<BufferCore> {
        // Per-CPU channels: glibc registered rseq, so read `cpu_id` at the cached offset.
        let cpu = self.rseqOffset.map { CPU.current(rseqOffset: $0) } ?? CPU.current
        // CPU i < shared buffers writes buffer i (every CPU, with one buffer per CPU): an
        // address computation, no dependent load from the map.
        if _fastPath(cpu < self.sharedBufferCount) {
            return self.cores + cpu
        }
        if cpu < self.cpuMapCount {
            return self.cpuMap[cpu]
        }
        return self.cores + cpu % self.sharedBufferCount
    }

    // MARK: Consumer attachment

    /// Attaches the consumer's doorbell: writers ring it at deliveries while the
    /// consumer sleeps. One consumer per channel.
    ///
    /// - Returns: `false` if a different consumer is already attached.
    @discardableResult
    public func attachConsumer(_ wakeup: RelayConsumerWakeup) -> Bool {
        self.consumerWakeup.withLock { current in
            if let current { return current === wakeup }
            current = wakeup
            // releasing: pairs with the acquiring load in `wakeConsumer`, so a writer that
            // sees the address sees initialized storage.
            self.consumerWakeupAddress.store(UInt(bitPattern: wakeup.storage), ordering: .releasing)
            return true
        }
    }

    /// Detaches the consumer's doorbell. When it returns, no writer uses the detached
    /// wake-up any more, and the channel no longer holds it.
    public func detachConsumer() {
        let detached: RelayConsumerWakeup? = self.consumerWakeup.withLock { current in
            // sequentiallyConsistent: Dekker with the writers' increment of their counter and
            // their load of the address in `wakeConsumer`: either a writer loads 0, or our
            // loads of the counters below see its increment and wait for it.
            self.consumerWakeupAddress.store(0, ordering: .sequentiallyConsistent)
            defer { current = nil }
            return current
        }
        guard detached != nil else { return }
        // Writers that loaded the old address are inside `wakeConsumer` for a few loads and
        // at most a futex wake and an eventfd write (which the consumer's `setEventFD` also
        // waits for). Writers that come later load 0, or a newly attached address.
        for index in 0...self.bufferCount {
            var spins = 0
            // sequentiallyConsistent: the load half of the pair above; acquiring, so the
            // writer's uses of the storage (released by its decrement) are over.
            while self.doorbellUsers(index).pointee.load(ordering: .sequentiallyConsistent) != 0 {
                spins += 1
                if spins > 64 { sched_yield_() }
            }
        }
        // `detached` is released here: no writer can reach its storage any more.
    }

    /// Counter `index` of ``doorbellUsers``.
    @inline(__always)
    func doorbellUsers(_ index: Int) -> UnsafeMutablePointer<Atomic<Int64>> {
        (self.doorbellUsers + index &* 64).assumingMemoryBound(to: Atomic<Int64>.self)
    }

    /// Rings the consumer if it sleeps at least as deeply as `threshold`. `buffer` picks the
    /// ``doorbellUsers`` counter (the buffer written, or ``bufferCount`` for `close()`).
    @inline(__always)
    func wakeConsumer(threshold: RelayConsumerWakeup.State, buffer: Int) {
        let users = self.doorbellUsers(buffer)
        // sequentiallyConsistent: Dekker with `detachConsumer` (see there). Once per
        // sub-buffer start or delivery, on this buffer's own line: never per record.
        users.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        // releasing: our uses of the storage happen before `detachConsumer` reads 0.
        defer { users.pointee.wrappingSubtract(1, ordering: .releasing) }
        // sequentiallyConsistent: the load half of the Dekker pair with `detachConsumer`;
        // acquiring too: pairs with the releasing store in `attachConsumer`, so a writer
        // that sees the address sees initialized storage.
        let address = self.consumerWakeupAddress.load(ordering: .sequentiallyConsistent)
        if address == 0 { return }
        if threshold == .deepSleep {
            // sequentiallyConsistent fence: Dekker with `RelayConsumerWakeup.prepareToSleep`
            // and the consumer's re-check of the position (`hasPartialSubbuffer`). The
            // first-record and switch paths published the position with a restartable
            // sequence or an exclusive writer's plain store, which the store buffer may
            // still hold when the state load below reads (StoreLoad); without the fence
            // both sides can miss each other and the consumer sleeps without a timer. (A
            // delivery's sequentially consistent state store already orders its load.)
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        }
        let storage = UnsafeMutablePointer<RelayConsumerWakeup.Storage>(bitPattern: address).unsafelyUnwrapped
        RelayConsumerWakeup.assertLive(storage)
        // sequentiallyConsistent: Dekker with `RelayConsumerWakeup.prepareToSleep`.
        let state = storage.pointee.state.load(ordering: .sequentiallyConsistent)
        if state >= threshold.rawValue {
            self.ringConsumer(storage)
        }
    }

    @inline(never)
    func ringConsumer(_ storage: UnsafeMutablePointer<RelayConsumerWakeup.Storage>) {
        RelayConsumerWakeup.ring(storage)
    }
}
