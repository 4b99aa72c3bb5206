import Foundation
import RelayTestSupport
import Testing

@testable import relayd

#if canImport(Glibc)
import Glibc
#endif

/// Field values of a parsed message, copied out as strings.
struct ParsedFields: Equatable, CustomStringConvertible {
    var format: SyslogMessage.Format
    var priority: Int?
    var timestamp: String?
    var hostname: String?
    var appName: String?
    var procID: String?
    var msgID: String?
    var structuredData: String?
    var message: String

    init(
        _ format: SyslogMessage.Format,
        priority: Int?,
        timestamp: String? = nil,
        hostname: String? = nil,
        appName: String? = nil,
        procID: String? = nil,
        msgID: String? = nil,
        structuredData: String? = nil,
        message: String
    ) {
        self.format = format
        self.priority = priority
        self.timestamp = timestamp
        self.hostname = hostname
        self.appName = appName
        self.procID = procID
        self.msgID = msgID
        self.structuredData = structuredData
        self.message = message
    }

    init(_ message: SyslogMessage) {
        func text(_ range: Range<Int>?) -> String? { range.map { String(decoding: message.slice($0), as: UTF8.self) } }
        self.format = message.format
        self.priority = message.priority
        switch message.timestamp {
        case .absent: self.timestamp = nil
        case .nilValue: self.timestamp = "-"
        case .rfc3339(let range): self.timestamp = text(range)
        case .bsd(let bsd): self.timestamp = "bsd \(bsd.month)/\(bsd.day) \(bsd.hour):\(bsd.minute):\(bsd.second)"
        }
        self.hostname = text(message.hostname)
        self.appName = text(message.appName)
        self.procID = text(message.procID)
        self.msgID = text(message.msgID)
        self.structuredData = text(message.structuredData)
        self.message = text(message.message) ?? ""
    }

    var description: String {
        "\(self.format) pri=\(self.priority.map(String.init) ?? "nil") ts=\(self.timestamp ?? "nil") host=\(self.hostname ?? "nil") "
            + "app=\(self.appName ?? "nil") pid=\(self.procID ?? "nil") msgid=\(self.msgID ?? "nil") sd=\(self.structuredData ?? "nil") "
            + "msg=\(self.message.debugDescription)"
    }
}

func parseFields(_ bytes: [UInt8]) -> ParsedFields {
    bytes.withUnsafeBytes { ParsedFields(SyslogMessage.parse($0)) }
}

func parseFields(_ text: String) -> ParsedFields { parseFields(Array(text.utf8)) }

/// Encodes `frame` with `encoder`, checking that `measure` is exact and that a one-byte-smaller buffer is refused
/// without writing past its end.
func encodeChecked(
    _ frame: [UInt8],
    _ encoder: RecordEncoder,
    input: String = "in",
    peer: String = "",
    receivedAt: WallClockTimestamp = WallClockTimestamp(seconds: 1_764_259_200, nanoseconds: 123_456_789),
    fallbackHostname: String = "relayhost",
    tags: TagOptions = TagOptions(),
    sourceLocation: SourceLocation = #_sourceLocation
) -> String {
    let inputBytes = Array(input.utf8)
    let peerBytes = Array(peer.utf8)
    let hostBytes = Array(fallbackHostname.utf8)
    return frame.withUnsafeBytes { frameBuffer in
        inputBytes.withUnsafeBytes { inputBuffer in
            peerBytes.withUnsafeBytes { peerBuffer in
                hostBytes.withUnsafeBytes { hostBuffer in
                    let message = SyslogMessage.parse(frameBuffer)
                    let context = RecordContext(
                        inputName: inputBuffer,
                        peer: peerBuffer,
                        receivedAt: receivedAt,
                        fallbackHostname: hostBuffer,
                        tags: tags
                    )
                    let size = encoder.measure(message, context: context)
                    let canary: UInt8 = 0xA5
                    var output = [UInt8](repeating: canary, count: size.total + 8)
                    let written = output.withUnsafeMutableBytes {
                        encoder.encode(
                            message,
                            context: context,
                            size: size,
                            into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<size.total])
                        )
                    }
                    #expect(
                        written == size.total,
                        "measured length must equal bytes written",
                        sourceLocation: sourceLocation
                    )
                    #expect(output[size.total...].allSatisfy { $0 == canary }, sourceLocation: sourceLocation)
                    var small = [UInt8](repeating: canary, count: size.total + 8)
                    let refused = small.withUnsafeMutableBytes {
                        encoder.encode(
                            message,
                            context: context,
                            into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<(size.total - 1)])
                        )
                    }
                    #expect(refused == nil, sourceLocation: sourceLocation)
                    #expect(small[(size.total - 1)...].allSatisfy { $0 == canary }, sourceLocation: sourceLocation)
                    if encoder.framing == .octetCounting {
                        let space = output.firstIndex(of: 0x20)!
                        #expect(
                            Int(String(decoding: output[0..<space], as: UTF8.self)) == size.body,
                            sourceLocation: sourceLocation
                        )
                        #expect(size.total - space - 1 == size.body, sourceLocation: sourceLocation)
                    }
                    return String(decoding: output[0..<(written ?? 0)], as: UTF8.self)
                }
            }
        }
    }
}

@Suite("Syslog parsing")
struct SyslogParsingTests {
    @Test func rfc5424Examples() {
        #expect(
            parseFields(
                "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed for lonvick on /dev/pts/8"
            )
                == ParsedFields(
                    .rfc5424,
                    priority: 34,
                    timestamp: "2003-10-11T22:14:15.003Z",
                    hostname: "mymachine.example.com",
                    appName: "su",
                    msgID: "ID47",
                    message: "'su root' failed for lonvick on /dev/pts/8"
                )
        )
        #expect(
            parseFields(
                #"<165>1 2003-10-11T22:14:15.003000-07:00 mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#
            )
                == ParsedFields(
                    .rfc5424,
                    priority: 165,
                    timestamp: "2003-10-11T22:14:15.003000-07:00",
                    hostname: "mymachine.example.com",
                    appName: "evntslog",
                    msgID: "ID47",
                    structuredData:
                        #"[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#,
                    message: ""
                )
        )
        #expect(
            parseFields(#"<13>1 - - - - - [a@1 x="y\]z \"q\""] msg"#)
                == ParsedFields(
                    .rfc5424,
                    priority: 13,
                    timestamp: "-",
                    structuredData: #"[a@1 x="y\]z \"q\""]"#,
                    message: "msg"
                )
        )
        // Trailing LF / CR / NUL are not part of the message.
        #expect(parseFields("<13>1 - h a p m - text\r\n\u{0}").message == "text")
    }

    @Test func rfc3164Examples() {
        #expect(
            parseFields("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8")
                == ParsedFields(
                    .rfc3164,
                    priority: 34,
                    timestamp: "bsd 10/11 22:14:15",
                    hostname: "mymachine",
                    appName: "su",
                    message: "'su root' failed for lonvick on /dev/pts/8"
                )
        )
        // syslog(3) to /dev/log: no hostname.
        #expect(
            parseFields("<30>Nov  7 01:02:03 sshd[4711]: Accepted publickey")
                == ParsedFields(
                    .rfc3164,
                    priority: 30,
                    timestamp: "bsd 11/7 1:2:3",
                    appName: "sshd",
                    procID: "4711",
                    message: "Accepted publickey"
                )
        )
        #expect(
            parseFields("<13>Nov 27 16:09:26 plain: default")
                == ParsedFields(
                    .rfc3164,
                    priority: 13,
                    timestamp: "bsd 11/27 16:9:26",
                    appName: "plain",
                    message: "default"
                )
        )
        // RFC 3339 timestamp in a BSD-style message.
        #expect(
            parseFields("<13>2025-01-02T03:04:05Z host app[1]: x")
                == ParsedFields(
                    .rfc3164,
                    priority: 13,
                    timestamp: "2025-01-02T03:04:05Z",
                    hostname: "host",
                    appName: "app",
                    procID: "1",
                    message: "x"
                )
        )
        // No TAG: the text is left alone.
        #expect(
            parseFields("<13>Nov 27 16:09:26 host just some text")
                == ParsedFields(
                    .rfc3164,
                    priority: 13,
                    timestamp: "bsd 11/27 16:9:26",
                    hostname: "host",
                    message: "just some text"
                )
        )
        // No timestamp at all.
        #expect(parseFields("<13>app: hello") == ParsedFields(.rfc3164, priority: 13, appName: "app", message: "hello"))
    }

    @Test("a BSD timestamp with an unpadded one-digit day (\"Nov 7 09:05:01\", as many devices send) is a timestamp, as in rsyslog")
    func rfc3164UnpaddedDay() {
        #expect(
            parseFields("<13>Nov 7 09:05:01 host app[12]: one-digit day")
                == ParsedFields(
                    .rfc3164,
                    priority: 13,
                    timestamp: "bsd 11/7 9:5:1",
                    hostname: "host",
                    appName: "app",
                    procID: "12",
                    message: "one-digit day"
                )
        )
        #expect(
            parseFields("<30>Jan 1 00:00:00 sshd[4711]: no host")
                == ParsedFields(.rfc3164, priority: 30, timestamp: "bsd 1/1 0:0:0", appName: "sshd", procID: "4711", message: "no host")
        )
        // Re-encoded with the message's time, host and tag, not the receive time and the whole line as MSG.
        let encoder = RecordEncoder(format: .rfc5424, framing: .lf, sdID: "relayd@32473", utcOffsetSeconds: 0)
        let line = Array("<13>Nov 7 09:05:01 host app[12]: one-digit day".utf8)
        let received = WallClockTimestamp(seconds: 1_762_506_000, nanoseconds: 0)  // 2025-11-07T09:00:00Z
        let encoded = line.withUnsafeBytes { frame -> String in
            let context = RecordContext(inputName: UnsafeRawBufferPointer(start: nil, count: 0), receivedAt: received, tags: TagOptions(inputName: false, peer: false, receivedAt: false))
            var output = [UInt8](repeating: 0, count: 256)
            let count = output.withUnsafeMutableBytes { encoder.encode(SyslogMessage.parse(frame), context: context, into: $0) } ?? 0
            return String(decoding: output[0..<count], as: UTF8.self)
        }
        #expect(encoded == "<13>1 2025-11-07T09:05:01Z host app 12 - - one-digit day\n")
        // Not a timestamp: a day without the space before the time.
        #expect(parseFields("<13>Nov 709:05:01 x").timestamp == nil)
    }

    @Test func unparsableInputBecomesMSG() {
        #expect(parseFields("plain text line") == ParsedFields(.unparsed, priority: nil, message: "plain text line"))
        #expect(parseFields("<192>too high") == ParsedFields(.unparsed, priority: nil, message: "<192>too high"))
        #expect(
            parseFields("<013>leading zero") == ParsedFields(.unparsed, priority: nil, message: "<013>leading zero")
        )
        #expect(
            parseFields("<0>1 bad-time h a p m - x")
                == ParsedFields(.unparsed, priority: 0, message: "1 bad-time h a p m - x")
        )
        #expect(
            parseFields("<14>1 - h a p m [unterminated x")
                == ParsedFields(.unparsed, priority: 14, message: "1 - h a p m [unterminated x")
        )
        #expect(parseFields("") == ParsedFields(.unparsed, priority: nil, message: ""))
    }

    /// The SD is copied verbatim into RFC 5424 output, so only well-formed SD-ELEMENTs may be taken as SD
    /// (RFC 5424 §6.3: `"[" SD-ID *(SP PARAM-NAME "=" %d34 PARAM-VALUE %d34) "]"`, names of 1-32 characters).
    @Test func malformedStructuredDataIsNotRFC5424() {
        for header in [
            "[a b]",  // a PARAM-NAME without a value
            "[a k=v]",  // an unquoted PARAM-VALUE
            "[a k]",  // no "="
            "[a k=\"v\"x=\"y\"]",  // no SP between SD-PARAMs
            "[a =\"v\"]",  // an empty PARAM-NAME
            "[a  k=\"v\"]",  // two SPs
            "[a k=\"v\" ]",  // a trailing SP
            "[\(String(repeating: "i", count: 33)) k=\"v\"]",  // an SD-ID longer than 32
            "[a \(String(repeating: "n", count: 33))=\"v\"]",  // a PARAM-NAME longer than 32
        ] {
            let text = "<14>1 - h a p m \(header) x"
            #expect(
                parseFields(text) == ParsedFields(.unparsed, priority: 14, message: String(text.dropFirst(4))),
                "\(header)")
        }
        // A PARAM-VALUE that is not UTF-8 (a lone continuation byte, a truncated sequence).
        for bad: [UInt8] in [[0x80], [0xE2, 0x82], [0x41, 0xFF]] {
            let frame = Array(#"<14>1 - h a p m [a k=""#.utf8) + bad + Array(#""] x"#.utf8)
            #expect(parseFields(frame).format == .unparsed, "\(bad)")
        }
        #expect(parseFields(#"<14>1 - h a p m [a k="€ é"] x"#).structuredData == #"[a k="€ é"]"#, "valid UTF-8 is kept")
        #expect(
            parseFields(#"<14>1 - h a p m [a@1][b@2 k="v" l="" e="\]\"\\"] x"#)
                == ParsedFields(
                    .rfc5424, priority: 14, timestamp: "-", hostname: "h", appName: "a", procID: "p", msgID: "m",
                    structuredData: #"[a@1][b@2 k="v" l="" e="\]\"\\"]"#, message: "x"))
    }
}

@Suite("Syslog re-encoding")
struct SyslogEncodingTests {
    static let receivedAt = WallClockTimestamp(seconds: 1_764_259_200, nanoseconds: 123_456_789)  // 2025-11-27T16:00:00.123456Z
    static let rfc5424 = RecordEncoder(format: .rfc5424, framing: .lf, sdID: "relayd@32473", utcOffsetSeconds: 3600)

    @Test func rfc5424IsKeptAndTagged() {
        let frame = Array(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [ex@32473 iut=\"3\"] BOMhello".utf8
        )
        #expect(
            encodeChecked(frame, Self.rfc5424, input: "syslog-tcp", peer: "[::1]:40000")
                == "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [ex@32473 iut=\"3\"]"
                + "[relayd@32473 input=\"syslog-tcp\" peer=\"[::1\\]:40000\" received=\"2025-11-27T16:00:00.123456Z\"] BOMhello\n"
        )
        // Without tags the message passes through unchanged.
        let plain = Array("<34>1 2003-10-11T22:14:15.003Z host su - ID47 - 'su root' failed".utf8)
        let noTags = TagOptions(inputName: false, peer: false, receivedAt: false)
        #expect(
            encodeChecked(plain, Self.rfc5424, tags: noTags)
                == "<34>1 2003-10-11T22:14:15.003Z host su - ID47 - 'su root' failed\n"
        )
    }

    @Test("a message that already has relayd's SD-ID (relayd forwarding to relayd) keeps it once")
    func rfc5424ForwardedKeepsOneTagElement() {
        let frame = Array(
            (#"<165>1 2003-10-11T22:14:15.003Z edge app - - [ex@32473 note="[relayd@32473 x] \"q\" \]"]"#
                + #"[relayd@32473 input="edge-in" peer="10.0.0.7:514"] hello"#).utf8
        )
        #expect(
            encodeChecked(frame, Self.rfc5424, input: "central-in", peer: "10.0.0.1:40000")
                == #"<165>1 2003-10-11T22:14:15.003Z edge app - - [ex@32473 note="[relayd@32473 x] \"q\" \]"]"#
                + #"[relayd@32473 input="edge-in" peer="10.0.0.7:514"] hello"# + "\n"
        )
        // An SD-ID that only appears inside a parameter value does not count.
        let inValue = Array(#"<165>1 2003-10-11T22:14:15.003Z edge app - - [ex@32473 note="[relayd@32473 x]"] hi"#.utf8)
        let tagged = encodeChecked(inValue, Self.rfc5424, tags: TagOptions(inputName: true, peer: false, receivedAt: false))
        #expect(tagged == #"<165>1 2003-10-11T22:14:15.003Z edge app - - [ex@32473 note="[relayd@32473 x]"][relayd@32473 input="in"] hi"# + "\n")
    }

    @Test func rfc3164IsConvertedToRFC5424() {
        let frame = Array("<30>Nov  7 01:02:03 sshd[4711]: Accepted publickey".utf8)
        #expect(
            encodeChecked(frame, Self.rfc5424, tags: TagOptions(inputName: true, peer: false, receivedAt: false))
                == "<30>1 2025-11-07T01:02:03+01:00 relayhost sshd 4711 - [relayd@32473 input=\"in\"] Accepted publickey\n"
        )
        // December message received in January: previous year.
        let january = WallClockTimestamp(seconds: 1_767_225_600 + 3600, nanoseconds: 0)  // 2026-01-01T01:00:00Z
        let december = Array("<13>Dec 31 23:59:59 host app: late".utf8)
        #expect(
            encodeChecked(
                december,
                RecordEncoder(format: .rfc5424, framing: .lf),
                receivedAt: january,
                tags: TagOptions(inputName: false, peer: false, receivedAt: false)
            )
                == "<13>1 2025-12-31T23:59:59Z host app - - - late\n"
        )
    }

    @Test func plainTextGetsDefaultsAndTheReceiveTime() {
        #expect(
            encodeChecked(
                Array("just text".utf8),
                Self.rfc5424,
                tags: TagOptions(inputName: false, peer: false, receivedAt: false)
            )
                == "<13>1 2025-11-27T16:00:00.123456Z relayhost - - - - just text\n"
        )
        // Header fields: bytes outside PRINTUSASCII become '_', lengths are capped.
        let longApp = String(repeating: "a", count: 60)
        let frame = Array("<13>1 - h\u{7F}st \(longApp) - - -".utf8)
        #expect(
            encodeChecked(frame, Self.rfc5424, tags: TagOptions(inputName: false, peer: false, receivedAt: false))
                == "<13>1 - h_st \(String(repeating: "a", count: 48)) - - -\n"
        )
    }

    @Test func lfFramingEscapesEmbeddedNewlinesAndOctetCountingDoesNot() {
        let frame = Array("<13>1 - h app - - - line one\nline two".utf8)
        let noTags = TagOptions(inputName: false, peer: false, receivedAt: false)
        #expect(encodeChecked(frame, Self.rfc5424, tags: noTags) == "<13>1 - h app - - - line one#012line two\n")
        let octet = RecordEncoder(format: .rfc5424, framing: .octetCounting)
        #expect(encodeChecked(frame, octet, tags: noTags) == "37 <13>1 - h app - - - line one\nline two")
        let raw = RecordEncoder(format: .raw, framing: .lf)
        #expect(encodeChecked(Array("a\nb\n\n".utf8), raw) == "a#012b\n")
        #expect(encodeChecked(Array("a\nb".utf8), RecordEncoder(format: .raw, framing: .octetCounting)) == "3 a\nb")
    }

    @Test func jsonLines() {
        let frame: [UInt8] =
            Array("<30>Nov  7 01:02:03 myhost sshd[4711]: ".utf8) + [0xEF, 0xBB, 0xBF] + Array("caf".utf8) + [
                0xC3, 0xA9,
            ]
            + Array(" \"q\" \\ \t".utf8) + [0x01, 0xFF, 0x0A] + Array("end".utf8)
        let json = RecordEncoder(format: .jsonl, framing: .lf, utcOffsetSeconds: -5 * 3600)
        #expect(
            encodeChecked(frame, json, input: "local", peer: "pid=1")
                == #"{"facility":3,"severity":6,"timestamp":"2025-11-07T01:02:03-05:00","hostname":"myhost","app_name":"sshd","procid":"4711","#
                + #""msg":"café \"q\" \\ \t\u0001\#u{FFFD}\nend","input":"local","peer":"pid=1","received_at":"2025-11-27T16:00:00.123456Z"}"#
                + "\n"
        )
        let nilTime = Array("<13>1 - - - - - [a@1 k=\"v\"]".utf8)
        #expect(
            encodeChecked(nilTime, json, tags: TagOptions(inputName: false, peer: false, receivedAt: false))
                == #"{"facility":1,"severity":5,"hostname":"relayhost","structured_data":"[a@1 k=\"v\"]","msg":""}"#
                + "\n"
        )
    }

    @Test func invalidUTF8SequencesBecomeReplacementCharacters() {
        let cases: [([UInt8], String)] = [
            ([0xC0, 0x80], "\u{FFFD}\u{FFFD}"),  // overlong NUL
            ([0xED, 0xA0, 0x80], "\u{FFFD}\u{FFFD}\u{FFFD}"),  // surrogate
            ([0xF4, 0x90, 0x80, 0x80], "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}"),  // above U+10FFFF
            ([0xE2, 0x82], "\u{FFFD}\u{FFFD}"),  // truncated
            ([0xF0, 0x9F, 0x98, 0x80], "😀"),
        ]
        for (bytes, expected) in cases {
            var counter = ByteCounter()
            bytes.withUnsafeBytes { JSONEncoding.appendString($0, into: &counter) }
            var output = [UInt8](repeating: 0, count: counter.count)
            let written = output.withUnsafeMutableBytes { buffer in
                var writer = BufferWriter(buffer)
                bytes.withUnsafeBytes { JSONEncoding.appendString($0, into: &writer) }
                return writer.count
            }
            #expect(written == counter.count)
            #expect(String(decoding: output, as: UTF8.self) == "\"\(expected)\"")
        }
    }

    /// Exact-length computation over a corpus × every format × every framing × tag combinations.
    @Test(arguments: OutputFormat.allCases, OutputFraming.allCases)
    func measuredLengthIsExact(format: OutputFormat, framing: OutputFraming) {
        let corpus: [[UInt8]] = [
            Array("<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed".utf8),
            Array("<13>Nov 27 16:09:26 vm myapp[6521]: hello".utf8),
            Array("plain".utf8),
            [],
            Array("<191>1 - - - - - [x@1 a=\"]\"][y@2] \n\n".utf8),
            [0xFF, 0xFE, 0x00, 0x0A, 0x22, 0x5C],
            Array(String(repeating: "long message ", count: 2000).utf8),
        ]
        let encoder = RecordEncoder(format: format, framing: framing, utcOffsetSeconds: 19800)
        for frame in corpus {
            for tags in [
                TagOptions(), TagOptions(inputName: false, peer: false, receivedAt: false),
                TagOptions(inputName: true, peer: true, receivedAt: false),
            ] {
                _ = encodeChecked(frame, encoder, peer: "10.0.0.1:514", tags: tags)
            }
        }
    }

    @Test func timestampFormatting() {
        func utc(_ seconds: Int64, _ nanos: Int32 = 0) -> String {
            var counter = ByteCounter()
            RFC3339.writeUTC(WallClockTimestamp(seconds: seconds, nanoseconds: nanos), into: &counter)
            var output = [UInt8](repeating: 0, count: counter.count)
            output.withUnsafeMutableBytes { buffer in
                var writer = BufferWriter(buffer)
                RFC3339.writeUTC(WallClockTimestamp(seconds: seconds, nanoseconds: nanos), into: &writer)
            }
            return String(decoding: output, as: UTF8.self)
        }
        #expect(utc(0) == "1970-01-01T00:00:00.000000Z")
        #expect(utc(951_782_400, 999_999_999) == "2000-02-29T00:00:00.999999Z")
        #expect(utc(4_102_444_799) == "2099-12-31T23:59:59.000000Z")
        #expect(utc(-1) == "1969-12-31T23:59:59.000000Z")
        // Cross-check against gmtime_r for a spread of instants.
        var random = SplitMix64(state: 42)
        for _ in 0..<1000 {
            let seconds = Int64.random(in: 0...4_102_444_799, using: &random)
            var t = time_t(seconds)
            var parts = tm()
            gmtime_r(&t, &parts)
            let expected = String(
                format: "%04d-%02d-%02dT%02d:%02d:%02d.000000Z",
                parts.tm_year + 1900,
                parts.tm_mon + 1,
                parts.tm_mday,
                parts.tm_hour,
                parts.tm_min,
                parts.tm_sec
            )
            #expect(utc(seconds) == expected)
        }
        for valid in [
            "2003-10-11T22:14:15.003Z", "2003-08-24T05:14:15.000003-07:00", "1985-04-12T23:20:50.52Z",
            "2025-01-01T00:00:00+00:00",
        ] {
            #expect(Array(valid.utf8).withUnsafeBytes { RFC3339.isValid($0) }, "\(valid)")
        }
        for invalid in [
            "2003-10-11 22:14:15Z", "2003-10-11T22:14:15", "2003-10-11T22:14:15.Z", "2003-10-11T22:14:15+0700", "-",
        ] {
            #expect(!Array(invalid.utf8).withUnsafeBytes { RFC3339.isValid($0) }, "\(invalid)")
        }
    }
}
