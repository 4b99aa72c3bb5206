/// What happened to one `write`.
public enum RelayWriteResult: Sendable, Hashable {
    /// The record is in the buffer.
    case written
    /// No-overwrite, drop mode: every sub-buffer was unconsumed. Counted as dropped.
    /// Also returned in overwrite mode in the rare case that the next sub-buffer is
    /// still held by a stalled writer (counted as lapped): a sub-buffer is never reused
    /// under an uncommitted reservation.
    case dropped
    /// No-overwrite, block mode: no space within the block timeout. Counted as dropped.
    case timedOut
    /// The record is larger than the channel's `maxRecordSize`. Counted as too big.
    case tooBig
    /// The channel is closed. Counted as refused.
    case closed

    /// Whether the record was written.
    @inlinable
    public var isWritten: Bool { self == .written }
}

/// Why ``RelayChannel/reserve(_:)`` could not reserve space.
public enum RelayReserveError: Error, Sendable, Hashable {
    /// No free sub-buffer (drop mode, or overwrite lapping a stalled writer). Counted.
    case dropped
    /// No space within the block timeout. Counted as dropped.
    case timedOut
    /// The length exceeds the channel's `maxRecordSize`. Counted as too big.
    case tooBig
    /// The channel is closed.
    case closed
    /// The length is zero or negative. Not counted.
    case emptyReservation

    var writeResult: RelayWriteResult {
        switch self {
        case .dropped: return .dropped
        case .timedOut: return .timedOut
        case .tooBig, .emptyReservation: return .tooBig
        case .closed: return .closed
        }
    }
}
