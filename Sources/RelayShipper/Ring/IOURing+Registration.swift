internal import CRelayLinux
package import SystemPackage

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Musl)
internal import Musl
#endif

extension IOURing {
    /// The largest region one registered buffer may cover (`io_buffer_validate`
    /// in io_uring/rsrc.c rejects more).
    package static let maxRegisteredBufferBytes = 1 << 30

    /// The most buffers one ring may register (`IORING_MAX_REG_BUFFERS`).
    package static let maxRegisteredBuffers = 16384

    /// Registers `regions` as fixed buffers 0..<regions.count, for
    /// ``writeFixed(_:_:at:bufferIndex:userData:flags:)`` and fixed zero-copy
    /// sends.
    ///
    /// The kernel pins every page (faulting in untouched ones, which is slow:
    /// pre-fault with `MAP_POPULATE` and register a few large regions). Pinned
    /// pages count against `RLIMIT_MEMLOCK` unless the process has
    /// `CAP_IPC_LOCK`; on recent kernels the ring memory counts too.
    ///
    /// Must run on the owner thread (single issuer). Only one set can be
    /// registered at a time: ``unregisterBuffers()`` first.
    ///
    /// - Parameter regions: each non-empty and at most 1 GiB; at most 16384.
    /// - Returns: `.failure` with
    ///   - `EFAULT`: a region is a `MAP_SHARED` mapping of a regular file on
    ///     disk (the kernel does not pin file-backed pages), or not mapped.
    ///     Use memfd, /dev/shm or anonymous memory; or fall back to plain
    ///     ``write(_:_:at:userData:flags:)``, which works on any memory.
    ///   - `ENOMEM` (or `EPERM`): `RLIMIT_MEMLOCK` is too small for the
    ///     regions (see ``registrationFailureMessage(_:bytes:)``).
    ///   - `EINVAL`: a region is empty or over 1 GiB, or too many regions.
    ///   - `EBUSY`: buffers are already registered.
    ///   - `EEXIST`: not the owner thread.
    package mutating func registerBuffers(_ regions: [UnsafeMutableRawBufferPointer]) -> Result<Void, Errno> {
        self.assertOwner()
        guard !regions.isEmpty, regions.count <= Self.maxRegisteredBuffers else {
            return .failure(.invalidArgument)
        }
        for region in regions where region.baseAddress == nil || region.count == 0
            || region.count > Self.maxRegisteredBufferBytes
        {
            return .failure(.invalidArgument)
        }
        let vectors = regions.map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
        let result = vectors.withUnsafeBufferPointer { vectors in
            io_uring_register_buffers(self.ring, vectors.baseAddress, UInt32(vectors.count))
        }
        guard result == 0 else {
            return .failure(Errno(rawValue: -result))
        }
        self.registeredBufferCount = regions.count
        return .success(())
    }

    /// Unregisters all fixed buffers. Operations already queued against them
    /// keep their pages pinned until they complete.
    /// - Returns: `.failure(ENXIO)` if none were registered.
    package mutating func unregisterBuffers() -> Result<Void, Errno> {
        self.assertOwner()
        let result = io_uring_unregister_buffers(self.ring)
        guard result == 0 else {
            return .failure(Errno(rawValue: -result))
        }
        self.registeredBufferCount = 0
        return .success(())
    }

    /// A message for a failed ``registerBuffers(_:)`` that says what to do.
    ///
    /// - Parameters:
    ///   - errno: the failure.
    ///   - bytes: the total size the caller tried to register.
    package static func registrationFailureMessage(_ errno: Errno, bytes: Int) -> String {
        switch errno {
        case .badAddress:
            return "io_uring buffer registration failed (EFAULT): the memory is a MAP_SHARED mapping of a file "
                + "on disk, which the kernel cannot pin. Back relay buffers with memfd, /dev/shm or anonymous memory; "
                + "shipping continues with unregistered writes (one extra page walk per write)."
        case .noMemory, .notPermitted:
            let limit = CRelayLinux_memlock_limit()
            let limitText = limit == UInt64.max ? "unlimited" : "\(limit) bytes"
            return "io_uring buffer registration of \(bytes) bytes failed (\(errno)): RLIMIT_MEMLOCK is "
                + "\(limitText) and the ring's own memory counts against it too. Raise it (systemd: "
                + "LimitMEMLOCK=; shell: ulimit -l; docker: --ulimit memlock=-1), grant CAP_IPC_LOCK, or use "
                + "smaller relay buffers; shipping continues with unregistered writes."
        case .invalidArgument:
            return "io_uring buffer registration failed (EINVAL): each region must be non-empty and at most "
                + "1 GiB, and at most 16384 regions; use fewer, smaller relay buffers."
        case .resourceBusy:
            return "io_uring buffer registration failed (EBUSY): buffers are already registered on this ring."
        case .fileExists:
            return "io_uring buffer registration failed (EEXIST): called from a thread that does not own the "
                + "ring (IORING_SETUP_SINGLE_ISSUER); register on the shipper thread."
        default:
            return "io_uring buffer registration of \(bytes) bytes failed: \(errno)."
        }
    }
}
