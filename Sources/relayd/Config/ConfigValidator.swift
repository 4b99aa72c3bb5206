/// Cross-reference, geometry, address and file-system checks on a decoded configuration.
///
/// Runs after ``ConfigDecoder`` (also when it rejected some keys, which then hold their defaults); reports problems
/// whose fix involves more than one key or the machine.
struct ConfigValidator {
    /// The decoded configuration.
    let config: RelaydConfig
    /// Validation options.
    let options: ValidationOptions
    /// Problems found.
    var errors: [ConfigError] = []

    /// Key path of each input (differs from the array index when an earlier entry failed to decode).
    let inputPaths: [String]
    /// Key path of each output.
    let outputPaths: [String]
    /// Inputs routed to outputs the decoder rejected: not reported as unrouted on top of the output's own error.
    let inputsOfRejectedOutputs: Set<String>

    /// Creates a validator; `inputPaths`/`outputPaths` give each entry's key path when they differ from its index.
    init(
        config: RelaydConfig,
        inputPaths: [String]? = nil,
        outputPaths: [String]? = nil,
        inputsOfRejectedOutputs: Set<String> = [],
        options: ValidationOptions
    ) {
        self.config = config
        self.inputPaths = inputPaths ?? config.inputs.indices.map { "inputs[\($0)]" }
        self.outputPaths = outputPaths ?? config.outputs.indices.map { "outputs[\($0)]" }
        self.inputsOfRejectedOutputs = inputsOfRejectedOutputs
        self.options = options
    }

    /// Records an error.
    mutating func report(_ keyPath: String, _ message: String) {
        self.errors.append(ConfigError(keyPath: keyPath, message: message))
    }

    /// Runs every check.
    mutating func run() {
        self.checkNames()
        self.checkRouting()
        self.checkGeometry()
        self.checkListeners()
        self.checkConnectionSlots()
        self.checkPaths()
        if self.options.checkFileSystem {
            self.checkFileSystem()
        }
    }

    /// Names are unique; at most one stdin input.
    mutating func checkNames() {
        var inputIndex: [String: Int] = [:]
        for (index, input) in self.config.inputs.enumerated() {
            if let first = inputIndex[input.name] {
                self.report(
                    "\(self.inputPaths[index]).name",
                    "\"\(input.name)\" is already used by \(self.inputPaths[first]); input names must be unique"
                )
            } else {
                inputIndex[input.name] = index
            }
        }
        var outputIndex: [String: Int] = [:]
        for (index, output) in self.config.outputs.enumerated() {
            if let first = outputIndex[output.name] {
                self.report(
                    "\(self.outputPaths[index]).name",
                    "\"\(output.name)\" is already used by \(self.outputPaths[first]); output names must be unique"
                )
            } else {
                outputIndex[output.name] = index
            }
        }
        let stdinInputs = self.config.inputs.indices.filter { self.config.inputs[$0].kind == .stdin }
        for index in stdinInputs.dropFirst() {
            self.report(
                "\(self.inputPaths[index]).type",
                "a second \"stdin\" input; relayd has one standard input, remove this one"
            )
        }
    }

    /// Output channels exist; every input reaches an output.
    mutating func checkRouting() {
        for (index, output) in self.config.outputs.enumerated() where self.config.channels[output.channel] == nil {
            let defined = self.config.channels.keys.sorted().joined(separator: ", ")
            let suggestion =
                KeySuggestion.closest(to: output.channel, among: Array(self.config.channels.keys)).map {
                    "did you mean \"\($0)\"? "
                } ?? ""
            self.report(
                "\(self.outputPaths[index]).channel",
                "no [channels.\(output.channel)] section; \(suggestion)define it or use one of: \(defined)"
            )
        }
        for (index, input) in self.config.inputs.enumerated()
        where self.config.outputs(consuming: input.name).isEmpty && !self.inputsOfRejectedOutputs.contains(input.name) {
            self.report(
                "\(self.inputPaths[index])",
                "input \"\(input.name)\" is not routed to any output, so its records would be dropped; "
                    + "add \"\(input.name)\" to an output's inputs list or remove the input"
            )
        }
    }

    /// `max_frame` fits the channels it is routed to; rotation sizes are sane.
    mutating func checkGeometry() {
        for (index, input) in self.config.inputs.enumerated() {
            for output in self.config.outputs(consuming: input.name) {
                guard let channel = self.config.channels[output.channel] else { continue }
                if input.maxFrame > channel.payloadCapacity {
                    self.report(
                        "\(self.inputPaths[index]).max_frame",
                        "\(ByteSize.format(input.maxFrame)) does not fit in a sub-buffer of channel \"\(channel.name)\" used by "
                            + "output \"\(output.name)\" (payload \(channel.payloadCapacity) bytes); lower max_frame or raise "
                            + "channels.\(channel.name).subbuf_size"
                    )
                }
            }
        }
        for (index, output) in self.config.outputs.enumerated() {
            guard case .file(let file) = output.kind, let channel = self.config.channels[output.channel] else {
                continue
            }
            if file.rotateSize != 0, file.rotateSize < channel.subbufferSize {
                self.report(
                    "\(self.outputPaths[index]).rotate_size",
                    "\(ByteSize.format(file.rotateSize)) is smaller than one sub-buffer of channel \"\(channel.name)\" "
                        + "(\(ByteSize.format(channel.subbufferSize))); use at least \(ByteSize.format(channel.subbufferSize)) or 0 to disable size rotation"
                )
            }
            if file.odirect {
                self.report(
                    "\(self.outputPaths[index]).odirect",
                    "O_DIRECT needs whole, block-aligned sub-buffers with their headers (the shipper's packets format), which "
                        + "is not a plain log file; set odirect = false"
                )
            }
            if file.rotateCount == 0, file.rotateSize != 0 || file.rotateAge != nil {
                self.report(
                    "\(self.outputPaths[index]).rotate_count",
                    "0 keeps no rotated files, so rotation would delete data; keep at least 1, or disable rotation "
                        + "(rotate_size = 0, no rotate_age) and use logrotate"
                )
            }
        }
    }

    /// Listeners are loopback unless allowed; no two listeners share a port.
    mutating func checkListeners() {
        // Input listeners on IPv6 are IPv6-only (IPV6_V6ONLY); the metrics listener is not.
        var listeners: [(path: String, address: ListenAddress, v6Only: Bool)] = []
        if let metrics = self.config.daemon.metricsListen {
            if let problem = Self.remoteProblem(metrics), !self.config.daemon.allowRemote {
                self.report(
                    "daemon.metrics_listen",
                    "\"\(metrics)\" \(problem); relayd only listens on loopback unless allow_remote = true is set in [daemon]"
                )
            }
            listeners.append(("daemon.metrics_listen", metrics, false))
        }
        for (index, input) in self.config.inputs.enumerated() {
            guard case .tcp(let listen, _) = input.kind else { continue }
            if let problem = Self.remoteProblem(listen), !input.allowRemote {
                self.report(
                    "\(self.inputPaths[index]).listen",
                    "\"\(listen)\" \(problem); relayd only listens on loopback unless allow_remote = true is set"
                )
            }
            listeners.append(("\(self.inputPaths[index]).listen", listen, true))
        }
        for (later, current) in listeners.enumerated() {
            for earlier in listeners[..<later]
            where Self.conflict(earlier.address, current.address, v6Only: (earlier.v6Only, current.v6Only)) {
                self.report(
                    current.path,
                    "\"\(current.address)\" conflicts with \(earlier.path) (\"\(earlier.address)\"); choose another port"
                )
                break
            }
        }
    }

    /// The input ring's connection slots, shared by every stream input (`max_connections` each) and stdin (one),
    /// are addressed with 16 bits; a configuration that needs more would see connections of the later inputs refused
    /// as "max_connections reached" below their own limit.
    mutating func checkConnectionSlots() {
        let limit = Int(UInt16.max)
        var total = 0
        for (index, input) in self.config.inputs.enumerated() {
            let slots: Int
            switch input.kind {
            case .tcp(_, let maxConnections), .unixStream(_, _, let maxConnections): slots = maxConnections
            case .stdin: slots = 1
            case .unixDatagram: slots = 0
            }
            total += slots
            if slots > 0, total > limit {
                self.report(
                    "\(self.inputPaths[index]).max_connections",
                    "the stream inputs' max_connections (and stdin's one connection) add up to \(total) so far, more than "
                        + "the \(limit) connections relayd can hold; lower max_connections so that they add up to at most \(limit)"
                )
                return
            }
        }
    }

    /// Why a listener is not local, or `nil` for loopback.
    static func remoteProblem(_ address: ListenAddress) -> String? {
        if address.isUnspecified { return "binds all interfaces" }
        if !address.isLoopback { return "is not a loopback address" }
        return nil
    }

    /// Whether two listeners would collide (same port on the same or a wildcard address).
    ///
    /// - Parameter v6Only: Whether each socket, when IPv6, is IPv6-only (`IPV6_V6ONLY`); an IPv6 wildcard that is
    ///   not also takes the port on every IPv4 address.
    static func conflict(_ a: ListenAddress, _ b: ListenAddress, v6Only: (Bool, Bool) = (true, true)) -> Bool {
        guard a.port == b.port, a.port != 0 else { return false }
        if a.family != b.family {
            return (a.family == .ipv6 && a.isUnspecified && !v6Only.0) || (b.family == .ipv6 && b.isUnspecified && !v6Only.1)
        }
        if a.isUnspecified || b.isUnspecified { return true }
        return a.addressBytes == b.addressBytes
    }

    /// No two sockets/files share a path.
    mutating func checkPaths() {
        var claimed: [String: String] = [:]
        func claim(_ path: String, by keyPath: String, into errors: inout [ConfigError]) {
            let normalized = Self.normalize(path)
            if let owner = claimed[normalized] {
                errors.append(
                    ConfigError(
                        keyPath: keyPath,
                        message: "\"\(path)\" is already used by \(owner); choose another path"
                    )
                )
            } else {
                claimed[normalized] = keyPath
            }
        }
        for (index, input) in self.config.inputs.enumerated() {
            if let path = input.kind.socketPath {
                claim(path, by: "\(self.inputPaths[index]).path", into: &self.errors)
            }
        }
        for (index, output) in self.config.outputs.enumerated() {
            if case .file(let file) = output.kind {
                claim(file.path, by: "\(self.outputPaths[index]).path", into: &self.errors)
            }
        }
        // Built-in rotation renames `path` to `path.1` … `path.N` over whatever is there.
        for (index, output) in self.config.outputs.enumerated() {
            guard case .file(let file) = output.kind, file.rotateSize != 0 || file.rotateAge != nil else { continue }
            for generation in 1...max(file.rotateCount, 1) {
                let rotated = "\(file.path).\(generation)"
                guard let owner = claimed[Self.normalize(rotated)] else { continue }
                self.report(
                    owner,
                    "\"\(rotated)\" is a rotated file of \(self.outputPaths[index]) (\"\(file.path)\"), which rotation "
                        + "would replace; choose another path"
                )
            }
        }
    }

    /// `path` without `.` components and repeated slashes, for duplicate detection.
    static func normalize(_ path: String) -> String {
        var components: [Substring] = []
        for component in path.split(separator: "/", omittingEmptySubsequences: true) where component != "." {
            components.append(component)
        }
        return (path.hasPrefix("/") ? "/" : "") + components.joined(separator: "/")
    }

    /// Directories exist and are writable (or can be created with `create_dirs`).
    mutating func checkFileSystem() {
        let create = self.config.daemon.createDirectories
        self.checkDirectory(self.config.daemon.stateDirectory, keyPath: "daemon.state_dir", create: create)
        for (index, input) in self.config.inputs.enumerated() {
            if let path = input.kind.socketPath {
                self.checkDirectory(
                    FileReading.parentDirectory(of: path),
                    keyPath: "\(self.inputPaths[index]).path",
                    create: create
                )
            }
        }
        for (index, output) in self.config.outputs.enumerated() {
            guard case .file(let file) = output.kind else { continue }
            let keyPath = "\(self.outputPaths[index]).path"
            if case .directory = FileReading.entry(at: self.rooted(file.path)) {
                self.report(
                    keyPath,
                    "\(file.path) is a directory; give a file name inside it, e.g. \(file.path)/relayd.log"
                )
                continue
            }
            self.checkDirectory(FileReading.parentDirectory(of: file.path), keyPath: keyPath, create: create)
        }
    }

    /// Checks that `directory` exists and is writable, or (with `create_dirs`) that its nearest existing
    /// ancestor is a writable directory.
    mutating func checkDirectory(_ directory: String, keyPath: String, create: Bool) {
        switch FileReading.entry(at: self.rooted(directory)) {
        case .directory(writable: true):
            return
        case .directory(writable: false):
            self.report(
                keyPath,
                "directory \(directory) is not writable by this user; fix its permissions or choose another path"
            )
        case .other:
            self.report(keyPath, "\(directory) exists but is not a directory; choose another path")
        case .missing:
            guard create else {
                let fix = "create it or choose another path (or set create_dirs = true in [daemon])"
                self.report(keyPath, "directory \(directory) does not exist; \(fix)")
                return
            }
            var ancestor = directory
            while true {
                ancestor = FileReading.parentDirectory(of: ancestor)
                switch FileReading.entry(at: self.rooted(ancestor)) {
                case .directory(writable: true):
                    return
                case .directory(writable: false):
                    self.report(
                        keyPath,
                        "directory \(directory) does not exist and create_dirs cannot create it: \(ancestor) is not writable; "
                            + "create it or choose another path"
                    )
                    return
                case .other:
                    self.report(
                        keyPath,
                        "directory \(directory) cannot be created: \(ancestor) is not a directory; choose another path"
                    )
                    return
                case .missing:
                    if ancestor == "/" || ancestor == "." { return }
                    continue
                }
            }
        }
    }

    /// Where to look for `path`: absolute paths under ``ValidationOptions/fileSystemRoot``, relative paths under
    /// ``ValidationOptions/workingDirectory``.
    func rooted(_ path: String) -> String {
        if path.hasPrefix("/") {
            return self.options.fileSystemRoot + path
        }
        guard let workingDirectory = self.options.workingDirectory else { return path }
        return workingDirectory + "/" + path
    }
}
