import CRelayLinux
import RelayShipper
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The io_uring availability probe and its error messages.
@Suite("IOURingProbe")
struct RingProbeTests {
    @Test("the probe agrees with a raw io_uring_setup, and on success lists the shipper's opcodes")
    func probeMatchesTheKernel() throws {
        // An independent check with plain liburing: no fallbacks, no flags.
        let raw = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        defer { raw.deallocate() }
        let setup = io_uring_queue_init(2, raw, 0)
        if setup == 0 {
            io_uring_queue_exit(raw)
        }

        switch IOURingProbe.result {
        case .success(let capabilities):
            #expect(setup == 0, "the probe found io_uring, but io_uring_queue_init failed with \(setup)")
            for opcode in [IOURingProbe.Opcode.nop, .read, .write, .writeFixed, .fsync, .send, .recv, .accept] {
                #expect(capabilities.supports(opcode), "\(opcode)")
            }
            #expect(capabilities.summary.contains("ops: NOP,FSYNC,WRITE_FIXED"))
            #expect(IOURingProbe.capabilities != nil)
            #expect(IOURingProbe.unavailableReason == nil)
            // FUTEX_WAIT (6.7) and SEND_ZC (6.0) must be reported exactly when
            // the kernel is new enough.
            #expect(capabilities.futexWait == (try RingBasicsTests.kernelAtLeast(6, 7)))
            #expect(capabilities.sendZC == (try RingBasicsTests.kernelAtLeast(6, 0)))
            #expect(capabilities.missing([.nop, .futexWait]) == (capabilities.futexWait ? [] : [.futexWait]))
        case .failure(let error):
            #expect(setup != 0, "io_uring_queue_init works, but the probe says: \(error.message)")
            #expect(!error.message.isEmpty)
            #expect(IOURingProbe.capabilities == nil)
            #expect(IOURingProbe.unavailableReason == error.message)
        }
    }

    @Test("the probe is computed once")
    func probeIsCached() throws {
        let first = try RingTestSupport.requireIOURing()
        let second = try RingTestSupport.requireIOURing()
        #expect(first.setup.note == second.setup.note)
        // A fresh run sees the same kernel.
        let fresh = try IOURingProbe.run().get()
        #expect(IOURingProbe.Opcode.all.allSatisfy { fresh.supports($0) == first.supports($0) })
    }

    @Test("setup failures map to messages that say how to fix them")
    func errorMessages() {
        let disabled = IOURingUnavailableError.disabledBySysctl()
        #expect(disabled.code == .disabledBySysctl)
        #expect(disabled.message.hasPrefix("io_uring is disabled: sysctl kernel.io_uring_disabled=2; set it to 0"))

        let sysctl2 = IOURingUnavailableError.setupFailed(
            .notPermitted, disabledSysctl: 2, group: nil, memlockLimit: nil
        )
        #expect(sysctl2.code == .disabledBySysctl)

        let group = IOURingUnavailableError.setupFailed(
            .notPermitted, disabledSysctl: 1, group: 1234, memlockLimit: nil
        )
        #expect(group.code == .restrictedToGroup)
        #expect(group.message.contains("kernel.io_uring_group (gid 1234)"))

        let seccomp = IOURingUnavailableError.setupFailed(
            .notPermitted, disabledSysctl: 0, group: nil, memlockLimit: nil
        )
        #expect(seccomp.code == .blockedBySandbox)
        #expect(seccomp.errno == .notPermitted)
        #expect(
            seccomp.message.hasPrefix(
                "seccomp blocks io_uring_setup (EPERM): run outside the container's default seccomp profile "
                    + "or with --security-opt seccomp=unconfined"
            )
        )

        let enosys = IOURingUnavailableError.setupFailed(
            .noFunction, disabledSysctl: nil, group: nil, memlockLimit: nil
        )
        #expect(enosys.code == .notImplemented && enosys.message.contains("CONFIG_IO_URING"))

        let memlock = IOURingUnavailableError.setupFailed(
            .noMemory, disabledSysctl: 0, group: nil, memlockLimit: 65536
        )
        #expect(memlock.code == .memoryLockLimit && memlock.message.contains("RLIMIT_MEMLOCK (65536 bytes)"))

        let nodrop = IOURingUnavailableError.setupFailed(
            .notSupported, disabledSysctl: nil, group: nil, memlockLimit: nil
        )
        #expect(nodrop.code == .kernelTooOld && nodrop.message.contains("IORING_FEAT_NODROP"))
        #expect("\(nodrop)" == nodrop.message)
    }
}
