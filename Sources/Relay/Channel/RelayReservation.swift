import Synchronization

/// Space for one record, reserved in a channel buffer and not yet committed.
///
/// Write the record into it with ``withUnsafeMutableBytes(_:)``, then call
/// ``commit()`` (or ``commit(usedBytes:)`` to keep only a prefix). The type is
/// `~Copyable` and `commit` is `consuming`, so the compiler rejects a double commit
/// and any use after commit.
///
/// A reservation dropped without a commit does not wedge its sub-buffer: its `deinit`
/// fills the space with the channel's ``RelayFiller`` (spaces ending in a newline for
/// log lines, so the reader sees a blank line) and commits it, counting it as
/// *abandoned*. Until a reservation is committed (or dropped), only its own
/// sub-buffer is held back.
///
/// - Warning: The channel must outlive the reservation. The reservation holds no
///   strong reference to it (that would cost two atomic reference-count operations per
///   record).
public struct RelayReservation: ~Copyable {
    /// The channel, unretained: the reservation must not outlive it. Used through
    /// `_withUnsafeGuaranteedRef`, so committing costs no reference counting.
    let channel: Unmanaged<RelayChannel>
    /// The buffer's `BufferCore` in the channel's table (valid while the channel lives), so a
    /// reservation carries one pointer instead of a copy of the struct.
    let core: UnsafeMutablePointer<BufferCore>
    let position: UInt64
    @usableFromInline let length: UInt64
    /// Where the reserved bytes start (`core.pointee.address(of: position)`), computed once so
    /// that ``withUnsafeMutableBytes(_:)`` inlines into the caller without a call per record.
    @usableFromInline let start: UnsafeMutableRawPointer

    init(channel: RelayChannel, core: UnsafeMutablePointer<BufferCore>, position: UInt64, length: UInt64) {
        self.channel = Unmanaged.passUnretained(channel)
        self.core = core
        self.position = position
        self.length = length
        self.start = core.pointee.address(of: position)
    }

    /// The number of reserved bytes.
    public var count: Int { Int(self.length) }

    /// The buffer (CPU) index the reservation lives in.
    public var buffer: Int { self.core.pointee.index }

    /// The sequence number of the sub-buffer the reservation lives in.
    public var subbufferSequence: UInt64 { self.position >> self.core.pointee.shift }

    /// Calls `body` with the reserved bytes, to write the record.
    ///
    /// - Warning: Do not escape the pointer.
    @inlinable
    public func withUnsafeMutableBytes<Result, Failure: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try body(self.mutableBytes)
    }

    @inlinable
    var mutableBytes: UnsafeMutableRawBufferPointer {
        // truncating: the length is at most the sub-buffer size (2^30).
        UnsafeMutableRawBufferPointer(start: self.start, count: Int(truncatingIfNeeded: self.length))
    }

    /// Commits the whole reservation (relayfs `relay_commit`). If this completes the
    /// sub-buffer, this thread delivers it.
    public consuming func commit() {
        let channel = self.channel
        let core = self.core
        let position = self.position
        let length = self.length
        discard self
        channel._withUnsafeGuaranteedRef { $0.commitRecord(core, position: position, length: length) }
    }

    /// Commits the first `usedBytes` bytes as the record.
    ///
    /// The unused tail is handed back to the buffer when nothing was reserved after it
    /// (the common case). Otherwise it is filled with the channel's ``RelayFiller``: if
    /// the filler has a terminator and the record ends with it, the terminator moves to
    /// the end, so `{"a":1}\n` becomes `{"a":1}␠␠␠\n`.
    ///
    /// - Precondition: `1 <= usedBytes <= count`.
    public consuming func commit(usedBytes: Int) {
        precondition(usedBytes >= 1 && usedBytes <= Int(self.length), "usedBytes \(usedBytes) out of 1...\(self.length)")
        let channel = self.channel
        let core = self.core
        let position = self.position
        let length = self.length
        discard self
        let used = UInt64(usedBytes)
        channel._withUnsafeGuaranteedRef { channel in
            if used == length || channel.giveBack(core.pointee, position: position, length: length, used: used) {
                channel.commitRecord(core, position: position, length: used)
                return
            }
            channel.fillTail(core.pointee, position: position, length: length, used: used)
            channel.commitRecord(core, position: position, length: length)
        }
    }

    deinit {
        // Dropped without commit: fill and commit, so the sub-buffer can be delivered.
        let core = self.core
        let position = self.position
        let length = self.length
        self.channel._withUnsafeGuaranteedRef { channel in
            channel.fillTail(core.pointee, position: position, length: length, used: 0)
            core.pointee.count(RegionLayout.abandonedOffset)
            channel.commitRecord(core, position: position, length: length)
        }
    }
}

extension RelayChannel {
    /// Tries to return the unused tail of the last reservation in a sub-buffer.
    func giveBack(_ b: BufferCore, position: UInt64, length: UInt64, used: UInt64) -> Bool {
        let end = position &+ length
        // An end on a sub-buffer boundary means the reservation filled it exactly and
        // sealed it; the seal fields are written, so the position must not move back.
        if end & b.offsetMask == 0 { return false }
        // Same as a reserve (it moves the same word).
        return b.compareExchangePosition(expected: end, desired: position &+ used).exchanged
    }

    /// Fills bytes `used..<length` of a reservation with the filler, keeping a final
    /// terminator.
    func fillTail(_ b: BufferCore, position: UInt64, length: UInt64, used: UInt64) {
        let bytes = UnsafeMutableRawBufferPointer(start: b.address(of: position), count: Int(length))
        let filler = self.configuration.filler
        var fillEnd = Int(length)
        if let terminator = filler.terminator {
            if used > 0 && bytes[Int(used) - 1] == terminator {
                bytes[Int(used) - 1] = filler.byte
            }
            bytes[Int(length) - 1] = terminator
            fillEnd -= 1
        }
        if Int(used) < fillEnd {
            UnsafeMutableRawBufferPointer(rebasing: bytes[Int(used)..<fillEnd]).initializeMemory(
                as: UInt8.self, repeating: filler.byte)
        }
    }
}
