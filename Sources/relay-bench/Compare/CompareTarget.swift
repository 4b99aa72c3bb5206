/// Where `relay-bench compare` and `sweep` send every variant's bytes (`--sink`).
///
/// - `null`: swift-relay consumes without I/O (the null sink); the syscall baselines write to
///   `/dev/null`, which costs the system call but moves no data.
/// - `file:PATH`: each variant writes its own file `PATH.<variant>` (e.g. `out.log.swift-relay`),
///   created empty with its blocks reserved before the clock starts, removed after each run
///   unless `--keep`.
/// - `loopback`: an in-process receiver on 127.0.0.1 that reads and discards; a new connection
///   per run.
/// - `tcp:HOST:PORT`, `unix:PATH`: an external receiver, which must accept one connection per
///   run and close it after reading to end of stream (e.g. `socat -u TCP-LISTEN:9000,fork,reuseaddr OPEN:/dev/null`).
enum CompareTarget: Sendable, Equatable, CustomStringConvertible {
    case null
    case file(path: String)
    case loopback
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    /// The forms `--sink` accepts for compare and sweep.
    static let usage = "use null, file:PATH, loopback, tcp:HOST:PORT or unix:PATH"

    /// Parses a `--sink` value of compare or sweep.
    ///
    /// - Throws: ``BenchError`` naming the problem and the fix.
    static func parse(_ text: String) throws(BenchError) -> CompareTarget {
        if text == "loopback" || text == "tcp:loopback" { return .loopback }
        switch try SinkSpec.parse(text) {
        case .null:
            return .null
        case .file(let path, let options):
            guard options == FileSinkOptions() else {
                throw BenchError("compare writes every variant the same way, without file options: use file:\(path) (options such as odirect or fsync are for 'relay-bench run')")
            }
            return .file(path: path)
        case .filePerBuffer:
            throw BenchError("compare needs one file per variant: use file:PATH (variant V writes PATH.V), not file-per-buffer:DIR")
        case .tcp(let host, let port, _):
            return .tcp(host: host, port: port)
        case .unix(let path, _):
            return .unix(path: path)
        }
    }

    var description: String {
        switch self {
        case .null: return "null"
        case .file(let path): return "file:\(path)"
        case .loopback: return "loopback"
        case .tcp(let host, let port): return SinkSpec.tcp(host: host, port: port, format: .plain).description
        case .unix(let path): return "unix:\(path)"
        }
    }

    /// Whether the destination is a stream socket.
    var isSocket: Bool {
        switch self {
        case .null, .file: return false
        case .loopback, .tcp, .unix: return true
        }
    }

    /// Checks that the target can be used, once before any run.
    func preflight() throws(BenchError) {
        switch self {
        case .null, .loopback:
            return
        case .file(let path):
            try Preflight.checkWritableFile(path + ".swift-relay", direct: false)
        case .tcp(let host, let port):
            try Preflight.check(.tcp(host: host, port: port, format: .plain))
        case .unix(let path):
            try Preflight.check(.unix(path: path, format: .plain))
        }
    }
}

/// A variant of `relay-bench compare` (`--variants` takes the raw values).
enum CompareVariant: String, CaseIterable, Sendable, Hashable {
    /// swift-relay: reserve + commit into a relay channel, shipped by the io_uring shipper.
    case relay
    /// One `pwrite(2)`/`send(2)` per record.
    case naive
    /// A mutex-protected 64 KiB buffer flushed with `write(2)`/`send(2)`.
    case mutex
    /// Per-producer 1 MiB blocks written by one io_uring thread, unregistered buffers.
    case uring
    /// The same bytes in 1 MiB `write(2)`/`send(2)` calls from one preformatted buffer.
    case raw
    /// The same bytes copied in memory.
    case memcpy

    /// The name shown in tables and used as the file suffix.
    func name(socket: Bool) -> String {
        switch self {
        case .relay: return ComparisonTable.referenceVariant
        case .naive: return socket ? "send-per-record" : "write-per-record"
        case .mutex: return "mutex-buffer-64KiB"
        case .uring: return socket ? "io_uring-send-1MiB" : "io_uring-write-1MiB"
        case .raw: return socket ? "raw-send-1MiB" : "raw-write-1MiB"
        case .memcpy: return "memcpy"
        }
    }

    /// Whether the output holds every record exactly once (so `verify` applies).
    var isVerifiable: Bool {
        switch self {
        case .relay, .naive, .mutex, .uring: return true
        case .raw, .memcpy: return false
        }
    }

    /// The default variants for a target: all of them, except the raw limit for `null`, where
    /// `write(2)` to `/dev/null` returns without reading the data (memcpy is the limit there).
    static func defaults(for target: CompareTarget) -> [CompareVariant] {
        target == .null ? CompareVariant.allCases.filter { $0 != .raw } : CompareVariant.allCases
    }

    /// Parses `--variants relay,naive,...`.
    ///
    /// - Throws: ``BenchError`` for an unknown or repeated name, or a list without swift-relay.
    static func parseList(_ text: String) throws(BenchError) -> [CompareVariant] {
        var variants: [CompareVariant] = []
        let known = CompareVariant.allCases.map(\.rawValue).joined(separator: ",")
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let variant = CompareVariant(rawValue: String(part)) else {
                throw BenchError("unknown variant '\(part)' in --variants: use a comma-separated list of \(known)")
            }
            guard !variants.contains(variant) else {
                throw BenchError("variant '\(part)' appears twice in --variants: list each once")
            }
            variants.append(variant)
        }
        guard variants.contains(.relay) else {
            throw BenchError("--variants must include relay, the reference of every ratio: e.g. --variants relay,\(variants.first?.rawValue ?? "raw")")
        }
        return variants
    }
}
