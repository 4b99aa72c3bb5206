// Shared helpers for the Ring*Tests suites: the io_uring gate, completion
// collection, threads, temporary files, mappings and loopback sockets.

import CRelayLinux
import RelayShipper
import Synchronization
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum RingTestSupport {
    /// The longest any test waits for a completion. A safety net so a broken
    /// ring fails the test instead of hanging it; nothing is timed.
    static let waitNanoseconds: Int64 = 10_000_000_000

    /// The probe's capabilities, or cancels (skips) the test with the probe's
    /// reason when io_uring is unavailable here.
    @discardableResult
    static func requireIOURing() throws -> IOURingProbe.Capabilities {
        switch IOURingProbe.result {
        case .success(let capabilities):
            return capabilities
        case .failure(let error):
            try Test.cancel("io_uring unavailable: \(error.message)")
        }
    }

    /// Like ``requireIOURing()``, and also skips when the kernel lacks `opcode`.
    @discardableResult
    static func requireIOURing(_ opcodes: IOURingProbe.Opcode...) throws -> IOURingProbe.Capabilities {
        let capabilities = try Self.requireIOURing()
        let missing = capabilities.missing(opcodes)
        if !missing.isEmpty {
            try Test.cancel("kernel lacks \(missing.map(\.description).joined(separator: ", "))")
        }
        return capabilities
    }

    /// Submits, waits and reaps until `count` completions arrived. Records an
    /// issue (and returns what it has) if they do not arrive within the
    /// safety-net wait.
    static func collect(
        _ ring: inout IOURing,
        _ buffer: inout CompletionBuffer,
        count: Int,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> [Completion] {
        var completions: [Completion] = []
        var emptyRounds = 0
        while completions.count < count {
            try ring.submitAndWait(minCompletions: 1, timeoutNanoseconds: Self.waitNanoseconds)
            let reaped = try ring.reap(into: &buffer)
            if reaped == 0 {
                emptyRounds += 1
                if emptyRounds == 3 {
                    Issue.record(
                        "only \(completions.count) of \(count) completions arrived",
                        sourceLocation: sourceLocation
                    )
                    return completions
                }
                continue
            }
            for index in 0..<reaped {
                completions.append(buffer[index])
            }
        }
        return completions
    }

    /// Reaps without waiting (but flushing deferred work) and returns what
    /// is there.
    static func drainNow(_ ring: inout IOURing, _ buffer: inout CompletionBuffer) throws -> [Completion] {
        try ring.submitAndWait(minCompletions: 0)
        var completions: [Completion] = []
        while true {
            let reaped = try ring.reap(into: &buffer)
            for index in 0..<reaped {
                completions.append(buffer[index])
            }
            if reaped < buffer.capacity {
                return completions
            }
        }
    }

    // MARK: Files

    /// A directory on a disk-backed filesystem (not tmpfs, ramfs or
    /// hugetlbfs), where `MAP_SHARED` file mappings are file-backed.
    static func diskDirectory() -> String? {
        var candidates: [String] = []
        if let tmpdir = getenv("TMPDIR") {
            candidates.append(String(decoding: UnsafeRawBufferPointer(start: tmpdir, count: strlen(tmpdir)), as: UTF8.self))
        }
        candidates += ["/tmp", "/var/tmp"]
        var cwd = [CChar](repeating: 0, count: 4096)
        if getcwd(&cwd, cwd.count) != nil {
            candidates.append(String(decoding: cwd.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        let memoryFilesystems: Set<Int64> = [0x0102_1994, 0x8584_58f6, 0x9584_58f6]  // tmpfs, ramfs, hugetlbfs
        for directory in candidates where access(directory, W_OK) == 0 {
            var type: Int64 = 0
            if CRelayLinux_filesystem_type(directory, &type) == 0, !memoryFilesystems.contains(type) {
                return directory
            }
        }
        return nil
    }

    /// The directory for test files: a disk-backed one if there is one.
    static func fileDirectory() -> String {
        Self.diskDirectory() ?? "/tmp"
    }

    /// Creates and opens a new empty file in `directory`, then unlinks it
    /// (the descriptor keeps it alive; nothing is left behind).
    static func anonymousFile(in directory: String) throws -> FileDescriptor {
        let path = FilePath("\(directory)/relay-ring-\(getpid())-\(UInt64.random(in: 0...UInt64.max))")
        let fd = try FileDescriptor.open(
            path, .readWrite, options: [.create, .exclusiveCreate, .closeOnExec], permissions: .ownerReadWrite
        )
        _ = path.withPlatformString { unlink($0) }
        return fd
    }

    /// Reads `count` bytes at `offset`.
    static func readBack(_ fd: FileDescriptor, count: Int, at offset: Int64 = 0) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = try bytes.withUnsafeMutableBytes { buffer in
                try fd.read(
                    fromAbsoluteOffset: offset + Int64(done),
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...])
                )
            }
            if n == 0 {
                break
            }
            done += n
        }
        return Array(bytes[..<done])
    }

    /// Deterministic non-repeating-looking bytes.
    static func fill(_ buffer: UnsafeMutableRawBufferPointer, seed: UInt64) {
        var state = seed | 1
        for index in 0..<buffer.count {
            // xorshift64
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            buffer[index] = UInt8(truncatingIfNeeded: state)
        }
    }

    // MARK: Sockets

    /// A connected loopback TCP pair, set up through the ring's ACCEPT and
    /// CONNECT. Both ends have TCP_NODELAY. Returns (client, server).
    static func loopbackPair(
        _ ring: inout IOURing,
        _ buffer: inout CompletionBuffer
    ) throws -> (client: FileDescriptor, server: FileDescriptor) {
        let streamType = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let listener = socket(AF_INET, streamType, 0)
        guard listener >= 0 else { throw Errno(rawValue: errno) }
        defer { Glibc.close(listener) }

        let address = UnsafeMutablePointer<sockaddr_in>.allocate(capacity: 1)
        defer { address.deallocate() }
        address.initialize(to: sockaddr_in())
        address.pointee.sin_family = sa_family_t(AF_INET)
        address.pointee.sin_port = 0
        address.pointee.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = address.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            bind(listener, sa, length) == 0 && listen(listener, 4) == 0 && getsockname(listener, sa, &length) == 0
        }
        guard bound else { throw Errno(rawValue: errno) }

        let client = socket(AF_INET, streamType, 0)
        guard client >= 0 else { throw Errno(rawValue: errno) }

        try ring.accept(FileDescriptor(rawValue: listener), acceptFlags: Int32(SOCK_CLOEXEC.rawValue), userData: 1)
        try ring.connect(
            FileDescriptor(rawValue: client),
            address: UnsafeRawPointer(address),
            addressLength: UInt32(MemoryLayout<sockaddr_in>.size),
            userData: 2
        )
        let completions = try Self.collect(&ring, &buffer, count: 2)
        let accepted = try #require(completions.first { $0.userData == 1 })
        let connected = try #require(completions.first { $0.userData == 2 })
        #expect(connected.result == 0, "connect: \(connected.error.map(String.init(describing:)) ?? "ok")")
        #expect(accepted.result >= 0, "accept: \(accepted.error.map(String.init(describing:)) ?? "ok")")
        guard accepted.result >= 0, connected.result == 0 else {
            Glibc.close(client)
            if accepted.result >= 0 { Glibc.close(accepted.result) }
            throw Errno(rawValue: accepted.result < 0 ? -accepted.result : -connected.result)
        }
        var one: Int32 = 1
        for fd in [client, accepted.result] {
            #expect(setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) == 0)
        }
        return (FileDescriptor(rawValue: client), FileDescriptor(rawValue: accepted.result))
    }
}

// MARK: - Mappings

/// An mmap'ed region, unmapped (and its descriptor closed) on deinit.
struct RingTestMapping: ~Copyable {
    let bytes: UnsafeMutableRawBufferPointer
    /// The mapped file, owned by the mapping (memfd), or nil.
    let fd: FileDescriptor?

    /// Maps `count` bytes of `fd` (MAP_SHARED, pre-faulted), or anonymous
    /// private memory when `fd` is nil. Takes ownership of `fd`.
    init(count: Int, owning fd: FileDescriptor?) throws {
        let flags = (fd == nil ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED) | MAP_POPULATE
        let pointer = mmap(nil, count, PROT_READ | PROT_WRITE, flags, fd?.rawValue ?? -1, 0)
        guard let pointer, pointer != UnsafeMutableRawPointer(bitPattern: -1) else {
            let error = Errno(rawValue: errno)
            try? fd?.close()
            throw error
        }
        self.bytes = UnsafeMutableRawBufferPointer(start: pointer, count: count)
        self.fd = fd
    }

    /// A memfd of `count` bytes, mapped shared (the relay arena's kind of memory).
    static func memfd(count: Int) throws -> RingTestMapping {
        let fd = CRelayLinux_memfd_create("relay-ring-test")
        guard fd >= 0 else { throw Errno(rawValue: -fd) }
        guard ftruncate(fd, off_t(count)) == 0 else {
            let error = Errno(rawValue: errno)
            Glibc.close(fd)
            throw error
        }
        return try RingTestMapping(count: count, owning: FileDescriptor(rawValue: fd))
    }

    deinit {
        munmap(self.bytes.baseAddress, self.bytes.count)
        try? self.fd?.close()
    }
}

extension Result where Success == Void, Failure == Errno {
    /// The errno of a failed registration, nil on success.
    var failure: Errno? {
        if case .failure(let errno) = self { return errno }
        return nil
    }

    var succeeded: Bool { self.failure == nil }
}

// MARK: - Threads

/// An integer handed from a test thread back to the test.
final class RingTestCell: Sendable {
    private let value = Atomic<Int32>(-1)

    /// Releasing store: pairs with the acquiring load in ``get()``, which the
    /// test runs after joining the thread.
    func set(_ newValue: Int32) { self.value.store(newValue, ordering: .releasing) }

    func get() -> Int32 { self.value.load(ordering: .acquiring) }
}

/// A plain OS thread (not a Swift concurrency task), joined explicitly.
final class RingTestThread {
    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    private let thread: pthread_t

    init(_ run: @escaping @Sendable () -> Void) {
        let body = Unmanaged.passRetained(Body(run)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, body
        )
        precondition(result == 0, "pthread_create failed: \(result)")
        self.thread = thread
    }

    func join() {
        pthread_join(self.thread, nil)
    }
}
