/// An error from the relay engine, with a message that says how to fix it.
///
/// Follows the swift-nio `FileSystemError` shape: a stable ``Code`` to switch on, a
/// human ``message``, and the `errno` of the failing system call when there is one.
public struct RelayError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, as a value that can be compared and switched over.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Wrapped: Sendable, Hashable {
            case invalidConfiguration, mappingFailed, notIdle, closed, exclusiveUnavailable, invalidArgument
        }
        fileprivate let wrapped: Wrapped

        /// The channel configuration is invalid (sizes, counts, names).
        public static let invalidConfiguration = Code(wrapped: .invalidConfiguration)
        /// Mapping or creating buffer memory failed.
        public static let mappingFailed = Code(wrapped: .mappingFailed)
        /// `reset()` was called while a writer still had uncommitted data.
        public static let notIdle = Code(wrapped: .notIdle)
        /// The channel is closed.
        public static let closed = Code(wrapped: .closed)
        /// An exclusive writer could not be created for that buffer.
        public static let exclusiveUnavailable = Code(wrapped: .exclusiveUnavailable)
        /// An argument is out of range.
        public static let invalidArgument = Code(wrapped: .invalidArgument)

        public var description: String { String(describing: self.wrapped) }
    }

    /// What went wrong.
    public var code: Code
    /// What happened and how to fix it.
    public var message: String
    /// The `errno` of the failing system call, if any.
    public var errno: Int32?

    /// Creates an error.
    public init(code: Code, message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        if let errno = self.errno {
            return "\(self.message) (errno \(errno))"
        }
        return self.message
    }
}
