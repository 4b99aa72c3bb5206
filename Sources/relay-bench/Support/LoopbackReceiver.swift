import Glibc
import Relay
import Synchronization

/// A TCP receiver on 127.0.0.1 that drains one connection as fast as it can, for the socket
/// baselines and for `tcp:` sink runs without an external receiver.
///
/// It listens on an ephemeral port (``port``) and, on its own thread, accepts connections one
/// after the other, reads each in 1 MiB `recv` calls until end of stream, optionally writes the
/// bytes to a file (so the output can be verified), then closes it (which tells a sender that
/// everything was read). ``finish()`` waits for the current connection to end, joins the thread
/// and returns the byte count of all connections.
final class LoopbackReceiver: Sendable {
    /// What the receiver got.
    struct Result: Sendable, Equatable {
        /// Bytes received.
        var bytes: UInt64
        /// Whether a connection was accepted at all.
        var accepted: Bool
    }

    private final class State: Sendable {
        let stop = Atomic<Bool>(false)
        let bytes = Atomic<UInt64>(0)
        let accepted = Atomic<Bool>(false)
        let failure = RelayMutex<BenchError?>(nil)
    }

    /// The TCP port on 127.0.0.1 the receiver listens on.
    let port: UInt16

    private let listener: Int32
    /// A pipe that ``finish()`` writes to (`wake.write`), so a thread waiting for the next
    /// connection stops at once instead of at its next poll timeout (which a timed run would
    /// otherwise include).
    private let wake: (read: Int32, write: Int32)
    private let state = State()
    private let thread: RelayMutex<BenchThread?>

    /// Starts listening and launches the receiving thread.
    ///
    /// - Parameter outputPath: When set, received bytes are written to this file (created or
    ///   truncated).
    /// - Throws: ``BenchError`` when the socket or output file cannot be set up.
    init(outputPath: String? = nil) throws(BenchError) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else {
            throw BenchError.system("cannot create the loopback receiver socket", errno: errno, fix: "check the file descriptor limit (ulimit -n)")
        }
        var one: Int32 = 1
        _ = setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 16) == 0 else {
            let code = errno
            POSIXIO.closeQuietly(listener)
            throw BenchError.system("cannot listen on 127.0.0.1", errno: code, fix: "check that the loopback interface is up")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        self.port = UInt16(bigEndian: address.sin_port)
        self.listener = listener
        var ends: (Int32, Int32) = (-1, -1)
        let piped = withUnsafeMutableBytes(of: &ends) { pipe($0.baseAddress!.assumingMemoryBound(to: Int32.self)) }
        guard piped == 0 else {
            let code = errno
            POSIXIO.closeQuietly(listener)
            throw BenchError.system("cannot create the loopback receiver's wake-up pipe", errno: code, fix: "check the file descriptor limit (ulimit -n)")
        }
        _ = fcntl(ends.0, F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends.1, F_SETFD, FD_CLOEXEC)
        let wake = (read: ends.0, write: ends.1)
        self.wake = wake

        var outputFD: Int32 = -1
        if let outputPath {
            outputFD = open(outputPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard outputFD >= 0 else {
                let code = errno
                POSIXIO.closeQuietly(listener)
                POSIXIO.closeQuietly(wake.read)
                POSIXIO.closeQuietly(wake.write)
                throw BenchError.system("cannot open '\(outputPath)' for the received data", errno: code, fix: "pick a writable path")
            }
        }
        let state = self.state
        let output = outputFD
        do {
            let thread = try BenchThread(name: "receiver") {
                LoopbackReceiver.serve(listener: listener, wake: wake.read, output: output, state: state)
                if output >= 0 { POSIXIO.closeQuietly(output) }
            }
            self.thread = RelayMutex(thread)
        } catch {
            POSIXIO.closeQuietly(listener)
            POSIXIO.closeQuietly(wake.read)
            POSIXIO.closeQuietly(wake.write)
            if output >= 0 { POSIXIO.closeQuietly(output) }
            throw error
        }
    }

    deinit {
        _ = self.finishIgnoringErrors()
    }

    /// `tcp:127.0.0.1:PORT`, usable as a `--sink`.
    var sinkSpec: SinkSpec { .tcp(host: "127.0.0.1", port: self.port, format: .plain) }

    /// Connects a blocking client socket to the receiver.
    ///
    /// - Returns: The connected socket; the caller closes it.
    func connect() throws(BenchError) -> Int32 {
        try Preflight.connectTCP(host: "127.0.0.1", port: self.port, timeout: .seconds(2))
    }

    /// The bytes received so far.
    var receivedBytes: UInt64 {
        // Relaxed: a progress read; finish() joins the thread for the final value.
        self.state.bytes.load(ordering: .relaxed)
    }

    /// Stops accepting, waits for the current connection to reach end of stream, and returns the
    /// totals. A connection already waiting in the backlog is still accepted and drained.
    ///
    /// - Throws: ``BenchError`` when receiving or writing the output file failed.
    func finish() throws(BenchError) -> Result {
        let result = self.finishIgnoringErrors()
        if let failure = self.state.failure.withLock({ $0 }) {
            throw failure
        }
        return result
    }

    private func finishIgnoringErrors() -> Result {
        let thread = self.thread.withLock { thread -> BenchThread? in
            defer { thread = nil }
            return thread
        }
        if let thread {
            // Releasing: pairs with the acquiring load in `accept`, which runs after the pipe
            // write below woke its poll.
            self.state.stop.store(true, ordering: .releasing)
            var one: UInt8 = 1
            _ = write(self.wake.write, &one, 1)
            thread.join()
            POSIXIO.closeQuietly(self.listener)
            POSIXIO.closeQuietly(self.wake.read)
            POSIXIO.closeQuietly(self.wake.write)
        }
        // Relaxed: the serving thread was joined, which orders its stores before these loads.
        return Result(bytes: self.state.bytes.load(ordering: .relaxed), accepted: self.state.accepted.load(ordering: .relaxed))
    }

    private static func serve(listener: Int32, wake: Int32, output: Int32, state: State) {
        let capacity = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 4096)
        defer { buffer.deallocate() }
        // Connections are served one after the other until finish(): a preflight probe that
        // connects and closes at once is drained like any other connection.
        while let connection = LoopbackReceiver.accept(listener: listener, wake: wake, state: state) {
            // Relaxed: published to finish() by the thread join.
            state.accepted.store(true, ordering: .relaxed)
            let keepGoing = LoopbackReceiver.drain(connection, output: output, buffer: buffer, capacity: capacity, state: state)
            POSIXIO.closeQuietly(connection)
            if !keepGoing { return }
        }
    }

    /// Waits for the next connection; `nil` once finish() was called and nobody is waiting.
    ///
    /// It sleeps until a connection arrives or finish() signals `wake`, never in timed slices:
    /// swift-relay's timed run ends with finish(), which must not wait out a poll timeout.
    private static func accept(listener: Int32, wake: Int32, state: State) -> Int32? {
        while true {
            var descriptors = (
                pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)
            )
            let ready = withUnsafeMutableBytes(of: &descriptors) {
                poll($0.baseAddress!.assumingMemoryBound(to: pollfd.self), 2, -1)
            }
            if ready < 0 {
                let code = errno
                if code == EINTR { continue }
                state.failure.withLock { $0 = BenchError.system("poll on the loopback receiver failed", errno: code, fix: "retry") }
                return nil
            }
            if descriptors.0.revents != 0 {
                // A connection waiting in the backlog is accepted even after finish() was called.
                let connection = Glibc.accept(listener, nil, nil)
                if connection >= 0 { return connection }
                let code = errno
                if code != EINTR && code != EAGAIN && code != ECONNABORTED {
                    state.failure.withLock { $0 = BenchError.system("accept on the loopback receiver failed", errno: code, fix: "retry") }
                    return nil
                }
            } else if state.stop.load(ordering: .acquiring) {
                // Acquiring: pairs with the releasing store in finishIgnoringErrors(); only its
                // pipe write makes `wake` readable, so the flag is set whenever we get here
                // through it.
                return nil
            }
        }
    }

    /// Reads `connection` to its end; `false` after a failure that ends the receiver.
    private static func drain(_ connection: Int32, output: Int32, buffer: UnsafeMutableRawPointer, capacity: Int, state: State) -> Bool {
        while true {
            let n = recv(connection, buffer, capacity, 0)
            if n == 0 { return true }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                if code == ECONNRESET { return true }
                state.failure.withLock { $0 = BenchError.system("receiving on the loopback receiver failed", errno: code, fix: "retry") }
                return false
            }
            if output >= 0 {
                let code = POSIXIO.writeAll(output, buffer, n)
                if code != 0 {
                    state.failure.withLock { $0 = BenchError.system("writing received data failed", errno: code, fix: "free space or pick another output path") }
                    return false
                }
            }
            // Relaxed: a counter read for progress and, after the join, for the total.
            state.bytes.wrappingAdd(UInt64(n), ordering: .relaxed)
        }
    }
}
