internal import CRelayLinux
internal import Glibc
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

    /// Resolves an endpoint (getaddrinfo for TCP; the first address wins).
    static func resolve(_ endpoint: RelaySocketSinkConfiguration.Endpoint) -> Result<SocketAddress, SocketAddressError> {
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
            guard port > 0 && port < 65536 else {
                return .failure(SocketAddressError(message: "port \(port) is out of range; use 1-65535"))
            }
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>? = nil
            let rc = getaddrinfo(host, String(port), &hints, &result)
            guard rc == 0, let first = result else {
                let reason = rc == 0 ? "no address" : String(cString: gai_strerror(rc))
                return .failure(SocketAddressError(message: "cannot resolve host '\(host)': \(reason); check the name or use an IP address"))
            }
            defer { freeaddrinfo(result) }
            let storage = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
            storage.initialize(to: sockaddr_storage())
            UnsafeMutableRawPointer(storage).copyMemory(from: first.pointee.ai_addr, byteCount: Int(first.pointee.ai_addrlen))
            return .success(SocketAddress(
                storage: storage, length: first.pointee.ai_addrlen, family: first.pointee.ai_family,
                description: "tcp:\(host):\(port)"))
        }
    }
}

/// Resolution failed; the message says how to fix it.
struct SocketAddressError: Error, CustomStringConvertible {
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
                var value = Int32(size)
                _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &value, socklen_t(MemoryLayout<Int32>.size))
            }
            return .success(FileDescriptor(rawValue: fd))
        }
    }

    /// Bytes sent on `fd` that the peer has not acknowledged (TCP) or read (Unix).
    static func unacknowledged(_ fd: FileDescriptor) -> Result<Int64, Errno> {
        negativeErrno(CRelayLinux_socket_unacked_bytes(fd.rawValue))
    }

    /// Whether the peer is on this host (loopback or Unix): zero-copy never pays there.
    static func peerIsLocal(_ fd: FileDescriptor) -> Bool {
        CRelayLinux_peer_is_local(fd.rawValue) != 0
    }
}
