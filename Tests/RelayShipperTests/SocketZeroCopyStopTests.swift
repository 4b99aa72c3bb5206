import CRelayLinux  // libc socket constants (SHUT_*, FIONREAD) resolve through it
import Glibc
import Synchronization
import Relay
import RelayShipper
import RelayTestSupport
import Testing

@Suite("Zero-copy sends on connections that are closed", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct SocketZeroCopyStopTests {
    @Test("stop() with a zero-copy send stuck behind a stalled peer returns at its deadline, not after waiting 2 s for notifications")
    func stopWithZeroCopySendStuck() throws {
        let receiver = try StreamReceiver(receiveBuffer: 4096, readDelayMicroseconds: 3_000_000)
        defer { receiver.stop() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "zcstuck", subbufferSize: 65536, subbufferCount: 8, mode: .drop, buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: receiver.port), zeroCopy: .always, sendBufferSize: 4096))])
        try shipper.start()
        // 512 KB: far more than the two small socket buffers hold, so a send stays in flight and
        // its pages stay in our socket's queue (no notification while they are there).
        let line = Array("\(String(repeating: "z", count: 63))\n".utf8)
        for _ in 0..<8192 { channel.write(line) }
        channel.flush()
        let stuck = waitForStats(shipper) { $0.sinks[0].zeroCopySends >= 1 && $0.sinks[0].inFlight >= 2 }
        try #require((stuck?.sinks[0].zeroCopySends ?? 0) >= 1, "SEND_ZC is used (the kernel supports it)")
        channel.close()
        let stopStarted = monotonicSeconds()
        #expect(!shipper.stop(timeout: .milliseconds(300)), "the stalled peer did not take everything")
        let took = monotonicSeconds() - stopStarted
        #expect(took < 1.5, "stop took \(took) s: it waited for notifications of pages still queued on the socket")
        #expect(shipper.hasExited)
    }

    @Test("a peer that half-closes and stops reading, with zero-copy sends: the next connection's sub-buffers are released, not held behind a notification for minutes")
    func zeroCopyDisconnectFromStalledPeer() throws {
        // Connections with small receive buffers, so a send stays in flight.
        let (listener, port) = try loopbackListener()
        defer { close(listener) }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "zchalf", subbufferSize: 65536, subbufferCount: 16, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: port), zeroCopy: .always,
            reconnectDelay: .milliseconds(20)...(.milliseconds(100)), sendBufferSize: 4096))])
        var refused = 0
        let expected = writeSequentialLines(channel, count: 8192, refused: &refused) { i in
            "zc half-close line \(i) \(String(repeating: "z", count: 40 - String(i).count))\n"
        }
        #expect(refused == 0)
        channel.flush()
        try shipper.start()

        // The first peer takes some bytes, half-closes and never reads again, and stays open
        // until the end: what our closed socket still queues for it stays there.
        let first = accept(listener, nil, nil)
        try #require(first >= 0)
        defer { close(first) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var before = 0
        while before < 8192 {
            let n = read(first, &buffer, buffer.count)
            try #require(n > 0)
            before += n
        }
        try #require((waitForStats(shipper) { $0.sinks[0].zeroCopySends >= 1 }?.sinks[0].zeroCopySends ?? 0) >= 1, "SEND_ZC is used")
        shutdown(first, Int32(SHUT_WR))

        let received = ReceivedBytes()
        let second = readNextConnection(on: listener, into: received)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)), "the second peer acknowledged everything and every notification came")
        let readDeadline = monotonicSeconds() + 20
        while received.count < expected.count && monotonicSeconds() < readDeadline { usleep(5000) }
        shutdown(listener, Int32(SHUT_RDWR))
        TestThreads.join(second)
        let intact = received.bytes == expected
        #expect(intact, "the new connection got everything, resent from the start")
        let sink = try #require(shipper.stats()?.sinks[0])
        #expect(sink.reconnects == 1)
        #expect(sink.subbuffers == shipper.stats()?.subbuffersShipped)
    }
}
