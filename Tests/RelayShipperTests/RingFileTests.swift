import CRelayLinux
import RelayShipper
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// File writes: registered (fixed) buffers, the EFAULT fallback, fsync links.
@Suite("IOURing file writes")
struct RingFileTests {
    @Test("writeFixed from a registered memfd mapping lands byte-for-byte at explicit offsets")
    func writeFixedFromMemfd() throws {
        try RingTestSupport.requireIOURing(.writeFixed)
        let chunk = 128 * 1024
        let chunks = 8
        var ring = try IOURing(entries: 8, cqEntries: 16)
        var buffer = CompletionBuffer(capacity: 16)
        let region = try RingTestMapping.memfd(count: chunk * chunks)
        RingTestSupport.fill(region.bytes, seed: 0x5eed)

        let registered = ring.registerBuffers([region.bytes])
        #expect(registered.succeeded, "\(registered)")
        try registered.get()
        let registeredCount = ring.registeredBufferCount
        #expect(registeredCount == 1)

        let file = try RingTestSupport.anonymousFile(in: RingTestSupport.fileDirectory())
        defer { try? file.close() }
        // All eight in flight at once, queued last-to-first so that anything
        // relying on the file position instead of the offsets would scramble.
        for index in (0..<chunks).reversed() {
            let slice = UnsafeRawBufferPointer(rebasing: region.bytes[(index * chunk)..<((index + 1) * chunk)])
            try ring.writeFixed(
                file, slice, at: UInt64(index * chunk), bufferIndex: 0,
                userData: URingUserData(kind: 1, index: 0, sequence: UInt64(index)).rawValue
            )
        }
        let pending = ring.pendingSubmissions
        #expect(pending == chunks)
        let completions = try RingTestSupport.collect(&ring, &buffer, count: chunks)
        #expect(completions.count == chunks)
        for completion in completions {
            #expect(completion.result == Int32(chunk), "write \(URingUserData(rawValue: completion.userData))")
        }
        #expect(Set(completions.map { URingUserData(rawValue: $0.userData).sequence }) == Set(0..<UInt64(chunks)))

        let written = try RingTestSupport.readBack(file, count: chunk * chunks + 1)
        #expect(written.count == chunk * chunks)
        #expect(written.elementsEqual(UnsafeRawBufferPointer(region.bytes)))

        #expect(ring.unregisterBuffers().succeeded)
        let remaining = ring.registeredBufferCount
        #expect(remaining == 0)
        #expect(ring.unregisterBuffers().failure == Errno(rawValue: ENXIO))
    }

    @Test("registering a MAP_SHARED disk-file mapping fails with EFAULT; an unregistered write works instead")
    func diskBackedRegistrationFallsBack() throws {
        try RingTestSupport.requireIOURing(.write)
        guard let directory = RingTestSupport.diskDirectory() else {
            try Test.cancel("no writable disk-backed directory (TMPDIR, /tmp, /var/tmp and . are all in-memory)")
        }
        let size = 64 * 1024
        let backing = try RingTestSupport.anonymousFile(in: directory)
        #expect(ftruncate(backing.rawValue, off_t(size)) == 0)
        let region = try RingTestMapping(count: size, owning: backing)
        RingTestSupport.fill(region.bytes, seed: 0xd15c)

        var ring = try IOURing(entries: 4)
        var buffer = CompletionBuffer(capacity: 4)
        let registered = ring.registerBuffers([region.bytes])
        #expect(registered.failure == .badAddress)
        let registeredCount = ring.registeredBufferCount
        #expect(registeredCount == 0)
        let message = IOURing.registrationFailureMessage(.badAddress, bytes: size)
        #expect(message.contains("EFAULT") && message.contains("memfd"))

        let file = try RingTestSupport.anonymousFile(in: directory)
        defer { try? file.close() }
        try ring.write(file, UnsafeRawBufferPointer(region.bytes), at: 0, userData: 7)
        let completions = try RingTestSupport.collect(&ring, &buffer, count: 1)
        #expect(completions == [Completion(userData: 7, result: Int32(size), flags: 0)])
        #expect(try RingTestSupport.readBack(file, count: size).elementsEqual(UnsafeRawBufferPointer(region.bytes)))
    }

    @Test("registration rejects empty and oversized regions before the kernel sees them")
    func registrationValidation() throws {
        try RingTestSupport.requireIOURing()
        var ring = try IOURing(entries: 4)
        #expect(ring.registerBuffers([]).failure == .invalidArgument)
        let huge = UnsafeMutableRawBufferPointer(
            start: UnsafeMutableRawPointer(bitPattern: 0x1000), count: IOURing.maxRegisteredBufferBytes + 1
        )
        #expect(ring.registerBuffers([huge]).failure == .invalidArgument)
        let registeredCount = ring.registeredBufferCount
        #expect(registeredCount == 0)
        let memlock = IOURing.registrationFailureMessage(.noMemory, bytes: 1 << 20)
        #expect(memlock.contains("RLIMIT_MEMLOCK") && memlock.contains("LimitMEMLOCK"))
    }

    @Test("fsync linked behind a write runs after it; a failed write cancels it")
    func linkedFsync() throws {
        try RingTestSupport.requireIOURing(.write, .fsync)
        var ring = try IOURing(entries: 8)
        var buffer = CompletionBuffer(capacity: 8)
        let file = try RingTestSupport.anonymousFile(in: RingTestSupport.fileDirectory())
        defer { try? file.close() }
        let payload: [UInt8] = Array("relay\n".utf8)

        try payload.withUnsafeBytes { bytes in
            try ring.write(file, bytes, at: 0, userData: 1, flags: .link)
            try ring.fsync(file, datasync: true, userData: 2)
            let completions = try RingTestSupport.collect(&ring, &buffer, count: 2)
            #expect(completions == [
                Completion(userData: 1, result: Int32(payload.count), flags: 0),
                Completion(userData: 2, result: 0, flags: 0),
            ])
        }
        #expect(try RingTestSupport.readBack(file, count: 64) == payload)

        // A write to a read-only descriptor fails, which breaks the link.
        let readOnly = try FileDescriptor.open("/proc/self/stat", .readOnly, options: .closeOnExec)
        defer { try? readOnly.close() }
        try payload.withUnsafeBytes { bytes in
            try ring.write(readOnly, bytes, at: 0, userData: 3, flags: .link)
            try ring.fsync(readOnly, datasync: false, userData: 4)
            let completions = try RingTestSupport.collect(&ring, &buffer, count: 2)
            let write = try #require(completions.first { $0.userData == 3 })
            let fsync = try #require(completions.first { $0.userData == 4 })
            #expect(write.error == .badFileDescriptor)
            #expect(fsync.error == .canceled)
        }
    }

    @Test("close through the ring closes the descriptor")
    func closeOperation() throws {
        try RingTestSupport.requireIOURing(.close)
        var ring = try IOURing(entries: 4)
        var buffer = CompletionBuffer(capacity: 4)
        // Closing one end of a socket pair makes the other see EOF: a check
        // that cannot be fooled by another test reusing the fd number.
        var ends: [Int32] = [-1, -1]
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #expect(socketpair(AF_UNIX, type, 0, &ends) == 0)
        let readEnd = FileDescriptor(rawValue: ends[0])
        defer { try? readEnd.close() }
        try ring.close(FileDescriptor(rawValue: ends[1]), userData: 5)
        #expect(try RingTestSupport.collect(&ring, &buffer, count: 1) == [Completion(userData: 5, result: 0, flags: 0)])
        var byte: UInt8 = 0
        #expect(try withUnsafeMutableBytes(of: &byte) { try readEnd.read(into: $0) } == 0)
    }
}
