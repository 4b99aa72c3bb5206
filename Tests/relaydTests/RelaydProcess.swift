import Foundation

@testable import relayd

#if canImport(Glibc)
import Glibc
#endif

/// What the daemon tests need from the machine; each test skips with the reason only when something is missing.
enum RelaydTestEnvironment {
    /// The built `relayd` executable next to the test bundle (`.build*/debug/relayd`).
    static let relaydPath: String? = {
        var candidates: [String] = []
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            var directory = executable
            // The bundle is `<bin>/swift-relayPackageTests.xctest` (a file on Linux) or a directory inside it.
            for _ in 0..<4 {
                directory = (directory as NSString).deletingLastPathComponent
                candidates.append(directory + "/relayd")
            }
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// `nil` when relayd can run here, else why not.
    static let daemonProblem: String? = {
        if let problem = RelaydDaemon.ioUringProblem { return "io_uring is unavailable: \(problem)" }
        if relaydPath == nil { return "the relayd executable was not found next to the test bundle; run `swift build --build-tests`" }
        return nil
    }()

    static var canRunDaemon: Bool { daemonProblem == nil }

    /// rsyslogd, if installed.
    static let rsyslogdPath: String? = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    static var canRunRsyslog: Bool { canRunDaemon && rsyslogdPath != nil }
    static var canRunLogger: Bool { canRunDaemon && UtilLinuxLogger.isAvailable }
}

/// Errors from the test helpers.
struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A relayd child process with its stderr in a file.
final class RelaydProcess {
    let pid: pid_t
    let directory: String
    let stderrPath: String
    private(set) var exitStatus: Int32?

    /// Ports relayd reported: input name → TCP port.
    private(set) var tcpPorts: [String: UInt16] = [:]
    /// The metrics port, when enabled.
    private(set) var metricsPort: UInt16?

    /// Starts `relayd arguments` (stderr and stdout into files in `directory`), stdin from `stdinFD` or /dev/null,
    /// with the test process's environment plus `environment` (e.g. `["TZ": "America/New_York"]`).
    init(arguments: [String], directory: String, stdinFD: Int32? = nil, environment: [String: String] = [:]) throws {
        guard let binary = RelaydTestEnvironment.relaydPath else { throw TestFailure("relayd not built") }
        self.directory = directory
        self.stderrPath = directory + "/relayd.stderr"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let stdinFD {
            posix_spawn_file_actions_adddup2(&actions, stdinFD, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, 1, directory + "/relayd.stdout", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, self.stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        ChildDescriptors.closeInherited(&actions)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child starts with an empty signal mask and default dispositions, whatever the test runner set.
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([binary] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var variables = ProcessInfo.processInfo.environment
        for (key, value) in environment { variables[key] = value }
        let envp: [UnsafeMutablePointer<CChar>?] = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in envp { free(pointer) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, binary, &actions, &attributes, argv, envp)
        guard status == 0 else { throw TestFailure("posix_spawn relayd: \(status)") }
        self.pid = child
    }

    /// Writes `config` to `directory/relayd.toml` and starts `relayd --config` on it; waits until it runs.
    static func start(
        config: String,
        directory: String,
        stdinFD: Int32? = nil,
        environment: [String: String] = [:]
    ) throws -> RelaydProcess {
        let path = directory + "/relayd.toml"
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let process = try RelaydProcess(
            arguments: ["--config", path],
            directory: directory,
            stdinFD: stdinFD,
            environment: environment
        )
        try process.waitForStart()
        return process
    }

    deinit {
        if self.exitStatus == nil {
            kill(self.pid, SIGKILL)
            var status: Int32 = 0
            waitpid(self.pid, &status, 0)
        }
    }

    /// relayd's stderr so far.
    var stderr: String {
        (try? String(contentsOfFile: self.stderrPath, encoding: .utf8)) ?? ""
    }

    /// Waits for "relayd started" and collects the listening ports.
    func waitForStart(timeout: Duration = .seconds(20)) throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let text = self.stderr
            if text.contains("relayd started") {
                for line in text.split(separator: "\n") {
                    if let range = line.range(of: "\" listening on tcp "), let nameStart = line.range(of: "input \"") {
                        let name = String(line[nameStart.upperBound..<range.lowerBound])
                        let address = line[range.upperBound...]
                        if let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) {
                            self.tcpPorts[name] = port
                        }
                    }
                    if let range = line.range(of: "metrics on http://") {
                        let rest = line[range.upperBound...]
                        if let slash = rest.firstIndex(of: "/"), let colon = rest[..<slash].lastIndex(of: ":") {
                            self.metricsPort = UInt16(rest[rest.index(after: colon)..<slash])
                        }
                    }
                }
                return
            }
            if let status = self.pollExit() {
                throw TestFailure("relayd exited with \(status) before starting:\n\(text)")
            }
            usleep(20_000)
        }
        throw TestFailure("relayd did not start within \(timeout):\n\(self.stderr)")
    }

    /// Sends `signal`.
    func send(_ signal: Int32) {
        kill(self.pid, signal)
    }

    /// The exit status if the process ended (128 + signal when killed).
    func pollExit() -> Int32? {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        let result = waitpid(self.pid, &status, WNOHANG)
        guard result == self.pid else { return nil }
        let code: Int32 = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        self.exitStatus = code
        return code
    }

    /// Waits for the process to exit.
    func waitForExit(timeout: Duration = .seconds(30)) throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = self.pollExit() { return status }
            usleep(10_000)
        }
        throw TestFailure("relayd did not exit within \(timeout):\n\(self.stderr)")
    }

    /// SIGTERM, then the exit status.
    func stop(timeout: Duration = .seconds(30)) throws -> Int32 {
        self.send(SIGTERM)
        return try self.waitForExit(timeout: timeout)
    }

    /// Scrapes `/metrics` and returns `series → value` (series as printed, e.g. `relayd_input_received_records_total{input="tcp"}`).
    func metrics() throws -> [String: Double] {
        guard let port = self.metricsPort else { throw TestFailure("metrics are disabled") }
        let response = try HTTPGet.fetch(port: port, path: "/metrics")
        var values: [String: Double] = [:]
        for line in response.body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            values[String(line[..<space])] = value
        }
        return values
    }
}

/// Keeps a spawned child from inheriting the test process's descriptors: tests run in parallel, and a relayd that
/// held the write end of another test's pipe (a `logger` stdin, relayd's own stdin) would keep it from ever
/// seeing end of file.
enum ChildDescriptors {
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34; declared only under `_GNU_SOURCE`, so looked up).
    private static let closeFrom: CloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
            return nil
        }
        return unsafeBitCast(symbol, to: CloseFrom.self)
    }()

    /// Adds "close every descriptor from 3 up" to `actions`.
    static func closeInherited(_ actions: inout posix_spawn_file_actions_t) {
        if let closeFrom = Self.closeFrom {
            _ = closeFrom(&actions, 3)
            return
        }
        for fd in Int32(3)..<Int32(1024) where fcntl(fd, F_GETFD) >= 0 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
    }
}

/// A minimal HTTP/1.0 client for the metrics endpoint.
enum HTTPGet {
    static func fetch(port: UInt16, path: String) throws -> (status: Int, body: String) {
        let fd = try RelaydTestSockets.connectTCP(port: port)
        defer { close(fd) }
        try RelaydTestSockets.sendAll(fd, Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8))
        let bytes = try RelaydTestSockets.readAll(fd)
        let text = String(decoding: bytes, as: UTF8.self)
        guard let headEnd = text.range(of: "\r\n\r\n") else { throw TestFailure("malformed HTTP response: \(text)") }
        let statusLine = text[..<headEnd.lowerBound].split(separator: "\r\n").first ?? ""
        let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0
        return (status, String(text[headEnd.upperBound...]))
    }
}

/// Polling helpers.
enum Eventually {
    /// Polls `condition` every 20 ms until it holds or `timeout` passes.
    static func wait(timeout: Duration = .seconds(20), _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try condition() { return true }
            usleep(20_000)
        }
        return try condition()
    }

    /// The lines of a file (without the trailing newline); empty when it does not exist.
    static func lines(_ path: String) -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        var lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    /// The bytes of a file; empty when it does not exist.
    static func bytes(_ path: String) -> [UInt8] {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) } ?? []
    }
}

/// A private rsyslogd: its own configuration, pid file, work directory and ports.
final class PrivateRsyslog {
    let pid: pid_t
    let directory: String
    private var exited = false

    /// The port of the imtcp input, which rsyslogd chose itself (`port="0"`) and wrote to its port file.
    let port: UInt16

    /// The imtcp input line of a configuration: on 127.0.0.1, a port rsyslogd picks itself, written to
    /// `<dir>/imtcp.port` (so no other test can take the port between a probe and rsyslogd's bind).
    static func imtcpInput(directory: String, ruleset: String) -> String {
        #"input(type="imtcp" port="0" listenPortFileName="\#(directory)/imtcp.port" address="127.0.0.1" ruleset="\#(ruleset)")"#
    }

    /// Starts `rsyslogd -n -f <dir>/rsyslog.conf -i <dir>/rsyslog.pid` with `config` (the work directory
    /// `<dir>/rsyslog-work` is created and set by this helper), which has one ``imtcpInput(directory:ruleset:)``,
    /// reads the port rsyslogd bound, and waits until it accepts connections.
    init(config: String, directory: String) throws {
        guard let binary = RelaydTestEnvironment.rsyslogdPath else { throw TestFailure("rsyslogd not installed") }
        self.directory = directory
        let work = directory + "/rsyslog-work"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let conf = directory + "/rsyslog.conf"
        try ("global(workDirectory=\"\(work)\")\n" + config).write(toFile: conf, atomically: true, encoding: .utf8)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, directory + "/rsyslog.stdout", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, directory + "/rsyslog.stderr", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        ChildDescriptors.closeInherited(&actions)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        let arguments = [binary, "-n", "-f", conf, "-i", directory + "/rsyslog.pid"]
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, binary, &actions, &attributes, argv, environ)
        guard status == 0 else { throw TestFailure("posix_spawn rsyslogd: \(status)") }
        self.pid = child
        var port: UInt16 = 0
        let ready = Eventually.wait(timeout: .seconds(20)) {
            if port == 0 {
                let text = (try? String(contentsOfFile: directory + "/imtcp.port", encoding: .utf8)) ?? ""
                port = UInt16(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                if port == 0 { return false }
            }
            guard let fd = try? RelaydTestSockets.connectTCP(port: port) else { return false }
            close(fd)
            return true
        }
        self.port = port
        if !ready {
            self.stop()
            let log = (try? String(contentsOfFile: directory + "/rsyslog.stderr", encoding: .utf8)) ?? ""
            throw TestFailure("rsyslogd did not listen (port file: \(port == 0 ? "not written" : String(port))):\n\(log)")
        }
    }

    /// SIGTERM and wait.
    func stop() {
        guard !self.exited else { return }
        self.exited = true
        kill(self.pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<500 {
            if waitpid(self.pid, &status, WNOHANG) == self.pid { return }
            usleep(10_000)
        }
        kill(self.pid, SIGKILL)
        waitpid(self.pid, &status, 0)
    }

    deinit {
        self.stop()
    }
}

/// A loopback TCP port that refuses connections for as long as this value lives: a socket bound to it
/// that never listens. No other socket can bind the port meanwhile, so, unlike a port that was free a
/// moment ago, it cannot turn into someone else's listener during the test.
final class DeadPort {
    let port: UInt16
    private let fd: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw TestFailure("bind 127.0.0.1:0: errno \(errno)")
        }
        self.fd = fd
        self.port = UInt16(bigEndian: address.sin_port)
    }

    deinit {
        close(self.fd)
    }
}

/// A TCP port held for relayd's wildcard listeners for as long as this value lives: a socket bound to
/// 0.0.0.0 and one bound to [::] (IPv6-only), both with `SO_REUSEADDR` and neither listening.
///
/// relayd's listeners set `SO_REUSEADDR` too, and Linux lets a socket bind and listen on an address and port
/// that reusable sockets which do not listen hold; a socket without `SO_REUSEADDR`, and every ephemeral
/// choice (bind to port 0, a connect's local port), stays away from the port meanwhile. So, unlike a port
/// that was free a moment ago, it cannot be taken by another process before relayd binds it.
final class ReservedPort {
    let port: UInt16
    private var fds: [Int32] = []

    init() throws {
        var v4 = sockaddr_in()
        v4.sin_family = sa_family_t(AF_INET)
        let v4fd = try Self.bind(family: AF_INET, &v4, port: { $0.sin_port })
        self.fds.append(v4fd.fd)
        self.port = v4fd.port
        var v6 = sockaddr_in6()
        v6.sin6_family = sa_family_t(AF_INET6)
        v6.sin6_addr = in6addr_any
        v6.sin6_port = self.port.bigEndian
        do {
            self.fds.append(try Self.bind(family: AF_INET6, &v6, port: { $0.sin6_port }).fd)
        } catch {
            for fd in self.fds { close(fd) }
            throw error
        }
    }

    private static func bind<Address>(
        family: Int32, _ address: inout Address, port: (Address) -> in_port_t
    ) throws -> (fd: Int32, port: UInt16) {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if family == AF_INET6 {
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        var length = socklen_t(MemoryLayout<Address>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else {
            let error = errno
            close(fd)
            throw TestFailure("bind (family \(family)): errno \(error)")
        }
        return (fd, UInt16(bigEndian: port(address)))
    }

    deinit {
        for fd in self.fds { close(fd) }
    }
}

extension RelaydTestSockets {

    /// Sends `bytes` as one datagram to the Unix socket at `path`.
    static func sendDatagram(_ bytes: [UInt8], to path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket") }
        defer { close(fd) }
        let sent = bytes.withUnsafeBytes { raw in
            withUnixAddress(path) { sendto(fd, raw.baseAddress, raw.count, 0, $0, $1) }
        }
        guard sent == bytes.count else { throw Failure("sendto \(path)") }
    }

    /// A connected `SOCK_STREAM` Unix socket.
    static func connectUnixStream(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket") }
        guard withUnixAddress(path, { connect(fd, $0, $1) }) == 0 else {
            close(fd)
            throw Failure("connect \(path)")
        }
        return fd
    }
}
