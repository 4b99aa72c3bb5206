import CRelayLinux  // the peer-gone poll mask (POLLRDHUP needs _GNU_SOURCE)
import Glibc
import Relay
import RelayShipper
import RelayTestSupport
import Testing

/// How a peer saw the shipper's side of a connection end.
struct PeerView {
    /// Everything the peer read, in order.
    var bytes: [UInt8] = []
    /// The last `read` result: 0 for an orderly end (FIN), -errno for an error (`-ECONNRESET`).
    var end = 1
    /// `tcpi_state` of the peer's TCP socket once the shipper closed: `TCP_CLOSE_WAIT` (8) after
    /// a FIN, `TCP_CLOSE` (7) after a reset; nil for a Unix socket.
    var state: UInt8? = nil
    /// `SO_ERROR` of the peer's socket, read before its data (`EPIPE` after a reset in
    /// CLOSE_WAIT, `ECONNRESET` after one in ESTABLISHED or on a Unix socket closed with unread
    /// bytes).
    var error: Int32 = 0
}

@Suite("Socket sink: connections end in order (FIN), not with a reset", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct SocketOrderlyCloseTests {
    /// `TCP_INFO` and the states of its first byte (`tcpi_state`), from <netinet/tcp.h>.
    static let tcpInfo: Int32 = 11
    static let stateClose: UInt8 = 7
    static let stateCloseWait: UInt8 = 8

    /// Ships about 256 KB with `zeroCopy` to a peer on 127.0.0.1 (or on a Unix socket, `unix`),
    /// stops the shipper and returns the bytes written and what the peer saw.
    ///
    /// - The peer first writes `greeting` to the shipper, if any (the shipper never reads it).
    /// - A `slowPeer` has small socket buffers and reads slowly on a thread of its own, so
    ///   `stop()` is called with a send in flight (with zero-copy, its notification to come) and
    ///   drains; otherwise the peer reads nothing until `stop()` returned (every byte waits in
    ///   its receive queue, which a reset can make unreadable on some peers). A Unix peer must
    ///   be slow: there what it has not read is not acknowledged, and the drain waits for it.
    static func shipAndStop(
        zeroCopy: RelaySocketSinkConfiguration.ZeroCopy, greeting: [UInt8] = [], slowPeer: Bool = false, unix: Bool = false, name: String
    ) throws -> (expected: [UInt8], peer: PeerView, stats: RelaySinkStats?) {
        let directory = TemporaryDirectory(prefix: "relay-orderly-close")
        defer { directory.remove() }
        let listener: Int32
        let endpoint: RelaySocketSinkConfiguration.Endpoint
        if unix {
            let path = directory.file("peer.sock")
            listener = try StreamReceiver.unixListener(path)
            endpoint = .unix(path: path)
        } else {
            // Without a slow peer: a receive buffer that holds everything unread, so the drain
            // completes without the peer reading.
            let (fd, port) = try StreamReceiver.tcpListener(receiveBuffer: slowPeer ? 4096 : 2 << 20)
            listener = fd
            endpoint = .tcp(host: "127.0.0.1", port: port)
        }
        defer { close(listener) }
        let channel = try RelayChannel(RelayChannelConfiguration(name: name, subbufferSize: 65536, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: endpoint, zeroCopy: zeroCopy, sendBufferSize: slowPeer ? 4096 : nil))])
        try shipper.start()
        var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        try #require(poll(&pfd, 1, 10_000) == 1, "the shipper connects")
        let fd = accept(listener, nil, nil)
        try #require(fd >= 0)
        defer { close(fd) }
        if !greeting.isEmpty {
            try #require(write(fd, greeting, greeting.count) == greeting.count)
        }
        let line = { (i: Int) in "orderly close line \(i) \(String(repeating: "o", count: 40 - String(i).count))\n" }
        let expected = (0..<4096).flatMap { Array(line($0).utf8) }
        let received = ReceivedBytes()
        var reader: TestThreads.Handle? = nil
        if slowPeer {
            // Reads exactly what is shipped, 4 KB every 2 ms, and leaves the end of the stream to
            // the checks below.
            reader = TestThreads.spawn {
                var chunk = [UInt8](repeating: 0, count: 4096)
                while received.count < expected.count {
                    let n = read(fd, &chunk, min(chunk.count, expected.count - received.count))
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { return }
                    received.append(chunk[0..<n])
                    usleep(2000)
                }
            }
        }
        var refused = 0
        let written = writeSequentialLines(channel, count: 4096, refused: &refused, line)
        #expect(refused == 0)
        let same = written == expected
        try #require(same, "the lines written are the ones expected")
        channel.close()
        if slowPeer {
            #expect(received.count < expected.count, "stop() is called before the peer read everything")
        }
        #expect(shipper.stop(timeout: .seconds(20)), "the peer acknowledged everything (and every notification came)")
        if let reader { TestThreads.join(reader) }

        var peer = try Self.observeEnd(fd, tcp: !unix)
        peer.bytes = received.bytes + peer.bytes
        return (expected, peer, shipper.stats()?.sinks[0])
    }

    /// Waits for the shipper to close its side of `fd` (FIN or reset), then a moment for a reset
    /// that follows a FIN; returns the state and error of the peer's socket, and what is left to
    /// read up to its end.
    static func observeEnd(_ fd: Int32, tcp: Bool) throws -> PeerView {
        var peer = PeerView()
        var pfd = pollfd(fd: fd, events: Int16(truncatingIfNeeded: CRelayLinux_poll_peer_gone_mask()), revents: 0)
        #expect(poll(&pfd, 1, 5000) == 1, "the shipper closed the connection")
        usleep(100_000)
        if tcp {
            var info = [UInt8](repeating: 0, count: 256)
            var infoLength = socklen_t(info.count)
            try #require(getsockopt(fd, Int32(IPPROTO_TCP), Self.tcpInfo, &info, &infoLength) == 0)
            peer.state = info[0]
        }
        var soError: Int32 = 0
        var soErrorLength = socklen_t(MemoryLayout<Int32>.size)
        try #require(getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &soErrorLength) == 0)
        peer.error = soError
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                peer.end = n == 0 ? 0 : -Int(errno)
                break
            }
            peer.bytes += chunk[0..<n]
        }
        return peer
    }

    static func expectOrderly(_ peer: PeerView, expected: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(peer.state == nil || peer.state == Self.stateCloseWait,
                "the peer's socket is in CLOSE_WAIT (a FIN came), not CLOSE (\(Self.stateClose): reset); it is in state \(peer.state ?? 0)",
                sourceLocation: sourceLocation)
        #expect(peer.error == 0, "no error on the peer's socket (EPIPE or ECONNRESET: a reset); got errno \(peer.error)", sourceLocation: sourceLocation)
        #expect(peer.end == 0, "the peer's last read returns 0 (end of stream), not -errno; got \(peer.end)", sourceLocation: sourceLocation)
        #expect(peer.bytes.count == expected.count, "every byte arrives: \(peer.bytes.count) of \(expected.count)", sourceLocation: sourceLocation)
        let intact = peer.bytes == expected
        #expect(intact, "byte-identical, in order", sourceLocation: sourceLocation)
    }

    @Test("zero-copy sends (SEND_ZC): a drained stop ends the connection with a FIN, every byte readable at the peer")
    func zeroCopy() throws {
        let (expected, peer, stats) = try Self.shipAndStop(zeroCopy: .always, name: "finzc")
        let sink = try #require(stats)
        try #require(sink.zeroCopySends >= 1, "SEND_ZC is used (the kernel supports it)")
        #expect(sink.zeroCopyNotifications == sink.zeroCopySends, "every notification came before the close")
        Self.expectOrderly(peer, expected: expected)
    }

    @Test("plain sends: a drained stop ends the connection with a FIN, every byte readable at the peer")
    func plainSends() throws {
        let (expected, peer, stats) = try Self.shipAndStop(zeroCopy: .never, name: "finplain")
        #expect(stats?.zeroCopySends == 0)
        Self.expectOrderly(peer, expected: expected)
    }

    @Test("stop() while a slow peer still reads (a send in flight, with zero-copy its notification to come): the drain waits, then ends with a FIN", arguments: [
        RelaySocketSinkConfiguration.ZeroCopy.always, .never,
    ])
    func slowPeer(zeroCopy: RelaySocketSinkConfiguration.ZeroCopy) throws {
        let (expected, peer, stats) = try Self.shipAndStop(zeroCopy: zeroCopy, slowPeer: true, name: "finslow")
        let sink = try #require(stats)
        if zeroCopy == .always {
            try #require(sink.zeroCopySends >= 1, "SEND_ZC is used (the kernel supports it)")
            #expect(sink.zeroCopyNotifications == sink.zeroCopySends, "every notification came before the close")
        }
        Self.expectOrderly(peer, expected: expected)
    }

    @Test("a TCP peer that wrote to the shipper (bytes the shipper never reads): a drained stop still ends with a FIN, not a reset", arguments: [
        RelaySocketSinkConfiguration.ZeroCopy.always, .never,
    ])
    func peerWrote(zeroCopy: RelaySocketSinkConfiguration.ZeroCopy) throws {
        let greeting = Array("hello from the peer\n".utf8)
        let (expected, peer, stats) = try Self.shipAndStop(zeroCopy: zeroCopy, greeting: greeting, name: "finspoke")
        if zeroCopy == .always {
            let sink = try #require(stats)
            try #require(sink.zeroCopySends >= 1, "SEND_ZC is used (the kernel supports it)")
            #expect(sink.zeroCopyNotifications == sink.zeroCopySends)
        }
        Self.expectOrderly(peer, expected: expected)
    }

    @Test("a Unix-socket peer that wrote to the shipper: a drained stop ends the stream (read returns 0), not with ECONNRESET")
    func unixPeerWrote() throws {
        let greeting = Array("hello from the peer\n".utf8)
        let (expected, peer, _) = try Self.shipAndStop(zeroCopy: .automatic, greeting: greeting, slowPeer: true, unix: true, name: "finunix")
        Self.expectOrderly(peer, expected: expected)
    }

    @Test("a peer that wrote to the shipper and then half-closed: the sink's disconnect ends the connection with a FIN, not a reset")
    func disconnectAfterPeerWrote() throws {
        let (listener, port) = try StreamReceiver.tcpListener()
        defer { close(listener) }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "findisc", subbufferSize: 65536, subbufferCount: 4, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: port), zeroCopy: .never, reconnectDelay: .seconds(5)...(.seconds(5))))])
        try shipper.start()
        defer { _ = shipper.stop(timeout: .zero) }
        var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        try #require(poll(&pfd, 1, 10_000) == 1, "the shipper connects")
        let fd = accept(listener, nil, nil)
        try #require(fd >= 0)
        defer { close(fd) }
        let greeting = Array("hello from the peer\n".utf8)
        try #require(write(fd, greeting, greeting.count) == greeting.count)
        // The sink's peer poll sees the half-close and disconnects (it reconnects only after 5 s).
        shutdown(fd, Int32(SHUT_WR))
        let peer = try Self.observeEnd(fd, tcp: true)
        #expect(peer.error == 0, "no error on the peer's socket (ECONNRESET: a reset); got errno \(peer.error)")
        #expect(peer.end == 0, "the peer's read returns 0 (end of stream), not -errno; got \(peer.end)")
        #expect(peer.bytes.isEmpty)
        #expect((shipper.stats()?.sinks[0].errors ?? 0) >= 1, "the sink disconnected")
    }
}
