import Dispatch
import Foundation
import Relay
import Synchronization
import Testing

@testable import relayd

#if canImport(Glibc)
import Glibc
#endif

/// The start-up probe of an existing socket file at a Unix input's path, against real sockets.
@Suite("Unix input path probe", .timeLimit(.minutes(1)))
struct InputSocketProbeTests {
    /// A bound Unix socket of `type` at `path` (listening with `backlog` for `SOCK_STREAM`).
    static func unixSocket(at path: String, type: __socket_type, backlog: Int32 = 16) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RelaydTestSockets.Failure("socket") }
        guard RelaydTestSockets.withUnixAddress(path, { bind(fd, $0, $1) }) == 0 else {
            let failure = RelaydTestSockets.Failure("bind \(path)")
            close(fd)
            throw failure
        }
        if type == SOCK_STREAM, listen(fd, backlog) != 0 {
            let failure = RelaydTestSockets.Failure("listen \(path)")
            close(fd)
            throw failure
        }
        return fd
    }

    /// Runs `body` on a thread of its own and waits at most `timeout` for it; `nil` if it has not returned by then
    /// (the thread is left running: the caller must end whatever it blocks on).
    static func returnsWithin<R: Sendable>(_ timeout: DispatchTimeInterval, _ body: @escaping @Sendable () -> R) -> R? {
        let result = RelayMutex<R?>(nil)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            let value = body()
            result.withLock { $0 = value }
            done.signal()
        }
        thread.start()
        guard done.wait(timeout: .now() + timeout) == .success else { return nil }
        return result.withLock { $0 }
    }

    @Test("A live listener whose accept backlog is full is refused as live at once, not waited on forever")
    func fullBacklogListenerIsLive() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let path = "\(directory)/busy.sock"
        // A process that listens and never accepts (hung, or overloaded): backlog 0, filled up.
        let listener = try Self.unixSocket(at: path, type: SOCK_STREAM, backlog: 0)
        // Closing the listener (the last defer to run) also ends a probe still blocked in connect.
        defer { close(listener) }
        var queued: [Int32] = []
        defer { for fd in queued { close(fd) } }
        while queued.count < 64 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            try #require(fd >= 0)
            if RelaydTestSockets.withUnixAddress(path, { connect(fd, $0, $1) }) == 0 {
                queued.append(fd)
                continue
            }
            let error = errno
            close(fd)
            try #require(error == EAGAIN, "connect to the listener failed with errno \(error), not EAGAIN (backlog full)")
            break
        }
        try #require(!queued.isEmpty && queued.count < 64, "the backlog never filled (\(queued.count) connections)")

        // A blocking connect would wait until the listener accepts, i.e. forever.
        let probe = Self.returnsWithin(.seconds(5)) { InputSockets.probe(path: path, type: SOCK_STREAM) }
        #expect(probe == .liveNotAccepting, "the probe of a listener with a full backlog did not return in 5 s")
        guard probe != nil else { return }

        // Start-up refuses the path with a message that says why and what to do, and leaves the socket alone.
        let refusal = Self.returnsWithin(.seconds(5)) { () -> String? in
            do {
                let fd = try InputSockets.unixSocket(path: path, mode: 0o666, type: SOCK_STREAM, keyPath: "inputs[0].path")
                close(fd)
                return nil
            } catch {
                return "\(error)"
            }
        }
        let message = try #require(refusal ?? nil, "relayd took over the path of a live listener")
        #expect(message.hasPrefix("inputs[0].path: \(path) is in use by another process"), "\(message)")
        #expect(message.contains("accept backlog is full"), "\(message)")
        #expect(message.contains("stop it or choose another path"), "\(message)")
        // The path still leads to the owner: it accepts one of the queued connections.
        var info = stat()
        #expect(lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK)
        let accepted = accept(listener, nil, nil)
        #expect(accepted >= 0)
        if accepted >= 0 { close(accepted) }
    }

    @Test("A listener that accepts is live; a socket file nobody serves is stale; the other type is reported as such")
    func liveStaleAndOtherType() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }

        let streamPath = "\(directory)/stream.sock"
        let stream = try Self.unixSocket(at: streamPath, type: SOCK_STREAM)
        #expect(InputSockets.probe(path: streamPath, type: SOCK_STREAM) == .live)
        #expect(InputSockets.probe(path: streamPath, type: SOCK_DGRAM) == .liveOtherType)
        close(stream)
        // The file stays behind its closed socket (a relayd that crashed): connect is refused.
        #expect(InputSockets.probe(path: streamPath, type: SOCK_STREAM) == .stale)

        let datagramPath = "\(directory)/dgram.sock"
        let datagram = try Self.unixSocket(at: datagramPath, type: SOCK_DGRAM)
        #expect(InputSockets.probe(path: datagramPath, type: SOCK_DGRAM) == .live)
        #expect(InputSockets.probe(path: datagramPath, type: SOCK_STREAM) == .liveOtherType)
        close(datagram)
        #expect(InputSockets.probe(path: datagramPath, type: SOCK_DGRAM) == .stale)

        // A stale file is replaced by the new socket.
        let fd = try InputSockets.unixSocket(path: streamPath, mode: 0o666, type: SOCK_STREAM, keyPath: "inputs[0].path")
        defer { close(fd) }
        #expect(InputSockets.probe(path: streamPath, type: SOCK_STREAM) == .live)
    }
}
