import CoreMetrics
import Foundation
import Synchronization
import SystemPackage
import Testing

@testable import relayd

#if canImport(Glibc)
import Glibc
#endif

/// Parses Prometheus text format into `series → value` (`name{labels}` as written).
func parseExposition(_ bytes: [UInt8]) -> [String: Double] {
    var result: [String: Double] = [:]
    for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
            continue
        }
        result[String(line[..<space])] = value
    }
    return result
}

@Suite("Metrics")
struct MetricsTests {
    func makeMetrics() -> RelaydMetrics {
        RelaydMetrics(inputNames: ["syslog-tcp", "local"], outputNames: ["files", "forward"])
    }

    @Test func expositionHasEveryFamilyWithLabels() throws {
        let metrics = self.makeMetrics()
        let input = try #require(metrics.input("syslog-tcp"))
        for _ in 0..<3 { input.recordReceived(bytes: 100) }
        input.recordRouted(bytes: 100)
        input.recordDropped(bytes: 100, reason: .noRoute)
        input.add(
            FrameDecoderCounters(
                frames: 3,
                octetCounted: 2,
                lf: 1,
                truncated: 1,
                badPrefix: 2,
                emptySkipped: 0,
                incomplete: 0
            )
        )
        input.connectionOpened()
        input.connectionOpened()
        input.connectionClosed(framingError: true)
        input.connectionRejected()
        let output = try #require(metrics.output("files"))
        for _ in 0..<5 { output.recordReceived(bytes: 120) }
        output.recordsWritten(3, bytes: 360)
        output.recordsDropped(bytes: 120, reason: .channelFull)
        output.didConnect(isReconnect: false)
        output.didRotate()
        output.writebacks.wrappingAdd(2, ordering: .relaxed)
        metrics.output("forward")?.connectFailed()
        metrics.output("forward")?.didConnect(isReconnect: true)
        metrics.recordDeliveryDelay(output: "files", .milliseconds(3))
        metrics.registerChannel(name: "files") {
            ChannelStatistics(
                recordsWritten: 4,
                recordsDroppedFull: 1,
                subbuffersProduced: 2,
                subbuffersConsumed: 1,
                subbuffersCorrupt: 3,
                recordsLapped: 2,
                writerWaits: 7,
                bytesFilled: 1 << 20,
                capacityBytes: 8 << 20
            )
        }
        metrics.shipper.setBuffers(registered: 16, fallback: 0)
        metrics.shipper.zeroCopyCompleted(copied: false)
        metrics.shipper.zeroCopyCompleted(copied: false)
        metrics.shipper.zeroCopyCompleted(copied: false)
        metrics.shipper.zeroCopyCompleted(copied: true)

        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        let series = parseExposition(Array(text.utf8))
        let expected: [String: Double] = [
            #"relayd_input_received_records_total{input="syslog-tcp"}"#: 3,
            #"relayd_input_received_bytes_total{input="syslog-tcp"}"#: 300,
            #"relayd_input_routed_records_total{input="syslog-tcp"}"#: 1,
            #"relayd_input_dropped_records_total{input="syslog-tcp",reason="no_route"}"#: 1,
            #"relayd_input_dropped_records_total{input="syslog-tcp",reason="shutdown"}"#: 0,
            #"relayd_input_in_flight_records{input="syslog-tcp"}"#: 1,
            #"relayd_input_frames_truncated_total{input="syslog-tcp"}"#: 1,
            #"relayd_input_frames_bad_prefix_total{input="syslog-tcp"}"#: 2,
            #"relayd_input_connections{input="syslog-tcp"}"#: 1,
            #"relayd_input_connections_accepted_total{input="syslog-tcp"}"#: 2,
            #"relayd_input_connections_rejected_total{input="syslog-tcp",reason="max_connections"}"#: 1,
            #"relayd_input_connections_closed_framing_error_total{input="syslog-tcp"}"#: 1,
            #"relayd_input_received_records_total{input="local"}"#: 0,
            #"relayd_output_received_records_total{output="files"}"#: 5,
            #"relayd_output_received_bytes_total{output="files"}"#: 600,
            #"relayd_output_written_records_total{output="files"}"#: 3,
            #"relayd_output_written_bytes_total{output="files"}"#: 360,
            #"relayd_output_dropped_records_total{output="files",reason="channel_full"}"#: 1,
            #"relayd_output_dropped_records_total{output="files",reason="too_big"}"#: 0,
            #"relayd_output_in_flight_records{output="files"}"#: 1,
            #"relayd_output_connected{output="files"}"#: 1,
            #"relayd_output_rotations_total{output="files"}"#: 1,
            #"relayd_output_writebacks_total{output="files"}"#: 2,
            #"relayd_output_writebacks_total{output="forward"}"#: 0,
            #"relayd_output_errors_total{output="forward",kind="connect"}"#: 1,
            #"relayd_output_reconnects_total{output="forward"}"#: 1,
            #"relayd_output_delivery_delay_seconds_count{output="files"}"#: 1,
            #"relayd_output_delivery_delay_seconds_bucket{output="files",le="0.005"}"#: 1,
            #"relayd_output_delivery_delay_seconds_bucket{output="files",le="0.001"}"#: 0,
            #"relayd_channel_records_written_total{channel="files"}"#: 4,
            #"relayd_channel_records_dropped_full_total{channel="files"}"#: 1,
            #"relayd_channel_subbuffers_produced_total{channel="files"}"#: 2,
            #"relayd_channel_subbuffers_consumed_total{channel="files"}"#: 1,
            #"relayd_channel_subbuffers_overwritten_total{channel="files"}"#: 0,
            #"relayd_channel_subbuffers_corrupt_total{channel="files"}"#: 3,
            #"relayd_channel_writer_waits_total{channel="files"}"#: 7,
            #"relayd_channel_records_lapped_total{channel="files"}"#: 2,
            #"relayd_channel_records_refused_closed_total{channel="files"}"#: 0,
            #"relayd_channel_fill_ratio{channel="files"}"#: 0.125,
            #"relayd_channel_capacity_bytes{channel="files"}"#: 8_388_608,
            #"relayd_shipper_buffers{kind="registered"}"#: 16,
            #"relayd_shipper_buffers{kind="fallback"}"#: 0,
            #"relayd_shipper_zerocopy_sends_total{result="zerocopy"}"#: 3,
            #"relayd_shipper_zerocopy_sends_total{result="copied"}"#: 1,
            "relayd_shipper_zerocopy_copied_ratio": 0.25,
        ]
        for (name, value) in expected {
            #expect(series[name] == value, "\(name)")
        }
        #expect(text.contains("# TYPE relayd_output_dropped_records_total counter"))
        #expect(text.contains("# TYPE relayd_output_in_flight_records gauge"))
        #expect(text.contains("# TYPE relayd_output_delivery_delay_seconds histogram"))
        #expect(text.contains("# HELP relayd_output_written_records_total Records accepted by the destination"))
        #expect(text.contains("# TYPE relayd_output_writebacks_total counter"))
        #expect(text.contains("# HELP relayd_output_writebacks_total File writeback requests"))
        #expect((series["relayd_start_time_seconds"] ?? 0) > 1_600_000_000)

        // A second scrape publishes only what changed.
        output.recordsWritten(1, bytes: 120)
        let again = parseExposition(metrics.exposition())
        #expect(again[#"relayd_output_written_records_total{output="files"}"#] == 4)
        #expect(again[#"relayd_output_in_flight_records{output="files"}"#] == 0)
    }

    @Test func swiftMetricsUsersShareTheRegistry() {
        let metrics = self.makeMetrics()
        let counter = CoreMetrics.Counter(
            label: "library_events_total",
            dimensions: [("kind", "test")],
            factory: metrics.metricsFactory
        )
        counter.increment(by: 2)
        let series = parseExposition(metrics.exposition())
        #expect(series[#"library_events_total{kind="test"}"#] == 2)
    }

    /// received = written + dropped + in_flight in every scrape while producer and consumer threads run.
    @Test func countersReconcileInEveryScrapeUnderConcurrency() async throws {
        let metrics = self.makeMetrics()
        let output = try #require(metrics.output("files"))
        let input = try #require(metrics.input("local"))
        let total = 200_000
        // Records flow producer → consumer through a counter that plays the relay channel (release/acquire).
        let committed = Atomic<Int>(0)
        let done = Atomic<Bool>(false)
        let producer = Thread {
            for index in 0..<total {
                input.recordReceived(bytes: 10)
                output.recordReceived(bytes: 12)
                input.recordRouted(bytes: 10)
                if index % 10 == 9 {
                    output.recordsDropped(bytes: 12, reason: .channelFull)
                } else {
                    committed.wrappingAdd(1, ordering: .releasing)
                }
            }
            done.store(true, ordering: .releasing)
        }
        let consumer = Thread {
            var shipped = 0
            while true {
                let available = committed.load(ordering: .acquiring)
                if available > shipped {
                    let batch = min(available - shipped, 37)
                    output.recordsWritten(batch, bytes: batch * 12)
                    shipped += batch
                } else if done.load(ordering: .acquiring) && committed.load(ordering: .acquiring) == shipped {
                    break
                }
            }
        }
        producer.start()
        consumer.start()
        var scrapes = 0
        while true {
            let finished = !consumer.isExecuting && consumer.isFinished
            let series = parseExposition(metrics.exposition())
            scrapes += 1
            let received = try #require(series[#"relayd_output_received_records_total{output="files"}"#])
            let written = try #require(series[#"relayd_output_written_records_total{output="files"}"#])
            let dropped = OutputDropReason.allCases.reduce(0.0) {
                $0 + (series[#"relayd_output_dropped_records_total{output="files",reason="\#($1.label)"}"#] ?? .nan)
            }
            let inFlight = try #require(series[#"relayd_output_in_flight_records{output="files"}"#])
            #expect(received == written + dropped + inFlight, "scrape \(scrapes)")
            #expect(inFlight >= 0)
            let inputReceived = try #require(series[#"relayd_input_received_records_total{input="local"}"#])
            let routed = try #require(series[#"relayd_input_routed_records_total{input="local"}"#])
            let inputInFlight = try #require(series[#"relayd_input_in_flight_records{input="local"}"#])
            let inputDropped = InputDropReason.allCases.reduce(0.0) {
                $0 + (series[#"relayd_input_dropped_records_total{input="local",reason="\#($1.label)"}"#] ?? .nan)
            }
            #expect(inputReceived == routed + inputDropped + inputInFlight, "scrape \(scrapes)")
            if finished {
                #expect(received == Double(total))
                #expect(written == Double(total - total / 10))
                #expect(dropped == Double(total / 10))
                #expect(inFlight == 0)
                #expect(routed == Double(total))
                break
            }
            try await Task.sleep(for: .milliseconds(1))
        }
        #expect(scrapes > 1)
    }

    @Test func ledgerSnapshotArithmetic() {
        let ledger = RecordLedger(reasons: 3)
        ledger.admit(records: 10, bytes: 1000)
        ledger.complete(records: 4, bytes: 400)
        ledger.drop(records: 1, bytes: 100, reason: 0)
        ledger.drop(records: 2, bytes: 200, reason: 2)
        let snapshot = ledger.snapshot()
        #expect(snapshot.receivedRecords == 10)
        #expect(snapshot.completedRecords == 4)
        #expect(snapshot.droppedRecords == [1, 0, 2])
        #expect(snapshot.droppedTotal == 3)
        #expect(snapshot.droppedBytes == 300)
        #expect(snapshot.inFlightRecords == 3)
    }
}

// MARK: - HTTP server

/// Sends `request` to 127.0.0.1:`port` and returns the whole response (read to EOF).
func httpExchange(port: UInt16, _ request: String, halfClose: Bool = true) throws -> String {
    let fd = try RelaydTestSockets.connectTCP(port: port)
    defer { close(fd) }
    try RelaydTestSockets.sendAll(fd, Array(request.utf8))
    if halfClose { shutdown(fd, Int32(SHUT_WR)) }
    return String(decoding: try RelaydTestSockets.readAll(fd), as: UTF8.self)
}

func httpStatusLine(_ response: String) -> String {
    // "\r\n" is a single Character in Swift, so split on the string.
    response.components(separatedBy: "\r\n").first ?? ""
}

@Suite("Metrics HTTP server")
struct MetricsHTTPServerTests {
    static let loopbackEphemeral = ListenAddress(
        host: "127.0.0.1",
        port: 0,
        family: .ipv4,
        addressBytes: [127, 0, 0, 1]
    )

    func withServer(
        timeout: Duration = .seconds(2),
        healthy: Bool = true,
        maxConnections: Int = 16,
        _ body: (MetricsHTTPServer, RelaydMetrics) throws -> Void
    ) throws {
        let metrics = RelaydMetrics(inputNames: ["in"], outputNames: ["out"])
        let server = try MetricsHTTPServer(
            address: Self.loopbackEphemeral,
            requestTimeout: timeout,
            maxRequestBytes: 1024,
            maxConnections: maxConnections,
            metrics: { metrics.exposition() },
            health: { healthy ? (true, "ok") : (false, "output out disconnected") }
        )
        try server.start()
        defer { server.stop() }
        #expect(server.address.port != 0)
        try body(server, metrics)
    }

    @Test func getMetrics() throws {
        try self.withServer { server, metrics in
            metrics.input("in")?.recordReceived(bytes: 5)
            let response = try httpExchange(
                port: server.address.port,
                "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"
            )
            #expect(httpStatusLine(response) == "HTTP/1.1 200 OK")
            #expect(response.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
            #expect(response.contains("Connection: close\r\n"))
            let parts = response.components(separatedBy: "\r\n\r\n")
            let body = parts.dropFirst().joined(separator: "\r\n\r\n")
            #expect(response.contains("Content-Length: \(body.utf8.count)\r\n"))
            #expect(body.contains(#"relayd_input_received_records_total{input="in"} 1"#))
            #expect(body.contains(#"relayd_output_in_flight_records{output="out"} 0"#))

            // A query string is ignored; HEAD returns headers only.
            let withQuery = try httpExchange(port: server.address.port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n")
            #expect(httpStatusLine(withQuery) == "HTTP/1.1 200 OK")
            let head = try httpExchange(port: server.address.port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(httpStatusLine(head) == "HTTP/1.1 200 OK")
            #expect(head.hasSuffix("\r\n\r\n"))
        }
    }

    @Test func healthz() throws {
        try self.withServer { server, _ in
            let response = try httpExchange(port: server.address.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(httpStatusLine(response) == "HTTP/1.1 200 OK")
            #expect(response.hasSuffix("\r\n\r\nok\n"))
        }
        try self.withServer(healthy: false) { server, _ in
            let response = try httpExchange(port: server.address.port, "GET /healthz HTTP/1.1\r\n\r\n")
            #expect(httpStatusLine(response) == "HTTP/1.1 503 Service Unavailable")
            #expect(response.hasSuffix("output out disconnected\n"))
        }
    }

    @Test(arguments: [
        ("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404 Not Found"),
        ("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        ("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"),
        ("BROKEN\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        ("GET /metrics HTTP/2.0\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        ("GET metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        ("get /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        ("GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        ("GET /metrics HTTP/1.1\n\n", "HTTP/1.1 200 OK"),
    ])
    func errorsAndEdgeCases(request: String, expected: String) throws {
        try self.withServer { server, _ in
            let response = try httpExchange(port: server.address.port, request)
            #expect(httpStatusLine(response) == expected)
        }
    }

    @Test func allowHeaderOn405() throws {
        try self.withServer { server, _ in
            let response = try httpExchange(port: server.address.port, "DELETE /metrics HTTP/1.1\r\n\r\n")
            #expect(response.contains("Allow: GET, HEAD\r\n"))
        }
    }

    @Test func oversizedRequestHead() throws {
        try self.withServer { server, _ in
            let request = "GET /metrics HTTP/1.1\r\nX-Filler: " + String(repeating: "a", count: 2000) + "\r\n\r\n"
            let response = try httpExchange(port: server.address.port, request)
            #expect(httpStatusLine(response) == "HTTP/1.1 431 Request Header Fields Too Large")
        }
    }

    @Test func slowClientTimesOutAndDoesNotBlockTheNextScrape() throws {
        // A deadline (3 s) well past the bound below (2 s): a scrape served only after the slow
        // client's deadline (one connection at a time) misses it. With a 300 ms deadline it
        // could not: serial handling passed too.
        try self.withServer(timeout: .seconds(3)) { server, _ in
            let slow = try RelaydTestSockets.connectTCP(port: server.address.port)
            defer { close(slow) }
            try RelaydTestSockets.sendAll(slow, Array("GET /metr".utf8))
            let started = ContinuousClock.now
            // Served on a connection thread of its own while the slow client waits for its deadline.
            let response = try httpExchange(port: server.address.port, "GET /healthz HTTP/1.1\r\n\r\n")
            #expect(httpStatusLine(response) == "HTTP/1.1 200 OK")
            let took = ContinuousClock.now - started
            #expect(took < .seconds(2), "GET /healthz took \(took) behind a slow client")
            let slowResponse = String(decoding: try RelaydTestSockets.readAll(slow), as: UTF8.self)
            #expect(httpStatusLine(slowResponse) == "HTTP/1.1 408 Request Timeout")
        }
    }

    @Test func idleClientsDoNotBlockScrapes() throws {
        // A request deadline (10 s) far longer than the bound below (2 s, room for a loaded CI
        // host): only concurrent handling answers in time.
        try self.withServer(timeout: .seconds(10)) { server, _ in
            let port = server.address.port
            var idle: [Int32] = []
            defer { for fd in idle { close(fd) } }
            // Connected and silent, and one that sent half a request head.
            idle.append(try RelaydTestSockets.connectTCP(port: port))
            idle.append(try RelaydTestSockets.connectTCP(port: port))
            try RelaydTestSockets.sendAll(idle[1], Array("GET /metr".utf8))
            usleep(100_000)  // let the server accept them
            for path in ["/metrics", "/healthz", "/metrics"] {
                let started = ContinuousClock.now
                let response = try httpExchange(port: port, "GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
                let took = ContinuousClock.now - started
                #expect(httpStatusLine(response) == "HTTP/1.1 200 OK", "GET \(path)")
                #expect(took < .seconds(2), "GET \(path) took \(took) behind idle clients")
            }
        }
    }

    @Test func connectionsBeyondTheLimitWaitForAFreeSlot() throws {
        try self.withServer(timeout: .milliseconds(600), maxConnections: 2) { server, _ in
            let port = server.address.port
            let connected = ContinuousClock.now
            let first = try RelaydTestSockets.connectTCP(port: port)
            defer { close(first) }
            let second = try RelaydTestSockets.connectTCP(port: port)
            defer { close(second) }
            usleep(100_000)  // both accepted: every slot is taken
            let started = ContinuousClock.now
            let response = try httpExchange(port: port, "GET /healthz HTTP/1.1\r\n\r\n")
            let answered = ContinuousClock.now
            let took = answered - started
            #expect(httpStatusLine(response) == "HTTP/1.1 200 OK")
            // Answered once the idle clients' deadlines freed a slot, not before and not much after.
            // The lower bound counts from before the idle clients connected (their deadlines start
            // no earlier), so a test thread that a loaded host starves cannot make it fail.
            #expect(answered - connected >= .milliseconds(600), "served beyond maxConnections after \(answered - connected)")
            #expect(took < .seconds(3), "took \(took)")
            for fd in [first, second] {
                let idleResponse = String(decoding: try RelaydTestSockets.readAll(fd), as: UTF8.self)
                #expect(httpStatusLine(idleResponse) == "HTTP/1.1 408 Request Timeout")
            }
        }
    }

    @Test func stopIsPromptEvenWithAnIdleClientAndRefusesAfterwards() throws {
        let metrics = RelaydMetrics(inputNames: [], outputNames: [])
        let server = try MetricsHTTPServer(
            address: Self.loopbackEphemeral,
            requestTimeout: .seconds(30),
            metrics: { metrics.exposition() }
        )
        try server.start()
        let port = server.address.port
        let idle = try RelaydTestSockets.connectTCP(port: port)
        defer { close(idle) }
        let halfRequest = try RelaydTestSockets.connectTCP(port: port)
        defer { close(halfRequest) }
        try RelaydTestSockets.sendAll(halfRequest, Array("GET /".utf8))
        usleep(50_000)  // let the server pick up the idle connections
        let started = ContinuousClock.now
        server.stop()
        #expect(ContinuousClock.now - started < .seconds(2))
        server.stop()  // idempotent
        #expect(throws: RelaydTestSockets.Failure.self) { _ = try RelaydTestSockets.connectTCP(port: port) }
    }

    @Test func portInUseIsReportedWithAFix() throws {
        let first = try MetricsHTTPServer(address: Self.loopbackEphemeral, metrics: { [] })
        defer { first.stop() }
        var taken = Self.loopbackEphemeral
        taken.port = first.address.port
        #expect {
            _ = try MetricsHTTPServer(address: taken, metrics: { [] })
        } throws: { error in
            guard let error = error as? MetricsServerError else { return false }
            return error.errno == .addressInUse && error.message.contains("choose another daemon.metrics_listen")
        }
    }

    @Test func requestParser() {
        #expect(
            MetricsHTTPServer.parse(ArraySlice("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n".utf8))
                == .request(isHead: false, path: "/metrics")
        )
        #expect(
            MetricsHTTPServer.parse(ArraySlice("HEAD /healthz?v HTTP/1.0\r\n\r\n".utf8))
                == .request(isHead: true, path: "/healthz")
        )
        #expect(MetricsHTTPServer.parse(ArraySlice("PUT / HTTP/1.1\r\n\r\n".utf8)) == .methodNotAllowed)
        #expect(
            MetricsHTTPServer.parse(ArraySlice("GET  /metrics HTTP/1.1\r\n\r\n".utf8))
                != .request(isHead: false, path: "/metrics")
        )
        #expect(MetricsHTTPServer.findHeadEnd(Array("GET / HTTP/1.1\r\n\r\nrest".utf8), from: 0, to: 22) == 18)
    }
}
