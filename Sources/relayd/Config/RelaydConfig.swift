import RelayShipper

/// The complete, validated relayd configuration.
///
/// Produced by ``RelaydConfig/parse(_:options:)`` or ``RelaydConfig/load(path:options:)`` from a TOML file
/// whose schema is documented in `deploy/README.md` and shown by ``DefaultConfig/text``.
///
/// Model: every input frames its byte stream into records; every output owns one relay channel (its
/// geometry comes from `[channels.<name>]`, selected by the output's `channel` key) and receives the records
/// of the inputs listed in its `inputs` key (all inputs when the key is absent). A record routed to several
/// outputs is encoded once per output, in that output's format, into that output's channel, so the shipper
/// can write whole sub-buffers without touching records.
struct RelaydConfig: Sendable, Equatable {
    /// `[daemon]`.
    var daemon: DaemonConfig
    /// `[channels.<name>]`, keyed by name; always contains ``ChannelConfig/defaultName``.
    var channels: [String: ChannelConfig]
    /// `[[inputs]]`, in file order.
    var inputs: [InputConfig]
    /// `[[outputs]]`, in file order.
    var outputs: [OutputConfig]

    /// The channel geometry used by `output`.
    ///
    /// - Parameter output: One of ``outputs``.
    /// - Returns: Its channel (validation guarantees the name exists).
    func channel(for output: OutputConfig) -> ChannelConfig {
        self.channels[output.channel] ?? ChannelConfig(name: output.channel)
    }

    /// The outputs that receive records from the input named `inputName`, in file order.
    ///
    /// - Parameter inputName: An input's ``InputConfig/name``.
    /// - Returns: The outputs routing that input.
    func outputs(consuming inputName: String) -> [OutputConfig] {
        self.outputs.filter { $0.inputs.contains(inputName) }
    }
}

/// `[daemon]`: process-wide settings.
struct DaemonConfig: Sendable, Equatable {
    /// `metrics_listen`: where `GET /metrics` and `GET /healthz` are served; `nil` when set to `""` (disabled).
    var metricsListen: ListenAddress?
    /// `allow_remote`: permit a non-loopback `metrics_listen`.
    var allowRemote: Bool
    /// `drain_timeout`: how long SIGTERM waits for channels to drain before dropping what is left.
    var drainTimeout: Duration
    /// `state_dir`: reserved for relayd's own state; checked and created (`create_dirs`) at start, nothing is stored in it yet.
    var stateDirectory: String
    /// `log_level`: relayd's diagnostic log level.
    var logLevel: LogLevel
    /// `create_dirs`: create missing parent directories of output files, unix sockets and `state_dir` at start.
    var createDirectories: Bool
    /// `hostname`: the HOSTNAME written for local messages that carry none; `nil` means `gethostname(2)`.
    var hostname: String?

    /// The defaults used for keys that are absent.
    static let defaults = DaemonConfig(
        metricsListen: ListenAddress(host: "127.0.0.1", port: 9464, family: .ipv4, addressBytes: [127, 0, 0, 1]),
        allowRemote: false,
        drainTimeout: .seconds(10),
        stateDirectory: "/var/lib/relayd",
        logLevel: .info,
        createDirectories: false,
        hostname: nil
    )
}

/// relayd's diagnostic log levels; the raw values match swift-log's `Logger.Level`.
enum LogLevel: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}

/// `[channels.<name>]`: relay channel geometry and overflow policy.
struct ChannelConfig: Sendable, Equatable {
    /// The name of the channel table that every output uses unless it sets `channel`.
    static let defaultName = "default"

    /// Bytes at the start of every sub-buffer taken by the engine's sub-buffer header (`RegionLayout.engineHeaderSize`
    /// in the Relay module; relayd uses no client header). A record must fit in `subbufferSize - subbufferHeaderReserve`,
    /// which equals `RelayChannelConfiguration.maxRecordSize` with `clientHeaderSize: 0`.
    static let subbufferHeaderReserve = 64

    /// The `<name>` in `[channels.<name>]`.
    var name: String
    /// `subbuf_size`: bytes per sub-buffer; a power of two ≥ 4096.
    var subbufferSize: Int = 1 << 20
    /// `subbufs`: sub-buffers per channel buffer (relayd's channels have one buffer); a power of two ≥ 2 (`subbuf_size × subbufs` ≤ 1 GiB).
    var subbufferCount: Int = 8
    /// `mode`: what a writer does when every sub-buffer is full.
    var mode: OverflowMode = .block
    /// `block_timeout`: in `block` mode, how long a writer waits before dropping the record.
    var blockTimeout: Duration = .milliseconds(100)
    /// `switch_interval`: a partly filled sub-buffer is handed to the shipper after this long, bounding latency.
    var switchInterval: Duration = .milliseconds(100)

    /// The largest record a sub-buffer can hold.
    var payloadCapacity: Int { self.subbufferSize - Self.subbufferHeaderReserve }
}

/// What a channel writer does when no sub-buffer is free (`mode`).
enum OverflowMode: String, Sendable, CaseIterable {
    /// Wait up to `block_timeout` for the shipper, then drop and count (backpressure to the sender).
    case block
    /// Drop the new record at once and count it.
    case drop
    /// Reuse the oldest unshipped sub-buffer (flight recorder); its records are counted as overwritten.
    case overwrite
}

/// Which record fields an input attaches (`tag = { input_name = true, peer = true, received_at = true }`).
///
/// Tags are written by the `rfc5424` format as SD-PARAMs of one SD-ELEMENT and by the `jsonl` format as
/// fields; the `raw` format writes the frame unchanged and ignores them.
struct TagOptions: Sendable, Equatable {
    /// `input_name`: the input's `name`.
    var inputName: Bool = true
    /// `peer`: the remote address (`tcp`) or the peer's pid/uid (`unix_*`, when known).
    var peer: Bool = true
    /// `received_at`: the time relayd read the record (RFC 3339, UTC, microseconds).
    var receivedAt: Bool = true
}

/// How a stream input splits bytes into records (`framing`).
enum InputFraming: String, Sendable, CaseIterable {
    /// Per frame, like rsyslog imtcp: `LEN SP MSG` when the frame starts with a digit 1-9, else LF-delimited.
    case auto
    /// Only RFC 6587 octet counting; a frame that does not start with `LEN SP` closes the connection.
    case octetCounting = "octet-counting"
    /// Only LF-delimited (non-transparent framing); digits at the start of a line are message text.
    case lf
}

/// `[[inputs]]`: a source of records.
struct InputConfig: Sendable, Equatable {
    /// The input type and its type-specific settings.
    enum Kind: Sendable, Equatable {
        /// `type = "stdin"`: reads relayd's standard input until EOF.
        case stdin
        /// `type = "tcp"`: a TCP syslog listener (RFC 6587).
        case tcp(listen: ListenAddress, maxConnections: Int)
        /// `type = "unix_stream"`: a `SOCK_STREAM` Unix socket at `path`.
        case unixStream(path: String, socketMode: UInt32, maxConnections: Int)
        /// `type = "unix_dgram"`: a `SOCK_DGRAM` Unix socket at `path` (e.g. a `/dev/log` replacement); one datagram is one record.
        case unixDatagram(path: String, socketMode: UInt32)

        /// The `type` string.
        var typeName: String {
            switch self {
            case .stdin: return "stdin"
            case .tcp: return "tcp"
            case .unixStream: return "unix_stream"
            case .unixDatagram: return "unix_dgram"
            }
        }

        /// The socket path of `unix_*` inputs.
        var socketPath: String? {
            switch self {
            case .unixStream(let path, _, _), .unixDatagram(let path, _): return path
            case .stdin, .tcp: return nil
            }
        }
    }

    /// `name`: unique; used in routing, metric labels and tags.
    var name: String
    /// `type` and its settings.
    var kind: Kind
    /// `max_frame`: the largest record; longer frames are truncated to this size and counted.
    var maxFrame: Int
    /// `framing` (stream inputs): see ``InputFraming``. Defaults: `auto` for `tcp`, `lf` for `stdin` and `unix_stream`.
    var framing: InputFraming
    /// `nul_delimiter` (stream inputs): also end LF frames at a NUL byte (glibc `syslog(3)` over a stream socket
    /// terminates messages with NUL). Default `true` for `unix_stream`, else `false`.
    var nulDelimiter: Bool
    /// `tag`: which fields to attach.
    var tags: TagOptions
    /// `allow_remote` (`tcp`): permit a non-loopback `listen` address.
    var allowRemote: Bool
}

/// The record encoding an output writes (`format`).
enum OutputFormat: String, Sendable, CaseIterable {
    /// The received frame, unchanged (trailing CR/LF/NUL removed).
    case raw
    /// RFC 5424, re-encoded from RFC 5424 or RFC 3164 input, with tags as an SD-ELEMENT.
    case rfc5424
    /// One JSON object per record.
    case jsonl
}

/// How records are delimited on an output (`framing` of `tcp` outputs; files always use `lf`).
enum OutputFraming: String, Sendable, CaseIterable {
    /// RFC 6587 §3.4.1: `LEN SP MSG`.
    case octetCounting = "octet-counting"
    /// RFC 6587 §3.4.2 with LF trailer: `MSG LF`; LF inside a message is written as `#012` (rsyslog's escape).
    case lf
}

/// When a file output calls `fsync(2)` (`fsync`).
enum FsyncPolicy: Sendable, Equatable {
    /// Never; the page cache decides (`"none"`).
    case none
    /// At most this long after a write (`"100ms"`).
    case interval(Duration)
    /// After every this many bytes (`"64MiB"`).
    case bytes(Int)
}

/// When a file output asks the kernel to start writing completed data to the disk (`writeback`), ahead of any
/// `fsync` and of the kernel's own background writeback (see `RelayFileSinkConfiguration.Writeback`).
enum WritebackPolicy: Sendable, Equatable {
    /// Never ask; the kernel's background writeback decides (`"kernel"`).
    case kernel
    /// Start writeback of every this many bytes of completed writes (`"8MiB"`; at least ``smallestChunk``).
    case bytes(Int)

    /// The smallest chunk accepted: the shipper's (64 KiB; it refuses to start with less).
    static let smallestChunk = RelayFileSinkConfiguration.Writeback.smallestChunk
    /// Every 8 MiB: relayd's default when the key is absent. (The library's own default is
    /// ``kernel``; a daemon writing log files wants them on the disk steadily, and an `fsync`
    /// policy wants little left for each fsync.)
    static let `default` = WritebackPolicy.bytes(8 << 20)
}

/// `type = "file"` settings.
struct FileOutputConfig: Sendable, Equatable {
    /// `path`: the active file; rotated files are `path.1` ... `path.N`.
    var path: String
    /// `rotate_size`: rotate when the file would exceed this many bytes; `0` disables size rotation.
    var rotateSize: Int
    /// `rotate_count`: rotated files kept.
    var rotateCount: Int
    /// `rotate_age`: rotate when the active file is older than this; `nil` disables age rotation.
    var rotateAge: Duration?
    /// `fsync`: see ``FsyncPolicy``.
    var fsync: FsyncPolicy
    /// `writeback`: see ``WritebackPolicy``.
    var writeback: WritebackPolicy
    /// `odirect`: open with `O_DIRECT` (writes whole, aligned sub-buffers; bypasses the page cache).
    var odirect: Bool
    /// `file_mode`: permission bits for created files.
    var fileMode: UInt32
}

/// `type = "tcp"` settings.
struct TCPOutputConfig: Sendable, Equatable {
    /// `target`: the aggregator, `host:port`.
    var target: HostPort
    /// `framing`: see ``OutputFraming``.
    var framing: OutputFraming
    /// `reconnect_backoff = "100ms..5s"`: first and largest delay between reconnect attempts (doubling).
    var reconnectBackoff: ClosedRange<Duration>
    /// `connect_timeout`: give up on one connect attempt after this long.
    var connectTimeout: Duration
}

/// `[[outputs]]`: a destination for records.
struct OutputConfig: Sendable, Equatable {
    /// The output type and its type-specific settings.
    enum Kind: Sendable, Equatable {
        /// `type = "file"`.
        case file(FileOutputConfig)
        /// `type = "tcp"`.
        case tcp(TCPOutputConfig)

        /// The `type` string.
        var typeName: String {
            switch self {
            case .file: return "file"
            case .tcp: return "tcp"
            }
        }
    }

    /// `name`: unique; used in metric labels.
    var name: String
    /// `inputs`: the input names routed here; every input when the key is absent.
    var inputs: [String]
    /// `format`: see ``OutputFormat``.
    var format: OutputFormat
    /// `channel`: the `[channels.<name>]` geometry of this output's channel.
    var channel: String
    /// `sd_id`: the SD-ID of the tag element in `rfc5424` output (default `relayd@32473`; 32473 is the
    /// example enterprise number of RFC 5612 — set your own private enterprise number in production).
    /// A message that already has an element with this SD-ID keeps it and gets no second one.
    var sdID: String
    /// `type` and its settings.
    var kind: Kind

    /// The framing this output writes: files always `lf`, TCP per its `framing` key.
    var framing: OutputFraming {
        switch self.kind {
        case .file: return .lf
        case .tcp(let tcp): return tcp.framing
        }
    }
}
