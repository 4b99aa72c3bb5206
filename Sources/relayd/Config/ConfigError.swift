/// One problem found in a relayd configuration file.
///
/// The message names the key path (`outputs[1].path`) and says how to fix the problem, e.g.
/// `outputs[1].path: directory /var/log/relay does not exist; create it or choose another path`.
struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The dotted key path of the offending value (`daemon.drain_timeout`, `inputs[0].listen`),
    /// or the empty string for problems with the document as a whole (syntax errors, unreadable file).
    var keyPath: String
    /// What is wrong and how to fix it.
    var message: String

    /// Creates an error for `keyPath`.
    ///
    /// - Parameters:
    ///   - keyPath: The dotted key path, or `""` for the whole document.
    ///   - message: What is wrong and how to fix it.
    init(keyPath: String, message: String) {
        self.keyPath = keyPath
        self.message = message
    }

    /// `keyPath: message`, or just the message for document-level errors.
    var description: String {
        self.keyPath.isEmpty ? self.message : "\(self.keyPath): \(self.message)"
    }
}

/// All problems found in a configuration file; thrown by ``RelaydConfig/load(path:options:)``.
struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    /// The individual problems, in document order where possible.
    var errors: [ConfigError]

    /// One problem per line.
    var description: String {
        self.errors.map(\.description).joined(separator: "\n")
    }
}

/// A problem with a single value, before the decoder attaches the key path (it becomes a ``ConfigError``).
struct ConfigIssue: Error, Sendable {
    /// What is wrong and how to fix it, without the key path.
    var message: String

    /// Creates an issue.
    ///
    /// - Parameter message: What is wrong and how to fix it.
    init(_ message: String) {
        self.message = message
    }
}
