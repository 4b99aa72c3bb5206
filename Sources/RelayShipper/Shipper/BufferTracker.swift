import Relay

/// One delivered sub-buffer handed to a sink.
struct ShipItem {
    /// Index of the tracker (channel buffer) it came from.
    let tracker: Int
    let sequence: UInt64
    /// The bytes to write or send: records only, or the whole packet.
    let content: UnsafeRawBufferPointer
    let packet: UnsafeRawBufferPointer
    /// Registered buffer index of the memory, if registered.
    let fixedIndex: UInt16?
}

/// Shipping state of one channel buffer, on the ring thread: which sequences were taken
/// from the channel, which sinks still work on each, and the in-order consumed count.
///
/// Completions arrive in any order; `consumed` only advances over the contiguous prefix
/// of sequences every sink finished, and is then published to the channel.
struct BufferTracker {
    let channelIndex: Int
    let channel: RelayChannel
    let buffer: Int
    let subbufCount: UInt64
    /// Bits of the channel's sinks (1 << position).
    let allSinks: UInt64
    let fixedIndex: UInt16?
    let base: UnsafeMutableRawPointer
    /// Overwrite mode: ship copies (staging memory, one slot per sub-buffer).
    let staging: UnsafeMutableRawPointer?

    /// The next sequence to take from the channel.
    var nextToShip: UInt64 = 0
    /// The first sequence not yet finished by every sink.
    var consumed: UInt64 = 0
    /// The channel's consumed count when shipping started: the sequences before it were
    /// never this shipper's.
    let origin: UInt64
    /// Sequences passed over without shipping (overwrite mode: lapped, or overwritten while
    /// being copied out; any mode: a corrupt header, see `RelayChannel.isSound`; no-overwrite
    /// modes: a corrupt state word, see `RelayChannel.passCorruptSlot`).
    var skipped: UInt64 = 0
    /// Per slot: sinks still working on the sequence in that slot.
    var pending: [UInt64]
    /// Per slot: the sub-buffer's begin time (for end-to-end delay).
    var beginTimes: [UInt64]

    init(channelIndex: Int, channel: RelayChannel, buffer: Int, allSinks: UInt64, fixedIndex: UInt16?) {
        self.channelIndex = channelIndex
        self.channel = channel
        self.buffer = buffer
        self.subbufCount = UInt64(channel.configuration.subbufferCount)
        self.allSinks = allSinks
        self.fixedIndex = fixedIndex
        self.base = channel.region(buffer: buffer).baseAddress!
        if channel.mode.isNoOverwrite {
            self.staging = nil
        } else {
            self.staging = UnsafeMutableRawPointer.allocate(
                byteCount: channel.configuration.subbufferSize * channel.configuration.subbufferCount, alignment: 4096)
        }
        self.nextToShip = channel.consumedCount(buffer: buffer)
        self.consumed = self.nextToShip
        self.origin = self.nextToShip
        self.pending = [UInt64](repeating: 0, count: Int(self.subbufCount))
        self.beginTimes = [UInt64](repeating: 0, count: Int(self.subbufCount))
    }

    func slot(_ sequence: UInt64) -> Int { Int(sequence & (self.subbufCount - 1)) }

    /// Sequences taken but not finished by every sink.
    var inFlight: UInt64 { self.nextToShip - self.consumed }
}
