internal import CRelayLinux
internal import Glibc
public import Synchronization

/// The heavy side of an asymmetric memory fence (membarrier(2)).
///
/// Exclusive writers (`RelayExclusiveWriter`) announce "I am inside a write" with a
/// plain store followed by a *compiler* barrier, then read the flush-request word.
/// A thread that wants to touch that buffer (flush, close) stores the request and
/// then calls `heavy()`: `MEMBARRIER_CMD_PRIVATE_EXPEDITED` makes every running
/// thread of the process execute a full barrier. Afterwards, either the writer's
/// "busy" store is visible to the requester, or the writer's next read sees the
/// request. That is Dekker's mutual exclusion with the cost moved entirely to the
/// rare side (a flush every switch-timer period), so the per-record path has no
/// locked instruction.
///
/// When membarrier is unavailable (old kernels, seccomp), `isExpedited` is false and
/// writers must use a real full fence on their side instead (`light()`); exclusive writers
/// then write every record out of line. The environment variable
/// `RELAY_DISABLE_MEMBARRIER` (any value) makes a process behave that way where membarrier
/// exists: for tests of that path, and for hosts where the inter-processor interrupts of
/// expedited membarrier are unwelcome (each flush of an exclusive buffer sends them to every
/// CPU running a thread of the process).
@usableFromInline
enum AsymmetricFence {
    /// Whether the process registered for private expedited membarrier.
    static let isExpedited: Bool = getenv("RELAY_DISABLE_MEMBARRIER") == nil && CRelayLinux_membarrier_register() == 0

    /// The writer side: a compiler barrier when membarrier is available (`expedited`,
    /// the cached value of ``isExpedited``), else a full fence.
    ///
    /// The compiler barrier is an acquire-release fence. Its release half keeps the
    /// compiler from sinking the writer's earlier "busy" store below it, and its acquire
    /// half keeps it from hoisting the later flush-request load above it, so the two stay
    /// in program order; the processor may still reorder them (store buffer), which is
    /// what the requester's membarrier covers. On x86-64 the fence emits no instruction
    /// (the C equivalent is `asm volatile("" ::: "memory")`); on arm64 it is a `dmb ish`,
    /// more than needed but correct. Pure Swift, so the writer's `@inlinable` fast path
    /// can use it from other modules.
    @inlinable
    @inline(__always)
    static func light(expedited: Bool) {
        if expedited {
            atomicMemoryFence(ordering: .acquiringAndReleasing)
        } else {
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        }
    }

    /// The requester side: a process-wide barrier (or a local full fence when the
    /// writers already pay for full fences).
    static func heavy() {
        if self.isExpedited {
            if CRelayLinux_membarrier() != 0 {
                // Registration succeeded, so this cannot fail in practice; if it does we
                // must not silently lose the guarantee.
                fatalError("membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed after registration")
            }
        } else {
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        }
    }
}
