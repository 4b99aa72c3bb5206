import Synchronization

/// Counters of one buffer. Every record offered to the channel ends up in exactly one
/// of `recordsWritten`, `recordsDropped`, `recordsTooBig`, `recordsLapped`,
/// `recordsRefusedClosed`, or is still in flight (reserved or in an undelivered
/// sub-buffer): nothing is lost without a count.
public struct RelayBufferStats: Sendable, Hashable {
    /// Records in delivered sub-buffers.
    public var recordsWritten: UInt64 = 0
    /// Bytes of records in delivered sub-buffers.
    public var bytesWritten: UInt64 = 0
    /// Records dropped because every sub-buffer was unconsumed (drop mode, and block-mode
    /// timeouts).
    public var recordsDropped: UInt64 = 0
    /// Of `recordsDropped`, those that waited the full block timeout (the later drops of the
    /// same stall fail at once and are only in `recordsDropped`; see ``RelayMode/block(timeout:)``).
    public var blockTimeouts: UInt64 = 0
    /// Records rejected for being larger than `maxRecordSize`.
    public var recordsTooBig: UInt64 = 0
    /// Overwrite mode: records refused because the next sub-buffer was still held by a
    /// stalled writer.
    public var recordsLapped: UInt64 = 0
    /// Writes refused because the channel was closed.
    public var recordsRefusedClosed: UInt64 = 0
    /// Lost records (dropped + too big + lapped), the cumulative value sub-buffer headers carry.
    public var recordsLost: UInt64 = 0
    /// Sub-buffers sealed (relayfs "produced").
    public var subbuffersProduced: UInt64 = 0
    /// Sub-buffers delivered (sealed and fully committed).
    public var subbuffersDelivered: UInt64 = 0
    /// Sub-buffers the consumer released (relayfs "consumed").
    public var subbuffersConsumed: UInt64 = 0
    /// Overwrite mode: sub-buffers reused before they were consumed.
    public var subbuffersOverwritten: UInt64 = 0
    /// Delivered sub-buffers whose header was corrupt (not one this channel's engine wrote:
    /// the region is shared memory another process may have written), which the consumer
    /// skipped: a reader reports each as ``RelayRead/corrupt(sequence:skippedBefore:)``, a
    /// `RelayShipper` does not ship it. Their records are lost. Counted by the consumer when it
    /// gets to one; anything but 0 means something other than the engine writes into the
    /// channel's memory. In overwrite mode it also counts slot state words a writer found
    /// overwritten after the slot's sub-buffer was delivered, and repaired so it could reuse
    /// the slot: nothing is lost there (and ``RelayCallbacks/corrupt`` is not called).
    public var corruptSubbuffers: UInt64 = 0
    /// Writes (and reserves) that had to wait for space (block mode): each counted once,
    /// however often it was woken before it got space or timed out. A write that finds
    /// the buffer full but never sleeps (its deadline already passed) is not counted.
    public var writerWaits: UInt64 = 0
    /// Buffer-full episodes (buffer-full callbacks).
    public var bufferFullEvents: UInt64 = 0
    /// Reservations dropped without commit (filled with the filler).
    public var reservationsAbandoned: UInt64 = 0
    /// Partly filled sub-buffers sealed by flush/close.
    public var flushes: UInt64 = 0
    /// Flushes skipped because an exclusive writer stayed inside a write for over 2 ms.
    public var flushSkips: UInt64 = 0
    /// Per-CPU buffers (``RelayChannel/usesRestartableSequences``): reserves, commits and
    /// seals made from another CPU (a writer that migrated in the middle of a write,
    /// `flush()` from a timer, `close()`), each paid with one membarrier(2).
    public var remoteOperations: UInt64 = 0

    /// Sub-buffers sealed but not yet consumed that are still in the buffer: how full it is.
    /// At most the sub-buffer count per buffer: in overwrite mode the ones a lagging consumer
    /// never got to were overwritten, so they are gone, not filling the buffer.
    public var unconsumedSubbuffers: UInt64 = 0

    /// Creates zeroed counters.
    public init() {}

    mutating func add(_ other: RelayBufferStats) {
        self.recordsWritten += other.recordsWritten
        self.bytesWritten += other.bytesWritten
        self.recordsDropped += other.recordsDropped
        self.blockTimeouts += other.blockTimeouts
        self.recordsTooBig += other.recordsTooBig
        self.recordsLapped += other.recordsLapped
        self.recordsRefusedClosed += other.recordsRefusedClosed
        self.recordsLost += other.recordsLost
        self.subbuffersProduced += other.subbuffersProduced
        self.subbuffersDelivered += other.subbuffersDelivered
        self.subbuffersConsumed += other.subbuffersConsumed
        self.subbuffersOverwritten += other.subbuffersOverwritten
        self.corruptSubbuffers += other.corruptSubbuffers
        self.unconsumedSubbuffers += other.unconsumedSubbuffers
        self.writerWaits += other.writerWaits
        self.bufferFullEvents += other.bufferFullEvents
        self.reservationsAbandoned += other.reservationsAbandoned
        self.flushes += other.flushes
        self.flushSkips += other.flushSkips
        self.remoteOperations += other.remoteOperations
    }
}

/// Counters of a channel: per buffer, and summed.
public struct RelayChannelStats: Sendable, Hashable {
    /// One entry per buffer.
    public var buffers: [RelayBufferStats]
    /// The sum over all buffers.
    public var total: RelayBufferStats
}

extension RelayChannel {
    /// A snapshot of buffer `index`'s counters. Counters are read individually
    /// (relaxed), so a snapshot taken while writers run is approximate; after
    /// `flush()` and delivery it is exact.
    public func stats(buffer index: Int) -> RelayBufferStats {
        self.checkBufferIndex(index)
        let b = self.cores[index]
        var s = RelayBufferStats()
        s.recordsWritten = b.counter(RegionLayout.recordsWrittenOffset)
        s.bytesWritten = b.counter(RegionLayout.bytesWrittenOffset)
        s.recordsDropped = b.counter(RegionLayout.droppedFullOffset)
        s.blockTimeouts = b.counter(RegionLayout.blockTimeoutsOffset)
        s.recordsTooBig = b.counter(RegionLayout.tooBigOffset)
        s.recordsLapped = b.counter(RegionLayout.lappedOffset)
        s.recordsRefusedClosed = b.counter(RegionLayout.closedDropsOffset)
        s.recordsLost = b.counter(RegionLayout.lostTotalOffset)
        s.subbuffersProduced = self.produced(b)
        s.subbuffersDelivered = b.counter(RegionLayout.deliveredOffset)
        s.subbuffersConsumed = b.consumed.pointee.load(ordering: .relaxed)
        s.subbuffersOverwritten = b.counter(RegionLayout.overwrittenOffset)
        s.corruptSubbuffers = b.counter(RegionLayout.corruptOffset)
        // Overwrite mode: `consumed` lags behind a lapped consumer until it reads or consumes
        // again, but only the newest `subbufCount` sealed sub-buffers can still be in the buffer.
        let unconsumed = s.subbuffersProduced >= s.subbuffersConsumed ? s.subbuffersProduced - s.subbuffersConsumed : 0
        s.unconsumedSubbuffers = min(unconsumed, b.subbufCount)
        s.writerWaits = b.counter(RegionLayout.writerWaitsOffset)
        s.bufferFullEvents = b.counter(RegionLayout.bufferFullEventsOffset)
        s.reservationsAbandoned = b.counter(RegionLayout.abandonedOffset)
        s.flushes = b.counter(RegionLayout.flushesOffset)
        s.flushSkips = b.counter(RegionLayout.flushSkipsOffset)
        s.remoteOperations = b.counter(RegionLayout.remoteOperationsOffset)
        return s
    }

    /// A snapshot of every buffer's counters and their sum.
    public func stats() -> RelayChannelStats {
        var total = RelayBufferStats()
        var all: [RelayBufferStats] = []
        all.reserveCapacity(self.bufferCount)
        for index in 0..<self.bufferCount {
            let s = self.stats(buffer: index)
            total.add(s)
            all.append(s)
        }
        return RelayChannelStats(buffers: all, total: total)
    }

    /// Sub-buffers sealed so far in `b` (relayfs `subbufs_produced`).
    func produced(_ b: BufferCore) -> UInt64 {
        // acquiring: a consumer that sees the count then looks at the slots.
        let p = b.position.pointee.load(ordering: .acquiring) & ~RegionLayout.closedBit
        // Open sub-buffer `p >> shift` is not sealed; in the sealed state (offset 0) the
        // sequence part already counts the sealed one.
        return p &>> b.shift
    }
}
