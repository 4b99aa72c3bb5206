import ArgumentParser
import Glibc

/// The `relay-bench` executable: throughput benchmarks for swift-relay with verifiable output.
///
/// Subcommands: `run` (measure swift-relay), `compare` (swift-relay beside baselines and limits
/// on the same workload), `sweep` (compare over one parameter, with a chart), `verify` (check
/// output files), `load` (a syslog load generator for relayd). Bad input of any kind ends with one line on standard error, naming the
/// problem and the fix, and exit status 2.
@main
struct RelayBench: AsyncParsableCommand {
    /// The command tree.
    static let configuration = CommandConfiguration(
        commandName: "relay-bench",
        abstract: "Benchmark swift-relay: relay channels shipped with io_uring, with verifiable output.",
        discussion: "Exit status: 0 success, 1 a verification failed, 2 bad input (one-line message on standard error).",
        subcommands: RelayBench.subcommands
    )

    /// Every subcommand.
    static var subcommands: [any ParsableCommand.Type] {
        [
            RunCommand.self,
            CompareCommand.self,
            SweepCommand.self,
            VerifyCommand.self,
            LoadCommand.self,  // Sources/relay-bench/Load/ (syslog load generator)
        ]
    }

    /// Creates the root command.
    init() {}

    /// Parses the command line, runs the subcommand and exits with its status.
    static func main() async {
        let status = await RelayBench.main(arguments: Array(CommandLine.arguments.dropFirst()))
        Glibc.exit(status)
    }

    /// Parses `arguments`, runs the subcommand and returns the exit status (testable `main`).
    static func main(arguments: [String]) async -> Int32 {
        do {
            var command = try RelayBench.parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            return 0
        } catch {
            let diagnosis = RelayBench.diagnose(error)
            if let text = diagnosis.text {
                if diagnosis.toStandardOutput {
                    print(text)
                } else {
                    BenchError.printToStandardError(text)
                }
            }
            return diagnosis.status
        }
    }

    /// What to print for an error that ended a command, and the exit status.
    struct Diagnosis: Sendable, Equatable {
        /// The text to print, if any.
        var text: String?
        /// Help and version go to standard output, errors to standard error.
        var toStandardOutput: Bool
        /// The process exit status.
        var status: Int32
    }

    /// Maps an error to its message and exit status.
    ///
    /// - `--help` / `--version`: the text on standard output, status 0.
    /// - `ExitCode` (thrown after a command printed its own message): that status, nothing printed.
    /// - ``BenchError``: `relay-bench: error: MESSAGE`, its exit code (2 for bad input).
    /// - Anything ArgumentParser rejects (unknown option, bad value, missing argument): one line,
    ///   `relay-bench: error: MESSAGE (see 'relay-bench help')`, status 2.
    static func diagnose(_ error: any Error) -> Diagnosis {
        if let exit = error as? ExitCode {
            return Diagnosis(text: nil, toStandardOutput: false, status: exit.rawValue)
        }
        if let error = error as? BenchError {
            return Diagnosis(text: "relay-bench: error: \(error.message)", toStandardOutput: false, status: error.exitCode)
        }
        let code = RelayBench.exitCode(for: error)
        if code == .success {
            // --help, --version, `help`: ArgumentParser's full text.
            return Diagnosis(text: RelayBench.fullMessage(for: error), toStandardOutput: true, status: 0)
        }
        var message = RelayBench.message(for: error)
        if let newline = message.firstIndex(of: "\n") {
            message = String(message[..<newline])
        }
        if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
        return Diagnosis(text: "relay-bench: error: \(message) (see 'relay-bench help <command>')", toStandardOutput: false, status: 2)
    }
}
