import Relay
import Synchronization
import SystemPackage

import CRelayLinux

#if canImport(Glibc)
import Glibc
#endif

/// A failure to start the metrics endpoint, with the fix.
struct MetricsServerError: Error, CustomStringConvertible {
    /// What failed and how to fix it.
    var message: String
    /// The underlying error number.
    var errno: Errno

    /// `message (errno)`.
    var description: String { "\(self.message) (\(self.errno))" }
}

/// A minimal HTTP/1.1 server for `GET /metrics` and `GET /healthz`.
///
/// Design: a listener thread runs a blocking `poll(2)` loop over the listening socket and a pipe used to stop it,
/// and hands each accepted connection to a connection thread of its own, at most `maxConnections` at a time, so a
/// slow or idle client never delays another scrape. While that many connections are open, new ones wait in the
/// listen backlog until one finishes. Every connection is served with `Connection: close` and has a deadline
/// (`requestTimeout`) covering reading the request head and writing the response, so a slow or idle client holds
/// its slot for at most that long (Prometheus scrapes are one request per interval; this is not a general web
/// server). The metrics and health sources are called for one request at a time. ``stop()`` wakes and joins every
/// thread. No SwiftNIO.
///
/// Responses: `200` for `/metrics` (Prometheus text format 0.0.4) and `/healthz` (`503` when unhealthy),
/// `404` for other paths, `405` for methods other than GET/HEAD, `400` for malformed requests, `408` when the
/// request head does not arrive in time, `431` when it exceeds `maxRequestBytes`.
final class MetricsHTTPServer: Sendable {
    /// Produces the `/metrics` body.
    typealias MetricsSource = @Sendable () -> [UInt8]
    /// Produces the `/healthz` status and a one-line detail.
    typealias HealthCheck = @Sendable () -> (healthy: Bool, detail: String)

    /// The bound address (with the real port when 0 was requested).
    let address: ListenAddress
    /// Deadline for reading one request head and writing its response.
    let requestTimeout: Duration
    /// Largest accepted request head.
    let maxRequestBytes: Int
    /// Most connections served at once (each on a thread of its own).
    let maxConnections: Int

    private let listenFD: Int32
    /// Read end of the stop pipe (polled with every socket).
    private let wakeFD: Int32
    /// Write end of the stop pipe.
    private let wakeWriteFD: Int32
    private let metrics: MetricsSource
    private let health: HealthCheck
    private let lifecycle = RelayMutex<Lifecycle>(.created)
    /// Connection threads: running ones by id, and the ids of those that finished (to join).
    private let connections = RelayMutex<ConnectionThreads>(ConnectionThreads())
    /// Serialises calls of the metrics and health sources.
    private let sourceLock = RelayMutex<Void>(())

    private struct ConnectionThreads {
        var running: [UInt64: pthread_t] = [:]
        /// Finished and not yet joined (a thread may finish before it is recorded in `running`).
        var finished: [UInt64] = []
        /// Started and not yet finished.
        var active = 0
        var nextID: UInt64 = 0
    }

    private enum Lifecycle {
        case created
        case running(pthread_t)
        case stopped
    }

    /// Binds and listens (but does not serve until ``start()``).
    ///
    /// - Parameters:
    ///   - address: Where to listen; port 0 picks an ephemeral port (see ``address``).
    ///   - requestTimeout: Per-request deadline.
    ///   - maxRequestBytes: Largest request head.
    ///   - maxConnections: Most connections served at once.
    ///   - metrics: Produces the `/metrics` body (called on a connection thread, one call at a time).
    ///   - health: Produces the `/healthz` status.
    /// - Throws: ``MetricsServerError`` naming the address and the fix.
    init(
        address: ListenAddress,
        requestTimeout: Duration = .seconds(2),
        maxRequestBytes: Int = 8192,
        maxConnections: Int = 16,
        metrics: @escaping MetricsSource,
        health: @escaping HealthCheck = { (true, "ok") }
    ) throws(MetricsServerError) {
        let family = address.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(
            family,
            Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
            0
        )
        guard fd >= 0 else {
            throw MetricsServerError(message: "cannot create the metrics socket", errno: Errno(rawValue: Glibc.errno))
        }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = address.withSockAddr { bind(fd, $0, $1) }
        guard bound == 0 else {
            let error = Errno(rawValue: Glibc.errno)
            close(fd)
            let fix =
                error == .addressInUse
                ? "another process (another relayd?) uses the port; choose another daemon.metrics_listen or set it to \"\" to disable metrics"
                : "check daemon.metrics_listen"
            throw MetricsServerError(message: "cannot listen on \(address) for metrics: \(fix)", errno: error)
        }
        guard listen(fd, 64) == 0 else {
            let error = Errno(rawValue: Glibc.errno)
            close(fd)
            throw MetricsServerError(message: "listen(2) failed on \(address)", errno: error)
        }
        var resolved = address
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        if named == 0 {
            resolved.port = withUnsafeBytes(of: &storage) { raw in
                // sin_port and sin6_port share offset 2 in sockaddr_in / sockaddr_in6.
                UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
            }
        }
        var wakePipe: [Int32] = [-1, -1]
        guard pipe(&wakePipe) == 0 else {
            let error = Errno(rawValue: Glibc.errno)
            close(fd)
            throw MetricsServerError(message: "cannot create a pipe for the metrics server", errno: error)
        }
        for end in wakePipe {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        self.address = resolved
        self.requestTimeout = requestTimeout
        self.maxRequestBytes = maxRequestBytes
        self.maxConnections = max(1, maxConnections)
        self.listenFD = fd
        self.wakeFD = wakePipe[0]
        self.wakeWriteFD = wakePipe[1]
        self.metrics = metrics
        self.health = health
    }

    deinit {
        // stop() closes the descriptors after joining; a server that never started still owns them.
        self.lifecycle.withLock { state in
            if case .created = state {
                self.closeDescriptors()
            }
        }
    }

    /// Starts the server thread. Calling it again, or after ``stop()``, has no effect.
    ///
    /// - Throws: ``MetricsServerError`` when the thread cannot be created.
    func start() throws(MetricsServerError) {
        let result: Int32 = self.lifecycle.withLock { state in
            guard case .created = state else { return 0 }
            var thread = pthread_t()
            let context = Unmanaged.passRetained(self).toOpaque()
            let status = pthread_create(
                &thread,
                nil,
                { context in
                    let server = Unmanaged<MetricsHTTPServer>.fromOpaque(context!).takeRetainedValue()
                    server.serve()
                    return nil
                },
                context
            )
            if status == 0 {
                state = .running(thread)
            } else {
                Unmanaged<MetricsHTTPServer>.fromOpaque(context).release()
            }
            return status
        }
        if result != 0 {
            throw MetricsServerError(message: "cannot start the metrics server thread", errno: Errno(rawValue: result))
        }
    }

    /// Stops the server: wakes the threads (also out of slow clients), joins them and closes the socket.
    /// Idempotent.
    func stop() {
        let thread: pthread_t? = self.lifecycle.withLock { state in
            switch state {
            case .created:
                state = .stopped
                self.closeDescriptors()
                return nil
            case .running(let thread):
                state = .stopped
                return thread
            case .stopped:
                return nil
            }
        }
        guard let thread else { return }
        var byte: UInt8 = 1
        _ = write(self.wakeWriteFD, &byte, 1)
        pthread_join(thread, nil)
        self.closeDescriptors()
    }

    private func closeDescriptors() {
        close(self.listenFD)
        close(self.wakeFD)
        close(self.wakeWriteFD)
    }

    // MARK: Serving

    private func serve() {
        CRelayLinux_set_thread_name("relayd-metrics")
        defer { self.joinConnections(all: true) }
        while true {
            self.joinConnections(all: false)
            // At the connection limit, leave new connections in the backlog and look again shortly (a connection
            // thread ends within `requestTimeout`).
            let full = self.connections.withLock { $0.active } >= self.maxConnections
            var fds = [
                pollfd(fd: self.listenFD, events: full ? 0 : Int16(POLLIN), revents: 0),
                pollfd(fd: self.wakeFD, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, 2, full ? 10 : -1)
            if ready < 0 {
                if Glibc.errno == EINTR { continue }
                return
            }
            if fds[1].revents != 0 { return }
            guard !full, fds[0].revents & Int16(POLLIN) != 0 else { continue }
            let connection = accept(self.listenFD, nil, nil)
            guard connection >= 0 else {
                let error = Glibc.errno
                if error == EAGAIN || error == EINTR || error == ECONNABORTED { continue }
                // EMFILE/ENFILE/ENOBUFS/ENOMEM: the connection stays in the backlog and poll reports it again at
                // once; back off (still waking for stop()) instead of spinning.
                var wake = pollfd(fd: self.wakeFD, events: Int16(POLLIN), revents: 0)
                if poll(&wake, 1, 100) > 0 { return }
                continue
            }
            _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
            _ = fcntl(connection, F_SETFL, fcntl(connection, F_GETFL) | O_NONBLOCK)
            if !self.startConnectionThread(connection) {
                // No thread for it (EAGAIN: thread limit): serve it here, as before connection threads.
                let keepRunning = self.handle(connection)
                close(connection)
                if !keepRunning { return }
            }
        }
    }

    private final class ConnectionContext {
        let server: MetricsHTTPServer
        let fd: Int32
        let id: UInt64
        init(server: MetricsHTTPServer, fd: Int32, id: UInt64) {
            self.server = server
            self.fd = fd
            self.id = id
        }
    }

    /// Serves `fd` on a new joinable thread; `false` when the thread cannot be created.
    private func startConnectionThread(_ fd: Int32) -> Bool {
        let id = self.connections.withLock { state -> UInt64 in
            state.nextID += 1
            state.active += 1
            return state.nextID
        }
        let context = Unmanaged.passRetained(ConnectionContext(server: self, fd: fd, id: id)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(
            &thread,
            nil,
            { raw in
                let context = Unmanaged<ConnectionContext>.fromOpaque(raw!).takeRetainedValue()
                CRelayLinux_set_thread_name("relayd-metrics-c")
                _ = context.server.handle(context.fd)
                close(context.fd)
                context.server.connections.withLock { state in
                    state.finished.append(context.id)
                    state.active -= 1
                }
                return nil
            },
            context
        )
        guard status == 0 else {
            Unmanaged<ConnectionContext>.fromOpaque(context).release()
            self.connections.withLock { $0.active -= 1 }
            return false
        }
        self.connections.withLock { $0.running[id] = thread }
        return true
    }

    /// Joins the connection threads that finished, or (`all`, when stopping: the stop pipe wakes them) every one.
    /// Listener thread only (the only one that starts connection threads).
    private func joinConnections(all: Bool) {
        let threads = self.connections.withLock { state -> [pthread_t] in
            var threads: [pthread_t] = []
            if all {
                threads = Array(state.running.values)
                state.running.removeAll()
                state.finished.removeAll()
                return threads
            }
            for id in state.finished {
                // Recorded right after it started, on this thread, so it is there.
                if let thread = state.running.removeValue(forKey: id) { threads.append(thread) }
            }
            state.finished.removeAll()
            return threads
        }
        for thread in threads { pthread_join(thread, nil) }
    }

    private enum WaitResult {
        case ready
        case timedOut
        case stopping
    }

    /// Waits for `events` on `fd` until `deadline`, or for ``stop()``.
    private func wait(_ fd: Int32, events: Int32, deadline: ContinuousClock.Instant) -> WaitResult {
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { return .timedOut }
            let milliseconds = Int32(clamping: remaining.nanosecondsClamped / 1_000_000 + 1)
            var fds = [
                pollfd(fd: fd, events: Int16(events), revents: 0),
                pollfd(fd: self.wakeFD, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, 2, milliseconds)
            if ready < 0 {
                if Glibc.errno == EINTR { continue }
                return .stopping
            }
            if fds[1].revents != 0 { return .stopping }
            if fds[0].revents != 0 { return .ready }
        }
    }

    /// Serves one connection; returns `false` when the server is stopping.
    private func handle(_ fd: Int32) -> Bool {
        let deadline = ContinuousClock.now + self.requestTimeout
        var request = [UInt8](repeating: 0, count: self.maxRequestBytes)
        var count = 0
        var headEnd: Int?
        while headEnd == nil {
            if count == request.count {
                return self.respond(
                    fd,
                    status: 431,
                    reason: "Request Header Fields Too Large",
                    body: Array("request head too large\n".utf8),
                    deadline: deadline
                )
            }
            switch self.wait(fd, events: POLLIN, deadline: deadline) {
            case .stopping: return false
            case .timedOut:
                return self.respond(
                    fd,
                    status: 408,
                    reason: "Request Timeout",
                    body: Array("request timeout\n".utf8),
                    deadline: deadline
                )
            case .ready: break
            }
            let received = request.withUnsafeMutableBytes {
                recv(fd, $0.baseAddress! + count, $0.count - count, Int32(MSG_DONTWAIT))
            }
            if received == 0 { return true }
            if received < 0 {
                if Glibc.errno == EAGAIN || Glibc.errno == EINTR { continue }
                return true
            }
            let searchFrom = max(0, count - 3)
            count += received
            headEnd = Self.findHeadEnd(request, from: searchFrom, to: count)
        }
        let parsed = Self.parse(request[0..<headEnd!])
        switch parsed {
        case .bad(let why):
            return self.respond(
                fd,
                status: 400,
                reason: "Bad Request",
                body: Array("bad request: \(why)\n".utf8),
                deadline: deadline
            )
        case .methodNotAllowed:
            return self.respond(
                fd,
                status: 405,
                reason: "Method Not Allowed",
                body: Array("use GET or HEAD\n".utf8),
                headers: "Allow: GET, HEAD\r\n",
                deadline: deadline
            )
        case .request(let isHead, let path):
            switch path {
            case "/metrics":
                return self.respond(
                    fd,
                    status: 200,
                    reason: "OK",
                    body: self.sourceLock.withLock { _ in self.metrics() },
                    contentType: "text/plain; version=0.0.4; charset=utf-8",
                    headOnly: isHead,
                    deadline: deadline
                )
            case "/healthz":
                let (healthy, detail) = self.sourceLock.withLock { _ in self.health() }
                return self.respond(
                    fd,
                    status: healthy ? 200 : 503,
                    reason: healthy ? "OK" : "Service Unavailable",
                    body: Array((detail + "\n").utf8),
                    headOnly: isHead,
                    deadline: deadline
                )
            default:
                return self.respond(
                    fd,
                    status: 404,
                    reason: "Not Found",
                    body: Array("not found; try /metrics or /healthz\n".utf8),
                    headOnly: isHead,
                    deadline: deadline
                )
            }
        }
    }

    /// The outcome of parsing a request head.
    enum ParsedRequest: Equatable {
        case request(isHead: Bool, path: String)
        case methodNotAllowed
        case bad(String)
    }

    /// Index just past the blank line that ends the request head (`\r\n\r\n` or `\n\n`).
    static func findHeadEnd(_ bytes: [UInt8], from: Int, to: Int) -> Int? {
        var index = from
        while index < to {
            if bytes[index] == 0x0A {
                if index + 1 < to, bytes[index + 1] == 0x0A { return index + 2 }
                if index + 2 < to, bytes[index + 1] == 0x0D, bytes[index + 2] == 0x0A { return index + 3 }
            }
            index += 1
        }
        return nil
    }

    /// Parses a request head (request line and header lines).
    static func parse(_ head: ArraySlice<UInt8>) -> ParsedRequest {
        var lines = head.split(separator: 0x0A, omittingEmptySubsequences: false).map { line -> ArraySlice<UInt8> in
            line.last == 0x0D ? line.dropLast() : line
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let requestLine = lines.first else { return .bad("empty request") }
        let parts = requestLine.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .bad("the request line must be METHOD SP TARGET SP VERSION") }
        let method = parts[0]
        let target = parts[1]
        let version = parts[2]
        guard !method.isEmpty, method.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else {
            return .bad("invalid method")
        }
        guard version.elementsEqual("HTTP/1.1".utf8) || version.elementsEqual("HTTP/1.0".utf8) else {
            return .bad("unsupported HTTP version")
        }
        guard target.first == UInt8(ascii: "/"), target.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .bad("the target must be an absolute path")
        }
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
                !line[line.startIndex..<colon].contains(0x20)
            else { return .bad("malformed header line") }
        }
        let isGet = method.elementsEqual("GET".utf8)
        let isHead = method.elementsEqual("HEAD".utf8)
        guard isGet || isHead else { return .methodNotAllowed }
        let path =
            target.split(separator: UInt8(ascii: "?"), maxSplits: 1, omittingEmptySubsequences: false).first ?? target
        return .request(isHead: isHead, path: String(decoding: path, as: UTF8.self))
    }

    /// Writes a complete response; returns `false` when the server is stopping.
    private func respond(
        _ fd: Int32,
        status: Int,
        reason: String,
        body: [UInt8],
        contentType: String = "text/plain; charset=utf-8",
        headers: String = "",
        headOnly: Bool = false,
        deadline: ContinuousClock.Instant
    ) -> Bool {
        let head =
            "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
            + "Cache-Control: no-store\r\n\(headers)Connection: close\r\n\r\n"
        var response = Array(head.utf8)
        if !headOnly { response += body }
        var offset = 0
        while offset < response.count {
            let sent = response.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if sent > 0 {
                offset += sent
                continue
            }
            if sent < 0, Glibc.errno == EAGAIN || Glibc.errno == EINTR {
                switch self.wait(fd, events: POLLOUT, deadline: deadline) {
                case .ready: continue
                case .timedOut: return true
                case .stopping: return false
                }
            }
            return true
        }
        // Lingering close: half-close so the client sees EOF after the body, then discard whatever it still sends
        // (briefly) so that close(2) does not turn unread request bytes into a reset that could destroy the response.
        shutdown(fd, Int32(SHUT_WR))
        let lingerDeadline = min(deadline, ContinuousClock.now + .milliseconds(200))
        var scratch = [UInt8](repeating: 0, count: 512)
        while true {
            switch self.wait(fd, events: POLLIN, deadline: lingerDeadline) {
            case .ready:
                let received = scratch.withUnsafeMutableBytes {
                    recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
                }
                if received > 0 || (received < 0 && (Glibc.errno == EAGAIN || Glibc.errno == EINTR)) { continue }
                return true
            case .timedOut: return true
            case .stopping: return false
            }
        }
    }
}
