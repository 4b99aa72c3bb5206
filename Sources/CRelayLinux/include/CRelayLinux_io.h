//===----------------------------------------------------------------------===//
// File and socket helpers the shipper needs that Swift cannot call directly
// (variadic ioctl, GNU-only fallocate, statx fields newer than glibc's struct).
//===----------------------------------------------------------------------===//
#ifndef CRELAYLINUX_IO_H
#define CRELAYLINUX_IO_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// fallocate(2). `keep_size` selects FALLOC_FL_KEEP_SIZE. Returns 0 or -errno.
int CRelayLinux_fallocate(int fd, int keep_size, int64_t offset, int64_t length);

/// statx(2) STATX_DIOALIGN for an open file: the required memory and offset alignment
/// for O_DIRECT. Returns 0 and fills both (0 when the filesystem does not support
/// O_DIRECT for this file), -EOPNOTSUPP when the alignment is not reported (kernels
/// before 6.1, and filesystems such as tmpfs), or another -errno.
int CRelayLinux_dio_alignment(int fd, uint32_t *memory_align, uint32_t *offset_align);

/// ioctl(fd, SIOCOUTQ): bytes in a socket's send queue that the peer has not
/// acknowledged (TCP) or not read (Unix stream). Returns the count or -errno.
int64_t CRelayLinux_socket_unacked_bytes(int fd);

/// ioctl(fd, FIONREAD): bytes that a read on the descriptor can return now (a socket's
/// or pipe's receive queue, a regular file's bytes after the file position). Returns
/// the count or -errno.
int64_t CRelayLinux_readable_bytes(int fd);

/// rename(2) that never replaces: renameat2(RENAME_NOREPLACE), so `to` is never
/// overwritten (-EEXIST if it exists). Where the filesystem does not support the flag
/// (-EINVAL), it checks that `to` does not exist and renames (not atomic against another
/// process creating `to` in between). Returns 0 or -errno.
int CRelayLinux_rename_noreplace(const char *from, const char *to);

/// The O_DIRECT flag value (needs _GNU_SOURCE to see).
int CRelayLinux_O_DIRECT(void);

/// SYNC_FILE_RANGE_WRITE (needs _GNU_SOURCE to see): sync_file_range(2) starts writeback
/// of the range's dirty pages that are not under writeback already, and does not wait.
uint32_t CRelayLinux_SYNC_FILE_RANGE_WRITE(void);

/// POLLRDHUP | POLLHUP | POLLERR: the poll mask that reports a peer closing or
/// resetting a stream socket (POLLRDHUP needs _GNU_SOURCE to see).
uint32_t CRelayLinux_poll_peer_gone_mask(void);

/// eventfd(2) with EFD_CLOEXEC | EFD_NONBLOCK. Returns the fd or -errno.
int CRelayLinux_eventfd(void);

/// Whether the connected socket's peer is on this host (loopback address, or a Unix
/// socket). Returns 1, 0, or -errno.
int CRelayLinux_peer_is_local(int fd);

/// Turns CAP_IPC_LOCK on or off in the calling thread's effective set (it stays in
/// the permitted set, so it can be turned back on). Tests use it to exercise the
/// RLIMIT_MEMLOCK fallback as root. Returns 0 or -errno.
int CRelayLinux_set_ipc_lock_effective(int enabled);

/// Bytes of C heap memory allocated and not yet freed (mallinfo2: in-use arena bytes plus
/// mmapped chunks). Tests use it to find leaks.
uint64_t CRelayLinux_heap_in_use(void);

/// Asks the kernel to attach the sender's credentials (SCM_CREDENTIALS) to every
/// message received on the Unix socket `fd` (SO_PASSCRED). Returns 0 or -errno.
int CRelayLinux_enable_passcred(int fd);

/// Bytes of control buffer that hold one SCM_CREDENTIALS message
/// (CMSG_SPACE(sizeof(struct ucred))).
uint64_t CRelayLinux_credentials_control_space(void);

/// Finds SCM_CREDENTIALS in the control data of a received `struct msghdr *`
/// (`message`, typed as `void *` so that Swift need not see `struct msghdr`). Returns 1
/// and fills `pid` and `uid`, or 0 when there is none.
int CRelayLinux_received_credentials(const void *message, int32_t *pid, uint32_t *uid);

#ifdef __cplusplus
}
#endif

#endif
