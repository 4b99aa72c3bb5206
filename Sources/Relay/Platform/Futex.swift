internal import CRelayLinux
internal import Glibc
import Synchronization

/// Futex wait/wake on 32-bit words that live inside relay regions.
///
/// Relay regions may be mapped by other processes (memfd, /dev/shm), so these
/// use process-shared futexes. Both sides of a futex must agree on shared vs
/// private, so every futex word in a region is always used through this type.
enum Futex {
    /// Outcome of a wait.
    enum WaitResult {
        /// Woken, interrupted, or the word no longer held `expected`: re-check the condition.
        case recheck
        /// The timeout elapsed.
        case timedOut
    }

    /// Sleeps while `word` holds `expected`, at most `timeoutNanoseconds` (< 0: forever).
    static func wait(
        _ word: UnsafeMutablePointer<Atomic<UInt32>>,
        expected: UInt32,
        timeoutNanoseconds: Int64
    ) -> WaitResult {
        // `Atomic<UInt32>` has the layout of `UInt32` (checked in RegionLayout), so the
        // kernel may treat its address as the futex word.
        let raw = UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self)
        let result = CRelayLinux_futex_wait(raw, expected, timeoutNanoseconds, 1)
        return result == -ETIMEDOUT ? .timedOut : .recheck
    }

    /// Wakes every waiter on `word`.
    static func wakeAll(_ word: UnsafeMutablePointer<Atomic<UInt32>>) {
        let raw = UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self)
        _ = CRelayLinux_futex_wake(raw, Int32.max, 1)
    }
}
