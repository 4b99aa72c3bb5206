internal import CRelayLinux
internal import Glibc
internal import SystemPackage

/// The one funnel for blocking system calls on the shipper thread (swift-nio's
/// `syscall(blocking:where:_:)` shape): retries EINTR and turns -1 into `Errno`.
///
/// `@inline(never)` so nothing can clobber `errno` between the call and reading it.
@inline(never)
func syscall<T: FixedWidthInteger>(_ body: () -> T) -> Result<T, Errno> {
    while true {
        let result = body()
        if result == -1 {
            let err = Errno(rawValue: Glibc.errno)
            if err == .interrupted { continue }
            return .failure(err)
        }
        return .success(result)
    }
}

/// For shims that return `-errno` instead of setting `errno`.
@inline(__always)
func negativeErrno<T: FixedWidthInteger & SignedInteger>(_ value: T) -> Result<T, Errno> {
    value < 0 ? .failure(Errno(rawValue: Int32(truncatingIfNeeded: 0 - value))) : .success(value)
}

enum Files {
    /// Opens (creating) `path` for writing, optionally with O_DIRECT.
    static func openForWriting(_ path: String, permissions: UInt32, direct: Bool) -> Result<FileDescriptor, Errno> {
        var flags = O_WRONLY | O_CREAT | O_CLOEXEC
        if direct { flags |= CRelayLinux_O_DIRECT() }
        return syscall { open(path, flags, mode_t(permissions)) }.map { FileDescriptor(rawValue: $0) }
    }

    /// Takes an exclusive `flock(2)` lock on the open file without waiting: `EWOULDBLOCK` if
    /// another open file description (of this process or another) holds one. The lock belongs
    /// to the open file description: its duplicates share it, and it goes with the last of them.
    static func lockExclusive(_ fd: FileDescriptor) -> Result<Void, Errno> {
        syscall { flock(fd.rawValue, LOCK_EX | LOCK_NB) }.map { _ in () }
    }

    /// Releases `fd`'s `flock` at once. `close` releases it only when the last reference to
    /// the open file description goes, and the kernel can hold one for a moment after a
    /// request on it completed (an io-wq worker drops it on its own schedule).
    static func unlock(_ fd: FileDescriptor) {
        _ = syscall { flock(fd.rawValue, LOCK_UN) }
    }

    /// A duplicate of `fd` (close-on-exec), sharing its open file description (and its lock).
    static func duplicate(_ fd: FileDescriptor) -> Result<FileDescriptor, Errno> {
        syscall { fcntl(fd.rawValue, F_DUPFD_CLOEXEC, 0) }.map { FileDescriptor(rawValue: $0) }
    }

    /// The size of an open file.
    static func size(_ fd: FileDescriptor) -> Result<Int64, Errno> {
        var st = stat()
        return syscall { fstat(fd.rawValue, &st) }.map { _ in Int64(st.st_size) }
    }

    /// Whether two open descriptors refer to the same file (device and inode).
    static func isSameFile(_ a: FileDescriptor, _ b: FileDescriptor) -> Bool {
        var sa = stat()
        var sb = stat()
        guard case .success = syscall({ fstat(a.rawValue, &sa) }), case .success = syscall({ fstat(b.rawValue, &sb) }) else {
            return false
        }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }

    static func truncate(_ fd: FileDescriptor, to size: Int64) -> Result<Void, Errno> {
        syscall { ftruncate(fd.rawValue, off_t(size)) }.map { _ in () }
    }

    /// Renames `from` to `to` only if nothing is at `to` (EEXIST otherwise): never overwrites.
    static func renameNoReplace(_ from: String, _ to: String) -> Result<Void, Errno> {
        negativeErrno(CRelayLinux_rename_noreplace(from, to)).map { _ in () }
    }

    static func remove(_ path: String) {
        _ = unlink(path)
    }

    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    static func close(_ fd: FileDescriptor) {
        // EINTR on close must not be retried on Linux: the descriptor is gone either way.
        _ = Glibc.close(fd.rawValue)
    }

    static func fallocate(_ fd: FileDescriptor, keepSize: Bool, offset: Int64, length: Int64) -> Result<Void, Errno> {
        negativeErrno(CRelayLinux_fallocate(fd.rawValue, keepSize ? 1 : 0, offset, length)).map { _ in () }
    }

    /// O_DIRECT alignment (memory, offset) for an open file; (0, 0) if the filesystem does
    /// not support O_DIRECT for it; `EOPNOTSUPP` if the kernel or filesystem does not say.
    static func directIOAlignment(_ fd: FileDescriptor) -> Result<(memory: Int, offset: Int), Errno> {
        var memory: UInt32 = 0
        var offset: UInt32 = 0
        return negativeErrno(CRelayLinux_dio_alignment(fd.rawValue, &memory, &offset)).map { _ in
            (Int(memory), Int(offset))
        }
    }
}
