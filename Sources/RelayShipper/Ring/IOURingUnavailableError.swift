public import SystemPackage

/// io_uring cannot be used in this process, and what to do about it.
///
/// Raised when the shipper starts (through ``IOURingProbe``). The
/// ``message`` names the cause and the fix, e.g.
/// `io_uring is disabled: sysctl kernel.io_uring_disabled=2; set it to 0`.
public struct IOURingUnavailableError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of problem it is. New codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Hashable, Sendable {
            case disabledBySysctl
            case restrictedToGroup
            case blockedBySandbox
            case notImplemented
            case memoryLockLimit
            case fileDescriptorLimit
            case kernelTooOld
            case other
        }

        private let wrapped: Wrapped

        private init(_ wrapped: Wrapped) {
            self.wrapped = wrapped
        }

        /// `kernel.io_uring_disabled=2`: nobody may create rings.
        public static let disabledBySysctl = Code(.disabledBySysctl)
        /// `kernel.io_uring_disabled=1` and the process is neither privileged
        /// nor in `kernel.io_uring_group`.
        public static let restrictedToGroup = Code(.restrictedToGroup)
        /// A seccomp filter or LSM denies `io_uring_setup` (`EPERM`).
        public static let blockedBySandbox = Code(.blockedBySandbox)
        /// The kernel has no io_uring (`ENOSYS`).
        public static let notImplemented = Code(.notImplemented)
        /// `RLIMIT_MEMLOCK` is too small for the rings (`ENOMEM`).
        public static let memoryLockLimit = Code(.memoryLockLimit)
        /// The process or system is out of file descriptors.
        public static let fileDescriptorLimit = Code(.fileDescriptorLimit)
        /// The kernel lacks a feature swift-relay needs.
        public static let kernelTooOld = Code(.kernelTooOld)
        /// Anything else; see the message and ``IOURingUnavailableError/errno``.
        public static let other = Code(.other)

        /// The code's name.
        public var description: String {
            switch self.wrapped {
            case .disabledBySysctl: "disabledBySysctl"
            case .restrictedToGroup: "restrictedToGroup"
            case .blockedBySandbox: "blockedBySandbox"
            case .notImplemented: "notImplemented"
            case .memoryLockLimit: "memoryLockLimit"
            case .fileDescriptorLimit: "fileDescriptorLimit"
            case .kernelTooOld: "kernelTooOld"
            case .other: "other"
            }
        }
    }

    /// The kind of problem.
    public let code: Code
    /// What is wrong and how to fix it, in one sentence or two.
    public let message: String
    /// The errno `io_uring_setup` returned, if it got that far.
    public let errno: Errno?

    /// Creates an error.
    package init(code: Code, message: String, errno: Errno?) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    /// The ``message``.
    public var description: String { self.message }

    /// The error for a failed trial ring setup.
    ///
    /// - Parameters:
    ///   - errno: what `io_uring_setup` (through ``IOURing/init(entries:cqEntries:)``) returned.
    ///   - disabledSysctl: `/proc/sys/kernel/io_uring_disabled`, `nil` when the
    ///     file does not exist (kernels before 6.6).
    ///   - group: `/proc/sys/kernel/io_uring_group`, if readable.
    ///   - memlockLimit: the soft `RLIMIT_MEMLOCK` in bytes, `nil` for unlimited.
    package static func setupFailed(
        _ errno: Errno,
        disabledSysctl: Int?,
        group: Int?,
        memlockLimit: UInt64?
    ) -> IOURingUnavailableError {
        switch errno {
        case .notPermitted:
            if disabledSysctl == 2 {
                return .disabledBySysctl()
            }
            if disabledSysctl == 1 {
                let groupText = group.map { $0 < 0 ? "none configured" : "gid \($0)" } ?? "unknown"
                return IOURingUnavailableError(
                    code: .restrictedToGroup,
                    message: "io_uring is restricted: sysctl kernel.io_uring_disabled=1 allows only CAP_SYS_ADMIN "
                        + "and members of kernel.io_uring_group (\(groupText)); add this user to that group, "
                        + "or set kernel.io_uring_disabled=0",
                    errno: errno
                )
            }
            return IOURingUnavailableError(
                code: .blockedBySandbox,
                message: "seccomp blocks io_uring_setup (EPERM): run outside the container's default seccomp "
                    + "profile or with --security-opt seccomp=unconfined (Docker ≥ 25, containerd and Kubernetes' "
                    + "RuntimeDefault deny io_uring), or allow io_uring_setup/io_uring_enter/io_uring_register "
                    + "in a custom profile; an LSM (SELinux io_uring class) can also deny it",
                errno: errno
            )
        case .noFunction:
            return IOURingUnavailableError(
                code: .notImplemented,
                message: "io_uring_setup is not implemented (ENOSYS): the kernel is older than 5.1 or built "
                    + "without CONFIG_IO_URING, or a sandbox (gVisor, a seccomp filter returning ENOSYS) hides "
                    + "it; run on a kernel ≥ 6.1 with io_uring enabled",
                errno: errno
            )
        case .noMemory:
            let limitText = memlockLimit.map { "\($0) bytes" } ?? "unlimited"
            return IOURingUnavailableError(
                code: .memoryLockLimit,
                message: "io_uring_setup failed with ENOMEM: the ring memory counts against RLIMIT_MEMLOCK "
                    + "(\(limitText)); raise it (systemd: LimitMEMLOCK=; shell: ulimit -l; docker: "
                    + "--ulimit memlock=-1) or use a smaller ring",
                errno: errno
            )
        case .tooManyOpenFiles, .tooManyOpenFilesInSystem:
            return IOURingUnavailableError(
                code: .fileDescriptorLimit,
                message: "io_uring_setup failed (\(errno)): out of file descriptors; raise RLIMIT_NOFILE "
                    + "(systemd: LimitNOFILE=; shell: ulimit -n) or close unused files",
                errno: errno
            )
        case .notSupported:
            return IOURingUnavailableError(
                code: .kernelTooOld,
                message: "the kernel's io_uring lacks IORING_FEAT_NODROP (kernel < 5.5) and could drop "
                    + "completions; run on a kernel ≥ 6.1",
                errno: errno
            )
        default:
            return IOURingUnavailableError(
                code: .other,
                message: "io_uring_setup failed: \(errno); check dmesg and the kernel's io_uring configuration",
                errno: errno
            )
        }
    }

    /// `kernel.io_uring_disabled=2`.
    package static func disabledBySysctl() -> IOURingUnavailableError {
        IOURingUnavailableError(
            code: .disabledBySysctl,
            message: "io_uring is disabled: sysctl kernel.io_uring_disabled=2; set it to 0 "
                + "(sysctl -w kernel.io_uring_disabled=0, and in /etc/sysctl.d to persist)",
            errno: nil
        )
    }

    /// The kernel answers but lacks operations the caller needs.
    package static func missingOperations(_ names: [String]) -> IOURingUnavailableError {
        IOURingUnavailableError(
            code: .kernelTooOld,
            message: "the kernel's io_uring lacks \(names.joined(separator: ", ")); run on a newer kernel "
                + "(READ, WRITE, SEND and RECV need 5.6, SEND_ZC 6.0, FUTEX_WAIT 6.7)",
            errno: nil
        )
    }
}
