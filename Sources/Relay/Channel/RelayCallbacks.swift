/// The relayfs callbacks, as Swift closures.
///
/// Callbacks run on the thread that triggered them (a writer, a flusher, or the
/// consumer), once per sub-buffer event, never per record. They must not write to
/// the same channel: that could recurse into a full buffer. Nor may they `close()` or
/// `flush()` it: on an exclusive writer's thread the callback runs while that writer is
/// inside its buffer, which `close()` would wait for forever (and `flush()` for 2 ms,
/// then skip the buffer).
public struct RelayCallbacks: Sendable {
    /// A sub-buffer begins (relayfs `subbuf_start`). The client may fill the header
    /// bytes it reserved with `clientHeaderSize`. Also called for the first sub-buffer.
    public var subbufferStart: (@Sendable (SubbufferStart) -> Void)?
    /// A sub-buffer is complete: sealed, and every reservation in it committed
    /// (relayfs `deliver`). Runs on the thread whose commit completed it.
    public var deliver: (@Sendable (SubbufferDelivery) -> Void)?
    /// The consumer (a reader, or a shipper) passed a delivered sub-buffer without reading it
    /// because it is corrupt: the region can be shared memory another process writes, and
    /// that sub-buffer's header (or its slot's state word) is not what this engine wrote. Its
    /// records are lost; ``RelayBufferStats/corruptSubbuffers`` counts it too. No relayfs
    /// counterpart. Runs on the consumer's thread once per such sub-buffer, before the
    /// consumer releases it: the consumed count passes the sub-buffer only after this
    /// returns, so a client that turns consumed sub-buffers into delivered records (with the
    /// ``deliver`` callback's counts) can tell these apart.
    public var corrupt: (@Sendable (SubbufferCorruption) -> Void)?
    /// Overwrite mode: the consumer (a reader, or a shipper) passed delivered sub-buffers
    /// without reading them because writers had reused their slots first (lapped it, or
    /// reused one while it copied it out). Their records are lost. No relayfs counterpart.
    /// Runs on the consumer's thread, before the consumer releases them: the consumed count
    /// passes them only after this returns, so a client that turns consumed sub-buffers into
    /// delivered records can tell these apart from the ones that were shipped (a sub-buffer
    /// reused after the consumer took an intact copy of it is not among them).
    public var overwritten: (@Sendable (SubbufferOverwrite) -> Void)?
    /// A no-overwrite buffer became full (relayfs `buf_full`): once per episode. An
    /// episode lasts until a writer starts a sub-buffer in space the consumer freed;
    /// writers that found the buffer full during it do not fire again.
    public var bufferFull: (@Sendable (BufferFull) -> Void)?
    /// A buffer region was mapped (relayfs `buf_mapped`): at open, once for every buffer.
    /// (The channel cannot see another process map a shared region, so that calls nothing.)
    public var bufferMapped: (@Sendable (BufferMapping) -> Void)?
    /// A buffer region is being unmapped (relayfs `buf_unmapped`): when the channel is
    /// deinitialized, once for every buffer.
    public var bufferUnmapped: (@Sendable (BufferMapping) -> Void)?

    /// Creates a set of callbacks; all default to none.
    public init(
        subbufferStart: (@Sendable (SubbufferStart) -> Void)? = nil,
        deliver: (@Sendable (SubbufferDelivery) -> Void)? = nil,
        corrupt: (@Sendable (SubbufferCorruption) -> Void)? = nil,
        overwritten: (@Sendable (SubbufferOverwrite) -> Void)? = nil,
        bufferFull: (@Sendable (BufferFull) -> Void)? = nil,
        bufferMapped: (@Sendable (BufferMapping) -> Void)? = nil,
        bufferUnmapped: (@Sendable (BufferMapping) -> Void)? = nil
    ) {
        self.subbufferStart = subbufferStart
        self.deliver = deliver
        self.corrupt = corrupt
        self.overwritten = overwritten
        self.bufferFull = bufferFull
        self.bufferMapped = bufferMapped
        self.bufferUnmapped = bufferUnmapped
    }
}

/// Passed to ``RelayCallbacks/subbufferStart``.
public struct SubbufferStart: @unchecked Sendable {
    /// The buffer (CPU) index.
    public let buffer: Int
    /// The new sub-buffer's sequence number.
    public let sequence: UInt64
    /// The client header area of the new sub-buffer (`clientHeaderSize` bytes).
    ///
    /// - Warning: Valid only during the callback. Do not escape the pointer.
    public let clientHeader: UnsafeMutableRawBufferPointer
    /// The padding of the previous sub-buffer when this switch sealed it, else `nil`
    /// (it was sealed earlier by a flush, an exact fill, or a full buffer).
    public let previousPadding: Int?
}

/// Passed to ``RelayCallbacks/deliver``.
public struct SubbufferDelivery: Sendable, Hashable {
    /// The buffer (CPU) index.
    public let buffer: Int
    /// The sub-buffer's sequence number.
    public let sequence: UInt64
    /// Records in the sub-buffer.
    public let records: Int
    /// Bytes of records.
    public let contentSize: Int
    /// Unused bytes at the end.
    public let padding: Int
}

/// Passed to ``RelayCallbacks/corrupt``.
public struct SubbufferCorruption: Sendable, Hashable {
    /// The buffer (CPU) index.
    public let buffer: Int
    /// The sequence number of the sub-buffer the consumer passed without reading it.
    public let sequence: UInt64
}

/// Passed to ``RelayCallbacks/overwritten``.
public struct SubbufferOverwrite: Sendable, Hashable {
    /// The buffer (CPU) index.
    public let buffer: Int
    /// The sequence numbers of the sub-buffers the consumer passed without reading them.
    public let sequences: Range<UInt64>
}

/// Passed to ``RelayCallbacks/bufferFull``.
public struct BufferFull: Sendable, Hashable {
    /// The buffer (CPU) index.
    public let buffer: Int
    /// The sequence number of the last sealed sub-buffer.
    public let lastSequence: UInt64
}

/// Passed to ``RelayCallbacks/bufferMapped`` and ``RelayCallbacks/bufferUnmapped``.
public struct BufferMapping: @unchecked Sendable {
    /// The buffer (CPU) index.
    public let buffer: Int
    /// The region's base address in this process.
    public let base: UnsafeMutableRawPointer
    /// The region's size in bytes.
    public let size: Int
}
