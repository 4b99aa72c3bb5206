//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import CRelayLinux
import Glibc
public import Logging
public import Relay
import Synchronization

/// Writes log records into one relay channel; every ``RelayLogHandler`` made from it shares it.
///
/// JSON Lines records take the fast path: the writer renders the record in one pass into a 1 KiB buffer
/// on the stack (escaping while it copies; no intermediate `String` or `Array`, no lock, no system
/// call, no allocation in the common case, see ``RelayLogHandler`` for the cases that allocate), then
/// writes it into the channel with one copy (`RelayChannel.write`, an exact reservation). Metadata that
/// is only per-call costs one pass over the call's dictionary and no hashing; handler and provider
/// metadata rule key collisions out with a 64-bit key filter and hash only keys that may collide. A call
/// site's source, file, function and line are rendered once and then copied (``CallSiteCache``).
/// Records that do not fit the stack buffer or the channel's largest record, and other formats, use the
/// general encoder, which measures the record, reserves exactly that many bytes and encodes into the
/// reservation.
///
/// ## Overload
///
/// What happens when the channel has no free space is the channel's ``RelayMode``:
/// - `.drop` (the default for logging): the call returns at once and the record is counted as
///   dropped. The next record that finds space is followed by **one** record, at level `warning`
///   with label `relay.logging`, that says how many records were dropped and since when (like
///   LTTng's discarded-events accounting): `"1520 log records dropped since
///   2026-11-27T16:00:00.123456Z: the relay channel was full"`, with the numbers also in its
///   metadata (`relay.dropped`, `relay.dropped_since`). Reports are rate-limited: after one, the
///   next is written no sooner than ``dropReportInterval`` later (by the first record that finds
///   space after it), so a lasting overload of one CPU's buffer, while records keep finding space
///   in another's, costs one report per interval instead of one per record; the drops in between
///   join the next report. ``reportDrops(waitingAtMost:)`` (shutdown calls it) reports at once.
///   Every dropped record is reported exactly once; ``stats()`` counts the drops not yet
///   reported. Records dropped because they do not fit the channel's largest record even
///   truncated (see "Size limit") are reported the same way, with that reason in the message and
///   their number in `relay.dropped_too_large`.
/// - `.block(timeout:)`: the call waits for space (back-pressure); a record that still finds no
///   space within the timeout is dropped and reported as above, and until the shipper frees
///   space later calls drop at once instead of each waiting again (``RelayMode/block(timeout:)``),
///   so a dead destination costs a request path one timeout, not one per log call.
///
/// ## Size limit
///
/// A record larger than the channel's ``RelayChannel/maxRecordSize`` is truncated to fit, with the
/// marker `…[truncated N bytes]` after the message, and counted (``RelayLogStats/recordsTruncated``);
/// it is never split and never dropped silently (see ``LogRecordEncoder``).
///
/// - Warning: The channel must stay open while handlers log; records logged after it is closed are
///   counted as ``RelayLogStats/recordsRefusedClosed``.
public final class RelayLogWriter: Sendable {
    /// The channel records are written into.
    public let channel: RelayChannel
    /// The record format.
    public let format: RecordFormat
    /// Whether provider and per-call metadata keys are sorted in each record (see
    /// ``RelayLogHandler``).
    public let sortsMetadataKeys: Bool
    /// The least time between two drop reports written by log calls (see "Overload"); `.zero`
    /// reports after every record that finds space and follows new drops.
    public let dropReportInterval: Duration

    let encoder: LogRecordEncoder
    let maxRecordSize: Int
    let isJSONLines: Bool
    let timestampCache = TimestampCache()
    /// The records' clock (`RecordClock.shared`, held here so a record reads it from the writer).
    let clock = RecordClock.shared
    /// Copied from `ImplicitSourceProbe.shared` so a record reads it from the writer it already holds.
    let sourceProbe = ImplicitSourceProbe.shared
    /// The rendered source, file, function and line of recent call sites (see ``CallSiteCache``).
    let callSites = CallSiteCache()

    // Counters of rare events only (a per-record counter would cost an atomic operation per call;
    // records written are counted by the channel). Every access is relaxed: they are statistics that
    // publish nothing, and each is a single atomic word, so no count is lost or counted twice.
    let droppedCount = Atomic<UInt64>(0)
    let truncatedCount = Atomic<UInt64>(0)
    let refusedClosedCount = Atomic<UInt64>(0)
    let summaryCount = Atomic<UInt64>(0)
    let reportedCount = Atomic<UInt64>(0)
    let blankCount = Atomic<UInt64>(0)

    /// The drops not reported yet: `first` is their number, `second` the bit pattern of the wall-clock
    /// time (ns) of the first of them.
    let dropEpisode = Atomic<WordPair>(WordPair(first: 0, second: 0))
    /// How many of the unreported drops were records too large for the channel even truncated (a
    /// label, file or function name longer than its largest record), so the report names that cause
    /// instead of a full channel. At most `dropEpisode.first` once both settle.
    let tooLargePending = Atomic<UInt64>(0)
    /// Non-zero when `dropEpisode` may hold drops: the one word every log call reads (a shared,
    /// read-mostly cache line), so the common case never touches `dropEpisode`.
    let dropHint = Atomic<UInt>(0)
    /// ``dropReportInterval`` in nanoseconds (at least 0).
    let dropReportIntervalNanoseconds: Int64
    /// The wall-clock time (ns) of the latest drop report (or of a log call's claim to write the
    /// next one), `Int64.min` before the first: log calls report only `dropReportInterval` after it.
    /// Read only while drops are pending.
    let lastDropReport = Atomic<Int64>(Int64.min)

    /// Creates a writer.
    ///
    /// - Parameters:
    ///   - channel: The channel to write into. Its ``RelayMode`` decides what happens when it is full.
    ///   - format: The record format (JSON Lines by default).
    ///   - sortsMetadataKeys: Sort the keys of provider and per-call metadata in every record (the
    ///     handler's own metadata is always sorted, at no cost per record). Off by default: swift-log
    ///     metadata is an unordered dictionary, JSON readers do not depend on member order, and sorting
    ///     costs a few comparisons per key on every call.
    ///   - dropReportInterval: The least time between two drop reports written by log calls (1 s by
    ///     default; see "Overload"). `.zero`: a report after every record that finds space and
    ///     follows new drops. Drops in between are counted and join the next report.
    public init(
        channel: RelayChannel,
        format: RecordFormat = .jsonLines,
        sortsMetadataKeys: Bool = false,
        dropReportInterval: Duration = .seconds(1)
    ) {
        self.channel = channel
        self.format = format
        self.sortsMetadataKeys = sortsMetadataKeys
        self.dropReportInterval = dropReportInterval
        let (seconds, attoseconds) = dropReportInterval.components
        // Clamped to Int64.max: the whole seconds may fit while the fraction added to them does not.
        let nanoseconds = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let total = nanoseconds.partialValue.addingReportingOverflow(attoseconds / 1_000_000_000)
        self.dropReportIntervalNanoseconds =
            seconds < 0 || attoseconds < 0
            ? 0 : nanoseconds.overflow || total.overflow ? Int64.max : total.partialValue
        self.encoder = LogRecordEncoder(format: format, sortsMetadataKeys: sortsMetadataKeys)
        self.maxRecordSize = channel.maxRecordSize
        if case .jsonLines = format {
            self.isJSONLines = true
        } else {
            self.isJSONLines = false
        }
    }

    /// Creates a handler that writes through this writer.
    ///
    /// - Parameters:
    ///   - label: The logger's label.
    ///   - metadataProvider: The metadata provider (`LoggingSystem.metadataProvider` by default).
    ///   - logLevel: The initial level.
    /// - Returns: The handler.
    public func makeHandler(
        label: String,
        metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider,
        logLevel: Logger.Level = .info
    ) -> RelayLogHandler {
        RelayLogHandler(label: label, writer: self, metadataProvider: metadataProvider, logLevel: logLevel)
    }

    /// The writer's counters, with the channel's.
    ///
    /// The channel counts a record as written when its sub-buffer is delivered, so
    /// ``RelayLogStats/recordsWritten`` is exact after `flush()` (or shutdown) and may lag while
    /// records are in flight.
    public func stats() -> RelayLogStats {
        let channel = self.channel.stats()
        // relaxed (all loads): a snapshot of statistics (see the counters' declaration).
        let episode = self.dropEpisode.load(ordering: .relaxed)
        let summaries = self.summaryCount.load(ordering: .relaxed)
        let blanks = self.blankCount.load(ordering: .relaxed)
        let delivered = channel.total.recordsWritten
        return RelayLogStats(
            recordsWritten: delivered >= summaries + blanks ? delivered - summaries - blanks : 0,
            recordsDropped: self.droppedCount.load(ordering: .relaxed),
            recordsTruncated: self.truncatedCount.load(ordering: .relaxed),
            recordsRefusedClosed: self.refusedClosedCount.load(ordering: .relaxed),
            dropReports: summaries,
            dropsReported: self.reportedCount.load(ordering: .relaxed),
            dropsPending: UInt64(episode.first),
            blankRecords: blanks,
            channel: channel
        )
    }

    // MARK: - Writing

    /// The size of the stack buffer of the fast path. At most 1 KiB: larger temporary allocations ask
    /// the runtime whether the stack has room (a slow call) or go to the heap.
    static let fastPathCapacity = 1024

    /// Writes the record of one `log(event:)` call.
    @inline(__always)
    func write(
        _ event: borrowing LogEvent,
        header: RecordHeader,
        handlerMetadata: borrowing PreEncodedMetadata,
        provider: Logger.MetadataProvider?
    ) {
        let timestamp = self.clock.nanosecondsSinceEpoch
        let provided = provider.flatMap { ProviderReentrancy.metadata(from: $0) }
        var written: Bool? = nil
        if self.isJSONLines, handlerMetadata.isEmpty || handlerMetadata.style == .json {
            written = self.writeJSONLine(
                event, timestamp: timestamp, header: header, handlerMetadata: handlerMetadata, provided: provided)
        }
        if written == nil {
            written = self.writeGeneral(
                event, timestamp: timestamp, label: header.label, handlerMetadata: handlerMetadata, provided: provided)
        }
        // The record found space, so the drops before it can be reported, if the interval since the
        // last report has passed (relaxed: a hint; `reportDrops` synchronises through `dropEpisode`).
        if _slowPath(written == true && self.dropHint.load(ordering: .relaxed) != 0) {
            self.reportDropsIfDue(now: timestamp)
        }
    }

    /// The fast path: JSON Lines rendered in one pass into a buffer on the stack, then copied into the
    /// channel. Returns whether the record was written, or `nil` (having written nothing) when it does
    /// not fit the buffer or must be truncated: the general encoder handles it.
    @inline(__always)
    private func writeJSONLine(
        _ event: borrowing LogEvent,
        timestamp: Int64,
        header: RecordHeader,
        handlerMetadata: borrowing PreEncodedMetadata,
        provided: Logger.Metadata?
    ) -> Bool? {
        let call = event.metadata
        let hasMetadata = !handlerMetadata.isEmpty || !(provided?.isEmpty ?? true) || !(call?.isEmpty ?? true)
        let segment = header.jsonSegment(event.level)
        let message = event.message.description
        // No source from the call site: write the `#fileID` prefix below instead of having swift-log
        // build a `String` for it (see `ImplicitSourceProbe`).
        let implicitSource = self.sourceProbe.hasImplicitSource(event)
        let source = implicitSource ? nil : event.source
        let file = event.file
        let function = event.function
        let line = event.line
        let error = event.error
        return withUnsafeTemporaryAllocation(byteCount: Self.fastPathCapacity, alignment: 16) { buffer -> Bool? in
            var renderer = JSONLineRenderer(buffer)
            renderer.literal("{\"timestamp\":\"")
            self.timestampCache.write(timestamp, to: renderer.position)
            renderer.advance(by: RFC3339.length)
            guard renderer.padded(segment), renderer.string(message) else { return nil }
            if hasMetadata {
                renderer.literal("\",\"metadata\":{")
                guard
                    renderer.metadata(
                        handler: handlerMetadata, provider: provided, call: call, sortKeys: self.sortsMetadataKeys)
                else { return nil }
                renderer.literal("},\"source\":\"")
            } else {
                renderer.literal("\",\"source\":\"")
            }
            // The call site's source, file, function and line: copied when cached, else rendered (and
            // cached when the strings' bits identify their text). Out of line, so the per-entry loop of
            // the metadata above keeps its registers.
            guard
                let end = self.callSiteFields(
                    source: source, file: file, function: function, line: line, renderer.position,
                    limit: renderer.limit)
            else { return nil }
            renderer.position = end
            if let error {
                guard renderer.detached({ $0.error(error) }) else { return nil }
            }
            renderer.literal("}\n")
            let record = renderer.rendered
            guard record.count <= self.maxRecordSize else { return nil }
            return self.writeRendered(record)
        }
    }

    /// Writes `source","file":"…","function":"…","line":N` at `position` (before `limit`, with the
    /// renderer's slack after it): copied from ``callSites`` when this call site is cached, else rendered
    /// and cached. Returns the end, or `nil` when it may not fit (the caller falls back).
    @inline(never)
    private func callSiteFields(
        source: String?, file: String, function: String, line: UInt,
        _ position: UnsafeMutableRawPointer, limit: UnsafeMutableRawPointer
    ) -> UnsafeMutableRawPointer? {
        let key =
            self.callSites.isEnabled ? CallSiteKey(source: source, file: file, function: function, line: line) : nil
        if let key, CallSiteCache.maxBytes <= limit - position, let length = self.callSites.copy(key, to: position) {
            return position + length
        }
        var renderer = JSONLineRenderer(position: position, limit: limit)
        if let source {
            guard renderer.string(source) else { return nil }
        } else {
            guard renderer.module(ofFileID: file) else { return nil }
        }
        renderer.literal("\",\"file\":\"")
        guard renderer.string(file) else { return nil }
        renderer.literal("\",\"function\":\"")
        guard renderer.string(function), renderer.fits else { return nil }
        renderer.literal("\",\"line\":")
        renderer.decimal(line)
        if let key {
            self.callSites.store(key, UnsafeRawBufferPointer(start: position, count: renderer.position - position))
        }
        return renderer.position
    }

    /// Copies a rendered record into the channel. Returns whether it was written (a loss is counted).
    @inline(__always)
    private func writeRendered(_ record: UnsafeRawBufferPointer) -> Bool {
        switch self.channel.write(record) {
        case .written:
            return true
        case .dropped:
            self.recordLost(.dropped)
        case .timedOut:
            self.recordLost(.timedOut)
        case .tooBig:
            self.recordLost(.tooBig)
        case .closed:
            self.recordLost(.closed)
        }
        return false
    }

    /// The general path: any format, truncation, `stringConvertible` metadata. Returns whether the
    /// record was written (a loss is counted).
    @inline(never)
    private func writeGeneral(
        _ event: LogEvent,
        timestamp: Int64,
        label: String,
        handlerMetadata: borrowing PreEncodedMetadata,
        provided: Logger.Metadata?
    ) -> Bool {
        var record = LogRecordFields(
            event: event,
            label: label,
            timestampNanoseconds: timestamp,
            handlerMetadata: copy handlerMetadata,
            providerMetadata: provided
        )
        // Every description is taken once (``LogRecordFields/freezeDescriptions()``), so measuring
        // and writing see the same text. Else a description that changed length between the two
        // would leave a blank reservation: not a JSON value in JSON Lines, not a syslog message in
        // RFC 5424 (and between octet-counted frames it breaks the framing), noise in logfmt.
        record.freezeDescriptions()
        switch self.write(record) {
        case .written:
            return true
        case .truncated:
            self.truncatedCount.add(1, ordering: .relaxed)
            return true
        case .lost(let error):
            self.recordLost(error)
            return false
        case .unencodable:
            // Not even a fully truncated record fits (a huge label, file or function name): dropped, not
            // truncated (``RelayLogStats/recordsTruncated`` counts written records).
            self.recordLost(.tooBig)
            return false
        }
    }

    /// What happened to a record written by the general encoder.
    enum GeneralOutcome {
        case written
        case truncated
        case lost(RelayReserveError)
        case unencodable
    }

    /// Encodes `record` with the general encoder into an exactly sized reservation.
    ///
    /// The size is measured first. Only a `stringConvertible` description (or an error description)
    /// that changes between the measuring and the writing pass could make the record not fit its
    /// reservation, and callers freeze descriptions first (``LogRecordFields/freezeDescriptions()``).
    /// Should it happen anyway, the reservation is left uncommitted, which the channel fills with
    /// the documented blank filler (spaces and a newline), and the record is encoded once more into
    /// a reservation of the new size. ``RelayLogStats/blankRecords`` counts these.
    ///
    /// `timeout`, when given, replaces a block-mode channel's timeout for each reservation.
    func write(_ record: borrowing LogRecordFields, waitingAtMost timeout: Duration? = nil) -> GeneralOutcome {
        var measured = self.encoder.measure(record, maxBytes: self.maxRecordSize)
        var attempts = 0
        while attempts < 3 {
            attempts += 1
            if measured.isDropped { return .unencodable }
            let size = measured.requiredCapacity
            let reservation: RelayReservation
            do {
                if let timeout {
                    reservation = try self.channel.reserve(size, waitingAtMost: timeout)
                } else {
                    reservation = try self.channel.reserve(size)
                }
            } catch {
                return .lost(error)
            }
            let outcome = reservation.withUnsafeMutableBytes { raw in
                var cursor = ByteCursor(raw)
                return self.encoder.encode(record, into: &cursor, maxBytes: self.maxRecordSize)
            }
            if outcome.isComplete {
                if outcome.bytesWritten == size {
                    reservation.commit()
                } else {
                    reservation.commit(usedBytes: outcome.bytesWritten)
                }
                return outcome.truncated ? .truncated : .written
            }
            // The reservation is dropped here: the channel fills it with blanks and commits it.
            _ = consume reservation
            self.blankCount.add(1, ordering: .relaxed)
            measured = outcome
        }
        return .lost(.dropped)
    }

    // MARK: - Losses and drop reports

    /// Counts a record the channel did not take.
    @inline(never)
    func recordLost(_ error: RelayReserveError) {
        switch error {
        case .closed:
            self.refusedClosedCount.add(1, ordering: .relaxed)
        case .dropped, .timedOut, .tooBig, .emptyReservation:
            self.droppedCount.add(1, ordering: .relaxed)
            if error == .tooBig {
                // relaxed: only chooses the report's wording (counted before the episode, so a report
                // that takes this drop finds it).
                self.tooLargePending.add(1, ordering: .relaxed)
            }
            self.addPendingDrops(1, since: WallClock.nanosecondsSinceEpoch)
        }
    }

    /// Adds `count` drops whose first happened at `since` to the unreported episode.
    private func addPendingDrops(_ count: UInt, since: Int64) {
        // sequentiallyConsistent (CAS and the hint load): pairs with `reportDrops`, which clears the
        // hint before it takes the episode; either it takes these drops, or this load sees the cleared
        // hint and sets it again.
        // relaxed: only the first guess for the compare-exchange below, which validates it.
        var current = self.dropEpisode.load(ordering: .relaxed)
        while true {
            let first = current.first == 0 ? since : Swift.min(since, Int64(bitPattern: UInt64(current.second)))
            let desired = WordPair(first: current.first &+ count, second: UInt(UInt64(bitPattern: first)))
            let (exchanged, original) = self.dropEpisode.compareExchange(
                expected: current, desired: desired, ordering: .sequentiallyConsistent)
            if exchanged { break }
            current = original
        }
        if self.dropHint.load(ordering: .sequentiallyConsistent) == 0 {
            self.dropHint.store(1, ordering: .sequentiallyConsistent)
        }
    }

    /// A log call's report: at most one per ``dropReportInterval``. `now` is the record's timestamp
    /// (no clock read of its own).
    @inline(never)
    func reportDropsIfDue(now: Int64) {
        let interval = self.dropReportIntervalNanoseconds
        guard interval > 0 else {
            self.reportDrops()
            return
        }
        // relaxed (load and compare-exchange): `lastDropReport` only decides which call tries to
        // report and when; it publishes no other memory (the drops themselves are taken through
        // `dropEpisode`, sequentially consistent, see `addPendingDrops`). The compare-exchange is a
        // single atomic word, so of the calls that see the same due slot exactly one claims it.
        let last = self.lastDropReport.load(ordering: .relaxed)
        // Not due yet; a wall clock set back (now < last) does not hold reports back.
        if last != Int64.min, now >= last, now &- last < interval { return }
        guard
            self.lastDropReport.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
        else { return }
        if self.reportPendingDrops(waitingAtMost: nil, reportedAt: nil) != true {
            // Nothing was written (no space after all): give the slot back, so that the next record
            // that finds space tries again instead of waiting a whole interval. relaxed: as above;
            // fails harmlessly if another report moved the slot on meanwhile.
            _ = self.lastDropReport.compareExchange(expected: now, desired: last, ordering: .relaxed)
        }
    }

    /// Whether drops are waiting to be reported (a hint: relaxed, like the log calls' check).
    var hasPendingDrops: Bool {
        // relaxed: a hint; `reportDrops` takes the drops through `dropEpisode`.
        self.dropHint.load(ordering: .relaxed) != 0
    }

    /// Writes the record that reports the unreported drops, if there are any and the channel has
    /// space, at once (``dropReportInterval`` does not apply). Log calls do this by themselves, at
    /// most once per interval; call it to report drops without logging anything else (shutdown
    /// does, so drops pending at shutdown are reported, or stay counted in ``stats()``).
    ///
    /// - Parameter timeout: With a ``RelayMode/block(timeout:)`` channel, wait for space at most
    ///   this long instead of the channel's timeout (shutdown passes what is left of its deadline,
    ///   so a stuck destination cannot hold it forever). `nil`: the channel's own.
    /// - Returns: `true` when no drops remain unreported.
    @discardableResult
    @inline(never)
    public func reportDrops(waitingAtMost timeout: Duration? = nil) -> Bool {
        self.reportPendingDrops(waitingAtMost: timeout, reportedAt: WallClock.nanosecondsSinceEpoch) != false
    }

    /// Reports the pending drops. Returns `nil` when there were none, `true` when the report was
    /// written, `false` when it found no space (the drops stay pending). `reportedAt`, when given,
    /// becomes the time of the latest report if one is written (log calls claim theirs beforehand).
    private func reportPendingDrops(waitingAtMost timeout: Duration?, reportedAt: Int64?) -> Bool? {
        // sequentiallyConsistent: see `addPendingDrops`.
        self.dropHint.store(0, ordering: .sequentiallyConsistent)
        let episode = self.dropEpisode.exchange(WordPair(first: 0, second: 0), ordering: .sequentiallyConsistent)
        let count = episode.first
        guard count > 0 else { return nil }
        // relaxed: wording only. A too-large drop counted here whose episode entry came after the
        // exchange above goes back for the next report.
        let tooLargeTaken = self.tooLargePending.exchange(0, ordering: .relaxed)
        let tooLarge = Swift.min(tooLargeTaken, UInt64(count))
        if tooLargeTaken > tooLarge {
            self.tooLargePending.add(tooLargeTaken - tooLarge, ordering: .relaxed)
        }
        let since = Int64(bitPattern: UInt64(episode.second))
        let record = Self.dropReport(
            count: UInt64(count), tooLarge: tooLarge, since: since, timestamp: WallClock.nanosecondsSinceEpoch)
        switch self.write(record, waitingAtMost: timeout) {
        case .written, .truncated:
            self.summaryCount.add(1, ordering: .relaxed)
            self.reportedCount.add(UInt64(count), ordering: .relaxed)
            if let reportedAt {
                // relaxed: see `reportDropsIfDue`; the next log call's report waits an interval from here.
                self.lastDropReport.store(reportedAt, ordering: .relaxed)
            }
            return true
        case .lost, .unencodable:
            // Still no space: keep the drops (with their original start) for the next attempt.
            if tooLarge > 0 {
                self.tooLargePending.add(tooLarge, ordering: .relaxed)
            }
            self.addPendingDrops(count, since: since)
            return false
        }
    }

    /// The record reporting `count` drops since `since`, `tooLarge` of them records too large for the
    /// channel even truncated.
    static func dropReport(count: UInt64, tooLarge: UInt64 = 0, since: Int64, timestamp: Int64) -> LogRecordFields {
        let sinceText = WallClock.rfc3339(since)
        let reason: String
        var metadata: Logger.Metadata = ["relay.dropped": "\(count)", "relay.dropped_since": .string(sinceText)]
        if tooLarge == 0 {
            reason = "the relay channel was full"
        } else {
            metadata["relay.dropped_too_large"] = "\(tooLarge)"
            let what =
                "too large for the relay channel even truncated (a label, file or function name longer than its "
                + "largest record)"
            reason = tooLarge == count ? what : "\(tooLarge) \(what), the others because it was full"
        }
        return LogRecordFields(
            timestampNanoseconds: timestamp,
            level: .warning,
            label: "relay.logging",
            message: "\(count) log records dropped since \(sinceText): \(reason)",
            callMetadata: metadata,
            source: "RelayLogging",
            file: #fileID,
            function: #function,
            line: #line
        )
    }
}

/// The counters of a ``RelayLogWriter``.
///
/// Every record offered to the writer ends up in exactly one of `recordsWritten`,
/// `recordsDropped` and `recordsRefusedClosed` (truncated records are written). Each dropped record
/// is reported exactly once by a drop report record, or still pending: `recordsDropped ==
/// dropsReported + dropsPending`. (The channel's own counters also count report records that found
/// no space; these counters do not.)
public struct RelayLogStats: Sendable, Hashable {
    /// Log records delivered by the channel (drop reports and blank records not included). Exact
    /// once the channel is flushed; lags while sub-buffers are partly filled.
    public var recordsWritten: UInt64
    /// Records the channel had no space for (drop mode), or no space within the block timeout, and
    /// records too large for the channel even truncated.
    public var recordsDropped: UInt64
    /// Records shortened to the channel's largest record (written, with a marker).
    public var recordsTruncated: UInt64
    /// Records logged after the channel was closed.
    public var recordsRefusedClosed: UInt64
    /// Drop report records written (`N log records dropped since …`).
    public var dropReports: UInt64
    /// The sum of the counts in those reports.
    public var dropsReported: UInt64
    /// Drops not reported yet (the first record that finds space once ``RelayLogWriter/dropReportInterval``
    /// has passed since the last report reports them, or shutdown does).
    public var dropsPending: UInt64
    /// Reservations committed blank because a record came out longer when written than when measured
    /// (the record was written again after it). Descriptions are taken once before measuring, so this
    /// stays 0; it is kept as the check that it does.
    public var blankRecords: UInt64
    /// The channel's own counters.
    public var channel: RelayChannelStats
}

/// Keeps a metadata provider that logs from asking itself again without end.
///
/// While a thread runs a provider for a record, the records it logs (from inside the provider, through
/// any ``RelayLogWriter``) are written without provider metadata instead of asking a provider again:
/// a provider that logs through a logger with the same provider would otherwise recurse until the
/// stack overflows. One thread-specific word; no allocation.
enum ProviderReentrancy {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "RelayLogging: pthread_key_create failed")
        return key
    }()

    /// What `provider` returns, or `nil` when the calling thread is already inside a provider.
    @inline(__always)
    static func metadata(from provider: Logger.MetadataProvider) -> Logger.Metadata? {
        let key = Self.key
        guard pthread_getspecific(key) == nil else { return nil }
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
        defer { pthread_setspecific(key, nil) }
        return provider.get()
    }
}

/// The wall clock, read through the vDSO.
enum WallClock {
    /// CLOCK_REALTIME in nanoseconds since the Unix epoch.
    @inline(__always)
    static var nanosecondsSinceEpoch: Int64 {
        Int64(bitPattern: CRelayLinux_realtime_ns())
    }

    /// An RFC 3339 timestamp with microseconds.
    static func rfc3339(_ nanosecondsSinceEpoch: Int64) -> String {
        String(unsafeUninitializedCapacity: RFC3339.length) { buffer in
            RFC3339.write(nanosecondsSinceEpoch, to: UnsafeMutableRawPointer(buffer.baseAddress!))
            return RFC3339.length
        }
    }
}
