import Foundation
import Testing

@testable import relayd

#if canImport(Glibc)
import Glibc
#endif

/// Real samples from util-linux `logger`, captured on sockets the test opens.
@Suite(
    "Samples from util-linux logger",
    .enabled(if: UtilLinuxLogger.isAvailable, "util-linux logger is not installed")
)
struct LoggerSampleTests {
    static var shortHostname: String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        let name = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return String(name.prefix(while: { $0 != "." }))
    }

    /// Captures one datagram that `logger -u <socket> arguments` sends.
    func captureDatagram(_ arguments: [String]) throws -> [UInt8] {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let path = directory + "/log.sock"
        let fd = try RelaydTestSockets.unixDatagramSocket(at: path)
        defer { close(fd) }
        #expect(try UtilLinuxLogger.run(["-u", path] + arguments) == 0)
        return try RelaydTestSockets.receiveDatagram(fd)
    }

    /// Captures everything `logger -T -n 127.0.0.1 -P <port> arguments` sends over one TCP connection.
    func captureTCP(_ arguments: [String], stdin: String? = nil) throws -> [UInt8] {
        let (listener, port) = try RelaydTestSockets.tcpListener()
        defer { close(listener) }
        // logger connects, sends and exits; what it sent is checked through the captured bytes.
        let thread = Thread {
            _ = try? UtilLinuxLogger.run(["-T", "-n", "127.0.0.1", "-P", String(port)] + arguments, stdin: stdin)
        }
        thread.start()
        RelaydTestSockets.setReceiveTimeout(listener, seconds: 10)
        let connection = Int32(RelaydTestSockets.retryingEINTR { Int(accept(listener, nil, nil)) })
        guard connection >= 0 else { throw RelaydTestSockets.Failure("accept") }
        defer { close(connection) }
        RelaydTestSockets.setReceiveTimeout(connection, seconds: 10)
        return try RelaydTestSockets.readAll(connection)
    }

    @Test func rfc5424OverADatagramSocket() throws {
        let sample = try self.captureDatagram([
            "--rfc5424", "-t", "myapp", "-i", "--msgid", "ID47", "-p", "local3.warning",
            "--sd-id", "zoo@123", "--sd-param", #"tiger="hungry""#, "hello world",
        ])
        let fields = parseFields(sample)
        #expect(fields.format == .rfc5424)
        #expect(fields.priority == 19 * 8 + 4)
        #expect(fields.appName == "myapp")
        #expect(fields.procID.map { !$0.isEmpty && $0.allSatisfy(\.isNumber) } == true)
        #expect(fields.msgID == "ID47")
        #expect(fields.hostname?.hasPrefix(Self.shortHostname) == true)
        #expect(fields.structuredData?.hasSuffix(#"[zoo@123 tiger="hungry"]"#) == true)
        #expect(fields.structuredData?.hasPrefix("[timeQuality ") == true)
        #expect(fields.message == "hello world")
        let timestamp = try #require(fields.timestamp)
        #expect(Array(timestamp.utf8).withUnsafeBytes { RFC3339.isValid($0) })

        // Re-encoding keeps the message byte for byte and appends the tag element to its SD.
        let text = String(decoding: sample, as: UTF8.self)
        let encoded = encodeChecked(
            sample,
            RecordEncoder(format: .rfc5424, framing: .lf),
            input: "devlog",
            tags: TagOptions(inputName: true, peer: false, receivedAt: false)
        )
        #expect(
            encoded == text.replacingOccurrences(
                of: #"] hello world"#,
                with: #"][relayd@32473 input="devlog"] hello world"#
            ) + "\n"
        )
    }

    @Test func rfc3164OverADatagramSocket() throws {
        let sample = try self.captureDatagram(["--rfc3164", "-t", "myapp", "-i", "hello 3164"])
        let fields = parseFields(sample)
        #expect(fields.format == .rfc3164)
        #expect(fields.priority == 13)
        #expect(fields.timestamp?.hasPrefix("bsd ") == true)
        #expect(fields.hostname == Self.shortHostname)
        #expect(fields.appName == "myapp")
        #expect(fields.procID.map { $0.allSatisfy(\.isNumber) } == true)
        #expect(fields.message == "hello 3164")

        let offset = 2 * 3600
        let encoded = encodeChecked(
            sample,
            RecordEncoder(format: .rfc5424, framing: .octetCounting, utcOffsetSeconds: offset),
            receivedAt: .now(),
            tags: TagOptions(inputName: false, peer: false, receivedAt: false)
        )
        // "<LEN> <13>1 YYYY-MM-DDThh:mm:ss+02:00 host myapp PID - - hello 3164"
        let body = try #require(encoded.split(separator: " ", maxSplits: 1).last)
        let parts = body.split(separator: " ")
        #expect(parts.count == 9)
        #expect(parts[0] == "<13>1")
        #expect(parts[1].hasSuffix("+02:00"))
        #expect(Array(parts[1].utf8).withUnsafeBytes { RFC3339.isValid($0) })
        #expect(parts[2] == Self.shortHostname)
        #expect(parts[3] == "myapp")
        #expect(parts[4] == fields.procID.map { Substring($0) })
        #expect(parts[5...] == ["-", "-", "hello", "3164"])
    }

    @Test func localDefaultFormatHasNoHostname() throws {
        let sample = try self.captureDatagram(["-t", "plain", "default format"])
        let fields = parseFields(sample)
        #expect(fields.format == .rfc3164)
        #expect(fields.hostname == nil)
        #expect(fields.appName == "plain")
        #expect(fields.message == "default format")
        let json = encodeChecked(
            sample,
            RecordEncoder(format: .jsonl, framing: .lf),
            fallbackHostname: "fallback",
            tags: TagOptions(inputName: false, peer: false, receivedAt: false)
        )
        #expect(json.contains(#""hostname":"fallback","app_name":"plain","msg":"default format"}"#))
    }

    /// `logger --octet-count` over TCP, several messages on one connection, decoded from small reads.
    @Test func octetCountedOverTCP() throws {
        let stream = try self.captureTCP(["--octet-count", "--rfc5424", "-t", "app"], stdin: "one\ntwo\nthree\n")
        #expect(stream.first.map { $0 >= UInt8(ascii: "1") && $0 <= UInt8(ascii: "9") } == true)
        for chunkSize in [1, 7, 64, 4096] {
            let result = decodeFrames(
                stream,
                cuts: Array(stride(from: chunkSize, to: stream.count, by: chunkSize)),
                maxFrame: 2048
            )
            #expect(result.frames.map(\.framing) == [.octetCounted, .octetCounted, .octetCounted])
            #expect(result.frames.map { parseFields(Array($0.text.utf8)).message } == ["one", "two", "three"])
            #expect(result.frames.allSatisfy { parseFields(Array($0.text.utf8)).format == .rfc5424 })
            #expect(result.counters.badPrefix == 0)
        }
    }

    /// `logger --rfc3164` over TCP uses LF framing; `auto` detects it per frame.
    @Test func lfFramedOverTCP() throws {
        let stream = try self.captureTCP(["--rfc3164", "-t", "app"], stdin: "first\nsecond\n")
        let result = decodeFrames(stream, cuts: [5, 40], maxFrame: 2048)
        #expect(result.frames.map(\.framing) == [.lf, .lf])
        #expect(result.frames.map { parseFields(Array($0.text.utf8)).message } == ["first", "second"])
        #expect(result.frames.map { parseFields(Array($0.text.utf8)).appName } == ["app", "app"])
    }
}
