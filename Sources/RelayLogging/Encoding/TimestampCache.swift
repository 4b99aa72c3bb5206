//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Synchronization

/// The formatted date and time of the latest second (`2026-11-27T15:58:35.`), shared by every thread
/// that logs through one writer, so a record only formats its microseconds.
///
/// A seqlock: a writer takes the (odd) version with a compare-exchange and a release fence, stores the
/// second and its 20 bytes, and releases the next (even) version; a reader copies them between two loads of the
/// version and uses them only if the version did not change and was even. A thread that finds the
/// cache stale (a new second) or busy formats the whole timestamp itself, then tries to publish it.
internal final class TimestampCache: Sendable {
    private let version = Atomic<UInt64>(0)
    private let second = Atomic<UInt64>(UInt64.max)
    private let prefix0 = Atomic<UInt64>(0)
    private let prefix1 = Atomic<UInt64>(0)
    private let prefix2 = Atomic<UInt32>(0)

    init() {}

    /// Writes the 27-byte RFC 3339 timestamp of `nanosecondsSinceEpoch` at `out` (see
    /// ``RFC3339/write(_:to:)``).
    @inline(__always)
    func write(_ nanosecondsSinceEpoch: Int64, to out: UnsafeMutableRawPointer) {
        guard nanosecondsSinceEpoch >= 0 else {
            RFC3339.write(nanosecondsSinceEpoch, to: out)
            return
        }
        let nanoseconds = UInt64(nanosecondsSinceEpoch)
        let seconds = nanoseconds / 1_000_000_000
        // acquiring: pairs with the releasing store that published this version; the loads below
        // see the bytes stored before it.
        let version = self.version.load(ordering: .acquiring)
        if version & 1 == 0, self.second.load(ordering: .relaxed) == seconds {
            let word0 = self.prefix0.load(ordering: .relaxed)
            let word1 = self.prefix1.load(ordering: .relaxed)
            let word2 = self.prefix2.load(ordering: .relaxed)
            // acquiring fence: orders the loads above before the version check below (the seqlock
            // reader's fence), so a concurrent writer is detected.
            atomicMemoryFence(ordering: .acquiring)
            if self.version.load(ordering: .relaxed) == version {
                out.storeBytes(of: word0, as: UInt64.self)
                out.storeBytes(of: word1, toByteOffset: 8, as: UInt64.self)
                out.storeBytes(of: word2, toByteOffset: 16, as: UInt32.self)
                let microsecond = (nanoseconds &- seconds &* 1_000_000_000) / 1000
                let high = microsecond / 10_000
                let rest = microsecond &- high &* 10_000
                let middle = rest / 100
                RFC3339.pair(high, at: 20, out)
                RFC3339.pair(middle, at: 22, out)
                RFC3339.pair(rest &- middle &* 100, at: 24, out)
                out.storeBytes(of: UInt8(ascii: "Z"), toByteOffset: 26, as: UInt8.self)
                return
            }
        }
        RFC3339.write(nanosecondsSinceEpoch, to: out)
        self.publish(seconds: seconds, formatted: UnsafeRawPointer(out), seen: version)
    }

    /// Publishes the first 20 bytes of a formatted timestamp, unless another thread is publishing.
    @inline(never)
    private func publish(seconds: UInt64, formatted: UnsafeRawPointer, seen version: UInt64) {
        guard version & 1 == 0 else { return }
        // relaxed: the fence below orders this odd version before the stores.
        guard self.version.compareExchange(expected: version, desired: version &+ 1, ordering: .relaxed).exchanged
        else { return }
        // releasing fence (the seqlock writer's): pairs with the readers' acquiring fence. A reader
        // whose loads see any of the stores below then sees the odd version (or a later one) in its
        // second version load, and discards what it read. (An acquiring compare-exchange alone would
        // not order its own store before these on a weakly ordered CPU such as aarch64.)
        atomicMemoryFence(ordering: .releasing)
        self.second.store(seconds, ordering: .relaxed)
        self.prefix0.store(formatted.loadUnaligned(as: UInt64.self), ordering: .relaxed)
        self.prefix1.store(formatted.loadUnaligned(fromByteOffset: 8, as: UInt64.self), ordering: .relaxed)
        self.prefix2.store(formatted.loadUnaligned(fromByteOffset: 16, as: UInt32.self), ordering: .relaxed)
        // releasing: pairs with the readers' acquiring version load; publishes the stores above.
        self.version.store(version &+ 2, ordering: .releasing)
    }
}
