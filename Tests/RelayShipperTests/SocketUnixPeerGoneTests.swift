import CRelayLinux  // libc socket constants (SHUT_*, FIONREAD) resolve through it
import Glibc
import Relay
import RelayShipper
import RelayTestSupport
import Synchronization
import Testing

@Suite("Socket sink on Unix sockets", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct SocketUnixPeerGoneTests {
    @Test("a Unix peer closed with unread data: its unread bytes are not taken for acknowledged, the next connection gets them all")
    func unixPeerClosesWithUnreadData() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("gone.sock")
        let listener = try StreamReceiver.unixListener(path)
        defer { close(listener) }

        let channel = try RelayChannel(RelayChannelConfiguration(name: "unixgone", subbufferSize: 16384, subbufferCount: 64, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .unix(path: path), zeroCopy: .never,
            reconnectDelay: .milliseconds(20)...(.milliseconds(100)), sendBufferSize: 65536))])
        // 512 KiB queued before the connection: its first send is one batch of all of it, far
        // more than the socket holds, so it stays in flight, partly done.
        var refused = 0
        let expected = writeSequentialLines(channel, count: 8192, refused: &refused) { i in
            "unix-gone line \(i) \(String(repeating: "u", count: 44 - String(i).count))\n"
        }
        #expect(refused == 0)
        channel.flush()
        try shipper.start()

        let first = accept(listener, nil, nil)
        try #require(first >= 0)
        // Wait until part of the send reached this socket's queue (unread), then die without
        // reading any of it: the kernel frees those bytes, and the sender's SIOCOUTQ drops to
        // zero although nothing was read.
        let deadline = monotonicSeconds() + 20
        var queued: Int32 = 0
        while monotonicSeconds() < deadline {
            _ = ioctl(first, UInt(FIONREAD), &queued)
            if queued >= 32768 { break }
            usleep(2000)
        }
        try #require(queued >= 32768, "the shipper's send reached the peer")
        close(first)

        let received = ReceivedBytes()
        let second = readNextConnection(on: listener, into: received)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)), "everything was read by the second peer")
        let readDeadline = monotonicSeconds() + 20
        while received.count < expected.count && monotonicSeconds() < readDeadline { usleep(5000) }
        shutdown(listener, Int32(SHUT_RDWR))
        TestThreads.join(second)
        let got = received.bytes
        #expect(got.count == expected.count, "the second peer got \(got.count) of \(expected.count) bytes")
        let intact = got == expected  // not in the expectation: it would print half a megabyte
        #expect(intact, "nothing the first peer left unread was taken for delivered")
        #expect(shipper.stats()?.sinks[0].reconnects == 1)
    }

    @Test("zero copy set to always on a Unix socket (which has no SEND_ZC): plain sends, everything arrives")
    func unixWithZeroCopyAlways() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let receiver = try StreamReceiver(unixPath: dir.file("zc.sock"))
        defer { receiver.stop() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "unixzc", subbufferSize: 65536, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .unix(path: dir.file("zc.sock")), zeroCopy: .always, reconnectDelay: .milliseconds(10)...(.milliseconds(50))))])
        try shipper.start()
        var refused = 0
        let expected = writeSequentialLines(channel, count: 4096, refused: &refused) { i in
            "unix zc line \(i) \(String(repeating: "a", count: i % 30))\n"
        }
        #expect(refused == 0)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)), "everything was sent and read")
        receiver.waitFor(bytes: expected.count, timeout: 20)
        let intact = receiver.received == expected
        #expect(intact, "\(receiver.receivedCount) of \(expected.count) bytes, in order")
        let sink = try #require(shipper.stats()?.sinks[0])
        #expect(sink.errors == 0, "no send failed")
        #expect(sink.reconnects == 0)
    }
}
