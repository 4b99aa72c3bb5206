//===----------------------------------------------------------------------===//
// File and socket helpers for the shipper.
//===----------------------------------------------------------------------===//
#ifndef _GNU_SOURCE
#error "CRelayLinux must be compiled with _GNU_SOURCE (see Package.swift)"
#endif

#include "CRelayLinux_io.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sockios.h>
#include <linux/stat.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int CRelayLinux_fallocate(int fd, int keep_size, int64_t offset, int64_t length) {
    int r = fallocate(fd, keep_size ? FALLOC_FL_KEEP_SIZE : 0, (off_t)offset, (off_t)length);
    return r == 0 ? 0 : -errno;
}

int CRelayLinux_rename_noreplace(const char *from, const char *to) {
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL) return -errno;
    struct stat st;
    if (lstat(to, &st) == 0) return -EEXIST;
    if (errno != ENOENT) return -errno;
    return rename(from, to) == 0 ? 0 : -errno;
}

#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN 0x00002000U
#endif

int CRelayLinux_dio_alignment(int fd, uint32_t *memory_align, uint32_t *offset_align) {
    // Use the kernel's struct statx from <linux/stat.h> through the raw syscall: glibc's
    // copy of the struct may predate the dio fields (added in 6.1).
    struct statx stx;
    memset(&stx, 0, sizeof(stx));
    long r = syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx);
    if (r != 0) {
        return -errno;
    }
    if (!(stx.stx_mask & STATX_DIOALIGN)) {
        // Not reported (kernels before 6.1, and filesystems such as tmpfs that take
        // O_DIRECT without saying how): unknown, which is not "O_DIRECT unsupported".
        *memory_align = 0;
        *offset_align = 0;
        return -EOPNOTSUPP;
    }
    *memory_align = stx.stx_dio_mem_align;
    *offset_align = stx.stx_dio_offset_align;
    return 0;
}

int64_t CRelayLinux_socket_unacked_bytes(int fd) {
    int outq = 0;
    if (ioctl(fd, SIOCOUTQ, &outq) != 0) {
        return -errno;
    }
    return outq;
}

int64_t CRelayLinux_readable_bytes(int fd) {
    int available = 0;
    if (ioctl(fd, FIONREAD, &available) != 0) {
        return -errno;
    }
    return available;
}

int CRelayLinux_O_DIRECT(void) {
    return O_DIRECT;
}

uint32_t CRelayLinux_SYNC_FILE_RANGE_WRITE(void) {
    return SYNC_FILE_RANGE_WRITE;
}

int CRelayLinux_eventfd(void) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

int CRelayLinux_peer_is_local(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
        return -errno;
    }
    if (ss.ss_family == AF_UNIX) {
        return 1;
    }
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
            return 1;
        }
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            return in6->sin6_addr.s6_addr[12] == 127;
        }
        return 0;
    }
    return 0;
}

uint64_t CRelayLinux_heap_in_use(void) {
    struct mallinfo2 info = mallinfo2();
    return (uint64_t)info.uordblks + (uint64_t)info.hblkhd;
}

int CRelayLinux_set_ipc_lock_effective(int enabled) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &header, data) != 0) {
        return -errno;
    }
    if (enabled) {
        data[0].effective |= (1u << CAP_IPC_LOCK);
    } else {
        data[0].effective &= ~(1u << CAP_IPC_LOCK);
    }
    if (syscall(SYS_capset, &header, data) != 0) {
        return -errno;
    }
    return 0;
}

uint32_t CRelayLinux_poll_peer_gone_mask(void) {
    return POLLRDHUP | POLLHUP | POLLERR;
}

int CRelayLinux_enable_passcred(int fd) {
    int one = 1;
    return setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) == 0 ? 0 : -errno;
}

uint64_t CRelayLinux_credentials_control_space(void) {
    return CMSG_SPACE(sizeof(struct ucred));
}

int CRelayLinux_received_credentials(const void *message, int32_t *pid, uint32_t *uid) {
    const struct msghdr *msg = (const struct msghdr *)message;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS
            && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred credentials;
            memcpy(&credentials, CMSG_DATA(c), sizeof(credentials));
            *pid = credentials.pid;
            *uid = credentials.uid;
            return 1;
        }
    }
    return 0;
}
