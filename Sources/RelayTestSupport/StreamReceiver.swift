internal import Glibc
import Relay
import Synchronization

/// A real stream-socket peer for tests: listens on 127.0.0.1 (TCP) or a Unix path,
/// accepts connections one after another on its own thread and keeps every byte it
/// read. It can read slowly, use a small receive buffer, and be killed abruptly
/// (RST, unread data lost) and restarted on the same address. It can also start paused,
/// reading nothing until ``resume()``, so a test can fill the sender's buffers for certain.
public final class StreamReceiver: @unchecked Sendable {
    /// Where the receiver listens.
    public enum Address: Sendable {
        case tcp(port: Int)
        case unix(path: String)
    }

    public let address: Address
    private let receiveBuffer: Int?
    private let readDelayMicroseconds: UInt32
    private let state = RelayMutex<State>(State())
    private var thread: TestThreads.Handle?
    private let listenFD: Int32
    /// Tells the accept loop to end. Relaxed everywhere: it publishes nothing (the stopping
    /// thread joins the loop's thread, and the join orders the rest).
    private let stopFlag = Atomic<Bool>(false)
    private let paused: Atomic<Bool>

    private struct State {
        var bytes: [UInt8] = []
        var connections = 0
        var currentFD: Int32 = -1
    }

    /// Starts listening. `port: 0` picks an ephemeral port (see ``port``). With `paused`, it
    /// accepts connections but reads nothing until ``resume()``.
    public init(tcpPort: Int = 0, receiveBuffer: Int? = nil, readDelayMicroseconds: UInt32 = 0, paused: Bool = false) throws {
        let (fd, port) = try Self.tcpListener(port: tcpPort, receiveBuffer: receiveBuffer, backlog: 16)
        self.address = .tcp(port: port)
        self.listenFD = fd
        self.receiveBuffer = receiveBuffer
        self.readDelayMicroseconds = readDelayMicroseconds
        self.paused = Atomic(paused)
        self.startThread()
    }

    /// A TCP socket listening on 127.0.0.1:`port` (`0`: an ephemeral port), for tests that accept
    /// connections themselves; `receiveBuffer` sets `SO_RCVBUF`, which accepted connections
    /// inherit. Returns the socket and the port it listens on. The caller closes it.
    public static func tcpListener(port: Int = 0, receiveBuffer: Int? = nil, backlog: Int32 = 4) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ReceiverError(message: "socket() failed: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if let receiveBuffer {
            var value = Int32(receiveBuffer)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &value, socklen_t(MemoryLayout<Int32>.size))
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, backlog) == 0 else {
            let e = errno
            close(fd)
            throw ReceiverError(message: "bind/listen on 127.0.0.1:\(port) failed: errno \(e)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, Int(UInt16(bigEndian: actual.sin_port)))
    }

    /// Starts listening on a Unix stream socket at `path`.
    public init(unixPath path: String, readDelayMicroseconds: UInt32 = 0) throws {
        let fd = try Self.unixListener(path, backlog: 16)
        self.address = .unix(path: path)
        self.listenFD = fd
        self.receiveBuffer = nil
        self.readDelayMicroseconds = readDelayMicroseconds
        self.paused = Atomic(false)
        self.startThread()
    }

    /// A Unix stream socket listening at `path` (an old file there is removed first), for tests
    /// that accept connections themselves. The caller closes it and removes the path.
    public static func unixListener(_ path: String, backlog: Int32 = 4) throws -> Int32 {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ReceiverError(message: "socket() failed: errno \(errno)") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, backlog) == 0 else {
            let e = errno
            close(fd)
            throw ReceiverError(message: "bind/listen on \(path) failed: errno \(e)")
        }
        return fd
    }

    /// The TCP port (0 for Unix receivers).
    public var port: Int {
        if case .tcp(let port) = self.address { return port }
        return 0
    }

    private func startThread() {
        self.thread = TestThreads.spawn { [self] in self.acceptLoop() }
    }

    private func acceptLoop() {
        var chunk = [UInt8](repeating: 0, count: 256 * 1024)
        while !self.stopFlag.load(ordering: .relaxed) {
            var pfd = pollfd(fd: self.listenFD, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 50) <= 0 { continue }
            let conn = accept(self.listenFD, nil, nil)
            if conn < 0 { continue }
            if let receiveBuffer = self.receiveBuffer {
                var value = Int32(receiveBuffer)
                setsockopt(conn, SOL_SOCKET, SO_RCVBUF, &value, socklen_t(MemoryLayout<Int32>.size))
            }
            self.state.withLock {
                $0.connections += 1
                $0.currentFD = conn
            }
            while !self.stopFlag.load(ordering: .relaxed) {
                // Relaxed: a flag polled every millisecond; no data is published through it.
                if self.paused.load(ordering: .relaxed) {
                    usleep(1000)
                    continue
                }
                var cfd = pollfd(fd: conn, events: Int16(POLLIN), revents: 0)
                if poll(&cfd, 1, 50) <= 0 { continue }
                let n = chunk.withUnsafeMutableBytes { recv(conn, $0.baseAddress, $0.count, 0) }
                // A signal (Foundation's SIGCHLD handling for child processes of other tests)
                // interrupts the call: not the peer's doing, so read again.
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                self.state.withLock { $0.bytes.append(contentsOf: chunk[0..<n]) }
                if self.readDelayMicroseconds > 0 { usleep(self.readDelayMicroseconds) }
            }
            self.state.withLock { state in
                if state.currentFD == conn {
                    close(conn)
                    state.currentFD = -1
                }
            }
        }
    }

    /// Starts reading, for a receiver created `paused`.
    public func resume() {
        self.paused.store(false, ordering: .relaxed)  // Relaxed: see the poll in acceptLoop.
    }

    /// Everything read so far, across connections.
    public var received: [UInt8] { self.state.withLock { $0.bytes } }

    /// Number of bytes read so far.
    public var receivedCount: Int { self.state.withLock { $0.bytes.count } }

    /// Connections accepted so far.
    public var connections: Int { self.state.withLock { $0.connections } }

    /// Stops the receiver. With `abort`, the connection is reset (SO_LINGER 0): data
    /// the receiver's kernel acknowledged but this process did not read is lost, as
    /// when a real peer dies.
    public func stop(abort: Bool = false) {
        self.state.withLock { state in
            if state.currentFD >= 0 {
                if abort {
                    var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                    setsockopt(state.currentFD, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                }
                close(state.currentFD)
                state.currentFD = -1
            }
        }
        self.stopFlag.store(true, ordering: .relaxed)
        if let thread = self.thread { TestThreads.join(thread) }
        self.thread = nil
        close(self.listenFD)
        if case .unix(let path) = self.address { unlink(path) }
    }

    /// Waits until `count` bytes arrived or `timeout` seconds passed; returns the count.
    @discardableResult
    public func waitFor(bytes count: Int, timeout: Double) -> Int {
        let deadline = monotonicSeconds() + timeout
        while monotonicSeconds() < deadline {
            let n = self.receivedCount
            if n >= count { return n }
            usleep(5000)
        }
        return self.receivedCount
    }
}

/// A receiver could not start.
public struct ReceiverError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { self.message }
}

/// CLOCK_MONOTONIC in seconds (tests only).
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
