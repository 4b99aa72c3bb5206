//===----------------------------------------------------------------------===//
// CPU identity, futex, membarrier and memfd shims. Compiled with _GNU_SOURCE
// (sched_getcpu and memfd_create are GNU extensions).
//===----------------------------------------------------------------------===//
#ifndef _GNU_SOURCE
#error "CRelayLinux must be compiled with _GNU_SOURCE (see Package.swift)"
#endif

#include "CRelayLinux_cpu.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <pthread.h>
#include <unistd.h>

uint32_t CRelayLinux_sched_getcpu(void) {
    int cpu = sched_getcpu();
    return cpu < 0 ? 0 : (uint32_t)cpu;
}

uint32_t CRelayLinux_possible_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_CONF);
    return n < 1 ? 1 : (uint32_t)n;
}

int CRelayLinux_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns, int shared) {
    struct timespec ts;
    struct timespec *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
        ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
        tsp = &ts;
    }
    int op = shared ? FUTEX_WAIT : FUTEX_WAIT_PRIVATE;
    long r = syscall(SYS_futex, word, op, expected, tsp, NULL, 0);
    return r < 0 ? -errno : 0;
}

int CRelayLinux_futex_wake(uint32_t *word, int count, int shared) {
    int op = shared ? FUTEX_WAKE : FUTEX_WAKE_PRIVATE;
    long r = syscall(SYS_futex, word, op, count, NULL, NULL, 0);
    return r < 0 ? -errno : (int)r;
}

/// membarrier(2) with `command` and no flags: 0 or -errno.
static int membarrier_command(int command) {
    long r = syscall(SYS_membarrier, command, 0, 0);
    return r < 0 ? -errno : 0;
}

int CRelayLinux_membarrier_register(void) {
    return membarrier_command(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
}

int CRelayLinux_membarrier(void) {
    return membarrier_command(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
}

int CRelayLinux_membarrier_rseq_register(void) {
    return membarrier_command(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ);
}

int CRelayLinux_membarrier_rseq(void) {
    return membarrier_command(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ);
}

int CRelayLinux_memfd_create(const char *name) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int CRelayLinux_filesystem_type(const char *path, int64_t *type) {
    struct statfs fs;
    if (statfs(path, &fs) != 0) {
        return -errno;
    }
    *type = (int64_t)fs.f_type;
    return 0;
}

int CRelayLinux_pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu < 0) {
        long n = sysconf(_SC_NPROCESSORS_CONF);
        for (long i = 0; i < n && i < CPU_SETSIZE; i++) {
            CPU_SET((int)i, &set);
        }
    } else {
        CPU_SET(cpu, &set);
    }
    return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

void CRelayLinux_set_thread_name(const char *name) {
    pthread_setname_np(pthread_self(), name);
}
