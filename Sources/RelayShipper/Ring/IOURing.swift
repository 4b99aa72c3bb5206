internal import CRelayLinux
package import SystemPackage

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Musl)
internal import Musl
#endif

/// One io_uring instance (liburing 2.3), owned by exactly one thread.
///
/// `IOURing` owns a heap-allocated `struct io_uring` (allocated once, never
/// copied: liburing keeps pointers into it) and tears the ring down in
/// `deinit`. It is the ring of the shipper thread and of the daemon's
/// accept/wake-up loop; ownership and flags follow swift-system's `IORing`,
/// the submit/reap mechanics follow swift-nio's `LinuxUring`.
///
/// ## Threading: single issuer
///
/// The ring is set up with `IORING_SETUP_SINGLE_ISSUER` (kernel 6.0) when the
/// kernel has it. The kernel then binds the ring to the thread that created it:
/// only that thread may submit (`io_uring_enter`) or register buffers; any
/// other thread gets `EEXIST`. With `IORING_SETUP_DEFER_TASKRUN` (kernel 6.1)
/// completions also only become visible when the owner enters the kernel
/// (``submitAndWait(minCompletions:timeoutNanoseconds:)`` or ``reap(into:)``).
/// So: create the ring on a dedicated OS thread (never a Swift concurrency
/// task, which can hop threads at every suspension point) and use it only
/// there. The type is deliberately not `Sendable`. Debug builds assert the
/// owner on every kernel entry.
///
/// ## Memory referenced by SQEs
///
/// - Warning: Every pointer given to an operation (write and send buffers,
///   read and receive buffers, futex words, socket addresses) must stay valid,
///   and must not be reused, until the operation's final completion has been
///   reaped: the CQE without ``Completion/hasMore``; for a zero-copy send that
///   is the ``Completion/isNotification`` CQE. The kernel may read or write the
///   memory at any time until then, even after the ring is torn down for
///   operations already in flight (teardown cancels and waits for them).
///
/// ## Usage
///
/// ```swift
/// var ring = try IOURing(entries: 256, cqEntries: 1024)
/// var completions = CompletionBuffer(capacity: 256)
/// try ring.write(fd, bytes, at: offset, userData: cookie.rawValue)
/// try ring.submitAndWait(minCompletions: 1, timeoutNanoseconds: 10_000_000)
/// try ring.reap(into: &completions)
/// for i in 0..<completions.count { handle(completions[i]) }
/// ```
package struct IOURing: ~Copyable {
    /// The liburing state. Allocated once in `init`, released in `deinit`.
    let ring: UnsafeMutablePointer<io_uring>

    /// The thread that created the ring (the only one allowed to submit).
    private let owner: pthread_t

    /// What the kernel granted: flags, features, sizes, and why preferred flags
    /// were refused. Log ``Setup/note`` once at start-up.
    package let setup: Setup

    /// How many buffers are registered (see ``registerBuffers(_:)``).
    package internal(set) var registeredBufferCount: Int = 0

    /// Creates a ring on the calling thread, which becomes its owner.
    ///
    /// Tries, in order, and falls back to the next set only when the kernel
    /// answers `EINVAL` (it does not know a flag):
    ///
    /// 1. `SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL` (6.1)
    /// 2. `SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL` (6.0)
    /// 3. `COOP_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL` (5.19)
    /// 4. `SUBMIT_ALL` (5.18)
    /// 5. no flags
    ///
    /// `CQSIZE` is added to each when `cqEntries` is given. `SQPOLL` is never
    /// used (it burns a core) and neither is `NO_SQARRAY`, which liburing 2.3
    /// does not support (its `io_uring_queue_mmap` writes the SQ array anyway
    /// and submissions hang). After setup the ring fd is registered
    /// (`io_uring_register_ring_fd`, 5.18) when the kernel allows it, which
    /// saves an fd lookup per `io_uring_enter`.
    ///
    /// - Parameters:
    ///   - entries: submission queue size, 1...32768 (the kernel rounds up to
    ///     a power of two).
    ///   - cqEntries: completion queue size, at least `entries`, at most
    ///     65536; `nil` for the kernel's default of twice the SQ. Zero-copy
    ///     sends post two CQEs each: size the CQ for that.
    /// - Throws: `Errno` from `io_uring_setup`: `EPERM` (disabled by sysctl
    ///   `kernel.io_uring_disabled` or blocked by seccomp), `ENOSYS` (no
    ///   io_uring in this kernel), `ENOMEM` (RLIMIT_MEMLOCK too small for the
    ///   rings), `EMFILE`/`ENFILE`; `ENOTSUP` when the kernel lacks
    ///   `IORING_FEAT_NODROP` (< 5.5), without which the kernel may drop
    ///   completions on CQ overflow. ``IOURingProbe`` turns these into
    ///   messages that say how to fix them.
    package init(entries: UInt32, cqEntries: UInt32? = nil) throws(Errno) {
        precondition((1...32768).contains(entries), "IOURing entries must be in 1...32768")
        if let cqEntries {
            precondition(cqEntries >= entries && cqEntries <= 65536, "IOURing cqEntries must be in entries...65536")
        }

        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        ring.initialize(to: io_uring())
        let setup: Setup
        do {
            setup = try Self.setUp(ring, entries: entries, cqEntries: cqEntries)
        } catch {
            ring.deinitialize(count: 1)
            ring.deallocate()
            throw error
        }
        self.ring = ring
        self.owner = pthread_self()
        self.setup = setup
    }

    deinit {
        // Cancels what is still in flight, waits for it, unmaps the rings and
        // closes the fd (and unregisters the ring fd and buffers with it).
        io_uring_queue_exit(self.ring)
        self.ring.deinitialize(count: 1)
        self.ring.deallocate()
    }

    /// One set of setup flags to try.
    private struct Attempt {
        var flags: UInt32
        var name: String
        var kernel: String
    }

    private static func setUp(
        _ ring: UnsafeMutablePointer<io_uring>,
        entries: UInt32,
        cqEntries: UInt32?
    ) throws(Errno) -> Setup {
        let taskrunFlag = UInt32(IORING_SETUP_TASKRUN_FLAG)
        let submitAll = UInt32(IORING_SETUP_SUBMIT_ALL)
        let attempts = [
            Attempt(
                flags: UInt32(IORING_SETUP_SINGLE_ISSUER) | UInt32(IORING_SETUP_DEFER_TASKRUN) | taskrunFlag
                    | submitAll,
                name: "SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL",
                kernel: "6.1"
            ),
            Attempt(
                flags: UInt32(IORING_SETUP_SINGLE_ISSUER) | UInt32(IORING_SETUP_COOP_TASKRUN) | taskrunFlag
                    | submitAll,
                name: "SINGLE_ISSUER|COOP_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL",
                kernel: "6.0"
            ),
            Attempt(
                flags: UInt32(IORING_SETUP_COOP_TASKRUN) | taskrunFlag | submitAll,
                name: "COOP_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL",
                kernel: "5.19"
            ),
            Attempt(flags: submitAll, name: "SUBMIT_ALL", kernel: "5.18"),
            Attempt(flags: 0, name: "no flags", kernel: "5.5"),
        ]
        var refused: [String] = []
        for (position, attempt) in attempts.enumerated() {
            var params = io_uring_params()
            params.flags = attempt.flags
            if let cqEntries {
                params.flags |= UInt32(IORING_SETUP_CQSIZE)
                params.cq_entries = cqEntries
            }
            let result = io_uring_queue_init_params(entries, ring, &params)
            if result == -EINVAL && position < attempts.count - 1 {
                refused.append("\(attempt.name) refused (EINVAL, needs kernel ≥ \(attempt.kernel))")
                continue
            }
            if result < 0 {
                throw Errno(rawValue: -result)
            }
            // Without NODROP the kernel silently drops CQEs when the CQ is full;
            // the shipper's accounting would then never see some writes finish.
            guard params.features & UInt32(IORING_FEAT_NODROP) != 0 else {
                io_uring_queue_exit(ring)
                throw Errno.notSupported
            }
            // Registering the ring fd is an optimisation: EINVAL (< 5.18) or
            // EBUSY (all slots taken) just leaves the plain fd in use.
            let registeredRingFD = io_uring_register_ring_fd(ring) == 1
            return Setup(
                flags: ring.pointee.flags,
                features: params.features,
                submissionQueueEntries: params.sq_entries,
                completionQueueEntries: params.cq_entries,
                registeredRingFD: registeredRingFD,
                refused: refused
            )
        }
        // Unreachable: the last attempt either succeeds or throws.
        throw Errno.invalidArgument
    }

    /// Debug-only check of the single-issuer rule.
    @inline(__always)
    func assertOwner(_ function: StaticString = #function) {
        assert(
            pthread_equal(self.owner, pthread_self()) != 0,
            "IOURing.\(function) called off the ring's owner thread"
        )
    }
}

// MARK: - Setup report

extension IOURing {
    /// The outcome of ring setup: what the kernel granted and what it refused.
    package struct Setup: Sendable, CustomStringConvertible {
        /// `IORING_SETUP_*` flags in effect.
        package let flags: UInt32
        /// `IORING_FEAT_*` features the kernel reported.
        package let features: UInt32
        /// Submission queue size (a power of two).
        package let submissionQueueEntries: UInt32
        /// Completion queue size (a power of two).
        package let completionQueueEntries: UInt32
        /// Whether `io_uring_register_ring_fd` succeeded.
        package let registeredRingFD: Bool
        /// Why each preferred flag set was refused, in order tried.
        package let refused: [String]

        /// Only the creating thread may submit (`IORING_SETUP_SINGLE_ISSUER`).
        package var singleIssuer: Bool { self.flags & UInt32(IORING_SETUP_SINGLE_ISSUER) != 0 }
        /// Completions are only posted when the owner enters the kernel.
        package var deferTaskrun: Bool { self.flags & UInt32(IORING_SETUP_DEFER_TASKRUN) != 0 }
        /// Completions run without interrupting the owner (`COOP_TASKRUN`).
        package var coopTaskrun: Bool { self.flags & UInt32(IORING_SETUP_COOP_TASKRUN) != 0 }
        /// A failing SQE does not stop the rest of a submission batch.
        package var submitAll: Bool { self.flags & UInt32(IORING_SETUP_SUBMIT_ALL) != 0 }

        /// One line for the start-up log, e.g.
        /// `io_uring: SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL|CQSIZE, sq=256 cq=1024, ring fd registered`.
        package var note: String {
            var names: [String] = []
            let known: [(UInt32, String)] = [
                (UInt32(IORING_SETUP_SINGLE_ISSUER), "SINGLE_ISSUER"),
                (UInt32(IORING_SETUP_DEFER_TASKRUN), "DEFER_TASKRUN"),
                (UInt32(IORING_SETUP_COOP_TASKRUN), "COOP_TASKRUN"),
                (UInt32(IORING_SETUP_TASKRUN_FLAG), "TASKRUN_FLAG"),
                (UInt32(IORING_SETUP_SUBMIT_ALL), "SUBMIT_ALL"),
                (UInt32(IORING_SETUP_CQSIZE), "CQSIZE"),
            ]
            for (bit, name) in known where self.flags & bit != 0 {
                names.append(name)
            }
            var line = "io_uring: \(names.isEmpty ? "no setup flags" : names.joined(separator: "|"))"
            line += ", sq=\(self.submissionQueueEntries) cq=\(self.completionQueueEntries)"
            line += self.registeredRingFD ? ", ring fd registered" : ", ring fd not registered"
            if !self.refused.isEmpty {
                line += "; fell back: " + self.refused.joined(separator: "; ")
            }
            return line
        }

        /// Same as ``note``.
        package var description: String { self.note }
    }
}

// MARK: - Submission

extension IOURing {
    /// SQEs prepared but not yet taken by the kernel.
    package var pendingSubmissions: Int {
        Int(io_uring_sq_ready(self.ring))
    }

    /// Free SQ slots.
    package var submissionQueueSpace: Int {
        Int(io_uring_sq_space_left(self.ring))
    }

    /// CQEs ready in the CQ ring (not counting deferred work or overflow).
    package var readyCompletions: Int {
        Int(io_uring_cq_ready(self.ring))
    }

    /// Whether completions are waiting in the kernel's overflow list because
    /// the CQ ring was full (`IORING_SQ_CQ_OVERFLOW`). ``reap(into:)`` flushes
    /// them; nothing is lost (the kernel has `IORING_FEAT_NODROP`).
    package var completionQueueOverflowed: Bool {
        io_uring_cq_has_overflow(self.ring)
    }

    /// Hands every prepared SQE to the kernel.
    ///
    /// Loops while SQEs remain: a submission can stop early (an SQE that
    /// fails to prepare ends the batch unless `SUBMIT_ALL` is set), and the
    /// rest would otherwise sit in the SQ unnoticed (liburing#309; swift-nio's
    /// `io_uring_flush` loops the same way). `EINTR` is retried. `EBUSY` and
    /// `EAGAIN` mean the kernel wants completions reaped first: the method
    /// returns early and ``pendingSubmissions`` stays non-zero; reap, then
    /// submit again.
    ///
    /// - Returns: how many SQEs the kernel took.
    /// - Throws: `Errno` for anything else, e.g. `EEXIST` when called from a
    ///   thread other than the owner (single issuer), `ENOMEM` when the kernel
    ///   cannot allocate request memory, `EBADR` when completions were lost.
    @discardableResult
    package mutating func submit() throws(Errno) -> Int {
        self.assertOwner()
        var submitted = 0
        while io_uring_sq_ready(self.ring) > 0 {
            let result = io_uring_submit(self.ring)
            if result > 0 {
                submitted += Int(result)
                continue
            }
            if result == 0 {
                // Nothing consumed and no error: do not spin; the SQEs stay
                // queued for the next call.
                break
            }
            switch -result {
            case EINTR:
                continue
            case EAGAIN, EBUSY:
                return submitted
            default:
                throw Errno(rawValue: -result)
            }
        }
        return submitted
    }

    /// Submits everything prepared and waits until at least `minCompletions`
    /// completions are ready, or the timeout passes.
    ///
    /// Uses `io_uring_submit_and_wait_timeout` (one `io_uring_enter` with
    /// `IORING_ENTER_EXT_ARG` on kernels ≥ 5.11). The wait also runs deferred
    /// task work (`DEFER_TASKRUN`) and flushes CQ overflow. With
    /// `minCompletions == 0` it does not wait at all: it submits and runs
    /// deferred work (`io_uring_submit_and_get_events`).
    ///
    /// A timeout (`ETIME`), a signal (`EINTR`) and kernel back-pressure
    /// (`EBUSY`/`EAGAIN`) are not errors: the method returns and the caller
    /// reaps whatever is there.
    ///
    /// - Parameters:
    ///   - minCompletions: completions to wait for.
    ///   - timeoutNanoseconds: the longest wait, or `nil` to wait without a
    ///     limit.
    /// - Returns: how many SQEs the kernel took.
    /// - Throws: `Errno` as ``submit()``.
    @discardableResult
    package mutating func submitAndWait(minCompletions: UInt32, timeoutNanoseconds: Int64? = nil) throws(Errno) -> Int {
        self.assertOwner()
        let before = Int(io_uring_sq_ready(self.ring))
        let result: Int32
        if minCompletions == 0 {
            result = io_uring_submit_and_get_events(self.ring)
        } else if let timeoutNanoseconds {
            precondition(timeoutNanoseconds >= 0, "timeoutNanoseconds must not be negative")
            var timeout = __kernel_timespec(
                tv_sec: timeoutNanoseconds / 1_000_000_000,
                tv_nsec: timeoutNanoseconds % 1_000_000_000
            )
            var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
            result = io_uring_submit_and_wait_timeout(self.ring, &cqe, minCompletions, &timeout, nil)
        } else {
            var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
            result = io_uring_submit_and_wait_timeout(self.ring, &cqe, minCompletions, nil, nil)
        }
        // liburing 2.3 returns the submitted count on some paths and 0 or the
        // wait result on others; the SQ tells the truth either way.
        var submitted = before - Int(io_uring_sq_ready(self.ring))
        if result < 0 {
            switch -result {
            case ETIME, EINTR:
                break
            case EAGAIN, EBUSY:
                return submitted
            default:
                throw Errno(rawValue: -result)
            }
        }
        if io_uring_sq_ready(self.ring) > 0 {
            submitted += try self.submit()
        }
        return submitted
    }
}

// MARK: - Completion

extension IOURing {
    /// Copies ready completions into `buffer` (replacing its contents) and
    /// returns their CQ slots to the kernel.
    ///
    /// Allocation-free: one C call copies a batch (`io_uring_for_each_cqe`)
    /// and advances the CQ head once. If that leaves room in `buffer` while
    /// the kernel holds completions back (CQ overflow list, or deferred task
    /// work flagged by `TASKRUN_FLAG`), it enters the kernel once with
    /// `GETEVENTS` to flush them and copies again. Completions are never
    /// lost: the kernel has `IORING_FEAT_NODROP`, so an overflowed CQ parks
    /// CQEs in a list until reaped. Call it repeatedly until it returns
    /// fewer than `buffer.capacity` to drain everything.
    ///
    /// The caller may prepare and submit new SQEs while it walks `buffer`.
    ///
    /// - Returns: the number of completions now in `buffer`.
    /// - Throws: `Errno` from the flush, e.g. `EBADR` (the kernel could not
    ///   allocate an overflow entry and dropped completions) or `EEXIST`
    ///   (not the owner thread); only when nothing was copied, so no
    ///   completion is ever discarded by a throw.
    @discardableResult
    package mutating func reap(into buffer: inout CompletionBuffer) throws(Errno) -> Int {
        let capacity = UInt32(buffer.capacity)
        var count = CRelayLinux_io_uring_copy_cqes(self.ring, buffer.storage, capacity)
        if count < capacity && CRelayLinux_io_uring_cq_needs_flush(self.ring) {
            self.assertOwner()
            let result = io_uring_get_events(self.ring)
            if result < 0 && count == 0 {
                switch -result {
                case EINTR, EAGAIN, EBUSY:
                    break
                default:
                    buffer.count = 0
                    throw Errno(rawValue: -result)
                }
            }
            count += CRelayLinux_io_uring_copy_cqes(self.ring, buffer.storage + Int(count), capacity - count)
        }
        buffer.count = Int(count)
        return Int(count)
    }
}
