import CoreMetrics
import Prometheus
import Relay
import Synchronization

/// relayd's metric families, their Prometheus names and help texts.
///
/// ## Reconciliation
/// Per input:  `relayd_input_received_records_total = relayd_input_routed_records_total
///              + Σ relayd_input_dropped_records_total + relayd_input_in_flight_records`
/// Per output: `relayd_output_received_records_total = relayd_output_written_records_total
///              + Σ relayd_output_dropped_records_total + relayd_output_in_flight_records`
///
/// Both hold exactly in every scrape: the counters are ``RecordLedger``s, the in-flight gauges are derived from
/// the same snapshot, and the Prometheus series are only updated under one lock right before the text is rendered.
/// Across stages, `relayd_output_received_records_total{output=o}` equals the sum of
/// `relayd_input_routed_records_total` over the inputs routed to `o` once relayd is idle (routing is static);
/// while records flow, a scrape may see the output side slightly ahead or behind.
///
/// Each constant below is one family's full name; ``help`` holds its description (also emitted as `# HELP`).
enum RelaydMetricFamily {
    // Inputs
    static let inputReceivedRecords = "relayd_input_received_records_total"
    static let inputReceivedBytes = "relayd_input_received_bytes_total"
    static let inputRoutedRecords = "relayd_input_routed_records_total"
    static let inputDroppedRecords = "relayd_input_dropped_records_total"
    static let inputInFlightRecords = "relayd_input_in_flight_records"
    static let inputFramesTruncated = "relayd_input_frames_truncated_total"
    static let inputFramesBadPrefix = "relayd_input_frames_bad_prefix_total"
    static let inputFramesIncomplete = "relayd_input_frames_incomplete_total"
    static let inputFramesEmpty = "relayd_input_frames_empty_total"
    static let inputConnections = "relayd_input_connections"
    static let inputConnectionsAccepted = "relayd_input_connections_accepted_total"
    static let inputConnectionsRejected = "relayd_input_connections_rejected_total"
    static let inputConnectionsClosedFraming = "relayd_input_connections_closed_framing_error_total"
    // Outputs
    static let outputReceivedRecords = "relayd_output_received_records_total"
    static let outputReceivedBytes = "relayd_output_received_bytes_total"
    static let outputWrittenRecords = "relayd_output_written_records_total"
    static let outputWrittenBytes = "relayd_output_written_bytes_total"
    static let outputDroppedRecords = "relayd_output_dropped_records_total"
    static let outputInFlightRecords = "relayd_output_in_flight_records"
    static let outputErrors = "relayd_output_errors_total"
    static let outputReconnects = "relayd_output_reconnects_total"
    static let outputRotations = "relayd_output_rotations_total"
    static let outputWritebacks = "relayd_output_writebacks_total"
    static let outputConnected = "relayd_output_connected"
    static let outputDeliveryDelay = "relayd_output_delivery_delay_seconds"
    // Channels
    static let channelRecordsWritten = "relayd_channel_records_written_total"
    static let channelRecordsDroppedFull = "relayd_channel_records_dropped_full_total"
    static let channelRecordsTooBig = "relayd_channel_records_too_big_total"
    static let channelRecordsLapped = "relayd_channel_records_lapped_total"
    static let channelRecordsRefusedClosed = "relayd_channel_records_refused_closed_total"
    static let channelSubbuffersProduced = "relayd_channel_subbuffers_produced_total"
    static let channelSubbuffersConsumed = "relayd_channel_subbuffers_consumed_total"
    static let channelSubbuffersOverwritten = "relayd_channel_subbuffers_overwritten_total"
    static let channelSubbuffersCorrupt = "relayd_channel_subbuffers_corrupt_total"
    static let channelWriterWaits = "relayd_channel_writer_waits_total"
    static let channelFillRatio = "relayd_channel_fill_ratio"
    static let channelCapacityBytes = "relayd_channel_capacity_bytes"
    // Shipper
    static let shipperBuffers = "relayd_shipper_buffers"
    static let shipperZeroCopySends = "relayd_shipper_zerocopy_sends_total"
    static let shipperZeroCopyCopiedRatio = "relayd_shipper_zerocopy_copied_ratio"
    // Process
    static let startTime = "relayd_start_time_seconds"

    /// Help text per family.
    static let help: [String: String] = [
        inputReceivedRecords: "Records (frames or datagrams) read by the input.",
        inputReceivedBytes: "Bytes of records read by the input (payload, without framing).",
        inputRoutedRecords: "Records handed to every output that consumes the input.",
        inputDroppedRecords: "Records dropped by the input before routing, by reason.",
        inputInFlightRecords: "Records read but not yet routed or dropped (received - routed - dropped).",
        inputFramesTruncated: "Frames longer than max_frame, truncated to max_frame.",
        inputFramesBadPrefix:
            "Frames with an invalid RFC 6587 length prefix (read as LF frames, or connection closed in octet-counting mode).",
        inputFramesIncomplete: "Frames cut short by the end of the stream.",
        inputFramesEmpty: "Empty LF frames skipped.",
        inputConnections: "Open connections.",
        inputConnectionsAccepted: "Connections accepted.",
        inputConnectionsRejected: "Connections refused, by reason.",
        inputConnectionsClosedFraming: "Connections closed because of a framing error (octet-counting mode).",
        outputReceivedRecords: "Records routed to the output.",
        outputReceivedBytes: "Encoded bytes (framing included) routed to the output.",
        outputWrittenRecords: "Records accepted by the destination (file write or socket send completed).",
        outputWrittenBytes: "Encoded bytes accepted by the destination.",
        outputDroppedRecords: "Records the output dropped, by reason.",
        outputInFlightRecords: "Records in the channel or in flight to the destination (received - written - dropped).",
        outputErrors: "Destination errors, by kind.",
        outputReconnects: "TCP reconnections after a lost connection.",
        outputRotations: "File rotations, counting reopens (SIGHUP) too.",
        outputWritebacks:
            "File writeback requests (sync_file_range SYNC_FILE_RANGE_WRITE) started by the writeback setting; "
            + "0 with writeback = \"kernel\" and for TCP outputs.",
        outputConnected: "1 while the destination is open or connected.",
        outputDeliveryDelay:
            "Time from a shipped sub-buffer's first record to the accounting pass that sees it written (50 ms resolution).",
        channelRecordsWritten: "Records committed into the channel.",
        channelRecordsDroppedFull: "Reservations refused because no sub-buffer was free.",
        channelRecordsTooBig: "Reservations refused because the record exceeds a sub-buffer.",
        channelRecordsLapped: "Overwrite mode: reservations refused because a stalled writer held the next sub-buffer.",
        channelRecordsRefusedClosed: "Writes refused because the channel was closed.",
        channelSubbuffersProduced: "Sub-buffers sealed and handed to the shipper.",
        channelSubbuffersConsumed: "Sub-buffers released by the shipper.",
        channelSubbuffersOverwritten: "Sub-buffers reused before being shipped (overwrite mode).",
        channelSubbuffersCorrupt:
            "Delivered sub-buffers skipped because their header was corrupt (not written by relayd; their records were "
            + "not shipped). Anything but 0 means something else wrote into the channel's memory.",
        channelWriterWaits: "Times a writer waited for a free sub-buffer (block mode).",
        channelFillRatio: "Committed, unconsumed bytes divided by channel capacity.",
        channelCapacityBytes: "Channel capacity in bytes.",
        shipperBuffers: "Sub-buffers shipped with registered (fixed) buffers vs. ordinary writes.",
        shipperZeroCopySends: "Zero-copy send completions, by whether the kernel copied after all.",
        shipperZeroCopyCopiedRatio: "Fraction of zero-copy sends the kernel copied.",
        startTime: "Start time of the process since the Unix epoch in seconds.",
    ]

    /// Delivery-delay histogram buckets.
    static let delayBuckets: [Duration] = [
        .microseconds(100), .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(10),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .milliseconds(2500), .seconds(5), .seconds(10),
    ]
}

/// Owns relayd's metrics: the hot-path counter objects, the Prometheus registry, and publishing.
///
/// Hot paths update ``InputMetrics``, ``OutputMetrics`` and ``ShipperMetrics`` (atomics only). At scrape time
/// ``exposition()`` takes one snapshot of everything, pushes the differences into the Prometheus series under a
/// lock, and renders the text format, so every scrape is internally consistent (see ``RelaydMetricFamily``).
final class RelaydMetrics: Sendable {
    /// The Prometheus registry (also usable through ``metricsFactory`` by swift-metrics users).
    let registry: PrometheusCollectorRegistry
    /// Per-input counters, in configuration order.
    let inputs: [InputMetrics]
    /// Per-output counters, in configuration order.
    let outputs: [OutputMetrics]
    /// Shipper counters.
    let shipper = ShipperMetrics()

    private let state: RelayMutex<PublishState>
    private let delayHistograms: [String: DurationHistogram]

    /// Creates metrics for the inputs and outputs of `config`.
    ///
    /// - Parameters:
    ///   - config: The configuration.
    ///   - registry: The registry to publish into (a fresh one by default).
    convenience init(config: RelaydConfig, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.init(inputNames: config.inputs.map(\.name), outputNames: config.outputs.map(\.name), registry: registry)
    }

    /// Creates metrics for the named inputs and outputs.
    ///
    /// - Parameters:
    ///   - inputNames: Input names (`input` label values).
    ///   - outputNames: Output names (`output` label values).
    ///   - registry: The registry to publish into.
    init(
        inputNames: [String],
        outputNames: [String],
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()
    ) {
        self.registry = registry
        self.inputs = inputNames.map { InputMetrics(name: $0) }
        self.outputs = outputNames.map { OutputMetrics(name: $0) }
        var histograms: [String: DurationHistogram] = [:]
        for name in outputNames {
            histograms[name] = registry.makeDurationHistogram(
                descriptor: Self.descriptor(RelaydMetricFamily.outputDeliveryDelay),
                labels: [("output", name)],
                buckets: RelaydMetricFamily.delayBuckets
            )
        }
        self.delayHistograms = histograms
        var state = PublishState(registry: registry)
        for input in self.inputs { state.inputSeries[input.name] = InputSeries(registry: registry, name: input.name) }
        for output in self.outputs {
            state.outputSeries[output.name] = OutputSeries(registry: registry, name: output.name)
        }
        state.shipperSeries = ShipperSeries(registry: registry)
        let start = WallClockTimestamp.now()
        registry.makeGauge(descriptor: Self.descriptor(RelaydMetricFamily.startTime))
            .set(Double(start.seconds) + Double(start.nanoseconds) / 1e9)
        self.state = RelayMutex(state)
    }

    /// The counters of input `name`.
    func input(_ name: String) -> InputMetrics? {
        self.inputs.first { $0.name == name }
    }

    /// The counters of output `name`.
    func output(_ name: String) -> OutputMetrics? {
        self.outputs.first { $0.name == name }
    }

    /// A swift-metrics factory backed by the same registry, for `MetricsSystem.bootstrap` (so libraries that
    /// use swift-metrics appear on the same `/metrics` page).
    var metricsFactory: PrometheusMetricsFactory {
        PrometheusMetricsFactory(registry: self.registry)
    }

    /// Makes swift-metrics (`Counter(label:)`, `Timer(label:)`, ...) report into this registry. Call once per
    /// process, at start-up; `MetricsSystem.bootstrap` traps when called twice.
    func bootstrapMetricsSystem() {
        MetricsSystem.bootstrap(self.metricsFactory)
    }

    /// Registers a channel whose statistics are read at every scrape.
    ///
    /// - Parameters:
    ///   - name: The `channel` label (the output's name: every output owns one channel).
    ///   - statistics: Reads the engine's counters; called under the publishing lock, must not block.
    func registerChannel(name: String, statistics: @escaping @Sendable () -> ChannelStatistics) {
        let series = ChannelSeries(registry: self.registry, name: name)
        self.state.withLock { state in
            state.channelSeries[name] = series
            state.channelProviders[name] = statistics
        }
    }

    /// Records the delivery delay of one shipped sub-buffer (read time of its oldest record → write completion).
    ///
    /// Takes the histogram's lock briefly; call it once per completed sub-buffer write, not per record.
    func recordDeliveryDelay(output: String, _ delay: Duration) {
        self.delayHistograms[output]?.record(delay)
    }

    /// Publishes a consistent snapshot of every counter into the Prometheus series.
    func collect() {
        self.state.withLock { state in
            state.publish(inputs: self.inputs, outputs: self.outputs, shipper: self.shipper)
        }
    }

    /// Collects and renders the Prometheus text exposition format (version 0.0.4).
    func exposition() -> [UInt8] {
        self.state.withLock { state in
            state.publish(inputs: self.inputs, outputs: self.outputs, shipper: self.shipper)
            var buffer: [UInt8] = []
            buffer.reserveCapacity(state.lastExpositionSize + 1024)
            self.registry.emit(into: &buffer)
            state.lastExpositionSize = buffer.count
            return buffer
        }
    }

    /// The registry descriptor of family `name`, with its help text.
    static func descriptor(_ name: String) -> MetricNameDescriptor {
        // The family names already carry their unit suffix; MetricNameDescriptor joins non-empty parts with "_".
        MetricNameDescriptor(metricName: name, unitName: "", helpText: RelaydMetricFamily.help[name] ?? "")
    }
}

// MARK: - Publishing

/// A Prometheus counter fed with deltas of a monotonic source counter.
private struct DeltaCounter {
    let counter: Prometheus.Counter
    var published: UInt64 = 0

    init(_ registry: PrometheusCollectorRegistry, _ name: String, _ labels: [(String, String)]) {
        self.counter = registry.makeCounter(descriptor: RelaydMetrics.descriptor(name), labels: labels)
    }

    /// Makes the series equal `value` (or, if the source was reset, adds `value` so the series stays monotonic).
    mutating func publish(_ value: UInt64) {
        let delta = value >= self.published ? value - self.published : value
        if delta > 0 { self.counter.increment(by: Int64(clamping: delta)) }
        self.published = value
    }
}

private struct InputSeries {
    var received: DeltaCounter
    var receivedBytes: DeltaCounter
    var routed: DeltaCounter
    var dropped: [DeltaCounter]
    let inFlight: Prometheus.Gauge
    var truncated: DeltaCounter
    var badPrefix: DeltaCounter
    var incomplete: DeltaCounter
    var empty: DeltaCounter
    let connections: Prometheus.Gauge
    var accepted: DeltaCounter
    var rejectedLimit: DeltaCounter
    var closedFraming: DeltaCounter

    init(registry: PrometheusCollectorRegistry, name: String) {
        let labels = [("input", name)]
        typealias F = RelaydMetricFamily
        self.received = DeltaCounter(registry, F.inputReceivedRecords, labels)
        self.receivedBytes = DeltaCounter(registry, F.inputReceivedBytes, labels)
        self.routed = DeltaCounter(registry, F.inputRoutedRecords, labels)
        self.dropped = InputDropReason.allCases.map {
            DeltaCounter(registry, F.inputDroppedRecords, labels + [("reason", $0.label)])
        }
        self.inFlight = registry.makeGauge(descriptor: RelaydMetrics.descriptor(F.inputInFlightRecords), labels: labels)
        self.truncated = DeltaCounter(registry, F.inputFramesTruncated, labels)
        self.badPrefix = DeltaCounter(registry, F.inputFramesBadPrefix, labels)
        self.incomplete = DeltaCounter(registry, F.inputFramesIncomplete, labels)
        self.empty = DeltaCounter(registry, F.inputFramesEmpty, labels)
        self.connections = registry.makeGauge(descriptor: RelaydMetrics.descriptor(F.inputConnections), labels: labels)
        self.accepted = DeltaCounter(registry, F.inputConnectionsAccepted, labels)
        self.rejectedLimit = DeltaCounter(
            registry,
            F.inputConnectionsRejected,
            labels + [("reason", "max_connections")]
        )
        self.closedFraming = DeltaCounter(registry, F.inputConnectionsClosedFraming, labels)
    }

    mutating func publish(_ metrics: InputMetrics) {
        let snapshot = metrics.ledger.snapshot()
        self.received.publish(snapshot.receivedRecords)
        self.receivedBytes.publish(snapshot.receivedBytes)
        self.routed.publish(snapshot.completedRecords)
        for index in self.dropped.indices { self.dropped[index].publish(snapshot.droppedRecords[index]) }
        self.inFlight.set(Int64(clamping: snapshot.inFlightRecords))
        // Relaxed loads: exposition-only counters with no cross-counter invariant.
        self.truncated.publish(metrics.framesTruncated.load(ordering: .relaxed))
        self.badPrefix.publish(metrics.framesBadPrefix.load(ordering: .relaxed))
        self.incomplete.publish(metrics.framesIncomplete.load(ordering: .relaxed))
        self.empty.publish(metrics.framesEmpty.load(ordering: .relaxed))
        self.connections.set(metrics.connectionsActive.load(ordering: .relaxed))
        self.accepted.publish(metrics.connectionsAccepted.load(ordering: .relaxed))
        self.rejectedLimit.publish(metrics.connectionsRejectedLimit.load(ordering: .relaxed))
        self.closedFraming.publish(metrics.connectionsClosedFraming.load(ordering: .relaxed))
    }
}

private struct OutputSeries {
    var received: DeltaCounter
    var receivedBytes: DeltaCounter
    var written: DeltaCounter
    var writtenBytes: DeltaCounter
    var dropped: [DeltaCounter]
    let inFlight: Prometheus.Gauge
    var writeErrors: DeltaCounter
    var connectErrors: DeltaCounter
    var reconnects: DeltaCounter
    var rotations: DeltaCounter
    var writebacks: DeltaCounter
    let connected: Prometheus.Gauge

    init(registry: PrometheusCollectorRegistry, name: String) {
        let labels = [("output", name)]
        typealias F = RelaydMetricFamily
        self.received = DeltaCounter(registry, F.outputReceivedRecords, labels)
        self.receivedBytes = DeltaCounter(registry, F.outputReceivedBytes, labels)
        self.written = DeltaCounter(registry, F.outputWrittenRecords, labels)
        self.writtenBytes = DeltaCounter(registry, F.outputWrittenBytes, labels)
        self.dropped = OutputDropReason.allCases.map {
            DeltaCounter(registry, F.outputDroppedRecords, labels + [("reason", $0.label)])
        }
        self.inFlight = registry.makeGauge(
            descriptor: RelaydMetrics.descriptor(F.outputInFlightRecords),
            labels: labels
        )
        self.writeErrors = DeltaCounter(registry, F.outputErrors, labels + [("kind", "write")])
        self.connectErrors = DeltaCounter(registry, F.outputErrors, labels + [("kind", "connect")])
        self.reconnects = DeltaCounter(registry, F.outputReconnects, labels)
        self.rotations = DeltaCounter(registry, F.outputRotations, labels)
        self.writebacks = DeltaCounter(registry, F.outputWritebacks, labels)
        self.connected = registry.makeGauge(descriptor: RelaydMetrics.descriptor(F.outputConnected), labels: labels)
    }

    mutating func publish(_ metrics: OutputMetrics) {
        let snapshot = metrics.ledger.snapshot()
        self.received.publish(snapshot.receivedRecords)
        self.receivedBytes.publish(snapshot.receivedBytes)
        self.written.publish(snapshot.completedRecords)
        self.writtenBytes.publish(snapshot.completedBytes)
        for index in self.dropped.indices { self.dropped[index].publish(snapshot.droppedRecords[index]) }
        self.inFlight.set(Int64(clamping: snapshot.inFlightRecords))
        // Relaxed loads: exposition-only counters with no cross-counter invariant.
        self.writeErrors.publish(metrics.writeErrors.load(ordering: .relaxed))
        self.connectErrors.publish(metrics.connectErrors.load(ordering: .relaxed))
        self.reconnects.publish(metrics.reconnects.load(ordering: .relaxed))
        self.rotations.publish(metrics.rotations.load(ordering: .relaxed))
        self.writebacks.publish(metrics.writebacks.load(ordering: .relaxed))
        self.connected.set(metrics.connected.load(ordering: .relaxed))
    }
}

private struct ChannelSeries {
    var written: DeltaCounter
    var droppedFull: DeltaCounter
    var tooBig: DeltaCounter
    var lapped: DeltaCounter
    var refusedClosed: DeltaCounter
    var produced: DeltaCounter
    var consumed: DeltaCounter
    var overwritten: DeltaCounter
    var corrupt: DeltaCounter
    var waits: DeltaCounter
    let fill: Prometheus.Gauge
    let capacity: Prometheus.Gauge

    init(registry: PrometheusCollectorRegistry, name: String) {
        let labels = [("channel", name)]
        typealias F = RelaydMetricFamily
        self.written = DeltaCounter(registry, F.channelRecordsWritten, labels)
        self.droppedFull = DeltaCounter(registry, F.channelRecordsDroppedFull, labels)
        self.tooBig = DeltaCounter(registry, F.channelRecordsTooBig, labels)
        self.lapped = DeltaCounter(registry, F.channelRecordsLapped, labels)
        self.refusedClosed = DeltaCounter(registry, F.channelRecordsRefusedClosed, labels)
        self.produced = DeltaCounter(registry, F.channelSubbuffersProduced, labels)
        self.consumed = DeltaCounter(registry, F.channelSubbuffersConsumed, labels)
        self.overwritten = DeltaCounter(registry, F.channelSubbuffersOverwritten, labels)
        self.corrupt = DeltaCounter(registry, F.channelSubbuffersCorrupt, labels)
        self.waits = DeltaCounter(registry, F.channelWriterWaits, labels)
        self.fill = registry.makeGauge(descriptor: RelaydMetrics.descriptor(F.channelFillRatio), labels: labels)
        self.capacity = registry.makeGauge(descriptor: RelaydMetrics.descriptor(F.channelCapacityBytes), labels: labels)
    }

    mutating func publish(_ statistics: ChannelStatistics) {
        self.written.publish(statistics.recordsWritten)
        self.droppedFull.publish(statistics.recordsDroppedFull)
        self.tooBig.publish(statistics.recordsTooBig)
        self.lapped.publish(statistics.recordsLapped)
        self.refusedClosed.publish(statistics.recordsRefusedClosed)
        self.produced.publish(statistics.subbuffersProduced)
        self.consumed.publish(statistics.subbuffersConsumed)
        self.overwritten.publish(statistics.subbuffersOverwritten)
        self.corrupt.publish(statistics.subbuffersCorrupt)
        self.waits.publish(statistics.writerWaits)
        let capacity = statistics.capacityBytes
        self.fill.set(capacity == 0 ? 0 : min(1, Double(statistics.bytesFilled) / Double(capacity)))
        self.capacity.set(Int64(clamping: capacity))
    }
}

private struct ShipperSeries {
    let registered: Prometheus.Gauge
    let fallback: Prometheus.Gauge
    var zeroCopy: DeltaCounter
    var copied: DeltaCounter
    let copiedRatio: Prometheus.Gauge

    init(registry: PrometheusCollectorRegistry) {
        typealias F = RelaydMetricFamily
        self.registered = registry.makeGauge(
            descriptor: RelaydMetrics.descriptor(F.shipperBuffers),
            labels: [("kind", "registered")]
        )
        self.fallback = registry.makeGauge(
            descriptor: RelaydMetrics.descriptor(F.shipperBuffers),
            labels: [("kind", "fallback")]
        )
        self.zeroCopy = DeltaCounter(registry, F.shipperZeroCopySends, [("result", "zerocopy")])
        self.copied = DeltaCounter(registry, F.shipperZeroCopySends, [("result", "copied")])
        self.copiedRatio = registry.makeGauge(descriptor: RelaydMetrics.descriptor(F.shipperZeroCopyCopiedRatio))
    }

    mutating func publish(_ metrics: ShipperMetrics) {
        // Relaxed loads: exposition-only gauges and counters.
        self.registered.set(metrics.registeredBuffers.load(ordering: .relaxed))
        self.fallback.set(metrics.fallbackBuffers.load(ordering: .relaxed))
        let zeroCopy = metrics.zeroCopySends.load(ordering: .relaxed)
        let copied = metrics.zeroCopyCopied.load(ordering: .relaxed)
        self.zeroCopy.publish(zeroCopy)
        self.copied.publish(copied)
        let total = zeroCopy &+ copied
        self.copiedRatio.set(total == 0 ? 0 : Double(copied) / Double(total))
    }
}

private struct PublishState: ~Copyable {
    var inputSeries: [String: InputSeries] = [:]
    var outputSeries: [String: OutputSeries] = [:]
    var channelSeries: [String: ChannelSeries] = [:]
    var channelProviders: [String: @Sendable () -> ChannelStatistics] = [:]
    var shipperSeries: ShipperSeries
    var lastExpositionSize = 0

    init(registry: PrometheusCollectorRegistry) {
        self.shipperSeries = ShipperSeries(registry: registry)
    }

    mutating func publish(inputs: [InputMetrics], outputs: [OutputMetrics], shipper: ShipperMetrics) {
        for input in inputs { self.inputSeries[input.name]?.publish(input) }
        for output in outputs { self.outputSeries[output.name]?.publish(output) }
        for (name, provider) in self.channelProviders { self.channelSeries[name]?.publish(provider()) }
        self.shipperSeries.publish(shipper)
    }
}
