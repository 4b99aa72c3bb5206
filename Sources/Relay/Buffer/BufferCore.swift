import Synchronization

/// Typed access to one buffer region: cached geometry plus pointers to the atomics
/// bound inside the region.
///
/// # Invariants (this file and `RelayChannel+WritePath.swift` are the engine's unsafe core)
/// - `base` points at a live, page-aligned `MappedRegion` owned by the channel; a
///   `BufferCore` is only used while its channel is alive.
/// - Every atomic word was bound with `bindMemory(to: Atomic<…>.self)` and initialized
///   exactly once by `initializeRegion` before any other thread could see the region.
/// - The geometry fields are copies of the region's read-only identity line.
/// - `subbufSize` and `subbufCount` are powers of two, `subbufSize ≥ 4096`, and
///   `subbufSize ≤ 2^30`, so the low 32 bits of a commit word can hold it.
struct BufferCore: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let data: UnsafeMutableRawPointer
    let index: Int
    let subbufSize: UInt64
    let shift: UInt64
    let offsetMask: UInt64
    let dataMask: UInt64
    let slotMask: UInt64
    let subbufCount: UInt64
    /// Engine header + client header: the offset of the first record in a sub-buffer.
    let headerSize: UInt64
    /// The largest record: `subbufSize − headerSize`.
    let maxRecord: UInt64
    let mode: ModeCode
    /// The block timeout in nanoseconds (`< 0`: forever), for `.block`.
    let blockTimeoutNanoseconds: Int64
    /// Whether membarrier(2) carries the heavy side of exclusive-writer handshakes
    /// (cached here so the record path does not touch a lazily initialized global).
    let expeditedFence: Bool
    /// The CPU whose threads move this buffer's words with restartable sequences, or
    /// `PerCPU.noOwner` (locked instructions for every writer). See `PerCPU`.
    private(set) var ownerCPU: UInt32
    /// `PerCPU.rseqOffset`, next to the fields the record path reads.
    let rseqOffset: Int

    /// This core without an owner CPU: its words are moved with locked instructions only.
    /// For a region no other thread can touch yet (open) or must not touch (`reset()` of
    /// an idle channel), where the remote path's membarrier would be wasted.
    var withoutOwner: BufferCore {
        var core = self
        core.ownerCPU = PerCPU.noOwner
        return core
    }

    enum ModeCode: UInt32 {
        case overwrite = 0
        case drop = 1
        case block = 2
    }

    init(region: MappedRegion, index: Int, geometry: Geometry, mode: RelayMode, ownerCPU: UInt32 = PerCPU.noOwner) {
        self.ownerCPU = ownerCPU
        self.rseqOffset = ownerCPU == PerCPU.noOwner ? 0 : PerCPU.rseqOffset
        self.base = region.base
        self.data = region.base + geometry.dataOffset
        self.index = index
        self.subbufSize = UInt64(geometry.subbufSize)
        self.shift = UInt64(geometry.subbufSize.trailingZeroBitCount)
        self.offsetMask = UInt64(geometry.subbufSize - 1)
        self.dataMask = UInt64(geometry.subbufSize * geometry.subbufCount - 1)
        self.slotMask = UInt64(geometry.subbufCount - 1)
        self.subbufCount = UInt64(geometry.subbufCount)
        self.headerSize = UInt64(geometry.headerSize)
        self.maxRecord = UInt64(geometry.subbufSize - geometry.headerSize)
        self.expeditedFence = AsymmetricFence.isExpedited
        switch mode.kind {
        case .overwrite:
            self.mode = .overwrite
            self.blockTimeoutNanoseconds = -1
        case .drop:
            self.mode = .drop
            self.blockTimeoutNanoseconds = -1
        case .block(let timeout):
            self.mode = .block
            if let timeout {
                // Past Int64 nanoseconds (292 years): wait that long rather than trap.
                self.blockTimeoutNanoseconds = Clock.nanoseconds(timeout)
            } else {
                self.blockTimeoutNanoseconds = -1
            }
        }
    }

    // MARK: Control words

    @inline(__always)
    func word(_ offset: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (self.base + offset).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    @inline(__always) var position: UnsafeMutablePointer<Atomic<UInt64>> { self.word(RegionLayout.positionOffset) }
    @inline(__always) var remote: UnsafeMutablePointer<Atomic<UInt64>> { self.word(RegionLayout.remoteOffset) }
    @inline(__always) var busy: UnsafeMutablePointer<Atomic<UInt64>> { self.word(RegionLayout.busyOffset) }
    @inline(__always) var flushRequest: UnsafeMutablePointer<Atomic<UInt64>> {
        self.word(RegionLayout.flushRequestOffset)
    }
    @inline(__always) var exclusiveOwner: UnsafeMutablePointer<Atomic<UInt64>> {
        self.word(RegionLayout.exclusiveOwnerOffset)
    }
    @inline(__always) var fullFlag: UnsafeMutablePointer<Atomic<UInt64>> { self.word(RegionLayout.fullFlagOffset) }
    @inline(__always) var blockStalled: UnsafeMutablePointer<Atomic<UInt64>> { self.word(RegionLayout.blockStalledOffset) }
    @inline(__always) var consumed: UnsafeMutablePointer<Atomic<UInt64>> { self.word(RegionLayout.consumedOffset) }
    @inline(__always) var waiters: UnsafeMutablePointer<Atomic<UInt64>> { self.word(RegionLayout.waitersOffset) }
    @inline(__always) var spaceFutex: UnsafeMutablePointer<Atomic<UInt32>> {
        (self.base + RegionLayout.spaceFutexOffset).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    // MARK: Slots

    @inline(__always)
    func commitWord(slot: UInt64) -> UnsafeMutablePointer<Atomic<UInt64>> {
        self.word(RegionLayout.slotTableOffset &+ Int(slot) &* RegionLayout.slotStride &+ RegionLayout.slotCommitOffset)
    }

    @inline(__always)
    func stateWord(slot: UInt64) -> UnsafeMutablePointer<Atomic<UInt64>> {
        self.word(RegionLayout.slotTableOffset &+ Int(slot) &* RegionLayout.slotStride &+ RegionLayout.slotStateOffset)
    }

    @inline(__always)
    func slot(ofSequence sequence: UInt64) -> UInt64 { sequence & self.slotMask }

    /// The start of the sub-buffer that holds `sequence`.
    @inline(__always)
    func subbuffer(sequence: UInt64) -> UnsafeMutableRawPointer {
        self.data + Int((sequence & self.slotMask) &<< self.shift)
    }

    /// Where the bytes at `position` live.
    @inline(__always)
    func address(of position: UInt64) -> UnsafeMutableRawPointer {
        self.data + Int(position & self.dataMask)
    }

    // MARK: Header fields (plain memory; ordering is provided by the commit/state words)

    @inline(__always)
    func header<T: FixedWidthInteger>(_ sequence: UInt64, _ offset: Int, as type: T.Type) -> T {
        self.subbuffer(sequence: sequence).load(fromByteOffset: offset, as: T.self)
    }

    @inline(__always)
    func setHeader<T: FixedWidthInteger>(_ sequence: UInt64, _ offset: Int, _ value: T) {
        self.subbuffer(sequence: sequence).storeBytes(of: value, toByteOffset: offset, as: T.self)
    }

    // MARK: Statistics (relaxed: counters only, never used for synchronization; the one
    // exception, the delivered count's releasing increment in `deliver`, does not use `count`)

    @inline(__always)
    func count(_ offset: Int, _ amount: UInt64 = 1) {
        self.word(offset).pointee.wrappingAdd(amount, ordering: .relaxed)
    }

    @inline(__always)
    func counter(_ offset: Int) -> UInt64 {
        self.word(offset).pointee.load(ordering: .relaxed)
    }
}

/// Validated channel geometry, shared by every buffer of a channel.
struct Geometry: Sendable, Hashable {
    let subbufSize: Int
    let subbufCount: Int
    let clientHeaderSize: Int
    /// Engine header + client header, rounded up to 8 bytes.
    let headerSize: Int
    let controlSize: Int
    let dataOffset: Int
    let regionSize: Int

    init(subbufSize: Int, subbufCount: Int, clientHeaderSize: Int, pageSize: Int) {
        self.subbufSize = subbufSize
        self.subbufCount = subbufCount
        self.clientHeaderSize = clientHeaderSize
        self.headerSize = (RegionLayout.engineHeaderSize + clientHeaderSize + 7) & ~7
        self.controlSize = RegionLayout.controlSize(subbufCount: subbufCount, pageSize: pageSize)
        self.dataOffset = self.controlSize
        self.regionSize = self.controlSize + subbufSize * subbufCount
    }
}
