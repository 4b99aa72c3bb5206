import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// relayd's local zone's UTC offsets (`TZ`, `/etc/localtime`), for RFC 3164 timestamps, which carry local time
/// without an offset.
///
/// The offset of a BSD timestamp is the one in force at that local date and time, so records keep their right
/// offset when relayd runs across a DST change (an offset taken once at start-up would be an hour off for every
/// record until a restart). Lookups (`mktime`, `localtime_r`) are cached per 15 minutes of local time or of
/// receive time, in one atomic word each: zones change offsets at whole or half hours, and a record stream's
/// timestamps rarely leave the current quarter of an hour, so the hot path is one atomic load.
final class LocalZoneOffsets: Sendable {
    /// Last lookup by receive time: `key << 24 | (offset + 2^23)`, `key` = seconds since the epoch / 900.
    private let byInstant = Atomic<UInt64>(.max)
    /// Last lookup by local wall time: the same packing, `key` = ``wallKey(year:_:)``.
    private let byWallTime = Atomic<UInt64>(.max)

    private static let offsetBias = 1 << 23

    /// Creates an empty cache.
    init() {}

    /// The zone's offset at `seconds` since the epoch (`localtime_r`'s `tm_gmtoff`).
    ///
    /// - Parameter seconds: An instant, in seconds since the epoch.
    /// - Returns: The UTC offset in seconds.
    func offset(at seconds: Int64) -> Int {
        let key = UInt64(max(0, seconds) / 900) & 0xFF_FFFF_FFFF
        // relaxed: the word is the whole cache entry (key and offset packed together), so a
        // reader needs nothing published with it; racing stores only replace one valid entry
        // with another.
        if let cached = Self.unpack(self.byInstant.load(ordering: .relaxed), key: key) { return cached }
        let start = Int64(bitPattern: key) * 900
        let offset = RecordEncoder.localUTCOffsetSeconds(at: WallClockTimestamp(seconds: start, nanoseconds: 0))
        // relaxed: see the load above.
        self.byInstant.store(Self.pack(key: key, offset: offset), ordering: .relaxed)
        return offset
    }

    /// The zone's offset in force at the local date and time of `bsd` in `year` (`mktime` with `tm_isdst = -1`;
    /// in the repeated hour of a DST change, whichever offset `mktime` picks).
    ///
    /// - Parameters:
    ///   - year: The timestamp's year.
    ///   - bsd: The timestamp.
    /// - Returns: The UTC offset in seconds.
    func offset(localYear year: Int, _ bsd: SyslogMessage.BSDTimestamp) -> Int {
        let key = Self.wallKey(year: year, bsd)
        // relaxed: as in `offset(at:)`.
        if let cached = Self.unpack(self.byWallTime.load(ordering: .relaxed), key: key) { return cached }
        var parts = tm()
        parts.tm_year = Int32(clamping: year - 1900)
        parts.tm_mon = Int32(bsd.month - 1)
        parts.tm_mday = Int32(bsd.day)
        parts.tm_hour = Int32(bsd.hour)
        parts.tm_min = Int32(bsd.minute / 15 * 15)
        parts.tm_sec = 0
        parts.tm_isdst = -1
        let offset: Int
        if mktime(&parts) == -1 && parts.tm_gmtoff == 0 {
            offset = self.offset(at: Int64(time(nil)))
        } else {
            offset = Int(parts.tm_gmtoff)
        }
        // relaxed: as in `offset(at:)`.
        self.byWallTime.store(Self.pack(key: key, offset: offset), ordering: .relaxed)
        return offset
    }

    /// A 40-bit key for the quarter hour of a local wall time.
    private static func wallKey(year: Int, _ bsd: SyslogMessage.BSDTimestamp) -> UInt64 {
        let quarters = ((max(0, min(year, 99_999)) * 13 + bsd.month) * 32 + bsd.day) * 96 + bsd.hour * 4 + bsd.minute / 15
        return UInt64(quarters) & 0xFF_FFFF_FFFF
    }

    private static func pack(key: UInt64, offset: Int) -> UInt64 {
        (key << 24) | UInt64(max(0, min(offset + Self.offsetBias, (1 << 24) - 1)))
    }

    private static func unpack(_ word: UInt64, key: UInt64) -> Int? {
        guard word != .max, word >> 24 == key else { return nil }
        return Int(word & 0xFF_FFFF) - Self.offsetBias
    }
}
