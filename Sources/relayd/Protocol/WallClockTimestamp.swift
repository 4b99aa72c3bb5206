import CRelayLinux

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A wall-clock instant (`CLOCK_REALTIME`), as stamped on records when they are read.
struct WallClockTimestamp: Sendable, Equatable, Comparable {
    /// Seconds since the Unix epoch.
    var seconds: Int64
    /// 0...999_999_999.
    var nanoseconds: Int32

    /// Creates a timestamp.
    init(seconds: Int64, nanoseconds: Int32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// The current time from `clock_gettime(CLOCK_REALTIME)` (vDSO, no allocation).
    static func now() -> WallClockTimestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return WallClockTimestamp(seconds: Int64(spec.tv_sec), nanoseconds: Int32(spec.tv_nsec))
    }

    /// Chronological order.
    static func < (lhs: WallClockTimestamp, rhs: WallClockTimestamp) -> Bool {
        (lhs.seconds, lhs.nanoseconds) < (rhs.seconds, rhs.nanoseconds)
    }
}
