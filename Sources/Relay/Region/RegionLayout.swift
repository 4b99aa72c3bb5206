import Synchronization

/// Where everything lives inside one buffer's mapped region.
///
/// Each per-CPU buffer is ONE page-aligned mapping that holds its sub-buffers *and*
/// all of its control state. Nothing in it is a pointer or a Swift object: every
/// reference is an offset from the region base. So the same bytes work whether the
/// region is anonymous memory, a memfd, or a /dev/shm file another process maps,
/// and the whole region can be registered as one io_uring fixed buffer.
///
/// ```
///  region base (page aligned)
///  ┌──────────────────────────────────────────────────────────────────────────┐
///  │ 0x000 identity line   magic, version, geometry, mode (read-only)         │
///  │ 0x040 writer line     position  (the reserve word), remote (see PerCPU)  │
///  │ 0x080 exclusive line  busy      (exclusive writer only)                  │
///  │ 0x0C0 control line    flushRequest, exclusiveOwner, fullFlag             │
///  │ 0x100 consumer line   consumed, spaceFutex, waiters, corrupt             │
///  │ 0x140 delivery stats  records, bytes, delivered (per sub-buffer)         │
///  │ 0x180 loss stats      dropped, tooBig, lapped, timeouts, ...             │
///  │ 0x1C0 more stats      overwritten, waits, full events, abandoned, ...    │
///  │ 0x200 slot table      per sub-buffer: commit word, state word (32 B)     │
///  │ ...   (rounded up to a page)                                             │
///  ├──────────────────────────────────────────────────────────────────────────┤
///  │ dataOffset: sub-buffer 0  [engine header 64 B][client header][records…][pad]
///  │             sub-buffer 1  …                                              │
///  │             sub-buffer n-1                                               │
///  └──────────────────────────────────────────────────────────────────────────┘
/// ```
///
/// ## The position word
/// `position = sequence × subbufSize + offset`, where `sequence` counts sub-buffers
/// since open (never wraps in practice: 2^51 sub-buffers) and `offset` is the next
/// free byte in that sub-buffer. Bit 63 is the *closed* flag. An offset of 0 cannot
/// occur inside an open sub-buffer (the header is there), so `offset == 0` encodes
/// "sub-buffer `sequence − 1` is sealed and `sequence` has not started yet". Because
/// `subbufSize` and `subbufCount` are powers of two, the data address of a position
/// is `dataOffset + (position & (subbufCount × subbufSize − 1))`: no division on the
/// record path.
///
/// ## The slot table
/// Slot `sequence % subbufCount` has:
/// - `commit`: bytes committed in the current incarnation (low 32 bits) and records
///   committed (high 32 bits). Header bytes and padding count as committed bytes, so
///   the sub-buffer is complete when the low half reaches `subbufSize`: that is the
///   relayfs rule "commit count == size − padding" with the padding added in. The
///   committer that completes it delivers it and resets the word to 0.
/// - `state`: `sequence << 2 | phase`, phase 0 = being written, 1 = delivered, 2 = skipped
///   (no-overwrite modes: the consumer found a word there no engine store could have left
///   after the sub-buffer was delivered, and passed it as corrupt; see
///   `RelayChannel.isCorruptState`). Phase 3 is never stored. In overwrite mode a writer
///   that finds a word no engine store can have left over a delivered incarnation stores the
///   delivered value back (`RelayChannel.repairCorruptState`) and reuses the slot.
///
/// All multi-byte fields are little-endian (native on x86-64 and arm64).
enum RegionLayout {
    static let magic: UInt32 = 0x4259_4C52  // "RLYB" in memory order
    /// The layout version in the identity line, for another process that maps the region:
    /// a mapper must refuse a version it does not know. 1: the first layout; 2: a slot's state
    /// word can hold phase 2 ("skipped"), which a version-1 consumer would take for a writer
    /// still inside the sub-buffer.
    static let version: UInt16 = 2

    // Identity line (read-only after open).
    static let magicOffset = 0x000  // UInt32
    static let versionOffset = 0x004  // UInt16
    static let engineHeaderSizeOffset = 0x006  // UInt16
    static let bufferIndexOffset = 0x008  // UInt32
    static let subbufCountOffset = 0x00C  // UInt32
    static let subbufSizeOffset = 0x010  // UInt64
    static let modeOffset = 0x018  // UInt32
    static let headerSizeOffset = 0x01C  // UInt32 (engine + client header)
    static let dataOffsetOffset = 0x020  // UInt64
    static let regionSizeOffset = 0x028  // UInt64
    static let clientHeaderSizeOffset = 0x030  // UInt32

    // Writer line.
    static let positionOffset = 0x040
    /// Threads currently moving this buffer's position or commit words with locked
    /// instructions while its writers use restartable sequences (see `PerCPU`).
    static let remoteOffset = 0x048
    // Exclusive-writer line.
    static let busyOffset = 0x080
    // Control line.
    static let flushRequestOffset = 0x0C0
    static let exclusiveOwnerOffset = 0x0C8
    static let fullFlagOffset = 0x0D0  // the last full episode reported: its blocked sequence (one buffer-full callback each)
    static let blockStalledOffset = 0x0D8  // block mode: 1 after a wait timed out, until the consumer frees space
    // Consumer line.
    static let consumedOffset = 0x100
    static let spaceFutexOffset = 0x108  // Atomic<UInt32>
    static let waitersOffset = 0x110
    static let corruptOffset = 0x118  // delivered sub-buffers the consumer passed as corrupt; overwrite mode: state words a writer repaired
    // Delivery stats (written once per delivered sub-buffer).
    static let recordsWrittenOffset = 0x140
    static let bytesWrittenOffset = 0x148
    static let deliveredOffset = 0x150
    // Loss stats (written on slow paths only).
    static let droppedFullOffset = 0x180
    static let tooBigOffset = 0x188
    static let lappedOffset = 0x190
    static let blockTimeoutsOffset = 0x198
    static let lostTotalOffset = 0x1A0  // cumulative lost records, copied into headers
    static let closedDropsOffset = 0x1A8
    // Other slow-path stats.
    static let overwrittenOffset = 0x1C0
    static let writerWaitsOffset = 0x1C8
    static let bufferFullEventsOffset = 0x1D0
    static let abandonedOffset = 0x1D8
    static let flushesOffset = 0x1E0
    static let flushSkipsOffset = 0x1E8
    static let remoteOperationsOffset = 0x1F0  // per-CPU buffers: operations that took the remote path
    static let handshakesOffset = 0x1F8  // exclusive buffers: flushes and closes that parked the writer (internal)

    static let slotTableOffset = 0x200
    static let slotStride = 32
    static let slotCommitOffset = 0
    static let slotStateOffset = 8

    /// Size of the engine's sub-buffer header.
    static let engineHeaderSize = 64

    /// Bit 63 of the position word: the buffer is closed.
    static let closedBit: UInt64 = 1 << 63

    /// Phase bits of a slot state word.
    static let phaseWriting: UInt64 = 0
    static let phaseDelivered: UInt64 = 1
    /// Stored by the consumer over a corrupt state word it passed (no-overwrite modes):
    /// the slot may be released like a delivered one.
    static let phaseSkipped: UInt64 = 2

    /// Bytes of control state for `subbufCount` sub-buffers, rounded up to `pageSize`.
    static func controlSize(subbufCount: Int, pageSize: Int) -> Int {
        let raw = self.slotTableOffset + subbufCount * self.slotStride
        return (raw + pageSize - 1) / pageSize * pageSize
    }

    static func checkAtomicLayout() {
        precondition(MemoryLayout<Atomic<UInt64>>.size == 8 && MemoryLayout<Atomic<UInt64>>.alignment == 8)
        precondition(MemoryLayout<Atomic<UInt32>>.size == 4 && MemoryLayout<Atomic<UInt32>>.alignment == 4)
    }
}

/// Layout of the 64-byte header the engine writes at the start of every sub-buffer.
///
/// ```
///  +0  magic       UInt32  "RLYS"
///  +4  version     UInt16
///  +6  headerSize  UInt16  engine header + client header: where records start
///  +8  bufferIndex UInt32  the buffer (CPU) this sub-buffer belongs to
///  +12 flags       UInt32  SubbufferFlags
///  +16 sequence    UInt64  per-buffer sub-buffer sequence number, from 0
///  +24 beginTime   UInt64  CLOCK_REALTIME ns when the sub-buffer started (≤ first record);
///                          a buffer's first sub-buffer after open or reset, started empty,
///                          takes the time of its first record's reserve instead
///  +32 endTime     UInt64  CLOCK_REALTIME ns when it was sealed (≥ last reserve, ≥ beginTime)
///  +40 contentSize UInt32  bytes of records (subbufSize − headerSize − padding)
///  +44 padding     UInt32  unused bytes at the end
///  +48 lostRecords UInt64  cumulative records lost in this buffer when sealed
///  +56 records     UInt32  records in this sub-buffer
///  +60 subbufSize  UInt32
/// ```
enum SubbufferHeaderLayout {
    static let magic: UInt32 = 0x5359_4C52  // "RLYS" in memory order
    static let version: UInt16 = 1

    static let magicOffset = 0
    static let versionOffset = 4
    static let headerSizeOffset = 6
    static let bufferIndexOffset = 8
    static let flagsOffset = 12
    static let sequenceOffset = 16
    static let beginTimeOffset = 24
    static let endTimeOffset = 32
    static let contentSizeOffset = 40
    static let paddingOffset = 44
    static let lostRecordsOffset = 48
    static let recordsOffset = 56
    static let subbufSizeOffset = 60
}
