import SystemPackage

import CRelayLinux

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Small file-system helpers for configuration loading and validation (cold path).
enum FileReading {
    /// Reads a whole UTF-8 text file.
    ///
    /// - Parameter path: The file.
    /// - Returns: Its contents.
    /// - Throws: A document-level ``ConfigError`` naming the file and the `Errno`.
    static func readTextFile(_ path: String) throws(ConfigError) -> String {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        } catch {
            throw ConfigError(keyPath: "", message: "cannot open \(path): \(error); check the path and its permissions")
        }
        defer { try? fd.close() }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count: Int
            do {
                count = try chunk.withUnsafeMutableBytes { try fd.read(into: $0) }
            } catch {
                throw ConfigError(keyPath: "", message: "cannot read \(path): \(error)")
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > 16 << 20 {
                throw ConfigError(
                    keyPath: "",
                    message: "\(path) is larger than 16MiB; that is not a relayd configuration file"
                )
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError(keyPath: "", message: "\(path) is not valid UTF-8; TOML files must be UTF-8")
        }
        return text
    }

    /// What is at a path.
    enum Entry: Equatable {
        /// Nothing (ENOENT/ENOTDIR).
        case missing
        /// A directory; `writable` per `access(2)`.
        case directory(writable: Bool)
        /// Something else (file, socket, ...).
        case other
    }

    /// Inspects `path` with `stat(2)` and `access(2)`.
    static func entry(at path: String) -> Entry {
        var info = stat()
        guard stat(path, &info) == 0 else { return .missing }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            return .directory(writable: access(path, W_OK) == 0)
        }
        return .other
    }

    /// The parent directory of `path` (`"."` for a bare file name).
    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }
}
