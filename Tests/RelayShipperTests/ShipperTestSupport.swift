import Glibc
import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Synchronization
import Testing

/// Whether io_uring works here; tests that need it skip (with the reason) when it does not.
let ioUringAvailable: Bool = RelayShipper.probeIOURing() == nil

func testLogger() -> Logger {
    var logger = Logger(label: "test.shipper")
    logger.logLevel = .warning
    return logger
}

/// Writes `count` lines `line(i)` from this thread and returns their bytes concatenated: what
/// the destination must hold afterwards. Counts the writes the channel did not take.
@discardableResult
func writeSequentialLines(_ channel: RelayChannel, count: Int, refused: inout Int, _ line: (Int) -> String) -> [UInt8] {
    var expected: [UInt8] = []
    for i in 0..<count {
        let bytes = Array(line(i).utf8)
        expected += bytes
        if channel.write(bytes) != .written { refused += 1 }
    }
    return expected
}

/// Ships lines with a backlog: writes `early` lines before starting `shipper`, so their
/// delivered sub-buffers are all queued when it starts (they must leave in batches), then
/// `late` more while it runs; closes the channel and stops the shipper. Returns every byte
/// written, in order: what the destination must hold.
func shipWithBacklog(
    _ channel: RelayChannel, _ shipper: RelayShipper, early: Int, late: Int,
    sourceLocation: SourceLocation = #_sourceLocation, _ line: (_ early: Bool, _ index: Int) -> String
) throws -> [UInt8] {
    var refused = 0
    var expected = writeSequentialLines(channel, count: early, refused: &refused) { line(true, $0) }
    try shipper.start()
    expected += writeSequentialLines(channel, count: late, refused: &refused) { line(false, $0) }
    #expect(refused == 0, sourceLocation: sourceLocation)
    channel.close()
    #expect(shipper.stop(timeout: .seconds(30)), sourceLocation: sourceLocation)
    return expected
}

/// Starts a shipper with one small channel and the file sink `sink`, expecting `start()` to
/// refuse it; returns the error (nil, with a recorded issue, if it started).
func fileSinkStartError(_ sink: RelayFileSinkConfiguration, sourceLocation: SourceLocation = #_sourceLocation) throws -> RelayShipperError? {
    let channel = try RelayChannel(RelayChannelConfiguration(name: "refused", subbufferSize: 16384, subbufferCount: 4, buffers: 1))
    let shipper = RelayShipper(logger: testLogger())
    try shipper.add(channel, sinks: [.file(sink)])
    return #expect(throws: RelayShipperError.self, sourceLocation: sourceLocation) { try shipper.start() }
}

/// The rotated files of `path` (`path.1`, `path.2`, …), newest first, until one is missing.
func readRotatedFiles(_ path: String) -> [[UInt8]] {
    var files: [[UInt8]] = []
    while let bytes = readFileBytes("\(path).\(files.count + 1)") {
        files.append(bytes)
    }
    return files
}

/// Writes `lines` text lines "p<producer> <seq> <padding>\n" from `producers` threads.
func writeLines(_ channel: RelayChannel, producers: Int, perProducer: Int, width: Int = 60) {
    TestThreads.run(count: producers) { producer in
        var line = [UInt8](repeating: 0x78, count: width)
        for sequence in 0..<perProducer {
            let text = Array("p\(producer) \(sequence) ".utf8)
            line.replaceSubrange(0..<text.count, with: text)
            line[width - 1] = 0x0A
            _ = line.withUnsafeBytes { channel.write($0) }
            line = [UInt8](repeating: 0x78, count: width)
        }
    }
}

/// Parses lines written by `writeLines`, returning (producer, sequence) pairs in file order.
func parseLines(_ bytes: [UInt8]) -> (records: [(Int, Int)], malformed: Int) {
    var records: [(Int, Int)] = []
    var malformed = 0
    var start = 0
    for i in bytes.indices where bytes[i] == 0x0A {
        let line = String(decoding: bytes[start..<i], as: UTF8.self)
        start = i + 1
        let parts = line.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("p"), let p = Int(parts[0].dropFirst()), let s = Int(parts[1]) else {
            malformed += 1
            continue
        }
        records.append((p, s))
    }
    if start < bytes.count { malformed += 1 }
    return (records, malformed)
}

/// Checks every (producer, sequence) appears exactly once.
func expectExactlyOnce(_ records: [(Int, Int)], producers: Int, perProducer: Int, sourceLocation: SourceLocation = #_sourceLocation) {
    var seen = [[Bool]](repeating: [Bool](repeating: false, count: perProducer), count: producers)
    var duplicates = 0
    for (p, s) in records {
        guard p < producers, s < perProducer else {
            duplicates += 1
            continue
        }
        if seen[p][s] { duplicates += 1 }
        seen[p][s] = true
    }
    let missing = seen.reduce(0) { $0 + $1.filter { !$0 }.count }
    #expect(missing == 0, "missing records", sourceLocation: sourceLocation)
    #expect(duplicates == 0, "duplicated records", sourceLocation: sourceLocation)
}

/// A TCP listener on 127.0.0.1, on a port the kernel picks, whose connections get a receive
/// buffer of `receiveBuffer` bytes (so a peer that does not read soon stalls a send).
///
/// - Returns: The listening descriptor (the caller closes it) and its port.
func loopbackListener(receiveBuffer: Int32 = 4096, backlog: Int32 = 4) throws -> (fd: Int32, port: Int) {
    try StreamReceiver.tcpListener(receiveBuffer: Int(receiveBuffer), backlog: backlog)
}

/// A TCP listener on 127.0.0.1 whose connections are never read (a stalled peer): what the
/// shipper sends stays in its own socket buffer, sent but unacknowledged, once the peer's
/// small receive buffer is full. ``reset()`` kills it (RST) like a crashing peer.
final class StalledPeer {
    let listener: Int32
    let port: Int
    private(set) var connection: Int32 = -1

    init(receiveBuffer: Int32 = 4096) throws {
        (self.listener, self.port) = try loopbackListener(receiveBuffer: receiveBuffer, backlog: 4)
    }

    /// Accepts the pending connection (waits up to 5 s); true if there was one.
    @discardableResult
    func accept() -> Bool {
        var pfd = pollfd(fd: self.listener, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 5000) == 1 else { return false }
        self.connection = Glibc.accept(self.listener, nil, nil)
        return self.connection >= 0
    }

    /// Resets the connection (unread data is lost) and stops listening.
    func reset() {
        if self.connection >= 0 {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(self.connection, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            close(self.connection)
            self.connection = -1
        }
        close(self.listener)
    }
}

/// Waits until `condition` holds on the shipper's stats (or `timeout` seconds pass: generous, as CI
/// is a loaded 2-vCPU host; a passing test does not wait it out).
@discardableResult
func waitForStats(_ shipper: RelayShipper, timeout: Double = 20, _ condition: (RelayShipperStats) -> Bool) -> RelayShipperStats? {
    let deadline = monotonicSeconds() + timeout
    while monotonicSeconds() < deadline {
        if let stats = shipper.stats(), condition(stats) { return stats }
        usleep(5000)
    }
    return shipper.stats()
}


/// Waits until `shipper`'s loop stays put for 150 ms: it sleeps (with every buffer empty, that
/// is without a timer, so only a writer's doorbell wakes it). Returns whether it did within 10 s.
func waitUntilIdle(_ shipper: RelayShipper) -> Bool {
    var previous = shipper.stats()?.loopIterations
    let deadline = monotonicSeconds() + 10
    while monotonicSeconds() < deadline {
        usleep(150_000)
        let current = shipper.stats()?.loopIterations
        if current != nil && current == previous { return true }
        previous = current
    }
    return false
}

/// The bytes a ``readNextConnection(on:into:)`` peer has read so far.
final class ReceivedBytes: Sendable {
    private let storage = RelayMutex<[UInt8]>([])

    func append(_ bytes: ArraySlice<UInt8>) { self.storage.withLock { $0.append(contentsOf: bytes) } }
    var count: Int { self.storage.withLock { $0.count } }
    var bytes: [UInt8] { self.storage.withLock { $0 } }
}

/// A peer on its own thread: accepts the next connection on `listener` (waiting up to 20 s, or until
/// the listener is shut down) and reads it to its end into `received`. Join the returned thread.
func readNextConnection(on listener: Int32, into received: ReceivedBytes) -> TestThreads.Handle {
    TestThreads.spawn {
        var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 20_000) == 1 else { return }
        let fd = accept(listener, nil, nil)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            received.append(chunk[0..<n])
        }
    }
}
