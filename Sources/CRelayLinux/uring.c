//===----------------------------------------------------------------------===//
// liburing shims: macros and flags that do not import into Swift.
//===----------------------------------------------------------------------===//
#ifndef _GNU_SOURCE
#error "CRelayLinux must be compiled with _GNU_SOURCE (see Package.swift)"
#endif

#include "CRelayLinux_uring.h"

#include <sys/resource.h>

unsigned CRelayLinux_io_uring_copy_cqes(struct io_uring *ring, CRelayLinux_completion *out, unsigned max) {
    unsigned head;
    unsigned seen = 0;
    unsigned copied = 0;
    struct io_uring_cqe *cqe;
    // io_uring_for_each_cqe load-acquires the tail (pairs with the kernel's
    // release store after it fills a CQE); io_uring_cq_advance store-releases
    // the head once we are done reading the slots.
    io_uring_for_each_cqe(ring, head, cqe) {
        if (copied == max) {
            break;
        }
        seen++;
        if (cqe->user_data == LIBURING_UDATA_TIMEOUT) {
            continue;
        }
        out[copied].user_data = cqe->user_data;
        out[copied].res = cqe->res;
        out[copied].flags = cqe->flags;
        copied++;
    }
    io_uring_cq_advance(ring, seen);
    return copied;
}

bool CRelayLinux_io_uring_cq_needs_flush(const struct io_uring *ring) {
    // The kernel updates sq_flags with atomic RMW operations; a relaxed load is
    // what liburing's IO_URING_READ_ONCE does for the same check.
    unsigned flags = __atomic_load_n(ring->sq.kflags, __ATOMIC_RELAXED);
    return (flags & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) != 0;
}

void CRelayLinux_io_uring_prep_futex_wait(struct io_uring_sqe *sqe, uint32_t *word, uint32_t expected,
                                          bool private_futex) {
    // Same layout as liburing >= 2.5's io_uring_prep_futex_wait(sqe, word,
    // expected, FUTEX_BITSET_MATCH_ANY, flags, 0): prep_rw puts the futex2
    // flags in fd, the word in addr and the expected value in off (as u64).
    unsigned flags = FUTEX2_SIZE_U32 | (private_futex ? FUTEX2_PRIVATE : 0);
    io_uring_prep_rw(CRelayLinux_IORING_OP_FUTEX_WAIT, sqe, (int)flags, word, 0, (uint64_t)expected);
    // Wake bitset: all bits, so any FUTEX_WAKE on the word matches.
    sqe->addr3 = 0xffffffffu;
}

uint64_t CRelayLinux_memlock_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
        return UINT64_MAX;
    }
    return (uint64_t)limit.rlim_cur;
}
