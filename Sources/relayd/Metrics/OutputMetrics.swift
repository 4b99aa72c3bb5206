import Synchronization

/// Why an output dropped a record it had received.
enum OutputDropReason: Int, CaseIterable, Sendable {
    /// The channel had no free space (`mode = "drop"`, or `block_timeout` expired in `mode = "block"`).
    case channelFull
    /// The encoded record is larger than a sub-buffer's payload.
    case tooBig
    /// `mode = "overwrite"` reused a sub-buffer before it was shipped.
    case overwritten
    /// The destination failed permanently for these records (write error, connection lost with data unsent).
    case writeError
    /// Still in the channel when `drain_timeout` expired at shutdown.
    case shutdown
    /// In a sub-buffer the shipper skipped without shipping because something else wrote into the channel's
    /// memory (its header, or its slot's state word, is not what relayd's engine wrote there).
    case corrupt

    /// The `reason` label value.
    var label: String {
        switch self {
        case .channelFull: return "channel_full"
        case .tooBig: return "too_big"
        case .overwritten: return "overwritten"
        case .writeError: return "write_error"
        case .shutdown: return "shutdown"
        case .corrupt: return "corrupt"
        }
    }
}

/// Hot-path counters of one output. Updated by the router (received, early drops) and the shipper (written,
/// late drops); published by ``RelaydMetrics``.
///
/// Accounting: each record routed to this output is ``recordReceived(bytes:)`` once (before it is reserved in the
/// channel) and later either ``recordsWritten(_:bytes:)`` when the destination accepted it, or
/// ``recordsDropped(_:bytes:reason:)``. So `received = written + dropped + in_flight` holds for every scrape,
/// where in-flight covers records in the channel, in the ring, and in a failed write being retried.
///
/// Every access to the counters other than the ledger's is relaxed: they are statistics that publish nothing, and each is one
/// atomic word, so no update is lost or counted twice; a scrape reads each on its own.
final class OutputMetrics: Sendable {
    /// The output's name (`output` label).
    let name: String
    /// Record accounting; completion means "written".
    let ledger = RecordLedger(reasons: OutputDropReason.allCases.count)
    /// Failed writes/sends.
    let writeErrors = Atomic<UInt64>(0)
    /// Failed connect attempts.
    let connectErrors = Atomic<UInt64>(0)
    /// Connections re-established after a loss.
    let reconnects = Atomic<UInt64>(0)
    /// File rotations, reopens (SIGHUP) included.
    let rotations = Atomic<UInt64>(0)
    /// File writeback requests issued (`writeback`: each asked the kernel to start writing a range to the disk).
    let writebacks = Atomic<UInt64>(0)
    /// 1 while a TCP output is connected (always 1 for files that are open).
    let connected = Atomic<Int64>(0)

    /// Creates the counters for output `name`.
    init(name: String) {
        self.name = name
    }

    /// A record was routed to this output.
    @inline(__always)
    func recordReceived(bytes: Int) {
        self.ledger.admit(bytes: UInt64(bytes))
    }

    /// `records` records (`bytes` bytes of encoded data, framing included) reached the destination.
    @inline(__always)
    func recordsWritten(_ records: Int, bytes: Int) {
        self.ledger.complete(records: UInt64(records), bytes: UInt64(bytes))
    }

    /// `records` records were dropped.
    @inline(__always)
    func recordsDropped(_ records: Int = 1, bytes: Int, reason: OutputDropReason) {
        self.ledger.drop(records: UInt64(records), bytes: UInt64(bytes), reason: reason.rawValue)
    }

    /// A write (or send) failed; the records are retried or dropped separately.
    func writeFailed() {
        // Relaxed: exposition-only counters.
        self.writeErrors.wrappingAdd(1, ordering: .relaxed)
    }

    /// A connect attempt failed.
    func connectFailed() {
        self.connectErrors.wrappingAdd(1, ordering: .relaxed)
        self.connected.store(0, ordering: .relaxed)
    }

    /// A connection was (re-)established; `isReconnect` after a previous connection was lost.
    func didConnect(isReconnect: Bool) {
        if isReconnect { self.reconnects.wrappingAdd(1, ordering: .relaxed) }
        self.connected.store(1, ordering: .relaxed)
    }

    /// The connection was lost or the file closed.
    func didDisconnect() {
        self.connected.store(0, ordering: .relaxed)
    }

    /// The file was rotated.
    func didRotate() {
        self.rotations.wrappingAdd(1, ordering: .relaxed)
    }
}
