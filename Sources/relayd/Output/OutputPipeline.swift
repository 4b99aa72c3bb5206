import Relay
import RelayShipper

/// One configured output: its relay channel, its record encoder, its counters, and the sink the shipper writes
/// the channel to.
///
/// Every output owns one channel with a single buffer: the input ring is the only writer, so one buffer keeps
/// the records of the output in arrival order and bounds the memory to `subbuf_size × subbufs`.
final class OutputPipeline: Sendable {
    /// Position in the configuration (and in the shipper's sink list).
    let index: Int
    /// The configuration.
    let config: OutputConfig
    /// The channel records are encoded into.
    let channel: RelayChannel
    /// Encodes records in this output's format and framing.
    let encoder: RecordEncoder
    /// The output's counters.
    let metrics: OutputMetrics
    /// Maps consumed sub-buffers to written records.
    let deliveries: DeliveryLedger
    /// What the shipper writes the channel to.
    let sink: RelaySink

    /// Creates the channel of `output`.
    ///
    /// - Parameters:
    ///   - output: The output.
    ///   - index: Its position in the configuration.
    ///   - channelConfig: Its channel geometry.
    ///   - metrics: Its counters.
    ///   - zone: The zone of RFC 3164 timestamps.
    /// - Throws: ``StartupError`` when the channel cannot be mapped.
    init(
        output: OutputConfig,
        index: Int,
        channelConfig: ChannelConfig,
        metrics: OutputMetrics,
        zone: RecordEncoder.BSDZone
    ) throws(StartupError) {
        self.index = index
        self.config = output
        self.metrics = metrics
        self.encoder = RecordEncoder(output: output, zone: zone)
        let ledger = DeliveryLedger(
            subbufferCount: channelConfig.subbufferCount,
            overwriteMode: channelConfig.mode == .overwrite
        )
        self.deliveries = ledger
        let mode: RelayMode
        switch channelConfig.mode {
        case .block: mode = .block(timeout: channelConfig.blockTimeout)
        case .drop: mode = .drop
        case .overwrite: mode = .overwrite
        }
        let configuration = RelayChannelConfiguration(
            name: "relayd-\(output.name)",
            subbufferSize: channelConfig.subbufferSize,
            subbufferCount: channelConfig.subbufferCount,
            mode: mode,
            buffers: 1,
            prefault: true,
            filler: .logLines
        )
        do {
            self.channel = try RelayChannel(configuration, callbacks: ledger.callbacks)
        } catch {
            throw StartupError(
                keyPath: "channels.\(channelConfig.name)",
                message: "cannot create the channel of output \"\(output.name)\": \(error)"
            )
        }
        ledger.attach(self.channel)
        self.sink = Self.sink(for: output, channel: channelConfig)
    }

    /// The shipper sink for `output`.
    static func sink(for output: OutputConfig, channel: ChannelConfig) -> RelaySink {
        switch output.kind {
        case .file(let file):
            return .file(Self.fileSinkConfiguration(for: file, channel: channel))
        case .tcp(let tcp):
            return .socket(
                RelaySocketSinkConfiguration(
                    endpoint: .tcp(host: tcp.target.host, port: Int(tcp.target.port)),
                    reconnectDelay: tcp.reconnectBackoff,
                    connectTimeout: tcp.connectTimeout
                )
            )
        }
    }

    /// The shipper's file sink configuration for a file output whose channel is `channel`.
    static func fileSinkConfiguration(
        for file: FileOutputConfig,
        channel: ChannelConfig
    ) -> RelayFileSinkConfiguration {
        let fsync: RelayFileSinkConfiguration.FsyncPolicy
        switch file.fsync {
        case .none: fsync = .none
        case .interval(let interval): fsync = .interval(interval)
        case .bytes(let bytes): fsync = .everyBytes(bytes)
        }
        let writeback: RelayFileSinkConfiguration.Writeback
        switch file.writeback {
        case .kernel: writeback = .kernel
        case .bytes(let bytes): writeback = .everyBytes(bytes)
        }
        var rotation: RelayFileSinkConfiguration.Rotation?
        if file.rotateSize > 0 || file.rotateAge != nil {
            rotation = RelayFileSinkConfiguration.Rotation(
                maxBytes: file.rotateSize > 0 ? file.rotateSize : nil,
                maxAge: file.rotateAge,
                keep: file.rotateCount
            )
        }
        // Preallocate (FALLOC_FL_KEEP_SIZE) in steps of a few sub-buffers, never beyond the rotation size.
        var preallocate = min(16 << 20, max(channel.subbufferSize * 4, 1 << 20))
        if file.rotateSize > 0 { preallocate = min(preallocate, file.rotateSize) }
        return RelayFileSinkConfiguration(
            path: file.path,
            layout: .perChannel,
            format: .plain,
            directIO: false,
            fsync: fsync,
            writeback: writeback,
            rotation: rotation,
            preallocate: preallocate,
            permissions: file.fileMode
        )
    }

    /// Statistics of the channel, for the `relayd_channel_*` families.
    func channelStatistics() -> ChannelStatistics {
        let total = self.channel.stats().total
        let configuration = self.channel.configuration
        return ChannelStatistics(
            recordsWritten: total.recordsWritten,
            recordsDroppedFull: total.recordsDropped,
            recordsTooBig: total.recordsTooBig,
            subbuffersProduced: total.subbuffersProduced,
            subbuffersConsumed: total.subbuffersConsumed,
            subbuffersOverwritten: total.subbuffersOverwritten,
            subbuffersCorrupt: total.corruptSubbuffers,
            recordsLapped: total.recordsLapped,
            recordsRefusedClosed: total.recordsRefusedClosed,
            writerWaits: total.writerWaits,
            bytesFilled: total.unconsumedSubbuffers * UInt64(configuration.subbufferSize),
            capacityBytes: UInt64(configuration.subbufferSize * configuration.subbufferCount * self.channel.buffers)
        )
    }
}
