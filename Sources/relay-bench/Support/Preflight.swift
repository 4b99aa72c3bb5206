import Dispatch
import Glibc
import Relay
import Synchronization

/// Checks that sink destinations are usable before a run starts, without the relay engine.
///
/// Each check fails fast with a one-line ``BenchError`` (exit code 2) instead of letting the run
/// crash or hang: files need an existing, writable directory; TCP hosts must resolve and accept a
/// connection within a short timeout; Unix sockets must exist and accept a connection.
enum Preflight {
    /// The default time allowed for name resolution and for a TCP connect.
    static let defaultTimeout: Duration = .seconds(2)

    /// Checks one sink.
    ///
    /// - Parameters:
    ///   - sink: The sink to check.
    ///   - timeout: The limit for resolving and connecting network sinks.
    /// - Throws: ``BenchError`` naming the problem and the fix.
    static func check(_ sink: SinkSpec, timeout: Duration = Preflight.defaultTimeout) throws(BenchError) {
        switch sink {
        case .null:
            return
        case .file(let path, let options):
            try Preflight.checkWritableFile(path, direct: options.direct)
        case .filePerBuffer(let directory, let options):
            try Preflight.checkWritableDirectory(directory, direct: options.direct)
        case .tcp(let host, let port, _):
            POSIXIO.closeQuietly(try Preflight.connectTCP(host: host, port: port, timeout: timeout))
        case .unix(let path, _):
            POSIXIO.closeQuietly(try Preflight.connectUnix(path: path))
        }
    }

    /// Checks every sink, in order; the first failure is thrown.
    static func check(_ sinks: [SinkSpec], timeout: Duration = Preflight.defaultTimeout) throws(BenchError) {
        for sink in sinks {
            try Preflight.check(sink, timeout: timeout)
        }
    }

    // MARK: Files

    /// Checks that `path` can be created or opened for writing (and with `O_DIRECT` if asked).
    ///
    /// An existing file is opened for writing without truncation; otherwise a probe file is created
    /// next to it and removed again.
    static func checkWritableFile(_ path: String, direct: Bool) throws(BenchError) {
        let directory = Preflight.parentDirectory(of: path)
        try Preflight.requireDirectory(directory, for: path)
        var info = stat()
        if stat(path, &info) == 0 {
            if (info.st_mode & S_IFMT) == S_IFDIR {
                throw BenchError("'\(path)' is a directory: give file:PATH a file name, or use file-per-buffer:\(path)")
            }
            let fd = open(path, O_WRONLY | O_CLOEXEC | (direct ? POSIXIO.directFlag : 0))
            guard fd >= 0 else {
                throw Preflight.openError(path: path, errno: errno, direct: direct)
            }
            POSIXIO.closeQuietly(fd)
        } else {
            try Preflight.probeCreate(in: directory, direct: direct, target: path)
        }
    }

    /// Checks that `directory` exists (or can be created in a writable parent) and is writable.
    static func checkWritableDirectory(_ directory: String, direct: Bool) throws(BenchError) {
        var info = stat()
        if stat(directory, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw BenchError("'\(directory)' is not a directory: give file-per-buffer:DIR a directory, or use file:\(directory)")
            }
            try Preflight.probeCreate(in: directory, direct: direct, target: directory)
        } else {
            let parent = Preflight.parentDirectory(of: directory)
            try Preflight.requireDirectory(parent, for: directory)
            try Preflight.probeCreate(in: parent, direct: direct, target: directory)
        }
    }

    private static func requireDirectory(_ directory: String, for path: String) throws(BenchError) {
        var info = stat()
        guard stat(directory, &info) == 0 else {
            let code = errno
            if code == ENOENT {
                throw BenchError("directory '\(directory)' for '\(path)' does not exist: create it with mkdir -p \(directory) or pick another path")
            }
            throw BenchError.system("cannot use directory '\(directory)' for '\(path)'", errno: code, fix: "pick another path")
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            throw BenchError("'\(directory)' in '\(path)' is not a directory: pick a path inside an existing directory")
        }
    }

    private static func probeCreate(in directory: String, direct: Bool, target: String) throws(BenchError) {
        let probe = (directory.hasSuffix("/") ? directory : directory + "/") + ".relay-bench-preflight-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | (direct ? POSIXIO.directFlag : 0), 0o600)
        guard fd >= 0 else {
            let code = errno
            if direct && code == EINVAL {
                // The file may exist even though O_DIRECT was refused.
                _ = unlink(probe)
            }
            throw Preflight.openError(path: target, errno: code, direct: direct)
        }
        POSIXIO.closeQuietly(fd)
        _ = unlink(probe)
    }

    private static func openError(path: String, errno code: Int32, direct: Bool) -> BenchError {
        switch code {
        case EINVAL where direct:
            return BenchError("the file system of '\(path)' does not support O_DIRECT: drop the odirect option or use a path on ext4/xfs")
        case EACCES, EPERM:
            return BenchError("no permission to write '\(path)': pick a writable path or fix its permissions")
        case EROFS:
            return BenchError("'\(path)' is on a read-only file system: pick a writable path")
        default:
            return BenchError.system("cannot write '\(path)'", errno: code, fix: "pick another path")
        }
    }

    /// The directory part of `path` (`.` for a bare name, `/` for a top-level entry).
    static func parentDirectory(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        if slash == trimmed.startIndex { return "/" }
        return String(trimmed[..<slash])
    }

    // MARK: Sockets

    /// Resolves `host` and connects to `port` within `timeout`; returns a connected, blocking socket.
    ///
    /// Name resolution runs on a helper thread so a dead DNS server cannot hang the caller past
    /// `timeout`; a connect that neither succeeds nor fails in time is abandoned.
    ///
    /// - Returns: The socket; the caller closes it.
    /// - Throws: ``BenchError`` for an unresolvable host, a refused or timed-out connection.
    static func connectTCP(host: String, port: UInt16, timeout: Duration) throws(BenchError) -> Int32 {
        let deadline = ContinuousClock.now + timeout
        let addresses = try Preflight.resolve(host: host, port: port, timeout: timeout)
        var lastError = BenchError("cannot connect to tcp:\(host):\(port): no usable address; check the host name")
        for address in addresses {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else {
                throw Preflight.timeoutError(host: host, port: port, timeout: timeout)
            }
            do {
                return try Preflight.connect(address: address, remaining: remaining, describe: "tcp:\(host):\(port)", timeout: timeout)
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Connects to the Unix stream socket at `path`; returns a connected, blocking socket.
    ///
    /// - Throws: ``BenchError`` when the path is missing, not a socket, or nobody listens.
    static func connectUnix(path: String) throws(BenchError) -> Int32 {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw BenchError("unix socket '\(path)' does not exist: start the receiver first or fix the path")
        }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw BenchError("'\(path)' is not a unix socket: point unix:PATH at a listening socket")
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw BenchError("unix socket path '\(path)' is too long: use a path of at most 107 bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let storage = Preflight.SocketAddress(family: AF_UNIX, bytes: withUnsafeBytes(of: &address) { Array($0) })
        return try Preflight.connect(address: storage, remaining: Preflight.defaultTimeout, describe: "unix:\(path)", timeout: Preflight.defaultTimeout)
    }

    /// A resolved socket address, owned (no pointers into `addrinfo`).
    struct SocketAddress: Sendable {
        var family: Int32
        var bytes: [UInt8]
    }

    private final class Resolution: Sendable {
        let result = RelayMutex<Result<[SocketAddress], BenchError>?>(nil)
        let done = DispatchSemaphore(value: 0)
    }

    /// Resolves `host:port` to stream socket addresses within `timeout`.
    static func resolve(host: String, port: UInt16, timeout: Duration) throws(BenchError) -> [SocketAddress] {
        // Numeric addresses resolve at once, without a helper thread.
        if let numeric = try Preflight.getAddresses(host: host, port: port, numericOnly: true) {
            return numeric
        }
        let resolution = Resolution()
        let thread = try BenchThread(name: "resolve") {
            let outcome: Result<[SocketAddress], BenchError>
            do throws(BenchError) {
                outcome = .success(try Preflight.getAddresses(host: host, port: port, numericOnly: false) ?? [])
            } catch {
                outcome = .failure(error)
            }
            resolution.result.withLock { $0 = outcome }
            resolution.done.signal()
        }
        let (seconds, attoseconds) = timeout.components
        let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
        guard resolution.done.wait(timeout: .now() + .nanoseconds(nanoseconds)) == .success else {
            // The thread is detached when `thread` is released; it finishes on its own.
            throw BenchError("resolving host '\(host)' timed out after \(SizeParser.formatDuration(timeout)): check DNS or use an IP address")
        }
        thread.join()
        let outcome = resolution.result.withLock { $0 } ?? .success([])
        switch outcome {
        case .success(let addresses):
            guard !addresses.isEmpty else {
                throw BenchError("host '\(host)' has no usable address: check the host name or use an IP address")
            }
            return addresses
        case .failure(let error):
            throw error
        }
    }

    /// `getaddrinfo` for stream sockets; `nil` when `numericOnly` and the host is a name.
    private static func getAddresses(host: String, port: UInt16, numericOnly: Bool) throws(BenchError) -> [SocketAddress]? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (numericOnly ? AI_NUMERICHOST : 0)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0 else {
            if numericOnly && rc == EAI_NONAME { return nil }
            let reason = String(cString: gai_strerror(rc))
            throw BenchError("cannot resolve host '\(host)': \(reason); check the host name or use an IP address")
        }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var entry = list
        while let current = entry {
            if let address = current.pointee.ai_addr {
                let bytes = Array(UnsafeRawBufferPointer(start: address, count: Int(current.pointee.ai_addrlen)))
                addresses.append(SocketAddress(family: current.pointee.ai_family, bytes: bytes))
            }
            entry = current.pointee.ai_next
        }
        return addresses
    }

    private static func connect(address: SocketAddress, remaining: Duration, describe: String, timeout: Duration) throws(BenchError) -> Int32 {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw BenchError.system("cannot create a socket for \(describe)", errno: errno, fix: "check the file descriptor limit (ulimit -n)")
        }
        var closeOnExit = true
        defer { if closeOnExit { POSIXIO.closeQuietly(fd) } }
        let rc = address.bytes.withUnsafeBytes { raw in
            Glibc.connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        if rc != 0 {
            let code = errno
            guard code == EINPROGRESS || code == EAGAIN || code == EINTR else {
                throw Preflight.connectError(describe: describe, errno: code)
            }
            let (seconds, attoseconds) = remaining.components
            let milliseconds = max(1, Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000))
            var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            var ready: Int32
            repeat {
                ready = poll(&pollfd, 1, milliseconds)
            } while ready < 0 && errno == EINTR
            guard ready > 0 else {
                throw BenchError("connecting to \(describe) timed out after \(SizeParser.formatDuration(timeout)): check that the host is up and the port is not filtered")
            }
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
            guard soError == 0 else {
                throw Preflight.connectError(describe: describe, errno: soError)
            }
        }
        // Back to blocking mode for the caller.
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        closeOnExit = false
        return fd
    }

    private static func connectError(describe: String, errno code: Int32) -> BenchError {
        switch code {
        case ECONNREFUSED:
            return BenchError("nothing listens at \(describe) (connection refused): start the receiver first or fix the address")
        case ENETUNREACH, EHOSTUNREACH:
            return BenchError.system("cannot reach \(describe)", errno: code, fix: "check the address and the network")
        default:
            return BenchError.system("cannot connect to \(describe)", errno: code, fix: "check the address and that a receiver is listening")
        }
    }

    private static func timeoutError(host: String, port: UInt16, timeout: Duration) -> BenchError {
        BenchError("connecting to tcp:\(host):\(port) timed out after \(SizeParser.formatDuration(timeout)): check that the host is up and the port is not filtered")
    }
}
