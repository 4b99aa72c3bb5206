//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Glibc
import Testing

@testable import RelayLogging

@Suite("Record clock")
struct RecordClockTests {
    /// Reads `clock` every ~50 µs for `milliseconds`, each reading between two `clock_gettime` readings,
    /// and returns the largest distance outside that window.
    func worstError(of clock: RecordClock, milliseconds: Int) -> Int64 {
        var worst: Int64 = 0
        let end = WallClock.nanosecondsSinceEpoch + Int64(milliseconds) * 1_000_000
        while true {
            let before = WallClock.nanosecondsSinceEpoch
            let reading = clock.nanosecondsSinceEpoch
            let after = WallClock.nanosecondsSinceEpoch
            worst = max(worst, before - reading, reading - after)
            if after > end { return worst }
            usleep(50)
        }
    }

    @Test("with the time-stamp counter, records keep CLOCK_REALTIME's time within 50 µs")
    func counterClockFollowsRealtime() {
        // Runs on any x86-64 host, whatever its clocksource: `usesTimeStampCounter` is forced on.
        #if !arch(x86_64)
        return  // no time-stamp counter: the clock reads clock_gettime (covered below)
        #else
        let clock = RecordClock(usesTimeStampCounter: true)
        // Calibration (50 ms), then several re-anchorings (every 100 ms).
        let error = self.worstError(of: clock, milliseconds: 450)
        #expect(clock.isCalibrated)
        #expect(error < 50_000, "worst distance from CLOCK_REALTIME: \(error) ns")
        #endif
    }

    @Test("without the time-stamp counter, records read CLOCK_REALTIME")
    func realtimeClock() {
        let clock = RecordClock(usesTimeStampCounter: false)
        #expect(self.worstError(of: clock, milliseconds: 20) == 0)
        #expect(!clock.isCalibrated)
    }

    @Test("one thread's readings never go back by more than 5 µs across re-anchorings")
    func nearlyMonotonic() {
        #if arch(x86_64)
        let clock = RecordClock(usesTimeStampCounter: true)
        var previous = clock.nanosecondsSinceEpoch
        var worstStepBack: Int64 = 0
        let end = previous + 400_000_000
        while previous < end {
            let now = clock.nanosecondsSinceEpoch
            worstStepBack = max(worstStepBack, previous - now)
            previous = now
        }
        #expect(clock.isCalibrated)
        #expect(worstStepBack < 5_000, "\(worstStepBack) ns")
        #endif
    }
}
