internal import CRelayLinux
internal import SystemPackage

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Musl)
internal import Musl
#endif

/// Whether io_uring works in this process, and which operations it has.
///
/// Checks `kernel.io_uring_disabled`, sets up a trial ring (the same flag
/// fallbacks as ``IOURing``), and asks the kernel which opcodes it supports
/// (`IORING_REGISTER_PROBE`). The answer is computed once per process.
///
/// ```swift
/// switch IOURingProbe.result {
/// case .success(let capabilities): logger.info("\(capabilities.summary)")
/// case .failure(let error): throw error   // error.message says how to fix it
/// }
/// ```
package enum IOURingProbe {
    /// An io_uring opcode (`IORING_OP_*`).
    package struct Opcode: Hashable, Sendable, CustomStringConvertible {
        /// The opcode number.
        package let rawValue: UInt8
        /// The name without the `IORING_OP_` prefix.
        package let name: String

        private init(_ rawValue: UInt32, _ name: String) {
            self.rawValue = UInt8(rawValue)
            self.name = name
        }

        /// No-op (5.1).
        package static let nop = Opcode(IORING_OP_NOP.rawValue, "NOP")
        /// fsync/fdatasync (5.1).
        package static let fsync = Opcode(IORING_OP_FSYNC.rawValue, "FSYNC")
        /// Write from a registered buffer (5.1).
        package static let writeFixed = Opcode(IORING_OP_WRITE_FIXED.rawValue, "WRITE_FIXED")
        /// One-shot poll (5.1).
        package static let pollAdd = Opcode(IORING_OP_POLL_ADD.rawValue, "POLL_ADD")
        /// accept4 (5.5).
        package static let accept = Opcode(IORING_OP_ACCEPT.rawValue, "ACCEPT")
        /// Cancel by user_data (5.5).
        package static let asyncCancel = Opcode(IORING_OP_ASYNC_CANCEL.rawValue, "ASYNC_CANCEL")
        /// connect (5.5).
        package static let connect = Opcode(IORING_OP_CONNECT.rawValue, "CONNECT")
        /// close (5.6).
        package static let close = Opcode(IORING_OP_CLOSE.rawValue, "CLOSE")
        /// pread (5.6).
        package static let read = Opcode(IORING_OP_READ.rawValue, "READ")
        /// pwrite (5.6).
        package static let write = Opcode(IORING_OP_WRITE.rawValue, "WRITE")
        /// send (5.6).
        package static let send = Opcode(IORING_OP_SEND.rawValue, "SEND")
        /// recv (5.6).
        package static let recv = Opcode(IORING_OP_RECV.rawValue, "RECV")
        /// Zero-copy send (6.0).
        package static let sendZC = Opcode(IORING_OP_SEND_ZC.rawValue, "SEND_ZC")
        /// Futex wait (6.7; not in liburing 2.3's headers).
        package static let futexWait = Opcode(UInt32(CRelayLinux_IORING_OP_FUTEX_WAIT), "FUTEX_WAIT")
        /// Futex wake (6.7).
        package static let futexWake = Opcode(UInt32(CRelayLinux_IORING_OP_FUTEX_WAKE), "FUTEX_WAKE")

        /// Every opcode ``IOURing`` can prepare.
        package static let all: [Opcode] = [
            .nop, .fsync, .writeFixed, .pollAdd, .accept, .asyncCancel, .connect, .close, .read, .write,
            .send, .recv, .sendZC, .futexWait, .futexWake,
        ]

        /// `IORING_OP_<name>`.
        package var description: String { "IORING_OP_\(self.name)" }
    }

    /// What io_uring offers in this process.
    package struct Capabilities: Sendable {
        /// How the trial ring was set up (flags granted, fallbacks taken).
        package let setup: IOURing.Setup
        /// Bit `n` of word `n / 64` is set when opcode `n` is supported.
        private let opcodes: [UInt64]
        /// The soft `RLIMIT_MEMLOCK` in bytes, `nil` for unlimited. Registered
        /// buffers and, on recent kernels, ring memory count against it.
        package let memlockLimit: UInt64?

        init(setup: IOURing.Setup, opcodes: [UInt64], memlockLimit: UInt64?) {
            self.setup = setup
            self.opcodes = opcodes
            self.memlockLimit = memlockLimit
        }

        /// Whether the kernel supports `opcode`.
        package func supports(_ opcode: Opcode) -> Bool {
            let index = Int(opcode.rawValue)
            return self.opcodes[index / 64] & (1 << UInt64(index % 64)) != 0
        }

        /// The opcodes of `required` the kernel lacks.
        package func missing(_ required: [Opcode]) -> [Opcode] {
            required.filter { !self.supports($0) }
        }

        /// Registered-buffer writes (5.1).
        package var writeFixed: Bool { self.supports(.writeFixed) }
        /// Zero-copy sends (6.0).
        package var sendZC: Bool { self.supports(.sendZC) }
        /// Futex waits in the ring (6.7); otherwise wake up through an eventfd read.
        package var futexWait: Bool { self.supports(.futexWait) }

        /// One line for the start-up log.
        package var summary: String {
            let supported = Opcode.all.filter { self.supports($0) }.map(\.name)
            let unsupported = Opcode.all.filter { !self.supports($0) }.map(\.name)
            var line = self.setup.note
            line += "; ops: " + supported.joined(separator: ",")
            if !unsupported.isEmpty {
                line += "; missing: " + unsupported.joined(separator: ",")
            }
            line += "; memlock: " + (self.memlockLimit.map { "\($0) bytes" } ?? "unlimited")
            return line
        }
    }

    /// The probe's answer, computed on first use and cached.
    package static let result: Result<Capabilities, IOURingUnavailableError> = Self.run()

    /// The capabilities, or `nil` when io_uring is unavailable.
    package static var capabilities: Capabilities? {
        try? Self.result.get()
    }

    /// Why io_uring is unavailable, or `nil` when it works.
    package static var unavailableReason: String? {
        if case .failure(let error) = Self.result {
            return error.message
        }
        return nil
    }

    /// Runs the probe now, uncached. Creates and destroys one small ring on
    /// the calling thread.
    package static func run() -> Result<Capabilities, IOURingUnavailableError> {
        let disabled = Sysctl.integer("/proc/sys/kernel/io_uring_disabled")
        if disabled == 2 {
            return .failure(.disabledBySysctl())
        }
        let memlockLimit = Self.memlockLimit()
        let ring: IOURing
        do {
            ring = try IOURing(entries: 4)
        } catch {
            return .failure(
                .setupFailed(
                    error,
                    disabledSysctl: disabled,
                    group: Sysctl.integer("/proc/sys/kernel/io_uring_group"),
                    memlockLimit: memlockLimit
                )
            )
        }
        guard let probe = io_uring_get_probe_ring(ring.ring) else {
            // IORING_REGISTER_PROBE arrived in 5.6, together with most opcodes
            // the shipper needs.
            return .failure(.missingOperations(["IORING_REGISTER_PROBE (kernel < 5.6)"]))
        }
        defer { io_uring_free_probe(probe) }
        var opcodes = [UInt64](repeating: 0, count: 4)
        for opcode in 0...Int(probe.pointee.last_op) where io_uring_opcode_supported(probe, Int32(opcode)) != 0 {
            opcodes[opcode / 64] |= 1 << UInt64(opcode % 64)
        }
        return .success(Capabilities(setup: ring.setup, opcodes: opcodes, memlockLimit: memlockLimit))
    }

    /// The soft RLIMIT_MEMLOCK, `nil` for unlimited.
    private static func memlockLimit() -> UInt64? {
        let limit = CRelayLinux_memlock_limit()
        return limit == UInt64.max ? nil : limit
    }
}
