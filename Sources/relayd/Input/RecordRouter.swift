import Relay
import Synchronization

/// Routes the records of one input to its outputs: parse once, then per output measure, reserve exactly that
/// many bytes in the output's channel, encode into the reservation and commit.
///
/// Runs on the input ring thread only. No allocation, no locks and no existentials per record: the channel's
/// reserve/commit are lock-free and the encoder writes through a generic ``ByteSink``.
///
/// ## Cost per record
/// Routes are reached through `Unmanaged` references used in place (`_withUnsafeGuaranteedRef`), so the loop does
/// no reference counting, and the record counters are summed in plain fields and added to the shared atomic
/// ledgers once per received chunk (``flush()``), not per record. A drop flushes first, so a ledger never sees a
/// drop before the admission of the same record.
final class RecordRouter {
    /// One output the input is routed to, with the counts not yet flushed into its ledger.
    final class Route {
        let channel: RelayChannel
        let metrics: OutputMetrics
        let encoder: RecordEncoder
        var pendingRecords = 0
        var pendingBytes = 0

        init(channel: RelayChannel, metrics: OutputMetrics, encoder: RecordEncoder) {
            self.channel = channel
            self.metrics = metrics
            self.encoder = encoder
        }

        /// Adds the pending admissions to the output's ledger.
        @inline(__always)
        func flush() {
            guard self.pendingRecords > 0 else { return }
            self.metrics.ledger.admit(records: UInt64(self.pendingRecords), bytes: UInt64(self.pendingBytes))
            self.pendingRecords = 0
            self.pendingBytes = 0
        }
    }

    /// The input's counters.
    let metrics: InputMetrics
    /// Whether any output needs the parsed fields (every format but `raw`).
    let needsParse: Bool
    /// The routes (owning references).
    private let routes: [Route]
    /// The same routes, unretained, for the hot loop.
    private let fastRoutes: UnsafeMutableBufferPointer<Unmanaged<Route>>
    private var pendingRecords = 0
    private var pendingBytes = 0

    /// Creates the router of an input.
    ///
    /// - Parameters:
    ///   - metrics: The input's counters.
    ///   - outputs: The outputs that consume the input.
    init(metrics: InputMetrics, outputs: [OutputPipeline]) {
        self.metrics = metrics
        self.routes = outputs.map { Route(channel: $0.channel, metrics: $0.metrics, encoder: $0.encoder) }
        self.fastRoutes = .allocate(capacity: self.routes.count)
        for (index, route) in self.routes.enumerated() {
            (self.fastRoutes.baseAddress! + index).initialize(to: .passUnretained(route))
        }
        self.needsParse = outputs.contains { $0.config.format != .raw }
    }

    deinit {
        self.fastRoutes.deallocate()
    }

    /// Routes one frame. Call ``flush()`` after each chunk of frames.
    ///
    /// - Parameters:
    ///   - frame: The record as framed on the wire (without the frame's length prefix or trailer).
    ///   - context: Receive facts and tags.
    @inline(__always)
    func route(_ frame: UnsafeRawBufferPointer, context: RecordContext) {
        // A frame of nothing but trailer bytes (the CR of a CRLF trailer after an octet-counted frame, a blank CRLF
        // line, a datagram of one LF) is an empty frame, like a lone LF: skipped and counted, not an empty record.
        if SyslogMessage.contentLength(frame) == 0 {
            self.skipEmpty()
            return
        }
        self.pendingRecords += 1
        self.pendingBytes += frame.count
        let message = self.needsParse ? SyslogMessage.parse(frame) : SyslogMessage.unparsed(frame)
        for index in 0..<self.fastRoutes.count {
            self.fastRoutes[index]._withUnsafeGuaranteedRef { route in
                let size = route.encoder.measure(message, context: context)
                route.pendingRecords += 1
                route.pendingBytes += size.total
                do throws(RelayReserveError) {
                    let reservation = try route.channel.reserve(size.total)
                    let written = reservation.withUnsafeMutableBytes { buffer in
                        route.encoder.encode(message, context: context, size: size, into: buffer)
                    }
                    // `measure` and `encode` run the same code, so the lengths always agree.
                    precondition(written == size.total, "record encoder wrote \(written ?? -1) of \(size.total) bytes")
                    reservation.commit()
                } catch {
                    self.drop(route: route, bytes: size.total, error: error)
                }
            }
        }
    }

    /// Counts a frame that is empty once its trailing CR/LF/NUL bytes are removed.
    @inline(never)
    private func skipEmpty() {
        // Relaxed: an exposition-only counter (see InputMetrics.add).
        self.metrics.framesEmpty.wrappingAdd(1, ordering: .relaxed)
    }

    /// Counts a record the channel refused (after flushing, so the admission is counted first).
    @inline(never)
    private func drop(route: Route, bytes: Int, error: RelayReserveError) {
        self.flush()
        let reason: OutputDropReason
        switch error {
        case .dropped, .timedOut: reason = .channelFull
        case .tooBig, .emptyReservation: reason = .tooBig
        case .closed: reason = .shutdown
        }
        route.metrics.recordsDropped(1, bytes: bytes, reason: reason)
    }

    /// Adds the counts of the records routed since the last flush to the input's and the outputs' ledgers: the
    /// input's admissions first, then each output's, then the input's "routed" completions.
    func flush() {
        let records = UInt64(self.pendingRecords)
        let bytes = UInt64(self.pendingBytes)
        self.pendingRecords = 0
        self.pendingBytes = 0
        if records > 0 {
            self.metrics.ledger.admit(records: records, bytes: bytes)
        }
        // Routes can hold admissions even when the input holds none: a drop flushes the input mid-record, and
        // the record's later routes still add to their own pending counts.
        for route in self.routes { route.flush() }
        guard records > 0 else { return }
        if self.routes.isEmpty {
            self.metrics.ledger.drop(records: records, bytes: bytes, reason: InputDropReason.noRoute.rawValue)
        } else {
            self.metrics.ledger.complete(records: records, bytes: bytes)
        }
    }
}
