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

/// The `cpu_id` of the calling thread's rseq area at `rseq_offset` (glibc's
/// `__rseq_offset`, see `CRelayLinux_rseq_offset`): one load, no syscall. Only valid
/// when glibc registered rseq (`__rseq_size` >= 8); (uint32_t)-1 on a thread without
/// an rseq area.
static inline uint32_t CRelayLinux_rseq_cpu_id_at(ptrdiff_t rseq_offset) {
    // struct rseq { u32 cpu_id_start; u32 cpu_id; ... }: cpu_id is at offset 4.
    return *(const volatile uint32_t *)((const char *)__builtin_thread_pointer() + rseq_offset + 4);
}

/// The CPU the calling thread runs on right now.
///
/// Reads `cpu_id` from the thread's rseq area (kernel-maintained, one load, no
/// syscall). Falls back to sched_getcpu(3) when rseq is not registered (for
/// example GLIBC_TUNABLES=glibc.pthread.rseq=0). The answer may be stale by the
/// time the caller uses it: threads migrate. Callers must only use it to pick a
/// buffer, never for mutual exclusion.
static inline uint32_t CRelayLinux_current_cpu(void) {
    if (__rseq_size >= 8) {
        uint32_t cpu = CRelayLinux_rseq_cpu_id_at(__rseq_offset);
        if ((int32_t)cpu >= 0) {
            return cpu;
        }
    }
    return CRelayLinux_sched_getcpu();
}

//===----------------------------------------------------------------------===//
// Restartable sequences: per-CPU compare-and-store and add without a locked
// instruction (x86-64). The technique of librseq's rseq_cmpeqv_storev and
// rseq_addv, specialised for the relay engine's buffer words.
//
// A critical section runs from label 1 to label 2 (the single committing store).
// If the thread is preempted, migrated or signalled inside it, the kernel moves it
// to the abort label 4 (preceded by glibc's x86 RSEQ_SIG), so the section either
// completes on `cpu` without interruption or has no effect. It is atomic against
// every other thread that runs on `cpu`; threads on other CPUs must announce
// themselves in `*remote` and issue MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ first
// (which aborts sections in flight), and every section fails while `*remote` != 0.
//
// Results: 0 done, 1 failed (the word differs, or `*remote` != 0), -1 aborted
// (not on `cpu`, or interrupted: retry or take the remote path).
//===----------------------------------------------------------------------===//

/// Whether this build has the restartable-sequence primitives below.
#if defined(__x86_64__)
#define CRELAYLINUX_HAS_RSEQ_OPS 1
#else
#define CRELAYLINUX_HAS_RSEQ_OPS 0
#endif

/// 1 if the primitives exist and glibc registered an rseq area for this thread.
static inline int CRelayLinux_rseq_available(void) {
#if CRELAYLINUX_HAS_RSEQ_OPS
    return __rseq_size >= 20 ? 1 : 0;
#else
    return 0;
#endif
}

/// glibc's `__rseq_offset` (the rseq area's offset from the thread pointer), for
/// callers that cache it next to their hot data instead of loading it through the GOT.
static inline ptrdiff_t CRelayLinux_rseq_offset(void) {
    return __rseq_offset;
}

#if CRELAYLINUX_HAS_RSEQ_OPS
// The descriptor (struct rseq_cs: version, flags, start_ip, post_commit_offset,
// abort_ip) in section __rseq_cs; the abort handler in __rseq_failure.
#define CRELAYLINUX_RSEQ_TABLE                                                  \
    ".pushsection __rseq_cs, \"aw\"\n\t"                                     \
    ".balign 32\n\t"                                                          \
    "3:\n\t"                                                                  \
    ".long 0x0, 0x0\n\t"                                                      \
    ".quad 1f, (2f - 1f), 4f\n\t"                                             \
    ".popsection\n\t"                                                         \
    "leaq 3b(%%rip), %%rax\n\t"                                               \
    "movq %%rax, %%fs:8(%[rseq_offset])\n\t"                                  \
    "1:\n\t"                                                                  \
    "cmpl %[cpu], %%fs:4(%[rseq_offset])\n\t"                                 \
    "jnz 4f\n\t"                                                              \
    "cmpq $0, %[remote]\n\t"                                                  \
    "jnz %l[failed]\n\t"

#define CRELAYLINUX_RSEQ_ABORT                                                  \
    ".pushsection __rseq_failure, \"ax\"\n\t"                                \
    ".byte 0x0f, 0xb9, 0x3d\n\t"                                              \
    ".long 0x53053053\n\t"                                                    \
    "4:\n\t"                                                                  \
    "jmp %l[aborted]\n\t"                                                     \
    ".popsection\n\t"
#endif

/// On `cpu`: if `*remote` == 0 and `*word` == `expected`, stores `desired`. `rseq_offset`
/// is `CRelayLinux_rseq_offset()`.
static inline __attribute__((always_inline)) int CRelayLinux_rseq_compare_store(
    void *word, uint64_t expected, uint64_t desired, const void *remote, uint32_t cpu, ptrdiff_t rseq_offset) {
#if CRELAYLINUX_HAS_RSEQ_OPS
    __asm__ __volatile__ goto(
        CRELAYLINUX_RSEQ_TABLE
        "cmpq %[word], %[expected]\n\t"
        "jnz %l[failed]\n\t"
        "movq %[desired], %[word]\n\t"
        "2:\n\t"
        CRELAYLINUX_RSEQ_ABORT
        :
        : [cpu] "r"(cpu), [rseq_offset] "r"(rseq_offset), [word] "m"(*(uint64_t *)word),
          [expected] "r"(expected), [desired] "r"(desired), [remote] "m"(*(const uint64_t *)remote)
        : "memory", "cc", "rax"
        : aborted, failed);
    return 0;
aborted:
    return -1;
failed:
    return 1;
#else
    (void)word; (void)expected; (void)desired; (void)remote; (void)cpu; (void)rseq_offset;
    return -1;
#endif
}

/// The outcome of `CRelayLinux_rseq_add`: `status` as above, and the new value.
typedef struct {
    uint64_t sum;
    int64_t status;
} CRelayLinux_rseq_add_result;

/// On `cpu`: if `*remote` == 0, adds `amount` to `*word`; returns the new value. (Plain
/// asm with outputs rather than asm goto, so the sum comes back in a register.)
static inline __attribute__((always_inline)) CRelayLinux_rseq_add_result CRelayLinux_rseq_add(
    void *word, uint64_t amount, const void *remote, uint32_t cpu, ptrdiff_t rseq_offset) {
    CRelayLinux_rseq_add_result out;
#if CRELAYLINUX_HAS_RSEQ_OPS
    uint64_t sum;
    int64_t status;
    __asm__ __volatile__(
        ".pushsection __rseq_cs, \"aw\"\n\t"
        ".balign 32\n\t"
        "3:\n\t"
        ".long 0x0, 0x0\n\t"
        ".quad 1f, (2f - 1f), 4f\n\t"
        ".popsection\n\t"
        "leaq 3b(%%rip), %%rax\n\t"
        "movq %%rax, %%fs:8(%[rseq_offset])\n\t"
        "1:\n\t"
        "movq $1, %[status]\n\t"
        "cmpl %[cpu], %%fs:4(%[rseq_offset])\n\t"
        "jnz 4f\n\t"
        "cmpq $0, %[remote]\n\t"
        "jnz 5f\n\t"
        "movq %[word], %[sum]\n\t"
        "addq %[amount], %[sum]\n\t"
        "movq %[sum], %[word]\n\t"
        "2:\n\t"
        "xorl %k[status], %k[status]\n\t"
        "5:\n\t"
        ".pushsection __rseq_failure, \"ax\"\n\t"
        ".byte 0x0f, 0xb9, 0x3d\n\t"
        ".long 0x53053053\n\t"
        "4:\n\t"
        "movq $-1, %[status]\n\t"
        "jmp 5b\n\t"
        ".popsection\n\t"
        : [sum] "=&r"(sum), [status] "=&r"(status), [word] "+m"(*(uint64_t *)word)
        : [cpu] "r"(cpu), [rseq_offset] "r"(rseq_offset), [amount] "r"(amount),
          [remote] "m"(*(const uint64_t *)remote)
        : "memory", "cc", "rax");
    out.sum = sum;
    out.status = status;
#else
    (void)word; (void)amount; (void)remote; (void)cpu; (void)rseq_offset;
    out.sum = 0;
    out.status = -1;
#endif
    return out;
}

/// Registers the process for MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ. 0 or -errno.
int CRelayLinux_membarrier_rseq_register(void);

/// MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ: a full barrier on every CPU running a
/// thread of this process, and every restartable sequence in flight there is
/// aborted. 0 or -errno.
int CRelayLinux_membarrier_rseq(void);

/// Number of configured ("possible") CPUs, at least 1.
uint32_t CRelayLinux_possible_cpus(void);

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

/// Restricts the calling thread to CPU `cpu` (sched_setaffinity), or to every CPU
/// when `cpu` < 0. Returns 0 or -errno. Tests use it to force migrations.
int CRelayLinux_pin_current_thread(int cpu);

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

/// The CPU's time-stamp counter (x86-64 `rdtsc`, which does not wait for earlier
/// instructions), or 0 on other architectures. Only meaningful as a clock where the
/// kernel's own clocksource is `tsc` (synchronized across CPUs, constant rate).
static inline __attribute__((always_inline)) uint64_t CRelayLinux_read_tsc(void) {
#if defined(__x86_64__)
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
#else
    return 0;
#endif
}

#ifdef __cplusplus
}
#endif

#endif
