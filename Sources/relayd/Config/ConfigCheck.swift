/// `relayd check-config FILE`: validates a file without starting anything.
enum ConfigCheck {
    /// Exit status for a valid file.
    static let exitValid: Int32 = 0
    /// Exit status for an invalid or unreadable file (the `EX_USAGE`-style "bad input" code the CLI documents).
    static let exitInvalid: Int32 = 2

    /// Validates the file at `path` and reports the result line by line.
    ///
    /// - Parameters:
    ///   - path: The configuration file.
    ///   - options: Validation options.
    ///   - report: Receives one line per problem, or a single "valid" line.
    /// - Returns: ``exitValid`` or ``exitInvalid``.
    static func run(path: String, options: ValidationOptions = ValidationOptions(), report: (String) -> Void) -> Int32 {
        do {
            let config = try RelaydConfig.load(path: path, options: options)
            report("\(path): valid (\(config.inputs.count) inputs, \(config.outputs.count) outputs)")
            return Self.exitValid
        } catch {
            for problem in error.errors {
                report("\(path): \(problem)")
            }
            return Self.exitInvalid
        }
    }
}
