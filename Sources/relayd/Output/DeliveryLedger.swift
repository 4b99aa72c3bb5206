import CRelayLinux
import Relay
import Synchronization

/// Turns the sub-buffers an output's channel delivered and its shipper consumed into record counts.
///
/// The shipper releases sub-buffers in order once the destination accepted them (file write completed, TCP
/// bytes acknowledged) and reports that as the channel's consumed count `C`: every sub-buffer with a sequence
/// below `C` is done. The channel's `deliver` callback tells, per sub-buffer, how many records and bytes it holds;
/// the ledger keeps the cumulative totals at the end of each of the last ``capacity`` sub-buffers, so
/// `written = cumulative(C - 1)` is one table lookup, however far the accountant lags.
///
/// relayd writes each channel from one thread (the input ring) into one buffer, so sub-buffers are delivered
/// in sequence order. In `overwrite` mode the shipper ships a copy of each sub-buffer it takes, so a slot
/// reused before the consumed count passed it is lost only if the shipper never got an intact copy: the
/// shipper says so (``RelayCallbacks/overwritten``, before it releases the sub-buffer), and those records are
/// counted as overwritten (dropped). A reused sub-buffer the consumed count passes without such a report was
/// shipped from its copy: written. One too far ahead of the consumed count to have been taken (a buffer's
/// worth) is counted at its reuse, so a destination that hangs leaves at most a buffer's worth "in flight".
///
/// A sub-buffer the shipper skipped as corrupt (something else wrote into the channel's memory, see
/// `RelayCallbacks.corrupt`) is released like a shipped one, but its records never reached the destination: the
/// channel's `corrupt` callback names it before the shipper releases it, and the ledger counts its records as
/// corrupt (dropped) instead of written.
///
/// All methods take a `Mutex`: they run once per sub-buffer or per accounting tick, never per record.
final class DeliveryLedger: Sendable {
    /// Totals the accountant publishes.
    struct Totals: Equatable, Sendable {
        /// Records in consumed, intact sub-buffers.
        var writtenRecords: UInt64 = 0
        /// Their bytes.
        var writtenBytes: UInt64 = 0
        /// Records in sub-buffers reused before they were consumed (`overwrite` mode).
        var overwrittenRecords: UInt64 = 0
        /// Their bytes.
        var overwrittenBytes: UInt64 = 0
        /// Records in sub-buffers the shipper skipped as corrupt (released, never shipped).
        var corruptRecords: UInt64 = 0
        /// Their bytes.
        var corruptBytes: UInt64 = 0
    }

    private struct Entry {
        var sequence: UInt64 = .max
        var records: UInt64 = 0
        var bytes: UInt64 = 0
        /// Cumulative records through this sub-buffer.
        var cumulativeRecords: UInt64 = 0
        /// Cumulative bytes through this sub-buffer.
        var cumulativeBytes: UInt64 = 0
        /// CLOCK_MONOTONIC ns when the sub-buffer started (≈ its first record).
        var startNanoseconds: UInt64 = 0
        var overwritten = false
        /// Skipped by the shipper as corrupt.
        var corrupt = false
    }

    private struct State {
        var entries: [Entry]
        /// Start times by sequence, recorded before delivery.
        var starts: [(sequence: UInt64, nanoseconds: UInt64)]
        var deliveredRecords: UInt64 = 0
        var deliveredBytes: UInt64 = 0
        /// Sub-buffers whose slot was reused within a buffer's worth of the consumed count, not decided yet: lost if
        /// the shipper reports them overwritten, written (shipped from the shipper's copy) if the consumed count
        /// passes them without a report. At most a buffer's worth at a time.
        var pendingOverwrites: [(sequence: UInt64, records: UInt64, bytes: UInt64)] = []
        /// Overwritten sub-buffers already counted (certainly lost) that the consumed count has not passed yet, in
        /// sequence order. Bounded: past ``maxAheadOverwrites`` neighbours are merged into their first sequence,
        /// which can only make the written count lag until the consumed count passes the merged ones.
        var aheadOverwrites: [(sequence: UInt64, records: UInt64, bytes: UInt64)] = []
        /// Corrupt sub-buffers (counted at once: the shipper skips them) that the consumed count has not passed
        /// yet, in sequence order. At most a buffer's worth: the shipper reports one only after taking it, and it
        /// holds fewer than `subbufferCount` sub-buffers beyond the consumed count.
        var aheadCorrupt: [(sequence: UInt64, records: UInt64, bytes: UInt64)] = []
        /// Records of counted overwritten or corrupt sub-buffers below the consumed count (subtracted from the
        /// cumulative delivered count to get the written count).
        var passedOverwrittenRecords: UInt64 = 0
        var passedOverwrittenBytes: UInt64 = 0
        var totals = Totals()
        /// The next sequence whose delivery delay has not been sampled.
        var delaySequence: UInt64 = 0
        /// The highest consumed count accounted so far: sub-buffers below it are settled (written or
        /// dropped), and a report of one of them (the shipper reports before it releases, so none
        /// comes) would change nothing.
        var accountedConsumed: UInt64 = 0
    }

    /// Counted overwritten sub-buffers ahead of the consumed count kept one by one (see `State.aheadOverwrites`).
    static let maxAheadOverwrites = 1024

    /// Sub-buffers remembered.
    let capacity: Int
    /// Sub-buffers per buffer of the channel.
    let subbufferCount: Int
    /// Whether the channel is in overwrite mode.
    let overwriteMode: Bool
    private let state: RelayMutex<State>
    /// The channel, for the consumed count in overwrite checks; set once after the channel exists.
    ///
    /// Unretained: the channel owns this ledger (through its callbacks), and the ``OutputPipeline`` owns both. Not
    /// `weak`: a weak reference moves the channel's reference count to a side table, which makes every retain and
    /// release of the channel (one pair per record on the write path) take the slow path.
    private let channel = RelayMutex<UnmanagedChannel?>(nil)

    private struct UnmanagedChannel: @unchecked Sendable {
        // @unchecked: an unretained reference to a Sendable class.
        let reference: Unmanaged<RelayChannel>
    }

    /// Creates a ledger for a channel with `subbufferCount` sub-buffers per buffer.
    init(subbufferCount: Int, overwriteMode: Bool) {
        self.subbufferCount = subbufferCount
        self.overwriteMode = overwriteMode
        self.capacity = max(64, 2 * subbufferCount + 2)
        self.state = RelayMutex(
            State(
                entries: [Entry](repeating: Entry(), count: self.capacity),
                starts: [(UInt64, UInt64)](repeating: (.max, 0), count: self.capacity)
            )
        )
    }

    /// Attaches the channel whose callbacks feed this ledger.
    func attach(_ channel: RelayChannel) {
        self.channel.withLock { $0 = UnmanagedChannel(reference: .passUnretained(channel)) }
    }

    /// The channel callbacks that feed this ledger.
    var callbacks: RelayCallbacks {
        RelayCallbacks(
            subbufferStart: { start in self.started(sequence: start.sequence) },
            deliver: { delivery in self.delivered(delivery) },
            corrupt: { corruption in self.skippedCorrupt(sequence: corruption.sequence) },
            overwritten: { overwrite in self.skippedOverwritten(sequences: overwrite.sequences) }
        )
    }

    /// A sub-buffer started (writer thread).
    func started(sequence: UInt64) {
        let now = CRelayLinux_monotonic_ns()
        var consumed: UInt64 = 0
        if self.overwriteMode, sequence >= UInt64(self.subbufferCount) {
            consumed = self.channel.withLock { $0?.reference.takeUnretainedValue().consumedCount(buffer: 0) } ?? 0
        }
        self.state.withLock { state in
            state.starts[Int(sequence % UInt64(self.capacity))] = (sequence, now)
            guard self.overwriteMode, sequence >= UInt64(self.subbufferCount) else { return }
            // The slot of `reused` is taken over now; unless the shipper already consumed it, its records may be
            // lost. The shipper takes a sub-buffer only while it holds fewer than `subbufferCount` beyond the
            // consumed count, so with `reused` a buffer's worth or more ahead of the consumed count read here
            // (after the reuse), it had not taken it: lost, counted now. Closer, it may have taken an intact copy
            // first: decided when the shipper reports it overwritten (`skippedOverwritten`) or the consumed count
            // passes it without a report (shipped from the copy, see `account`).
            let reused = sequence - UInt64(self.subbufferCount)
            guard consumed <= reused else { return }
            let slot = Int(reused % UInt64(self.capacity))
            guard state.entries[slot].sequence == reused, !state.entries[slot].overwritten, !state.entries[slot].corrupt
            else { return }
            let candidate = (sequence: reused, records: state.entries[slot].records, bytes: state.entries[slot].bytes)
            if reused >= consumed &+ UInt64(self.subbufferCount) {
                Self.countOverwritten(candidate, in: &state, capacity: self.capacity)
            } else {
                state.pendingOverwrites.append(candidate)
            }
        }
    }

    /// A sub-buffer was delivered (writer or flushing thread).
    func delivered(_ delivery: SubbufferDelivery) {
        self.state.withLock { state in
            state.deliveredRecords &+= UInt64(delivery.records)
            state.deliveredBytes &+= UInt64(delivery.contentSize)
            let slot = Int(delivery.sequence % UInt64(self.capacity))
            let start = state.starts[slot]
            state.entries[slot] = Entry(
                sequence: delivery.sequence,
                records: UInt64(delivery.records),
                bytes: UInt64(delivery.contentSize),
                cumulativeRecords: state.deliveredRecords,
                cumulativeBytes: state.deliveredBytes,
                startNanoseconds: start.sequence == delivery.sequence ? start.nanoseconds : CRelayLinux_monotonic_ns(),
                overwritten: false
            )
        }
    }

    /// The shipper skipped sub-buffer `sequence` as corrupt (its thread, before it releases the sub-buffer): its
    /// records are dropped, not written.
    func skippedCorrupt(sequence: UInt64) {
        self.state.withLock { state in
            let slot = Int(sequence % UInt64(self.capacity))
            // Already counted as overwritten (lost either way), or no longer remembered: nothing to move. The
            // latter cannot happen: the shipper takes only sub-buffers within a buffer of the consumed count, and
            // the ledger remembers two buffers' worth.
            guard state.entries[slot].sequence == sequence, !state.entries[slot].overwritten,
                !state.entries[slot].corrupt
            else { return }
            state.entries[slot].corrupt = true
            let entry = state.entries[slot]
            state.totals.corruptRecords &+= entry.records
            state.totals.corruptBytes &+= entry.bytes
            state.aheadCorrupt.append((sequence, entry.records, entry.bytes))
        }
    }

    /// The shipper passed `sequences` without shipping them, because writers reused their slots first (its
    /// thread, before it releases them): their records are dropped as overwritten, not written.
    func skippedOverwritten(sequences: Range<UInt64>) {
        self.state.withLock { state in
            let sequences = max(sequences.lowerBound, state.accountedConsumed)..<max(sequences.upperBound, state.accountedConsumed)
            let undecided = state.pendingOverwrites
            state.pendingOverwrites = []
            for overwrite in undecided {
                if sequences.contains(overwrite.sequence) {
                    Self.countOverwritten(overwrite, in: &state, capacity: self.capacity)
                } else {
                    state.pendingOverwrites.append(overwrite)
                }
            }
            // The others: already counted (at their reuse, see `started`, which marks the entry), or their reuse
            // was not noticed as such (the writer saw a consumed count that had moved on), which the entry tells
            // while it is remembered: only the last `capacity` sequences are, so a long lapped range is not walked.
            let remembered = sequences.upperBound > UInt64(self.capacity) ? sequences.upperBound - UInt64(self.capacity) : 0
            for sequence in max(sequences.lowerBound, remembered)..<sequences.upperBound {
                let entry = state.entries[Int(sequence % UInt64(self.capacity))]
                guard entry.sequence == sequence, !entry.overwritten, !entry.corrupt else { continue }
                Self.countOverwritten((sequence, entry.records, entry.bytes), in: &state, capacity: self.capacity)
            }
        }
    }

    /// Counts an overwritten sub-buffer as dropped, once: marks its entry (while remembered) and keeps it until
    /// the consumed count passes it, when its records leave the written count.
    private static func countOverwritten(
        _ lost: (sequence: UInt64, records: UInt64, bytes: UInt64), in state: inout State, capacity: Int
    ) {
        let slot = Int(lost.sequence % UInt64(capacity))
        if state.entries[slot].sequence == lost.sequence { state.entries[slot].overwritten = true }
        state.totals.overwrittenRecords &+= lost.records
        state.totals.overwrittenBytes &+= lost.bytes
        // Sequence order (see `State.aheadOverwrites`): reports and reuses may come out of order.
        // Nearly always at the end: search from there (a hung destination makes this list long).
        let position = (state.aheadOverwrites.lastIndex { $0.sequence <= lost.sequence }).map { $0 + 1 } ?? 0
        state.aheadOverwrites.insert(lost, at: position)
    }

    /// Records and bytes delivered so far (sealed and committed into sub-buffers).
    var delivered: (records: UInt64, bytes: UInt64) {
        self.state.withLock { ($0.deliveredRecords, $0.deliveredBytes) }
    }

    /// Updates the totals for consumed count `consumed` and reports the delivery delay of each sub-buffer
    /// consumed since the last call.
    ///
    /// - Parameters:
    ///   - consumed: The channel's consumed count.
    ///   - delay: Called with the age of each newly consumed sub-buffer (start → now), under the ledger lock.
    /// - Returns: The totals; monotonic across calls.
    func account(consumed: UInt64, delay: (Duration) -> Void) -> Totals {
        let now = CRelayLinux_monotonic_ns()
        return self.state.withLock { state in
            // A reused sub-buffer still undecided (see `started`) that the consumed count passed was not reported
            // overwritten, which the shipper does before releasing one: it shipped an intact copy. Written. (While
            // a destination hangs, at most a buffer's worth stays undecided: the rest was counted at its reuse.)
            state.pendingOverwrites.removeAll { $0.sequence < consumed }
            state.accountedConsumed = max(state.accountedConsumed, consumed)
            // Sequence order: the passed ones are a prefix.
            let passed = state.aheadOverwrites.prefix { $0.sequence < consumed }
            for overwrite in passed {
                state.passedOverwrittenRecords &+= overwrite.records
                state.passedOverwrittenBytes &+= overwrite.bytes
            }
            state.aheadOverwrites.removeFirst(passed.count)
            // Corrupt ones are reported before the shipper releases them, so the consumed count passing one means
            // it was skipped: its records leave the written count.
            let passedCorrupt = state.aheadCorrupt.prefix { $0.sequence < consumed }
            for corrupt in passedCorrupt {
                state.passedOverwrittenRecords &+= corrupt.records
                state.passedOverwrittenBytes &+= corrupt.bytes
            }
            state.aheadCorrupt.removeFirst(passedCorrupt.count)
            if state.aheadOverwrites.count > Self.maxAheadOverwrites {
                let ahead = state.aheadOverwrites
                state.aheadOverwrites = stride(from: 0, to: ahead.count, by: 2).map { first in
                    var merged = ahead[first]
                    if first + 1 < ahead.count {
                        merged.records &+= ahead[first + 1].records
                        merged.bytes &+= ahead[first + 1].bytes
                    }
                    return merged
                }
            }
            guard consumed > 0 else { return state.totals }
            let last = consumed - 1
            let entry = state.entries[Int(last % UInt64(self.capacity))]
            if entry.sequence == last {
                let records = entry.cumulativeRecords &- state.passedOverwrittenRecords
                let bytes = entry.cumulativeBytes &- state.passedOverwrittenBytes
                // Monotonic: an overwrite noticed before the consumer passes it can make the difference dip.
                if records > state.totals.writtenRecords && records <= entry.cumulativeRecords {
                    state.totals.writtenRecords = records
                    state.totals.writtenBytes = max(state.totals.writtenBytes, bytes)
                }
            }
            var sequence = max(state.delaySequence, consumed > UInt64(self.capacity) ? consumed - UInt64(self.capacity) : 0)
            while sequence < consumed {
                let sample = state.entries[Int(sequence % UInt64(self.capacity))]
                if sample.sequence == sequence, !sample.overwritten, !sample.corrupt, now >= sample.startNanoseconds {
                    delay(.nanoseconds(Int64(now - sample.startNanoseconds)))
                }
                sequence += 1
            }
            state.delaySequence = consumed
            return state.totals
        }
    }
}
