import Glibc

/// CPU time and peak memory of the process or of the calling thread, from `getrusage(2)`.
struct ResourceUsage: Sendable, Equatable {
    /// CPU time spent in user mode, in seconds.
    var userSeconds: Double
    /// CPU time spent in the kernel, in seconds.
    var systemSeconds: Double
    /// Peak resident set size in bytes (`ru_maxrss`; process-wide even for a thread sample).
    var peakRSSBytes: UInt64

    /// User plus system CPU seconds: what the report calls `cpu_seconds`.
    var cpuSeconds: Double { self.userSeconds + self.systemSeconds }

    /// The whole process (`RUSAGE_SELF`): all threads, live and exited.
    static func process() -> ResourceUsage {
        ResourceUsage.sample(RUSAGE_SELF.rawValue)
    }

    /// The calling thread only (`RUSAGE_THREAD`), for per-producer or shipper CPU accounting.
    static func currentThread() -> ResourceUsage {
        ResourceUsage.sample(POSIXIO.rusageThread)
    }

    /// CPU used between `start` and `self` (peak RSS is taken from `self`).
    func since(_ start: ResourceUsage) -> ResourceUsage {
        ResourceUsage(
            userSeconds: self.userSeconds - start.userSeconds,
            systemSeconds: self.systemSeconds - start.systemSeconds,
            peakRSSBytes: self.peakRSSBytes
        )
    }

    /// The process's peak resident set size from `/proc/self/status` (`VmHWM`), or `nil` where it
    /// cannot be read; it can be reset with `echo 5 > /proc/self/clear_refs`, unlike `ru_maxrss`.
    static func peakRSSFromProc() -> UInt64? {
        let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { POSIXIO.closeQuietly(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { POSIXIO.readSome(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        let text = String(decoding: bytes, as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let kibibytes = UInt64(fields[1]) else { return nil }
            return kibibytes * 1024
        }
        return nil
    }

    private static func sample(_ who: Int32) -> ResourceUsage {
        var usage = rusage()
        guard getrusage(who, &usage) == 0 else {
            return ResourceUsage(userSeconds: 0, systemSeconds: 0, peakRSSBytes: 0)
        }
        return ResourceUsage(
            userSeconds: Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6,
            systemSeconds: Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6,
            peakRSSBytes: UInt64(max(0, usage.ru_maxrss)) * 1024  // Linux reports KiB
        )
    }
}

/// A monotonic nanosecond clock for hot paths (`clock_gettime(CLOCK_MONOTONIC)`, vDSO, no allocation).
enum BenchClock {
    /// Nanoseconds since an arbitrary fixed point.
    @inline(__always)
    static func nanoseconds() -> UInt64 {
        var now = timespec()
        _ = clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}
