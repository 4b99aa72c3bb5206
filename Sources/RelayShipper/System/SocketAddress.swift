internal import CRelayLinux
internal import Glibc
import Relay
import Synchronization
import SystemPackage

/// A resolved socket address in stable storage: io_uring's CONNECT reads it
/// asynchronously, so it must not move until the completion is reaped.
final class SocketAddress {
    let storage: UnsafeMutablePointer<sockaddr_storage>
    let length: socklen_t
    let family: Int32
    let description: String

    private init(storage: UnsafeMutablePointer<sockaddr_storage>, length: socklen_t, family: Int32, description: String) {
        self.storage = storage
        self.length = length
        self.family = family
        self.description = description
    }

    deinit {
        self.storage.deallocate()
    }

    var address: UnsafePointer<sockaddr> {
        UnsafeRawPointer(self.storage).assumingMemoryBound(to: sockaddr.self)
    }

    /// The numeric address and port (`127.0.0.1:514`, `[::1]:514`) for messages that must
    /// say which of a host name's addresses was tried; the description for a Unix path.
    var numericDescription: String {
        guard self.family == AF_INET || self.family == AF_INET6 else { return self.description }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        guard getnameinfo(self.address, self.length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                          NI_NUMERICHOST | NI_NUMERICSERV) == 0 else { return self.description }
        let h = host.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let p = service.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return self.family == AF_INET6 ? "[\(h)]:\(p)" : "\(h):\(p)"
    }

    /// Builds the address from a look-up's result (on the ring thread, which owns it).
    convenience init(_ resolved: ResolvedSocketAddress) {
        let storage = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
        storage.initialize(to: sockaddr_storage())
        resolved.bytes.withUnsafeBytes { UnsafeMutableRawPointer(storage).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        self.init(storage: storage, length: socklen_t(resolved.bytes.count), family: resolved.family, description: resolved.description)
    }

    /// Resolves an endpoint without asking a name service: Unix paths and numeric TCP
    /// hosts (IPv4 or IPv6 literals) at once; `nil` for a TCP host name, which needs
    /// ``lookUp(host:port:)`` (off the ring thread: it can block for seconds).
    static func resolveWithoutLookUp(_ endpoint: RelaySocketSinkConfiguration.Endpoint) -> Result<SocketAddress, SocketAddressError>? {
        switch endpoint {
        case .unix(let path):
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            let capacity = MemoryLayout.size(ofValue: addr.sun_path)
            guard bytes.count < capacity else {
                return .failure(SocketAddressError(message: "unix socket path \(path) is longer than \(capacity - 1) bytes; use a shorter path"))
            }
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let storage = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
            storage.initialize(to: sockaddr_storage())
            UnsafeMutableRawPointer(storage).copyMemory(from: &addr, byteCount: MemoryLayout<sockaddr_un>.size)
            return .success(SocketAddress(
                storage: storage, length: socklen_t(MemoryLayout<sockaddr_un>.size), family: AF_UNIX,
                description: "unix:\(path)"))
        case .tcp(let host, let port):
            // AI_NUMERICHOST: never a name-service query; a host name fails with EAI_NONAME.
            // A literal has exactly one address.
            switch self.getAddressInfo(host: host, port: port, flags: AI_NUMERICHOST) {
            case .success(let resolved): return .success(SocketAddress(resolved[0]))
            case .failure(.noName): return nil
            case .failure(.other(let error)): return .failure(error)
            }
        }
    }

    /// Looks a TCP host name up (getaddrinfo): every address, in getaddrinfo's order (its
    /// preference, RFC 6724), duplicates removed; never empty on success. The sink tries
    /// them in that order until one accepts. Blocks: call it on a thread of its own.
    static func lookUp(host: String, port: Int) -> Result<[ResolvedSocketAddress], SocketAddressError> {
        guard let standIn = self.lookUpStandIns.withLock({ $0[host] }) else {
            return self.lookUpName(host: host, port: port)
        }
        // Each answer looked up in turn, its addresses appended; the first failure fails all.
        var addresses: [ResolvedSocketAddress] = []
        for answer in standIn() {
            switch self.lookUpName(host: answer.host, port: answer.port) {
            case .success(let found): addresses += found.filter { new in !addresses.contains { $0.bytes == new.bytes } }
            case .failure(let error): return .failure(error)
            }
        }
        guard !addresses.isEmpty else {
            return .failure(SocketAddressError(message: "cannot resolve host '\(host)': no address; check the name or use an IP address"))
        }
        return .success(addresses)
    }

    private static func lookUpName(host: String, port: Int) -> Result<[ResolvedSocketAddress], SocketAddressError> {
        self.getAddressInfo(host: host, port: port, flags: 0).mapError { failure in
            switch failure {
            case .noName:
                SocketAddressError(message: "cannot resolve host '\(host)': \(String(cString: gai_strerror(EAI_NONAME))); check the name or use an IP address")
            case .other(let error): error
            }
        }
    }

    /// Tests only: host names whose look-up asks this closure (on the resolver thread) for
    /// the hosts and ports to look up instead, in order (their addresses are the name's,
    /// in that order), standing in for a DNS server that is slow, changes its answer or
    /// returns several addresses. Empty in production; each test uses names of its own.
    static let lookUpStandIns = RelayMutex<[String: @Sendable () -> [(host: String, port: Int)]]>([:])

    private enum LookUpFailure: Error {
        case noName
        case other(SocketAddressError)
    }

    /// Every address getaddrinfo returns, in its order, without duplicates (a host listed
    /// twice in /etc/hosts); never empty on success.
    private static func getAddressInfo(host: String, port: Int, flags: Int32) -> Result<[ResolvedSocketAddress], LookUpFailure> {
        guard port > 0 && port < 65536 else {
            return .failure(.other(SocketAddressError(message: "port \(port) is out of range; use 1-65535")))
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = flags
        var result: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(host, String(port), &hints, &result)
        if rc == EAI_NONAME { return .failure(.noName) }
        guard rc == 0, result != nil else {
            let reason = rc == 0 ? "no address" : String(cString: gai_strerror(rc))
            return .failure(.other(SocketAddressError(message: "cannot resolve host '\(host)': \(reason); check the name or use an IP address")))
        }
        defer { freeaddrinfo(result) }
        let description = host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)"
        var addresses: [ResolvedSocketAddress] = []
        var next = result
        while let info = next {
            next = info.pointee.ai_next
            guard let addr = info.pointee.ai_addr else { continue }
            let bytes = [UInt8](UnsafeRawBufferPointer(start: addr, count: Int(info.pointee.ai_addrlen)))
            guard !addresses.contains(where: { $0.bytes == bytes }) else { continue }
            addresses.append(ResolvedSocketAddress(bytes: bytes, family: info.pointee.ai_family, description: description))
        }
        guard !addresses.isEmpty else {
            return .failure(.other(SocketAddressError(message: "cannot resolve host '\(host)': no address; check the name or use an IP address")))
        }
        return .success(addresses)
    }
}

/// A looked-up address as plain bytes, so the resolver thread can hand it to the ring
/// thread (in a ``ShipperShared/Command``), which copies it into a ``SocketAddress``.
struct ResolvedSocketAddress: Sendable {
    let bytes: [UInt8]
    let family: Int32
    let description: String
}

/// Resolution failed; the message says how to fix it.
struct SocketAddressError: Error, Sendable, CustomStringConvertible {
    let message: String
    var description: String { self.message }
}

enum Sockets {
    /// A non-blocking-free (blocking; io_uring does the waiting) stream socket for `family`,
    /// with TCP_NODELAY for TCP and an optional send buffer size.
    static func makeStream(family: Int32, sendBufferSize: Int?) -> Result<FileDescriptor, Errno> {
        syscall { socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }.flatMap { fd in
            if family == AF_INET || family == AF_INET6 {
                var one: Int32 = 1
                _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            if let size = sendBufferSize {
                // Clamped: SO_SNDBUF takes an int (and the kernel caps it at net.core.wmem_max).
                var value = Int32(clamping: size)
                _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &value, socklen_t(MemoryLayout<Int32>.size))
            }
            return .success(FileDescriptor(rawValue: fd))
        }
    }

    /// Bytes sent on `fd` that the peer has not acknowledged (TCP) or read (Unix).
    static func unacknowledged(_ fd: FileDescriptor) -> Result<Int64, Errno> {
        negativeErrno(CRelayLinux_socket_unacked_bytes(fd.rawValue))
    }

    /// Whether the peer closed, shut its side down or reset the connection, as far as the
    /// socket shows now (a poll that does not wait, for the events the peer-liveness poll
    /// watches). A socket that cannot be polled counts as gone.
    static func peerGone(_ fd: FileDescriptor) -> Bool {
        var descriptor = pollfd(fd: fd.rawValue, events: Int16(truncatingIfNeeded: CRelayLinux_poll_peer_gone_mask()), revents: 0)
        let rc = poll(&descriptor, 1, 0)
        return rc < 0 ? errno != EINTR : rc > 0
    }

    /// Reads and drops, without waiting, what the peer sent on `fd` and nobody read (a log peer
    /// normally sends nothing; a greeting, say, or its own errors): a socket closed with unread
    /// received bytes resets the connection (TCP sends RST in place of FIN; a Unix socket's
    /// peer gets `ECONNRESET`), and the peer then sees an error instead of the end of the
    /// stream (and some stacks drop what it received but had not read yet). At most `limit` bytes: a
    /// peer that keeps sending is reset by what it sends after the close anyway.
    static func discardReceived(_ fd: FileDescriptor, limit: Int = 1 << 20) {
        withUnsafeTemporaryAllocation(byteCount: 16384, alignment: 16) { buffer in
            var left = limit
            while left > 0 {
                let n = recv(fd.rawValue, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                left -= n
            }
        }
    }

    /// Whether the peer is on this host (loopback or Unix): zero-copy never pays there.
    static func peerIsLocal(_ fd: FileDescriptor) -> Bool {
        CRelayLinux_peer_is_local(fd.rawValue) != 0
    }
}
