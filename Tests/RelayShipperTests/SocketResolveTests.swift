import CRelayLinux  // libc socket constants (SOCK_STREAM, SOCK_CLOEXEC) resolve through it, since it is built with _GNU_SOURCE
import Glibc
import Logging
import Relay
@testable import RelayShipper
import RelayTestSupport
import Synchronization
import Testing

/// Keeps every log message (with its metadata) for the test to look at.
final class CapturedLog: Sendable {
    private let messages = RelayMutex<[String]>([])

    var all: [String] { self.messages.withLock { $0 } }

    func logger(level: Logger.Level = .notice) -> Logger {
        var logger = Logger(label: "test.capture") { _ in Handler(log: self) }
        logger.logLevel = level
        return logger
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .notice
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let metadata = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            self.log.messages.withLock { $0.append("\(event.level) \(event.message) \(metadata)") }
        }
    }
}

/// Whether "localhost" resolves to 127.0.0.1 first (the test receivers listen on 127.0.0.1
/// only; `localhostIPv6First` covers a host that gives ::1 first).
let localhostIsIPv4First: Bool = {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var result: UnsafeMutablePointer<addrinfo>? = nil
    guard getaddrinfo("localhost", "80", &hints, &result) == 0, let first = result else { return false }
    defer { freeaddrinfo(result) }
    return first.pointee.ai_family == AF_INET
}()

/// Whether "localhost" resolves to ::1 first and to 127.0.0.1 after it (common with an
/// `::1 localhost` line in /etc/hosts): a sink that tried only the first address would never
/// reach a receiver on 127.0.0.1.
let localhostIsIPv6FirstThenIPv4: Bool = {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var result: UnsafeMutablePointer<addrinfo>? = nil
    guard getaddrinfo("localhost", "80", &hints, &result) == 0, let first = result else { return false }
    defer { freeaddrinfo(result) }
    guard first.pointee.ai_family == AF_INET6 else { return false }
    var next = first.pointee.ai_next
    while let info = next {
        if info.pointee.ai_family == AF_INET { return true }
        next = info.pointee.ai_next
    }
    return false
}()

/// A TCP port on 127.0.0.1 where nothing listens, held (bound, never listening) until
/// ``release()``: a connect to it is refused at once, and no other test can take the port.
final class ClosedPort {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: addr.sin_port))
    }

    func release() { close(self.fd) }
}

@Suite("Socket sink host names", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct SocketResolveTests {
    @Test("a host name (localhost) is looked up off the ring thread and connects; it is looked up again after a disconnect",
          .enabled(if: localhostIsIPv4First, "localhost does not resolve to 127.0.0.1 first here"))
    func localhost() throws {
        let first = try StreamReceiver()
        let port = first.port
        let channel = try RelayChannel(RelayChannelConfiguration(name: "localhost", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(switchInterval: .milliseconds(10)), logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "localhost", port: port), reconnectDelay: .milliseconds(10)...(.milliseconds(100))))])
        try shipper.start()
        channel.write(Array("one\n".utf8))
        #expect(first.waitFor(bytes: 4, timeout: 20) == 4)
        first.stop()
        let second = try StreamReceiver(tcpPort: port)
        defer { second.stop() }
        let reconnected = waitForStats(shipper) { $0.sinks[0].reconnects >= 1 }
        #expect(reconnected?.sinks[0].reconnects == 1)
        channel.write(Array("two\n".utf8))
        channel.close()
        #expect(shipper.stop(timeout: .seconds(5)))
        second.waitFor(bytes: 4, timeout: 20)
        #expect(first.received == Array("one\n".utf8))
        #expect(second.received == Array("two\n".utf8))
    }

    @Test("a name with several addresses: a refused one is skipped at once, and the next one (the receiver) gets every record without a backoff")
    func nextAddressAfterRefusal() throws {
        let closed = try ClosedPort()
        defer { closed.release() }
        let receiver = try StreamReceiver()
        defer { receiver.stop() }
        let port = receiver.port
        let closedPort = closed.port
        SocketAddress.lookUpStandIns.withLock {
            $0["two-addresses.relay-test"] = { [("127.0.0.1", closedPort), ("127.0.0.1", port)] }
        }
        defer { _ = SocketAddress.lookUpStandIns.withLock { $0.removeValue(forKey: "two-addresses.relay-test") } }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "two-addresses", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(switchInterval: .milliseconds(10)), logger: testLogger())
        // A backoff far longer than the (generous) wait below: only an immediate retry at the
        // next address can deliver in time.
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "two-addresses.relay-test", port: 1), reconnectDelay: .seconds(60)...(.seconds(120))))])
        try shipper.start()
        var expected: [UInt8] = []
        for i in 0..<3 {
            let line = Array("record \(i)\n".utf8)
            expected += line
            #expect(channel.write(line) == .written)
        }
        let started = monotonicSeconds()
        receiver.waitFor(bytes: expected.count, timeout: 20)
        let took = monotonicSeconds() - started
        #expect(receiver.received == expected, "every record reached the receiver at the second address")
        #expect(took < 20, "took \(Int(took * 1000)) ms: the sink waited for its backoff")
        let stats = try #require(waitForStats(shipper, timeout: 10) { $0.sinks[0].connected })
        #expect(stats.sinks[0].connected, "connected to the second address")
        #expect(stats.sinks[0].connectFailures == 0, "a refused address that has a next one is not a connect failure")
        channel.close()
        #expect(shipper.stop(timeout: .seconds(10)))
    }

    @Test("localhost resolving to ::1 first reaches a receiver that listens on 127.0.0.1 only",
          .enabled(if: localhostIsIPv6FirstThenIPv4, "localhost does not resolve to ::1 first (then 127.0.0.1) here"))
    func localhostIPv6First() throws {
        let receiver = try StreamReceiver()
        defer { receiver.stop() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "localhost-v6", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(switchInterval: .milliseconds(10)), logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "localhost", port: receiver.port), reconnectDelay: .seconds(60)...(.seconds(120))))])
        try shipper.start()
        #expect(channel.write(Array("one\n".utf8)) == .written)
        // The backoff (60 s) is far beyond this wait: only the immediate retry at 127.0.0.1 delivers.
        #expect(receiver.waitFor(bytes: 4, timeout: 20) == 4, "reached 127.0.0.1 after ::1 was refused")
        #expect(shipper.stats()?.sinks[0].connectFailures == 0)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(10)))
    }

    @Test("a slow look-up does not hold up the ring thread: a file sink of the same shipper keeps shipping meanwhile")
    func slowLookUp() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let receiver = try StreamReceiver()
        defer { receiver.stop() }
        let port = receiver.port
        // The look-up blocks until the test has seen every file line shipped (or 30 s pass): a
        // ring thread that waited for it could not ship them, however slow or loaded the host.
        let lookUpStarted = Atomic<Bool>(false)
        let releaseLookUp = Atomic<Bool>(false)
        let lookUpFinished = Atomic<Bool>(false)
        SocketAddress.lookUpStandIns.withLock {
            $0["slow.relay-test"] = {
                lookUpStarted.store(true, ordering: .relaxed)
                let deadline = monotonicSeconds() + 30
                while !releaseLookUp.load(ordering: .relaxed) && monotonicSeconds() < deadline { usleep(1000) }
                lookUpFinished.store(true, ordering: .relaxed)
                return [("127.0.0.1", port)]
            }
        }
        defer { _ = SocketAddress.lookUpStandIns.withLock { $0.removeValue(forKey: "slow.relay-test") } }
        let files = try RelayChannel(RelayChannelConfiguration(name: "slow-file", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let socket = try RelayChannel(RelayChannelConfiguration(name: "slow-sock", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(switchInterval: .milliseconds(10)), logger: testLogger())
        try shipper.add(files, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("kept.log")))])
        try shipper.add(socket, sinks: [.socket(RelaySocketSinkConfiguration(endpoint: .tcp(host: "slow.relay-test", port: 1)))])
        try shipper.start()
        socket.write(Array("after the look-up\n".utf8))
        let started = monotonicSeconds()
        while !lookUpStarted.load(ordering: .relaxed) && monotonicSeconds() < started + 10 { usleep(1000) }
        let didStart = lookUpStarted.load(ordering: .relaxed)
        #expect(didStart, "the socket sink looked its host up")
        // Each line reaches the file while the look-up is still blocked.
        var expected: [UInt8] = []
        for i in 0..<4 {
            let line = Array("file line \(i)\n".utf8)
            expected += line
            let written = monotonicSeconds()
            #expect(files.write(line) == .written)
            while (readFileBytes(dir.file("kept.log")) ?? []).count < expected.count && monotonicSeconds() < written + 10 { usleep(2000) }
            #expect(readFileBytes(dir.file("kept.log")) == expected, "line \(i) was shipped while the look-up was blocked")
        }
        let finishedEarly = lookUpFinished.load(ordering: .relaxed)
        #expect(!finishedEarly, "the lines were written while the look-up was still running")
        releaseLookUp.store(true, ordering: .relaxed)
        receiver.waitFor(bytes: 18, timeout: 10)
        #expect(receiver.received == Array("after the look-up\n".utf8), "the socket connected once the look-up answered")
        files.close()
        socket.close()
        #expect(shipper.stop(timeout: .seconds(10)))
    }

    @Test("a name that points elsewhere after a disconnect: the reconnect looks it up again and reaches the new address")
    func addressChanges() throws {
        let old = try StreamReceiver()
        let new = try StreamReceiver()
        defer { new.stop() }
        let target = Atomic<Int>(old.port)
        SocketAddress.lookUpStandIns.withLock { $0["moving.relay-test"] = { [("127.0.0.1", target.load(ordering: .relaxed))] } }
        defer { _ = SocketAddress.lookUpStandIns.withLock { $0.removeValue(forKey: "moving.relay-test") } }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "moving", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(switchInterval: .milliseconds(10)), logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "moving.relay-test", port: 1), reconnectDelay: .milliseconds(10)...(.milliseconds(100))))])
        try shipper.start()
        channel.write(Array("one\n".utf8))
        #expect(old.waitFor(bytes: 4, timeout: 20) == 4)
        // The name moves, then the old peer goes away for good.
        target.store(new.port, ordering: .relaxed)
        old.stop()
        let reconnected = waitForStats(shipper) { $0.sinks[0].reconnects >= 1 }
        #expect(reconnected?.sinks[0].reconnects == 1, "reconnected to the new address")
        channel.write(Array("two\n".utf8))
        channel.close()
        #expect(shipper.stop(timeout: .seconds(5)))
        new.waitFor(bytes: 4, timeout: 20)
        #expect(old.received == Array("one\n".utf8))
        #expect(new.received == Array("two\n".utf8))
    }

    @Test("a name that no longer resolves: the reconnect goes to the last address, and says why")
    func lastAddressWhenLookUpFails() throws {
        let log = CapturedLog()
        let first = try StreamReceiver()
        let port = first.port
        let answer = RelayMutex<(host: String, port: Int)>(("127.0.0.1", port))
        SocketAddress.lookUpStandIns.withLock { $0["fading.relay-test"] = { [answer.withLock { $0 }] } }
        defer { _ = SocketAddress.lookUpStandIns.withLock { $0.removeValue(forKey: "fading.relay-test") } }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "fading", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(switchInterval: .milliseconds(10)), logger: log.logger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "fading.relay-test", port: 1), reconnectDelay: .milliseconds(10)...(.milliseconds(100))))])
        try shipper.start()
        channel.write(Array("one\n".utf8))
        #expect(first.waitFor(bytes: 4, timeout: 20) == 4)
        answer.withLock { $0 = ("nonexistent.invalid", port) }
        first.stop()
        let second = try StreamReceiver(tcpPort: port)
        defer { second.stop() }
        let reconnected = waitForStats(shipper) { $0.sinks[0].reconnects >= 1 }
        #expect(reconnected?.sinks[0].reconnects == 1, "reconnected to the last address")
        channel.write(Array("two\n".utf8))
        channel.close()
        #expect(shipper.stop(timeout: .seconds(5)))
        second.waitFor(bytes: 4, timeout: 20)
        #expect(second.received == Array("two\n".utf8))
        #expect(log.all.contains { $0.contains("connecting to the last address") && $0.contains("cannot resolve host 'nonexistent.invalid'") },
                "the failed look-up is logged: \(log.all)")
    }

    @Test("an unresolvable host name: a clear error, retries with backoff, and a file sink of the same shipper keeps shipping")
    func unresolvable() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let log = CapturedLog()
        let files = try RelayChannel(RelayChannelConfiguration(name: "resolve-file", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let socket = try RelayChannel(RelayChannelConfiguration(name: "resolve-sock", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(switchInterval: .milliseconds(10)), logger: log.logger())
        try shipper.add(files, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("kept.log")))])
        try shipper.add(socket, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "nonexistent.invalid", port: 9), reconnectDelay: .milliseconds(20)...(.milliseconds(200))))])
        let started = monotonicSeconds()
        try shipper.start()
        socket.write(Array("never delivered\n".utf8))
        // While the socket sink fails to resolve, over and over, the file gets each line.
        var expected: [UInt8] = []
        var failuresSeen: [UInt64] = []
        for i in 0..<5 {
            let line = Array("file line \(i)\n".utf8)
            expected += line
            #expect(files.write(line) == .written)
            let deadline = monotonicSeconds() + 20
            while (readFileBytes(dir.file("kept.log")) ?? []).count < expected.count && monotonicSeconds() < deadline { usleep(5000) }
            #expect(readFileBytes(dir.file("kept.log")) == expected, "line \(i) reached the file")
            failuresSeen.append(shipper.stats()?.sinks[1].connectFailures ?? 0)
            usleep(100_000)
        }
        let stats = try #require(waitForStats(shipper) { $0.sinks[1].connectFailures >= 3 })
        let elapsed = monotonicSeconds() - started
        let sink = stats.sinks[1]
        #expect(sink.connectFailures >= 3, "the look-up was retried")
        // 20, 40, 80, 160, 200 ms apart: about 4 + elapsed / 0.2 (a handful in ~1 s), not one per
        // loop iteration. The bound follows the time this took, which a loaded host stretches.
        let allowed = 5 + UInt64(elapsed / 0.1)
        #expect(sink.connectFailures <= allowed, "\(sink.connectFailures) failures in \(Int(elapsed * 1000)) ms: retried without backoff")
        #expect(sink.failing)
        #expect(!sink.connected)
        #expect(failuresSeen.last! > failuresSeen.first!, "the file was shipped while the look-ups kept failing: \(failuresSeen)")
        #expect(log.all.contains { $0.contains("socket sink unavailable") && $0.contains("cannot resolve host 'nonexistent.invalid'") },
                "the reason is logged: \(log.all)")
        files.close()
        socket.close()
        #expect(!shipper.stop(timeout: .milliseconds(200)), "the socket's record could not be delivered")
    }
}
