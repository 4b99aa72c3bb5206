import Foundation
import RelayShipper
import Testing

@testable import relayd

#if canImport(Glibc)
import Glibc
#endif

/// The repository's `deploy/` directory, found relative to this file (Tests/relaydTests/ → ../../deploy).
let deployDirectory: String = {
    var path = "\(#filePath)"
    for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
    return path + "/deploy"
}()

/// A small valid configuration whose file output and state live in `directory`.
func minimalConfig(_ directory: String) -> String {
    """
    [daemon]
    state_dir = "\(directory)"

    [[inputs]]
    name = "syslog"
    type = "tcp"
    listen = "127.0.0.1:5140"

    [[outputs]]
    name = "files"
    type = "file"
    path = "\(directory)/relayd.log"

    """
}

@Suite("Configuration")
struct ConfigTests {
    @Test func defaultConfigParsesAndValidates() throws {
        #expect(RelaydConfig.validate(DefaultConfig.text) == [])
        let config = try RelaydConfig.parse(DefaultConfig.text)
        #expect(config.daemon.metricsListen?.description == "127.0.0.1:9464")
        #expect(config.daemon.metricsListen?.isLoopback == true)
        #expect(config.daemon.drainTimeout == .seconds(10))
        #expect(config.daemon.createDirectories)
        #expect(config.inputs.map(\.name) == ["syslog-tcp", "local"])
        guard case .tcp(let listen, let maxConnections) = config.inputs[0].kind else {
            Issue.record("the first default input is not TCP")
            return
        }
        #expect(listen.description == "127.0.0.1:5140" && listen.isLoopback)
        #expect(maxConnections == 64)
        #expect(config.inputs[0].framing == .auto)
        #expect(config.inputs[1].kind == .unixDatagram(path: "./relayd-data/run/log.sock", socketMode: 0o660))
        let output = try #require(config.outputs.first)
        #expect(output.inputs == ["syslog-tcp", "local"])
        #expect(output.format == .rfc5424)
        #expect(output.framing == .lf)
        guard case .file(let file) = output.kind else {
            Issue.record("the default output is not a file")
            return
        }
        #expect(file.path.hasPrefix("./relayd-data/"))
        #expect(file.rotateSize == 64 << 20 && file.rotateCount == 8 && file.fsync == .none)
        #expect(file.writeback == .bytes(8 << 20))
        let channel = config.channel(for: output)
        #expect(channel.subbufferSize == 1 << 20 && channel.subbufferCount == 8 && channel.mode == .block)
        #expect(channel.blockTimeout == .milliseconds(100) && channel.switchInterval == .milliseconds(100))
    }

    @Test func defaultConfigValidatesInAnEmptyWorkingDirectoryWithoutCreatingAnything() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        #expect(
            RelaydConfig.validate(DefaultConfig.text, options: ValidationOptions(workingDirectory: directory)) == []
        )
        #expect((try? FileManager.default.contentsOfDirectory(atPath: directory)) == [])
        // Without create_dirs the missing ./relayd-data directories are reported.
        let strict = DefaultConfig.text.replacingOccurrences(of: "create_dirs = true", with: "create_dirs = false")
        let errors = RelaydConfig.validate(strict, options: ValidationOptions(workingDirectory: directory))
        #expect(Set(errors.map(\.keyPath)) == ["daemon.state_dir", "inputs[1].path", "outputs[0].path"])
        #expect(errors.allSatisfy { $0.message.contains("./relayd-data") && $0.message.contains("does not exist") })
    }

    @Test(arguments: ["relayd-local-files.toml", "relayd-forward-rsyslog.toml"])
    func exampleConfigsValidate(file: String) throws {
        let text = try String(contentsOfFile: deployDirectory + "/" + file, encoding: .utf8)
        // Schema and cross-references.
        #expect(RelaydConfig.validate(text, options: ValidationOptions(checkFileSystem: false)) == [])
        // File-system checks against a staged root with the directories systemd creates for relayd.service.
        let root = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(root) }
        let missing = RelaydConfig.validate(text, options: ValidationOptions(fileSystemRoot: root))
        #expect(
            missing.contains {
                $0.keyPath == "daemon.state_dir" && $0.message.contains("/var/lib/relayd does not exist")
            }
        )
        for directory in ["/var/lib/relayd", "/var/log/relayd", "/run/relayd"] {
            try FileManager.default.createDirectory(atPath: root + directory, withIntermediateDirectories: true)
        }
        #expect(RelaydConfig.validate(text, options: ValidationOptions(fileSystemRoot: root)) == [])
        let config = try RelaydConfig.parse(text, options: ValidationOptions(fileSystemRoot: root))
        #expect(
            config.inputs.allSatisfy { input in
                if case .tcp(let listen, _) = input.kind { return listen.isLoopback }
                return true
            }
        )
    }

    @Test func checkConfigCommand() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let good = directory + "/good.toml"
        let bad = directory + "/bad.toml"
        try minimalConfig(directory).write(toFile: good, atomically: true, encoding: .utf8)
        try (minimalConfig(directory) + "\n[channels.default]\nsubbufs = 1\nsize = 3\n").write(
            toFile: bad,
            atomically: true,
            encoding: .utf8
        )
        var lines: [String] = []
        #expect(ConfigCheck.run(path: good, report: { lines.append($0) }) == 0)
        #expect(lines == ["\(good): valid (1 inputs, 1 outputs)"])
        lines = []
        #expect(ConfigCheck.run(path: bad, report: { lines.append($0) }) == 2)
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { $0.hasPrefix("\(bad): channels.default.") })
        lines = []
        #expect(ConfigCheck.run(path: directory + "/absent.toml", report: { lines.append($0) }) == 2)
        #expect(
            lines == [
                "\(directory)/absent.toml: cannot open \(directory)/absent.toml: No such file or directory; check the path and its permissions"
            ]
        )
    }

    /// One bad setting each: the key path that must be reported and words the message must contain.
    struct BadCase: CustomTestStringConvertible, Sendable {
        var name: String
        var replace: (String, String)?
        var append: String
        var keyPath: String
        var fragments: [String]
        var testDescription: String { self.name }

        init(
            _ name: String,
            replace: (String, String)? = nil,
            append: String = "",
            keyPath: String,
            _ fragments: [String]
        ) {
            self.name = name
            self.replace = replace
            self.append = append
            self.keyPath = keyPath
            self.fragments = fragments
        }
    }

    static let badCases: [BadCase] = [
        BadCase(
            "unknown key with suggestion",
            append: "[channels.default]\nsubbuf_sise = \"1MiB\"\n",
            keyPath: "channels.default.subbuf_sise",
            ["unknown key", "did you mean \"subbuf_size\"?"]
        ),
        BadCase(
            "unknown key without suggestion",
            append: "[channels.default]\ncolour = \"blue\"\n",
            keyPath: "channels.default.colour",
            ["unknown key", "valid keys: subbuf_size, subbufs, mode"]
        ),
        BadCase("unknown top-level section", append: "[deamon]\n", keyPath: "deamon", ["did you mean \"daemon\"?"]),
        BadCase(
            "key of another input type",
            replace: ("type = \"tcp\"", "type = \"tcp\"\npath = \"/x\""),
            keyPath: "inputs[0].path",
            ["applies to type = \"unix_dgram\" or \"unix_stream\" inputs, not \"tcp\"", "remove it"]
        ),
        BadCase(
            "wrong type: quoted integer",
            replace: ("listen = \"127.0.0.1:5140\"", "listen = \"127.0.0.1:5140\"\nmax_connections = \"64\""),
            keyPath: "inputs[0].max_connections",
            ["expected an integer, found string \"64\"", "max_connections = 64"]
        ),
        BadCase(
            "wrong type: quoted boolean",
            replace: ("type = \"file\"", "type = \"file\"\nodirect = \"true\""),
            keyPath: "outputs[0].odirect",
            ["expected a boolean", "remove the quotes: odirect = true"]
        ),
        BadCase(
            "wrong type: string for array",
            replace: ("type = \"file\"", "type = \"file\"\ninputs = \"syslog\""),
            keyPath: "outputs[0].inputs",
            ["expected an array of strings", "inputs = [\"syslog\"]"]
        ),
        BadCase(
            "decimal size unit",
            append: "[channels.default]\nsubbuf_size = \"1MB\"\n",
            keyPath: "channels.default.subbuf_size",
            ["binary units", "write \"1MiB\""]
        ),
        BadCase(
            "unknown size unit",
            replace: ("type = \"tcp\"", "type = \"tcp\"\nmax_frame = \"64 parsecs\""),
            keyPath: "inputs[0].max_frame",
            ["unknown unit \"parsecs\"", "KiB"]
        ),
        BadCase(
            "duration without unit",
            replace: ("state_dir", "drain_timeout = \"10\"\nstate_dir"),
            keyPath: "daemon.drain_timeout",
            ["has no unit", "\"10s\""]
        ),
        BadCase(
            "drain_timeout below its documented 1ms minimum",
            replace: ("state_dir", "drain_timeout = \"500us\"\nstate_dir"),
            keyPath: "daemon.drain_timeout",
            ["500us is out of range", "1ms...1h"]
        ),
        BadCase(
            "max_connections of all stream inputs above the 65535 connections relayd can hold",
            replace: ("listen = \"127.0.0.1:5140\"", "listen = \"127.0.0.1:5140\"\nmax_connections = 40000"),
            append: "[[inputs]]\nname = \"local\"\ntype = \"unix_stream\"\npath = \"/tmp/x.sock\"\nmax_connections = 40000\n",
            keyPath: "inputs[1].max_connections",
            ["add up to 80000", "at most 65535"]
        ),
        BadCase(
            "duration as integer",
            replace: ("state_dir", "drain_timeout = 10\nstate_dir"),
            keyPath: "daemon.drain_timeout",
            ["durations need a unit", "drain_timeout = \"10s\""]
        ),
        BadCase(
            "unknown duration unit",
            append: "[channels.default]\nswitch_interval = \"5 fortnights\"\n",
            keyPath: "channels.default.switch_interval",
            ["unknown unit \"fortnights\""]
        ),
        BadCase(
            "listen on all interfaces",
            replace: ("127.0.0.1:5140", "0.0.0.0:514"),
            keyPath: "inputs[0].listen",
            ["\"0.0.0.0:514\" binds all interfaces; relayd only listens on loopback unless allow_remote = true is set"]
        ),
        BadCase(
            "listen on a LAN address",
            replace: ("127.0.0.1:5140", "192.168.1.10:5140"),
            keyPath: "inputs[0].listen",
            ["is not a loopback address", "allow_remote = true"]
        ),
        BadCase(
            "metrics on all interfaces",
            replace: ("state_dir", "metrics_listen = \"[::]:9464\"\nstate_dir"),
            keyPath: "daemon.metrics_listen",
            ["binds all interfaces", "allow_remote = true is set in [daemon]"]
        ),
        BadCase(
            "listen on a host name",
            replace: ("127.0.0.1:5140", "myhost:5140"),
            keyPath: "inputs[0].listen",
            ["is not an IP address", "127.0.0.1:5140"]
        ),
        BadCase(
            "listen without port",
            replace: ("127.0.0.1:5140", "127.0.0.1"),
            keyPath: "inputs[0].listen",
            ["missing port"]
        ),
        BadCase(
            "metrics port collides with an input",
            replace: ("state_dir", "metrics_listen = \"127.0.0.1:5140\"\nstate_dir"),
            keyPath: "inputs[0].listen",
            ["conflicts with daemon.metrics_listen", "choose another port"]
        ),
        BadCase(
            "missing output directory",
            replace: ("/relayd.log\"", "/no/such/dir/relayd.log\""),
            keyPath: "outputs[0].path",
            ["/no/such/dir does not exist; create it or choose another path"]
        ),
        BadCase(
            "dangling input reference",
            replace: ("type = \"file\"", "type = \"file\"\ninputs = [\"syslg\"]"),
            keyPath: "outputs[0].inputs[0]",
            ["no input is named \"syslg\"; did you mean \"syslog\"?", "defined inputs: syslog"]
        ),
        BadCase(
            "unrouted input",
            replace: ("type = \"file\"", "type = \"file\"\ninputs = [\"syslog\"]"),
            append: "[[inputs]]\nname = \"other\"\ntype = \"stdin\"\n",
            keyPath: "inputs[1]",
            ["\"other\" is not routed to any output"]
        ),
        BadCase(
            "sub-buffer size not a power of two",
            append: "[channels.default]\nsubbuf_size = 3000\n",
            keyPath: "channels.default.subbuf_size",
            ["not a power of two between 4KiB and 1GiB"]
        ),
        BadCase(
            "sub-buffer too small",
            append: "[channels.default]\nsubbuf_size = \"2KiB\"\n",
            keyPath: "channels.default.subbuf_size",
            ["not a power of two between 4KiB and 1GiB"]
        ),
        BadCase(
            "one sub-buffer",
            append: "[channels.default]\nsubbufs = 1\n",
            keyPath: "channels.default.subbufs",
            ["at least 2 sub-buffers"]
        ),
        BadCase(
            "max_frame larger than a sub-buffer",
            replace: ("type = \"tcp\"", "type = \"tcp\"\nmax_frame = \"8KiB\""),
            append: "[channels.default]\nsubbuf_size = \"8KiB\"\n",
            keyPath: "inputs[0].max_frame",
            ["does not fit in a sub-buffer of channel \"default\"", "raise channels.default.subbuf_size"]
        ),
        BadCase(
            "max_frame below RFC 5424 minimum",
            replace: ("type = \"tcp\"", "type = \"tcp\"\nmax_frame = 100"),
            keyPath: "inputs[0].max_frame",
            ["480B"]
        ),
        BadCase(
            "sub-buffer count not a power of two",
            append: "[channels.default]\nsubbufs = 12\n",
            keyPath: "channels.default.subbufs",
            ["not a power of two", "subbufs = 16"]
        ),
        BadCase(
            "channel larger than 1 GiB per channel buffer",
            append: "[channels.default]\nsubbuf_size = \"64MiB\"\nsubbufs = 32\n",
            keyPath: "channels.default.subbufs",
            ["exceeds 1GiB per channel buffer"]
        ),
        BadCase(
            "mode typo",
            append: "[channels.default]\nmode = \"blok\"\n",
            keyPath: "channels.default.mode",
            ["did you mean \"block\"?"]
        ),
        BadCase(
            "block_timeout with drop mode",
            append: "[channels.default]\nmode = \"drop\"\nblock_timeout = \"1s\"\n",
            keyPath: "channels.default.block_timeout",
            ["only applies to mode = \"block\""]
        ),
        BadCase(
            "unknown channel",
            replace: ("type = \"file\"", "type = \"file\"\nchannel = \"fast\""),
            keyPath: "outputs[0].channel",
            ["no [channels.fast] section"]
        ),
        BadCase(
            "duplicate output name",
            append: "[[outputs]]\nname = \"files\"\ntype = \"tcp\"\ntarget = \"127.0.0.1:514\"\n",
            keyPath: "outputs[1].name",
            ["already used by outputs[0]"]
        ),
        BadCase(
            "missing required key",
            replace: ("listen = \"127.0.0.1:5140\"", ""),
            keyPath: "inputs[0].listen",
            ["missing; add listen = \"127.0.0.1:5140\""]
        ),
        BadCase("missing type", replace: ("type = \"tcp\"", ""), keyPath: "inputs[0].type", ["missing; add type = "]),
        BadCase(
            "unknown input type",
            replace: ("type = \"tcp\"", "type = \"udp\""),
            keyPath: "inputs[0].type",
            ["\"udp\" is not valid", "\"tcp\""]
        ),
        BadCase(
            "inputs as a table",
            replace: ("[[inputs]]", "[inputs]"),
            keyPath: "inputs",
            ["expected an array of tables", "[[inputs]]"]
        ),
        BadCase(
            "rotate_size below a sub-buffer",
            replace: ("type = \"file\"", "type = \"file\"\nrotate_size = \"64KiB\""),
            keyPath: "outputs[0].rotate_size",
            ["smaller than one sub-buffer", "0 to disable"]
        ),
        BadCase(
            "compound fsync interval with a part missing its unit",
            replace: ("type = \"file\"", "type = \"file\"\nfsync = \"1m30\""),
            keyPath: "outputs[0].fsync",
            ["\"30\" has no unit", "\"1m30s\""]
        ),
        BadCase(
            "compound duration out of order",
            append: "[channels.default]\nswitch_interval = \"500ms1s\"\n",
            keyPath: "channels.default.switch_interval",
            ["largest unit to the smallest", "\"1s500ms\""]
        ),
        BadCase(
            "ambiguous fsync",
            replace: ("type = \"file\"", "type = \"file\"\nfsync = \"100\""),
            keyPath: "outputs[0].fsync",
            ["ambiguous", "\"100ms\""]
        ),
        BadCase(
            "writeback below 64KiB",
            replace: ("type = \"file\"", "type = \"file\"\nwriteback = \"32KiB\""),
            keyPath: "outputs[0].writeback",
            ["\"32KiB\" is too small", "use \"kernel\" or a size of at least 64KiB such as \"8MiB\""]
        ),
        BadCase(
            "writeback as a too small integer",
            replace: ("type = \"file\"", "type = \"file\"\nwriteback = 4096"),
            keyPath: "outputs[0].writeback",
            ["4096 is too small", "use \"kernel\" or a size of at least 64KiB such as \"8MiB\""]
        ),
        BadCase(
            "writeback misspelt",
            replace: ("type = \"file\"", "type = \"file\"\nwriteback = \"kernal\""),
            keyPath: "outputs[0].writeback",
            [
                "\"kernal\" is neither \"kernel\" nor a size", "did you mean \"kernel\"?",
                "use \"kernel\" or a size of at least 64KiB such as \"8MiB\"",
            ]
        ),
        BadCase(
            "writeback garbage",
            replace: ("type = \"file\"", "type = \"file\"\nwriteback = \"often\""),
            keyPath: "outputs[0].writeback",
            ["\"often\" is neither \"kernel\" nor a size", "use \"kernel\" or a size of at least 64KiB"]
        ),
        BadCase(
            "writeback with a decimal unit",
            replace: ("type = \"file\"", "type = \"file\"\nwriteback = \"8MB\""),
            keyPath: "outputs[0].writeback",
            ["write \"8MiB\"", "use \"kernel\" or a size of at least 64KiB"]
        ),
        BadCase(
            "writeback as a boolean",
            replace: ("type = \"file\"", "type = \"file\"\nwriteback = true"),
            keyPath: "outputs[0].writeback",
            ["expected a string", "use \"kernel\" or a size of at least 64KiB"]
        ),
        BadCase(
            "reversed backoff",
            append:
                "[[outputs]]\nname = \"fwd\"\ntype = \"tcp\"\ntarget = \"logs.example.net:514\"\nreconnect_backoff = \"5s..100ms\"\n",
            keyPath: "outputs[1].reconnect_backoff",
            ["longer than the maximum", "\"100ms..5s\""]
        ),
        BadCase(
            "bad sd_id",
            append:
                "[[outputs]]\nname = \"fwd\"\ntype = \"tcp\"\ntarget = \"logs.example.net:514\"\nsd_id = \"relayd\"\n",
            keyPath: "outputs[1].sd_id",
            ["name@enterprise-number"]
        ),
        BadCase(
            "bad socket mode",
            append:
                "[[inputs]]\nname = \"dev\"\ntype = \"unix_dgram\"\npath = \"/tmp/x.sock\"\nsocket_mode = \"0999\"\n",
            keyPath: "inputs[1].socket_mode",
            ["octal permission mode", "\"0660\""]
        ),
        BadCase(
            "invalid name",
            replace: ("name = \"syslog\"", "name = \"sys log\""),
            keyPath: "inputs[0].name",
            ["not a valid name"]
        ),
        BadCase(
            "TOML syntax error",
            append: "[channels.default]\nsubbuf_size = 1MiB\n",
            keyPath: "",
            ["TOML syntax error at line", "quotes"]
        ),
    ]

    @Test(arguments: Self.badCases)
    func badConfigsNameTheKeyAndTheFix(_ bad: BadCase) throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        var text = minimalConfig(directory)
        #expect(RelaydConfig.validate(text) == [], "the base configuration must be valid")
        if let (old, new) = bad.replace {
            #expect(text.contains(old))
            text = text.replacingOccurrences(of: old, with: new)
        }
        text += bad.append
        let errors = RelaydConfig.validate(text)
        let matching = errors.filter { $0.keyPath == bad.keyPath }
        #expect(!matching.isEmpty, "expected an error at \(bad.keyPath), got \(errors)")
        for fragment in bad.fragments {
            #expect(matching.contains { $0.message.contains(fragment) }, "\"\(fragment)\" not in \(matching)")
        }
        for error in errors where !error.keyPath.isEmpty {
            #expect(error.description.hasPrefix(error.keyPath + ": "))
        }
    }

    @Test("inputs = [] and outputs = [] are rejected like missing sections, not \"valid (0 inputs, 0 outputs)\"")
    func emptyInputAndOutputListsAreRejected() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let path = directory + "/empty.toml"
        try "inputs = []\noutputs = []\n\n[daemon]\nstate_dir = \"\(directory)\"\n".write(
            toFile: path,
            atomically: true,
            encoding: .utf8
        )
        var lines: [String] = []
        #expect(ConfigCheck.run(path: path, report: { lines.append($0) }) == 2, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("\(path): inputs: ") && $0.contains("add at least one input") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("\(path): outputs: ") && $0.contains("add at least one output") }, "\(lines)")
    }

    @Test("an output rejected for a bad target or path does not also make its inputs \"not routed to any output\"")
    func aRejectedOutputDoesNotReportItsInputsAsUnrouted() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        for (old, new, keyPath) in [
            ("type = \"file\"\npath = \"\(directory)/relayd.log\"", "type = \"tcp\"\ntarget = \"logs.example.net\"", "outputs[0].target"),
            ("path = \"\(directory)/relayd.log\"", "path = \"\(directory)/\"", "outputs[0].path"),
            ("path = \"\(directory)/relayd.log\"", "", "outputs[0].path"),
        ] {
            let text = minimalConfig(directory).replacingOccurrences(of: old, with: new)
            #expect(text != minimalConfig(directory))
            let errors = RelaydConfig.validate(text)
            // The one real problem, at the output; not a second, wrong one at the input it routes.
            #expect(errors.map(\.keyPath) == [keyPath], "\(errors)")
        }
    }

    @Test("a permission mode written as a decimal integer (file_mode = 440) is rejected, not read as mode 0o670")
    func decimalPermissionModesAreRejected() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        func output(_ mode: String) -> String {
            minimalConfig(directory) + "file_mode = \(mode)\n"
        }
        // Decimal 440 is 0o670 (group-writable and executable): an operator who meant r--r----- must hear about it.
        let errors = RelaydConfig.validate(output("440"))
        #expect(errors.map(\.keyPath) == ["outputs[0].file_mode"], "\(errors)")
        #expect(errors.first?.message.contains("\"0440\"") == true, "\(errors)")
        #expect(RelaydConfig.validate(output("511")).map(\.keyPath) == ["outputs[0].file_mode"])
        // Octal integers and octal strings keep working.
        for (text, mode) in [("0o440", 0o440), ("\"0440\"", 0o440), ("0o640", 0o640), ("\"640\"", 0o640)] {
            let config = try RelaydConfig.parse(output(text))
            guard case .file(let file) = config.outputs[0].kind else {
                Issue.record("not a file output")
                continue
            }
            #expect(file.fileMode == UInt32(mode), "\(text)")
        }
        let socket = minimalConfig(directory)
            + "\n[[inputs]]\nname = \"dev\"\ntype = \"unix_dgram\"\npath = \"\(directory)/log.sock\"\nsocket_mode = 0o666\n"
        #expect(try RelaydConfig.parse(socket).inputs[1].kind == .unixDatagram(path: "\(directory)/log.sock", socketMode: 0o666))
        #expect(
            RelaydConfig.validate(socket.replacingOccurrences(of: "socket_mode = 0o666", with: "socket_mode = 438")).map(\.keyPath)
                == ["inputs[1].socket_mode"]
        )
    }

    @Test func aPathThatAnotherOutputRotatesOntoIsRejected() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        func second(_ path: String, rotation: String = "") -> String {
            minimalConfig(directory).replacingOccurrences(of: "path = \"\(directory)/relayd.log\"\n", with: "path = \"\(directory)/relayd.log\"\n\(rotation)")
                + "[[outputs]]\nname = \"second\"\ntype = \"file\"\npath = \"\(path)\"\n"
        }
        // The first output's rotation renames relayd.log to relayd.log.1 … relayd.log.8 over the second's file.
        for path in ["\(directory)/relayd.log.1", "\(directory)/./relayd.log.8"] {
            let errors = RelaydConfig.validate(second(path))
            #expect(
                errors.contains { $0.keyPath == "outputs[1].path" && $0.message.contains("is a rotated file of outputs[0]") },
                "\(errors)"
            )
        }
        #expect(RelaydConfig.validate(second("\(directory)/relayd.log.9")) == [])
        #expect(RelaydConfig.validate(second("\(directory)/relayd.log.2", rotation: "rotate_count = 1\n")) == [])
        // Without built-in rotation nothing is renamed.
        #expect(RelaydConfig.validate(second("\(directory)/relayd.log.1", rotation: "rotate_size = 0\n")) == [])
        #expect(
            RelaydConfig.validate(second("\(directory)/relayd.log.1", rotation: "rotate_size = 0\nrotate_age = \"1d\"\n")) != []
        )
    }

    @Test func allowRemoteAcceptsNonLoopbackListeners() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let text = minimalConfig(directory)
            .replacingOccurrences(of: "127.0.0.1:5140", with: "0.0.0.0:5140\"\nallow_remote = true\n#\"")
            .replacingOccurrences(
                of: "state_dir",
                with: "metrics_listen = \"10.0.0.1:9464\"\nallow_remote = true\nstate_dir"
            )
        #expect(RelaydConfig.validate(text) == [])
    }

    @Test func createDirsAcceptsMissingDirectoriesUnderAWritableAncestor() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let nested = minimalConfig(directory).replacingOccurrences(of: "/relayd.log\"", with: "/a/b/relayd.log\"")
        #expect(RelaydConfig.validate(nested).map(\.keyPath) == ["outputs[0].path"])
        let created = nested.replacingOccurrences(of: "state_dir", with: "create_dirs = true\nstate_dir")
        #expect(RelaydConfig.validate(created) == [])
        #expect(!FileManager.default.fileExists(atPath: directory + "/a"), "validation must not create directories")
    }

    @Test func manyErrorsAreReportedInOneRun() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let text = minimalConfig(directory) + "[channels.default]\nsubbufs = 1\nmode = \"fast\"\nswitch_interval = 5\n"
        #expect(
            Set(RelaydConfig.validate(text).map(\.keyPath)) == [
                "channels.default.subbufs", "channels.default.mode", "channels.default.switch_interval",
            ]
        )
    }

    @Test func routingDefaultsToEveryInput() throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let text =
            minimalConfig(directory) + "[[inputs]]\nname = \"in2\"\ntype = \"stdin\"\n"
            + "[[outputs]]\nname = \"only2\"\ntype = \"tcp\"\ntarget = \"[::1]:6514\"\ninputs = [\"in2\"]\nformat = \"jsonl\"\n"
        let config = try RelaydConfig.parse(text)
        #expect(config.outputs[0].inputs == ["syslog", "in2"])
        #expect(config.outputs(consuming: "in2").map(\.name) == ["files", "only2"])
        #expect(config.outputs(consuming: "syslog").map(\.name) == ["files"])
        guard case .tcp(let tcp) = config.outputs[1].kind else {
            Issue.record("expected a TCP output")
            return
        }
        #expect(tcp.target == HostPort(host: "::1", port: 6514))
        #expect(tcp.framing == .lf, "jsonl defaults to LF framing")
        #expect(tcp.reconnectBackoff == .milliseconds(100)...(.seconds(5)))
        #expect(config.inputs[1].framing == .lf, "stdin defaults to LF framing")
    }
}

@Suite("Size, duration and address parsing")
struct ValueParsingTests {
    @Test(arguments: [
        ("4096", 4096), ("64KiB", 65536), ("1MiB", 1 << 20), ("2 GiB", 2 << 30), ("512B", 512), ("0", 0),
        ("1TiB", 1 << 40),
    ])
    func sizes(text: String, bytes: Int) throws {
        #expect(try ByteSize.parse(text) == bytes)
        #expect(try ByteSize.parse(ByteSize.format(bytes)) == bytes)
    }

    @Test(arguments: ["", "KiB", "1.5MiB", "-1", "1MB", "1k", "1 M", "99999999999999999999"])
    func badSizes(text: String) {
        #expect(throws: ConfigIssue.self) { try ByteSize.parse(text) }
    }

    @Test(
        "Negative, fractional and oversized sizes say what is wrong, not \"unknown unit\"",
        arguments: [
            ("-1KiB", "is negative; sizes are byte counts ≥ 0"),
            ("-4096", "is negative; sizes are byte counts ≥ 0"),
            ("1.5MiB", "sizes are whole numbers; write \"1536KiB\""),
            ("0.5 KiB", "sizes are whole numbers; write \"512\""),
            ("99999999999999999999", "is too large"),
        ]
    )
    func badSizeMessages(text: String, expected: String) {
        let issue = #expect(throws: ConfigIssue.self) { try ByteSize.parse(text) }
        #expect(issue?.message.contains(expected) == true, "\(issue?.message ?? "no error")")
        #expect(issue?.message.contains("unknown unit") == false)
    }

    @Test(arguments: [
        ("100ms", Duration.milliseconds(100)), ("5s", .seconds(5)), ("1m", .seconds(60)), ("1h", .seconds(3600)),
        ("1d", .seconds(86400)), ("250us", .microseconds(250)), ("10ns", .nanoseconds(10)),
        ("1.5s", .milliseconds(1500)),
        ("1m30s", .seconds(90)),
    ])
    func durations(text: String, duration: Duration) throws {
        #expect(try DurationParsing.parse(text) == duration)
        #expect(try DurationParsing.parse(DurationParsing.format(duration)) == duration)
    }

    @Test(arguments: ["", "10", "s", "5 sec", "1y", "-1s", "1..2s"])
    func badDurations(text: String) {
        #expect(throws: ConfigIssue.self) { try DurationParsing.parse(text) }
    }

    @Test(
        "Compound durations add their parts, largest unit first, spaces allowed between parts",
        arguments: [
            ("1m30s", Duration.seconds(90)), ("1h2m3s", .seconds(3723)), ("1s500ms", .milliseconds(1500)),
            ("2m 30s", .seconds(150)), ("1d12h", .seconds(129_600)), ("1ms250us", .microseconds(1250)),
            ("1s1ms1us1ns", .nanoseconds(1_001_001_001)), ("1.5m30s", .seconds(120)), ("5 s", .seconds(5)),
            ("0.0000000015s", .nanoseconds(2)), ("53375d", .seconds(53_375 * 86_400)),
        ]
    )
    func compoundDurations(text: String, duration: Duration) throws {
        #expect(try DurationParsing.parse(text) == duration)
    }

    @Test(
        "Malformed compound durations say what is wrong and show a valid value",
        arguments: [
            ("1m30", "\"30\" has no unit"), ("30s1m", "largest unit to the smallest"),
            ("5s5s", "largest unit to the smallest"), ("1m30x", "unknown unit \"x\""), ("1m 30", "has no unit"),
            ("1.2.3s", "is not a duration"), ("1m.s", "is not a duration"), ("1m-30s", "is not a duration"),
            ("-5s", "is negative"), ("200000d", "out of range"), ("106751d23h47m17s", "out of range"),
            ("9223372036854775807ns", "out of range"), ("99999999999999999999999s", "out of range"),
        ]
    )
    func badCompoundDurations(text: String, expected: String) {
        let issue = #expect(throws: ConfigIssue.self) { try DurationParsing.parse(text) }
        #expect(issue?.message.contains(expected) == true, "\(issue?.message ?? "no error")")
        #expect(issue?.message.contains("e.g. \"") == true, "\(issue?.message ?? "no error")")
    }

    @Test("fsync and reconnect_backoff take compound durations")
    func compoundDurationSettings() throws {
        #expect(try ConfigDecoder.parseFsync("1m30s") == .interval(.seconds(90)))
        #expect(try ConfigDecoder.parseFsync("2m 30s") == .interval(.seconds(150)))
        #expect(try ConfigDecoder.parseFsync("1s500ms") == .interval(.milliseconds(1500)))
        #expect(try ConfigDecoder.parseFsync("64MiB") == .bytes(64 << 20))
        #expect(try ConfigDecoder.parseBackoff("1s500ms..1m30s") == Duration.milliseconds(1500)...Duration.seconds(90))
        let issue = #expect(throws: ConfigIssue.self) { try ConfigDecoder.parseFsync("1m30") }
        #expect(issue?.message.contains("has no unit") == true, "\(issue?.message ?? "no error")")
    }

    @Test(
        "writeback takes \"kernel\" or a size of at least 64KiB; absent, relayd's default (every 8 MiB, where the library leaves it to the kernel)",
        arguments: [
            ("writeback = \"kernel\"\n", WritebackPolicy.kernel, RelayFileSinkConfiguration.Writeback.kernel),
            ("writeback = \"1MiB\"\n", .bytes(1 << 20), .everyBytes(1 << 20)),
            ("writeback = \"64KiB\"\n", .bytes(64 << 10), .everyBytes(64 << 10)),
            ("writeback = 262144\n", .bytes(256 << 10), .everyBytes(256 << 10)),
            ("", .bytes(8 << 20), RelayFileSinkConfiguration.Writeback.everyBytes(8 << 20)),
        ]
    )
    func writebackSettings(line: String, policy: WritebackPolicy, sink: RelayFileSinkConfiguration.Writeback) throws {
        let directory = try RelaydTestSockets.makeTemporaryDirectory()
        defer { RelaydTestSockets.removeDirectory(directory) }
        let text = minimalConfig(directory) + line
        #expect(RelaydConfig.validate(text) == [])
        let config = try RelaydConfig.parse(text)
        let output = try #require(config.outputs.first)
        guard case .file(let file) = output.kind else {
            Issue.record("the output is not a file")
            return
        }
        #expect(file.writeback == policy)
        let configuration = OutputPipeline.fileSinkConfiguration(for: file, channel: config.channel(for: output))
        #expect(configuration.writeback == sink)
    }

    @Test func listenAddresses() throws {
        let v4 = try ListenAddress.parse("127.0.0.2:5140")
        #expect(v4.isLoopback && !v4.isUnspecified && v4.port == 5140 && v4.family == .ipv4)
        let v6 = try ListenAddress.parse("[::1]:9464")
        #expect(v6.isLoopback && v6.description == "[::1]:9464")
        #expect(try ListenAddress.parse("localhost:1").isLoopback)
        #expect(try ListenAddress.parse("[::ffff:127.0.0.1]:1").isLoopback)
        #expect(try ListenAddress.parse("0.0.0.0:1").isUnspecified)
        #expect(try ListenAddress.parse("[::]:1").isUnspecified)
        #expect(try !ListenAddress.parse("10.0.0.1:1").isLoopback)
        for bad in ["::1:80", "[::1]", "1.2.3.4:99999", "1.2.3.4:", ":80", "host:80", "[::1:80"] {
            #expect(throws: ConfigIssue.self, "\(bad)") { try ListenAddress.parse(bad) }
        }
        #expect(try HostPort.parse("logs.example.net:514") == HostPort(host: "logs.example.net", port: 514))
        #expect(throws: ConfigIssue.self) { try HostPort.parse("logs example:514") }
        #expect(throws: ConfigIssue.self) { try HostPort.parse("host:0") }
    }

    @Test func suggestions() {
        #expect(KeySuggestion.closest(to: "lisen", among: ["listen", "path"]) == "listen")
        #expect(KeySuggestion.closest(to: "max-frame", among: ["max_frame"]) == "max_frame")
        #expect(KeySuggestion.closest(to: "subbfu_size", among: ["subbuf_size"]) == "subbuf_size")
        #expect(KeySuggestion.closest(to: "colour", among: ["mode", "subbufs"]) == nil)
    }
}
