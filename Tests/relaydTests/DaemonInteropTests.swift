import Foundation
import Testing

@testable import relayd

#if canImport(Glibc)
import Glibc
#endif

/// The `[daemon]` and `[channels.default]` sections every daemon test uses: metrics on an ephemeral loopback port,
/// small sub-buffers, a short switch interval so records reach files quickly.
/// A TCP input on an ephemeral port of 127.0.0.1 and a `tcp` output named "forward" to `target`, with
/// `outputKeys` (TOML lines) added to the output's table.
func tcpForwardConfig(target: String, outputKeys: String = "") -> String {
    """
    [[inputs]]
    name = "tcp"
    type = "tcp"
    listen = "127.0.0.1:0"

    [[outputs]]
    name = "forward"
    type = "tcp"
    target = "\(target)"
    \(outputKeys)

    """
}

func daemonPreamble(_ directory: String, switchInterval: String = "20ms", drainTimeout: String = "10s") -> String {
    """
    [daemon]
    metrics_listen = "127.0.0.1:0"
    state_dir = "\(directory)"
    drain_timeout = "\(drainTimeout)"
    log_level = "info"

    [channels.default]
    subbuf_size = "256KiB"
    subbufs = 8
    switch_interval = "\(switchInterval)"

    """
}

/// Checks `received = completed + Σ dropped + in_flight` for every input and output in a scrape, and that each
/// output received what its inputs routed (relayd is idle when this is called).
func expectReconciled(_ metrics: [String: Double], inputs: [String], outputs: [String: [String]]) {
    func value(_ series: String) -> Double { metrics[series] ?? 0 }
    func dropped(_ family: String, _ label: String, _ name: String) -> Double {
        metrics.filter { $0.key.hasPrefix("\(family){\(label)=\"\(name)\"") }.values.reduce(0, +)
    }
    for input in inputs {
        let received = value("relayd_input_received_records_total{input=\"\(input)\"}")
        let routed = value("relayd_input_routed_records_total{input=\"\(input)\"}")
        let drops = dropped("relayd_input_dropped_records_total", "input", input)
        let inFlight = value("relayd_input_in_flight_records{input=\"\(input)\"}")
        #expect(received == routed + drops + inFlight, "input \(input)")
    }
    for (output, sources) in outputs {
        let received = value("relayd_output_received_records_total{output=\"\(output)\"}")
        let written = value("relayd_output_written_records_total{output=\"\(output)\"}")
        let drops = dropped("relayd_output_dropped_records_total", "output", output)
        let inFlight = value("relayd_output_in_flight_records{output=\"\(output)\"}")
        #expect(received == written + drops + inFlight, "output \(output)")
        let routed = sources.map { value("relayd_input_routed_records_total{input=\"\($0)\"}") }.reduce(0, +)
        #expect(received == routed, "output \(output) received what its inputs routed")
    }
}

@Suite(
    "relayd with util-linux logger and rsyslog",
    .enabled(if: RelaydTestEnvironment.canRunDaemon, "\(RelaydTestEnvironment.daemonProblem ?? "")"),
    .timeLimit(.minutes(1))
)
struct DaemonInteropTests {
    @Test(
        "logger --tcp --octet-count and logger -u → relayd → files, byte-exact, with fan-out and routing",
        .enabled(if: UtilLinuxLogger.isAvailable, "util-linux logger is not installed")
    )
    func loggerToFiles() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let config = daemonPreamble(directory) + """
            [[inputs]]
            name = "tcp"
            type = "tcp"
            listen = "127.0.0.1:0"

            [[inputs]]
            name = "dgram"
            type = "unix_dgram"
            path = "\(directory)/log.sock"

            [[outputs]]
            name = "tcp-raw"
            type = "file"
            inputs = ["tcp"]
            format = "raw"
            path = "\(directory)/tcp.log"

            [[outputs]]
            name = "dgram-raw"
            type = "file"
            inputs = ["dgram"]
            format = "raw"
            path = "\(directory)/dgram.log"

            [[outputs]]
            name = "all-json"
            type = "file"
            format = "jsonl"
            path = "\(directory)/all.jsonl"

            """
        let relayd = try RelaydProcess.start(config: config, directory: directory)
        let port = try #require(relayd.tcpPorts["tcp"])

        let tcpLines = (0..<400).map { "tcp message \($0) with some payload" }
        let dgramLines = (0..<50).map { "dgram message \($0)" }
        let tcpStatus = try UtilLinuxLogger.run(
            [
                "--tcp", "--octet-count", "--rfc5424=notq,notime,nohost", "-n", "127.0.0.1", "-P", String(port),
                "-t", "myapp", "--msgid", "ID7", "-p", "local3.info",
            ],
            stdin: tcpLines.joined(separator: "\n") + "\n"
        )
        #expect(tcpStatus == 0)
        let dgramStatus = try UtilLinuxLogger.run(
            ["-u", "\(directory)/log.sock", "--rfc5424=notq,notime,nohost", "-t", "localapp"],
            stdin: dgramLines.joined(separator: "\n") + "\n"
        )
        #expect(dgramStatus == 0)

        let expectedTCP = Array(tcpLines.map { "<158>1 - - myapp - ID7 - \($0)\n" }.joined().utf8)
        let expectedDgram = Array(dgramLines.map { "<13>1 - - localapp - - - \($0)\n" }.joined().utf8)
        #expect(Eventually.wait { Eventually.bytes("\(directory)/tcp.log").count >= expectedTCP.count })
        #expect(Eventually.wait { Eventually.bytes("\(directory)/dgram.log").count >= expectedDgram.count })
        #expect(Eventually.wait { Eventually.lines("\(directory)/all.jsonl").count >= tcpLines.count + dgramLines.count })
        #expect(Eventually.bytes("\(directory)/tcp.log") == expectedTCP)
        #expect(Eventually.bytes("\(directory)/dgram.log") == expectedDgram)

        // Fan-out: the JSON Lines output has every record of both inputs, tagged with its input.
        var jsonMessages: [String: [String]] = [:]
        for line in Eventually.lines("\(directory)/all.jsonl") {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let input = try #require(object["input"] as? String)
            jsonMessages[input, default: []].append(try #require(object["msg"] as? String))
            #expect(object["received_at"] is String)
            if input == "tcp" {
                #expect(object["app_name"] as? String == "myapp")
                #expect(object["msgid"] as? String == "ID7")
                #expect(object["facility"] as? Int == 19)
                #expect(object["severity"] as? Int == 6)
                #expect((object["peer"] as? String)?.hasPrefix("127.0.0.1:") == true)
            }
        }
        #expect(jsonMessages["tcp"] == tcpLines)
        #expect(jsonMessages["dgram"] == dgramLines)

        // Give the accountant a tick after the last file write, then check that the counters reconcile.
        var metrics: [String: Double] = [:]
        #expect(
            try Eventually.wait {
                metrics = try relayd.metrics()
                return metrics["relayd_output_written_records_total{output=\"all-json\"}"] == 450
                    && metrics["relayd_output_written_records_total{output=\"tcp-raw\"}"] == 400
            }
        )
        #expect(metrics["relayd_input_received_records_total{input=\"tcp\"}"] == 400)
        #expect(metrics["relayd_input_received_records_total{input=\"dgram\"}"] == 50)
        #expect(metrics["relayd_input_connections_accepted_total{input=\"tcp\"}"] == 1)
        expectReconciled(
            metrics,
            inputs: ["tcp", "dgram"],
            outputs: ["tcp-raw": ["tcp"], "dgram-raw": ["dgram"], "all-json": ["tcp", "dgram"]]
        )
        #expect(try relayd.stop() == 0)
        #expect(relayd.stderr.contains("dropped=0 received=450 written=900"))
    }

    @Test(
        "relayd → rsyslog imtcp: every record arrives and rsyslog parses it as RFC 5424",
        .enabled(if: RelaydTestEnvironment.rsyslogdPath != nil, "rsyslogd is not installed")
    )
    func relaydToRsyslog() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let rsyslog = try PrivateRsyslog(
            config: """
                module(load="imtcp")
                template(name="fields" type="string" string="%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n")
                \(PrivateRsyslog.imtcpInput(directory: directory, ruleset: "out"))
                ruleset(name="out") { action(type="omfile" file="\(directory)/rsyslog.out" template="fields") }

                """,
            directory: directory
        )
        defer { rsyslog.stop() }

        let config = daemonPreamble(directory) + """
            [[inputs]]
            name = "tcp-in"
            type = "tcp"
            listen = "127.0.0.1:0"

            [[outputs]]
            name = "aggregator"
            type = "tcp"
            target = "127.0.0.1:\(rsyslog.port)"
            format = "rfc5424"
            framing = "octet-counting"

            """
        let relayd = try RelaydProcess.start(config: config, directory: directory)
        let port = try #require(relayd.tcpPorts["tcp-in"])
        let count = 300
        var frames: [UInt8] = []
        for index in 0..<count {
            let message: String
            if index % 3 == 2 {
                // RFC 3164 input, converted to RFC 5424 by relayd.
                message = "<34>Nov  7 09:05:0\(index % 10) somehost bsdapp[\(index)]: legacy \(index)"
            } else {
                message = "<165>1 2025-11-27T16:00:00.123456Z host1 app 42 MSG\(index) [x@32473 n=\"\(index)\"] payload \(index)"
            }
            frames += Array("\(message.utf8.count) \(message)".utf8)
        }
        let fd = try RelaydTestSockets.connectTCP(port: port)
        try RelaydTestSockets.sendAll(fd, frames)
        close(fd)

        let path = "\(directory)/rsyslog.out"
        #expect(Eventually.wait { Eventually.lines(path).count >= count }, "rsyslog received \(Eventually.lines(path).count) of \(count)")
        let lines = Eventually.lines(path)
        #expect(lines.count == count)
        for (index, line) in lines.enumerated() {
            let fields = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 5 else {
                Issue.record("unexpected rsyslog line \(line)")
                continue
            }
            if index % 3 == 2 {
                #expect(fields[0] == "bsdapp")
                #expect(fields[1] == "\(index)")
                #expect(fields[2] == "-")
                #expect(fields[4] == "legacy \(index)")
            } else {
                #expect(fields[0] == "app")
                #expect(fields[1] == "42")
                #expect(fields[2] == "MSG\(index)")
                #expect(fields[3].hasPrefix("[x@32473 n=\"\(index)\"][relayd@32473 input=\"tcp-in\" peer=\"127.0.0.1:"))
                #expect(fields[4] == "payload \(index)")
            }
            #expect(fields[3].contains("received=\""))
        }
        #expect(try relayd.stop() == 0)
    }

    @Test(
        "rsyslog omfwd (TCP_Framing=\"octet-counted\") → relayd: every record arrives",
        .enabled(if: RelaydTestEnvironment.rsyslogdPath != nil, "rsyslogd is not installed"),
        .enabled(if: UtilLinuxLogger.isAvailable, "util-linux logger is not installed")
    )
    func rsyslogToRelayd() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let config = daemonPreamble(directory) + """
            [[inputs]]
            name = "from-rsyslog"
            type = "tcp"
            listen = "127.0.0.1:0"
            framing = "octet-counting"

            [[outputs]]
            name = "files"
            type = "file"
            format = "raw"
            path = "\(directory)/relayd.log"

            """
        let relayd = try RelaydProcess.start(config: config, directory: directory)
        let relaydPort = try #require(relayd.tcpPorts["from-rsyslog"])
        let rsyslog = try PrivateRsyslog(
            config: """
                module(load="imtcp")
                \(PrivateRsyslog.imtcpInput(directory: directory, ruleset: "forward"))
                ruleset(name="forward") {
                    action(type="omfwd" target="127.0.0.1" port="\(relaydPort)" protocol="tcp"
                           TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
                }

                """,
            directory: directory
        )
        defer { rsyslog.stop() }

        let count = 300
        let lines = (0..<count).map { "forwarded message \($0)" }
        let status = try UtilLinuxLogger.run(
            ["--tcp", "--octet-count", "--rfc5424", "-n", "127.0.0.1", "-P", String(rsyslog.port), "-t", "fwdapp"],
            stdin: lines.joined(separator: "\n") + "\n"
        )
        #expect(status == 0)
        let path = "\(directory)/relayd.log"
        #expect(Eventually.wait { Eventually.lines(path).count >= count }, "relayd wrote \(Eventually.lines(path).count) of \(count)")
        let received = Eventually.lines(path)
        #expect(received.count == count)
        for (index, line) in received.enumerated() {
            // rsyslog re-encodes as RFC 5424: `<PRI>1 TIMESTAMP HOST fwdapp PROCID - SD MSG` (its trailing LF is trimmed).
            #expect(line.hasPrefix("<13>1 "), "\(line)")
            #expect(line.contains(" fwdapp "), "\(line)")
            #expect(line.hasSuffix(" forwarded message \(index)"), "\(line)")
        }
        let metrics = try relayd.metrics()
        #expect(metrics["relayd_input_frames_bad_prefix_total{input=\"from-rsyslog\"}"] == 0)
        #expect(metrics["relayd_input_connections_closed_framing_error_total{input=\"from-rsyslog\"}"] == 0)
        #expect(try relayd.stop() == 0)
    }
}
