import Foundation
import RelayTestSupport
import Testing

@testable import relayd

#if canImport(Glibc)
import Glibc
#endif

@Suite(
    "relayd framing over real sockets",
    .enabled(if: RelaydTestEnvironment.canRunDaemon, "\(RelaydTestEnvironment.daemonProblem ?? "")"),
    .timeLimit(.minutes(1))
)
struct DaemonFramingTests {
    static func frame(_ message: String) -> [UInt8] {
        Array("\(message.utf8.count) \(message)".utf8)
    }

    @Test("split frames, many frames per read, exactly max_frame, oversized, bad prefix: counted, connection survives")
    func autoFramingEdgeCases() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let config = daemonPreamble(directory) + """
            [[inputs]]
            name = "auto"
            type = "tcp"
            listen = "127.0.0.1:0"
            max_frame = 480

            [[outputs]]
            name = "files"
            type = "file"
            format = "raw"
            path = "\(directory)/auto.log"

            """
        let relayd = try RelaydProcess.start(config: config, directory: directory)
        let fd = try RelaydTestSockets.connectTCP(port: try #require(relayd.tcpPorts["auto"]))
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))

        var expected: [String] = []
        // 1. One frame split into single bytes, each sent on its own (the prefix is split too).
        let split = "<13>1 - - split - - - sent one byte at a time"
        for byte in Self.frame(split) {
            try RelaydTestSockets.sendAll(fd, [byte])
            usleep(2_000)
        }
        expected.append(split)
        // 2. 300 frames in one write.
        var burst: [UInt8] = []
        for index in 0..<300 {
            let message = "<13>1 - - burst - - - frame \(index)"
            burst += Self.frame(message)
            expected.append(message)
        }
        try RelaydTestSockets.sendAll(fd, burst)
        // 3. Exactly max_frame (480) bytes: kept whole.
        let header = "<13>1 - - exact - - - "
        let exact = header + String(repeating: "e", count: 480 - header.utf8.count)
        try RelaydTestSockets.sendAll(fd, Self.frame(exact))
        expected.append(exact)
        // 4. One byte over: truncated to 480 bytes and counted; the rest of the frame is skipped.
        let over = header.replacingOccurrences(of: "exact", with: "overx") + String(repeating: "o", count: 481 - header.utf8.count)
        try RelaydTestSockets.sendAll(fd, Self.frame(over))
        expected.append(String(over.prefix(480)))
        // 5. A bad length prefix: read as an LF frame that keeps the digits.
        try RelaydTestSockets.sendAll(fd, Array("12x this is not an octet count\n".utf8))
        expected.append("12x this is not an octet count")
        // 6. An LF-delimited frame, then a last octet-counted one: the connection is still in sync.
        try RelaydTestSockets.sendAll(fd, Array("<13>1 - - lf - - - plain line\n".utf8))
        expected.append("<13>1 - - lf - - - plain line")
        let last = "<13>1 - - last - - - still connected"
        try RelaydTestSockets.sendAll(fd, Self.frame(last))
        expected.append(last)

        let path = "\(directory)/auto.log"
        #expect(Eventually.wait { Eventually.lines(path).count >= expected.count })
        #expect(Eventually.lines(path) == expected)
        var metrics: [String: Double] = [:]
        #expect(
            try Eventually.wait {
                metrics = try relayd.metrics()
                return metrics["relayd_output_written_records_total{output=\"files\"}"] == Double(expected.count)
            }
        )
        #expect(metrics["relayd_input_frames_truncated_total{input=\"auto\"}"] == 1)
        #expect(metrics["relayd_input_frames_bad_prefix_total{input=\"auto\"}"] == 1)
        #expect(metrics["relayd_input_connections_closed_framing_error_total{input=\"auto\"}"] == 0)
        #expect(metrics["relayd_input_connections{input=\"auto\"}"] == 1)
        #expect(metrics["relayd_input_received_records_total{input=\"auto\"}"] == Double(expected.count))
        expectReconciled(metrics, inputs: ["auto"], outputs: ["files": ["auto"]])
        #expect(try relayd.stop() == 0)
    }

    @Test("CRLF endings: a frame that is only CR/LF/NUL (a CRLF trailer, a blank CRLF line, an LF datagram) is skipped as empty")
    func blankFramesAreSkippedNotWrittenAsEmptyRecords() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let config = daemonPreamble(directory) + """
            [[inputs]]
            name = "auto"
            type = "tcp"
            listen = "127.0.0.1:0"

            [[inputs]]
            name = "dgram"
            type = "unix_dgram"
            path = "\(directory)/dgram.sock"

            [[outputs]]
            name = "files"
            type = "file"
            format = "raw"
            path = "\(directory)/blank.log"

            """
        let relayd = try RelaydProcess.start(config: config, directory: directory)
        let fd = try RelaydTestSockets.connectTCP(port: try #require(relayd.tcpPorts["auto"]))
        // Octet-counted frames with a CRLF trailer (the same bytes framing = "octet-counting" tolerates between
        // frames), then CRLF lines with a blank one among them.
        try RelaydTestSockets.sendAll(
            fd,
            Self.frame("<13>1 - - a - - - first") + Array("\r\n".utf8) + Self.frame("<13>1 - - a - - - second")
                + Array("\r\n<13>1 - - b - - - third\r\n\r\n<13>1 - - b - - - fourth\r\n".utf8)
        )
        close(fd)
        try RelaydTestSockets.sendDatagram(Array("\n".utf8), to: "\(directory)/dgram.sock")
        try RelaydTestSockets.sendDatagram(Array("<13>1 - - c - - - fifth\n".utf8), to: "\(directory)/dgram.sock")

        var metrics: [String: Double] = [:]
        #expect(
            try Eventually.wait {
                metrics = try relayd.metrics()
                return metrics["relayd_input_frames_empty_total{input=\"auto\"}", default: 0]
                    + metrics["relayd_input_frames_empty_total{input=\"dgram\"}", default: 0]
                    + metrics["relayd_output_written_records_total{output=\"files\"}", default: 0] >= 9
            }
        )
        #expect(try relayd.stop() == 0)
        #expect(
            Eventually.lines("\(directory)/blank.log").sorted() == [
                "<13>1 - - a - - - first", "<13>1 - - a - - - second", "<13>1 - - b - - - fourth",
                "<13>1 - - b - - - third", "<13>1 - - c - - - fifth",
            ]
        )
        #expect(metrics["relayd_input_received_records_total{input=\"auto\"}"] == 4)
        #expect(metrics["relayd_input_frames_empty_total{input=\"auto\"}"] == 3)
        #expect(metrics["relayd_input_received_records_total{input=\"dgram\"}"] == 1)
        #expect(metrics["relayd_input_frames_empty_total{input=\"dgram\"}"] == 1)
    }

    @Test("A frame or datagram cut at max_frame is logged with the input, the size limit and the key to raise")
    func truncationIsLoggedWithTheFix() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let config = daemonPreamble(directory) + """
            [[inputs]]
            name = "auto"
            type = "tcp"
            listen = "127.0.0.1:0"
            max_frame = 480

            [[inputs]]
            name = "dgram"
            type = "unix_dgram"
            path = "\(directory)/dgram.sock"
            max_frame = 512

            [[outputs]]
            name = "files"
            type = "file"
            format = "raw"
            path = "\(directory)/cut.log"

            """
        let relayd = try RelaydProcess.start(config: config, directory: directory)
        let fd = try RelaydTestSockets.connectTCP(port: try #require(relayd.tcpPorts["auto"]))
        defer { close(fd) }
        try RelaydTestSockets.sendAll(fd, Self.frame("<13>1 - - a - - - " + String(repeating: "o", count: 481)))
        try RelaydTestSockets.sendDatagram(Array(("<13>" + String(repeating: "d", count: 600)).utf8), to: "\(directory)/dgram.sock")
        #expect(Eventually.wait { Eventually.lines("\(directory)/cut.log").count >= 2 })
        func logged(_ input: String, _ keyPath: String, _ limit: String) -> Bool {
            relayd.stderr.split(separator: "\n").contains { line in
                line.contains("warning") && line.contains("input=\(input)") && line.contains("truncated")
                    && line.contains(limit) && line.contains(keyPath)
            }
        }
        #expect(Eventually.wait(timeout: .seconds(20)) { logged("auto", "inputs[0].max_frame", "480") }, "\(relayd.stderr)")
        #expect(Eventually.wait(timeout: .seconds(20)) { logged("dgram", "inputs[1].max_frame", "512") }, "\(relayd.stderr)")
        #expect(try relayd.stop() == 0)
    }

    @Test("A truncation right after another warning of the same input (a refused connection) is still logged")
    func truncationAfterAnotherWarningIsLogged() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let config = daemonPreamble(directory) + """
            [[inputs]]
            name = "tcp"
            type = "tcp"
            listen = "127.0.0.1:0"
            max_frame = 480
            max_connections = 1

            [[outputs]]
            name = "files"
            type = "file"
            format = "raw"
            path = "\(directory)/cut.log"

            """
        let relayd = try RelaydProcess.start(config: config, directory: directory)
        let port = try #require(relayd.tcpPorts["tcp"])
        let first = try RelaydTestSockets.connectTCP(port: port)
        defer { close(first) }
        try RelaydTestSockets.sendAll(first, Array("<13>1 - - a - - - open\n".utf8))
        #expect(Eventually.wait { Eventually.lines("\(directory)/cut.log").count >= 1 })
        // A second connection is refused (max_connections = 1): a warning for this input.
        let second = try RelaydTestSockets.connectTCP(port: port)
        defer { close(second) }
        #expect(Eventually.wait { relayd.stderr.contains("connection refused: max_connections reached") }, "\(relayd.stderr)")
        // A frame cut at max_frame at once after it must be logged too, not swallowed by the other warning's limit.
        try RelaydTestSockets.sendAll(first, Self.frame("<13>1 - - a - - - " + String(repeating: "o", count: 481)))
        #expect(Eventually.wait { Eventually.lines("\(directory)/cut.log").count >= 2 })
        #expect(try relayd.stop() == 0)
        #expect(
            relayd.stderr.split(separator: "\n").contains { $0.contains("truncated") && $0.contains("inputs[0].max_frame") },
            "\(relayd.stderr)"
        )
    }

    @Test("strict octet counting: a bad prefix closes the connection with a log line; other connections continue")
    func strictOctetCountingClosesOnBadPrefix() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let config = daemonPreamble(directory) + """
            [[inputs]]
            name = "strict"
            type = "tcp"
            listen = "127.0.0.1:0"
            framing = "octet-counting"

            [[outputs]]
            name = "files"
            type = "file"
            format = "raw"
            path = "\(directory)/strict.log"

            """
        let relayd = try RelaydProcess.start(config: config, directory: directory)
        let port = try #require(relayd.tcpPorts["strict"])
        let bad = try RelaydTestSockets.connectTCP(port: port)
        defer { close(bad) }
        try RelaydTestSockets.sendAll(bad, Self.frame("<13>1 - - good - - - before the error") + Array("not a frame\n".utf8))
        // relayd closes the connection: the read sees the end of the stream.
        let rest = try RelaydTestSockets.readAll(bad)
        #expect(rest.isEmpty)

        let good = try RelaydTestSockets.connectTCP(port: port)
        try RelaydTestSockets.sendAll(good, Self.frame("<13>1 - - other - - - other connection"))
        close(good)

        let path = "\(directory)/strict.log"
        #expect(Eventually.wait { Eventually.lines(path).count >= 2 })
        #expect(Eventually.lines(path) == ["<13>1 - - good - - - before the error", "<13>1 - - other - - - other connection"])
        var metrics: [String: Double] = [:]
        #expect(
            try Eventually.wait {
                metrics = try relayd.metrics()
                return metrics["relayd_input_connections{input=\"strict\"}"] == 0
            }
        )
        #expect(metrics["relayd_input_connections_closed_framing_error_total{input=\"strict\"}"] == 1)
        #expect(metrics["relayd_input_frames_bad_prefix_total{input=\"strict\"}"] == 1)
        #expect(metrics["relayd_input_connections_accepted_total{input=\"strict\"}"] == 2)
        #expect(relayd.stderr.contains("closing connection: frame without a valid RFC 6587 length prefix"))
        // The line says what arrived and which key to change.
        let closing = relayd.stderr.split(separator: "\n").first { $0.contains("closing connection") } ?? ""
        #expect(closing.contains("not a frame"), "\(closing)")
        #expect(closing.contains("inputs[0].framing = \"auto\""), "\(closing)")
        #expect(try relayd.stop() == 0)
    }

    @Test("A stalled destination: drop counts channel_full, overwrite counts overwritten, block waits once then drops; all reconcile")
    func stalledDestinationDropsAndOverwritesAreCounted() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        // A peer that accepts but never reads: once its receive queue and relayd's send queue are full, nothing
        // more is acknowledged.
        let (stalled, stalledPort) = try RelaydTestSockets.tcpListener()
        defer { close(stalled) }
        let config = daemonPreamble(directory) + """
            [channels.small-drop]
            subbuf_size = "4KiB"
            subbufs = 2
            mode = "drop"
            switch_interval = "5ms"

            [channels.small-overwrite]
            subbuf_size = "4KiB"
            subbufs = 2
            mode = "overwrite"
            switch_interval = "5ms"

            [channels.small-block]
            subbuf_size = "4KiB"
            subbufs = 2
            mode = "block"
            block_timeout = "20ms"
            switch_interval = "5ms"

            [[inputs]]
            name = "tcp"
            type = "tcp"
            listen = "127.0.0.1:0"
            max_frame = 480

            [[outputs]]
            name = "dropper"
            type = "tcp"
            target = "127.0.0.1:\(stalledPort)"
            channel = "small-drop"

            [[outputs]]
            name = "recorder"
            type = "tcp"
            target = "127.0.0.1:\(stalledPort)"
            channel = "small-overwrite"

            [[outputs]]
            name = "blocker"
            type = "tcp"
            target = "127.0.0.1:\(stalledPort)"
            channel = "small-block"

            [[outputs]]
            name = "files"
            type = "file"
            format = "raw"
            path = "\(directory)/all.log"

            """
        let relayd = try RelaydProcess.start(config: config, directory: directory)
        let port = try #require(relayd.tcpPorts["tcp"])
        // If every record for the stalled block-mode output waited its 20 ms timeout, the shared input ring
        // would take over 10 minutes for these; it waits once per stall, so the file output gets them at full speed.
        let total = 40_000
        let padding = String(repeating: "p", count: 200)
        try DaemonLifecycleTests.send((0..<total).map { "<13>1 - - app - - - \($0) \(padding)" }, port: port)
        #expect(Eventually.wait { Eventually.lines("\(directory)/all.log").count >= total })
        var metrics: [String: Double] = [:]
        #expect(
            try Eventually.wait {
                metrics = try relayd.metrics()
                return metrics["relayd_output_written_records_total{output=\"files\"}"] == Double(total)
            }
        )
        let dropped = metrics["relayd_output_dropped_records_total{output=\"dropper\",reason=\"channel_full\"}"] ?? 0
        let overwritten = metrics["relayd_output_dropped_records_total{output=\"recorder\",reason=\"overwritten\"}"] ?? 0
        let blockedDrops = metrics["relayd_output_dropped_records_total{output=\"blocker\",reason=\"channel_full\"}"] ?? 0
        #expect(dropped > 0)
        #expect(overwritten > 0)
        #expect(blockedDrops > 0)
        #expect((metrics["relayd_channel_records_dropped_full_total{channel=\"dropper\"}"] ?? 0) == dropped)
        expectReconciled(
            metrics,
            inputs: ["tcp"],
            outputs: ["dropper": ["tcp"], "recorder": ["tcp"], "blocker": ["tcp"], "files": ["tcp"]]
        )
        // The file output is unaffected by the stalled ones (they drop instead of blocking the input ring).
        #expect(metrics["relayd_output_dropped_records_total{output=\"files\",reason=\"channel_full\"}"] == 0)
        relayd.send(SIGKILL)
        _ = try relayd.waitForExit()
    }

    /// Starts relayd with a small overwrite-mode channel ("recorder": 2 × 4 KiB) that a TCP input feeds and a
    /// TCP output ships to 127.0.0.1:`targetPort`, then sends it `count` records of about 220 bytes, more than
    /// the channel holds many times over.
    private static func startRecorder(_ directory: String, targetPort: UInt16, outputKeys: String = "", sending count: Int) throws
        -> RelaydProcess
    {
        let config = daemonPreamble(directory) + """
            [channels.recorder]
            subbuf_size = "4KiB"
            subbufs = 2
            mode = "overwrite"
            switch_interval = "5ms"

            [[inputs]]
            name = "tcp"
            type = "tcp"
            listen = "127.0.0.1:0"
            max_frame = 480

            [[outputs]]
            name = "recorder"
            type = "tcp"
            target = "127.0.0.1:\(targetPort)"
            channel = "recorder"
            \(outputKeys)

            """
        let relayd = try RelaydProcess.start(config: config, directory: directory)
        let padding = String(repeating: "p", count: 200)
        try DaemonLifecycleTests.send((0..<count).map { "<13>1 - - app - - - \($0) \(padding)" }, port: try #require(relayd.tcpPorts["tcp"]))
        return relayd
    }

    @Test("overwrite mode with a stalled destination: sub-buffers reused while a send hangs are counted as overwritten, not left in flight")
    func overwrittenRecordsAreCountedWhileTheDestinationStalls() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        // A peer that accepts nothing and has a small receive buffer: the first send soon hangs for good.
        let (stalled, stalledPort) = try RelaydTestSockets.tcpListener()
        defer { close(stalled) }
        let total = 40_000
        let relayd = try Self.startRecorder(directory, targetPort: stalledPort, sending: total)
        var metrics: [String: Double] = [:]
        #expect(
            try Eventually.wait {
                metrics = try relayd.metrics()
                return metrics["relayd_output_received_records_total{output=\"recorder\"}"] == Double(total)
            }
        )
        // The channel holds 2 × 4 KiB per buffer (about 30 records) and the shipper at most as much again, per CPU;
        // on a loaded host more were seen (332 while the whole suite ran in parallel). Everything else was overwritten and is lost, which the drop
        // counter must say while the destination still hangs: before that was counted, about 10,000 records stayed
        // in flight here, growing with the load.
        let bound = 1000.0
        #expect(
            try Eventually.wait(timeout: .seconds(20)) {
                metrics = try relayd.metrics()
                return metrics["relayd_output_in_flight_records{output=\"recorder\"}", default: .infinity] <= bound
            },
            "in flight: \(metrics["relayd_output_in_flight_records{output=\"recorder\"}"] ?? -1)"
        )
        let overwritten = metrics["relayd_output_dropped_records_total{output=\"recorder\",reason=\"overwritten\"}", default: 0]
        let written = metrics["relayd_output_written_records_total{output=\"recorder\"}", default: 0]
        #expect(overwritten >= Double(total) - written - bound, "overwritten \(overwritten), written \(written)")
        expectReconciled(metrics, inputs: ["tcp"], outputs: ["recorder": ["tcp"]])
        relayd.send(SIGKILL)
        _ = try relayd.waitForExit()
    }

    @Test("overwrite mode with a healthy destination: what the peer received is written, only the rest overwritten")
    func overwriteCountsShippedCopiesAsWritten() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        // A peer that reads everything and keeps it: relayd's input outruns two 4 KiB sub-buffers, so writers reuse
        // slots whose copies the shipper is still sending (not acknowledged yet) as well as slots it never took.
        let peer = try StreamReceiver()
        defer { peer.stop() }
        let total = 40_000
        let relayd = try Self.startRecorder(
            directory, targetPort: UInt16(peer.port), outputKeys: "format = \"raw\"\nframing = \"lf\"", sending: total)
        var metrics: [String: Double] = [:]
        #expect(
            try Eventually.wait(timeout: .seconds(30)) {
                metrics = try relayd.metrics()
                return metrics["relayd_output_received_records_total{output=\"recorder\"}"] == Double(total)
                    && metrics["relayd_output_in_flight_records{output=\"recorder\"}"] == 0
            },
            "in flight: \(metrics["relayd_output_in_flight_records{output=\"recorder\"}"] ?? -1)"
        )
        let written = metrics["relayd_output_written_records_total{output=\"recorder\"}", default: 0]
        let overwritten = metrics["relayd_output_dropped_records_total{output=\"recorder\",reason=\"overwritten\"}", default: 0]
        // One connection, never broken: nothing was sent twice, so every line the peer has is one record written.
        #expect(peer.connections == 1)
        let lines = peer.received.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
        #expect(Double(lines) == written, "the peer has \(lines) records, relayd says \(written) written and \(overwritten) overwritten")
        #expect(written + overwritten == Double(total))
        #expect(overwritten > 0, "the input did not outrun the channel: nothing tested")
        expectReconciled(metrics, inputs: ["tcp"], outputs: ["recorder": ["tcp"]])
        #expect(try relayd.stop() == 0)
    }

    @Test("Unix stream (NUL or LF delimited) and oversized datagrams; datagrams are tagged with the sender's pid and uid")
    func unixStreamAndDatagramLimits() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let config = daemonPreamble(directory) + """
            [[inputs]]
            name = "stream"
            type = "unix_stream"
            path = "\(directory)/stream.sock"

            [[inputs]]
            name = "dgram"
            type = "unix_dgram"
            path = "\(directory)/dgram.sock"
            max_frame = 480
            tag = { input_name = false, peer = true, received_at = false }

            [[outputs]]
            name = "files"
            type = "file"
            format = "raw"
            path = "\(directory)/local.log"

            [[outputs]]
            name = "tagged"
            type = "file"
            format = "jsonl"
            inputs = ["dgram"]
            path = "\(directory)/tagged.jsonl"

            """
        let relayd = try RelaydProcess.start(config: config, directory: directory)
        let stream = try RelaydTestSockets.connectUnixStream("\(directory)/stream.sock")
        // glibc syslog(3) over a stream socket ends messages with NUL; other clients use LF.
        try RelaydTestSockets.sendAll(stream, Array("<14>Nov  7 09:05:01 app[1]: first\0<14>Nov  7 09:05:02 app[1]: second\n".utf8))
        close(stream)
        #expect(Eventually.wait { Eventually.lines("\(directory)/local.log").count >= 2 })
        try RelaydTestSockets.sendDatagram(Array(("<13>" + String(repeating: "d", count: 600)).utf8), to: "\(directory)/dgram.sock")
        #expect(Eventually.wait { Eventually.lines("\(directory)/local.log").count >= 3 })
        let lines = Eventually.lines("\(directory)/local.log")
        #expect(lines.prefix(2) == ["<14>Nov  7 09:05:01 app[1]: first", "<14>Nov  7 09:05:02 app[1]: second"])
        #expect(lines.last == "<13>" + String(repeating: "d", count: 476))
        let metrics = try relayd.metrics()
        #expect(metrics["relayd_input_frames_truncated_total{input=\"dgram\"}"] == 1)
        // SCM_CREDENTIALS: the kernel vouches for the sending process.
        #expect(Eventually.wait { Eventually.lines("\(directory)/tagged.jsonl").count >= 1 })
        let tagged = try #require(Eventually.lines("\(directory)/tagged.jsonl").first)
        #expect(tagged.contains("\"peer\":\"pid=\(getpid()) uid=\(getuid())\""), "\(tagged)")
        #expect(try relayd.stop() == 0)
    }
}
