import Glibc
import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Synchronization
import Testing

@Suite("Socket sink", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct SocketSinkTests {
    @Test("TCP on 127.0.0.1: everything arrives byte-identical, in order")
    func tcp() throws {
        let receiver = try StreamReceiver()
        defer { receiver.stop() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "tcp", subbufferSize: 65536, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(endpoint: .tcp(host: "127.0.0.1", port: receiver.port)))])
        try shipper.start()
        var refused = 0
        let expected = writeSequentialLines(channel, count: 30_000, refused: &refused) { i in
            "tcp line \(i) \(String(repeating: "q", count: i % 40))\n"
        }
        #expect(refused == 0)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)))
        receiver.waitFor(bytes: expected.count, timeout: 20)
        #expect(receiver.received == expected)
        #expect(shipper.stats()?.sinks[0].bytes == UInt64(expected.count))
    }

    @Test("sub-buffers queued behind the send in flight leave in SENDMSG batches: byte-identical, in order")
    func batchedSends() throws {
        let receiver = try StreamReceiver()
        defer { receiver.stop() }
        let channel = try RelayChannel(
            RelayChannelConfiguration(name: "tcpbatch", subbufferSize: 4096, subbufferCount: 128, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(endpoint: .tcp(host: "127.0.0.1", port: receiver.port)))])
        // ~100 delivered sub-buffers wait before the shipper starts: they cannot all go in
        // one send each without batching (one send in flight per socket).
        let expected = try shipWithBacklog(channel, shipper, early: 6000, late: 30_000) { early, i in
            "\(early ? "early" : "late") \(i) \(String(repeating: early ? "b" : "c", count: i % 50))\n"
        }
        receiver.waitFor(bytes: expected.count, timeout: 20)
        #expect(receiver.received == expected)
        let stats = try #require(shipper.stats()).sinks[0]
        #expect(stats.batches > 0, "queued sub-buffers were sent together")
        #expect(stats.bytes == UInt64(expected.count))
        #expect(stats.subbuffers == stats.sentSubbuffers)
    }

    @Test("Unix stream socket: everything arrives")
    func unix() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let receiver = try StreamReceiver(unixPath: dir.file("sink.sock"))
        defer { receiver.stop() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "unix", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 2))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(endpoint: .unix(path: dir.file("sink.sock"))))])
        try shipper.start()
        writeLines(channel, producers: 2, perProducer: 10_000)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)))
        receiver.waitFor(bytes: Int(channel.stats().total.bytesWritten), timeout: 5)
        let parsed = parseLines(receiver.received)
        #expect(parsed.malformed == 0)
        expectExactlyOnce(parsed.records, producers: 2, perProducer: 10_000)
    }

    @Test("the sink connects with backoff when the peer is not there yet")
    func connectsLater() throws {
        // Find a free port, then start the receiver there only after the shipper started.
        let probe = try StreamReceiver()
        let port = probe.port
        probe.stop()
        let channel = try RelayChannel(RelayChannelConfiguration(name: "late", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: port), reconnectDelay: .milliseconds(20)...(.milliseconds(200))))])
        try shipper.start()
        channel.write(Array("hello\n".utf8))
        // The receiver starts only after a connect was refused (a fixed 300 ms sleep let a
        // ring thread starved that long connect at once, and `errors >= 1` below failed).
        let refused = waitForStats(shipper, timeout: 20) { $0.sinks[0].errors >= 1 }
        #expect((refused?.sinks[0].errors ?? 0) >= 1, "a connect was refused before the receiver started")
        let receiver = try StreamReceiver(tcpPort: port)
        defer { receiver.stop() }
        channel.close()
        #expect(shipper.stop(timeout: .seconds(10)))
        receiver.waitFor(bytes: 6, timeout: 20)
        #expect(receiver.received == Array("hello\n".utf8))
        #expect((shipper.stats()?.sinks[0].errors ?? 0) >= 1)
    }

    @Test("receiver killed mid-stream and restarted: reconnect, resend unacknowledged, loss within the bound")
    func receiverKilled() throws {
        let receiveBuffer = 32 * 1024
        var receiver: StreamReceiver? = try StreamReceiver(receiveBuffer: receiveBuffer, readDelayMicroseconds: 2000)
        let port = receiver!.port
        let channel = try RelayChannel(RelayChannelConfiguration(name: "kill", subbufferSize: 16384, subbufferCount: 16, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: port), reconnectDelay: .milliseconds(20)...(.milliseconds(200))))])
        try shipper.start()
        let perProducer = 60_000
        let writer = TestThreads.spawn {
            writeLines(channel, producers: 1, perProducer: perProducer, width: 64)
        }
        // Let some data flow, then kill the receiver abruptly (RST; unread data lost).
        receiver!.waitFor(bytes: 200_000, timeout: 20)
        receiver!.stop(abort: true)
        let firstLife = receiver!.received
        receiver = nil
        usleep(100_000)
        let second = try StreamReceiver(tcpPort: port)
        defer { second.stop() }
        TestThreads.join(writer)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(60)))
        let stats = try #require(shipper.stats())
        #expect(stats.sinks[0].reconnects >= 1)
        // Everything was acknowledged by the receiver's kernel; let its thread read it.
        let lastLine = Array("p0 \(perProducer - 1) ".utf8)
        let readDeadline = monotonicSeconds() + 10
        while monotonicSeconds() < readDeadline {
            let tail = second.received.suffix(80)
            if tail.count >= lastLine.count, String(decoding: tail, as: UTF8.self).contains("p0 \(perProducer - 1) ") { break }
            usleep(5000)
        }
        // Records are whole lines; the first connection may end mid-line.
        let first = parseLines(firstLife).records
        let after = parseLines(second.received)
        #expect(after.malformed == 0, "the new connection starts at a sub-buffer boundary")
        var seen = Set<Int>()
        for (_, s) in first { seen.insert(s) }
        for (_, s) in after.records { seen.insert(s) }
        let lost = perProducer - seen.count
        print("receiver killed: first life \(first.count) records, after reconnect \(after.records.count) (from sequence \(after.records.map(\.1).min() ?? -1)), lost \(lost), resent sub-buffers \(stats.sinks[0].resentSubbuffers)")
        // Bound: what the dead peer's kernel had acknowledged but the peer never read:
        // at most its receive buffer (the kernel may double SO_RCVBUF) plus the bytes of
        // one sub-buffer in transit.
        let bound = (2 * receiveBuffer + 16384) / 64 + 1
        #expect(lost <= bound, "lost \(lost) records, bound \(bound)")
        // Everything after the reconnect arrives: the tail is complete.
        let lastSequences = Set(after.records.map(\.1))
        #expect(lastSequences.contains(perProducer - 1))
        let minAfter = after.records.map(\.1).min() ?? 0
        #expect((minAfter..<perProducer).allSatisfy { seen.contains($0) }, "no gaps after the reconnect point")
    }

    @Test("a peer that closes while idle is noticed at once: the next record goes to the restarted peer, not into a dead socket")
    func peerClosesWhileIdle() throws {
        let first = try StreamReceiver()
        let port = first.port
        let channel = try RelayChannel(RelayChannelConfiguration(name: "fin", subbufferSize: 16384, subbufferCount: 4, mode: .block(), buffers: 1))
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(switchInterval: .milliseconds(10)), logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: port), reconnectDelay: .milliseconds(20)...(.milliseconds(100))))])
        try shipper.start()
        channel.write(Array("one\n".utf8))
        #expect(first.waitFor(bytes: 4, timeout: 20) == 4)
        first.stop()  // a graceful close (FIN) while the shipper has nothing to send
        let second = try StreamReceiver(tcpPort: port)
        defer { second.stop() }
        let deadline = monotonicSeconds() + 20
        while (shipper.stats()?.sinks[0].reconnects ?? 0) == 0 && monotonicSeconds() < deadline { usleep(10_000) }
        #expect(shipper.stats()?.sinks[0].reconnects == 1, "the close was noticed without sending anything")
        channel.write(Array("two\n".utf8))
        channel.close()
        #expect(shipper.stop(timeout: .seconds(10)))
        second.waitFor(bytes: 4, timeout: 20)
        #expect(second.received == Array("two\n".utf8))
    }

    @Test("fan-out: a file and a socket both get everything; sub-buffers are released only when both finish")
    func fanOut() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let receiver = try StreamReceiver(readDelayMicroseconds: 500)
        defer { receiver.stop() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "fan", subbufferSize: 16384, subbufferCount: 4, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [
            .file(RelayFileSinkConfiguration(path: dir.file("fan.log"))),
            .socket(RelaySocketSinkConfiguration(endpoint: .tcp(host: "127.0.0.1", port: receiver.port))),
        ])
        try shipper.start()
        writeLines(channel, producers: 2, perProducer: 10_000)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)))
        let fileBytes = try #require(readFileBytes(dir.file("fan.log")))
        receiver.waitFor(bytes: fileBytes.count, timeout: 20)
        #expect(fileBytes == receiver.received, "both sinks saw the same stream")
        expectExactlyOnce(parseLines(fileBytes).records, producers: 2, perProducer: 10_000)
        #expect(channel.stats().total.recordsDropped == 0)
    }

    @Test("stop() while a send is stuck behind a stalled peer ends the send and reaps its completion: it returns at its deadline, not 2 s later")
    func stopWithSendStuck() throws {
        let receiver = try StreamReceiver(receiveBuffer: 4096, readDelayMicroseconds: 3_000_000)
        defer { receiver.stop() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "stuck", subbufferSize: 65536, subbufferCount: 8, mode: .drop, buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: receiver.port), zeroCopy: .never, sendBufferSize: 4096))])
        try shipper.start()
        // 512 KB: far more than the two small socket buffers hold, so a send stays in flight.
        let line = Array("\(String(repeating: "s", count: 63))\n".utf8)
        for _ in 0..<8192 { channel.write(line) }
        channel.flush()
        let deadline = monotonicSeconds() + 10
        while (shipper.stats()?.sinks[0].inFlight ?? 0) < 2 && monotonicSeconds() < deadline { usleep(5_000) }
        usleep(100_000)
        channel.close()
        let stopStarted = monotonicSeconds()
        #expect(!shipper.stop(timeout: .milliseconds(300)), "the stalled peer did not take everything")
        let took = monotonicSeconds() - stopStarted
        // Only a sanity bound (a loaded host may be slow): what tells a stop that reaped the
        // send's completion from one that ignored it (and then waited out the ring thread's 2 s
        // limit for operations still in the kernel) is the count below, not the time.
        #expect(took < 0.3 + 5, "stop took \(took) s for a 300 ms deadline")
        // The stats the ring thread published as it exited: an operation it still counted then
        // is one whose final completion it never took, i.e. it gave up waiting for it.
        let sink = try #require(shipper.stats()?.sinks.first)
        #expect(sink.inFlight == 0, "\(sink.inFlight) operations still in flight at exit: the stuck send's completion was ignored")
    }

    @Test("a peer that half-closes but keeps reading: the send in flight ends at the disconnect, not after the peer read it all")
    func halfClosedPeer() throws {
        // A listener whose connections have small receive buffers, so a send stays in flight.
        let (listener, port) = try loopbackListener()
        defer { close(listener) }

        let channel = try RelayChannel(RelayChannelConfiguration(name: "halfclose", subbufferSize: 65536, subbufferCount: 16, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: port), zeroCopy: .never,
            reconnectDelay: .milliseconds(20)...(.milliseconds(100)), sendBufferSize: 4096))])
        // 512 KiB queued before the connection: its first send is one batch of all of it.
        var refused = 0
        let expected = writeSequentialLines(channel, count: 8192, refused: &refused) { i in
            "half-close line \(i) \(String(repeating: "h", count: 40 - String(i).count))\n"
        }
        channel.flush()
        try shipper.start()

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
        // The half-close: the shipper sees the FIN (peer gone) and reconnects, while this side
        // could go on reading the first connection.
        shutdown(first, Int32(SHUT_WR))
        let received = ReceivedBytes()
        let second = readNextConnection(on: listener, into: received)
        var after = 0
        var sawEnd = false
        let deadline = monotonicSeconds() + 20
        while monotonicSeconds() < deadline {
            var descriptor = pollfd(fd: first, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 100) > 0 else { continue }
            let n = read(first, &buffer, buffer.count)
            if n <= 0 {
                sawEnd = true
                break
            }
            after += n
        }
        #expect(sawEnd, "the first connection was closed")
        // What the socket buffers held at the disconnect, not the rest of the 512 KiB send.
        #expect(after < 128 * 1024, "\(after) bytes arrived on the abandoned connection after the disconnect")

        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)))
        let deadline2 = monotonicSeconds() + 20
        while received.count < expected.count && monotonicSeconds() < deadline2 { usleep(10_000) }
        shutdown(listener, Int32(SHUT_RDWR))
        TestThreads.join(second)
        #expect(received.bytes == expected, "the new connection got everything, resent from the start")
        #expect(shipper.stats()?.sinks[0].reconnects == 1)
    }
}
import CRelayLinux  // libc socket constants resolve through it once it is built with _GNU_SOURCE
import Glibc

@Suite("Zero-copy sends", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct ZeroCopyTests {
    @Test("SEND_ZC from the registered region: data intact, released only after the notification, copies reported")
    func zeroCopyAlways() throws {
        let receiver = try StreamReceiver()
        defer { receiver.stop() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "zc", subbufferSize: 65536, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(endpoint: .tcp(host: "127.0.0.1", port: receiver.port), zeroCopy: .always))])
        try shipper.start()
        writeLines(channel, producers: 2, perProducer: 20_000)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)))
        receiver.waitFor(bytes: Int(channel.stats().total.bytesWritten), timeout: 5)
        expectExactlyOnce(parseLines(receiver.received).records, producers: 2, perProducer: 20_000)
        let sink = try #require(shipper.stats()?.sinks[0])
        #expect(sink.zeroCopySends > 0)
        #expect(sink.zeroCopyCopied == sink.zeroCopySends, "loopback always copies; the kernel says so")
        #expect(sink.reusableSubbuffers == sink.sentSubbuffers)
    }

    @Test("automatic zero-copy stays off on loopback (it would only cost more)")
    func automaticOffOnLoopback() throws {
        let receiver = try StreamReceiver()
        defer { receiver.stop() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "zcauto", subbufferSize: 1 << 20, subbufferCount: 4, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(endpoint: .tcp(host: "127.0.0.1", port: receiver.port)))])
        try shipper.start()
        writeLines(channel, producers: 1, perProducer: 50_000)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)))
        #expect(shipper.stats()?.sinks[0].zeroCopySends == 0)
    }
}

@Suite("Connect timeout", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct ConnectTimeoutTests {
    @Test("a connect that hangs (peer's accept queue full) is cancelled after connectTimeout and retried")
    func connectTimeout() throws {
        // A listener whose accept queue is full: further SYNs are dropped, so connects hang.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(listen(listener, 0) == 0)
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        let port = Int(UInt16(bigEndian: bound.sin_port))
        var fillers: [Int32] = []
        defer { for f in fillers { close(f) } }
        for _ in 0..<4 {
            let f = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            _ = withUnsafePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(f, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            fillers.append(f)
        }
        usleep(50_000)
        let channel = try RelayChannel(RelayChannelConfiguration(name: "cto", subbufferSize: 16384, subbufferCount: 4, buffers: 1))
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(switchInterval: .milliseconds(20)), logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: port),
            reconnectDelay: .milliseconds(10)...(.milliseconds(20)),
            connectTimeout: .milliseconds(150)))])
        try shipper.start()
        channel.write(Array("never delivered\n".utf8))
        let deadline = monotonicSeconds() + 10
        while (shipper.stats()?.sinks[0].errors ?? 0) < 2 && monotonicSeconds() < deadline { usleep(20_000) }
        let errors = shipper.stats()?.sinks[0].errors ?? 0
        #expect(errors >= 2, "two attempts timed out and were retried")
        channel.close()
        #expect(shipper.stop(timeout: .milliseconds(300)) == false, "the record could not be delivered")
        #expect(shipper.hasExited)
    }
}
