import CRelayLinux
import Glibc
import RelayShipper

/// Turns `--sink` specs into shipper sinks, checks the combinations the shipper cannot do, and
/// prepares output files.
///
/// Output files are started fresh: `file:PATH` is truncated and `file-per-buffer:DIR` is created
/// if needed and its `relay-bench.N` files truncated, because the shipper appends to what it
/// finds and `verify` must see this run's records only.
enum RunSinks {
    /// The file name prefix of `file-per-buffer:DIR` sinks: buffer `i` writes `DIR/relay-bench.i`.
    static let perBufferPrefix = "relay-bench."

    /// Checks what the shipper does not support and what would corrupt the output.
    ///
    /// - Throws: ``BenchError`` naming the sink and the fix.
    static func validate(_ sinks: [SinkSpec]) throws(BenchError) {
        guard !sinks.isEmpty else {
            throw BenchError("no sink given: add --sink null, --sink file:PATH, --sink tcp:HOST:PORT, ...")
        }
        guard sinks.count <= 64 else {
            throw BenchError("\(sinks.count) sinks given, the shipper fans out to at most 64: use fewer --sink options")
        }
        var paths: Set<String> = []
        for sink in sinks {
            switch sink {
            case .null:
                break
            case .file(let path, let options), .filePerBuffer(let path, let options):
                if options.direct && options.format != .packets {
                    throw BenchError("sink '\(sink)' asks for odirect with plain records, which are not block aligned: add format=packets or drop odirect")
                }
                let key = RunSinks.normalize(path)
                guard paths.insert(key).inserted else {
                    throw BenchError("sink path '\(path)' is used by two sinks, whose output would interleave: give each --sink its own path")
                }
            case .tcp(_, _, let format), .unix(_, let format):
                if format != .plain {
                    throw BenchError("sink '\(sink)' asks for format=\(format.rawValue), but socket sinks send plain records: drop the format option")
                }
            }
        }
    }

    /// The shipper sink for `spec`.
    static func relaySink(for spec: SinkSpec) -> RelaySink {
        switch spec {
        case .null:
            return .discard
        case .file(let path, let options):
            return .file(RunSinks.fileConfiguration(path: path, layout: .perChannel, options: options))
        case .filePerBuffer(let directory, let options):
            let prefix = (directory.hasSuffix("/") ? directory : directory + "/") + RunSinks.perBufferPrefix
            return .file(RunSinks.fileConfiguration(path: prefix, layout: .perBuffer, options: options))
        case .tcp(let host, let port, _):
            return .socket(RelaySocketSinkConfiguration(endpoint: .tcp(host: host, port: Int(port))))
        case .unix(let path, _):
            return .socket(RelaySocketSinkConfiguration(endpoint: .unix(path: path)))
        }
    }

    private static func fileConfiguration(path: String, layout: RelayFileSinkConfiguration.Layout, options: FileSinkOptions) -> RelayFileSinkConfiguration {
        let fsync: RelayFileSinkConfiguration.FsyncPolicy
        switch options.fsync {
        case .never: fsync = .none
        case .interval(let interval): fsync = .interval(interval)
        case .bytes(let bytes): fsync = .everyBytes(Int(clamping: bytes))
        }
        let writeback: RelayFileSinkConfiguration.Writeback
        switch options.writeback {
        case .default: writeback = .default
        case .kernel: writeback = .kernel
        case .bytes(let bytes): writeback = .everyBytes(Int(clamping: bytes))
        }
        var rotation: RelayFileSinkConfiguration.Rotation?
        if let size = options.rotateSize {
            rotation = RelayFileSinkConfiguration.Rotation(maxBytes: Int(clamping: size), keep: options.rotateCount ?? 5)
        }
        return RelayFileSinkConfiguration(
            path: path,
            layout: layout,
            format: options.format == .packets ? .packets : .plain,
            directIO: options.direct,
            fsync: fsync,
            writeback: writeback,
            rotation: rotation,
            fixedBufferWrites: options.fixedWrites ? .always : .automatic
        )
    }

    /// The files a sink writes for a channel with `buffers` buffers (rotated files not included).
    static func outputFiles(of spec: SinkSpec, buffers: Int) -> [String] {
        switch spec {
        case .file(let path, _):
            return [path]
        case .filePerBuffer(let directory, _):
            let prefix = (directory.hasSuffix("/") ? directory : directory + "/") + RunSinks.perBufferPrefix
            return (0..<buffers).map { "\(prefix)\($0)" }
        case .null, .tcp, .unix:
            return []
        }
    }

    /// Whether `verify` can read what the sink writes: plain-format files.
    static func isVerifiable(_ spec: SinkSpec) -> Bool {
        switch spec {
        case .file(_, let options), .filePerBuffer(_, let options):
            return options.format == .plain && options.rotateSize == nil
        case .null, .tcp, .unix:
            return false
        }
    }

    /// Starts every file output empty (creating `file-per-buffer` directories), optionally with
    /// `preallocate` bytes reserved per file (`fallocate` with `FALLOC_FL_KEEP_SIZE`, so the size
    /// stays 0 and the shipper still starts at offset 0).
    ///
    /// - Throws: ``BenchError`` when a file or directory cannot be created.
    static func prepareOutputs(_ sinks: [SinkSpec], buffers: Int, preallocate: UInt64 = 0) throws(BenchError) {
        for sink in sinks {
            if case .filePerBuffer(let directory, _) = sink {
                if mkdir(directory, 0o755) != 0 && errno != EEXIST {
                    throw BenchError.system("cannot create directory '\(directory)'", errno: errno, fix: "create it with mkdir -p or pick another path")
                }
            }
            let files = RunSinks.outputFiles(of: sink, buffers: buffers)
            for path in files {
                try RunSinks.truncate(path, preallocate: files.isEmpty ? 0 : preallocate / UInt64(files.count))
            }
        }
    }

    /// Creates or truncates `path`, reserving `preallocate` bytes without changing its size.
    static func truncate(_ path: String, preallocate: UInt64) throws(BenchError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw BenchError.system("cannot create '\(path)'", errno: errno, fix: "pick a writable path")
        }
        defer { POSIXIO.closeQuietly(fd) }
        if preallocate > 0 {
            let rc = CRelayLinux_fallocate(fd, 1, 0, Int64(clamping: preallocate))
            if rc == -ENOSPC {
                throw BenchError("not enough space for \(preallocate) bytes at '\(path)': free space or lower --records")
            }
            // Other failures (a file system without fallocate) only cost the optimization.
        }
    }

    /// `path` without a trailing slash or `./` prefix, to spot two sinks on one path.
    static func normalize(_ path: String) -> String {
        var text = Substring(path)
        while text.hasPrefix("./") { text = text.dropFirst(2) }
        while text.count > 1 && text.hasSuffix("/") { text = text.dropLast() }
        return String(text)
    }
}
