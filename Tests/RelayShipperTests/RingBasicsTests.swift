import CRelayLinux
import RelayShipper
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Ring setup, submission and completion mechanics, with NOPs.
@Suite("IOURing basics")
struct RingBasicsTests {
    @Test("a NOP comes back with its user_data")
    func nopRoundTrip() throws {
        try RingTestSupport.requireIOURing()
        var ring = try IOURing(entries: 8)
        var buffer = CompletionBuffer(capacity: 8)
        let cookie = URingUserData(kind: 3, index: 7, sequence: 12345).rawValue
        try ring.nop(userData: cookie)
        let pendingBefore = ring.pendingSubmissions
        #expect(pendingBefore == 1)
        let completions = try RingTestSupport.collect(&ring, &buffer, count: 1)
        #expect(completions == [Completion(userData: cookie, result: 0, flags: 0)])
        let pendingAfter = ring.pendingSubmissions
        #expect(pendingAfter == 0)
    }

    @Test("setup gets the preferred flags on a 6.1+ kernel and reports them")
    func setupFlags() throws {
        try RingTestSupport.requireIOURing()
        let setup = try IOURing(entries: 16, cqEntries: 64).setup
        #expect(setup.submissionQueueEntries == 16)
        #expect(setup.completionQueueEntries == 64)
        #expect(setup.features & UInt32(IORING_FEAT_NODROP) != 0)
        #expect(setup.note.hasPrefix("io_uring: "))
        #expect(setup.note.contains("sq=16 cq=64"))
        if try Self.kernelAtLeast(6, 1) {
            #expect(setup.singleIssuer)
            #expect(setup.deferTaskrun)
            #expect(setup.submitAll)
            #expect(setup.refused.isEmpty)
            #expect(setup.note.contains("SINGLE_ISSUER|DEFER_TASKRUN"))
            #expect(setup.registeredRingFD)
        }
    }

    @Test("a 4-entry ring accepts 100 NOPs by submitting when the SQ is full")
    func submissionQueueFull() throws {
        try RingTestSupport.requireIOURing()
        var ring = try IOURing(entries: 4, cqEntries: 128)
        let entries = ring.setup.submissionQueueEntries
        #expect(entries == 4)
        var buffer = CompletionBuffer(capacity: 32)
        for index in 0..<100 {
            try ring.nop(userData: UInt64(index))
            let pending = ring.pendingSubmissions
            #expect(pending <= 4)
        }
        let completions = try RingTestSupport.collect(&ring, &buffer, count: 100)
        #expect(completions.count == 100)
        #expect(Set(completions.map(\.userData)) == Set((0..<100).map(UInt64.init)))
        #expect(completions.allSatisfy { $0.result == 0 })
    }

    @Test("an 8-entry CQ overflows under 300 completions and none is lost")
    func completionQueuePressure() throws {
        try RingTestSupport.requireIOURing()
        var ring = try IOURing(entries: 4, cqEntries: 8)
        let cqEntries = ring.setup.completionQueueEntries
        #expect(cqEntries == 8)
        var buffer = CompletionBuffer(capacity: 16)
        var completions: [Completion] = []
        var sawOverflow = false
        var index: UInt64 = 0
        while index < 300 {
            do {
                try ring.nop(userData: index)
                index += 1
            } catch .reapFirst {
                // The documented protocol when the kernel pushes back.
                let reaped = try ring.reap(into: &buffer)
                for i in 0..<reaped { completions.append(buffer[i]) }
            }
            sawOverflow = sawOverflow || ring.completionQueueOverflowed
        }
        try ring.submit()
        sawOverflow = sawOverflow || ring.completionQueueOverflowed
        #expect(sawOverflow, "300 NOPs into an 8-entry CQ must overflow it")

        var emptyRounds = 0
        while completions.count < 300 && emptyRounds < 3 {
            let reaped = try ring.reap(into: &buffer)
            #expect(reaped <= buffer.capacity)
            for i in 0..<reaped { completions.append(buffer[i]) }
            if reaped == 0 {
                emptyRounds += 1
                try ring.submitAndWait(minCompletions: 1, timeoutNanoseconds: RingTestSupport.waitNanoseconds)
            }
        }
        #expect(completions.count == 300)
        #expect(Set(completions.map(\.userData)) == Set(0..<300))
        let stillOverflowed = ring.completionQueueOverflowed
        #expect(!stillOverflowed)
        #expect(try RingTestSupport.drainNow(&ring, &buffer).isEmpty)
    }

    @Test("CQE_SKIP_SUCCESS suppresses the completion of a successful NOP")
    func skipSuccessFlag() throws {
        try RingTestSupport.requireIOURing()
        var ring = try IOURing(entries: 8)
        var buffer = CompletionBuffer(capacity: 8)
        try ring.nop(userData: 1, flags: .skipSuccess)
        try ring.nop(userData: 2)
        let completions = try RingTestSupport.collect(&ring, &buffer, count: 1)
        #expect(completions.map(\.userData) == [2])
        #expect(try RingTestSupport.drainNow(&ring, &buffer).isEmpty)
    }

    @Test("SQE flag shims carry the kernel's IOSQE_* bits")
    func sqeFlagValues() {
        // Kernel ABI: enum io_uring_sqe_flags_bit in include/uapi/linux/io_uring.h.
        #expect(IOURing.SQEFlags.fixedFile.rawValue == 1 << 0)
        #expect(IOURing.SQEFlags.drain.rawValue == 1 << 1)
        #expect(IOURing.SQEFlags.link.rawValue == 1 << 2)
        #expect(IOURing.SQEFlags.hardLink.rawValue == 1 << 3)
        #expect(IOURing.SQEFlags.async.rawValue == 1 << 4)
        #expect(IOURing.SQEFlags.skipSuccess.rawValue == 1 << 6)
        #expect(IOURing.SendZCFlags.reportUsage.rawValue == 1 << 3)
    }

    @Test("completion helpers decode CQE flags")
    func completionHelpers() {
        let sent = Completion(userData: 9, result: 4096, flags: UInt32(IORING_CQE_F_MORE))
        #expect(sent.hasMore && !sent.isNotification && !sent.zcCopied && sent.error == nil)
        let copied = Completion(
            userData: 9, result: Int32(bitPattern: UInt32(IORING_NOTIF_USAGE_ZC_COPIED)),
            flags: UInt32(IORING_CQE_F_NOTIF)
        )
        #expect(copied.isNotification && copied.zcCopied && !copied.hasMore && copied.error == nil)
        let zeroCopied = Completion(userData: 9, result: 0, flags: UInt32(IORING_CQE_F_NOTIF))
        #expect(zeroCopied.isNotification && !zeroCopied.zcCopied)
        let failed = Completion(userData: 9, result: -EPIPE, flags: 0)
        #expect(failed.error == .brokenPipe)
    }

    @Test("only the creating thread may submit (single issuer)")
    func singleIssuerRejectsOtherThreads() async throws {
        let capabilities = try RingTestSupport.requireIOURing()
        guard capabilities.setup.singleIssuer else {
            try Test.cancel("this kernel has no IORING_SETUP_SINGLE_ISSUER (< 6.0)")
        }
        // Debug builds trap on the owner assertion; release builds get EEXIST
        // from the kernel and exit(1) below. Either way the child fails; a
        // submit that succeeded from another thread would exit(0).
        await #expect(processExitsWith: .failure) {
            var ring = try IOURing(entries: 4)
            try ring.nop(userData: 1)
            withUnsafeMutablePointer(to: &ring) { pointer in
                let address = UInt(bitPattern: pointer)
                let thread = RingTestThread {
                    let ring = UnsafeMutablePointer<IOURing>(bitPattern: address)!
                    do {
                        try ring.pointee.submit()
                    } catch {
                        exit((error as? Errno) == .fileExists ? 1 : 2)
                    }
                }
                thread.join()
            }
            exit(0)
        }
    }

    /// Whether the running kernel is at least `major.minor`.
    static func kernelAtLeast(_ major: Int, _ minor: Int) throws -> Bool {
        var name = utsname()
        #expect(uname(&name) == 0)
        let release = withUnsafeBytes(of: &name.release) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        let parts = release.split(separator: ".").prefix(2).map { Int($0.prefix { $0.isNumber }) ?? 0 }
        let version = (parts.first ?? 0, parts.count > 1 ? parts[1] : 0)
        return version >= (major, minor)
    }
}
