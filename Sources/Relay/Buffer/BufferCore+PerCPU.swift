internal import CRelayLinux
import Synchronization

/// Per-CPU buffers moved with restartable sequences instead of locked instructions.
///
/// A shared buffer that exactly one CPU maps to (the default: one buffer per possible
/// CPU) has an *owner CPU*. Writers move its two hot words, the position (reserve) and
/// a slot's commit word (commit), with rseq(2) critical sections that run on the owner
/// CPU: a compare-and-store and an add made of plain loads and stores, which the
/// kernel restarts (aborts) if the thread is preempted, migrated or signalled inside
/// them. Against every other thread running on that CPU such a section is atomic, and
/// it costs a few cycles where a `lock cmpxchg` or `lock xadd` costs tens, because a
/// locked instruction also waits for the store buffer to drain (the record bytes just
/// written). This is the user-space form of the kernel relay's per-CPU `local_t`
/// operations under disabled preemption.
///
/// Threads that are *not* on the owner CPU (a writer that migrated between picking
/// the buffer and moving a word, a `flush()` timer, `close()`) take the *remote path*:
///
/// 1. increment the buffer's `remote` word (sequentially consistent);
/// 2. `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`: every CPU running a thread of
///    this process executes a full barrier, and every critical section in flight there
///    is aborted, so no section that started before step 1 can still commit;
/// 3. move the word with a locked instruction (as the non-per-CPU path always does);
/// 4. decrement `remote` (releasing).
///
/// Every critical section reads `remote` after its CPU check and fails while it is not
/// zero, and a thread whose section failed that way takes the remote path itself. So
/// while any remote operation is in progress every mutation of the buffer's words is
/// a locked instruction, and otherwise every mutation is a section on the owner CPU:
/// the two kinds never interleave. Other words (statistics, flags, the consumed count,
/// the state words) keep their atomics and are unaffected.
///
/// # Memory ordering
/// Only on x86-64 (TSO): plain stores are releases and plain loads acquires. A
/// section's committing store comes after the record bytes in program order, so it
/// publishes them like the releasing add it replaces; threads on one CPU are ordered
/// by the context switch between them; and a remote thread's locked instruction is a
/// full barrier. The deliverer therefore still sees every committer's bytes. The
/// section's `asm volatile` with a memory clobber keeps the compiler from moving the
/// record copy past the commit. On other architectures there is no owner CPU.
///
/// # Invariants
/// - A buffer has an owner only if no other CPU maps to it (`RelayChannel.init`), the
///   build has the x86-64 primitives, glibc registered rseq (`__rseq_size`), and the
///   process registered for the RSEQ membarrier; otherwise `ownerCPU == noOwner`.
/// - Outside this file nothing mutates `position` or a commit word of a shared buffer
///   except through `compareExchangePosition` and `addToCommitWord`, with two
///   exceptions: region initialization at open and in `reset()` (private or idle
///   regions; the first sub-buffer is started through `BufferCore.withoutOwner`, so with
///   locked instructions and no membarrier), and the deliverer's store of 0 into a
///   completed commit word (no writer can touch a completed slot until the deliverer's
///   state store lets it restart).
enum PerCPU {
    /// `ownerCPU` of a buffer without an owner.
    static let noOwner = UInt32.max

    /// Aborted sections retried on the owner CPU before an operation goes remote.
    static let maximumRetries = 8

    /// Whether restartable sequences can carry per-CPU buffers in this process.
    static let isAvailable: Bool = {
        guard CRelayLinux_rseq_available() != 0 else { return false }
        return CRelayLinux_membarrier_rseq_register() == 0
    }()

    /// glibc's offset of the rseq area from the thread pointer (process-wide), cached in
    /// each `BufferCore` and channel so the record path does not load it through the GOT.
    static let rseqOffset: Int = CRelayLinux_rseq_offset()

    /// The `cpu_id` field of the calling thread's rseq area (negative if unregistered).
    /// Only used once `isAvailable` holds, so glibc registered the area.
    @inline(__always)
    static var rseqCPU: Int32 {
        Int32(truncatingIfNeeded: CPU.current(rseqOffset: Self.rseqOffset))
    }
}

extension BufferCore {
    /// A compare-and-exchange of the position word: a restartable sequence on the owner
    /// CPU, else (or for buffers without an owner) a locked CAS.
    ///
    /// On failure `original` is a recent value of the word (the caller retries with it).
    @inline(__always)
    func compareExchangePosition(expected: UInt64, desired: UInt64) -> (exchanged: Bool, original: UInt64) {
        PerCPU.compareExchange(
            self.position, expected: expected, desired: desired, base: self.base, owner: self.ownerCPU,
            rseqOffset: self.rseqOffset)
    }

    /// Adds `amount` to commit word `slot` and returns the sum: a restartable sequence on
    /// the owner CPU, else a locked add.
    @inline(__always)
    func addToCommitWord(slot: UInt64, _ amount: UInt64) -> UInt64 {
        PerCPU.add(
            amount, to: self.commitWord(slot: slot), base: self.base, owner: self.ownerCPU, rseqOffset: self.rseqOffset)
    }
}

// The primitives take the region base and the owner instead of a `BufferCore`, so the
// record path never has to materialize a copy of the struct to call them.
extension PerCPU {
    @inline(__always)
    static func remoteWord(_ base: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (base + RegionLayout.remoteOffset).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    @inline(__always)
    static func compareExchange(
        _ word: UnsafeMutablePointer<Atomic<UInt64>>, expected: UInt64, desired: UInt64,
        base: UnsafeMutableRawPointer, owner: UInt32, rseqOffset: Int
    ) -> (exchanged: Bool, original: UInt64) {
        if owner != Self.noOwner {
            let result = CRelayLinux_rseq_compare_store(
                UnsafeMutableRawPointer(word), expected, desired, UnsafeRawPointer(Self.remoteWord(base)), owner,
                rseqOffset)
            if _fastPath(result == 0) {
                return (true, expected)
            }
            return Self.compareExchangeContended(
                word, expected: expected, desired: desired, base: base, owner: owner, result: result)
        }
        // acquiringAndReleasing: acquires the switcher's publication of the sub-buffer
        // (its own CAS); releases when this thread becomes the switcher or sealer.
        return word.pointee.compareExchange(expected: expected, desired: desired, ordering: .acquiringAndReleasing)
    }

    /// A section failed (`result` 1) or was aborted (-1): retry, report, or go remote.
    @inline(never)
    static func compareExchangeContended(
        _ word: UnsafeMutablePointer<Atomic<UInt64>>, expected: UInt64, desired: UInt64,
        base: UnsafeMutableRawPointer, owner: UInt32, result: Int32
    ) -> (exchanged: Bool, original: UInt64) {
        let remote = Self.remoteWord(base)
        var result = result
        var attempts = 0
        while true {
            attempts += 1
            if result == 1 {
                // acquiring: pairs with the remote thread's releasing decrement.
                if remote.pointee.load(ordering: .acquiring) == 0 {
                    // The word differed: an ordinary CAS failure.
                    return (false, word.pointee.load(ordering: .relaxed))
                }
                break
            }
            // Aborted: interrupted on the owner CPU (retry a few times: a section that
            // keeps aborting, say under a debugger's single-step, goes remote), or not on
            // it (remote).
            if Self.rseqCPU != Int32(bitPattern: owner) || attempts > Self.maximumRetries { break }
            result = CRelayLinux_rseq_compare_store(
                UnsafeMutableRawPointer(word), expected, desired, UnsafeRawPointer(remote), owner, Self.rseqOffset)
            if result == 0 { return (true, expected) }
        }
        return Self.asRemote(base: base, owner: owner) {
            // acquiringAndReleasing: as the locked path in `compareExchange`.
            word.pointee.compareExchange(expected: expected, desired: desired, ordering: .acquiringAndReleasing)
        }
    }

    @inline(__always)
    static func add(
        _ amount: UInt64, to word: UnsafeMutablePointer<Atomic<UInt64>>, base: UnsafeMutableRawPointer, owner: UInt32,
        rseqOffset: Int
    ) -> UInt64 {
        if owner != Self.noOwner {
            let result = CRelayLinux_rseq_add(
                UnsafeMutableRawPointer(word), amount, UnsafeRawPointer(Self.remoteWord(base)), owner, rseqOffset)
            if _fastPath(result.status == 0) {
                return result.sum
            }
            return Self.addContended(amount, to: word, base: base, owner: owner, result: Int32(result.status))
        }
        // acquiringAndReleasing: releases this thread's record bytes (or header/seal
        // fields); acquires every other committer's when this add completes the slot.
        return word.pointee.wrappingAdd(amount, ordering: .acquiringAndReleasing).newValue
    }

    @inline(never)
    static func addContended(
        _ amount: UInt64, to word: UnsafeMutablePointer<Atomic<UInt64>>, base: UnsafeMutableRawPointer,
        owner: UInt32, result: Int32
    ) -> UInt64 {
        var result = result
        var attempts = 0
        // A failed add (1) means a remote operation is in progress: join it. Aborted on
        // the owner CPU: retry a few times, as in `compareExchangeContended`.
        while result == -1 && Self.rseqCPU == Int32(bitPattern: owner) && attempts < Self.maximumRetries {
            attempts += 1
            let retry = CRelayLinux_rseq_add(
                UnsafeMutableRawPointer(word), amount, UnsafeRawPointer(Self.remoteWord(base)), owner, Self.rseqOffset)
            if retry.status == 0 { return retry.sum }
            result = Int32(retry.status)
        }
        return Self.asRemote(base: base, owner: owner) {
            // acquiringAndReleasing: as the locked path in `add`.
            word.pointee.wrappingAdd(amount, ordering: .acquiringAndReleasing).newValue
        }
    }

    /// Runs `body` (locked instructions on the buffer's words) as a remote operation.
    /// For buffers without an owner it just runs `body`.
    static func asRemote<R>(base: UnsafeMutableRawPointer, owner: UInt32, _ body: () -> R) -> R {
        if owner == Self.noOwner {
            return body()
        }
        let remote = Self.remoteWord(base)
        // sequentiallyConsistent: the increment must be globally visible before the
        // membarrier below, which pairs with the sections' loads of `remote`.
        remote.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        if CRelayLinux_membarrier_rseq() != 0 {
            // Registration succeeded (`isAvailable`), so this cannot fail in practice; if
            // it does, the per-CPU guarantee is gone: never continue.
            fatalError("membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) failed after registration")
        }
        let result = body()
        // relaxed: a statistic.
        (base + RegionLayout.remoteOperationsOffset).assumingMemoryBound(to: Atomic<UInt64>.self).pointee
            .wrappingAdd(1, ordering: .relaxed)
        // releasing: our locked operations happen before any section that reads 0 here
        // (pairs with the acquiring load in the contended paths and the sections' loads).
        remote.pointee.wrappingSubtract(1, ordering: .releasing)
        return result
    }
}
