import ArgumentParser
import Foundation
import RelayShipper
import Testing

@testable import relay_bench

@Suite("SinkSpec")
struct SinkSpecTests {
    @Test(
        "parses every sink form",
        arguments: [
            ("null", SinkSpec.null),
            ("file:/var/tmp/out.log", .file(path: "/var/tmp/out.log", options: FileSinkOptions())),
            ("file:relative/out.log,odirect", .file(path: "relative/out.log", options: FileSinkOptions(direct: true))),
            ("file:/x,fsync=100ms", .file(path: "/x", options: FileSinkOptions(fsync: .interval(.milliseconds(100))))),
            ("file:/x,fsync=64MiB", .file(path: "/x", options: FileSinkOptions(fsync: .bytes(64 << 20)))),
            ("file:/x,fsync=2s,format=packets", .file(path: "/x", options: FileSinkOptions(fsync: .interval(.seconds(2)), format: .packets))),
            (
                "file:/x,rotate-size=1GiB,rotate-count=4",
                .file(path: "/x", options: FileSinkOptions(rotateSize: 1 << 30, rotateCount: 4))
            ),
            ("file:/x,fixed-writes", .file(path: "/x", options: FileSinkOptions(fixedWrites: true))),
            ("file:/x,writeback=kernel", .file(path: "/x", options: FileSinkOptions(writeback: .kernel))),
            ("file:/x,writeback=1MiB", .file(path: "/x", options: FileSinkOptions(writeback: .bytes(1 << 20)))),
            ("file:/x,writeback=64K", .file(path: "/x", options: FileSinkOptions(writeback: .bytes(64 << 10)))),
            (
                "file:/x,fsync=64MiB,writeback=8MiB,format=packets",
                .file(path: "/x", options: FileSinkOptions(fsync: .bytes(64 << 20), writeback: .bytes(8 << 20), format: .packets))
            ),
            ("file-per-buffer:/data/out", .filePerBuffer(directory: "/data/out", options: FileSinkOptions())),
            ("file-per-buffer:/d,odirect,fsync=8M", .filePerBuffer(directory: "/d", options: FileSinkOptions(direct: true, fsync: .bytes(8 << 20)))),
            ("file-per-buffer:/d,writeback=kernel", .filePerBuffer(directory: "/d", options: FileSinkOptions(writeback: .kernel))),
            ("file-per-buffer:/d,writeback=2M", .filePerBuffer(directory: "/d", options: FileSinkOptions(writeback: .bytes(2 << 20)))),
            ("tcp:127.0.0.1:9000", .tcp(host: "127.0.0.1", port: 9000, format: .plain)),
            ("tcp:logs.example:514,format=packets", .tcp(host: "logs.example", port: 514, format: .packets)),
            ("tcp:[::1]:9000", .tcp(host: "::1", port: 9000, format: .plain)),
            ("unix:/run/relay.sock", .unix(path: "/run/relay.sock", format: .plain)),
        ]
    )
    func parses(text: String, expected: SinkSpec) throws {
        let spec = try SinkSpec.parse(text)
        #expect(spec == expected)
        // The description is canonical and parses back to the same spec.
        #expect(try SinkSpec.parse(spec.description) == spec)
        #expect(SinkSpec(argument: text) == expected)
    }

    @Test(
        "rejects bad specs with one line naming the problem and the fix",
        arguments: [
            ("kafka:x", "unknown sink 'kafka:x': use null, file:PATH, file-per-buffer:DIR, tcp:HOST:PORT or unix:PATH"),
            ("nul", "unknown sink 'nul': use null, file:PATH, file-per-buffer:DIR, tcp:HOST:PORT or unix:PATH"),
            ("file", "sink 'file' has no path: use file:PATH"),
            ("file:", "sink 'file:' has no path: use file:PATH"),
            ("null,odirect", "sink 'null' takes no options, got 'null,odirect': use --sink null"),
            ("tcp:localhost", "sink 'tcp:localhost' has no port: use tcp:HOST:PORT, e.g. tcp:127.0.0.1:9000"),
            ("tcp::9000", "sink 'tcp::9000' has no host: use tcp:HOST:PORT, e.g. tcp:127.0.0.1:9000"),
            ("tcp:host:99999", "sink 'tcp:host:99999' has an invalid port '99999': use a port number from 1 to 65535"),
            ("tcp:host:0", "sink 'tcp:host:0' has an invalid port '0': use a port number from 1 to 65535"),
            ("tcp:::1:9000", "sink 'tcp:::1:9000' looks like a bare IPv6 address: put it in brackets, e.g. tcp:[::1]:9000"),
            ("tcp:127.0.0.1:9,odirect", "unknown option 'odirect' in sink 'tcp:127.0.0.1:9,odirect': socket sinks accept only format=plain|packets"),
            ("file:/x,fsync=soon", "invalid fsync value 'soon' in sink 'file:/x,fsync=soon': use a duration like fsync=100ms or a size like fsync=64MiB"),
            ("file:/x,format=json", "unknown format 'json' in sink 'file:/x,format=json': use format=plain or format=packets"),
            ("file:/x,rotate-count=3", "rotate-count in sink 'file:/x,rotate-count=3' needs a rotate-size: add e.g. rotate-size=1GiB"),
            ("file:/x,rotate-count=0,rotate-size=1M", "invalid rotate-count '0' in sink 'file:/x,rotate-count=0,rotate-size=1M': use a whole number of files, 1 or more"),
            (
                "file:/x,compress",
                "unknown option 'compress' in sink 'file:/x,compress': file sinks accept odirect, fsync=DURATION|SIZE, writeback=kernel|SIZE, format=plain|packets, rotate-size=SIZE, rotate-count=N, fixed-writes"
            ),
            (
                "file:/x,writeback=4KiB",
                "writeback size '4KiB' in sink 'file:/x,writeback=4KiB' is under 64KiB, too often to ask the kernel: use writeback=64KiB or more (e.g. writeback=8MiB), or writeback=kernel"
            ),
            (
                "file-per-buffer:/d,writeback=65535",
                "writeback size '65535' in sink 'file-per-buffer:/d,writeback=65535' is under 64KiB, too often to ask the kernel: use writeback=64KiB or more (e.g. writeback=8MiB), or writeback=kernel"
            ),
            (
                "file:/x,writeback=soon",
                "invalid writeback value 'soon' in sink 'file:/x,writeback=soon': use a size like writeback=8MiB (64KiB or more) or writeback=kernel"
            ),
            (
                "file:/x,writeback=",
                "invalid writeback value '' in sink 'file:/x,writeback=': use a size like writeback=8MiB (64KiB or more) or writeback=kernel"
            ),
            (
                "file:/x,writeback",
                "unknown option 'writeback' in sink 'file:/x,writeback': file sinks accept odirect, fsync=DURATION|SIZE, writeback=kernel|SIZE, format=plain|packets, rotate-size=SIZE, rotate-count=N, fixed-writes"
            ),
        ]
    )
    func rejects(text: String, message: String) {
        #expect(throws: BenchError(message)) { try SinkSpec.parse(text) }
        #expect(SinkSpec(argument: text) == nil)
        #expect(!message.contains("\n"))
    }

    @Test("without writeback= a file sink keeps the library's default (writeback left to the kernel)")
    func writebackDefault() throws {
        let spec = try SinkSpec.parse("file:/x,fsync=64MiB")
        #expect(spec == .file(path: "/x", options: FileSinkOptions(fsync: .bytes(64 << 20), writeback: .default)))
        #expect(spec.description == "file:/x,fsync=64MiB")
        #expect(RelayFileSinkConfiguration.Writeback.default == .kernel)
        #expect(RunSinks.relaySink(for: spec) == .file(RelayFileSinkConfiguration(path: "/x", fsync: .everyBytes(64 << 20), writeback: .default)))
    }

    @Test(
        "writeback= reaches the shipper's file sink configuration",
        arguments: [
            ("file:/x,writeback=kernel", RelaySink.file(RelayFileSinkConfiguration(path: "/x", writeback: .kernel))),
            ("file:/x,writeback=1MiB", .file(RelayFileSinkConfiguration(path: "/x", writeback: .everyBytes(1 << 20)))),
            ("file-per-buffer:/d,writeback=kernel", .file(RelayFileSinkConfiguration(path: "/d/relay-bench.", layout: .perBuffer, writeback: .kernel))),
            (
                "file-per-buffer:/d/,writeback=64KiB",
                .file(RelayFileSinkConfiguration(path: "/d/relay-bench.", layout: .perBuffer, writeback: .everyBytes(64 << 10)))
            ),
        ]
    )
    func writebackMapping(text: String, expected: RelaySink) throws {
        #expect(RunSinks.relaySink(for: try SinkSpec.parse(text)) == expected)
    }

    @Test("sizes and durations")
    func sizesAndDurations() {
        #expect(SizeParser.parseSize("4096") == 4096)
        #expect(SizeParser.parseSize("64K") == 65_536)
        #expect(SizeParser.parseSize("64KiB") == 65_536)
        #expect(SizeParser.parseSize("2G") == 2 << 30)
        #expect(SizeParser.parseSize("12B") == 12)
        #expect(SizeParser.parseSize("x") == nil)
        #expect(SizeParser.parseSize("99999999999999999999G") == nil)
        #expect(SizeParser.parseDuration("100ms") == .milliseconds(100))
        #expect(SizeParser.parseDuration("250us") == .microseconds(250))
        #expect(SizeParser.parseDuration("1m") == .seconds(60))
        #expect(SizeParser.parseDuration("64M") == nil)
        #expect(SizeParser.formatSize(64 << 20) == "64MiB")
        #expect(SizeParser.formatSize(1000) == "1000")
        #expect(SizeParser.formatDuration(.milliseconds(1500)) == "1500ms")
    }
}

@Suite("BenchGeometry")
struct BenchGeometryTests {
    @Test("a sane geometry passes")
    func valid() {
        #expect(throws: Never.self) {
            try BenchGeometry(producers: 4, recordSize: 128, subbufferSize: 1 << 20, subbufferCount: 8).validate()
        }
        #expect(throws: Never.self) {
            try BenchGeometry(producers: 1, recordSize: 4032, subbufferSize: 4096, subbufferCount: 2, subbufferHeaderBytes: 64).validate()
        }
    }

    @Test(
        "impossible geometries name the flag and a working value",
        arguments: [
            (BenchGeometry(producers: 0, recordSize: 64, subbufferSize: 4096, subbufferCount: 4), "use --producers 1 or more"),
            (BenchGeometry(producers: 1, recordSize: 16, subbufferSize: 4096, subbufferCount: 4), "record size 16 is too small: use --record-size 32 or more"),
            (BenchGeometry(producers: 1, recordSize: 64, subbufferSize: 5000, subbufferCount: 4), "e.g. 8192"),
            (BenchGeometry(producers: 1, recordSize: 64, subbufferSize: 2048, subbufferCount: 4), "e.g. 4096"),
            (BenchGeometry(producers: 1, recordSize: 64, subbufferSize: 4096, subbufferCount: 1), "use --subbufs 2 or more"),
            (BenchGeometry(producers: 1, recordSize: 5000, subbufferSize: 4096, subbufferCount: 4), "use --subbuf-size 8192 or a smaller --record-size"),
            (BenchGeometry(producers: 1, recordSize: 4096, subbufferSize: 4096, subbufferCount: 4, subbufferHeaderBytes: 16), "use --subbuf-size 8192"),
            (BenchGeometry(producers: 1, recordSize: 64, subbufferSize: 1 << 30, subbufferCount: 2), "exceeds 1 GiB per CPU"),
            (BenchGeometry(producers: 1, recordSize: 64, subbufferSize: 4096, subbufferCount: 6), "power of two from 2 to 65536 for --subbufs, e.g. 8"),
            (BenchGeometry(producers: 1, recordSize: 64, subbufferSize: 4096, subbufferCount: 1 << 17), "e.g. 65536"),
        ]
    )
    func invalid(geometry: BenchGeometry, fragment: String) {
        do {
            try geometry.validate()
            Issue.record("\(geometry) should be rejected")
        } catch {
            #expect(error.message.contains(fragment), "\(error.message)")
            #expect(error.exitCode == 2)
        }
    }

    @Test("mode names")
    func modes() {
        #expect(BenchMode(argument: "drop") == .drop)
        #expect(BenchMode(argument: "ring") == nil)
        #expect(BenchMode.allCases.map(\.rawValue) == ["block", "drop", "overwrite"])
    }
}

@Suite("Preflight")
struct PreflightTests {
    @Test("writable files and directories pass and leave no probe behind")
    func writable() throws {
        let directory = try BenchTestDirectory()
        try Preflight.check(.file(path: directory.file("new.log"), options: FileSinkOptions()))
        try directory.write("existing.log", text: "x")
        try Preflight.check(.file(path: directory.file("existing.log"), options: FileSinkOptions()))
        try Preflight.check(.filePerBuffer(directory: directory.path, options: FileSinkOptions()))
        try Preflight.check(.filePerBuffer(directory: directory.file("to-create"), options: FileSinkOptions()))
        try Preflight.check(.null)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["existing.log"])
    }

    @Test("unusable paths are one-line errors")
    func unusable() throws {
        let directory = try BenchTestDirectory()
        try directory.write("plain", text: "x")
        #expect(throws: BenchError("directory '\(directory.path)/nope' for '\(directory.path)/nope/out.log' does not exist: create it with mkdir -p \(directory.path)/nope or pick another path")) {
            try Preflight.check(.file(path: directory.file("nope/out.log"), options: FileSinkOptions()))
        }
        #expect(throws: BenchError("'\(directory.path)/plain' in '\(directory.path)/plain/out.log' is not a directory: pick a path inside an existing directory")) {
            try Preflight.check(.file(path: directory.file("plain/out.log"), options: FileSinkOptions()))
        }
        #expect(throws: BenchError("'\(directory.path)' is a directory: give file:PATH a file name, or use file-per-buffer:\(directory.path)")) {
            try Preflight.check(.file(path: directory.path, options: FileSinkOptions()))
        }
        #expect(throws: BenchError.self) {
            try Preflight.check(.filePerBuffer(directory: directory.file("plain"), options: FileSinkOptions()))
        }
        // /proc refuses new files even for root.
        #expect(throws: BenchError.self) {
            try Preflight.check(.file(path: "/proc/relay-bench-out.log", options: FileSinkOptions()))
        }
    }

    @Test("O_DIRECT support is probed", .enabled(if: FileManager.default.fileExists(atPath: "/dev/shm"), "needs /dev/shm"))
    func direct() throws {
        // /dev/shm is tmpfs, which refuses O_DIRECT opens before Linux 6.6 and accepts them
        // since. Ask the kernel directly, then expect the preflight to agree with it either way.
        let probePath = "/dev/shm/relay-bench-direct-probe-\(getpid())"
        let probe = open(probePath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | POSIXIO.directFlag, 0o600)
        let probeErrno = errno
        if probe >= 0 {
            close(probe)
            unlink(probePath)
        }
        try #require(probe >= 0 || probeErrno == EINVAL, "O_DIRECT probe open failed: errno \(probeErrno)")
        let path = "/dev/shm/relay-bench-direct-\(getpid()).log"
        defer { unlink(path) }
        do {
            try Preflight.check(.file(path: path, options: FileSinkOptions(direct: true)))
            #expect(probe >= 0, "the preflight accepted O_DIRECT on /dev/shm, which refuses it")
        } catch {
            #expect(probe < 0, "the preflight refused O_DIRECT on /dev/shm, which supports it: \(error.message)")
            #expect(error.message.contains("does not support O_DIRECT: drop the odirect option"), "\(error.message)")
        }
        #expect(!FileManager.default.fileExists(atPath: "/dev/shm/.relay-bench-preflight-\(getpid())"))
    }

    @Test("TCP: a listening port connects, a closed port is refused at once")
    func tcp() throws {
        let receiver = try LoopbackReceiver()
        try Preflight.check(receiver.sinkSpec)
        #expect(try receiver.finish().accepted)

        // Find a port nobody listens on: bind, read the port, close.
        let closedPort = try LoopbackReceiver().port
        let start = ContinuousClock.now
        #expect(throws: BenchError("nothing listens at tcp:127.0.0.1:\(closedPort) (connection refused): start the receiver first or fix the address")) {
            try Preflight.check(.tcp(host: "127.0.0.1", port: closedPort, format: .plain))
        }
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(throws: BenchError.self) { try Preflight.check(.tcp(host: "localhost", port: closedPort, format: .plain)) }
    }

    @Test("unix sockets must exist, be sockets, and accept")
    func unix() throws {
        let directory = try BenchTestDirectory()
        #expect(throws: BenchError("unix socket '\(directory.path)/none.sock' does not exist: start the receiver first or fix the path")) {
            try Preflight.check(.unix(path: directory.file("none.sock"), format: .plain))
        }
        try directory.write("regular", text: "x")
        #expect(throws: BenchError("'\(directory.path)/regular' is not a unix socket: point unix:PATH at a listening socket")) {
            try Preflight.check(.unix(path: directory.file("regular"), format: .plain))
        }

        let path = directory.file("live.sock")
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8) + [0])
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        // Bound but not listening: refused.
        #expect(throws: BenchError.self) { try Preflight.check(.unix(path: path, format: .plain)) }
        #expect(listen(listener, 4) == 0)
        try Preflight.check(.unix(path: path, format: .plain))
    }

    @Test("parent directory helper")
    func parents() {
        #expect(Preflight.parentDirectory(of: "out.log") == ".")
        #expect(Preflight.parentDirectory(of: "/out.log") == "/")
        #expect(Preflight.parentDirectory(of: "/a/b/c.log") == "/a/b")
        #expect(Preflight.parentDirectory(of: "/a/b/") == "/a")
    }
}
