//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import CRelayLinux
import Glibc
import Synchronization

/// The wall clock of log records: `CLOCK_REALTIME`, read from the CPU's time-stamp counter between
/// re-anchorings where the kernel itself keeps time with it.
///
/// A precise `clock_gettime(CLOCK_REALTIME)` costs 20–40 ns on the VMs this was measured on (the vDSO
/// orders its counter read with a fence); `rdtsc` alone costs about 10 and does not wait for earlier
/// instructions. Where the kernel's clocksource is `tsc` (so the counter is synchronized across CPUs and
/// runs at a constant rate, which the kernel checked before choosing it), a record's time is the last
/// **anchor** (a `CLOCK_REALTIME` reading and the counter at that moment) plus the counter ticks since,
/// scaled by the rate measured between the two previous anchors. At least every 100 ms a record takes
/// a new anchor, so:
///
/// - a clock step (settimeofday, an NTP step) shows within 100 ms, and NTP slewing within the error
///   of one interval's rate (parts per million: well under a microsecond in 100 ms);
/// - a rate measured across a step, or across a change of the counter's rate (a VM migration), is
///   not used unless the next interval measures the same rate (within 1/128): the previous rate
///   stays until then;
/// - an anchor whose `clock_gettime` was interrupted (the counter readings around it more than about
///   20 µs apart) is not taken.
///
/// Until the rate is known (the first 50 ms), and everywhere else (no `tsc` clocksource, not x86-64),
/// every record reads `clock_gettime`.
///
/// The anchor is a seqlock, as in `TimestampCache`: a re-anchoring thread takes the odd version with a
/// compare-exchange, stores, and releases the next even version; readers retry nothing (a record that
/// sees an odd or changed version reads `clock_gettime` instead).
final class RecordClock: Sendable {
    /// The process's clock, shared by every writer (one calibration for all).
    static let shared = RecordClock(
        usesTimeStampCounter: RecordClock.kernelClocksourceIsTSC && RecordClock.counterIsCheaperThanClock)

    /// Re-anchor when the anchor is this old.
    static let anchorInterval: Int64 = 100_000_000
    /// Measure the counter's first rate over at least this long.
    static let calibrationInterval: Int64 = 50_000_000
    /// The most counter ticks allowed around an anchor's `clock_gettime` (about 20 µs at 3 GHz).
    static let maxBracketTicks: UInt64 = 1 << 16

    /// Whether records read the time-stamp counter (else always `clock_gettime`).
    let usesTimeStampCounter: Bool

    private let version = Atomic<UInt64>(0)
    private let anchorTicks = Atomic<UInt64>(0)
    private let anchorNanoseconds = Atomic<Int64>(0)
    /// Nanoseconds per tick × 2^32 (0: not calibrated yet).
    private let multiplier = Atomic<UInt64>(0)
    /// Ticks after the anchor for which it is used (`anchorInterval` at `multiplier`; 0 while not
    /// calibrated, so every record re-anchors or reads the clock).
    private let validTicks = Atomic<UInt64>(0)
    /// The rate the last re-anchoring measured, kept to confirm a changed rate (only the thread holding
    /// the odd version touches it).
    private let measuredMultiplier = Atomic<UInt64>(0)

    init(usesTimeStampCounter: Bool) {
        self.usesTimeStampCounter = usesTimeStampCounter
        if usesTimeStampCounter, let (ticks, nanoseconds) = Self.bracketedReading() {
            // relaxed: not yet shared (the object is published by the caller).
            self.anchorTicks.store(ticks, ordering: .relaxed)
            self.anchorNanoseconds.store(nanoseconds, ordering: .relaxed)
        }
    }

    /// Whether the kernel keeps time with the time-stamp counter (x86-64 only).
    static var kernelClocksourceIsTSC: Bool {
        #if arch(x86_64)
        let path = "/sys/devices/system/clocksource/clocksource0/current_clocksource"
        guard let file = fopen(path, "r") else { return false }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 32)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return false }
        let name = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return name == "tsc\n" || name == "tsc"
        #else
        return false
        #endif
    }

    /// Whether reading the counter is cheaper than `clock_gettime` here: a hypervisor may trap `rdtsc`
    /// (then it costs microseconds), whatever the guest kernel's clocksource. Times 256 of each.
    static var counterIsCheaperThanClock: Bool {
        func timed(_ body: () -> Void) -> UInt64 {
            let start = CRelayLinux_monotonic_ns()
            body()
            return CRelayLinux_monotonic_ns() &- start
        }
        var sink: UInt64 = 0
        let counter = timed { for _ in 0..<256 { sink &+= CRelayLinux_read_tsc() } }
        let clock = timed { for _ in 0..<256 { sink &+= UInt64(bitPattern: WallClock.nanosecondsSinceEpoch) } }
        return sink != 0 && counter < clock
    }

    /// Whether the counter's rate is known (records then read `clock_gettime` only to re-anchor).
    var isCalibrated: Bool {
        // relaxed: a snapshot for diagnostics and tests.
        self.multiplier.load(ordering: .relaxed) != 0
    }

    /// `CLOCK_REALTIME` in nanoseconds since the Unix epoch.
    @inline(__always)
    var nanosecondsSinceEpoch: Int64 {
        guard self.usesTimeStampCounter else { return WallClock.nanosecondsSinceEpoch }
        let ticks = CRelayLinux_read_tsc()
        // acquiring: pairs with the releasing store that published this version; the loads below see
        // the anchor stored before it.
        let version = self.version.load(ordering: .acquiring)
        let anchorTicks = self.anchorTicks.load(ordering: .relaxed)
        let anchorNanoseconds = self.anchorNanoseconds.load(ordering: .relaxed)
        let multiplier = self.multiplier.load(ordering: .relaxed)
        let validTicks = self.validTicks.load(ordering: .relaxed)
        // acquiring fence (the seqlock reader's): orders the loads above before the version check.
        atomicMemoryFence(ordering: .acquiring)
        // Unsigned: a counter behind the anchor (read on another CPU a moment before) fails too.
        let elapsed = ticks &- anchorTicks
        if _fastPath(version & 1 == 0 && elapsed < validTicks && self.version.load(ordering: .relaxed) == version) {
            // elapsed < validTicks keeps the product below about anchorInterval × 2^32 (< 2^59).
            return anchorNanoseconds &+ Int64(truncatingIfNeeded: (elapsed &* multiplier) &>> 32)
        }
        return self.reanchor(seen: version)
    }

    /// A `clock_gettime` reading and the counter at that moment: the midpoint of two counter readings
    /// around it, if they are close enough (the thread was not interrupted in between). Three tries.
    private static func bracketedReading() -> (ticks: UInt64, nanoseconds: Int64)? {
        for _ in 0..<3 {
            let before = CRelayLinux_read_tsc()
            let nanoseconds = WallClock.nanosecondsSinceEpoch
            let after = CRelayLinux_read_tsc()
            if after >= before && after - before <= Self.maxBracketTicks {
                return (before &+ (after - before) / 2, nanoseconds)
            }
        }
        return nil
    }

    /// The slow path: reads `clock_gettime`, and takes a new anchor if the current one is due (or
    /// measures the first rate once `calibrationInterval` has passed).
    @inline(never)
    private func reanchor(seen version: UInt64) -> Int64 {
        guard let (ticks, nanoseconds) = Self.bracketedReading() else { return WallClock.nanosecondsSinceEpoch }
        guard version & 1 == 0 else { return nanoseconds }
        // relaxed: whether to re-anchor is decided on these; the compare-exchange below makes sure
        // nobody re-anchored since `version`.
        let anchorNanoseconds = self.anchorNanoseconds.load(ordering: .relaxed)
        let anchorTicks = self.anchorTicks.load(ordering: .relaxed)
        let multiplier = self.multiplier.load(ordering: .relaxed)
        let age = nanoseconds &- anchorNanoseconds
        // Not due: another thread re-anchored a moment ago (its counter was ahead of ours).
        if age >= 0 && age < (multiplier == 0 ? Self.calibrationInterval : Self.anchorInterval) {
            return nanoseconds
        }
        // relaxed: the releasing fence below orders this odd version before the stores.
        guard self.version.compareExchange(expected: version, desired: version &+ 1, ordering: .relaxed).exchanged
        else { return nanoseconds }
        // releasing fence (the seqlock writer's): pairs with the readers' acquiring fence; a reader
        // that sees any store below sees the odd version (or a later one) in its second version load.
        atomicMemoryFence(ordering: .releasing)
        var rate = multiplier
        if age > 0 && ticks > anchorTicks {
            let measured = UInt64(truncatingIfNeeded: (UInt128(age) << 32) / UInt128(ticks - anchorTicks))
            // relaxed: only the holder of the odd version reads or writes it.
            let previous = self.measuredMultiplier.load(ordering: .relaxed)
            if multiplier == 0 || Self.agree(measured, multiplier) || Self.agree(measured, previous) {
                rate = measured
            }
            self.measuredMultiplier.store(measured, ordering: .relaxed)
        }
        // relaxed (all): published by the releasing version store below.
        self.anchorTicks.store(ticks, ordering: .relaxed)
        self.anchorNanoseconds.store(nanoseconds, ordering: .relaxed)
        self.multiplier.store(rate, ordering: .relaxed)
        self.validTicks.store(rate == 0 ? 0 : (UInt64(Self.anchorInterval) << 32) / rate, ordering: .relaxed)
        // releasing: pairs with the readers' acquiring version load; publishes the anchor.
        self.version.store(version &+ 2, ordering: .releasing)
        return nanoseconds
    }

    /// Whether two rates agree within 1/128.
    private static func agree(_ a: UInt64, _ b: UInt64) -> Bool {
        b != 0 && (a > b ? a - b : b - a) <= b >> 7
    }
}
