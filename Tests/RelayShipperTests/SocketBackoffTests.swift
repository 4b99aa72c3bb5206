import Glibc
import Relay
import RelayShipper
import RelayTestSupport
import Synchronization
import Testing

/// A TCP listener on 127.0.0.1 that either resets every connection as soon as it accepts it
/// (``Mode/flapping``: a load balancer with no healthy backend) or reads its connections
/// like a healthy receiver (``Mode/healthy``). The listening socket stays bound throughout,
/// so a switch of mode never makes a connect fail. Its small receive buffer means the
/// kernel of a flapping connection cannot acknowledge a whole 64 KiB sub-buffer before the
/// reset.
final class FlappingPeer: @unchecked Sendable {
    enum Mode: Int { case flapping = 0, healthy = 1 }

    let port: Int
    private let listener: Int32
    private let mode = Atomic<Int>(Mode.flapping.rawValue)
    private let stopFlag = Atomic<Bool>(false)
    private let state = RelayMutex<State>(State())
    private var thread: TestThreads.Handle?

    private struct State {
        var accepts: [Double] = []
        var healthyClosedAt: Double? = nil
        var healthyAcceptedAt: Double? = nil
        var received: [UInt8] = []
    }

    init() throws {
        (self.listener, self.port) = try loopbackListener(backlog: 64)
        self.thread = TestThreads.spawn { [self] in self.loop() }
    }

    func set(_ mode: Mode) { self.mode.store(mode.rawValue, ordering: .relaxed) }

    /// When each connection was accepted (monotonic seconds).
    var accepts: [Double] { self.state.withLock { $0.accepts } }
    var received: [UInt8] { self.state.withLock { $0.received } }
    var healthyAcceptedAt: Double? { self.state.withLock { $0.healthyAcceptedAt } }
    var healthyClosedAt: Double? { self.state.withLock { $0.healthyClosedAt } }

    private func loop() {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !self.stopFlag.load(ordering: .relaxed) {
            var pfd = pollfd(fd: self.listener, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 20) <= 0 { continue }
            let conn = accept(self.listener, nil, nil)
            if conn < 0 { continue }
            let now = monotonicSeconds()
            self.state.withLock { $0.accepts.append(now) }
            if self.mode.load(ordering: .relaxed) == Mode.flapping.rawValue {
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                setsockopt(conn, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                close(conn)
                continue
            }
            self.state.withLock { $0.healthyAcceptedAt = now }
            // Healthy: read until the peer closes, or until told to flap again (then close).
            while !self.stopFlag.load(ordering: .relaxed) {
                if self.mode.load(ordering: .relaxed) == Mode.flapping.rawValue {
                    self.state.withLock { $0.healthyClosedAt = monotonicSeconds() }
                    break
                }
                var cfd = pollfd(fd: conn, events: Int16(POLLIN), revents: 0)
                if poll(&cfd, 1, 10) <= 0 { continue }
                let n = chunk.withUnsafeMutableBytes { recv(conn, $0.baseAddress, $0.count, 0) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                self.state.withLock { $0.received.append(contentsOf: chunk[0..<n]) }
            }
            close(conn)
        }
    }

    func stop() {
        self.stopFlag.store(true, ordering: .relaxed)
        if let thread = self.thread { TestThreads.join(thread) }
        self.thread = nil
        close(self.listener)
    }
}

@Suite("Socket sink reconnect backoff", .serialized, .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct SocketBackoffTests {
    /// A block channel of 64 KiB sub-buffers holding 128 KiB of lines (not yet
    /// shipped), and their bytes.
    static func channelWithBacklog(_ name: String) throws -> (RelayChannel, [UInt8]) {
        let channel = try RelayChannel(RelayChannelConfiguration(name: name, subbufferSize: 65536, subbufferCount: 8, mode: .block(), buffers: 1))
        var refused = 0
        let expected = writeSequentialLines(channel, count: 2 * 65536 / 64, refused: &refused) { i in
            "backoff \(i) \(String(repeating: "b", count: 54 - String(i).count))\n"
        }
        #expect(refused == 0)
        channel.flush()
        return (channel, expected)
    }

    static func shipper(_ channel: RelayChannel, port: Int, longestDelay: Duration = .milliseconds(500)) throws -> RelayShipper {
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: port), zeroCopy: .never,
            reconnectDelay: .milliseconds(10)...longestDelay))])
        return shipper
    }

    @Test("a peer that accepts and resets at once: reconnects back off exponentially instead of at the lower bound")
    func flappingPeerBacksOff() throws {
        let peer = try FlappingPeer()
        defer { peer.stop() }
        let (channel, _) = try Self.channelWithBacklog("flap")
        let shipper = try Self.shipper(channel, port: peer.port)
        let started = monotonicSeconds()
        try shipper.start()
        usleep(1_500_000)
        let accepted = peer.accepts.filter { $0 - started <= 1.5 }.count
        let stats = try #require(waitForStats(shipper) { _ in true })
        channel.close()
        _ = shipper.stop(timeout: .milliseconds(100))
        // 10, 20, 40, … 500 ms apart: about 8 connections in 1.5 s. Resetting the backoff at
        // every connect made it one every ~10 ms (well over 100).
        print("flapping peer: \(accepted) connections in 1.5 s, resent sub-buffers \(stats.sinks[0].resentSubbuffers)")
        #expect(accepted >= 3, "the sink kept retrying")
        #expect(accepted <= 20, "\(accepted) connections in 1.5 s: the backoff was reset by every connect")
    }

    @Test("after flapping, a healthy peer gets everything; once it proved healthy, the next disconnect retries from the lower bound")
    func healthyPeerResetsBackoff() throws {
        let peer = try FlappingPeer()
        defer { peer.stop() }
        let (channel, expected) = try Self.channelWithBacklog("flap-heal")
        // Backoff up to 1.5 s: a sink that wrongly kept its backoff would wait about 1.5 s before its
        // first reconnect, far from the 0.6 s bound below even on a loaded host.
        let shipper = try Self.shipper(channel, port: peer.port, longestDelay: .milliseconds(1500))
        try shipper.start()
        usleep(2_000_000)  // the backoff grows to 1.28 s (10, 20, … 640 ms apart), the next step 1.5 s
        peer.set(.healthy)
        let deadline = monotonicSeconds() + 20
        while peer.received.count < expected.count && monotonicSeconds() < deadline { usleep(5000) }
        #expect(peer.received == expected, "the healthy connection got every held sub-buffer, whole")
        let acked = waitForStats(shipper) { $0.sinks[0].bytes == UInt64(expected.count) }
        #expect(acked?.sinks[0].bytes == UInt64(expected.count), "the peer acknowledged everything")
        // Stay up long enough to count as healthy (the longest delay, 1.5 s), then close it and flap again.
        let acceptedAt = try #require(peer.healthyAcceptedAt)
        let upUntil = acceptedAt + 1.7
        if monotonicSeconds() < upUntil { usleep(UInt32((upUntil - monotonicSeconds()) * 1_000_000)) }
        peer.set(.flapping)
        let closeDeadline = monotonicSeconds() + 10
        while peer.healthyClosedAt == nil && monotonicSeconds() < closeDeadline { usleep(1000) }
        let closedAt = try #require(peer.healthyClosedAt)
        usleep(700_000)
        let after = peer.accepts.filter { $0 > closedAt }
        channel.close()
        #expect(shipper.stop(timeout: .seconds(10)), "everything was acknowledged")
        let first = try #require(after.first, "the sink reconnected")
        // The lower bound is 10 ms; the backoff had reached 1.28 s before the healthy peer.
        #expect(first - closedAt < 0.6, "first reconnect \(Int((first - closedAt) * 1000)) ms after the close")
        #expect(after.count >= 3, "then backs off again from the lower bound (10, 20, 40 ms …)")
    }
}
