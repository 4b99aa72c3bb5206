import Glibc
import Relay
import RelayShipper
import RelayTestSupport
import Testing

@Suite("Socket sink acknowledgement timer", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct SocketAckBackoffTests {
    @Test("a peer that stops reading costs the ring thread a few wake-ups a second, and delivery resumes promptly when it reads again")
    func stalledPeerBacksOff() throws {
        // The peer accepts but does not read, with a tiny receive buffer: what the shipper sends
        // stays unacknowledged in its socket buffer, and only the acknowledgement timer watches it.
        let peer = try StalledPeer(receiveBuffer: 2048)
        defer { peer.reset() }
        let channel = try RelayChannel(RelayChannelConfiguration(
            name: "ackstall", subbufferSize: 16384, subbufferCount: 8, mode: .drop, buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: peer.port), zeroCopy: .never, sendBufferSize: 1 << 20))])
        try shipper.start()
        defer { _ = shipper.stop(timeout: .seconds(5)) }
        try #require(peer.accept())

        var refused = 0
        let expected = writeSequentialLines(channel, count: 96, refused: &refused) { i in
            "ack stall \(i) \(String(repeating: "a", count: 986 - String(i).count))\n"
        }
        #expect(refused == 0)
        channel.flush()  // everything sealed: no switch timer runs during the stall
        let sent = waitForStats(shipper) { $0.sinks[0].sentSubbuffers == $0.subbuffersShipped && $0.subbuffersShipped >= 6 }
        try #require(sent?.sinks[0].sentSubbuffers == sent?.subbuffersShipped)
        #expect(sent?.sinks[0].subbuffers ?? 0 < sent?.subbuffersShipped ?? 0, "the peer acknowledged everything without reading")

        // The stall: only the acknowledgement timer wakes the ring thread. Stats are read only at
        // both ends of the second (reading them does not wake the loop).
        usleep(200_000)
        let before = try #require(shipper.stats())
        usleep(1_000_000)
        let after = try #require(shipper.stats())
        let wakeUps = after.loopIterations - before.loopIterations
        // Polling every 2 ms took ~500; backing off to 100 ms takes ~15 here.
        #expect(wakeUps <= 40, "\(wakeUps) loop iterations in one second of a stalled peer")
        #expect(after.sinks[0].subbuffers == before.sinks[0].subbuffers, "nothing was acknowledged during the stall")

        // The peer reads again: the rest is acknowledged and released within the longest delay.
        let resumed = monotonicSeconds()
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while received.count < expected.count && monotonicSeconds() < resumed + 20 {
            var descriptor = pollfd(fd: peer.connection, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 100) > 0 else { continue }
            let n = read(peer.connection, &buffer, buffer.count)
            guard n > 0 else { break }
            received += buffer[0..<n]
        }
        #expect(received == expected)
        let released = waitForStats(shipper, timeout: 10) { $0.subbuffersReleased == $0.subbuffersShipped }
        let took = monotonicSeconds() - resumed
        #expect(released?.subbuffersReleased == released?.subbuffersShipped)
        #expect(took < 1.0, "delivery resumed \(took) s after the peer read again")
    }

    @Test("the timer's delay doubles up to 2 ms, then follows a quarter of the stall up to 100 ms, and never exceeds that")
    func delays() {
        let ms: UInt64 = 1_000_000
        #expect(SocketSinkTesting.nextAckPollDelay(after: 50_000, stalledFor: 50_000) == 100_000)
        #expect(SocketSinkTesting.nextAckPollDelay(after: 1_600_000, stalledFor: 3 * ms) == 2 * ms)
        #expect(SocketSinkTesting.nextAckPollDelay(after: 2 * ms, stalledFor: 6 * ms) == 2 * ms)
        #expect(SocketSinkTesting.nextAckPollDelay(after: 2 * ms, stalledFor: 40 * ms) == 10 * ms)
        #expect(SocketSinkTesting.nextAckPollDelay(after: 10 * ms, stalledFor: 300 * ms) == 75 * ms)
        #expect(SocketSinkTesting.nextAckPollDelay(after: 75 * ms, stalledFor: 10_000 * ms) == 100 * ms)
        #expect(SocketSinkTesting.nextAckPollDelay(after: UInt64.max / 2, stalledFor: UInt64.max) == 100 * ms)
        // A stall of one second from its start: the number of samples the timer takes.
        var now: UInt64 = 0
        var delay: UInt64 = 50_000
        var samples = 0
        while now < 1_000 * ms {
            now += delay
            samples += 1
            delay = SocketSinkTesting.nextAckPollDelay(after: delay, stalledFor: now)
        }
        #expect(samples < 40, "\(samples) samples in the first second of a stall")
    }
}
