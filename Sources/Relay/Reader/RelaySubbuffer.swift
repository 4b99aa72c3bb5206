/// A delivered sub-buffer, seen in place (no copy) during a read.
///
/// - Warning: Valid only inside the closure that received it. Do not escape its
///   pointers. In overwrite mode the bytes may change under the reader; the read
///   reports `.overwritten` when that happened, and its result must then be discarded.
public struct RelaySubbuffer: @unchecked Sendable {
    /// The buffer (CPU) index.
    public let buffer: Int
    /// The per-buffer sequence number (consecutive unless sub-buffers were lost).
    public let sequence: UInt64
    /// Sequence numbers skipped just before this one because they were overwritten
    /// before the reader got to them (overwrite mode). 0 otherwise.
    public let skippedBefore: UInt64
    /// Records in the sub-buffer.
    public let records: Int
    /// Cumulative records lost in this buffer when the sub-buffer was sealed.
    public let lostRecords: UInt64
    /// CLOCK_REALTIME ns at the sub-buffer's start (≤ its first record). A buffer's first
    /// sub-buffer after open or reset, started empty, takes the time of its first record's
    /// reserve instead.
    public let beginTimeNanoseconds: UInt64
    /// CLOCK_REALTIME ns at its seal (≥ its last reservation, and never less than
    /// ``beginTimeNanoseconds``, even if the realtime clock stepped back meanwhile).
    public let endTimeNanoseconds: UInt64
    /// Header flags.
    public let flags: SubbufferFlags
    /// Unused bytes at the end.
    public let padding: Int
    /// The records, back to back.
    public let content: UnsafeRawBufferPointer
    /// The client's header area: ``RelayChannelConfiguration/clientHeaderSize`` bytes as the
    /// sub-buffer start callback wrote them, then up to 7 zero bytes (the header is rounded up
    /// to 8 bytes, and a packet read back from a file records only the rounded size).
    public let clientHeader: UnsafeRawBufferPointer
    /// The whole sub-buffer: header, records and padding (what a `packets` file holds).
    public let packet: UnsafeRawBufferPointer

    /// Decodes the header at the start of `packet` (a whole sub-buffer, as written to a
    /// packets file). Returns `nil` if the magic, version or sizes are inconsistent, or the
    /// header is one no engine writes (a header size not a multiple of 8, more records than
    /// content bytes).
    public init?(packet: UnsafeRawBufferPointer, skippedBefore: UInt64 = 0) {
        guard packet.count >= RegionLayout.engineHeaderSize else { return nil }
        let magic = packet.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.magicOffset, as: UInt32.self)
        let version = packet.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.versionOffset, as: UInt16.self)
        guard magic == SubbufferHeaderLayout.magic, version == SubbufferHeaderLayout.version else { return nil }
        let headerSize = Int(packet.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.headerSizeOffset, as: UInt16.self))
        let subbufSize = Int(packet.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.subbufSizeOffset, as: UInt32.self))
        let contentSize = Int(packet.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.contentSizeOffset, as: UInt32.self))
        let padding = Int(packet.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.paddingOffset, as: UInt32.self))
        guard subbufSize == packet.count, headerSize >= RegionLayout.engineHeaderSize,
            headerSize + contentSize + padding == subbufSize
        else { return nil }
        // What the engine guarantees of every delivered sub-buffer: the header is rounded up to
        // 8 bytes, and every record is at least one byte.
        let records = Int(packet.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.recordsOffset, as: UInt32.self))
        guard headerSize & 7 == 0, records <= contentSize else { return nil }
        self.buffer = Int(packet.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.bufferIndexOffset, as: UInt32.self))
        self.sequence = packet.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.sequenceOffset, as: UInt64.self)
        self.skippedBefore = skippedBefore
        self.records = records
        self.lostRecords = packet.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.lostRecordsOffset, as: UInt64.self)
        self.beginTimeNanoseconds = packet.loadUnaligned(
            fromByteOffset: SubbufferHeaderLayout.beginTimeOffset, as: UInt64.self)
        self.endTimeNanoseconds = packet.loadUnaligned(
            fromByteOffset: SubbufferHeaderLayout.endTimeOffset, as: UInt64.self)
        self.flags = SubbufferFlags(
            rawValue: packet.loadUnaligned(fromByteOffset: SubbufferHeaderLayout.flagsOffset, as: UInt32.self))
        self.padding = padding
        self.content = UnsafeRawBufferPointer(rebasing: packet[headerSize..<(headerSize + contentSize)])
        self.clientHeader = UnsafeRawBufferPointer(
            rebasing: packet[RegionLayout.engineHeaderSize..<headerSize])
        self.packet = packet
    }
}

/// The outcome of reading the next sub-buffer of a buffer.
///
/// ## Loss accounting
/// Every sub-buffer a reader does not get is reported to it exactly once, by the result
/// that moves its cursor past it: a `.read` reports the ``RelaySubbuffer/skippedBefore``
/// sub-buffers lost just before the one it read, an `.overwritten` or a `.corrupt` reports
/// its own `skippedBefore` plus the sub-buffer it names. So, summed over a reader's results,
/// `skippedBefore` of every `.read` plus `skippedBefore + 1` of every `.overwritten` and
/// `.corrupt` is the number of sub-buffers it lost, and every result's
/// `sequence − skippedBefore` is the sequence after the previous result's.
public enum RelayRead<Value> {
    /// No delivered sub-buffer is waiting.
    case none
    /// The closure ran on the next delivered sub-buffer and returned `Value`.
    case read(Value)
    /// Overwrite mode: sub-buffer `sequence` was reused by a writer while the reader read it
    /// (or while it was about to: its header was already being rewritten, and the closure
    /// did not run). Discard whatever the closure derived from it. The reader moved past it.
    ///
    /// `skippedBefore` counts the sub-buffers lost just before it, as
    /// ``RelaySubbuffer/skippedBefore`` does for a read: `sequence − skippedBefore` up to
    /// `sequence` (excluded) were overwritten before the reader got to them. They, and
    /// `sequence` itself, are reported here only.
    case overwritten(sequence: UInt64, skippedBefore: UInt64)
    /// Sub-buffer `sequence` was delivered, but its header is not one this channel's engine
    /// wrote (bad magic, version or sizes, another channel's header size, another buffer's
    /// index or another sequence number): something else wrote into the channel's memory,
    /// which can be a memfd or /dev/shm file other processes map. The closure did not run.
    ///
    /// Its records are lost. The reader moved past it, and it counts in
    /// ``RelayBufferStats/corruptSubbuffers``. Release it like a read one: with
    /// `consume: true` it already was, otherwise call
    /// ``RelayChannel/subbufsConsumed(buffer:count:)`` for it, or no-overwrite writers never
    /// get its space back. To stop it, find what writes into the region: the `.sharedMemory`
    /// file's permissions should let only the producing and consuming processes map it.
    ///
    /// `skippedBefore` is as for `.overwritten` (overwrite mode only; else 0).
    case corrupt(sequence: UInt64, skippedBefore: UInt64)
}

extension RelayRead: Sendable where Value: Sendable {}
