/// A `host:port` destination (`outputs[].target`); the host may be a name, resolved when connecting.
struct HostPort: Sendable, Hashable, CustomStringConvertible {
    /// Host name or IP literal, without brackets.
    var host: String
    /// TCP port, 1...65535.
    var port: UInt16

    /// `host:port`, with brackets around IPv6 literals.
    var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }

    /// Parses `host:port`, `IPv4:port` or `[IPv6]:port`.
    ///
    /// - Parameter text: The destination as written in the configuration.
    /// - Returns: The destination.
    /// - Throws: A message explaining the expected form.
    static func parse(_ text: String) throws(ConfigIssue) -> HostPort {
        let (host, port) = try Self.split(text, example: "logs.example.net:6514")
        guard port != 0 else {
            throw ConfigIssue("\"\(text)\": port 0 is not a destination; give the aggregator's port, e.g. \(host):514")
        }
        let isName = host.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
        }
        guard isName || ListenAddress.parseIPv6(host) != nil else {
            throw ConfigIssue("\"\(text)\": \"\(host)\" is neither a host name nor an IP address")
        }
        return HostPort(host: host, port: port)
    }

    /// Splits `host:port` / `[v6]:port`, validating the port (0...65535).
    static func split(_ text: String, example: String) throws(ConfigIssue) -> (host: String, port: UInt16) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ConfigIssue("\"\(text)\": missing \"]\" after the IPv6 address; write e.g. [::1]:5140")
            }
            host = text[text.index(after: text.startIndex)..<close]
            let afterBracket = text[text.index(after: close)...]
            guard afterBracket.hasPrefix(":") else {
                throw ConfigIssue("\"\(text)\": missing port; write host:port, e.g. [\(host)]:5140")
            }
            portText = afterBracket.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ConfigIssue("\"\(text)\": missing port; write host:port, e.g. \(example)")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") {
                throw ConfigIssue("\"\(text)\": put IPv6 addresses in brackets, e.g. [\(host)]:\(portText)")
            }
        }
        guard !host.isEmpty else {
            throw ConfigIssue("\"\(text)\": missing host; write host:port, e.g. \(example)")
        }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCIIDigit), let port = Int(portText), port <= 65535 else {
            throw ConfigIssue("\"\(text)\": \"\(portText)\" is not a port number (0...65535)")
        }
        return (String(host), UInt16(port))
    }
}
