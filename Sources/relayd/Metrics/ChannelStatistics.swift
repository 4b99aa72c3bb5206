/// Cumulative statistics of one relay channel, read from the engine at scrape time.
///
/// All `UInt64` fields except the two gauges are monotonic counters since the channel was created. From the
/// Relay module's `RelayChannel.stats().total` (`RelayBufferStats`): `recordsWritten`, `recordsDropped` →
/// ``recordsDroppedFull``, `recordsTooBig`, `recordsLapped`, `recordsRefusedClosed`, `subbuffersProduced`,
/// `subbuffersConsumed`, `subbuffersOverwritten`, `corruptSubbuffers` → ``subbuffersCorrupt``, `writerWaits`; ``bytesFilled`` = `unconsumedSubbuffers ×
/// subbufferSize`; ``capacityBytes`` = `subbufferSize × subbufferCount × bufferCount`.
struct ChannelStatistics: Sendable, Equatable {
    /// Records committed into the channel.
    var recordsWritten: UInt64 = 0
    /// Reservations refused because no sub-buffer was free.
    var recordsDroppedFull: UInt64 = 0
    /// Reservations refused because the record exceeds a sub-buffer's payload.
    var recordsTooBig: UInt64 = 0
    /// Sub-buffers sealed and handed to the shipper.
    var subbuffersProduced: UInt64 = 0
    /// Sub-buffers the shipper finished with.
    var subbuffersConsumed: UInt64 = 0
    /// Sub-buffers reused before being shipped (`mode = "overwrite"`).
    var subbuffersOverwritten: UInt64 = 0
    /// Delivered sub-buffers the shipper skipped because their header was corrupt (not written by relayd's engine);
    /// their records were not shipped.
    var subbuffersCorrupt: UInt64 = 0
    /// Overwrite mode: records refused because the next sub-buffer was still held by a stalled writer.
    var recordsLapped: UInt64 = 0
    /// Writes refused because the channel was closed (shutdown).
    var recordsRefusedClosed: UInt64 = 0
    /// Times a writer waited for a free sub-buffer (`mode = "block"`).
    var writerWaits: UInt64 = 0
    /// Bytes currently committed and not yet consumed (a gauge).
    var bytesFilled: UInt64 = 0
    /// Total buffer bytes (`subbuf_size × subbufs × CPUs`; a gauge).
    var capacityBytes: UInt64 = 0

    /// Creates statistics (all zero by default).
    init(
        recordsWritten: UInt64 = 0,
        recordsDroppedFull: UInt64 = 0,
        recordsTooBig: UInt64 = 0,
        subbuffersProduced: UInt64 = 0,
        subbuffersConsumed: UInt64 = 0,
        subbuffersOverwritten: UInt64 = 0,
        subbuffersCorrupt: UInt64 = 0,
        recordsLapped: UInt64 = 0,
        recordsRefusedClosed: UInt64 = 0,
        writerWaits: UInt64 = 0,
        bytesFilled: UInt64 = 0,
        capacityBytes: UInt64 = 0
    ) {
        self.recordsLapped = recordsLapped
        self.recordsRefusedClosed = recordsRefusedClosed
        self.recordsWritten = recordsWritten
        self.recordsDroppedFull = recordsDroppedFull
        self.recordsTooBig = recordsTooBig
        self.subbuffersProduced = subbuffersProduced
        self.subbuffersConsumed = subbuffersConsumed
        self.subbuffersOverwritten = subbuffersOverwritten
        self.subbuffersCorrupt = subbuffersCorrupt
        self.writerWaits = writerWaits
        self.bytesFilled = bytesFilled
        self.capacityBytes = capacityBytes
    }
}
