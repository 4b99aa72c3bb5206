#ifndef C_BENCH_SUPPORT_H
#define C_BENCH_SUPPORT_H

/// Pins the calling thread to `cpu` (sched_setaffinity(2), which Glibc's Swift overlay does
/// not export). Returns 0, or the errno value.
int CBenchSupport_pin_to_cpu(int cpu);

/// The number of CPUs the process may run on (its affinity mask at start).
int CBenchSupport_usable_cpus(void);

#endif
