import CRelayLinux
import Logging
import Relay
import RelayShipper
import Synchronization

/// Moves records from "in flight" to "written" (or "dropped") on the output side, and mirrors the shipper's
/// counters into relayd's metrics.
///
/// Called every 50 ms by ``AccountingService``, right before every scrape, and once more after the shipper stopped
/// (``finish()``), when whatever is still in flight is counted as dropped at shutdown.
final class Reconciler: Sendable {
    /// Totals for the final log line.
    struct Summary: Sendable {
        /// Records read by all inputs.
        var received: UInt64
        /// Records written by all outputs.
        var written: UInt64
        /// Records dropped by all outputs, any reason.
        var dropped: UInt64
        /// Of ``dropped``, those still in flight when the drain ended.
        var droppedAtShutdown: UInt64
    }

    private struct Published {
        var sinks: [RelaySinkStats?]
        /// Overwritten bytes already counted, per output (the ledger keeps one byte total for all reasons).
        var overwrittenBytes: [UInt64]
        /// Bytes of corrupt sub-buffers already counted, per output (likewise).
        var corruptBytes: [UInt64]
        /// Drops per output and reason already reported in a warning.
        var reportedDrops: [[UInt64]]
        /// CLOCK_MONOTONIC ns of each output's last drop warning (0: none yet).
        var lastDropWarning: [UInt64]
        /// Corrupt sub-buffers per output already reported in a warning.
        var reportedCorrupt: [UInt64]
        /// CLOCK_MONOTONIC ns of each output's last corruption warning (0: none yet).
        var lastCorruptWarning: [UInt64]
    }

    /// At most one drop warning (and one corruption warning) per output in this interval, by default (the first one
    /// is logged at once).
    static let dropWarningInterval: UInt64 = 10_000_000_000

    private let outputs: [OutputPipeline]
    private let metrics: RelaydMetrics
    private let shipper: RelayShipper
    private let logger: Logger?
    /// Nanoseconds between two warnings of the same kind for the same output.
    private let warningInterval: UInt64
    private let published: RelayMutex<Published>

    /// Creates a reconciler.
    ///
    /// - Parameters:
    ///   - outputs: The outputs, in configuration order.
    ///   - metrics: Where the counters are published.
    ///   - shipper: The shipper of the outputs' channels.
    ///   - logger: Where records an output drops while running, and corrupt sub-buffers its shipper skipped, are
    ///     reported; `nil`: not logged, only counted.
    ///   - warningInterval: At most one warning of each kind per output in this interval (the first at once).
    init(
        outputs: [OutputPipeline],
        metrics: RelaydMetrics,
        shipper: RelayShipper,
        logger: Logger? = nil,
        warningInterval: Duration = .nanoseconds(Int64(Reconciler.dropWarningInterval))
    ) {
        self.outputs = outputs
        self.metrics = metrics
        self.shipper = shipper
        self.logger = logger
        let (seconds, attoseconds) = warningInterval.components
        self.warningInterval = UInt64(clamping: seconds) &* 1_000_000_000 &+ UInt64(clamping: attoseconds / 1_000_000_000)
        self.published = RelayMutex(
            Published(
                sinks: [RelaySinkStats?](repeating: nil, count: outputs.count),
                overwrittenBytes: [UInt64](repeating: 0, count: outputs.count),
                corruptBytes: [UInt64](repeating: 0, count: outputs.count),
                reportedDrops: [[UInt64]](
                    repeating: [UInt64](repeating: 0, count: OutputDropReason.allCases.count),
                    count: outputs.count
                ),
                lastDropWarning: [UInt64](repeating: 0, count: outputs.count),
                reportedCorrupt: [UInt64](repeating: 0, count: outputs.count),
                lastCorruptWarning: [UInt64](repeating: 0, count: outputs.count)
            )
        )
    }

    /// One accounting pass. Thread-safe; passes are serialised.
    func tick() {
        self.published.withLock { published in
            for (index, output) in self.outputs.enumerated() {
                let consumed = output.channel.consumedCount(buffer: 0)
                let name = output.config.name
                let before = output.metrics.ledger.snapshot()
                let totals = output.deliveries.account(consumed: consumed) { delay in
                    self.metrics.recordDeliveryDelay(output: name, delay)
                }
                // The input ring adds admissions once per chunk, so a sub-buffer can be written before all of its
                // records are admitted; never complete more than was admitted (the rest follows next tick).
                let admitted = before.receivedRecords &- before.droppedTotal
                let written = min(totals.writtenRecords, admitted)
                var completed = before.completedRecords
                if written > completed {
                    let admittedBytes = before.receivedBytes &- before.droppedBytes
                    let writtenBytes = written == totals.writtenRecords ? totals.writtenBytes : min(totals.writtenBytes, admittedBytes)
                    output.metrics.recordsWritten(
                        Int(written - completed),
                        bytes: Int(writtenBytes &- before.completedBytes)
                    )
                    completed = written
                }
                // Overwrites are seen as the writer reuses a sub-buffer, which can also be before the ring admitted
                // its records: like written, never more than what is admitted and not yet written or dropped.
                var settled = completed
                Self.settleDrops(
                    .overwritten, records: totals.overwrittenRecords, bytes: totals.overwrittenBytes,
                    published: &published.overwrittenBytes[index], ledger: before, admitted: admitted,
                    settled: &settled, metrics: output.metrics)
                // Sub-buffers the shipper skipped as corrupt are released like written ones, but their records never
                // reached the destination: dropped (`corrupt`), never written. The same bound as overwrites.
                Self.settleDrops(
                    .corrupt, records: totals.corruptRecords, bytes: totals.corruptBytes,
                    published: &published.corruptBytes[index], ledger: before, admitted: admitted,
                    settled: &settled, metrics: output.metrics)
                self.reportDrops(of: output, index: index, published: &published)
                self.reportCorruption(of: output, index: index, published: &published)
            }
            guard let stats = self.shipper.stats() else { return }
            self.metrics.shipper.setBuffers(
                registered: stats.registeredBuffers,
                fallback: stats.registrationFallback ? self.outputs.count : 0
            )
            for (index, sink) in stats.sinks.enumerated() where index < self.outputs.count {
                let metrics = self.outputs[index].metrics
                let previous = published.sinks[index]
                // Relaxed: exposition-only counters (see OutputMetrics).
                // The sink's `errors` include its failed connects: those are `kind="connect"`, the rest `kind="write"`.
                let connectErrors = sink.connectFailures &- (previous?.connectFailures ?? 0)
                if connectErrors > 0 { metrics.connectErrors.wrappingAdd(connectErrors, ordering: .relaxed) }
                let errors = (sink.errors &- sink.connectFailures)
                    &- ((previous?.errors ?? 0) &- (previous?.connectFailures ?? 0))
                if errors > 0 { metrics.writeErrors.wrappingAdd(errors, ordering: .relaxed) }
                let reconnects = sink.reconnects &- (previous?.reconnects ?? 0)
                if reconnects > 0 { metrics.reconnects.wrappingAdd(reconnects, ordering: .relaxed) }
                let rotations = (sink.rotations + sink.reopens) &- ((previous?.rotations ?? 0) + (previous?.reopens ?? 0))
                if rotations > 0 { metrics.rotations.wrappingAdd(rotations, ordering: .relaxed) }
                let writebacks = sink.writebacks &- (previous?.writebacks ?? 0)
                if writebacks > 0 { metrics.writebacks.wrappingAdd(writebacks, ordering: .relaxed) }
                // A TCP output is connected only once its connect completed, not while it is (re)connecting.
                let open: Bool
                if case .tcp = self.outputs[index].config.kind { open = sink.connected } else { open = !sink.failing }
                metrics.connected.store(open && !self.shipper.hasExited ? 1 : 0, ordering: .relaxed)
                // A send's outcome is known from its notification, which can come a pass after the send: count
                // notifications, not sends, or a send counted as zero copy here would later be counted as copied too.
                let copied = sink.zeroCopyCopied &- (previous?.zeroCopyCopied ?? 0)
                if copied > 0 { self.metrics.shipper.zeroCopyCopied.wrappingAdd(copied, ordering: .relaxed) }
                let notCopied = (sink.zeroCopyNotifications &- sink.zeroCopyCopied)
                    &- ((previous?.zeroCopyNotifications ?? 0) &- (previous?.zeroCopyCopied ?? 0))
                if notCopied > 0 { self.metrics.shipper.zeroCopySends.wrappingAdd(notCopied, ordering: .relaxed) }
                published.sinks[index] = sink
            }
        }
    }

    /// Logs a warning when the output dropped records since the last report: at once the first time, then at most
    /// every `warningInterval` (``dropWarningInterval`` by default), with the count per reason and the fix. Drops at the stop (`shutdown`) are
    /// reported by the final log line instead.
    private func reportDrops(of output: OutputPipeline, index: Int, published: inout Published) {
        guard let logger = self.logger else { return }
        let dropped = output.metrics.ledger.snapshot().droppedRecords
        let reported = published.reportedDrops[index]
        // Corrupt sub-buffers have a warning of their own (`reportCorruption`).
        let reasons = OutputDropReason.allCases.filter {
            $0 != .shutdown && $0 != .corrupt && dropped[$0.rawValue] > reported[$0.rawValue]
        }
        guard !reasons.isEmpty else { return }
        let now = CRelayLinux_monotonic_ns()
        let last = published.lastDropWarning[index]
        guard last == 0 || now &- last >= self.warningInterval else { return }
        published.lastDropWarning[index] = now
        published.reportedDrops[index] = dropped
        let channel = output.config.channel
        var total: UInt64 = 0
        var counts: [String] = []
        var fixes: [String] = []
        for reason in reasons {
            let count = dropped[reason.rawValue] - reported[reason.rawValue]
            total += count
            counts.append("\(reason.label)=\(count)")
            switch reason {
            case .channelFull:
                fixes.append(
                    "channel_full: the destination does not keep up or is unreachable (see relayd_output_connected and "
                        + "relayd_output_errors_total); more or larger sub-buffers in [channels.\(channel)] ride out longer stalls"
                )
            case .tooBig:
                fixes.append(
                    "too_big: re-encoded records exceed a sub-buffer's payload; lower max_frame of the inputs routed here "
                        + "or raise channels.\(channel).subbuf_size"
                )
            case .overwritten:
                fixes.append("overwritten: channels.\(channel) has mode = \"overwrite\" and the destination fell behind")
            case .writeError:
                fixes.append("write_error: the destination failed; see the errors logged for it")
            case .shutdown, .corrupt:
                break
            }
        }
        logger.warning(
            "output \"\(output.config.name)\" dropped \(total) records \(last == 0 ? "since relayd started" : "since the last report") (\(counts.joined(separator: " "))): \(fixes.joined(separator: "; "))",
            metadata: ["output": "\(output.config.name)"]
        )
    }

    /// Drops, for `reason`, the records the delivery ledger counted (`records` in all, `bytes` their bytes) beyond
    /// those the output's ledger (`ledger`) already dropped for it, but never more than are admitted and not yet
    /// `settled` (written, or dropped before in this pass): the rest follows in a later pass. The bytes go with the
    /// last part of a deferred count (the ledger keeps one byte total per reason); `published` is the byte total
    /// reported so far.
    private static func settleDrops(
        _ reason: OutputDropReason, records: UInt64, bytes: UInt64, published: inout UInt64,
        ledger: RecordLedger.Snapshot, admitted: UInt64, settled: inout UInt64, metrics: OutputMetrics
    ) {
        let dropped = ledger.droppedRecords[reason.rawValue]
        guard records > dropped else { return }
        let due = records - dropped
        let count = min(due, admitted > settled ? admitted - settled : 0)
        guard count > 0 else { return }
        metrics.recordsDropped(Int(count), bytes: count == due ? Int(bytes &- published) : 0, reason: reason)
        if count == due { published = bytes }
        settled += count
    }

    /// Logs a warning when the output's shipper skipped corrupt sub-buffers since the last report (the channel's
    /// `corruptSubbuffers`, exported as `relayd_channel_subbuffers_corrupt_total`): at once the first time, then at
    /// most every ``warningInterval``, with the count and what to do.
    private func reportCorruption(of output: OutputPipeline, index: Int, published: inout Published) {
        guard let logger = self.logger else { return }
        let corrupt = output.channel.stats().total.corruptSubbuffers
        let reported = published.reportedCorrupt[index]
        guard corrupt > reported else { return }
        let now = CRelayLinux_monotonic_ns()
        let last = published.lastCorruptWarning[index]
        guard last == 0 || now &- last >= self.warningInterval else { return }
        published.lastCorruptWarning[index] = now
        published.reportedCorrupt[index] = corrupt
        let count = corrupt - reported
        let name = output.config.name
        let what = "output \"\(name)\" skipped \(count) corrupt sub-buffer\(count == 1 ? "" : "s")"
        let since = last == 0 ? "since relayd started" : "since the last report"
        let total = "\(corrupt) in all, relayd_channel_subbuffers_corrupt_total"
        let fix =
            "their headers (or slot state words) were not written by relayd, so their records were not shipped and are lost (counted in "
            + "relayd_output_dropped_records_total{reason=\"corrupt\"}). Something else "
            + "wrote into channels.\(output.config.channel)'s memory (a memory fault or a bug): check the kernel log for "
            + "memory errors (EDAC, MCE) and report it with relayd's version if it recurs"
        logger.warning("\(what) \(since) (\(total)): \(fix)", metadata: ["output": "\(name)"])
    }

    /// The last pass, after the shipper exited: what is still in flight was not written before the drain
    /// deadline and is counted as dropped at shutdown.
    ///
    /// - Returns: Totals for the final log line.
    @discardableResult
    func finish() -> Summary {
        self.tick()
        var summary = Summary(received: 0, written: 0, dropped: 0, droppedAtShutdown: 0)
        for input in self.metrics.inputs {
            summary.received &+= input.ledger.snapshot().receivedRecords
        }
        for output in self.outputs {
            let snapshot = output.metrics.ledger.snapshot()
            let inFlight = snapshot.inFlightRecords
            if inFlight > 0 {
                let bytes = snapshot.receivedBytes &- snapshot.completedBytes &- snapshot.droppedBytes
                output.metrics.recordsDropped(Int(inFlight), bytes: Int(truncatingIfNeeded: bytes), reason: .shutdown)
                summary.droppedAtShutdown &+= inFlight
            }
            let final = output.metrics.ledger.snapshot()
            summary.written &+= final.completedRecords
            summary.dropped &+= final.droppedTotal
        }
        return summary
    }
}
