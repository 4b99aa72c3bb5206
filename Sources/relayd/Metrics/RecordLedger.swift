import Synchronization

/// Lock-free record accounting for one pipeline stage (an input or an output), built so that
///
///     received = completed + Σ dropped[reason] + inFlight
///
/// holds *by construction* in every ``Snapshot``: a record is admitted exactly once (``admit(records:bytes:)``)
/// and reaches exactly one terminal counter (``complete(records:bytes:)`` or ``drop(records:bytes:reason:)``);
/// in-flight is never counted, it is derived as the difference, and the snapshot reads terminal counters before
/// `received`, so the difference is never negative.
///
/// ## Memory layout
/// Counters live in raw memory bound to `Atomic<UInt64>`, in three 128-byte blocks so that the producer (admit),
/// the consumer (complete) and drops (either side) never share a cache line:
///
///     offset   0: receivedRecords receivedBytes
///     offset 128: completedRecords completedBytes
///     offset 256: droppedBytes dropped[0] ... dropped[reasons-1]
///
/// ## Orderings
/// `admit` is relaxed: it is always sequenced before (or synchronised with, through the relay channel's
/// release-on-commit / acquire-on-deliver) the terminal update of the same record. Terminal updates are
/// `.releasing` RMWs; ``snapshot()`` loads them `.acquiring` *before* loading `received` (relaxed). A snapshot
/// that observes a terminal update therefore also observes the admit that happened before it, so
/// `received ≥ completed + dropped` in every snapshot. (All terminal updates are RMWs, so each one continues the
/// release sequence of the earlier ones and one acquire load synchronises with all of them.)
final class RecordLedger: @unchecked Sendable {
    // @unchecked: the only stored state is the pointer to atomics, which are themselves thread-safe.

    /// Number of drop reasons (≤ 13).
    let reasonCount: Int
    private let base: UnsafeMutableRawPointer
    private static let blockSize = 128
    private static let counterCount = 3 * 16  // three blocks of sixteen 8-byte slots

    /// Creates a ledger with `reasons` drop reasons.
    ///
    /// - Parameter reasons: The number of distinct drop reasons (indexes `0..<reasons`).
    init(reasons: Int) {
        precondition(reasons >= 1 && reasons <= 13, "a ledger supports 1...13 drop reasons")
        self.reasonCount = reasons
        self.base = UnsafeMutableRawPointer.allocate(byteCount: 3 * Self.blockSize, alignment: Self.blockSize)
        let counters = self.base.bindMemory(to: Atomic<UInt64>.self, capacity: Self.counterCount)
        for index in 0..<Self.counterCount {
            (counters + index).initialize(to: Atomic(0))
        }
    }

    deinit {
        let counters = self.base.assumingMemoryBound(to: Atomic<UInt64>.self)
        counters.deinitialize(count: Self.counterCount)
        self.base.deallocate()
    }

    @inline(__always)
    private func counter(block: Int, slot: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (self.base + block * Self.blockSize + slot * 8).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// Counts records entering the stage.
    @inline(__always)
    func admit(records: UInt64 = 1, bytes: UInt64) {
        // Relaxed: ordered before this record's terminal update by program order or by the channel's
        // release/acquire hand-off; `snapshot()` relies on that, not on this operation.
        self.counter(block: 0, slot: 0).pointee.wrappingAdd(records, ordering: .relaxed)
        self.counter(block: 0, slot: 1).pointee.wrappingAdd(bytes, ordering: .relaxed)
    }

    /// Counts records that left the stage successfully (routed, or written to the destination).
    @inline(__always)
    func complete(records: UInt64 = 1, bytes: UInt64) {
        // Bytes first, then records with release: pairs with the acquiring load of completedRecords in snapshot().
        self.counter(block: 1, slot: 1).pointee.wrappingAdd(bytes, ordering: .relaxed)
        self.counter(block: 1, slot: 0).pointee.wrappingAdd(records, ordering: .releasing)
    }

    /// Counts records dropped in this stage.
    @inline(__always)
    func drop(records: UInt64 = 1, bytes: UInt64, reason: Int) {
        precondition(reason >= 0 && reason < self.reasonCount, "drop reason out of range")
        self.counter(block: 2, slot: 0).pointee.wrappingAdd(bytes, ordering: .relaxed)
        // Release: pairs with the acquiring load of this reason's counter in snapshot().
        self.counter(block: 2, slot: 1 + reason).pointee.wrappingAdd(records, ordering: .releasing)
    }

    /// A consistent reading of the ledger.
    struct Snapshot: Sendable, Equatable {
        /// Records admitted.
        var receivedRecords: UInt64
        /// Bytes admitted.
        var receivedBytes: UInt64
        /// Records completed.
        var completedRecords: UInt64
        /// Bytes completed.
        var completedBytes: UInt64
        /// Records dropped, per reason index.
        var droppedRecords: [UInt64]
        /// Bytes dropped (all reasons).
        var droppedBytes: UInt64

        /// All dropped records.
        var droppedTotal: UInt64 { self.droppedRecords.reduce(0, &+) }
        /// Records admitted but not yet completed or dropped.
        var inFlightRecords: UInt64 { self.receivedRecords &- self.completedRecords &- self.droppedTotal }
    }

    /// Reads the counters (cold path; allocates the reasons array).
    func snapshot() -> Snapshot {
        // Terminal counters first, acquiring: pairs with the releasing RMWs in complete()/drop(), so the later
        // relaxed load of received observes every admit that preceded an observed terminal update.
        let completedRecords = self.counter(block: 1, slot: 0).pointee.load(ordering: .acquiring)
        let completedBytes = self.counter(block: 1, slot: 1).pointee.load(ordering: .relaxed)
        var dropped: [UInt64] = []
        dropped.reserveCapacity(self.reasonCount)
        for reason in 0..<self.reasonCount {
            dropped.append(self.counter(block: 2, slot: 1 + reason).pointee.load(ordering: .acquiring))
        }
        let droppedBytes = self.counter(block: 2, slot: 0).pointee.load(ordering: .relaxed)
        let receivedRecords = self.counter(block: 0, slot: 0).pointee.load(ordering: .relaxed)
        let receivedBytes = self.counter(block: 0, slot: 1).pointee.load(ordering: .relaxed)
        return Snapshot(
            receivedRecords: receivedRecords,
            receivedBytes: receivedBytes,
            completedRecords: completedRecords,
            completedBytes: completedBytes,
            droppedRecords: dropped,
            droppedBytes: droppedBytes
        )
    }
}
