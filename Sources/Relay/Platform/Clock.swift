internal import CRelayLinux

/// Wall-clock and monotonic time in nanoseconds, read through the vDSO.
///
/// Only sub-buffer switches, seals and block-mode waits read the clock: never the
/// per-record fast path.
enum Clock {
    /// CLOCK_REALTIME, nanoseconds since the Unix epoch.
    @inline(__always)
    static var realtimeNanoseconds: UInt64 { CRelayLinux_realtime_ns() }

    /// CLOCK_MONOTONIC, nanoseconds.
    @inline(__always)
    static var monotonicNanoseconds: UInt64 { CRelayLinux_monotonic_ns() }
}
