#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "CBenchSupport.h"

void CBenchSupport_futex_wait(void *word, uint32_t expected) {
    // Returns at once if *word != expected (EAGAIN), on a wake, or on a signal: callers re-check.
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

void CBenchSupport_futex_wake_all(void *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}
