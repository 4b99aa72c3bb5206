import CRelayLinux

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The size of one encoded record, from ``RecordEncoder/measure(_:context:)``.
struct EncodedSize: Equatable, Sendable {
    /// Bytes of the record itself (what an octet-count prefix counts).
    var body: Int
    /// Bytes including framing (`LEN SP` prefix or LF trailer): what to reserve in a channel.
    var total: Int
}

/// Encodes parsed messages for one output: `raw`, `rfc5424` or `jsonl`, framed with RFC 6587 octet counting
/// (`LEN SP MSG`) or an LF trailer.
///
/// Use: ``measure(_:context:)`` → reserve `total` bytes in the output's channel → ``encode(_:context:size:into:)``
/// into the reservation. Both run the same generic code over a ``ByteSink``, so the measured length is exact.
/// No allocation, no `String`, no existentials per record.
///
/// ## Formats
/// - `raw`: the frame as received (trailing CR/LF/NUL removed). Tags are not added.
/// - `rfc5424`: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [SP MSG]`. RFC 3164 timestamps become RFC 3339
///   in the encoder's UTC offset; a missing timestamp becomes the receive time; a missing PRI becomes 13
///   (user.notice); a missing HOSTNAME becomes the context's fallback. Header fields are limited to RFC 5424's
///   lengths (255/48/128/32) and bytes outside `!`...`~` become `_`. Tags are one SD-ELEMENT
///   `[<sd_id> input="…" peer="…" received="…"]` appended to the message's own SD.
/// - `jsonl`: `{"facility":1,"severity":5,"timestamp":…,"hostname":…,"app_name":…,"procid":…,"msgid":…,
///   "structured_data":…,"msg":…,"input":…,"peer":…,"received_at":…}`; absent/NIL fields are omitted; strings
///   are valid UTF-8 (invalid bytes become U+FFFD); a leading BOM in MSG is dropped.
///
/// With LF framing, LF bytes inside `raw`/`rfc5424` records are written as `#012` (rsyslog's control-character
/// escape), so one record stays one line. Octet counting is transparent and writes them unchanged.
struct RecordEncoder: Sendable {
    /// The record format.
    let format: OutputFormat
    /// The framing.
    let framing: OutputFraming
    /// SD-ID of the tag element (`relayd@32473`).
    let sdID: [UInt8]
    /// The zone of RFC 3164 timestamps (local time of the sender, assumed to be relayd's zone).
    let zone: BSDZone

    /// Where the UTC offset of an RFC 3164 (BSD) timestamp comes from.
    enum BSDZone: Sendable {
        /// Always this offset (tests, fixed zones).
        case fixed(Int)
        /// relayd's local zone, at the timestamp's own date: a daemon that runs across a DST change, or a record
        /// stamped in the other half of the year, gets the offset in force at that local time.
        case local(LocalZoneOffsets)
    }

    /// Creates an encoder.
    ///
    /// - Parameters:
    ///   - format: Record format.
    ///   - framing: Output framing.
    ///   - sdID: SD-ID for tags in `rfc5424`.
    ///   - utcOffsetSeconds: A fixed UTC offset for BSD timestamps.
    init(format: OutputFormat, framing: OutputFraming, sdID: String = "relayd@32473", utcOffsetSeconds: Int = 0) {
        self.init(format: format, framing: framing, sdID: sdID, zone: .fixed(utcOffsetSeconds))
    }

    /// Creates an encoder.
    ///
    /// - Parameters:
    ///   - format: Record format.
    ///   - framing: Output framing.
    ///   - sdID: SD-ID for tags in `rfc5424`.
    ///   - zone: The zone of BSD timestamps.
    init(format: OutputFormat, framing: OutputFraming, sdID: String = "relayd@32473", zone: BSDZone) {
        self.format = format
        self.framing = framing
        self.sdID = Array(sdID.utf8)
        self.zone = zone
    }

    /// Creates the encoder for a configured output.
    ///
    /// - Parameters:
    ///   - output: The output.
    ///   - zone: The zone of BSD timestamps (the daemon passes ``BSDZone/local(_:)``).
    init(output: OutputConfig, zone: BSDZone) {
        self.init(format: output.format, framing: output.framing, sdID: output.sdID, zone: zone)
    }

    /// The local zone's UTC offset at `instant` (`localtime_r`'s `tm_gmtoff`).
    static func localUTCOffsetSeconds(at instant: WallClockTimestamp = .now()) -> Int {
        var seconds = time_t(instant.seconds)
        var parts = tm()
        guard localtime_r(&seconds, &parts) != nil else { return 0 }
        return Int(parts.tm_gmtoff)
    }

    // MARK: Public entry points

    /// Measures the encoded record.
    ///
    /// - Parameters:
    ///   - message: The parsed message.
    ///   - context: Receive facts and tags.
    /// - Returns: Body and total (framed) size.
    func measure(_ message: SyslogMessage, context: RecordContext) -> EncodedSize {
        var counter = ByteCounter()
        self.writeBody(message, context: context, into: &counter)
        let body = counter.count
        switch self.framing {
        case .octetCounting:
            return EncodedSize(body: body, total: Self.decimalDigits(body) + 1 + body)
        case .lf:
            return EncodedSize(body: body, total: body + 1)
        }
    }

    /// The exact number of bytes ``encode(_:context:into:)`` writes.
    func encodedLength(of message: SyslogMessage, context: RecordContext) -> Int {
        self.measure(message, context: context).total
    }

    /// Encodes and frames one record into `buffer`.
    ///
    /// - Parameters:
    ///   - message: The parsed message.
    ///   - context: Receive facts and tags.
    ///   - size: The result of ``measure(_:context:)`` for the same message and context.
    ///   - buffer: Destination, at least `size.total` bytes (e.g. a channel reservation).
    /// - Returns: Bytes written (`size.total`), or `nil` when `buffer` is too small (nothing usable was written).
    func encode(
        _ message: SyslogMessage,
        context: RecordContext,
        size: EncodedSize,
        into buffer: UnsafeMutableRawBufferPointer
    ) -> Int? {
        guard buffer.count >= size.total else { return nil }
        var writer = BufferWriter(buffer)
        switch self.framing {
        case .octetCounting:
            writer.appendDecimal(size.body)
            writer.append(0x20)
            self.writeBody(message, context: context, into: &writer)
        case .lf:
            self.writeBody(message, context: context, into: &writer)
            writer.append(0x0A)
        }
        guard !writer.overflowed, writer.count == size.total else { return nil }
        return writer.count
    }

    /// Measures, then encodes: for callers that do not need the size up front.
    func encode(_ message: SyslogMessage, context: RecordContext, into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        self.encode(message, context: context, size: self.measure(message, context: context), into: buffer)
    }

    /// The number of decimal digits of a non-negative `value`.
    static func decimalDigits(_ value: Int) -> Int {
        var digits = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        return digits
    }

    // MARK: Formats

    private func writeBody<Sink: ByteSink>(_ message: SyslogMessage, context: RecordContext, into sink: inout Sink) {
        switch self.format {
        case .raw:
            self.appendText(message.bytes, into: &sink)
        case .rfc5424:
            self.write5424(message, context: context, into: &sink)
        case .jsonl:
            self.writeJSON(message, context: context, into: &sink)
        }
    }

    private func write5424<Sink: ByteSink>(_ message: SyslogMessage, context: RecordContext, into sink: inout Sink) {
        sink.append(UInt8(ascii: "<"))
        sink.appendDecimal(message.priority ?? 13)
        sink.append(">1 ")
        self.writeTimestamp(message, context: context, into: &sink, nilValue: "-")
        sink.append(0x20)
        if let hostname = message.hostname {
            Self.appendHeaderField(message.slice(hostname), maxLength: 255, into: &sink)
        } else {
            Self.appendHeaderField(context.fallbackHostname, maxLength: 255, into: &sink)
        }
        sink.append(0x20)
        Self.appendHeaderField(message.appName.map(message.slice), maxLength: 48, into: &sink)
        sink.append(0x20)
        Self.appendHeaderField(message.procID.map(message.slice), maxLength: 128, into: &sink)
        sink.append(0x20)
        Self.appendHeaderField(message.msgID.map(message.slice), maxLength: 32, into: &sink)
        sink.append(0x20)
        // An SD-ID appears at most once in a message (RFC 5424 §6.3.2): a message that already
        // carries this SD-ID (relayd forwarding to relayd) keeps the first hop's tags.
        let hasTags =
            Self.hasTags(context)
            && !(message.structuredData.map { Self.structuredData(message.slice($0), hasElement: self.sdID) } ?? false)
        if let sd = message.structuredData {
            self.appendText(message.slice(sd), into: &sink)
        } else if !hasTags {
            sink.append(UInt8(ascii: "-"))
        }
        if hasTags {
            sink.append(UInt8(ascii: "["))
            self.sdID.withUnsafeBytes { sink.append($0) }
            if context.tags.inputName, !context.inputName.isEmpty {
                sink.append(" input=\"")
                Self.appendSDParamValue(context.inputName, into: &sink)
                sink.append(UInt8(ascii: "\""))
            }
            if context.tags.peer, !context.peer.isEmpty {
                sink.append(" peer=\"")
                Self.appendSDParamValue(context.peer, into: &sink)
                sink.append(UInt8(ascii: "\""))
            }
            if context.tags.receivedAt {
                sink.append(" received=\"")
                RFC3339.writeUTC(context.receivedAt, into: &sink)
                sink.append(UInt8(ascii: "\""))
            }
            sink.append(UInt8(ascii: "]"))
        }
        if !message.message.isEmpty {
            sink.append(0x20)
            self.appendText(message.slice(message.message), into: &sink)
        }
    }

    private func writeJSON<Sink: ByteSink>(_ message: SyslogMessage, context: RecordContext, into sink: inout Sink) {
        let priority = message.priority ?? 13
        sink.append("{\"facility\":")
        sink.appendDecimal(priority >> 3)
        sink.append(",\"severity\":")
        sink.appendDecimal(priority & 7)
        if message.timestamp != .nilValue {
            sink.append(",\"timestamp\":\"")
            self.writeTimestamp(message, context: context, into: &sink, nilValue: "")
            sink.append(UInt8(ascii: "\""))
        }
        let hostname = message.hostname.map(message.slice) ?? context.fallbackHostname
        if !hostname.isEmpty {
            sink.append(",\"hostname\":")
            JSONEncoding.appendString(hostname, into: &sink)
        }
        if let appName = message.appName {
            sink.append(",\"app_name\":")
            JSONEncoding.appendString(message.slice(appName), into: &sink)
        }
        if let procID = message.procID {
            sink.append(",\"procid\":")
            JSONEncoding.appendString(message.slice(procID), into: &sink)
        }
        if let msgID = message.msgID {
            sink.append(",\"msgid\":")
            JSONEncoding.appendString(message.slice(msgID), into: &sink)
        }
        if let sd = message.structuredData {
            sink.append(",\"structured_data\":")
            JSONEncoding.appendString(message.slice(sd), into: &sink)
        }
        sink.append(",\"msg\":")
        var text = message.slice(message.message)
        if text.count >= 3, text[0] == 0xEF, text[1] == 0xBB, text[2] == 0xBF {
            text = UnsafeRawBufferPointer(rebasing: text[3...])
        }
        JSONEncoding.appendString(text, into: &sink)
        if context.tags.inputName, !context.inputName.isEmpty {
            sink.append(",\"input\":")
            JSONEncoding.appendString(context.inputName, into: &sink)
        }
        if context.tags.peer, !context.peer.isEmpty {
            sink.append(",\"peer\":")
            JSONEncoding.appendString(context.peer, into: &sink)
        }
        if context.tags.receivedAt {
            sink.append(",\"received_at\":\"")
            RFC3339.writeUTC(context.receivedAt, into: &sink)
            sink.append(UInt8(ascii: "\""))
        }
        sink.append(UInt8(ascii: "}"))
    }

    private func writeTimestamp<Sink: ByteSink>(
        _ message: SyslogMessage,
        context: RecordContext,
        into sink: inout Sink,
        nilValue: StaticString
    ) {
        switch message.timestamp {
        case .rfc3339(let range):
            sink.append(message.slice(range))
        case .bsd(let bsd):
            switch self.zone {
            case .fixed(let offset):
                RFC3339.writeBSD(bsd, reference: context.receivedAt, utcOffsetSeconds: offset, into: &sink)
            case .local(let offsets):
                let year = RFC3339.bsdYear(
                    bsd,
                    reference: context.receivedAt,
                    utcOffsetSeconds: offsets.offset(at: context.receivedAt.seconds)
                )
                RFC3339.writeBSD(bsd, year: year, utcOffsetSeconds: offsets.offset(localYear: year, bsd), into: &sink)
            }
        case .absent:
            RFC3339.writeUTC(context.receivedAt, into: &sink)
        case .nilValue:
            sink.append(nilValue)
        }
    }

    // MARK: Field helpers

    /// Whether well-formed structured data `sd` (`[SD-ID params]…`, as the parser accepts it) has an
    /// element with SD-ID `id`. Skips parameter values, quoted, with their escapes.
    static func structuredData(_ sd: UnsafeRawBufferPointer, hasElement id: [UInt8]) -> Bool {
        var i = 0
        while i < sd.count, sd[i] == UInt8(ascii: "[") {
            i += 1
            let start = i
            while i < sd.count, sd[i] != 0x20, sd[i] != UInt8(ascii: "]") { i += 1 }
            if i - start == id.count, id.withUnsafeBytes({ $0.elementsEqual(UnsafeRawBufferPointer(rebasing: sd[start..<i])) }) {
                return true
            }
            var quoted = false
            while i < sd.count {
                let c = sd[i]
                if quoted {
                    if c == UInt8(ascii: "\\") {
                        i += 2
                        continue
                    }
                    if c == UInt8(ascii: "\"") { quoted = false }
                } else if c == UInt8(ascii: "\"") {
                    quoted = true
                } else if c == UInt8(ascii: "]") {
                    break
                }
                i += 1
            }
            i += 1  // past "]"
        }
        return false
    }

    private static func hasTags(_ context: RecordContext) -> Bool {
        (context.tags.inputName && !context.inputName.isEmpty) || (context.tags.peer && !context.peer.isEmpty)
            || context.tags.receivedAt
    }

    /// Message text: unchanged with octet counting; with LF framing every LF becomes `#012`.
    private func appendText<Sink: ByteSink>(_ bytes: UnsafeRawBufferPointer, into sink: inout Sink) {
        guard self.framing == .lf, let base = bytes.baseAddress, !bytes.isEmpty else {
            sink.append(bytes)
            return
        }
        var start = 0
        while start < bytes.count, let hit = memchr(base + start, 0x0A, bytes.count - start) {
            let index = UnsafeRawPointer(hit) - base
            sink.append(UnsafeRawBufferPointer(start: base + start, count: index - start))
            sink.append("#012")
            start = index + 1
        }
        sink.append(UnsafeRawBufferPointer(start: base + start, count: bytes.count - start))
    }

    /// An RFC 5424 header field: `-` when absent or empty, else at most `maxLength` bytes with every byte outside
    /// PRINTUSASCII (`!`...`~`) replaced by `_`.
    private static func appendHeaderField<Sink: ByteSink>(
        _ bytes: UnsafeRawBufferPointer?,
        maxLength: Int,
        into sink: inout Sink
    ) {
        guard let bytes, !bytes.isEmpty else {
            sink.append(UInt8(ascii: "-"))
            return
        }
        for index in 0..<min(bytes.count, maxLength) {
            let byte = bytes[index]
            sink.append(byte >= 33 && byte <= 126 ? byte : UInt8(ascii: "_"))
        }
    }

    /// An SD PARAM-VALUE: `"`, `\` and `]` are escaped with `\`; control bytes become space.
    private static func appendSDParamValue<Sink: ByteSink>(_ bytes: UnsafeRawBufferPointer, into sink: inout Sink) {
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "]"):
                sink.append(UInt8(ascii: "\\"))
                sink.append(byte)
            case 0..<0x20:
                sink.append(0x20)
            default:
                sink.append(byte)
            }
        }
    }
}
