//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Foundation
import Testing

@testable import RelayLogging

@Suite("RFC 3339 timestamps")
struct EncodingTimestampTests {
    func rfc3339(_ nanoseconds: Int64) -> String {
        var storage = [UInt8](repeating: 0, count: ByteCursor.rfc3339Length)
        let count = storage.withUnsafeMutableBytes { raw in
            var cursor = ByteCursor(raw)
            cursor.appendRFC3339(nanosecondsSinceEpoch: nanoseconds)
            #expect(!cursor.overflowed)
            return cursor.count
        }
        #expect(count == ByteCursor.rfc3339Length)
        return String(decoding: storage, as: UTF8.self)
    }

    /// The reference: Foundation's calendar in UTC, with microseconds computed from integers (Date's
    /// Double cannot hold nanoseconds exactly).
    func reference(_ nanoseconds: Int64) -> String {
        var seconds = nanoseconds / 1_000_000_000
        var remainder = nanoseconds % 1_000_000_000
        if remainder < 0 {
            remainder += 1_000_000_000
            seconds -= 1
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents(
            [.year, .month, .day, .hour, .minute, .second],
            from: Date(timeIntervalSince1970: TimeInterval(seconds))
        )
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
            c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!, Int(remainder / 1000)
        )
    }

    @Test(
        "known vectors",
        arguments: [
            (Int64(0), "1970-01-01T00:00:00.000000Z"),
            (1_795_795_115_123_456_789, "2026-11-27T15:58:35.123456Z"),
            (951_782_400_000_000_000, "2000-02-29T00:00:00.000000Z"),  // leap day of a /400 year
            (4_107_542_399_999_999_999, "2100-02-28T23:59:59.999999Z"),  // 2100 is not a leap year
            (4_107_542_400_000_000_000, "2100-03-01T00:00:00.000000Z"),
            (1_709_164_800_000_001_000, "2024-02-29T00:00:00.000001Z"),
            (1_735_689_599_999_999_000, "2024-12-31T23:59:59.999999Z"),  // day 366
            (-1, "1969-12-31T23:59:59.999999Z"),
            (Int64.max, "2262-04-11T23:47:16.854775Z"),
            (Int64.min, "1677-09-21T00:12:43.145224Z"),
        ])
    func vectors(nanoseconds: Int64, expected: String) {
        #expect(self.rfc3339(nanoseconds) == expected)
    }

    @Test("every day from 1970 through 2100 matches Foundation")
    func everyDay() {
        let end: Int64 = 4_133_980_800  // 2101-01-01
        var day: Int64 = 0
        var mismatches = 0
        while day * 86_400 < end, mismatches < 5 {
            // A different time of day and sub-second part every day.
            let secondOfDay = (day &* 7919) % 86_400
            let nanos = (day &* 104_729_123) % 1_000_000_000
            let ns = (day * 86_400 + secondOfDay) * 1_000_000_000 + nanos
            let ours = self.rfc3339(ns)
            let theirs = self.reference(ns)
            if ours != theirs {
                Issue.record("\(ns): \(ours) != \(theirs)")
                mismatches += 1
            }
            day += 1
        }
        #expect(day >= 47_846)
    }

    @Test("seconds around every year boundary 1970...2100 and before the epoch match Foundation")
    func yearBoundaries() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        for year in 1680...2261 {
            let start = calendar.date(from: DateComponents(year: year, month: 1, day: 1))!
            let seconds = Int64(start.timeIntervalSince1970)
            for delta in [-1, 0, 1] as [Int64] {
                let ns = (seconds + delta) * 1_000_000_000 + 999_999_999
                #expect(self.rfc3339(ns) == self.reference(ns))
            }
        }
    }

    @Test("civil fields")
    func civilFields() {
        let t = CivilTime(nanosecondsSinceEpoch: 1_795_795_115_123_456_789)
        #expect(t == CivilTime(nanosecondsSinceEpoch: 1_795_795_115_123_456_000))
        #expect(
            [t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond] == [2026, 11, 27, 15, 58, 35, 123_456])
    }
}
