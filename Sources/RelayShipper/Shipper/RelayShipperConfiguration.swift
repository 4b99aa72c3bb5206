/// How a ``RelayShipper`` runs its ring.
public struct RelayShipperConfiguration: Sendable, Hashable {
    /// The switch timer: how often partly filled sub-buffers are sealed and shipped, so
    /// low-rate logs reach their destination within this bound. Idle channels cost
    /// nothing: the timer only runs while some buffer holds unsealed records.
    public var switchInterval: Duration
    /// Submission queue entries of the ring.
    public var ringEntries: Int
    /// Register every relay buffer region as an io_uring fixed buffer: `WRITE_FIXED` for
    /// O_DIRECT files (and buffered ones that ask, see
    /// ``RelayFileSinkConfiguration/FixedBufferWrites``) and `SEND_ZC` from relay memory.
    /// Falls back to unregistered ops, with one log line, when registration fails
    /// (RLIMIT_MEMLOCK).
    public var registerBuffers: Bool
    /// Writes in flight per file (explicit offsets keep them ordered on disk).
    public var fileQueueDepth: Int
    /// Sleep on an eventfd read even where the kernel has `IORING_OP_FUTEX_WAIT` (6.7+): what
    /// older kernels get. For tests, so that path runs on every kernel.
    package var wakesThroughEventFD = false
    /// Operations the kernel is made to refuse, so that tests run recovery paths against the
    /// kernel's own answers (see ``RelayShipperFaults``). None by default.
    package var faults = RelayShipperFaults()

    /// Creates a configuration.
    public init(
        switchInterval: Duration = .milliseconds(100),
        ringEntries: Int = 256,
        registerBuffers: Bool = true,
        fileQueueDepth: Int = 8
    ) {
        self.switchInterval = switchInterval
        self.ringEntries = ringEntries
        self.registerBuffers = registerBuffers
        self.fileQueueDepth = fileQueueDepth
    }
}

/// Faults a test can have the real kernel produce: each one makes the shipper submit an
/// operation the kernel refuses, so a recovery path runs on the kernel's own completion
/// (its error, its flags, what follows it) instead of a made-up one.
package struct RelayShipperFaults: Sendable, Hashable {
    /// Zero-copy sends carry a flag the kernel does not know, which it refuses with `EINVAL`
    /// before sending a byte: what kernels 6.0 to 6.1.1 answer to the usage report every
    /// zero-copy send asks for.
    package var refuseZeroCopySends = false
    /// The first this many peer-liveness polls (over all sockets) watch an invalid descriptor,
    /// so they complete at once with `EBADF`.
    package var failingPeerPolls = 0

    /// No faults.
    package init() {}
}

/// Where the sub-buffers of a channel go. A channel may feed several sinks; a
/// sub-buffer is released (consumed) only when every sink is done with it.
public struct RelaySink: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        case file(RelayFileSinkConfiguration)
        case socket(RelaySocketSinkConfiguration)
        case discard
    }

    let kind: Kind

    /// Writes to files.
    public static func file(_ configuration: RelayFileSinkConfiguration) -> RelaySink {
        RelaySink(kind: .file(configuration))
    }

    /// Sends to a TCP or Unix stream socket.
    public static func socket(_ configuration: RelaySocketSinkConfiguration) -> RelaySink {
        RelaySink(kind: .socket(configuration))
    }

    /// Consumes without I/O (benchmarks, and measuring the engine alone).
    public static let discard = RelaySink(kind: .discard)

    /// A short description for logs and metrics labels.
    public var label: String {
        switch self.kind {
        case .file(let c): return "file:\(c.path)"
        case .socket(let c): return "\(c.endpoint)"
        case .discard: return "null"
        }
    }
}

/// A file sink.
public struct RelayFileSinkConfiguration: Sendable, Hashable {
    /// One file per channel, or one per buffer (relayfs's `base0…baseN-1`).
    public enum Layout: Sendable, Hashable {
        /// All buffers interleave into `path` at sub-buffer granularity.
        case perChannel
        /// Buffer `i` goes to `path` + `i`.
        case perBuffer
    }

    /// What is written.
    public enum Format: Sendable, Hashable {
        /// Records only: headers and padding stripped, an ordinary log file.
        case plain
        /// Whole sub-buffers with their headers (decode with `RelayPacketReader`);
        /// sub-buffer aligned, so O_DIRECT capable.
        case packets
    }

    /// Which io_uring write a file sink issues when the relay regions are registered.
    ///
    /// Registration saves pinning the pages of every I/O, which is what O_DIRECT writes
    /// pay. A buffered write copies into the page cache either way (the kernel's copy, never
    /// a user-space one), and the kernel copies from a registered buffer's page vector one
    /// 4 KiB page at a time, more slowly than from the user mapping: on kernel 6.18 here,
    /// shipping 1 MiB sub-buffers into ext4's page cache with `WRITE_FIXED` was typically
    /// 5–10 % slower than with `WRITE` of the same memory (ShippingBenchmarks, the
    /// `WRITE_FIXED` rows; a C loop of 1 MiB io_uring writes at queue depth 8: ~15 %).
    public enum FixedBufferWrites: Sendable, Hashable {
        /// `WRITE_FIXED` for O_DIRECT files, `WRITE` for buffered ones. The default.
        case automatic
        /// `WRITE_FIXED` for every write (to measure, or where a kernel copies faster from
        /// a registered buffer).
        case always
    }

    /// When data is made durable.
    public enum FsyncPolicy: Sendable, Hashable {
        /// Never (the page cache decides).
        case none
        /// After every `bytes` bytes written.
        case everyBytes(Int)
        /// Every `interval` while data was written.
        case interval(Duration)
    }

    /// When the sink asks the kernel to start writing completed data to the disk, ahead of
    /// any fsync and of the kernel's own writeback.
    ///
    /// Without it, written data stays dirty in the page cache until the kernel's background
    /// writeback gets to it: by default after 30 s, or once dirty pages pass a share of RAM
    /// (`vm.dirty_background_ratio`, 10 %: gigabytes on a large host). Then it goes out in one
    /// burst, and an fsync or `fdatasync` that comes first has to write all of it, so its
    /// latency grows with everything written since the last one. Starting writeback every
    /// few MiB (`sync_file_range(SYNC_FILE_RANGE_WRITE)` through the ring, as PostgreSQL's
    /// `wal_writer_flush_after` or RocksDB's `bytes_per_sync` do) keeps the disk busy while
    /// the sink writes, so little is left for the next fsync, and bounds the dirty data a
    /// power loss can take. It claims nothing: only a completed fsync moves the durable
    /// watermark. O_DIRECT files have no dirty pages and never use it.
    ///
    /// It is a trade, so the library leaves it off (``kernel``) and relayd turns it on (every
    /// 8 MiB): on this project's 2-vCPU host a 1 GiB write ending in `fdatasync` took 0.7×
    /// the time with writeback every 8 MiB, while 256 MiB that stay in the page cache took
    /// about 1.4× the time, the disk writes now happening during the measurement instead of
    /// 30 s later (ShippingBenchmarks' "writeback every 8 MiB" rows). Turn it on where data
    /// must reach the disk steadily (an fsync policy, slow disks, large hosts whose dirty
    /// limit is gigabytes), leave it off where bursts into the page cache matter most.
    public enum Writeback: Sendable, Hashable {
        /// Leave writeback to the kernel.
        case kernel
        /// Start writeback of each `bytes` (at least 64 KiB) of completed writes, at most one
        /// request in flight per file. `everyBytes(8 << 20)` is relayd's default.
        case everyBytes(Int)

        /// The library's default: ``kernel``.
        public static let `default` = Writeback.kernel

        /// The smallest chunk ``everyBytes(_:)`` accepts, 64 KiB: each request is a system
        /// call's worth of work in the kernel. `start()` refuses a smaller one.
        public static let smallestChunk = 64 << 10
    }

    /// Rotation by size and count, and by age.
    public struct Rotation: Sendable, Hashable {
        /// Rotate before a write would take the current file past this many bytes (at a
        /// sub-buffer boundary), so files stay within it; an empty file takes its first
        /// sub-buffer whatever its size.
        public var maxBytes: Int?
        /// Rotate when the current file is this old: counted from when the sink opened it, or
        /// for a file that was empty, from its first write (an empty file is never rotated).
        public var maxAge: Duration?
        /// Rotated files kept (`path.1` … `path.N`): a rotation deletes `path.N`, and only when
        /// `path.1` … `path.(N-1)` all exist. It never overwrites a rotated file: if a rename of
        /// the shift fails (say something that cannot be replaced, like a directory, is in the
        /// way), the failure is logged and the rotation retried from there, writing nothing meanwhile.
        public var keep: Int

        /// Creates a rotation policy.
        public init(maxBytes: Int? = nil, maxAge: Duration? = nil, keep: Int = 5) {
            self.maxBytes = maxBytes
            self.maxAge = maxAge
            self.keep = keep
        }
    }

    /// The file path (``Layout/perChannel``) or path prefix (``Layout/perBuffer``).
    ///
    /// Each file has one writer: the sink holds an exclusive `flock(2)` on every file it
    /// writes (the fresh one after a rotation or reopen too), and a sink that finds a file
    /// locked by another sink, in this process or another, is refused at
    /// ``RelayShipper/start()`` with an error naming the path.
    public var path: String
    /// One file per channel or per buffer.
    public var layout: Layout
    /// Plain records or whole packets.
    public var format: Format
    /// Open with O_DIRECT (packets format only; alignment is checked with STATX_DIOALIGN).
    public var directIO: Bool
    /// Durability policy.
    public var fsync: FsyncPolicy
    /// When writeback of completed data starts (buffered files only); off (``Writeback/kernel``)
    /// by default.
    public var writeback: Writeback
    /// Rotation, if any.
    public var rotation: Rotation?
    /// Preallocation chunk (fallocate) ahead of the write offset; 0 disables. What a file
    /// did not use is given back when it is rotated away, reopened or closed.
    public var preallocate: Int
    /// File mode for new files.
    public var permissions: UInt32
    /// Which writes use the registered buffers (when registration succeeded).
    public var fixedBufferWrites: FixedBufferWrites

    /// Creates a file sink configuration.
    public init(
        path: String,
        layout: Layout = .perChannel,
        format: Format = .plain,
        directIO: Bool = false,
        fsync: FsyncPolicy = .none,
        writeback: Writeback = .default,
        rotation: Rotation? = nil,
        preallocate: Int = 64 << 20,
        permissions: UInt32 = 0o640,
        fixedBufferWrites: FixedBufferWrites = .automatic
    ) {
        self.path = path
        self.layout = layout
        self.format = format
        self.directIO = directIO
        self.fsync = fsync
        self.writeback = writeback
        self.rotation = rotation
        self.preallocate = preallocate
        self.permissions = permissions
        self.fixedBufferWrites = fixedBufferWrites
    }
}

/// A stream-socket sink.
public struct RelaySocketSinkConfiguration: Sendable, Hashable {
    /// Where to connect.
    public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
        /// TCP, IPv4 or IPv6 (host name or literal). A host name's addresses are tried in
        /// getaddrinfo's order until one accepts (`localhost` may give `::1` first).
        case tcp(host: String, port: Int)
        /// A Unix stream socket.
        case unix(path: String)

        public var description: String {
            switch self {
            case .tcp(let host, let port): return host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)"
            case .unix(let path): return "unix:\(path)"
            }
        }
    }

    /// When to use zero-copy sends.
    public enum ZeroCopy: Sendable, Hashable {
        /// SEND_ZC for large payloads to non-loopback peers, turned off while the
        /// kernel reports that it copied anyway.
        case automatic
        /// Never.
        case never
        /// Always (for measurements), except on Unix sockets, which have no zero-copy send.
        case always
    }

    /// The peer.
    public var endpoint: Endpoint
    /// Zero-copy policy.
    public var zeroCopy: ZeroCopy
    /// Smallest payload sent with SEND_ZC under ``ZeroCopy/automatic``.
    public var zeroCopyThreshold: Int
    /// First and longest reconnect delay (exponential backoff between them). The backoff
    /// starts again from the first delay only when a connection that lasted the longest
    /// delay (at most 10 s) breaks, so a peer that accepts and closes at once is retried
    /// ever more slowly.
    public var reconnectDelay: ClosedRange<Duration>
    /// How long one connection attempt may take before it is cancelled and retried (for a host
    /// name with several addresses: per address, the next one tried at once).
    public var connectTimeout: Duration
    /// SO_SNDBUF, if set (the kernel caps it at `net.core.wmem_max`; raise that sysctl for a
    /// larger buffer).
    public var sendBufferSize: Int?

    /// Creates a socket sink configuration.
    public init(
        endpoint: Endpoint,
        zeroCopy: ZeroCopy = .automatic,
        zeroCopyThreshold: Int = 64 << 10,
        reconnectDelay: ClosedRange<Duration> = .milliseconds(50)...(.seconds(5)),
        connectTimeout: Duration = .seconds(5),
        sendBufferSize: Int? = nil
    ) {
        self.endpoint = endpoint
        self.zeroCopy = zeroCopy
        self.zeroCopyThreshold = zeroCopyThreshold
        self.reconnectDelay = reconnectDelay
        self.connectTimeout = connectTimeout
        self.sendBufferSize = sendBufferSize
    }
}
