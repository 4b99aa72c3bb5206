public import SystemPackage

/// A shipper error, with a message that says how to fix it.
public struct RelayShipperError: Error, Sendable, CustomStringConvertible {
    /// What happened and what to do.
    public var message: String
    /// The system error behind it, if any.
    public var errno: Errno?

    /// Creates an error.
    public init(message: String, errno: Errno? = nil) {
        self.message = message
        self.errno = errno
    }

    public var description: String { self.message }
}
