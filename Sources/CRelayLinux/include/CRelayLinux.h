//===----------------------------------------------------------------------===//
// CRelayLinux: the C shims swift-relay needs on Linux.
//
// This module is never public API: only Relay and RelayShipper import it, and
// always as `internal import`. Each header covers one concern:
//
//   CRelayLinux_cpu.h    current CPU (rseq cpu_id, sched_getcpu), futex wait/wake,
//                        membarrier, compiler barrier: what the relay engine needs.
//   CRelayLinux_io.h     fallocate, statx DIOALIGN, SIOCOUTQ, eventfd: file and
//                        socket helpers for the shipper.
//   CRelayLinux_uring.h  liburing 2.3 plus the pieces that do not import into
//                        Swift (IOSQE_* flags, io_uring_for_each_cqe, futex ops).
//===----------------------------------------------------------------------===//
#ifndef CRELAYLINUX_H
#define CRELAYLINUX_H

#include "CRelayLinux_cpu.h"
#include "CRelayLinux_io.h"
#include "CRelayLinux_uring.h"

#endif
