//===----------------------------------------------------------------------===//
// CPU identity, futexes and barriers for the relay engine.
//===----------------------------------------------------------------------===//
#ifndef CRELAYLINUX_CPU_H
#define CRELAYLINUX_CPU_H

#include <stdint.h>
#include <stddef.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

// glibc >= 2.35 registers an rseq area for every thread and exports where it is.
// We declare the two symbols ourselves instead of including <sys/rseq.h>, which
// needs _GNU_SOURCE in the importing translation unit (Swift's importer does not
// define it). The declarations match glibc's exactly.
extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;

/// Slow path of `CRelayLinux_current_cpu`: sched_getcpu(3), or 0 if it fails.
uint32_t CRelayLinux_sched_getcpu(void);

/// The CPU the calling thread runs on right now.
///
/// Reads `cpu_id` from the thread's rseq area (kernel-maintained, one load, no
/// syscall). Falls back to sched_getcpu(3) when rseq is not registered (for
/// example GLIBC_TUNABLES=glibc.pthread.rseq=0). The answer may be stale by the
/// time the caller uses it: threads migrate. Callers must only use it to pick a
/// buffer, never for mutual exclusion.
static inline uint32_t CRelayLinux_current_cpu(void) {
    if (__rseq_size >= 8) {
        // struct rseq { u32 cpu_id_start; u32 cpu_id; ... }: cpu_id is at offset 4.
        const volatile uint32_t *cpu_id =
            (const volatile uint32_t *)((const char *)__builtin_thread_pointer() + __rseq_offset + 4);
        uint32_t cpu = *cpu_id;
        if ((int32_t)cpu >= 0) {
            return cpu;
        }
    }
    return CRelayLinux_sched_getcpu();
}

/// Number of configured ("possible") CPUs, at least 1.
uint32_t CRelayLinux_possible_cpus(void);

/// A compiler-only barrier: the compiler may not move memory accesses across it.
/// Used with membarrier(2) for the asymmetric handshake of exclusive writers.
static inline void CRelayLinux_compiler_barrier(void) {
    __asm__ __volatile__("" ::: "memory");
}

/// FUTEX_WAIT on a 32-bit word. `shared` selects a process-shared futex (for
/// words inside memory another process may map). `timeout_ns` < 0 waits forever.
/// Returns 0 when woken (or spuriously), else -errno (-EAGAIN: value changed,
/// -ETIMEDOUT, -EINTR).
int CRelayLinux_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns, int shared);

/// FUTEX_WAKE up to `count` waiters. Returns the number woken or -errno.
int CRelayLinux_futex_wake(uint32_t *word, int count, int shared);

/// Registers the process for MEMBARRIER_CMD_PRIVATE_EXPEDITED.
/// Returns 0 on success, -errno when membarrier is unavailable.
int CRelayLinux_membarrier_register(void);

/// Issues MEMBARRIER_CMD_PRIVATE_EXPEDITED: every running thread of this process
/// executes a full memory barrier before this returns. Returns 0 or -errno.
int CRelayLinux_membarrier(void);

/// memfd_create(2) with MFD_CLOEXEC. Returns the fd or -errno.
int CRelayLinux_memfd_create(const char *name);

/// statfs(2) f_type of the filesystem holding `path` (0x01021994 is tmpfs).
/// Returns 0 and stores the type, or -errno.
int CRelayLinux_filesystem_type(const char *path, int64_t *type);

/// Names the calling thread (pthread_setname_np; at most 15 characters).
void CRelayLinux_set_thread_name(const char *name);

/// CLOCK_REALTIME in nanoseconds since the epoch.
static inline uint64_t CRelayLinux_realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/// CLOCK_MONOTONIC in nanoseconds.
static inline uint64_t CRelayLinux_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#ifdef __cplusplus
}
#endif

#endif
