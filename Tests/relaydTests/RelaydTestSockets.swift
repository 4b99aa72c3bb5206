import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Test helpers: real loopback sockets and the util-linux `logger` tool.
enum RelaydTestSockets {
    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ what: String) { self.description = "\(what): errno \(errno) (\(String(cString: strerror(errno))))" }
    }

    /// A fresh temporary directory (deleted by the caller with `removeDirectory`).
    static func makeTemporaryDirectory() throws -> String {
        var template = Array("/tmp/relayd-test-XXXXXX".utf8CString)
        guard let result = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw Failure("mkdtemp")
        }
        return String(cString: result)
    }

    static func removeDirectory(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    static func setReceiveTimeout(_ fd: Int32, seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

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

    /// A bound `SOCK_DGRAM` Unix socket.
    static func unixDatagramSocket(at path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket") }
        guard withUnixAddress(path, { bind(fd, $0, $1) }) == 0 else { throw Failure("bind \(path)") }
        self.setReceiveTimeout(fd, seconds: 10)
        return fd
    }

    /// A listening `SOCK_STREAM` socket on 127.0.0.1 with an ephemeral port.
    static func tcpListener() throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw Failure("bind/listen") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    /// Starts a thread that accepts one connection on `listener` and reads it to its end, pausing
    /// `pauseMicroseconds` after every read (a slow peer) or not at all: a forward output's destination.
    static func startReadingOneConnection(_ listener: Int32, bufferSize: Int = 1 << 20, pauseMicroseconds: UInt32 = 0) {
        Thread {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            var buffer = [UInt8](repeating: 0, count: bufferSize)
            while buffer.withUnsafeMutableBytes({ recv(connection, $0.baseAddress, $0.count, 0) }) > 0 {
                if pauseMicroseconds > 0 { usleep(pauseMicroseconds) }
            }
            close(connection)
        }.start()
    }

    /// A TCP connection to 127.0.0.1:`port`.
    static func connectTCP(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            close(fd)
            throw Failure("connect")
        }
        self.setReceiveTimeout(fd, seconds: 10)
        return fd
    }

    static func receiveDatagram(_ fd: Int32) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = Self.retryingEINTR { buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }
        guard count >= 0 else { throw Failure("recv") }
        return Array(buffer[0..<count])
    }

    /// Repeats a system call interrupted by a signal (EINTR). Foundation's `Process`, which
    /// several tests use to run children, handles SIGCHLD, and its delivery can interrupt a
    /// blocking call on any thread of the test process.
    static func retryingEINTR(_ call: () -> Int) -> Int {
        while true {
            let result = call()
            if result >= 0 || errno != EINTR { return result }
        }
    }

    /// Reads until EOF.
    static func readAll(_ fd: Int32) throws -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = Self.retryingEINTR { buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }
            guard count >= 0 else { throw Failure("recv") }
            if count == 0 { return result }
            result += buffer[0..<count]
        }
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = Self.retryingEINTR {
                bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
            guard sent > 0 else { throw Failure("send") }
            offset += sent
        }
    }
}

/// util-linux `logger`, used to produce real RFC 5424 / RFC 3164 / octet-counted samples.
enum UtilLinuxLogger {
    static let path: String? = ["/usr/bin/logger", "/bin/logger"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
    static var isAvailable: Bool { Self.path != nil }

    /// Runs `logger` with `arguments`, feeding `stdin` if given, and waits for it.
    static func run(_ arguments: [String], stdin: String? = nil) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.path!)
        process.arguments = arguments
        let input = Pipe()
        if stdin != nil { process.standardInput = input }
        try process.run()
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try input.fileHandleForWriting.close()
        }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
