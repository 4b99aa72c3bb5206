/// What a channel does when a writer finds no free sub-buffer.
///
/// relayfs has two modes, *overwrite* and *no-overwrite*; swift-relay splits
/// no-overwrite into the two explicit choices log-shipper users ask for: drop and
/// count, or apply back-pressure.
public struct RelayMode: Sendable, Hashable, CustomStringConvertible {
    enum Kind: Sendable, Hashable {
        case overwrite
        case drop
        case block(timeout: Duration?)
    }

    let kind: Kind

    /// Flight-recorder mode: writes never wait and never fail for lack of space; the
    /// oldest sub-buffers are reused whether or not they were consumed (counted as
    /// overwritten). Readers detect lapping from the sequence numbers and never accept
    /// a sub-buffer that was overwritten while they read it.
    public static let overwrite = RelayMode(kind: .overwrite)

    /// No-overwrite, drop: when every sub-buffer is unconsumed the write fails and the
    /// record is counted as dropped; the buffer-full callback fires once per episode.
    /// Writing resumes as soon as the consumer calls `subbufsConsumed`.
    public static let drop = RelayMode(kind: .drop)

    /// No-overwrite, block: the writer waits (on a futex, costing nothing when there is
    /// space) until the consumer frees a sub-buffer, or until `timeout` elapses, in which
    /// case the record is dropped and counted. `nil` waits forever.
    ///
    /// Once a wait with this timeout has timed out, the buffer counts as stalled until the consumer frees
    /// space: later writes that find it full fail at once (dropped and counted, like a
    /// timeout) instead of each waiting `timeout` again. So a dead consumer costs the
    /// writers one timeout per stall, not one per record. (A
    /// ``RelayChannel/reserve(_:waitingAtMost:)`` still waits the time it was given.)
    public static func block(timeout: Duration? = nil) -> RelayMode {
        RelayMode(kind: .block(timeout: timeout))
    }

    /// Whether the channel never overwrites unconsumed data.
    public var isNoOverwrite: Bool {
        if case .overwrite = self.kind { return false }
        return true
    }

    public var description: String {
        switch self.kind {
        case .overwrite: return "overwrite"
        case .drop: return "drop"
        case .block(let timeout):
            if let timeout { return "block(\(timeout))" }
            return "block"
        }
    }
}
