#ifndef C_BENCH_SUPPORT_H
#define C_BENCH_SUPPORT_H

/// Pins the calling thread to `cpu` (sched_setaffinity(2), which Glibc's Swift overlay does
/// not export). Returns 0, or the errno value.
int CBenchSupport_pin_to_cpu(int cpu);

/// The number of CPUs the process may run on (its affinity mask at start).
int CBenchSupport_usable_cpus(void);

#include <stdint.h>

/// Sleeps while the 32-bit word at `word` holds `expected` (futex(2) FUTEX_WAIT_PRIVATE, which
/// Glibc's Swift overlay cannot call: syscall(2) is variadic). May return early: re-check.
void CBenchSupport_futex_wait(void *word, uint32_t expected);

/// Wakes every thread sleeping on `word` (FUTEX_WAKE_PRIVATE).
void CBenchSupport_futex_wake_all(void *word);

/// Reserves the first `bytes` of the file's blocks without changing its size
/// (fallocate(2) with FALLOC_FL_KEEP_SIZE, which Glibc's Swift overlay does not export), as
/// the file sink's preallocation does. Returns 0, or the errno value.
int CBenchSupport_reserve_blocks(int fd, int64_t bytes);

#endif
