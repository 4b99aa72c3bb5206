import ArgumentParser
import Relay
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A resolved TCP destination.
struct LoadEndpoint: Sendable {
    /// `host:port` as given.
    let text: String
    /// The socket address bytes (`sockaddr_in` / `sockaddr_in6`).
    let address: [UInt8]
    /// `AF_INET` or `AF_INET6`.
    let family: Int32

    /// Resolves `host:port` (or `[v6]:port`) with `getaddrinfo`.
    static func resolve(_ text: String) throws -> LoadEndpoint {
        let host: String
        let port: String
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else {
                throw ValidationError("--target \(text): expected [host]:port, e.g. [::1]:5140")
            }
            port = String(rest.dropFirst())
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            port = String(text[text.index(after: colon)...])
        } else {
            throw ValidationError("--target \(text): expected host:port, e.g. 127.0.0.1:5140")
        }
        guard !port.isEmpty else {
            throw ValidationError("--target \(text): the port is missing, e.g. 127.0.0.1:5140")
        }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, port, &hints, &result)
        guard status == 0, let first = result else {
            throw ValidationError("--target \(text): cannot resolve \(host):\(port) (getaddrinfo error \(status))")
        }
        defer { freeaddrinfo(result) }
        let bytes = Array(UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
        return LoadEndpoint(text: text, address: bytes, family: first.pointee.ai_family)
    }

    /// A connected blocking TCP socket.
    func connect() throws -> Int32 {
        let fd = socket(self.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw LoadError("socket(2) failed: errno \(errno)") }
        var size: Int32 = 1 << 20
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        let status = self.address.withUnsafeBytes { raw in
            Glibc.connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard status == 0 else {
            let error = errno
            _ = close(fd)
            throw LoadError("cannot connect to \(self.text): \(LoadError.describe(error)); is the receiver running?")
        }
        return fd
    }
}

/// A load-generation failure.
struct LoadError: Error, CustomStringConvertible {
    /// What failed.
    let description: String

    init(_ description: String) {
        self.description = description
    }

    /// `strerror(3)` text for an errno value.
    static func describe(_ error: Int32) -> String {
        guard let text = strerror(error) else { return "errno \(error)" }
        let length = strlen(text)
        return String(decoding: UnsafeRawBufferPointer(start: text, count: length), as: UTF8.self)
    }
}

/// What one run sent.
struct LoadResult: Sendable {
    /// Messages sent (accepted by the local kernel).
    var messages: Int
    /// Frame bytes sent.
    var bytes: Int
    /// From the common start to the last connection's last send.
    var seconds: Double
    /// Connections that failed mid-run, with the error.
    var failures: [String]

    /// Messages per second.
    var messagesPerSecond: Double { self.seconds > 0 ? Double(self.messages) / self.seconds : 0 }

    /// A human-readable line.
    func text(size: Int, framing: String, connections: Int) -> String {
        let mib = Double(self.bytes) / Double(1 << 20)
        var line = "sent \(self.messages) messages of \(size) bytes (\(framing)) over \(connections) connections in "
            + "\(Self.format(self.seconds, 3)) s: \(Self.format(self.messagesPerSecond, 0)) msg/s, "
            + "\(Self.format(self.seconds > 0 ? mib / self.seconds : 0, 1)) MiB/s"
        for failure in self.failures { line += "\nconnection failed: \(failure)" }
        return line
    }

    /// One JSON object.
    func json(size: Int, framing: String, connections: Int) -> String {
        let failures = self.failures.map { failure in
            "\"" + String(failure.map { $0 == "\"" || $0 == "\\" ? "'" : $0 }) + "\""
        }.joined(separator: ",")
        return "{\"messages\":\(self.messages),\"bytes\":\(self.bytes),\"seconds\":\(Self.format(self.seconds, 6)),"
            + "\"messages_per_second\":\(Self.format(self.messagesPerSecond, 1)),\"size\":\(size),"
            + "\"framing\":\"\(framing)\",\"connections\":\(connections),\"failures\":[\(failures)]}"
    }

    static func format(_ value: Double, _ decimals: Int) -> String {
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        var text = "\(Int(rounded))"
        if decimals > 0 {
            let fraction = Int(((rounded - Double(Int(rounded))) * scale).rounded())
            let digits = String(fraction)
            text += "." + String(repeating: "0", count: max(0, decimals - digits.count)) + digits
        }
        return text
    }
}

/// Runs the connections of one `relay-bench load` invocation.
struct LoadPlan: Sendable {
    let endpoint: LoadEndpoint
    let layout: LoadMessageLayout
    let connections: Int
    /// Total messages, or `nil` with a duration.
    let totalMessages: Int?
    let duration: Duration?
    /// Total messages per second; 0 for full speed.
    let rate: Int

    /// Connects every connection, starts them together, and waits for all of them.
    func run() throws -> LoadResult {
        var sockets: [Int32] = []
        do {
            for _ in 0..<self.connections { sockets.append(try self.endpoint.connect()) }
        } catch {
            for fd in sockets { _ = close(fd) }
            throw error
        }
        let start = StartGate()
        let results = RelayMutex<[(index: Int, sent: Int, finished: ContinuousClock.Instant, failure: String?)]>([])
        var threads: [pthread_t] = []
        for index in 0..<self.connections {
            let fd = sockets[index]
            let quota = self.totalMessages.map { $0 / self.connections + (index < $0 % self.connections ? 1 : 0) }
            let plan = self
            threads.append(
                LoadThread.start {
                    let begin = start.wait()
                    let (sent, failure) = plan.send(fd: fd, connection: index, quota: quota, begin: begin)
                    let finished = ContinuousClock.now
                    _ = shutdown(fd, Int32(SHUT_WR))
                    _ = close(fd)
                    results.withLock { $0.append((index, sent, finished, failure)) }
                }
            )
        }
        let begin = ContinuousClock.now
        start.open(at: begin)
        for thread in threads { pthread_join(thread, nil) }
        let all = results.withLock { $0 }
        let messages = all.reduce(0) { $0 + $1.sent }
        let last = all.map(\.finished).max() ?? begin
        let elapsed = last - begin
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return LoadResult(
            messages: messages,
            bytes: messages * self.layout.frameSize,
            seconds: seconds,
            failures: all.compactMap { result in result.failure.map { "connection \(result.index): \($0)" } }
        )
    }

    /// One connection's sending loop. Returns the messages sent and the error that ended it early, if any.
    func send(fd: Int32, connection: Int, quota: Int?, begin: ContinuousClock.Instant) -> (Int, String?) {
        let frameSize = self.layout.frameSize
        // Messages per second of this connection: an equal share of the total, fractional when the
        // total does not divide evenly (0: full speed).
        let perConnectionRate = self.rate > 0 ? Double(self.rate) / Double(self.connections) : 0
        // Batches of about 256 KiB at full speed; about 1 ms worth of messages when paced.
        var batch = max(1, (256 << 10) / frameSize)
        if perConnectionRate > 0 { batch = max(1, min(batch, Int(perConnectionRate / 1000))) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: batch * frameSize, alignment: 64)
        defer { buffer.deallocate() }
        self.layout.template.withUnsafeBytes { template in
            for slot in 0..<batch {
                let frame = buffer.baseAddress! + slot * frameSize
                frame.copyMemory(from: template.baseAddress!, byteCount: frameSize)
                LoadMessageLayout.writeDigits(connection, width: 4, at: frame + self.layout.connectionOffset)
            }
        }
        let deadline = self.duration.map { begin + $0 }
        var sent = 0
        while true {
            var count = batch
            if let quota {
                count = min(count, quota - sent)
                if count <= 0 { break }
            }
            if let deadline, ContinuousClock.now >= deadline { break }
            if perConnectionRate > 0 {
                // Message `sent` is due at begin + sent / rate.
                let due = begin + .nanoseconds(Int64(Double(sent) / perConnectionRate * 1e9))
                let now = ContinuousClock.now
                if due > now {
                    let wait = due - now
                    var request = timespec(
                        tv_sec: Int(wait.components.seconds),
                        tv_nsec: Int(wait.components.attoseconds / 1_000_000_000)
                    )
                    nanosleep(&request, nil)
                }
            }
            for slot in 0..<count {
                LoadMessageLayout.writeDigits(
                    sent + slot,
                    width: 12,
                    at: buffer.baseAddress! + slot * frameSize + self.layout.sequenceOffset
                )
            }
            var offset = 0
            let length = count * frameSize
            while offset < length {
                let written = Glibc.send(fd, buffer.baseAddress! + offset, length - offset, Int32(MSG_NOSIGNAL))
                if written < 0 {
                    if errno == EINTR { continue }
                    let error = LoadError.describe(errno)
                    // Only whole frames count as sent.
                    return (sent + offset / frameSize, "send failed after \(sent + offset / frameSize) messages: \(error)")
                }
                offset += written
            }
            sent += count
        }
        return (sent, nil)
    }
}

/// Releases all connection threads at the same instant.
final class StartGate: Sendable {
    private let instant = RelayMutex<ContinuousClock.Instant?>(nil)

    /// Opens the gate.
    func open(at instant: ContinuousClock.Instant) {
        self.instant.withLock { $0 = instant }
    }

    /// Waits until the gate opens; returns the common start.
    func wait() -> ContinuousClock.Instant {
        while true {
            if let instant = self.instant.withLock({ $0 }) { return instant }
            sched_yield()
        }
    }
}

/// Joinable OS threads for the connections.
enum LoadThread {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Starts `body` on a new joinable thread.
    static func start(_ body: @escaping @Sendable () -> Void) -> pthread_t {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(
            &thread,
            nil,
            { raw in
                Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
                return nil
            },
            box
        )
        precondition(status == 0, "pthread_create failed: \(status)")
        return thread
    }
}
