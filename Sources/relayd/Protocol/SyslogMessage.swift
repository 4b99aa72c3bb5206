/// A parsed syslog message: byte ranges into the frame, no copies, no `String`s.
///
/// Parsing is lenient, like rsyslog: anything that is not RFC 5424 is tried as RFC 3164 (BSD), and whatever does
/// not fit becomes the MSG of an ``Format/unparsed`` message, so no input is ever rejected.
///
/// - Warning: The ranges index ``bytes``, which borrows the frame; use the message only while the frame is valid.
struct SyslogMessage {
    /// Which grammar matched.
    enum Format: Equatable, Sendable {
        /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [SP MSG]`.
        case rfc5424
        /// `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG` and its common variants.
        case rfc3164
        /// No recognisable header (plain text, or a header that failed to parse): everything after an optional
        /// `<PRI>` is MSG.
        case unparsed
    }

    /// A BSD timestamp (`Mmm dd hh:mm:ss`): local time, no year, no zone.
    struct BSDTimestamp: Equatable, Sendable {
        /// 1...12.
        var month: Int
        /// 1...31.
        var day: Int
        /// 0...23.
        var hour: Int
        /// 0...59.
        var minute: Int
        /// 0...60.
        var second: Int
    }

    /// The message's TIMESTAMP.
    enum Timestamp: Equatable, Sendable {
        /// The message carries none (RFC 3164 without a timestamp, unparsed text): encoders use the receive time.
        case absent
        /// RFC 5424 NILVALUE `-`: the sender does not know the time; encoders keep it NIL.
        case nilValue
        /// An RFC 3339 timestamp at this range, copied verbatim.
        case rfc3339(Range<Int>)
        /// A BSD timestamp, converted to RFC 3339 by the encoder (year and offset from the receive time).
        case bsd(BSDTimestamp)
    }

    /// The frame without trailing LF, CR and NUL bytes.
    var bytes: UnsafeRawBufferPointer
    /// Which grammar matched.
    var format: Format
    /// `PRI` (0...191), or `nil` when the frame has none (encoders use 13, user.notice, like rsyslog).
    var priority: Int?
    /// TIMESTAMP.
    var timestamp: Timestamp
    /// HOSTNAME, or `nil` for NIL / absent.
    var hostname: Range<Int>?
    /// APP-NAME (RFC 3164: the TAG without `[PID]` and `:`), or `nil`.
    var appName: Range<Int>?
    /// PROCID (RFC 3164: the PID in `TAG[PID]`), or `nil`.
    var procID: Range<Int>?
    /// MSGID, or `nil`.
    var msgID: Range<Int>?
    /// STRUCTURED-DATA including brackets (`[id k="v"][id2 ...]`), or `nil` for NIL / absent.
    var structuredData: Range<Int>?
    /// MSG (may be empty).
    var message: Range<Int>

    /// The bytes of a field.
    func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: self.bytes[range])
    }

    /// Parses a frame.
    ///
    /// - Parameter frame: One frame from ``SyslogFrameDecoder`` or one datagram.
    /// - Returns: The parsed message; never fails.
    static func parse(_ frame: UnsafeRawBufferPointer) -> SyslogMessage {
        let bytes = UnsafeRawBufferPointer(rebasing: frame[0..<Self.contentLength(frame)])
        var scanner = ByteScanner(bytes: bytes)
        guard let priority = scanner.priority() else {
            return SyslogMessage(bytes: bytes, unparsedFrom: 0, priority: nil)
        }
        let afterPRI = scanner.position
        if scanner.peek() == UInt8(ascii: "1"), scanner.peek(offset: 1) == 0x20 {
            if let message = Self.parse5424(bytes, from: afterPRI + 2, priority: priority) {
                return message
            }
            return SyslogMessage(bytes: bytes, unparsedFrom: afterPRI, priority: priority)
        }
        return Self.parse3164(bytes, from: afterPRI, priority: priority)
    }

    /// Wraps a frame without parsing it (trailing LF, CR and NUL removed; everything is MSG): for routes whose
    /// outputs all pass records through (`format = "raw"`), which never look at the fields.
    ///
    /// - Parameter frame: One frame or datagram.
    /// - Returns: An ``Format/unparsed`` message.
    static func unparsed(_ frame: UnsafeRawBufferPointer) -> SyslogMessage {
        SyslogMessage(bytes: UnsafeRawBufferPointer(rebasing: frame[0..<Self.contentLength(frame)]), unparsedFrom: 0, priority: nil)
    }

    /// The length of `frame` without its trailing LF, CR and NUL bytes; 0 for a frame that holds nothing else
    /// (a CRLF trailer or a blank CRLF line read as an LF frame), which the router skips as empty.
    @inline(__always)
    static func contentLength(_ frame: UnsafeRawBufferPointer) -> Int {
        var length = frame.count
        while length > 0, frame[length - 1] == 0x0A || frame[length - 1] == 0x0D || frame[length - 1] == 0x00 {
            length -= 1
        }
        return length
    }

    private init(bytes: UnsafeRawBufferPointer, unparsedFrom start: Int, priority: Int?) {
        self.bytes = bytes
        self.format = .unparsed
        self.priority = priority
        self.timestamp = .absent
        self.hostname = nil
        self.appName = nil
        self.procID = nil
        self.msgID = nil
        self.structuredData = nil
        self.message = start..<bytes.count
    }

    private static func parse5424(_ bytes: UnsafeRawBufferPointer, from start: Int, priority: Int) -> SyslogMessage? {
        var scanner = ByteScanner(bytes: bytes, position: start)
        guard let timestampToken = scanner.token() else { return nil }
        let timestamp: Timestamp
        if scanner.isNil(timestampToken) {
            timestamp = .nilValue
        } else if RFC3339.isValid(UnsafeRawBufferPointer(rebasing: bytes[timestampToken])) {
            timestamp = .rfc3339(timestampToken)
        } else {
            return nil
        }
        guard scanner.skipSpace(), let hostname = scanner.token(), scanner.skipSpace(),
            let appName = scanner.token(), scanner.skipSpace(),
            let procID = scanner.token(), scanner.skipSpace(),
            let msgID = scanner.token(), scanner.skipSpace()
        else { return nil }
        let structuredData: Range<Int>?
        if scanner.peek() == UInt8(ascii: "-") && (scanner.peek(offset: 1) == nil || scanner.peek(offset: 1) == 0x20) {
            scanner.position += 1
            structuredData = nil
        } else {
            guard let sd = scanner.structuredData() else { return nil }
            structuredData = sd
        }
        let messageStart: Int
        if scanner.atEnd {
            messageStart = bytes.count
        } else {
            guard scanner.skipSpace() else { return nil }
            messageStart = scanner.position
        }
        var message = SyslogMessage(bytes: bytes, unparsedFrom: messageStart, priority: priority)
        message.format = .rfc5424
        message.timestamp = timestamp
        message.hostname = scanner.isNil(hostname) ? nil : hostname
        message.appName = scanner.isNil(appName) ? nil : appName
        message.procID = scanner.isNil(procID) ? nil : procID
        message.msgID = scanner.isNil(msgID) ? nil : msgID
        message.structuredData = structuredData
        return message
    }

    private static func parse3164(_ bytes: UnsafeRawBufferPointer, from start: Int, priority: Int) -> SyslogMessage {
        var scanner = ByteScanner(bytes: bytes, position: start)
        var message = SyslogMessage(bytes: bytes, unparsedFrom: start, priority: priority)
        message.format = .rfc3164

        var hasTimestamp = true
        if let bsd = scanner.bsdTimestamp() {
            message.timestamp = .bsd(bsd)
        } else if let token = scanner.peekToken(), RFC3339.isValid(UnsafeRawBufferPointer(rebasing: bytes[token])) {
            message.timestamp = .rfc3339(token)
            scanner.position = token.upperBound
        } else {
            hasTimestamp = false
        }
        if hasTimestamp {
            // The timestamp must be followed by SP (or end the message).
            guard scanner.atEnd || scanner.skipSpace() else {
                return SyslogMessage(bytes: bytes, unparsedFrom: start, priority: priority)
            }
            // HOSTNAME, unless the next word is already the TAG (local messages from syslog(3) have no host).
            if let token = scanner.peekToken(), token.upperBound < bytes.count, Self.looksLikeHostname(bytes, token) {
                message.hostname = token
                scanner.position = token.upperBound
                _ = scanner.skipSpace()
            }
        }
        // TAG[PID]: — only taken when it ends in ':' so that plain text is not mangled.
        let tagStart = scanner.position
        var cursor = tagStart
        while cursor < bytes.count, bytes[cursor] != 0x20, bytes[cursor] != UInt8(ascii: ":"),
            bytes[cursor] != UInt8(ascii: "[")
        {
            cursor += 1
        }
        let tagEnd = cursor
        var pid: Range<Int>?
        if cursor < bytes.count, bytes[cursor] == UInt8(ascii: "[") {
            var close = cursor + 1
            while close < bytes.count, bytes[close] != UInt8(ascii: "]"), bytes[close] != 0x20 { close += 1 }
            if close < bytes.count, bytes[close] == UInt8(ascii: "]") {
                pid = (cursor + 1)..<close
                cursor = close + 1
            }
        }
        if cursor < bytes.count, bytes[cursor] == UInt8(ascii: ":"), tagEnd > tagStart {
            message.appName = tagStart..<tagEnd
            message.procID = pid.flatMap { $0.isEmpty ? nil : $0 }
            cursor += 1
            if cursor < bytes.count, bytes[cursor] == 0x20 { cursor += 1 }
            message.message = cursor..<bytes.count
        } else {
            message.message = tagStart..<bytes.count
        }
        return message
    }

    /// RFC 3164 host names: letters, digits, `.`, `-`, `_`, and `:` for IPv6; not ending in `:` (that is a TAG).
    private static func looksLikeHostname(_ bytes: UnsafeRawBufferPointer, _ token: Range<Int>) -> Bool {
        guard !token.isEmpty, token.count <= 255, bytes[token.upperBound - 1] != UInt8(ascii: ":") else { return false }
        for index in token {
            let byte = bytes[index]
            let ok =
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "-")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ":")
            if !ok { return false }
        }
        return true
    }
}
