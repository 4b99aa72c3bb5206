import ArgumentParser
import Glibc

/// A user-facing relay-bench failure: one line that names the problem and says how to fix it.
///
/// Every bad input (unknown sink, unreachable host, unwritable path, impossible geometry, unreadable
/// verify file) surfaces as a `BenchError`. Commands print ``message`` to standard error and exit with
/// ``exitCode`` (2 for bad input) through ``BenchError/exitOnError(_:)`` instead of crashing or
/// printing a usage screen.
struct BenchError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The one-line message: what is wrong, then how to fix it.
    var message: String

    /// The process exit code to use; 2 means bad input.
    var exitCode: Int32

    /// Creates an error with a one-line message.
    ///
    /// - Parameters:
    ///   - message: What is wrong and how to fix it, on one line.
    ///   - exitCode: The process exit code, 2 (bad input) by default.
    init(_ message: String, exitCode: Int32 = 2) {
        self.message = message
        self.exitCode = exitCode
    }

    /// The message, as printed.
    var description: String { self.message }

    /// An error for a failed system call, carrying `strerror(errno)`.
    ///
    /// - Parameters:
    ///   - what: What was being attempted, e.g. `"cannot open 'x' for writing"`.
    ///   - errno: The `errno` value the call failed with.
    ///   - fix: How to fix it.
    static func system(_ what: String, errno code: Int32, fix: String) -> BenchError {
        BenchError("\(what): \(BenchError.describe(errno: code)); \(fix)")
    }

    /// The `strerror` text of an errno value.
    static func describe(errno code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }

    /// Runs `body`; a thrown `BenchError` is printed as `relay-bench: error: MESSAGE` on standard error
    /// and turned into `ExitCode(exitCode)`, so ArgumentParser exits quietly with that code.
    ///
    /// - Parameter body: The command logic.
    /// - Returns: What `body` returns.
    /// - Throws: `ExitCode` for a `BenchError`; any other error unchanged.
    static func exitOnError<T, Failure: Error>(_ body: () throws(Failure) -> T) throws -> T {
        do {
            return try body()
        } catch let error as BenchError {
            BenchError.printToStandardError("relay-bench: error: \(error.message)")
            throw ExitCode(error.exitCode)
        }
    }

    /// Writes one line to standard error.
    static func printToStandardError(_ line: String) {
        var text = line
        text.append("\n")
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = write(STDERR_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
    }
}
