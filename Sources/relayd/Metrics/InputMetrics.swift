import Synchronization

/// Why an input dropped a record before routing it.
enum InputDropReason: Int, CaseIterable, Sendable {
    /// No output consumes this input (only possible transiently, e.g. during reload).
    case noRoute
    /// Read during shutdown after the outputs stopped accepting records.
    case shutdown

    /// The `reason` label value.
    var label: String {
        switch self {
        case .noRoute: return "no_route"
        case .shutdown: return "shutdown"
        }
    }
}

/// Hot-path counters of one input. Updated by the input's owner; published by ``RelaydMetrics``.
///
/// Accounting: a record is ``recordReceived(bytes:)`` once when its frame is complete, then either
/// ``recordRouted(bytes:)`` (handed to every output that consumes this input) or ``recordDropped(bytes:reason:)``.
/// So `received = routed + dropped + in_flight` holds for every scrape (see ``RecordLedger``).
///
/// Every access to the counters other than the ledger's is relaxed: they are statistics that publish nothing, and each is one
/// atomic word, so no update is lost or counted twice; a scrape reads each on its own.
final class InputMetrics: Sendable {
    /// The input's name (`input` label).
    let name: String
    /// Record accounting; completion means "routed".
    let ledger = RecordLedger(reasons: InputDropReason.allCases.count)
    /// Frames cut at `max_frame`.
    let framesTruncated = Atomic<UInt64>(0)
    /// Frames with an invalid RFC 6587 length prefix.
    let framesBadPrefix = Atomic<UInt64>(0)
    /// Frames cut short by the end of the stream.
    let framesIncomplete = Atomic<UInt64>(0)
    /// Empty LF frames skipped.
    let framesEmpty = Atomic<UInt64>(0)
    /// Open connections (a gauge).
    let connectionsActive = Atomic<Int64>(0)
    /// Connections accepted.
    let connectionsAccepted = Atomic<UInt64>(0)
    /// Connections refused at `max_connections`.
    let connectionsRejectedLimit = Atomic<UInt64>(0)
    /// Connections closed on a framing error (strict octet counting).
    let connectionsClosedFraming = Atomic<UInt64>(0)

    /// Creates the counters for input `name`.
    init(name: String) {
        self.name = name
    }

    /// A record (frame or datagram) was read.
    @inline(__always)
    func recordReceived(bytes: Int) {
        self.ledger.admit(bytes: UInt64(bytes))
    }

    /// The record was handed to its outputs (each of which counts it as received).
    @inline(__always)
    func recordRouted(bytes: Int) {
        self.ledger.complete(bytes: UInt64(bytes))
    }

    /// The record was dropped by the input.
    @inline(__always)
    func recordDropped(bytes: Int, reason: InputDropReason) {
        self.ledger.drop(bytes: UInt64(bytes), reason: reason.rawValue)
    }

    /// Adds a decoder's frame counters (take them with ``SyslogFrameDecoder/takeCounters()``).
    func add(_ counters: FrameDecoderCounters) {
        // Relaxed: independent monotonic counters, read only for exposition.
        if counters.truncated > 0 { self.framesTruncated.wrappingAdd(counters.truncated, ordering: .relaxed) }
        if counters.badPrefix > 0 { self.framesBadPrefix.wrappingAdd(counters.badPrefix, ordering: .relaxed) }
        if counters.incomplete > 0 { self.framesIncomplete.wrappingAdd(counters.incomplete, ordering: .relaxed) }
        if counters.emptySkipped > 0 { self.framesEmpty.wrappingAdd(counters.emptySkipped, ordering: .relaxed) }
    }

    /// A connection was accepted (stream inputs).
    func connectionOpened() {
        // Relaxed: exposition-only counters.
        self.connectionsAccepted.wrappingAdd(1, ordering: .relaxed)
        self.connectionsActive.wrappingAdd(1, ordering: .relaxed)
    }

    /// A connection ended; `framingError` when the decoder asked to close it.
    func connectionClosed(framingError: Bool = false) {
        // Relaxed: exposition-only counters.
        self.connectionsActive.wrappingSubtract(1, ordering: .relaxed)
        if framingError { self.connectionsClosedFraming.wrappingAdd(1, ordering: .relaxed) }
    }

    /// A connection was refused because `max_connections` was reached.
    func connectionRejected() {
        // Relaxed: exposition-only counter.
        self.connectionsRejectedLimit.wrappingAdd(1, ordering: .relaxed)
    }
}
