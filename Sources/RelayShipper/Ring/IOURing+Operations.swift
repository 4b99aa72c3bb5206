internal import CRelayLinux
package import SystemPackage

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Musl)
internal import Musl
#endif

// MARK: - Flags and errors

extension IOURing {
    /// Per-SQE flags (`IOSQE_*`).
    package struct SQEFlags: OptionSet, Hashable, Sendable {
        /// The `sqe.flags` byte.
        package var rawValue: UInt8

        /// Creates flags from the raw `IOSQE_*` bits.
        package init(rawValue: UInt8) {
            self.rawValue = rawValue
        }

        /// `fd` is an index into the registered file table, not an fd.
        package static var fixedFile: SQEFlags { SQEFlags(rawValue: CRelayLinux_IOSQE_FIXED_FILE) }
        /// Start only after every earlier SQE has completed.
        package static var drain: SQEFlags { SQEFlags(rawValue: CRelayLinux_IOSQE_IO_DRAIN) }
        /// The next SQE starts only after this one completes successfully; an
        /// error or short result cancels the rest of the chain (`ECANCELED`).
        package static var link: SQEFlags { SQEFlags(rawValue: CRelayLinux_IOSQE_IO_LINK) }
        /// Like ``link``, but the chain continues even if this one fails.
        package static var hardLink: SQEFlags { SQEFlags(rawValue: CRelayLinux_IOSQE_IO_HARDLINK) }
        /// Always punt to an io-wq worker instead of trying inline first.
        package static var async: SQEFlags { SQEFlags(rawValue: CRelayLinux_IOSQE_ASYNC) }
        /// Post no CQE when the operation succeeds (failures still post one).
        package static var skipSuccess: SQEFlags { SQEFlags(rawValue: CRelayLinux_IOSQE_CQE_SKIP_SUCCESS) }
    }

    /// Flags of a zero-copy send (`IORING_RECVSEND_*` / `IORING_SEND_ZC_*`).
    package struct SendZCFlags: OptionSet, Hashable, Sendable {
        /// The `sqe.ioprio` bits.
        package var rawValue: UInt16

        /// Creates flags from the raw bits.
        package init(rawValue: UInt16) {
            self.rawValue = rawValue
        }

        /// Ask the kernel to report in the notification whether it had to copy
        /// (``Completion/zcCopied``). Kernel 6.2.
        package static var reportUsage: SendZCFlags {
            SendZCFlags(rawValue: UInt16(IORING_SEND_ZC_REPORT_USAGE))
        }
    }

    /// Why an operation could not be queued.
    package enum SubmitError: Error, Hashable {
        /// The SQ is full and the kernel refused to take SQEs (`EBUSY`/`EAGAIN`:
        /// it wants completions reaped first). Reap, then retry the operation.
        case reapFirst
        /// Flushing the SQ failed; see ``IOURing/submit()`` for the errnos.
        case failed(Errno)
    }
}

// MARK: - SQE preparation

extension IOURing {
    /// A free SQE. When the SQ is full, submits what is queued and tries once
    /// more; if the kernel did not take anything, the caller must reap first.
    @inline(__always)
    private mutating func nextSQE() throws(SubmitError) -> UnsafeMutablePointer<io_uring_sqe> {
        if let sqe = io_uring_get_sqe(self.ring) {
            return sqe
        }
        do {
            try self.submit()
        } catch {
            throw .failed(error)
        }
        if let sqe = io_uring_get_sqe(self.ring) {
            return sqe
        }
        throw .reapFirst
    }

    /// Sets the fields every operation has. Must run after `io_uring_prep_*`,
    /// which clears `flags`.
    @inline(__always)
    private func finish(_ sqe: UnsafeMutablePointer<io_uring_sqe>, userData: UInt64, flags: SQEFlags) {
        sqe.pointee.flags |= flags.rawValue
        io_uring_sqe_set_data64(sqe, userData)
    }

    /// Queues a no-op. Completes with 0.
    /// - Throws: ``SubmitError``.
    package mutating func nop(userData: UInt64, flags: SQEFlags = []) throws(SubmitError) {
        let sqe = try self.nextSQE()
        io_uring_prep_nop(sqe)
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `pwrite(fd, buffer, offset)`. Completes with the bytes written
    /// (possibly short, e.g. on ENOSPC: resubmit the rest at `offset + result`)
    /// or `-errno`.
    ///
    /// Pass explicit offsets: with several writes in flight, offset
    /// `UInt64.max` (the file position) lets them land on top of each other.
    /// - Warning: `buffer` must stay valid until the completion is reaped.
    /// - Throws: ``SubmitError``.
    package mutating func write(
        _ fd: FileDescriptor,
        _ buffer: UnsafeRawBufferPointer,
        at offset: UInt64,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        precondition(buffer.count <= Int(UInt32.max), "io_uring writes are limited to 4 GiB - 1")
        let sqe = try self.nextSQE()
        io_uring_prep_write(sqe, fd.rawValue, buffer.baseAddress, UInt32(buffer.count), offset)
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `pwritev(fd, vectors, count, offset)`: several memory ranges written as one
    /// contiguous range of the file. Completes like ``write(_:_:at:userData:flags:)``
    /// (a short count may end inside any vector).
    /// - Warning: `vectors` and every range they point to must stay valid until the
    ///   completion is reaped (the kernel may read the array after submission when it
    ///   punts the write to a worker).
    /// - Throws: ``SubmitError``.
    mutating func writev(
        _ fd: FileDescriptor,
        _ vectors: UnsafePointer<iovec>,
        count: Int,
        at offset: UInt64,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        precondition(count > 0 && count <= 1024, "writev takes 1...1024 (UIO_MAXIOV) vectors")
        let sqe = try self.nextSQE()
        io_uring_prep_writev(sqe, fd.rawValue, vectors, UInt32(count), offset)
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `IORING_OP_WRITE_FIXED`: a write from registered buffer
    /// `bufferIndex`. `buffer` may be any subrange of that registered region.
    /// Completes like ``write(_:_:at:userData:flags:)``; `-EFAULT` if `buffer`
    /// is not inside registered buffer `bufferIndex`.
    /// - Warning: `buffer` must stay valid until the completion is reaped.
    /// - Throws: ``SubmitError``.
    package mutating func writeFixed(
        _ fd: FileDescriptor,
        _ buffer: UnsafeRawBufferPointer,
        at offset: UInt64,
        bufferIndex: UInt16,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        precondition(buffer.count <= Int(UInt32.max), "io_uring writes are limited to 4 GiB - 1")
        let sqe = try self.nextSQE()
        io_uring_prep_write_fixed(
            sqe, fd.rawValue, buffer.baseAddress, UInt32(buffer.count), offset, Int32(bufferIndex)
        )
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `pread(fd, buffer, offset)`; for an eventfd, `buffer` is 8 bytes
    /// and `offset` is ignored. Completes with the bytes read or `-errno`.
    /// - Warning: `buffer` must stay valid and untouched until the completion
    ///   is reaped.
    /// - Throws: ``SubmitError``.
    package mutating func read(
        _ fd: FileDescriptor,
        into buffer: UnsafeMutableRawBufferPointer,
        at offset: UInt64,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        precondition(buffer.count <= Int(UInt32.max), "io_uring reads are limited to 4 GiB - 1")
        let sqe = try self.nextSQE()
        io_uring_prep_read(sqe, fd.rawValue, buffer.baseAddress, UInt32(buffer.count), offset)
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `send(fd, buffer, flags)` on a socket. Completes with the bytes
    /// sent or `-errno`. Pass `MSG_WAITALL` to have the kernel retry short
    /// sends on stream sockets, and `MSG_NOSIGNAL` to get `-EPIPE` instead of
    /// SIGPIPE.
    ///
    /// Keep one send in flight per TCP socket (or a linked chain): several
    /// independent sends on one socket can reorder the stream.
    /// - Warning: `buffer` must stay valid until the completion is reaped.
    /// - Throws: ``SubmitError``.
    package mutating func send(
        _ fd: FileDescriptor,
        _ buffer: UnsafeRawBufferPointer,
        messageFlags: Int32,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        let sqe = try self.nextSQE()
        io_uring_prep_send(sqe, fd.rawValue, buffer.baseAddress, buffer.count, messageFlags)
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues a zero-copy send (`IORING_OP_SEND_ZC`, kernel 6.0).
    ///
    /// Posts two completions with the same `userData`: the send result with
    /// ``Completion/hasMore`` set, then a notification
    /// (``Completion/isNotification``) once the kernel released the pages.
    /// Reuse the buffer only after the notification. If the first completion
    /// lacks `hasMore`, no notification follows (failures may or may not post
    /// one: check the flag, not the result).
    ///
    /// - Parameters:
    ///   - zcFlags: e.g. ``SendZCFlags/reportUsage``.
    ///   - fixedBufferIndex: send from registered buffer `fixedBufferIndex`
    ///     (`buffer` must lie inside it), which saves pinning pages per send.
    /// - Warning: `buffer` must stay valid and unmodified until the
    ///   notification is reaped.
    /// - Throws: ``SubmitError``.
    package mutating func sendZC(
        _ fd: FileDescriptor,
        _ buffer: UnsafeRawBufferPointer,
        messageFlags: Int32,
        zcFlags: SendZCFlags = [],
        fixedBufferIndex: UInt16? = nil,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        let sqe = try self.nextSQE()
        if let fixedBufferIndex {
            io_uring_prep_send_zc_fixed(
                sqe, fd.rawValue, buffer.baseAddress, buffer.count, messageFlags,
                UInt32(zcFlags.rawValue), UInt32(fixedBufferIndex)
            )
        } else {
            io_uring_prep_send_zc(
                sqe, fd.rawValue, buffer.baseAddress, buffer.count, messageFlags, UInt32(zcFlags.rawValue)
            )
        }
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `recv(fd, buffer, flags)` on a socket. Completes with the bytes
    /// received (0 at end of stream) or `-errno`.
    /// - Warning: `buffer` must stay valid and untouched until the completion
    ///   is reaped.
    /// - Throws: ``SubmitError``.
    package mutating func recv(
        _ fd: FileDescriptor,
        into buffer: UnsafeMutableRawBufferPointer,
        messageFlags: Int32,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        let sqe = try self.nextSQE()
        io_uring_prep_recv(sqe, fd.rawValue, buffer.baseAddress, buffer.count, messageFlags)
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `recvmsg(fd, message, flags)` on a socket. `message` points at a `struct
    /// msghdr` (raw, so callers need not share this module's C imports): the data goes to
    /// its iovecs, ancillary data (e.g. SCM_CREDENTIALS) to its control buffer, whose
    /// length the kernel updates. Completes with the bytes received or `-errno`.
    /// - Warning: `message` and every buffer it points to must stay valid and untouched
    ///   until the completion is reaped.
    /// - Throws: ``SubmitError``.
    package mutating func recvmsg(
        _ fd: FileDescriptor,
        message: UnsafeMutableRawPointer,
        messageFlags: Int32,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        let sqe = try self.nextSQE()
        io_uring_prep_recvmsg(
            sqe, fd.rawValue, message.assumingMemoryBound(to: msghdr.self), UInt32(bitPattern: messageFlags))
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `sendmsg(fd, message, flags)` on a socket: the bytes of the message's iovecs,
    /// in order, as one send (with `MSG_WAITALL` the kernel retries partial sends). Completes
    /// with the bytes sent or `-errno`.
    /// - Warning: `message`, its iovec array and every buffer they point to must stay valid
    ///   until the completion is reaped.
    /// - Throws: ``SubmitError``.
    mutating func sendmsg(
        _ fd: FileDescriptor,
        message: UnsafePointer<msghdr>,
        messageFlags: Int32,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        let sqe = try self.nextSQE()
        io_uring_prep_sendmsg(sqe, fd.rawValue, message, UInt32(bitPattern: messageFlags))
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `fsync(fd)` (or `fdatasync` with `datasync`). Completes with 0
    /// or `-errno`.
    ///
    /// It does not cover writes still in flight: link it behind them with
    /// ``SQEFlags/link`` or queue it after their completions arrive.
    /// - Throws: ``SubmitError``.
    package mutating func fsync(
        _ fd: FileDescriptor,
        datasync: Bool,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        let sqe = try self.nextSQE()
        io_uring_prep_fsync(sqe, fd.rawValue, datasync ? UInt32(IORING_FSYNC_DATASYNC) : 0)
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `sync_file_range(fd, offset, length, flags)` (`IORING_OP_SYNC_FILE_RANGE`).
    /// With `SYNC_FILE_RANGE_WRITE` alone it starts writeback of the range's dirty pages
    /// and does not wait for it: no durability claim (no metadata, no device cache flush; an
    /// fsync still reports what that writeback hit). Completes with 0 or `-errno`.
    /// - Throws: ``SubmitError``.
    package mutating func syncFileRange(
        _ fd: FileDescriptor,
        offset: UInt64,
        length: UInt32,
        flags: UInt32,
        userData: UInt64
    ) throws(SubmitError) {
        let sqe = try self.nextSQE()
        io_uring_prep_sync_file_range(sqe, fd.rawValue, length, offset, Int32(bitPattern: flags))
        self.finish(sqe, userData: userData, flags: [])
    }

    /// Queues `IORING_OP_FUTEX_WAIT` (kernel 6.7) on a 32-bit futex word.
    ///
    /// Completes with 0 when a `FUTEX_WAKE` on the word reaches it, with
    /// `-EAGAIN` at once if `*word != expected` when the kernel arms it, or
    /// `-ECANCELED` when cancelled. The waker must use the same kind of futex:
    /// `isPrivate` pairs with `FUTEX_WAKE_PRIVATE` (same process only), a
    /// shared wait with `FUTEX_WAKE` (also across processes mapping the word).
    ///
    /// - Parameters:
    ///   - word: the address of a 4-byte-aligned `UInt32` (for example an
    ///     `Atomic<UInt32>` in a shared header).
    ///   - expected: the value the caller last saw; the wait only sleeps while
    ///     the word still holds it.
    /// - Warning: `word` must stay mapped until the completion is reaped.
    /// - Throws: ``SubmitError``.
    package mutating func futexWait(
        _ word: UnsafeRawPointer,
        expected: UInt32,
        isPrivate: Bool,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        assert(UInt(bitPattern: word) % 4 == 0, "futex words must be 4-byte aligned")
        let sqe = try self.nextSQE()
        CRelayLinux_io_uring_prep_futex_wait(
            sqe, UnsafeMutablePointer(mutating: word.assumingMemoryBound(to: UInt32.self)), expected, isPrivate
        )
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `accept4(fd, nil, nil, acceptFlags)`, or with `address` /
    /// `addressLength` to learn the peer. Completes with the new fd or
    /// `-errno`.
    /// - Parameters:
    ///   - acceptFlags: `SOCK_CLOEXEC`, `SOCK_NONBLOCK`.
    /// - Warning: `address` and `addressLength` must stay valid until the
    ///   completion is reaped.
    /// - Throws: ``SubmitError``.
    package mutating func accept(
        _ fd: FileDescriptor,
        address: UnsafeMutableRawPointer? = nil,
        addressLength: UnsafeMutablePointer<UInt32>? = nil,
        acceptFlags: Int32,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        let sqe = try self.nextSQE()
        io_uring_prep_accept(
            sqe, fd.rawValue, address?.assumingMemoryBound(to: sockaddr.self), addressLength, acceptFlags
        )
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `connect(fd, address, addressLength)`. Completes with 0 or
    /// `-errno`.
    /// - Parameters:
    ///   - address: a `sockaddr_in`, `sockaddr_in6` or `sockaddr_un`.
    /// - Warning: `address` must stay valid until the completion is reaped.
    /// - Throws: ``SubmitError``.
    package mutating func connect(
        _ fd: FileDescriptor,
        address: UnsafeRawPointer,
        addressLength: UInt32,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        let sqe = try self.nextSQE()
        io_uring_prep_connect(sqe, fd.rawValue, address.assumingMemoryBound(to: sockaddr.self), addressLength)
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues `close(fd)`. Completes with 0 or `-errno`. Do not use `fd`
    /// again once queued.
    /// - Throws: ``SubmitError``.
    package mutating func close(_ fd: FileDescriptor, userData: UInt64, flags: SQEFlags = []) throws(SubmitError) {
        let sqe = try self.nextSQE()
        io_uring_prep_close(sqe, fd.rawValue)
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues a cancellation of the in-flight operation whose `user_data` is
    /// `target` (or of all of them with `all`, kernel 5.19). The cancelled
    /// operation completes with `-ECANCELED`; this one with 0 or a positive
    /// count of cancelled requests (`all`, and futex waits, report a count),
    /// `-ENOENT` if nothing matched, `-EALREADY` if the target was already
    /// running and may still complete normally.
    /// - Throws: ``SubmitError``.
    package mutating func cancel(
        _ target: UInt64,
        all: Bool = false,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        let sqe = try self.nextSQE()
        io_uring_prep_cancel64(sqe, target, all ? Int32(IORING_ASYNC_CANCEL_ALL) : 0)
        self.finish(sqe, userData: userData, flags: flags)
    }

    /// Queues a one-shot poll for `events` (`POLLIN`, `POLLOUT`, ...) on `fd`.
    /// Completes with the ready events mask or `-errno`.
    /// - Throws: ``SubmitError``.
    package mutating func pollAdd(
        _ fd: FileDescriptor,
        events: UInt32,
        userData: UInt64,
        flags: SQEFlags = []
    ) throws(SubmitError) {
        let sqe = try self.nextSQE()
        io_uring_prep_poll_add(sqe, fd.rawValue, events)
        self.finish(sqe, userData: userData, flags: flags)
    }
}
