//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

/// A proleptic Gregorian calendar date and UTC time of day, computed without Foundation.
package struct CivilTime: Equatable, Sendable {
    /// The year (1677...2262 for the range of `Int64` nanoseconds since the epoch).
    package var year: Int64
    /// The month, 1...12.
    package var month: Int64
    /// The day of the month, 1...31.
    package var day: Int64
    /// The hour, 0...23.
    package var hour: Int64
    /// The minute, 0...59.
    package var minute: Int64
    /// The second, 0...59 (Unix time has no leap seconds).
    package var second: Int64
    /// The microsecond within the second, 0...999_999 (nanoseconds are truncated, not rounded).
    package var microsecond: Int64

    /// Splits nanoseconds since 1970-01-01T00:00:00Z into calendar fields.
    ///
    /// Uses Howard Hinnant's `civil_from_days` algorithm, which is exact for every day of the
    /// proleptic Gregorian calendar (400-year eras, so leap years including 2000 and 2100 are right).
    /// Negative values (before 1970) are floored, so `-1` ns is `1969-12-31T23:59:59.999999Z`.
    ///
    /// - Parameter nanosecondsSinceEpoch: The instant, in nanoseconds since the Unix epoch.
    package init(nanosecondsSinceEpoch: Int64) {
        // Floor division so that instants before the epoch land in the right second and day.
        var seconds = nanosecondsSinceEpoch / 1_000_000_000
        var nanoseconds = nanosecondsSinceEpoch % 1_000_000_000
        if nanoseconds < 0 {
            nanoseconds += 1_000_000_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }

        // civil_from_days (http://howardhinnant.github.io/date_algorithms.html#civil_from_days).
        let z = days + 719_468  // days since 0000-03-01
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097  // [0, 146096]
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365  // [0, 399]
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)  // [0, 365], from March 1
        let shiftedMonth = (5 * dayOfYear + 2) / 153  // [0, 11], March = 0
        self.day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        self.month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        self.year = yearOfEra + era * 400 + (self.month <= 2 ? 1 : 0)

        self.hour = secondOfDay / 3600
        self.minute = (secondOfDay % 3600) / 60
        self.second = secondOfDay % 60
        self.microsecond = nanoseconds / 1000
    }
}

/// RFC 3339 UTC timestamps with microseconds, written straight into memory.
internal enum RFC3339 {
    /// The length of every timestamp: `2026-11-27T15:58:35.123456Z`.
    static let length = 27

    /// Writes the 27-byte timestamp of `nanosecondsSinceEpoch` at `out`.
    ///
    /// Instants from 1970 on take the fast path: unsigned arithmetic (divisions by constants become
    /// multiplications) and two digits per table lookup. Earlier instants use ``CivilTime``.
    @inline(__always)
    static func write(_ nanosecondsSinceEpoch: Int64, to out: UnsafeMutableRawPointer) {
        guard nanosecondsSinceEpoch >= 0 else {
            Self.writeBeforeEpoch(nanosecondsSinceEpoch, to: out)
            return
        }
        let nanoseconds = UInt64(nanosecondsSinceEpoch)
        let seconds = nanoseconds / 1_000_000_000
        let microsecond = (nanoseconds &- seconds &* 1_000_000_000) / 1000
        let days = seconds / 86_400
        let secondOfDay = seconds &- days &* 86_400

        // civil_from_days (http://howardhinnant.github.io/date_algorithms.html#civil_from_days),
        // unsigned because days >= 0.
        let z = days &+ 719_468
        let era = z / 146_097
        let dayOfEra = z &- era &* 146_097
        let yearOfEra = (dayOfEra &- dayOfEra / 1460 &+ dayOfEra / 36_524 &- dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra &- (365 &* yearOfEra &+ yearOfEra / 4 &- yearOfEra / 100)
        let shiftedMonth = (5 &* dayOfYear &+ 2) / 153
        let day = dayOfYear &- (153 &* shiftedMonth &+ 2) / 5 &+ 1
        let month = shiftedMonth < 10 ? shiftedMonth &+ 3 : shiftedMonth &- 9
        let year = yearOfEra &+ era &* 400 &+ (month <= 2 ? 1 : 0)

        let hour = secondOfDay / 3600
        let minuteAndSecond = secondOfDay &- hour &* 3600
        let minute = minuteAndSecond / 60
        let second = minuteAndSecond &- minute &* 60
        let microHigh = microsecond / 10_000
        let microRest = microsecond &- microHigh &* 10_000
        let microMiddle = microRest / 100

        Self.pair(year / 100, at: 0, out)
        Self.pair(year % 100, at: 2, out)
        out.storeBytes(of: UInt8(ascii: "-"), toByteOffset: 4, as: UInt8.self)
        Self.pair(month, at: 5, out)
        out.storeBytes(of: UInt8(ascii: "-"), toByteOffset: 7, as: UInt8.self)
        Self.pair(day, at: 8, out)
        out.storeBytes(of: UInt8(ascii: "T"), toByteOffset: 10, as: UInt8.self)
        Self.pair(hour, at: 11, out)
        out.storeBytes(of: UInt8(ascii: ":"), toByteOffset: 13, as: UInt8.self)
        Self.pair(minute, at: 14, out)
        out.storeBytes(of: UInt8(ascii: ":"), toByteOffset: 16, as: UInt8.self)
        Self.pair(second, at: 17, out)
        out.storeBytes(of: UInt8(ascii: "."), toByteOffset: 19, as: UInt8.self)
        Self.pair(microHigh, at: 20, out)
        Self.pair(microMiddle, at: 22, out)
        Self.pair(microRest &- microMiddle &* 100, at: 24, out)
        out.storeBytes(of: UInt8(ascii: "Z"), toByteOffset: 26, as: UInt8.self)
    }

    /// Writes `value` (0...99) as two digits.
    @inline(__always)
    static func pair(_ value: UInt64, at offset: Int, _ out: UnsafeMutableRawPointer) {
        // swift-format-ignore
        let table: StaticString = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"
        let digits = UnsafeRawPointer(table.utf8Start).load(fromByteOffset: Int(value &* 2), as: UInt16.self)
        out.storeBytes(of: digits, toByteOffset: offset, as: UInt16.self)
    }

    @inline(never)
    static func writeBeforeEpoch(_ nanosecondsSinceEpoch: Int64, to out: UnsafeMutableRawPointer) {
        let t = CivilTime(nanosecondsSinceEpoch: nanosecondsSinceEpoch)
        func put(_ value: Int64, at offset: Int, digits: Int) {
            var v = value
            var i = offset + digits
            while i > offset {
                i -= 1
                out.storeBytes(
                    of: UInt8(truncatingIfNeeded: v % 10) &+ UInt8(ascii: "0"), toByteOffset: i, as: UInt8.self)
                v /= 10
            }
        }
        func sep(_ c: Unicode.Scalar, at offset: Int) {
            out.storeBytes(of: UInt8(ascii: c), toByteOffset: offset, as: UInt8.self)
        }
        put(t.year, at: 0, digits: 4)
        sep("-", at: 4)
        put(t.month, at: 5, digits: 2)
        sep("-", at: 7)
        put(t.day, at: 8, digits: 2)
        sep("T", at: 10)
        put(t.hour, at: 11, digits: 2)
        sep(":", at: 13)
        put(t.minute, at: 14, digits: 2)
        sep(":", at: 16)
        put(t.second, at: 17, digits: 2)
        sep(".", at: 19)
        put(t.microsecond, at: 20, digits: 6)
        sep("Z", at: 26)
    }
}

extension ByteCursor {
    /// The length of an RFC 3339 timestamp written by ``appendRFC3339(nanosecondsSinceEpoch:)``.
    package static let rfc3339Length = 27

    /// Appends an RFC 3339 UTC timestamp with microseconds, for example
    /// `2026-11-27T15:58:35.123456Z` (always 27 bytes, digits only; no Foundation, no allocation).
    ///
    /// The same text is a valid RFC 5424 `TIMESTAMP` (at most 6 fractional digits) and a JSON string
    /// body.
    ///
    /// - Parameter nanosecondsSinceEpoch: The instant, in nanoseconds since the Unix epoch.
    ///   Sub-microsecond digits are truncated.
    package mutating func appendRFC3339(nanosecondsSinceEpoch: Int64) {
        guard let p = self.claim(RFC3339.length) else { return }
        RFC3339.write(nanosecondsSinceEpoch, to: p)
    }
}
