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

    /// `duration` in nanoseconds, saturating at `Int64.max` (292 years) instead of trapping,
    /// and at 0 for negative durations.
    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (nanoseconds, carry) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        if overflow || carry { return seconds < 0 ? 0 : Int64.max }
        return max(0, nanoseconds)
    }
}
