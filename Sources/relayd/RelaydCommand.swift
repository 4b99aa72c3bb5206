import ArgumentParser
import Dispatch
import Relay
import Synchronization

import CRelayLinux

#if canImport(Glibc)
import Glibc
#endif

/// `relayd`: the standalone shipper daemon.
struct RelaydCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relayd",
        abstract: "swift-relay's log shipper: syslog over TCP, Unix sockets and stdin into rotated files and TCP forwarding.",
        discussion: """
            Without arguments relayd runs its embedded default configuration: TCP syslog on 127.0.0.1:5140, \
            a datagram socket at ./relayd-data/run/log.sock, metrics on 127.0.0.1:9464, rotated files under \
            ./relayd-data/logs. Print it with --print-default-config.

            Signals: SIGHUP reopens output files; SIGTERM/SIGINT stop the inputs and drain within \
            drain_timeout, then exit 0; a second SIGTERM/SIGINT stops at once (exit 1). Exit status 2: the \
            configuration is invalid or a listener or file could not be opened.
            """,
        subcommands: [RunCommand.self, CheckConfigCommand.self],
        defaultSubcommand: RunCommand.self
    )
}

/// `relayd [run] [--config FILE] [--print-default-config]`.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the daemon (the default command)."
    )

    @Option(name: .shortAndLong, help: ArgumentHelp("The TOML configuration file (default: the embedded default).", valueName: "file"))
    var config: String?

    @Flag(name: .long, help: "Print the embedded default configuration and exit.")
    var printDefaultConfig = false

    func run() throws {
        if self.printDefaultConfig {
            print(DefaultConfig.text, terminator: "")
            return
        }
        let source = self.config ?? "embedded default configuration"
        let parsed: RelaydConfig
        do {
            if let path = self.config {
                parsed = try RelaydConfig.load(path: path)
            } else {
                parsed = try RelaydConfig.parse(DefaultConfig.text)
            }
        } catch {
            for problem in error.errors {
                RelaydDaemon.report("\(source): \(problem)")
            }
            RelaydDaemon.report("\(source): not started (\(error.errors.count) problem\(error.errors.count == 1 ? "" : "s"))")
            throw ExitCode(RelaydDaemon.exitConfiguration)
        }
        let status = Self.runDaemon(config: parsed, source: source)
        if status != 0 {
            throw ExitCode(status)
        }
    }
}

extension RunCommand {
    /// Runs the daemon on Swift's concurrency pool and blocks the main thread until it returns.
    ///
    /// - Returns: The exit status.
    static func runDaemon(config: RelaydConfig, source: String) -> Int32 {
        let status = RelayMutex<Int32>(RelaydDaemon.exitFailure)
        let done = DispatchSemaphore(value: 0)
        Task {
            let result = await RelaydDaemon.run(config: config, source: source)
            status.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return status.withLock { $0 }
    }
}

/// `relayd check-config FILE`.
struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a configuration file without starting (exit 0 when valid, 2 otherwise)."
    )

    @Argument(help: ArgumentHelp("The TOML configuration file.", valueName: "file"))
    var file: String

    func run() throws {
        var lines: [String] = []
        let status = ConfigCheck.run(path: self.file) { lines.append($0) }
        for line in lines {
            if status == ConfigCheck.exitValid {
                print(line)
            } else {
                RelaydDaemon.report(line)
            }
        }
        if status != ConfigCheck.exitValid {
            throw ExitCode(status)
        }
    }
}
