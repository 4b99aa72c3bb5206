import Foundation

/// Runs this test binary again in a child process, filtered to one suite, for tests that need
/// a fresh process (a once-per-process bootstrap), a preloaded library, or a different glibc
/// configuration. The child suite is usually enabled only when a variable in `environment`
/// is set, so it is skipped in the parent run.
public enum ChildTestProcess {
    /// Runs the tests matching `filter` with `environment` added to (or overriding) this
    /// process's environment, and waits for them.
    ///
    /// - Returns: the child's exit status and its standard output and error, interleaved.
    public static func run(filter: String, environment: [String: String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["--testing-library", "swift-testing", "--filter", filter]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }
}
