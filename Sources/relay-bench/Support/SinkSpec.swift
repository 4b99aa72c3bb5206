import ArgumentParser
import RelayShipper

/// A `--sink SPEC` destination of `relay-bench run`; the option repeats for fan-out.
///
/// Grammar (options follow the address, comma-separated, so paths cannot contain commas):
///
///     null
///     file:PATH[,odirect][,fsync=DURATION|SIZE][,writeback=kernel|SIZE][,format=plain|packets][,rotate-size=SIZE][,rotate-count=N][,fixed-writes]
///     file-per-buffer:DIR[,same options as file]
///     tcp:HOST:PORT[,format=plain|packets]      HOST may be a name, IPv4, or [IPv6]
///     unix:PATH[,format=plain|packets]
///
/// DURATION is a number with `ns`, `us`, `ms`, `s` or `m` (`fsync=100ms`: fsync every 100 ms);
/// SIZE is a number with `B`, `K`/`KiB`, `M`/`MiB` or `G`/`GiB` (`fsync=64MiB`: fsync after
/// every 64 MiB written). A bare number is bytes.
///
/// `writeback=SIZE` asks the kernel to start writing each SIZE (at least 64 KiB) of completed
/// writes to the disk (`writeback=8MiB`), `writeback=kernel` leaves writeback to the kernel;
/// without the option the library's default applies (off: the kernel decides). O_DIRECT files have no dirty
/// pages and ignore it.
enum SinkSpec: Hashable, Sendable, CustomStringConvertible, ExpressibleByArgument {
    /// Discards sub-buffers after accounting for them.
    case null
    /// One file for all buffers.
    case file(path: String, options: FileSinkOptions)
    /// One file per relay buffer in a directory.
    case filePerBuffer(directory: String, options: FileSinkOptions)
    /// A TCP connection.
    case tcp(host: String, port: UInt16, format: SinkFormat)
    /// A Unix stream socket.
    case unix(path: String, format: SinkFormat)

    /// The one-line help listing every accepted form.
    static let usage = "use null, file:PATH, file-per-buffer:DIR, tcp:HOST:PORT or unix:PATH"

    /// Parses `--sink` text; ArgumentParser's hook (prefer ``parse(_:)`` for the precise message).
    init?(argument: String) {
        guard let spec = try? SinkSpec.parse(argument) else { return nil }
        self = spec
    }

    /// The text that parses back to this spec (options in canonical order).
    var description: String {
        switch self {
        case .null:
            return "null"
        case .file(let path, let options):
            return "file:" + path + options.suffix
        case .filePerBuffer(let directory, let options):
            return "file-per-buffer:" + directory + options.suffix
        case .tcp(let host, let port, let format):
            let shownHost = host.contains(":") ? "[\(host)]" : host
            return "tcp:\(shownHost):\(port)" + (format == .plain ? "" : ",format=\(format.rawValue)")
        case .unix(let path, let format):
            return "unix:" + path + (format == .plain ? "" : ",format=\(format.rawValue)")
        }
    }

    /// The sink kind as a word: `null`, `file`, `file-per-buffer`, `tcp`, `unix`.
    var kind: String {
        switch self {
        case .null: return "null"
        case .file: return "file"
        case .filePerBuffer: return "file-per-buffer"
        case .tcp: return "tcp"
        case .unix: return "unix"
        }
    }

    /// Parses a `--sink` value.
    ///
    /// - Parameter text: For example `file:/var/tmp/out.log,odirect,fsync=100ms`.
    /// - Returns: The spec.
    /// - Throws: ``BenchError`` with one line naming the problem and the fix.
    static func parse(_ text: String) throws(BenchError) -> SinkSpec {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let head = parts[0]
        let optionTexts = Array(parts.dropFirst())
        guard let colon = head.firstIndex(of: ":") else {
            guard head == "null" else {
                switch head {
                case "file": throw BenchError("sink '\(text)' has no path: use file:PATH")
                case "file-per-buffer": throw BenchError("sink '\(text)' has no directory: use file-per-buffer:DIR")
                case "tcp": throw BenchError("sink '\(text)' has no address: use tcp:HOST:PORT, e.g. tcp:127.0.0.1:9000")
                case "unix": throw BenchError("sink '\(text)' has no socket path: use unix:PATH")
                default: throw BenchError("unknown sink '\(text)': \(SinkSpec.usage)")
                }
            }
            guard optionTexts.isEmpty else {
                throw BenchError("sink 'null' takes no options, got '\(text)': use --sink null")
            }
            return .null
        }
        let kind = String(head[..<colon])
        let address = String(head[head.index(after: colon)...])
        switch kind {
        case "file", "file-per-buffer":
            guard !address.isEmpty else {
                throw BenchError("sink '\(text)' has no path: use \(kind):\(kind == "file" ? "PATH" : "DIR")")
            }
            let options = try FileSinkOptions.parse(optionTexts, sink: text)
            return kind == "file" ? .file(path: address, options: options) : .filePerBuffer(directory: address, options: options)
        case "tcp":
            let (host, port) = try SinkSpec.parseHostPort(address, sink: text)
            return .tcp(host: host, port: port, format: try SinkSpec.parseStreamOptions(optionTexts, sink: text))
        case "unix":
            guard !address.isEmpty else {
                throw BenchError("sink '\(text)' has no socket path: use unix:PATH")
            }
            guard address.utf8.count < 108 else {
                throw BenchError("unix socket path in '\(text)' is \(address.utf8.count) bytes, the limit is 107: use a shorter path")
            }
            return .unix(path: address, format: try SinkSpec.parseStreamOptions(optionTexts, sink: text))
        default:
            throw BenchError("unknown sink '\(text)': \(SinkSpec.usage)")
        }
    }

    private static func parseHostPort(_ address: String, sink: String) throws(BenchError) -> (String, UInt16) {
        let host: String
        let portText: String
        if address.hasPrefix("[") {
            guard let close = address.firstIndex(of: "]"),
                address[address.index(after: close)...].hasPrefix(":")
            else {
                throw BenchError("sink '\(sink)' has a malformed IPv6 address: use tcp:[ADDRESS]:PORT, e.g. tcp:[::1]:9000")
            }
            host = String(address[address.index(after: address.startIndex)..<close])
            portText = String(address[address.index(close, offsetBy: 2)...])
        } else {
            guard let colon = address.lastIndex(of: ":") else {
                throw BenchError("sink '\(sink)' has no port: use tcp:HOST:PORT, e.g. tcp:127.0.0.1:9000")
            }
            host = String(address[..<colon])
            portText = String(address[address.index(after: colon)...])
            guard !host.contains(":") else {
                throw BenchError("sink '\(sink)' looks like a bare IPv6 address: put it in brackets, e.g. tcp:[::1]:9000")
            }
        }
        guard !host.isEmpty else {
            throw BenchError("sink '\(sink)' has no host: use tcp:HOST:PORT, e.g. tcp:127.0.0.1:9000")
        }
        guard let port = UInt16(portText), port > 0 else {
            throw BenchError("sink '\(sink)' has an invalid port '\(portText)': use a port number from 1 to 65535")
        }
        return (host, port)
    }

    private static func parseStreamOptions(_ options: [String], sink: String) throws(BenchError) -> SinkFormat {
        var format = SinkFormat.plain
        for option in options {
            let (key, value) = SinkSpec.splitOption(option)
            guard key == "format", let value else {
                throw BenchError("unknown option '\(option)' in sink '\(sink)': socket sinks accept only format=plain|packets")
            }
            format = try SinkFormat.parse(value, sink: sink)
        }
        return format
    }

    /// Splits `key=value` into its parts; a bare flag has no value.
    static func splitOption(_ option: String) -> (String, String?) {
        guard let equals = option.firstIndex(of: "=") else { return (option, nil) }
        return (String(option[..<equals]), String(option[option.index(after: equals)...]))
    }
}

/// How a sink frames what it ships.
enum SinkFormat: String, Hashable, Sendable, CaseIterable {
    /// Record bytes only, as written by producers (what `verify` reads).
    case plain
    /// Each sub-buffer with its packet header (relay's packet mode).
    case packets

    /// Parses a `format=` value of sink `sink`.
    static func parse(_ value: String, sink: String) throws(BenchError) -> SinkFormat {
        guard let format = SinkFormat(rawValue: value) else {
            throw BenchError("unknown format '\(value)' in sink '\(sink)': use format=plain or format=packets")
        }
        return format
    }
}

/// When a file sink calls `fsync`.
enum FsyncPolicy: Hashable, Sendable {
    /// Never (the default); the kernel writes back on its own.
    case never
    /// At most this often.
    case interval(Duration)
    /// After every this many bytes.
    case bytes(UInt64)
}

/// When a file sink asks the kernel to start writeback of what it wrote (the shipper's
/// `RelayFileSinkConfiguration.Writeback`).
enum WritebackPolicy: Hashable, Sendable {
    /// The library's default (``RelayFileSinkConfiguration/Writeback/default``: left to the kernel).
    case `default`
    /// Leave writeback to the kernel.
    case kernel
    /// After every this many bytes of completed writes, at least ``smallestChunk``.
    case bytes(UInt64)

    /// The smallest `writeback=SIZE` the shipper accepts (it refuses smaller chunks at start).
    static let smallestChunk = UInt64(RelayFileSinkConfiguration.Writeback.smallestChunk)
}

/// The options of `file:` and `file-per-buffer:` sinks.
struct FileSinkOptions: Hashable, Sendable {
    /// Open with `O_DIRECT` (needs aligned sub-buffers and a file system that supports it).
    var direct = false
    /// When to `fsync`.
    var fsync = FsyncPolicy.never
    /// When to start writeback.
    var writeback = WritebackPolicy.default
    /// What to write.
    var format = SinkFormat.plain
    /// Rotate to a new file after this many bytes.
    var rotateSize: UInt64?
    /// How many rotated files to keep.
    var rotateCount: Int?
    /// Buffered writes from the registered regions too (`WRITE_FIXED`), not only O_DIRECT ones.
    var fixedWrites = false

    /// Creates default options: buffered, no fsync, the shipper's writeback default, plain, no rotation,
    /// `WRITE_FIXED` only for O_DIRECT.
    init(
        direct: Bool = false, fsync: FsyncPolicy = .never, writeback: WritebackPolicy = .default, format: SinkFormat = .plain,
        rotateSize: UInt64? = nil, rotateCount: Int? = nil, fixedWrites: Bool = false
    ) {
        self.direct = direct
        self.fsync = fsync
        self.writeback = writeback
        self.format = format
        self.rotateSize = rotateSize
        self.rotateCount = rotateCount
        self.fixedWrites = fixedWrites
    }

    /// `,opt,...` in canonical order, empty for the defaults.
    var suffix: String {
        var parts: [String] = []
        if self.direct { parts.append("odirect") }
        switch self.fsync {
        case .never: break
        case .interval(let duration): parts.append("fsync=\(SizeParser.formatDuration(duration))")
        case .bytes(let count): parts.append("fsync=\(SizeParser.formatSize(count))")
        }
        switch self.writeback {
        case .default: break
        case .kernel: parts.append("writeback=kernel")
        case .bytes(let count): parts.append("writeback=\(SizeParser.formatSize(count))")
        }
        if self.format != .plain { parts.append("format=\(self.format.rawValue)") }
        if let size = self.rotateSize { parts.append("rotate-size=\(SizeParser.formatSize(size))") }
        if let count = self.rotateCount { parts.append("rotate-count=\(count)") }
        if self.fixedWrites { parts.append("fixed-writes") }
        return parts.isEmpty ? "" : "," + parts.joined(separator: ",")
    }

    /// Parses the comma-separated options of file sink `sink`.
    static func parse(_ options: [String], sink: String) throws(BenchError) -> FileSinkOptions {
        var result = FileSinkOptions()
        for option in options {
            let (key, value) = SinkSpec.splitOption(option)
            switch (key, value) {
            case ("odirect", nil):
                result.direct = true
            case ("fixed-writes", nil):
                result.fixedWrites = true
            case ("fsync", let value?):
                if let duration = SizeParser.parseDuration(value) {
                    guard duration > .zero else {
                        throw BenchError("fsync interval '\(value)' in sink '\(sink)' must be positive: e.g. fsync=100ms")
                    }
                    result.fsync = .interval(duration)
                } else if let bytes = SizeParser.parseSize(value) {
                    guard bytes > 0 else {
                        throw BenchError("fsync size '\(value)' in sink '\(sink)' must be positive: e.g. fsync=64MiB")
                    }
                    result.fsync = .bytes(bytes)
                } else {
                    throw BenchError("invalid fsync value '\(value)' in sink '\(sink)': use a duration like fsync=100ms or a size like fsync=64MiB")
                }
            case ("writeback", "kernel"):
                result.writeback = .kernel
            case ("writeback", let value?):
                guard let bytes = SizeParser.parseSize(value) else {
                    throw BenchError("invalid writeback value '\(value)' in sink '\(sink)': use a size like writeback=8MiB (64KiB or more) or writeback=kernel")
                }
                guard bytes >= WritebackPolicy.smallestChunk else {
                    throw BenchError(
                        "writeback size '\(value)' in sink '\(sink)' is under 64KiB, too often to ask the kernel: use writeback=64KiB or more (e.g. writeback=8MiB), or writeback=kernel"
                    )
                }
                result.writeback = .bytes(bytes)
            case ("format", let value?):
                result.format = try SinkFormat.parse(value, sink: sink)
            case ("rotate-size", let value?):
                guard let bytes = SizeParser.parseSize(value), bytes > 0 else {
                    throw BenchError("invalid rotate-size '\(value)' in sink '\(sink)': use a size like rotate-size=1GiB")
                }
                result.rotateSize = bytes
            case ("rotate-count", let value?):
                guard let count = Int(value), count >= 1 else {
                    throw BenchError("invalid rotate-count '\(value)' in sink '\(sink)': use a whole number of files, 1 or more")
                }
                result.rotateCount = count
            default:
                throw BenchError(
                    "unknown option '\(option)' in sink '\(sink)': file sinks accept odirect, fsync=DURATION|SIZE, writeback=kernel|SIZE, format=plain|packets, rotate-size=SIZE, rotate-count=N, fixed-writes"
                )
            }
        }
        if result.rotateCount != nil && result.rotateSize == nil {
            throw BenchError("rotate-count in sink '\(sink)' needs a rotate-size: add e.g. rotate-size=1GiB")
        }
        return result
    }
}

/// Parses and prints the sizes and durations of sink options and CLI flags.
enum SizeParser {
    /// Parses `4096`, `64K`, `64KiB`, `1M`, `1MiB`, `2G`, `2GiB`, `512B` (binary multiples).
    static func parseSize(_ text: String) -> UInt64? {
        let units: [(String, UInt64)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
            ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40),
            ("k", 1 << 10), ("B", 1),
        ]
        for (suffix, multiplier) in units where text.hasSuffix(suffix) {
            guard let number = UInt64(text.dropLast(suffix.count)) else { return nil }
            let (product, overflow) = number.multipliedReportingOverflow(by: multiplier)
            return overflow ? nil : product
        }
        return UInt64(text)
    }

    /// Parses `250us`, `100ms`, `2s`, `1m`, `500ns`; a bare number is not a duration.
    static func parseDuration(_ text: String) -> Duration? {
        let units: [(String, Int64)] = [("ns", 1), ("us", 1_000), ("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000)]
        for (suffix, nanoseconds) in units where text.hasSuffix(suffix) {
            guard let number = Int64(text.dropLast(suffix.count)), number >= 0 else { return nil }
            let (product, overflow) = number.multipliedReportingOverflow(by: nanoseconds)
            return overflow ? nil : .nanoseconds(product)
        }
        return nil
    }

    /// Prints a byte count in the largest exact binary unit (`64MiB`, `4096` → `4KiB`, `1000`).
    static func formatSize(_ bytes: UInt64) -> String {
        for (suffix, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] as [(String, UInt64)] {
            if bytes >= (1 << shift) && bytes & ((1 << shift) - 1) == 0 { return "\(bytes >> shift)\(suffix)" }
        }
        return "\(bytes)"
    }

    /// Prints a duration in the largest exact unit (`100ms`, `2s`).
    static func formatDuration(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        for (suffix, unit) in [("m", Int64(60_000_000_000)), ("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)] {
            if nanoseconds >= unit && nanoseconds % unit == 0 { return "\(nanoseconds / unit)\(suffix)" }
        }
        return "\(nanoseconds)ns"
    }
}
