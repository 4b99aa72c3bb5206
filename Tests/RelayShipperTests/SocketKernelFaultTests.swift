import CRelayLinux  // libc socket constants resolve through it once it is built with _GNU_SOURCE
import Glibc
import Relay
import RelayShipper
import RelayTestSupport
import Testing

/// Recovery paths run on answers the kernel really gives: ``RelayShipperFaults`` makes the
/// shipper submit operations the kernel refuses, and the sink must recover from the kernel's
/// own completions.
@Suite("Socket sink against refused operations", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct SocketKernelFaultTests {
    @Test("zero-copy sends the kernel refuses (EINVAL): plain sends for every socket from then on, no reconnect, everything arrives once")
    func zeroCopyRefused() throws {
        let first = try StreamReceiver()
        defer { first.stop() }
        let second = try StreamReceiver()
        defer { second.stop() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "zcrefused", subbufferSize: 65536, subbufferCount: 8, mode: .block(), buffers: 1))
        var configuration = RelayShipperConfiguration()
        configuration.faults.refuseZeroCopySends = true
        let shipper = RelayShipper(configuration: configuration, logger: testLogger())
        // Fan-out to two sockets: the refusal on one must switch both to plain sends.
        try shipper.add(channel, sinks: [first.port, second.port].map {
            .socket(RelaySocketSinkConfiguration(endpoint: .tcp(host: "127.0.0.1", port: $0), zeroCopy: .always))
        })
        try shipper.start()
        writeLines(channel, producers: 2, perProducer: 20_000)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)), "a refused zero-copy send must not stall the stream")
        let total = Int(channel.stats().total.bytesWritten)
        for receiver in [first, second] {
            receiver.waitFor(bytes: total, timeout: 5)
            let (records, malformed) = parseLines(receiver.received)
            #expect(malformed == 0)
            expectExactlyOnce(records, producers: 2, perProducer: 20_000)
        }
        let stats = try #require(shipper.stats())
        for sink in stats.sinks {
            #expect(sink.reconnects == 0, "the refusal happens before a byte is sent: the stream is intact, no reconnect")
            #expect(sink.zeroCopySends <= 1, "at most the send in flight when the kernel first refused; \(sink.zeroCopySends) tried")
            #expect(sink.zeroCopyCopied == 0, "a refused send moved nothing and is not counted as copied")
            #expect(sink.subbuffers == stats.subbuffersShipped)
        }
        #expect(stats.sinks.map(\.zeroCopySends).reduce(0, +) >= 1, "the fault ran: some zero-copy send was refused")
    }

    @Test("a peer-liveness poll that fails (EBADF) is armed again: a peer that closes an idle connection is noticed and the sink reconnects")
    func failedPeerPollIsRearmed() throws {
        let (listener, port) = try loopbackListener()
        defer { close(listener) }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "pollfault", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        var configuration = RelayShipperConfiguration()
        configuration.faults.failingPeerPolls = 1
        let shipper = RelayShipper(configuration: configuration, logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: port), zeroCopy: .never, reconnectDelay: .milliseconds(10)...(.milliseconds(50))))])
        try shipper.start()

        // The first connection gets the first batch, all of which the peer reads and so
        // acknowledges: after that nothing is outstanding, and only the liveness poll (whose
        // first arming failed) can notice the peer going away.
        let received = ReceivedBytes()
        var refused = 0
        let before = writeSequentialLines(channel, count: 200, refused: &refused) { "before \($0)\n" }
        channel.flush()
        let connection = accept(listener, nil, nil)
        try #require(connection >= 0)
        var buffer = [UInt8](repeating: 0, count: 65536)
        let readDeadline = monotonicSeconds() + 20
        var firstBytes: [UInt8] = []
        while firstBytes.count < before.count && monotonicSeconds() < readDeadline {
            let n = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { firstBytes += buffer[..<n] } else { usleep(2000) }
        }
        #expect(firstBytes == before)
        let acknowledged = waitForStats(shipper) { $0.sinks[0].subbuffers >= 1 && $0.sinks[0].subbuffers == $0.subbuffersShipped }
        try #require(acknowledged != nil, "the first batch was acknowledged")
        close(connection)

        // No new data: only the re-armed poll can make the sink reconnect.
        var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pfd, 1, 10_000) == 1, "the sink noticed the closed connection and connected again, with nothing to send")
        let second = readNextConnection(on: listener, into: received)
        let after = writeSequentialLines(channel, count: 200, refused: &refused) { "after \($0)\n" }
        #expect(refused == 0)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)))
        let deadline = monotonicSeconds() + 20
        while received.count < after.count && monotonicSeconds() < deadline { usleep(5000) }
        shutdown(listener, Int32(SHUT_RDWR))
        TestThreads.join(second)
        #expect(received.bytes == after, "the new connection got what was written after the reconnect")
        #expect(shipper.stats()?.sinks[0].reconnects == 1)
    }
}
