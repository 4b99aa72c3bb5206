import CRelayLinux

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Per-record facts that do not come from the message: where and when relayd received it.
///
/// The input owner prepares the byte strings once per connection (peer) or once per input (name, host name)
/// and stamps ``receivedAt`` per read, so building a context allocates nothing.
///
/// - Warning: The buffers are borrowed; they must stay valid while the context is used.
struct RecordContext {
    /// The input's `name`.
    var inputName: UnsafeRawBufferPointer
    /// The peer (`127.0.0.1:40000`, `[::1]:40000`, `pid=123 uid=0`), or empty when unknown.
    var peer: UnsafeRawBufferPointer
    /// When relayd read the bytes.
    var receivedAt: WallClockTimestamp
    /// HOSTNAME to write when the message has none (local host name for local inputs, peer IP for TCP).
    var fallbackHostname: UnsafeRawBufferPointer
    /// Which tags the input attaches.
    var tags: TagOptions

    /// Creates a context.
    init(
        inputName: UnsafeRawBufferPointer,
        peer: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        receivedAt: WallClockTimestamp,
        fallbackHostname: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
        tags: TagOptions = TagOptions()
    ) {
        self.inputName = inputName
        self.peer = peer
        self.receivedAt = receivedAt
        self.fallbackHostname = fallbackHostname
        self.tags = tags
    }
}

extension RecordContext {
    /// The local host name (`gethostname(2)`), cut at the first `.` like RFC 3164 senders do; `"localhost"` when
    /// unavailable. Read once at start-up and keep the bytes for ``fallbackHostname``.
    static func systemHostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let short = name.prefix(while: { $0 != "." })
        return short.isEmpty ? "localhost" : String(short)
    }
}
