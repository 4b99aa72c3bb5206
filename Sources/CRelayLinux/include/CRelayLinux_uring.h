//===----------------------------------------------------------------------===//
// liburing 2.3 for Swift.
//
// liburing.h defines _XOPEN_SOURCE, which changes how glibc declares fd_set and
// friends; Swift then sees two incompatible definitions. Including the libc
// headers first, before liburing.h, fixes that (swift-nio's CNIOLinux does the
// same). <linux/io_uring.h> comes first too: it is newer than the copy bundled
// with liburing 2.3 (it has IORING_SEND_ZC_REPORT_USAGE) and both use the same
// include guard.
//===----------------------------------------------------------------------===//
#ifndef CRELAYLINUX_URING_H
#define CRELAYLINUX_URING_H

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/select.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <fcntl.h>
#include <sched.h>
#include <linux/futex.h>
#include <linux/io_uring.h>
#include <liburing.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: Constants missing from older uapi headers.
//
// Both are macros in <linux/io_uring.h> >= 6.2; liburing 2.3's bundled copy and
// older linux-libc-dev lack them. The values are kernel ABI.

#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif

#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

// futex2 flags (<linux/futex.h> >= 6.7), used by IORING_OP_FUTEX_WAIT.
#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 0x02
#endif
#ifndef FUTEX2_PRIVATE
#define FUTEX2_PRIVATE 128
#endif

// IORING_OP_FUTEX_WAIT / _WAKE (kernel 6.7) are members of `enum io_uring_op`
// in new headers, not macros, so `#ifndef IORING_OP_FUTEX_WAIT` cannot detect
// them. We define prefixed constants instead of the bare names: a bare macro
// would silently shadow the enum constant once the installed header has it,
// and Swift would see two declarations of one name.
#define CRelayLinux_IORING_OP_FUTEX_WAIT 51
#define CRelayLinux_IORING_OP_FUTEX_WAKE 52

// MARK: SQE flags.
//
// IOSQE_* are written as `(1U << IOSQE_*_BIT)` with enum operands, which the
// Swift importer rejects ("macro unavailable: structure not supported"). These
// constants carry the same values (swift-nio shims IOSQE_IO_LINK the same way).

static const uint8_t CRelayLinux_IOSQE_FIXED_FILE = IOSQE_FIXED_FILE;
static const uint8_t CRelayLinux_IOSQE_IO_DRAIN = IOSQE_IO_DRAIN;
static const uint8_t CRelayLinux_IOSQE_IO_LINK = IOSQE_IO_LINK;
static const uint8_t CRelayLinux_IOSQE_IO_HARDLINK = IOSQE_IO_HARDLINK;
static const uint8_t CRelayLinux_IOSQE_ASYNC = IOSQE_ASYNC;
static const uint8_t CRelayLinux_IOSQE_BUFFER_SELECT = IOSQE_BUFFER_SELECT;
static const uint8_t CRelayLinux_IOSQE_CQE_SKIP_SUCCESS = IOSQE_CQE_SKIP_SUCCESS;

// MARK: Completions.

/// One completion, copied out of the CQ ring so the CQE slot can be returned to
/// the kernel at once. Mirrors the first three fields of `struct io_uring_cqe`.
typedef struct CRelayLinux_completion {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} CRelayLinux_completion;

_Static_assert(sizeof(CRelayLinux_completion) == 16, "CRelayLinux_completion is 16 bytes");

/// Copies up to `max` ready CQEs into `out`, then returns their slots to the
/// kernel with a single io_uring_cq_advance. Returns how many were copied.
///
/// Wraps io_uring_for_each_cqe, a macro the Swift importer cannot use. Never
/// enters the kernel: deferred task work and the overflow list are flushed by
/// the caller (see CRelayLinux_io_uring_cq_needs_flush). CQEs carrying
/// LIBURING_UDATA_TIMEOUT are consumed but not copied: liburing 2.3 posts them
/// itself for io_uring_submit_and_wait_timeout on kernels without
/// IORING_FEAT_EXT_ARG (< 5.11).
unsigned CRelayLinux_io_uring_copy_cqes(struct io_uring *ring, CRelayLinux_completion *out, unsigned max);

/// True when completions are held back in the kernel: the CQ overflowed into
/// the kernel's overflow list (IORING_SQ_CQ_OVERFLOW) or task work is pending
/// (IORING_SQ_TASKRUN, set with IORING_SETUP_TASKRUN_FLAG). Either way only an
/// io_uring_enter(GETEVENTS) by the ring owner moves them into the CQ ring.
/// Reads the kernel-written flags word with a relaxed atomic load.
bool CRelayLinux_io_uring_cq_needs_flush(const struct io_uring *ring);

// MARK: SQE preparation helpers liburing 2.3 lacks.

/// Prepares IORING_OP_FUTEX_WAIT (kernel 6.7) on a 32-bit futex word.
///
/// liburing 2.3 has no io_uring_prep_futex_wait, so this fills the SQE the way
/// liburing >= 2.5 does: fd carries the FUTEX2_* flags, addr the word, off the
/// expected value, addr3 the wake bitset mask (all bits: match any waker).
/// The completion is 0 when woken, -EAGAIN when `*word != expected` at arm
/// time, -ECANCELED when cancelled. `private_futex` must match the waker:
/// FUTEX_WAKE_PRIVATE only reaches private waiters, FUTEX_WAKE only shared
/// ones (on memory another process maps, a private waiter is never woken).
void CRelayLinux_io_uring_prep_futex_wait(struct io_uring_sqe *sqe, uint32_t *word, uint32_t expected,
                                          bool private_futex);

// MARK: Limits.

/// The soft RLIMIT_MEMLOCK in bytes, UINT64_MAX when unlimited or unknown.
///
/// Registered buffers (and, on recent kernels, ring memory) count against it.
/// glibc defines RLIMIT_MEMLOCK as a macro naming an enum constant of
/// `enum __rlimit_resource`, which the Swift importer does not resolve.
uint64_t CRelayLinux_memlock_limit(void);

#ifdef __cplusplus
}
#endif

#endif
