#if canImport(Glibc)
import Glibc
#endif

/// The fixed-size RFC 5424 messages `relay-bench load` sends, and where their counters sit.
///
/// ```
/// <134>1 2025-11-27T16:00:00.000000Z bench-host relay-bench 4242 load - c=0003 s=000000000017 xxxxxxxx
/// ```
///
/// The header is built once; per message only the 12 sequence digits are rewritten in place.
struct LoadMessageLayout: Sendable {
    /// The smallest message that holds the header and both counters.
    static let minimumSize = 128

    /// Bytes per message (without framing).
    let size: Int
    /// Bytes per frame (with `LEN SP` or LF).
    let frameSize: Int
    /// The first frame of connection 0 with sequence 0.
    let template: [UInt8]
    /// Offset of the 4 connection digits in a frame.
    let connectionOffset: Int
    /// Offset of the 12 sequence digits in a frame.
    let sequenceOffset: Int

    /// The bytes of this process's messages with `hostname` before their padding (header, connection
    /// and sequence fields, with a 27-byte timestamp); a message must be longer.
    static func headerLength(hostname: String) -> Int {
        // "<134>1 " TIMESTAMP " " HOSTNAME " relay-bench " PID " load - c=" "0000 s=" "000000000000 "
        7 + 27 + 1 + hostname.utf8.count + 13 + String(getpid()).utf8.count + 10 + 7 + 13
    }

    /// Lays out messages of `size` bytes.
    init(size: Int, hostname: String, framing: LoadCommand.Framing) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = time_t(now.tv_sec)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let timestamp =
            "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(now.tv_nsec / 1000), 6))Z"
        let header = "<134>1 \(timestamp) \(hostname) relay-bench \(getpid()) load - c="
        var message = Array(header.utf8)
        let connectionInMessage = message.count
        message += Array("0000 s=".utf8)
        let sequenceInMessage = message.count
        message += Array("000000000000 ".utf8)
        precondition(message.count < size, "message size \(size) is too small for the header")
        assert(message.count == Self.headerLength(hostname: hostname))
        message += [UInt8](repeating: UInt8(ascii: "x"), count: size - message.count)

        var frame: [UInt8]
        let prefixLength: Int
        switch framing {
        case .octetCounting:
            frame = Array("\(size) ".utf8)
            prefixLength = frame.count
            frame += message
        case .lf:
            frame = message + [0x0A]
            prefixLength = 0
        }
        self.size = size
        self.frameSize = frame.count
        self.template = frame
        self.connectionOffset = prefixLength + connectionInMessage
        self.sequenceOffset = prefixLength + sequenceInMessage
    }

    /// Writes `value` as exactly `width` decimal digits at `pointer`.
    @inline(__always)
    static func writeDigits(_ value: Int, width: Int, at pointer: UnsafeMutableRawPointer) {
        var rest = value
        var index = width - 1
        while index >= 0 {
            pointer.storeBytes(of: UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10), toByteOffset: index, as: UInt8.self)
            rest /= 10
            index -= 1
        }
    }
}
