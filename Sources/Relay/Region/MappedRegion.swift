internal import CRelayLinux
internal import Glibc

/// How the memory of each buffer region is provided.
///
/// Every backing is page-aligned and registrable as an io_uring fixed buffer. Disk
/// files are deliberately not offered: the kernel refuses to pin file-backed pages
/// (`io_uring_register_buffers` fails with EFAULT).
public enum RelayMemoryBacking: Sendable, Hashable {
    /// Private anonymous shared memory (`MAP_SHARED | MAP_ANONYMOUS`). The default.
    case anonymous
    /// One memfd per buffer; the descriptor can be passed to another process.
    case memfd
    /// One file per buffer in a tmpfs directory (normally `/dev/shm`), named
    /// `<channel>.<buffer>`, that another process can open and map. (Not hugetlbfs: its
    /// files are sized in whole huge pages, and a region is its 4 KiB control page plus
    /// the sub-buffers.)
    case sharedMemory(directory: String)
}

/// One mapped buffer region. Owned by its channel, which unmaps it exactly once.
///
/// Invariants: `base` is page aligned and `size` bytes are mapped read/write and
/// shared; the mapping stays valid until `unmap()`.
struct MappedRegion: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let size: Int
    /// The backing descriptor (memfd or shm file), or -1 for anonymous memory.
    let fd: Int32
    /// The shm file path, for `.sharedMemory`.
    let path: String?

    static var pageSize: Int { Int(sysconf(Int32(_SC_PAGESIZE))) }

    /// Maps `size` bytes (a multiple of the page size) with the requested backing.
    static func map(
        size: Int,
        backing: RelayMemoryBacking,
        channelName: String,
        bufferIndex: Int,
        prefault: Bool
    ) throws(RelayError) -> MappedRegion {
        var fd: Int32 = -1
        var path: String? = nil
        switch backing {
        case .anonymous:
            break
        case .memfd:
            let result = CRelayLinux_memfd_create("relay:\(channelName).\(bufferIndex)")
            if result < 0 {
                throw RelayError(
                    code: .mappingFailed,
                    message: "memfd_create failed for channel '\(channelName)' buffer \(bufferIndex); "
                        + "use backing .anonymous or check the seccomp profile",
                    errno: -result
                )
            }
            fd = result
        case .sharedMemory(let directory):
            try Self.checkSharedMemoryDirectory(directory)
            let filePath = directory.hasSuffix("/")
                ? "\(directory)\(channelName).\(bufferIndex)" : "\(directory)/\(channelName).\(bufferIndex)"
            let result = open(filePath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if result < 0 {
                let err = Glibc.errno
                let hint = err == EEXIST
                    ? "a stale region file exists; remove it or close the channel that owns it"
                    : "check that the directory is writable"
                throw RelayError(
                    code: .mappingFailed, message: "cannot create shared-memory file \(filePath): \(hint)", errno: err)
            }
            fd = result
            path = filePath
        }
        if fd >= 0, ftruncate(fd, off_t(size)) != 0 {
            let err = Glibc.errno
            close(fd)
            if let path { unlink(path) }
            throw RelayError(
                code: .mappingFailed,
                message: "cannot size buffer memory to \(size) bytes; the tmpfs may be full (df -h /dev/shm)",
                errno: err
            )
        }
        var flags = MAP_SHARED
        if fd < 0 { flags |= MAP_ANONYMOUS }
        if prefault { flags |= MAP_POPULATE }
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, flags, fd, 0), base != MAP_FAILED else {
            let err = Glibc.errno
            if fd >= 0 { close(fd) }
            if let path { unlink(path) }
            throw RelayError(
                code: .mappingFailed,
                message: "cannot map \(size) bytes of buffer memory; lower subbufSize × subbufCount or the buffer count",
                errno: err
            )
        }
        return MappedRegion(base: base, size: size, fd: fd, path: path)
    }

    /// Unmaps the region, closes its descriptor and removes its shm file.
    func unmap() {
        munmap(self.base, self.size)
        if self.fd >= 0 { close(self.fd) }
        if let path = self.path { unlink(path) }
    }

    private static func checkSharedMemoryDirectory(_ directory: String) throws(RelayError) {
        var type: Int64 = 0
        let result = CRelayLinux_filesystem_type(directory, &type)
        if result != 0 {
            throw RelayError(
                code: .mappingFailed,
                message: "shared-memory directory \(directory) is not accessible; create it or use /dev/shm",
                errno: -result
            )
        }
        let tmpfsMagic = 0x0102_1994
        let hugetlbfsMagic = 0x9584_58f6
        if type == Int64(hugetlbfsMagic) {
            throw RelayError(
                code: .invalidConfiguration,
                message: "\(directory) is hugetlbfs, whose files are sized in whole huge pages, and a buffer region is a "
                    + "4 KiB control page plus its sub-buffers; use /dev/shm (or .memfd / .anonymous backing)"
            )
        }
        if type != Int64(tmpfsMagic) {
            throw RelayError(
                code: .invalidConfiguration,
                message: "\(directory) is not tmpfs: io_uring cannot register file-backed pages; "
                    + "use /dev/shm (or .memfd / .anonymous backing)"
            )
        }
    }
}
