import CRelayLinux
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A start-up failure that the operator fixes in the configuration or on the machine (exit status 2).
struct StartupError: Error, CustomStringConvertible {
    /// The key path of the setting involved (`inputs[0].listen`), or `""`.
    var keyPath: String
    /// What failed and how to fix it.
    var message: String

    /// `keyPath: message`.
    var description: String { self.keyPath.isEmpty ? self.message : "\(self.keyPath): \(self.message)" }
}

/// One input's bound socket, created on the main thread before the input ring starts, so that a port in use or
/// a bad socket path fails the start with a clear message.
struct BoundInput: Sendable {
    /// What the descriptor is.
    enum Kind: Sendable, Equatable {
        /// A listening stream socket (TCP or Unix).
        case listener
        /// A bound datagram socket.
        case datagram
        /// Standard input.
        case stdin
    }

    /// Index of the input in the configuration.
    var input: Int
    /// The descriptor.
    var fd: Int32
    /// What it is.
    var kind: Kind
    /// `tcp 127.0.0.1:5140`, `unix_dgram ./log.sock`, `stdin`: for logs.
    var description: String
    /// A Unix socket path to unlink at shutdown.
    var unixPath: String?
}

/// Creates the sockets of the configured inputs.
enum InputSockets {
    /// The receive buffer asked for on a Unix datagram input (the kernel caps it at `rmem_max`).
    static let datagramReceiveBuffer = 4 << 20

    /// Binds every input of `config`.
    ///
    /// - Parameter config: The configuration.
    /// - Returns: One ``BoundInput`` per input, in configuration order.
    /// - Throws: ``StartupError`` naming the input; sockets bound so far are closed.
    static func bind(_ config: RelaydConfig) throws(StartupError) -> [BoundInput] {
        var bound: [BoundInput] = []
        do {
            for (index, input) in config.inputs.enumerated() {
                bound.append(try Self.bind(input, index: index))
            }
        } catch {
            Self.close(bound)
            throw error
        }
        return bound
    }

    /// Closes descriptors (and unlinks Unix socket paths) of inputs that never started.
    static func close(_ inputs: [BoundInput]) {
        for input in inputs where input.kind != .stdin {
            _ = Glibc.close(input.fd)
            if let path = input.unixPath { _ = unlink(path) }
        }
    }

    private static func bind(_ input: InputConfig, index: Int) throws(StartupError) -> BoundInput {
        let keyPath = "inputs[\(index)]"
        switch input.kind {
        case .stdin:
            return BoundInput(input: index, fd: STDIN_FILENO, kind: .stdin, description: "stdin", unixPath: nil)
        case .tcp(let listen, _):
            let (fd, port) = try Self.tcpListener(listen, keyPath: keyPath + ".listen")
            var actual = listen
            actual.port = port
            return BoundInput(input: index, fd: fd, kind: .listener, description: "tcp \(actual)", unixPath: nil)
        case .unixStream(let path, let mode, _):
            let fd = try Self.unixSocket(path: path, mode: mode, type: SOCK_STREAM, keyPath: keyPath + ".path")
            return BoundInput(input: index, fd: fd, kind: .listener, description: "unix_stream \(path)", unixPath: path)
        case .unixDatagram(let path, let mode):
            let fd = try Self.unixSocket(path: path, mode: mode, type: SOCK_DGRAM, keyPath: keyPath + ".path")
            // A larger receive queue absorbs bursts from /dev/log clients (the kernel caps it at rmem_max).
            var size = Int32(Self.datagramReceiveBuffer)
            if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
                _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            }
            // The sender's pid and uid come with every datagram (SCM_CREDENTIALS): the input's `peer` tag.
            _ = CRelayLinux_enable_passcred(fd)
            return BoundInput(input: index, fd: fd, kind: .datagram, description: "unix_dgram \(path)", unixPath: path)
        }
    }

    /// A listening TCP socket; returns the descriptor and the bound port (the kernel's choice for port 0).
    static func tcpListener(_ address: ListenAddress, keyPath: String) throws(StartupError) -> (Int32, UInt16) {
        let family = address.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw StartupError(keyPath: keyPath, message: "cannot create a TCP socket: \(Errno(rawValue: errno))")
        }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if address.family == .ipv6 {
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        guard address.withSockAddr({ Glibc.bind(fd, $0, $1) }) == 0 else {
            let error = Errno(rawValue: errno)
            _ = Glibc.close(fd)
            let fix: String
            switch error {
            case .addressInUse: fix = "another process uses \(address); stop it or choose another port"
            case .permissionDenied: fix = "ports below 1024 need CAP_NET_BIND_SERVICE; use a port ≥ 1024 (e.g. 5140)"
            case .addressNotAvailable: fix = "\(address.host) is not an address of this host"
            default: fix = "check the address"
            }
            throw StartupError(keyPath: keyPath, message: "cannot listen on \(address): \(error); \(fix)")
        }
        guard Glibc.listen(fd, SOMAXCONN) == 0 else {
            let error = Errno(rawValue: errno)
            _ = Glibc.close(fd)
            throw StartupError(keyPath: keyPath, message: "listen(2) on \(address) failed: \(error)")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        var port = address.port
        if named == 0 {
            // sin_port and sin6_port share offset 2.
            port = withUnsafeBytes(of: &storage) { UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self)) }
        }
        return (fd, port)
    }

    /// A bound Unix socket (listening, for `SOCK_STREAM`) with permissions `mode`.
    ///
    /// A stale socket file at `path` (left by a crashed relayd) is replaced; any other kind of file is an error.
    static func unixSocket(path: String, mode: UInt32, type: __socket_type, keyPath: String) throws(StartupError) -> Int32 {
        guard path.utf8.count <= 107 else {
            throw StartupError(keyPath: keyPath, message: "\(path) is longer than 107 bytes; use a shorter path")
        }
        var info = stat()
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFSOCK else {
                throw StartupError(keyPath: keyPath, message: "\(path) exists and is not a socket; remove it or choose another path")
            }
            switch Self.probe(path: path, type: type) {
            case .live:
                throw StartupError(
                    keyPath: keyPath,
                    message: "\(path) is in use by another process (another relayd?); stop it or choose another path"
                )
            case .liveNotAccepting:
                throw StartupError(
                    keyPath: keyPath,
                    message: "\(path) is in use by another process that does not accept connections (its accept backlog is "
                        + "full: it may be hung or overloaded); stop it or choose another path"
                )
            case .liveOtherType:
                let other = type == SOCK_STREAM ? "datagram" : "stream"
                throw StartupError(
                    keyPath: keyPath,
                    message: "\(path) is a \(other) socket in use by another process (e.g. journald's /dev/log); "
                        + "choose another path"
                )
            case .stale:
                break
            }
            _ = unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw StartupError(keyPath: keyPath, message: "cannot create a Unix socket: \(Errno(rawValue: errno))")
        }
        let bound = Self.withUnixAddress(path) { Glibc.bind(fd, $0, $1) }
        guard bound == 0 else {
            let error = Errno(rawValue: errno)
            _ = Glibc.close(fd)
            let fix =
                error == .noSuchFileOrDirectory
                ? "the directory does not exist; create it or set create_dirs = true in [daemon]"
                : "check the directory's permissions"
            throw StartupError(keyPath: keyPath, message: "cannot bind \(path): \(error); \(fix)")
        }
        _ = chmod(path, mode_t(mode))
        if type == SOCK_STREAM, Glibc.listen(fd, SOMAXCONN) != 0 {
            let error = Errno(rawValue: errno)
            _ = Glibc.close(fd)
            _ = unlink(path)
            throw StartupError(keyPath: keyPath, message: "listen(2) on \(path) failed: \(error)")
        }
        return fd
    }

    /// What a connect to an existing socket file says about it.
    enum SocketProbe: Equatable {
        /// A process serves it with the type relayd wants (the connect succeeded).
        case live
        /// A process listens on it but does not accept: its accept backlog is full, so a blocking connect would wait
        /// until it accepts, which a hung process never does. It is live all the same.
        case liveNotAccepting
        /// A process serves it with the other type (`EPROTOTYPE`): a stream input's path is another daemon's
        /// datagram socket, or the reverse. Unlinking it would silently cut that daemon off.
        case liveOtherType
        /// Nobody serves it (a file left by a process that died): relayd may replace it.
        case stale
    }

    /// How long ``probe(path:type:)`` waits for a connect that did not complete at once, in milliseconds.
    static let probeTimeoutMilliseconds: Int32 = 1000

    /// Whether another process serves the socket at `path`.
    ///
    /// The connect is non-blocking, so start-up never waits on the socket's owner: a blocking connect to a stream
    /// listener whose accept backlog is full waits until the listener accepts, which a hung process never does.
    /// Linux answers such a connect with `EAGAIN` at once (``SocketProbe/liveNotAccepting``); a connect still in
    /// progress (`EINPROGRESS`, which Unix sockets do not return today) is waited for at most
    /// ``probeTimeoutMilliseconds`` and, if it has not completed by then, also counts as live. Only a refused
    /// connect (nobody bound to the file) or a missing file makes it ``SocketProbe/stale``.
    static func probe(path: String, type: __socket_type) -> SocketProbe {
        let flags = Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let probe = socket(AF_UNIX, flags, 0)
        guard probe >= 0 else { return .stale }
        defer { _ = Glibc.close(probe) }
        if Self.withUnixAddress(path, { Glibc.connect(probe, $0, $1) }) == 0 { return .live }
        switch errno {
        case EAGAIN:
            // Only a listener with a full backlog gives this; a file nobody is bound to gives ECONNREFUSED.
            return .liveNotAccepting
        case EINPROGRESS:
            var entry = pollfd(fd: probe, events: Int16(POLLOUT), revents: 0)
            var ready: Int32
            repeat { ready = poll(&entry, 1, Self.probeTimeoutMilliseconds) } while ready < 0 && errno == EINTR
            guard ready > 0 else { return .liveNotAccepting }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(probe, SOL_SOCKET, SO_ERROR, &error, &length) == 0 else { return .liveNotAccepting }
            switch error {
            case 0: return .live
            case EPROTOTYPE: return .liveOtherType
            case EAGAIN: return .liveNotAccepting
            default: return .stale
            }
        case EPROTOTYPE:
            return .liveOtherType
        default:
            return .stale
        }
    }

    /// Calls `body` with a `sockaddr_un` for `path`.
    static func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8.prefix(raw.count - 1))
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// The text form of a peer address (`127.0.0.1:40312`, `[::1]:40312`) and its host part, from `accept`'s
    /// `sockaddr_storage`; `nil` for other families.
    static func describePeer(_ storage: UnsafeRawPointer) -> (peer: String, host: String)? {
        let family = Int32(storage.load(as: sa_family_t.self))
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch family {
        case AF_INET:
            let address = storage.load(as: sockaddr_in.self)
            var raw = address.sin_addr
            guard inet_ntop(AF_INET, &raw, &text, socklen_t(text.count)) != nil else { return nil }
            let host = String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return ("\(host):\(UInt16(bigEndian: address.sin_port))", host)
        case AF_INET6:
            let address = storage.load(as: sockaddr_in6.self)
            var raw = address.sin6_addr
            guard inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count)) != nil else { return nil }
            var host = String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if host.hasPrefix("::ffff:"), host.contains(".") { host.removeFirst(7) }
            let peer = host.contains(":") ? "[\(host)]:\(UInt16(bigEndian: address.sin6_port))" : "\(host):\(UInt16(bigEndian: address.sin6_port))"
            return (peer, host)
        default:
            return nil
        }
    }

    /// `pid=123 uid=1000` for a connected Unix socket (`SO_PEERCRED`), or `nil`.
    static func peerCredentials(_ fd: Int32) -> String? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (glibc hides the type without _GNU_SOURCE).
        var credentials: (pid: Int32, uid: UInt32, gid: UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout<(Int32, UInt32, UInt32)>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0, credentials.pid > 0 else {
            return nil
        }
        return "pid=\(credentials.pid) uid=\(credentials.uid)"
    }
}
