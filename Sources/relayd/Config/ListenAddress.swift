import CRelayLinux

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP address and port that relayd binds to (`inputs[].listen`, `daemon.metrics_listen`).
///
/// Only IP literals are accepted (`127.0.0.1:5140`, `[::1]:5140`); `localhost` is mapped to `127.0.0.1`.
/// Host names are rejected because a listener must not depend on name resolution at start-up.
struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address family.
    enum Family: Sendable, Hashable {
        /// IPv4 (`AF_INET`).
        case ipv4
        /// IPv6 (`AF_INET6`).
        case ipv6
    }

    /// The IP literal without brackets (`127.0.0.1`, `::1`).
    var host: String
    /// The TCP port; 0 asks the kernel for an ephemeral port.
    var port: UInt16
    /// IPv4 or IPv6.
    var family: Family
    /// The 16 (IPv6) or 4 (IPv4) address bytes in network order.
    var addressBytes: [UInt8]

    /// `true` for 127.0.0.0/8, `::1` and IPv4-mapped loopback (`::ffff:127.x.y.z`).
    var isLoopback: Bool {
        switch self.family {
        case .ipv4:
            return self.addressBytes[0] == 127
        case .ipv6:
            if self.addressBytes == [UInt8](repeating: 0, count: 15) + [1] { return true }
            let mappedPrefix = [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF]
            return Array(self.addressBytes[0..<12]) == mappedPrefix && self.addressBytes[12] == 127
        }
    }

    /// `true` for the wildcard addresses `0.0.0.0` and `::`, which bind every interface.
    var isUnspecified: Bool {
        self.addressBytes.allSatisfy { $0 == 0 }
    }

    /// `127.0.0.1:5140` or `[::1]:5140`.
    var description: String {
        switch self.family {
        case .ipv4: return "\(self.host):\(self.port)"
        case .ipv6: return "[\(self.host)]:\(self.port)"
        }
    }

    /// Parses `IPv4:port`, `[IPv6]:port` or `localhost:port`.
    ///
    /// - Parameter text: The address as written in the configuration.
    /// - Returns: The address.
    /// - Throws: A message explaining the expected form.
    static func parse(_ text: String) throws(ConfigIssue) -> ListenAddress {
        let (hostPart, port) = try HostPort.split(text, example: "127.0.0.1:5140")
        let host = hostPart == "localhost" ? "127.0.0.1" : hostPart
        if let bytes = Self.parseIPv4(host) {
            return ListenAddress(host: host, port: port, family: .ipv4, addressBytes: bytes)
        }
        if let bytes = Self.parseIPv6(host) {
            return ListenAddress(host: host, port: port, family: .ipv6, addressBytes: bytes)
        }
        throw ConfigIssue(
            "\"\(text)\": \"\(hostPart)\" is not an IP address; listeners take an IP literal such as "
                + "127.0.0.1:\(port) or [::1]:\(port), not a host name"
        )
    }

    /// The 4 address bytes of an IPv4 literal (`inet_pton`), or `nil`.
    static func parseIPv4(_ text: String) -> [UInt8]? {
        var address = in_addr()
        guard inet_pton(AF_INET, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    /// The 16 address bytes of an IPv6 literal (`inet_pton`), or `nil`.
    static func parseIPv6(_ text: String) -> [UInt8]? {
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    /// Calls `body` with a `sockaddr_in`/`sockaddr_in6` for this address, ready for `bind(2)`.
    ///
    /// - Parameter body: Receives the socket address and its length.
    /// - Returns: Whatever `body` returns.
    /// - Warning: Do not escape the pointer.
    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        switch self.family {
        case .ipv4:
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = self.port.bigEndian
            withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyBytes(from: self.addressBytes) }
            return try withUnsafePointer(to: &address) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .ipv6:
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = self.port.bigEndian
            withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyBytes(from: self.addressBytes) }
            return try withUnsafePointer(to: &address) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
    }
}
