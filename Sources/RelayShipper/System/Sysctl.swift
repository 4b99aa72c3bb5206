package import SystemPackage

/// Kernel settings under /proc/sys.
package enum Sysctl {
    /// An integer sysctl from /proc (its first whitespace-separated field), or `nil` if it is
    /// missing or unreadable.
    package static func integer(_ path: FilePath) -> Int? {
        guard let fd = try? FileDescriptor.open(path, .readOnly, options: .closeOnExec) else {
            return nil
        }
        defer { try? fd.close() }
        var bytes = [UInt8](repeating: 0, count: 32)
        guard let count = try? bytes.withUnsafeMutableBytes({ try fd.read(into: $0) }), count > 0 else {
            return nil
        }
        let text = String(decoding: bytes[..<count], as: UTF8.self)
        return text.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) }
    }
}
