/// Options for ``RelaydConfig/parse(_:options:)`` and ``RelaydConfig/validate(_:options:)``.
struct ValidationOptions: Sendable {
    /// Check that directories for files, sockets and `state_dir` exist (or can be created with `create_dirs`).
    var checkFileSystem: Bool = true
    /// Prefix for absolute paths during file-system checks (like systemd's `RootDirectory=`); `""` checks the
    /// real paths. Lets tests validate a deployment config against a staged tree.
    var fileSystemRoot: String = ""
    /// Directory that relative paths are resolved against during file-system checks; `nil` means the process's
    /// working directory (where relayd itself will resolve them).
    var workingDirectory: String?

    /// Creates options.
    ///
    /// - Parameters:
    ///   - checkFileSystem: Check directories.
    ///   - fileSystemRoot: Prefix for absolute paths during checks.
    ///   - workingDirectory: Base for relative paths during checks.
    init(checkFileSystem: Bool = true, fileSystemRoot: String = "", workingDirectory: String? = nil) {
        self.checkFileSystem = checkFileSystem
        self.fileSystemRoot = fileSystemRoot
        self.workingDirectory = workingDirectory
    }
}

extension RelaydConfig {
    /// Parses and validates a TOML configuration.
    ///
    /// - Parameters:
    ///   - text: The TOML document.
    ///   - options: Validation options.
    /// - Returns: The configuration, with defaults filled in.
    /// - Throws: ``ConfigErrors`` listing every problem found.
    static func parse(
        _ text: String,
        options: ValidationOptions = ValidationOptions()
    ) throws(ConfigErrors) -> RelaydConfig {
        let root: ConfigValue
        do {
            root = try ConfigValue.parseTOML(text)
        } catch {
            throw ConfigErrors(errors: [error])
        }
        var decoder = ConfigDecoder()
        let config = decoder.decodeConfig(root)
        if let config {
            // Cross-key checks run even when some keys were rejected (those fell back to defaults), so one
            // run reports as much as possible.
            var validator = ConfigValidator(
                config: config,
                inputPaths: decoder.inputPaths,
                outputPaths: decoder.outputPaths,
                inputsOfRejectedOutputs: decoder.inputsOfRejectedOutputs,
                options: options
            )
            validator.run()
            decoder.errors.append(contentsOf: validator.errors)
        }
        guard decoder.errors.isEmpty, let config else {
            throw ConfigErrors(errors: decoder.errors)
        }
        return config
    }

    /// Reads, parses and validates a configuration file.
    ///
    /// - Parameters:
    ///   - path: The file.
    ///   - options: Validation options.
    /// - Returns: The configuration.
    /// - Throws: ``ConfigErrors``; an unreadable file is one document-level error.
    static func load(
        path: String,
        options: ValidationOptions = ValidationOptions()
    ) throws(ConfigErrors) -> RelaydConfig {
        let text: String
        do {
            text = try FileReading.readTextFile(path)
        } catch {
            throw ConfigErrors(errors: [error])
        }
        return try Self.parse(text, options: options)
    }

    /// Validates a configuration without keeping it: the entry point of `relayd check-config`.
    ///
    /// - Parameters:
    ///   - text: The TOML document.
    ///   - options: Validation options.
    /// - Returns: Every problem found; empty when the configuration is valid.
    static func validate(_ text: String, options: ValidationOptions = ValidationOptions()) -> [ConfigError] {
        do {
            _ = try Self.parse(text, options: options)
            return []
        } catch {
            return error.errors
        }
    }
}

// MARK: - Schema

extension ConfigDecoder {
    /// Keys of the root table.
    static let rootKeys = ["daemon", "channels", "inputs", "outputs"]
    /// Keys of `[daemon]`.
    static let daemonKeys = [
        "metrics_listen", "allow_remote", "drain_timeout", "state_dir", "log_level", "create_dirs", "hostname",
    ]
    /// Keys of `[channels.<name>]`.
    static let channelKeys = ["subbuf_size", "subbufs", "mode", "block_timeout", "switch_interval"]
    /// Keys of an input's `tag` table.
    static let tagKeys = ["input_name", "peer", "received_at"]
    /// Keys valid for every input type.
    static let inputCommonKeys = ["name", "type", "max_frame", "tag"]
    /// Additional keys per input type.
    static let inputTypeKeys: [InputType: [String]] = [
        .stdin: ["framing", "nul_delimiter"],
        .tcp: ["listen", "allow_remote", "max_connections", "framing", "nul_delimiter"],
        .unixStream: ["path", "socket_mode", "max_connections", "framing", "nul_delimiter"],
        .unixDatagram: ["path", "socket_mode"],
    ]
    /// Keys valid for every output type.
    static let outputCommonKeys = ["name", "type", "inputs", "format", "channel", "sd_id"]
    /// Additional keys per output type.
    static let outputTypeKeys: [OutputType: [String]] = [
        .file: ["path", "rotate_size", "rotate_count", "rotate_age", "fsync", "writeback", "odirect", "file_mode"],
        .tcp: ["target", "framing", "reconnect_backoff", "connect_timeout"],
    ]

    /// `type` of an input.
    enum InputType: String, CaseIterable {
        case stdin
        case tcp
        case unixStream = "unix_stream"
        case unixDatagram = "unix_dgram"
    }

    /// `type` of an output.
    enum OutputType: String, CaseIterable {
        case file
        case tcp
    }

    /// Decodes the whole document; `nil` only when the root is unusable. Check ``errors`` afterwards.
    mutating func decodeConfig(_ root: ConfigValue) -> RelaydConfig? {
        guard case .table(let entries) = root else {
            self.report("", "the document is not a TOML table")
            return nil
        }
        let rootTable = ConfigTable(path: "", entries: entries)
        self.rejectUnknownKeys(in: rootTable, allowed: Self.rootKeys)

        let daemon = self.decodeDaemon(self.table(rootTable, "daemon", example: "a [daemon] section"))
        var channels: [String: ChannelConfig] = [
            ChannelConfig.defaultName: ChannelConfig(name: ChannelConfig.defaultName)
        ]
        if let channelsTable = self.table(rootTable, "channels", example: "[channels.default] sections") {
            for (name, value) in channelsTable.entries {
                let path = channelsTable.path(name)
                guard case .table(let channelEntries) = value else {
                    let fix =
                        Self.channelKeys.contains(name)
                        ? "put \(name) in a [channels.default] section (or [channels.<name>])"
                        : "channel geometry goes in a [channels.\(name)] section"
                    self.report(path, "expected a table, found \(value.typeName); \(fix)")
                    continue
                }
                if !Self.isValidName(name) {
                    self.report(path, Self.nameRules("channel name \"\(name)\""))
                }
                channels[name] = self.decodeChannel(name: name, ConfigTable(path: path, entries: channelEntries))
            }
        }
        let inputTables = self.arrayOfTables(rootTable, "inputs")
        let outputTables = self.arrayOfTables(rootTable, "outputs")
        // Absent, or written as an empty array (`inputs = []`, e.g. from a template with nothing to fill in): a
        // relayd without inputs or outputs would run and never ship anything.
        func isMissing(_ value: ConfigValue?) -> Bool {
            guard let value else { return true }
            if case .array(let elements) = value { return elements.isEmpty }
            return false
        }
        if isMissing(rootTable["inputs"]) {
            self.report(
                "inputs",
                "no [[inputs]] section; add at least one input (relayd --print-default-config shows examples)"
            )
        }
        if isMissing(rootTable["outputs"]) {
            self.report(
                "outputs",
                "no [[outputs]] section; add at least one output (relayd --print-default-config shows examples)"
            )
        }
        var inputs: [InputConfig] = []
        for table in inputTables {
            if let input = self.decodeInput(table) {
                inputs.append(input)
                self.inputPaths.append(table.path)
            }
        }
        let allInputNames = inputTables.compactMap { table -> String? in
            if case .string(let name) = table["name"] { return name }
            return nil
        }
        var outputs: [OutputConfig] = []
        for table in outputTables {
            if let output = self.decodeOutput(table, allInputNames: allInputNames) {
                outputs.append(output)
                self.outputPaths.append(table.path)
            } else if case .array(let listed)? = table["inputs"] {
                // Rejected (its problems are reported at the output): the inputs it lists are routed, not "not
                // routed to any output".
                for case .string(let name) in listed { self.inputsOfRejectedOutputs.insert(name) }
            } else {
                self.inputsOfRejectedOutputs.formUnion(allInputNames)
            }
        }
        return RelaydConfig(daemon: daemon, channels: channels, inputs: inputs, outputs: outputs)
    }

    /// Decodes `[daemon]` (defaults when absent).
    mutating func decodeDaemon(_ table: ConfigTable?) -> DaemonConfig {
        var daemon = DaemonConfig.defaults
        guard let table else { return daemon }
        self.rejectUnknownKeys(in: table, allowed: Self.daemonKeys)
        if let text = self.string(table, "metrics_listen") {
            if text.isEmpty {
                daemon.metricsListen = nil
            } else {
                do {
                    daemon.metricsListen = try ListenAddress.parse(text)
                } catch {
                    self.report(table.path("metrics_listen"), error.message + " (or \"\" to disable metrics)")
                }
            }
        }
        daemon.allowRemote = self.bool(table, "allow_remote") ?? daemon.allowRemote
        if let drain = self.duration(table, "drain_timeout") {
            if drain < .milliseconds(1) || drain > .seconds(3600) {
                self.report(
                    table.path("drain_timeout"),
                    "\(DurationParsing.format(drain)) is out of range; use 1ms...1h, e.g. \"10s\""
                )
            } else {
                daemon.drainTimeout = drain
            }
        }
        if let stateDir = self.string(table, "state_dir") {
            if stateDir.isEmpty {
                self.report(table.path("state_dir"), "empty path; write e.g. state_dir = \"/var/lib/relayd\"")
            } else {
                daemon.stateDirectory = stateDir
            }
        }
        daemon.logLevel = self.choice(table, "log_level", as: LogLevel.self) ?? daemon.logLevel
        daemon.createDirectories = self.bool(table, "create_dirs") ?? daemon.createDirectories
        if let hostname = self.string(table, "hostname") {
            if hostname.isEmpty || hostname.utf8.count > 255 || !hostname.utf8.allSatisfy({ $0 >= 33 && $0 <= 126 }) {
                self.report(
                    table.path("hostname"),
                    "\"\(hostname)\" is not a valid syslog HOSTNAME (1-255 printable ASCII characters, no spaces); "
                        + "remove the key to use the system host name"
                )
            } else {
                daemon.hostname = hostname
            }
        }
        return daemon
    }

    /// Decodes one `[channels.<name>]` table.
    mutating func decodeChannel(name: String, _ table: ConfigTable) -> ChannelConfig {
        var channel = ChannelConfig(name: name)
        self.rejectUnknownKeys(in: table, allowed: Self.channelKeys)
        if let size = self.size(table, "subbuf_size") {
            if size < 4096 || size & (size - 1) != 0 || size > 1 << 30 {
                self.report(
                    table.path("subbuf_size"),
                    "\(ByteSize.format(size)) is not a power of two between 4KiB and 1GiB; use e.g. \"64KiB\" or \"1MiB\""
                )
            } else {
                channel.subbufferSize = size
            }
        }
        if let count = self.integer(table, "subbufs", in: Int.min...Int.max) {
            if count < 2 {
                self.report(
                    table.path("subbufs"),
                    "\(count) is too few; a channel needs at least 2 sub-buffers (one filling while another ships), e.g. subbufs = 8"
                )
            } else if count > 65536 || count & (count - 1) != 0 {
                var suggestion = 2
                while suggestion < min(count, 65536) { suggestion <<= 1 }
                self.report(
                    table.path("subbufs"),
                    "\(count) is not a power of two between 2 and 65536 (the engine maps positions to sub-buffers with a mask); "
                        + "use e.g. subbufs = \(suggestion)"
                )
            } else {
                channel.subbufferCount = count
            }
        }
        if channel.subbufferSize * channel.subbufferCount > 1 << 30 {
            self.report(
                table.path("subbufs"),
                "subbuf_size × subbufs = \(ByteSize.format(channel.subbufferSize * channel.subbufferCount)) exceeds 1GiB per channel buffer "
                    + "(the io_uring fixed-buffer limit); use fewer or smaller sub-buffers"
            )
        }
        channel.mode = self.choice(table, "mode", as: OverflowMode.self) ?? channel.mode
        if let timeout = self.duration(table, "block_timeout") {
            if timeout < .zero || timeout > .seconds(60) {
                self.report(
                    table.path("block_timeout"),
                    "\(DurationParsing.format(timeout)) is out of range; use 0s...60s"
                )
            } else {
                channel.blockTimeout = timeout
            }
            if table.contains("mode"), channel.mode != .block {
                self.report(
                    table.path("block_timeout"),
                    "only applies to mode = \"block\"; remove it or set mode = \"block\""
                )
            }
        }
        if let interval = self.duration(table, "switch_interval") {
            if interval < .milliseconds(1) || interval > .seconds(60) {
                self.report(
                    table.path("switch_interval"),
                    "\(DurationParsing.format(interval)) is out of range; use 1ms...60s (it bounds how long a record waits in a partly filled sub-buffer)"
                )
            } else {
                channel.switchInterval = interval
            }
        }
        return channel
    }

    /// Decodes one `[[inputs]]` table; `nil` when it is unusable (errors recorded).
    mutating func decodeInput(_ table: ConfigTable) -> InputConfig? {
        let name = self.decodeName(table, what: "input")
        guard let type = self.decodeType(table, as: InputType.self, example: "type = \"tcp\"") else {
            let all = Self.inputCommonKeys + Self.inputTypeKeys.values.flatMap { $0 }
            self.rejectUnknownKeys(in: table, allowed: Array(Set(all)).sorted())
            return nil
        }
        let typeKeys = Self.inputTypeKeys[type] ?? []
        var elsewhere: [String: String] = [:]
        for (otherType, keys) in Self.inputTypeKeys where otherType != type {
            for key in keys where !typeKeys.contains(key) {
                let owners = Self.inputTypeKeys.filter { $0.value.contains(key) }.map { "\"\($0.key.rawValue)\"" }
                    .sorted()
                elsewhere[key] =
                    "\"\(key)\" applies to type = \(owners.joined(separator: " or ")) inputs, not \"\(type.rawValue)\""
            }
        }
        self.rejectUnknownKeys(in: table, allowed: Self.inputCommonKeys + typeKeys, elsewhere: elsewhere)

        var maxFrame = 64 * 1024
        if let size = self.size(table, "max_frame") {
            if size < 480 || size > 64 << 20 {
                self.report(
                    table.path("max_frame"),
                    "\(ByteSize.format(size)) is out of range; use 480B...64MiB (RFC 5424 receivers must accept 480 octets), e.g. \"64KiB\""
                )
            } else {
                maxFrame = size
            }
        }
        var tags = TagOptions()
        if let tagTable = self.table(
            table,
            "tag",
            example: "tag = { input_name = true, peer = true, received_at = true }"
        ) {
            self.rejectUnknownKeys(in: tagTable, allowed: Self.tagKeys)
            tags.inputName = self.bool(tagTable, "input_name") ?? tags.inputName
            tags.peer = self.bool(tagTable, "peer") ?? tags.peer
            tags.receivedAt = self.bool(tagTable, "received_at") ?? tags.receivedAt
        }
        let framing = self.choice(table, "framing", as: InputFraming.self) ?? (type == .tcp ? .auto : .lf)
        let nulDelimiter = self.bool(table, "nul_delimiter") ?? (type == .unixStream)
        let allowRemote = self.bool(table, "allow_remote") ?? false
        let maxConnections = self.integer(table, "max_connections", in: 1...65535) ?? 256

        let kind: InputConfig.Kind
        switch type {
        case .stdin:
            kind = .stdin
        case .tcp:
            guard let text = self.required(table, "listen", example: "listen = \"127.0.0.1:5140\"") else { return nil }
            let listen: ListenAddress
            do {
                listen = try ListenAddress.parse(text)
            } catch {
                self.report(table.path("listen"), error.message)
                return nil
            }
            kind = .tcp(listen: listen, maxConnections: maxConnections)
        case .unixStream, .unixDatagram:
            guard let path = self.required(table, "path", example: "path = \"/run/relayd/log.sock\"") else {
                return nil
            }
            if path.isEmpty {
                self.report(table.path("path"), "empty path; write e.g. path = \"/run/relayd/log.sock\"")
                return nil
            }
            if path.utf8.count > 107 {
                self.report(
                    table.path("path"),
                    "\(path.utf8.count) bytes is longer than a Unix socket path can be (107); choose a shorter path"
                )
            }
            let mode = self.fileMode(table, "socket_mode") ?? 0o660
            kind =
                type == .unixStream
                ? .unixStream(path: path, socketMode: mode, maxConnections: maxConnections)
                : .unixDatagram(path: path, socketMode: mode)
        }
        guard let name else { return nil }
        return InputConfig(
            name: name,
            kind: kind,
            maxFrame: maxFrame,
            framing: framing,
            nulDelimiter: nulDelimiter,
            tags: tags,
            allowRemote: allowRemote
        )
    }

    /// Decodes one `[[outputs]]` table; `nil` when it is unusable (errors recorded).
    mutating func decodeOutput(_ table: ConfigTable, allInputNames: [String]) -> OutputConfig? {
        let name = self.decodeName(table, what: "output")
        guard let type = self.decodeType(table, as: OutputType.self, example: "type = \"file\"") else {
            let all = Self.outputCommonKeys + Self.outputTypeKeys.values.flatMap { $0 }
            self.rejectUnknownKeys(in: table, allowed: Array(Set(all)).sorted())
            return nil
        }
        let typeKeys = Self.outputTypeKeys[type] ?? []
        var elsewhere: [String: String] = [:]
        for (otherType, keys) in Self.outputTypeKeys where otherType != type {
            for key in keys where !typeKeys.contains(key) {
                elsewhere[key] =
                    "\"\(key)\" applies to type = \"\(otherType.rawValue)\" outputs, not \"\(type.rawValue)\""
            }
        }
        self.rejectUnknownKeys(in: table, allowed: Self.outputCommonKeys + typeKeys, elsewhere: elsewhere)

        var inputs = allInputNames
        if let listed = self.stringArray(table, "inputs") {
            if listed.isEmpty {
                self.report(
                    table.path("inputs"),
                    "the list is empty, so nothing reaches this output; list input names or remove the key to route every input"
                )
            }
            var seen: Set<String> = []
            for (index, inputName) in listed.enumerated() {
                let path = "\(table.path("inputs"))[\(index)]"
                if !seen.insert(inputName).inserted {
                    self.report(path, "\"\(inputName)\" is listed twice; remove the duplicate")
                } else if !allInputNames.contains(inputName) {
                    let defined = allInputNames.isEmpty ? "none" : allInputNames.joined(separator: ", ")
                    let suggestion =
                        KeySuggestion.closest(to: inputName, among: allInputNames).map { "did you mean \"\($0)\"? " }
                        ?? ""
                    self.report(path, "no input is named \"\(inputName)\"; \(suggestion)defined inputs: \(defined)")
                }
            }
            inputs = listed.filter { allInputNames.contains($0) }.reduce(into: [String]()) { result, name in
                if !result.contains(name) { result.append(name) }
            }
        }
        let format = self.choice(table, "format", as: OutputFormat.self) ?? .rfc5424
        let channel = self.string(table, "channel") ?? ChannelConfig.defaultName
        var sdID = "relayd@32473"
        if let text = self.string(table, "sd_id") {
            if Self.isValidSDID(text) {
                sdID = text
            } else {
                self.report(
                    table.path("sd_id"),
                    "\"\(text)\" is not a private SD-ID; write name@enterprise-number, e.g. \"relayd@32473\" (RFC 5424 §7.2.2: "
                        + "1-32 printable ASCII characters without '=', ']', '\"' or space)"
                )
            }
            if format != .rfc5424 {
                self.report(table.path("sd_id"), "only applies to format = \"rfc5424\"; remove it")
            }
        }

        let kind: OutputConfig.Kind
        switch type {
        case .file:
            guard let path = self.required(table, "path", example: "path = \"/var/log/relayd/relayd.log\"") else {
                return nil
            }
            if path.isEmpty || path.hasSuffix("/") {
                self.report(
                    table.path("path"),
                    "\"\(path)\" is not a file path; write e.g. path = \"/var/log/relayd/relayd.log\""
                )
                return nil
            }
            let rotateSize = self.size(table, "rotate_size") ?? 64 << 20
            let rotateCount = self.integer(table, "rotate_count", in: 0...1000) ?? 8
            let rotateAge = self.duration(table, "rotate_age")
            if let rotateAge, rotateAge < .seconds(1) {
                self.report(
                    table.path("rotate_age"),
                    "\(DurationParsing.format(rotateAge)) is too short; use at least \"1s\" (e.g. \"1d\")"
                )
            }
            var fsync = FsyncPolicy.none
            if let text = self.string(table, "fsync") {
                do {
                    fsync = try Self.parseFsync(text)
                } catch {
                    self.report(table.path("fsync"), error.message)
                }
            }
            let writeback = self.writeback(table, "writeback") ?? .default
            let odirect = self.bool(table, "odirect") ?? false
            let fileMode = self.fileMode(table, "file_mode") ?? 0o640
            kind = .file(
                FileOutputConfig(
                    path: path,
                    rotateSize: rotateSize,
                    rotateCount: rotateCount,
                    rotateAge: rotateAge,
                    fsync: fsync,
                    writeback: writeback,
                    odirect: odirect,
                    fileMode: fileMode
                )
            )
        case .tcp:
            guard let text = self.required(table, "target", example: "target = \"127.0.0.1:514\"") else { return nil }
            let target: HostPort
            do {
                target = try HostPort.parse(text)
            } catch {
                self.report(table.path("target"), error.message)
                return nil
            }
            let framing =
                self.choice(table, "framing", as: OutputFraming.self) ?? (format == .jsonl ? .lf : .octetCounting)
            var backoff: ClosedRange<Duration> = .milliseconds(100)...(.seconds(5))
            if let text = self.string(table, "reconnect_backoff") {
                do {
                    backoff = try Self.parseBackoff(text)
                } catch {
                    self.report(table.path("reconnect_backoff"), error.message)
                }
            }
            var connectTimeout: Duration = .seconds(5)
            if let timeout = self.duration(table, "connect_timeout") {
                if timeout < .milliseconds(1) || timeout > .seconds(300) {
                    self.report(
                        table.path("connect_timeout"),
                        "\(DurationParsing.format(timeout)) is out of range; use 1ms...300s"
                    )
                } else {
                    connectTimeout = timeout
                }
            }
            kind = .tcp(
                TCPOutputConfig(
                    target: target,
                    framing: framing,
                    reconnectBackoff: backoff,
                    connectTimeout: connectTimeout
                )
            )
        }
        guard let name else { return nil }
        return OutputConfig(name: name, inputs: inputs, format: format, channel: channel, sdID: sdID, kind: kind)
    }

    // MARK: Helpers

    /// A required string key; reports it as missing.
    mutating func required(_ table: ConfigTable, _ key: String, example: String) -> String? {
        guard table.contains(key) else {
            self.report(table.path(key), "missing; add \(example)")
            return nil
        }
        return self.string(table, key)
    }

    /// The required `name` key, checked against the naming rules.
    mutating func decodeName(_ table: ConfigTable, what: String) -> String? {
        guard let name = self.required(table, "name", example: "name = \"my-\(what)\"") else { return nil }
        guard Self.isValidName(name) else {
            self.report(table.path("name"), Self.nameRules("\"\(name)\""))
            return nil
        }
        return name
    }

    /// The required `type` key.
    mutating func decodeType<E: RawRepresentable & CaseIterable>(
        _ table: ConfigTable,
        as type: E.Type,
        example: String
    ) -> E?
    where E.RawValue == String {
        guard table.contains("type") else {
            let valid = E.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            self.report(table.path("type"), "missing; add \(example) (one of \(valid))")
            return nil
        }
        return self.choice(table, "type", as: type)
    }

    /// An octal permission mode: a string such as `"0660"` or a TOML octal integer such as `0o660` (which the reader
    /// passes on as the text `"0o660"`). A decimal integer (`440`, which is 0o670) is rejected: it is almost always
    /// an octal mode written without the quotes or the `0o`.
    mutating func fileMode(_ table: ConfigTable, _ key: String) -> UInt32? {
        guard let value = table[key] else { return nil }
        switch value {
        case .integer(let mode) where mode == 0:
            return 0
        case .integer(let mode):
            let digits = String(mode)
            let fix =
                mode > 0 && digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }) && digits.count <= 4
                ? "write \(key) = \"0\(digits)\" (or 0o\(digits))"
                : "write an octal string such as \(key) = \"0660\""
            self.report(
                table.path(key),
                "\(mode) is a decimal integer, not an octal permission mode; \(fix)"
            )
            return nil
        case .string(let text):
            let octal = text.hasPrefix("0o") ? String(text.dropFirst(2)) : text
            guard !octal.isEmpty, octal.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }),
                let mode = UInt32(octal, radix: 8), mode <= 0o777
            else {
                self.report(
                    table.path(key),
                    "\"\(text)\" is not an octal permission mode; write e.g. \(key) = \"0660\""
                )
                return nil
            }
            return mode
        default:
            self.report(
                table.path(key),
                "\(value.shortDescription) is not a permission mode; write an octal string such as \(key) = \"0660\""
            )
            return nil
        }
    }

    /// Parses `fsync`: `"none"`, an interval or a byte count.
    static func parseFsync(_ text: String) throws(ConfigIssue) -> FsyncPolicy {
        if text == "none" { return .none }
        let help = "use \"none\", an interval such as \"100ms\" or \"1m30s\", or a byte count such as \"64MiB\""
        guard let unitStart = text.firstIndex(where: { !$0.isASCIIDigit && $0 != "." }) else {
            throw ConfigIssue("\"\(text)\" is ambiguous; \(help)")
        }
        let unit = String(text[unitStart...]).trimmingASCIIWhitespace()
        // An interval may have several parts ("1m30s"): its first unit tells it from a byte count.
        if DurationParsing.looksLikeDuration(text) {
            let interval = try DurationParsing.parse(text)
            guard interval >= .milliseconds(1) else { throw ConfigIssue("\"\(text)\" is too short; \(help)") }
            return .interval(interval)
        }
        if ByteSize.units.contains(where: { $0.suffix == unit }) {
            let bytes = try ByteSize.parse(text)
            guard bytes >= 4096 else { throw ConfigIssue("\"\(text)\" is too small (minimum 4KiB); \(help)") }
            return .bytes(bytes)
        }
        throw ConfigIssue("\"\(text)\" is not valid; \(help)")
    }

    /// The `writeback` key of a file output: a string for ``parseWriteback(_:)``, or an integer byte count.
    mutating func writeback(_ table: ConfigTable, _ key: String) -> WritebackPolicy? {
        guard let value = table[key] else { return nil }
        do throws(ConfigIssue) {
            switch value {
            case .string(let text):
                return try Self.parseWriteback(text)
            case .integer(let bytes):
                return try Self.writebackChunk(bytes, text: String(bytes))
            default:
                throw ConfigIssue(
                    "expected a string, found \(value.typeName) \(value.shortDescription); \(Self.writebackHelp)"
                )
            }
        } catch {
            self.report(table.path(key), error.message)
            return nil
        }
    }

    /// How to write `writeback`, appended to its error messages.
    static let writebackHelp = "use \"kernel\" or a size of at least 64KiB such as \"8MiB\""

    /// Parses `writeback`: `"kernel"`, or a size (see ``ByteSize``) of at least ``WritebackPolicy/smallestChunk``.
    static func parseWriteback(_ text: String) throws(ConfigIssue) -> WritebackPolicy {
        let trimmed = text.trimmingASCIIWhitespace()
        if trimmed == "kernel" { return .kernel }
        guard trimmed.first?.isASCIIDigit == true || trimmed.hasPrefix("-") else {
            let typo = KeySuggestion.closest(to: trimmed, among: ["kernel"]).map { " (did you mean \"\($0)\"?)" } ?? ""
            throw ConfigIssue("\"\(text)\" is neither \"kernel\" nor a size\(typo); \(Self.writebackHelp)")
        }
        let bytes: Int
        do {
            bytes = try ByteSize.parse(text)
        } catch {
            throw ConfigIssue("\(error.message); \(Self.writebackHelp)")
        }
        return try Self.writebackChunk(bytes, text: "\"\(text)\"")
    }

    /// `bytes` as a writeback chunk, or why it is too small (`text` is how the value was written).
    private static func writebackChunk(_ bytes: Int, text: String) throws(ConfigIssue) -> WritebackPolicy {
        guard bytes >= WritebackPolicy.smallestChunk else {
            throw ConfigIssue(
                "\(text) is too small: each writeback request costs a system call's worth of work in the kernel; "
                    + Self.writebackHelp
            )
        }
        return .bytes(bytes)
    }

    /// Parses `reconnect_backoff = "first..max"` (a single duration means a fixed delay).
    static func parseBackoff(_ text: String) throws(ConfigIssue) -> ClosedRange<Duration> {
        let parts = text.split(separator: "..", omittingEmptySubsequences: false)
        let help = "write first..max, e.g. \"100ms..5s\""
        guard parts.count == 2 || parts.count == 1 else { throw ConfigIssue("\"\(text)\" is not a range; \(help)") }
        let low = try DurationParsing.parse(String(parts[0]))
        let high = parts.count == 2 ? try DurationParsing.parse(String(parts[1])) : low
        guard low >= .milliseconds(1) else {
            throw ConfigIssue("\"\(text)\": the first delay must be at least 1ms; \(help)")
        }
        guard low <= high else {
            throw ConfigIssue("\"\(text)\": the first delay is longer than the maximum; \(help)")
        }
        guard high <= .seconds(3600) else {
            throw ConfigIssue("\"\(text)\": the maximum delay must be at most 1h; \(help)")
        }
        return low...high
    }

    /// Input, output and channel names: 1-48 of `A-Z a-z 0-9 . _ -`.
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 48
            && name.utf8.allSatisfy { byte in
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                    || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                    || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
                    || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
            }
    }

    /// The message for an invalid name.
    static func nameRules(_ subject: String) -> String {
        "\(subject) is not a valid name; use 1-48 characters from A-Z a-z 0-9 . _ - (names appear in metric labels and tags)"
    }

    /// A private SD-ID: `name@digits` (RFC 5424 §7.2.2), 1-32 printable characters without `=`, `]`, `"`.
    static func isValidSDID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= 32,
            bytes.allSatisfy({
                $0 >= 33 && $0 <= 126 && $0 != UInt8(ascii: "=") && $0 != UInt8(ascii: "]") && $0 != UInt8(ascii: "\"")
            }),
            let at = bytes.firstIndex(of: UInt8(ascii: "@")), at > 0, at < bytes.count - 1
        else { return false }
        return bytes[(at + 1)...].allSatisfy {
            $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") || $0 == UInt8(ascii: ".")
        }
    }
}
