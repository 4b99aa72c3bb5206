internal import CRelayLinux

/// Copies record bytes into a reservation.
enum RecordCopy {
    /// Copies `count` bytes from `source` to `destination` (the ranges do not overlap).
    /// Records of up to 128 bytes are copied inline, without a call into libc.
    @inline(__always)
    static func copy(_ destination: UnsafeMutableRawPointer, from source: UnsafeRawPointer, count: Int) {
        CRelayLinux_copy_record(destination, source, count)
    }
}
