internal import CRelayLinux
package import SystemPackage

/// One completion (CQE), copied out of the CQ ring.
///
/// For most operations `result` is the syscall-style return value: bytes
/// transferred, a new fd, or `-errno`. A zero-copy send posts two: first the
/// send result with ``hasMore`` set, then a notification (``isNotification``)
/// once the kernel no longer references the buffer.
package struct Completion: Hashable, Sendable {
    /// The `user_data` of the SQE (see ``URingUserData``).
    package var userData: UInt64
    /// `cqe.res`: the result, or `-errno`.
    package var result: Int32
    /// `cqe.flags` (`IORING_CQE_F_*`).
    package var flags: UInt32

    /// Creates a completion from its three CQE fields.
    package init(userData: UInt64, result: Int32, flags: UInt32) {
        self.userData = userData
        self.result = result
        self.flags = flags
    }

    /// More CQEs will follow for the same SQE (`IORING_CQE_F_MORE`): for a
    /// zero-copy send, the buffer is still in use until the notification.
    package var hasMore: Bool {
        self.flags & UInt32(IORING_CQE_F_MORE) != 0
    }

    /// This is a zero-copy send's notification (`IORING_CQE_F_NOTIF`): the
    /// kernel has released the buffer. It says nothing about delivery.
    package var isNotification: Bool {
        self.flags & UInt32(IORING_CQE_F_NOTIF) != 0
    }

    /// For a notification of a send made with ``IOURing/SendZCFlags/reportUsage``:
    /// the kernel copied the data instead of sending the pages (always the
    /// case on loopback). A high ratio means plain sends would be cheaper.
    package var zcCopied: Bool {
        self.isNotification && UInt32(bitPattern: self.result) & UInt32(IORING_NOTIF_USAGE_ZC_COPIED) != 0
    }

    /// `-result` as an `Errno` when the operation failed, `nil` otherwise.
    /// Not meaningful for notifications, whose `result` is a usage report.
    package var error: Errno? {
        self.result < 0 && !self.isNotification ? Errno(rawValue: -self.result) : nil
    }
}

/// Preallocated storage that ``IOURing/reap(into:)`` fills with completions.
///
/// Allocated once; reaping into it allocates nothing. The contents stay
/// valid until the next reap into the same buffer, and the ring may be used
/// while they are read.
package struct CompletionBuffer: ~Copyable {
    /// `capacity` C-layout completions, filled by the CQ copy shim.
    let storage: UnsafeMutablePointer<CRelayLinux_completion>

    /// How many completions one reap can return at most.
    package let capacity: Int

    /// How many completions the last reap returned.
    package internal(set) var count: Int = 0

    /// Allocates room for `capacity` completions.
    /// - Precondition: `capacity` is in 1...UInt32.max.
    package init(capacity: Int) {
        precondition(capacity > 0 && capacity <= Int(UInt32.max), "CompletionBuffer capacity must be positive")
        self.storage = .allocate(capacity: capacity)
        self.storage.initialize(repeating: CRelayLinux_completion(), count: capacity)
        self.capacity = capacity
    }

    deinit {
        self.storage.deallocate()
    }

    /// The completion at `index`.
    /// - Precondition: `index < count`.
    package subscript(index: Int) -> Completion {
        precondition(index >= 0 && index < self.count, "CompletionBuffer index out of range")
        let raw = self.storage[index]
        return Completion(userData: raw.user_data, result: raw.res, flags: raw.flags)
    }

    /// Whether the last reap returned nothing.
    package var isEmpty: Bool { self.count == 0 }
}
