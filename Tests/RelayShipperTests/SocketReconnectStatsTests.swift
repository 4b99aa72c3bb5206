import CRelayLinux  // libc socket constants (SHUT_*) resolve through it
import Glibc
import Relay
import RelayShipper
import RelayTestSupport
import Synchronization
import Testing

@Suite("Socket sink stats across reconnects", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct SocketReconnectStatsTests {
    @Test("after a reset peer, the resent sub-buffers are not counted twice as sent or reusable")
    func watermarksAfterResend() throws {
        let stalled = try StalledPeer()
        let port = stalled.port
        let channel = try RelayChannel(RelayChannelConfiguration(name: "resend-stats", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: port), zeroCopy: .never, reconnectDelay: .milliseconds(10)...(.milliseconds(50)),
            sendBufferSize: 1 << 20))])
        try shipper.start()
        try #require(stalled.accept())
        // 6 sub-buffers: all fit in our send buffer (sent), few in the stalled peer's window.
        var expected: [UInt8] = []
        let lines = 6 * 16384 / 64
        for i in 0..<lines {
            var line = Array("r \(i) ".utf8)
            line += [UInt8](repeating: 0x72, count: 63 - line.count) + [0x0A]
            #expect(channel.write(line) == .written)
            expected += line
        }
        channel.flush()
        let during = waitForStats(shipper) { $0.sinks[0].sentSubbuffers >= 4 }
        try #require((during?.sinks[0].sentSubbuffers ?? 0) >= 4)
        #expect((during?.sinks[0].subbuffers ?? 0) < (during?.sinks[0].sentSubbuffers ?? 0), "sent but not yet acknowledged")
        stalled.reset()
        let receiver = try StreamReceiver(tcpPort: port)
        defer { receiver.stop() }
        channel.close()
        #expect(shipper.stop(timeout: .seconds(5)))
        let stats = try #require(shipper.stats())
        let sink = stats.sinks[0]
        #expect(sink.reconnects == 1)
        #expect(sink.resentSubbuffers > 0)
        #expect(sink.subbuffers == stats.subbuffersShipped)
        #expect(sink.sentSubbuffers == sink.subbuffers, "sent watermark \(sink.sentSubbuffers) beyond the \(sink.subbuffers) sub-buffers there are")
        #expect(sink.reusableSubbuffers == sink.subbuffers, "reusable watermark \(sink.reusableSubbuffers) beyond \(sink.subbuffers)")
        let last = Array("r \(lines - 1) ".utf8)
        let readDeadline = monotonicSeconds() + 20
        while monotonicSeconds() < readDeadline && !receiver.received.suffix(64).starts(with: last) { usleep(5000) }
        let tail = receiver.received
        #expect(!tail.isEmpty && expected.suffix(tail.count).elementsEqual(tail), "the new connection gets the rest of the stream")
    }

    @Test("a peer that half-closes while a batched send is in flight: the sub-buffers that send reached count as resent")
    func resentCountsTheSendInFlight() throws {
        // Small receive buffers: the first send, one batch of every queued sub-buffer, stays in flight.
        let (listener, port) = try loopbackListener()
        defer { close(listener) }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "resent-inflight", subbufferSize: 65536, subbufferCount: 16, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: port), zeroCopy: .never,
            reconnectDelay: .milliseconds(20)...(.milliseconds(100)), sendBufferSize: 4096))])
        var refused = 0
        let expected = writeSequentialLines(channel, count: 8192, refused: &refused) { i in
            "resent line \(i) \(String(repeating: "r", count: 44 - String(i).count))\n"
        }
        #expect(refused == 0)
        channel.flush()
        try shipper.start()

        // The first peer reads more than one sub-buffer's worth, then half-closes: the sink
        // disconnects with that send still in flight.
        let first = accept(listener, nil, nil)
        try #require(first >= 0)
        defer { close(first) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var read1 = 0
        while read1 < 100_000 {
            let n = read(first, &buffer, buffer.count)
            try #require(n > 0)
            read1 += n
        }
        shutdown(first, Int32(SHUT_WR))
        let received = ReceivedBytes()
        let second = readNextConnection(on: listener, into: received)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)))
        let readDeadline = monotonicSeconds() + 20
        while received.count < expected.count && monotonicSeconds() < readDeadline { usleep(5000) }
        shutdown(listener, Int32(SHUT_RDWR))
        TestThreads.join(second)
        let intact = received.bytes == expected
        #expect(intact, "the new connection got everything, from the start")
        let stats = try #require(shipper.stats())
        let sink = stats.sinks[0]
        #expect(sink.reconnects == 1)
        // The first peer read over 100 000 bytes: at least the first two sub-buffers (65 472
        // content bytes each) went out on the first connection, and went out again.
        #expect(sink.resentSubbuffers >= 2, "resent \(sink.resentSubbuffers) after \(read1) bytes reached the first peer")
        #expect(sink.resentSubbuffers <= stats.subbuffersShipped)
    }
}
