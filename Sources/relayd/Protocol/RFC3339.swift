import RelayLogging

/// RFC 3339 validation and allocation-free formatting.
enum RFC3339 {
    /// Whether `bytes` is an RFC 5424 TIMESTAMP: `YYYY-MM-DDTHH:MM:SS[.1-6 digits](Z|±HH:MM)`.
    ///
    /// Up to 9 fraction digits are accepted (RFC 5424 allows 6; some senders write nanoseconds).
    static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= 20 else { return false }
        func digits(_ range: Range<Int>) -> Bool {
            range.allSatisfy { bytes[$0] >= UInt8(ascii: "0") && bytes[$0] <= UInt8(ascii: "9") }
        }
        guard digits(0..<4), bytes[4] == UInt8(ascii: "-"), digits(5..<7), bytes[7] == UInt8(ascii: "-"),
            digits(8..<10),
            bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t"),
            digits(11..<13), bytes[13] == UInt8(ascii: ":"), digits(14..<16), bytes[16] == UInt8(ascii: ":"),
            digits(17..<19)
        else { return false }
        var index = 19
        if bytes[index] == UInt8(ascii: ".") {
            index += 1
            let start = index
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                index += 1
            }
            guard index > start, index - start <= 9 else { return false }
        }
        guard index < bytes.count else { return false }
        if bytes[index] == UInt8(ascii: "Z") || bytes[index] == UInt8(ascii: "z") {
            return index + 1 == bytes.count
        }
        guard bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-"), index + 6 == bytes.count else {
            return false
        }
        return digits((index + 1)..<(index + 3)) && bytes[index + 3] == UInt8(ascii: ":")
            && digits((index + 4)..<(index + 6))
    }

    /// Writes `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds; 27 bytes).
    static func writeUTC<Sink: ByteSink>(_ timestamp: WallClockTimestamp, into sink: inout Sink) {
        let t = CivilTime(nanosecondsSinceEpoch: timestamp.seconds * 1_000_000_000 + Int64(timestamp.nanoseconds))
        Self.writeDate(year: Int(t.year), month: Int(t.month), day: Int(t.day), into: &sink)
        sink.append(UInt8(ascii: "T"))
        Self.writeTime(hour: Int(t.hour), minute: Int(t.minute), second: Int(t.second), into: &sink)
        sink.append(UInt8(ascii: "."))
        sink.appendZeroPadded(Int(t.microsecond), width: 6)
        sink.append(UInt8(ascii: "Z"))
    }

    /// Writes a BSD timestamp as RFC 3339 local time with `utcOffsetSeconds`.
    ///
    /// The year is taken from `reference` in the same offset, minus one when the message says December and the
    /// reference is in January, plus one for the reverse (clock skew around New Year), as rsyslog does.
    static func writeBSD<Sink: ByteSink>(
        _ bsd: SyslogMessage.BSDTimestamp,
        reference: WallClockTimestamp,
        utcOffsetSeconds: Int,
        into sink: inout Sink
    ) {
        Self.writeBSD(
            bsd,
            year: Self.bsdYear(bsd, reference: reference, utcOffsetSeconds: utcOffsetSeconds),
            utcOffsetSeconds: utcOffsetSeconds,
            into: &sink
        )
    }

    /// The year of a BSD timestamp: `reference`'s in the zone at `utcOffsetSeconds`, minus one when the message
    /// says December and the reference is in January, plus one for the reverse.
    static func bsdYear(_ bsd: SyslogMessage.BSDTimestamp, reference: WallClockTimestamp, utcOffsetSeconds: Int) -> Int {
        let local = CivilTime(nanosecondsSinceEpoch: (reference.seconds + Int64(utcOffsetSeconds)) * 1_000_000_000)
        var year = Int(local.year)
        if bsd.month == 12 && local.month == 1 { year -= 1 }
        if bsd.month == 1 && local.month == 12 { year += 1 }
        return year
    }

    /// Writes a BSD timestamp of `year` as RFC 3339 local time with `utcOffsetSeconds`.
    static func writeBSD<Sink: ByteSink>(
        _ bsd: SyslogMessage.BSDTimestamp,
        year: Int,
        utcOffsetSeconds: Int,
        into sink: inout Sink
    ) {
        Self.writeDate(year: year, month: bsd.month, day: bsd.day, into: &sink)
        sink.append(UInt8(ascii: "T"))
        Self.writeTime(hour: bsd.hour, minute: bsd.minute, second: bsd.second, into: &sink)
        Self.writeOffset(utcOffsetSeconds, into: &sink)
    }

    /// `Z` or `±HH:MM`.
    static func writeOffset<Sink: ByteSink>(_ offsetSeconds: Int, into sink: inout Sink) {
        guard offsetSeconds != 0 else {
            sink.append(UInt8(ascii: "Z"))
            return
        }
        sink.append(offsetSeconds < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
        let minutes = abs(offsetSeconds) / 60
        sink.appendZeroPadded(minutes / 60, width: 2)
        sink.append(UInt8(ascii: ":"))
        sink.appendZeroPadded(minutes % 60, width: 2)
    }

    private static func writeDate<Sink: ByteSink>(year: Int, month: Int, day: Int, into sink: inout Sink) {
        sink.appendZeroPadded(year, width: 4)
        sink.append(UInt8(ascii: "-"))
        sink.appendZeroPadded(month, width: 2)
        sink.append(UInt8(ascii: "-"))
        sink.appendZeroPadded(day, width: 2)
    }

    private static func writeTime<Sink: ByteSink>(hour: Int, minute: Int, second: Int, into sink: inout Sink) {
        sink.appendZeroPadded(hour, width: 2)
        sink.append(UInt8(ascii: ":"))
        sink.appendZeroPadded(minute, width: 2)
        sink.append(UInt8(ascii: ":"))
        sink.appendZeroPadded(second, width: 2)
    }
}
