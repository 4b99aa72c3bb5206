import CRelayLinux
import Glibc
import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Testing

/// RLIMIT_MEMLOCK (8 on Linux; the glibc enum does not import).
private let memlockResource = __rlimit_resource_t(8)

// Serialized: both tests set the process-wide RLIMIT_MEMLOCK and restore what they found, so
// one running inside the other's window would restore the other's lowered limit for good.
@Suite(
    "Registration fallback",
    .serialized,
    .enabled(if: ioUringAvailable, "io_uring is unavailable here"),
    .enabled(if: geteuid() == 0, "lowering the capability and limit needs root")
)
struct RegistrationFallbackTests {
    @Test("when RLIMIT_MEMLOCK refuses the registration, the shipper falls back to unregistered ops, says so, and works")
    func memlockFallback() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        // 8 MiB of relay memory against a 1 MiB locked-memory limit, on a thread without
        // CAP_IPC_LOCK (capabilities are per thread; the shipper thread inherits ours).
        let channel = try RelayChannel(RelayChannelConfiguration(name: "memlock", subbufferSize: 1 << 20, subbufferCount: 4, mode: .block(), buffers: 2))
        var saved = rlimit()
        getrlimit(memlockResource, &saved)
        var low = rlimit(rlim_cur: 1 << 20, rlim_max: saved.rlim_max)
        #expect(setrlimit(memlockResource, &low) == 0)
        #expect(CRelayLinux_set_ipc_lock_effective(0) == 0)
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("m.log")))])
        let started = Result { try shipper.start() }
        #expect(CRelayLinux_set_ipc_lock_effective(1) == 0)
        #expect(setrlimit(memlockResource, &saved) == 0)
        try started.get()
        writeLines(channel, producers: 2, perProducer: 20_000)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)))
        let stats = try #require(shipper.stats())
        #expect(stats.registrationFallback)
        #expect(stats.registeredBuffers == 0)
        expectExactlyOnce(parseLines(try #require(readFileBytes(dir.file("m.log")))).records, producers: 2, perProducer: 20_000)
    }

    @Test("a buffer of the largest size (1 GiB of sub-buffers) is registered: its control pages are not counted against io_uring's 1 GiB limit")
    func largestBufferIsRegistered() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let channel = try RelayChannel(
            RelayChannelConfiguration(name: "largest", subbufferSize: 512 << 20, subbufferCount: 2, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(
            channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("l.log"), fixedBufferWrites: .always))])
        try shipper.start()
        writeLines(channel, producers: 1, perProducer: 1000)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)))
        let stats = try #require(shipper.stats())
        #expect(!stats.registrationFallback, "the 1 GiB buffer was not registered")
        #expect(stats.registeredBuffers == 1)
        #expect(stats.sinks.first?.fixedWrites ?? 0 > 0, "no WRITE_FIXED from the registered sub-buffers")
        expectExactlyOnce(parseLines(try #require(readFileBytes(dir.file("l.log")))).records, producers: 1, perProducer: 1000)
    }

    @Test("stop() returns only after the ring gave back its registration: under a locked-memory limit for one registration, shippers started one after another each register")
    func stopReleasesRegistration() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        // 1 MiB of sub-buffers per registration against a 1.75 MiB limit: a shipper started while
        // its predecessor's ring still pins the same pages (each ring accounts them again) falls
        // back to unregistered ops. The rest of the limit is for the rings' own memory, which
        // counts too and which the kernel gives back in work it runs some time after the close
        // (nothing can wait for that): 20 rings of 8 entries are far less than 0.75 MiB.
        let channel = try RelayChannel(
            RelayChannelConfiguration(name: "memlock-cycles", subbufferSize: 256 << 10, subbufferCount: 4, mode: .block(), buffers: 1))
        defer { channel.close() }
        var saved = rlimit()
        getrlimit(memlockResource, &saved)
        var low = rlimit(rlim_cur: 7 << 18, rlim_max: saved.rlim_max)
        #expect(setrlimit(memlockResource, &low) == 0)
        defer { setrlimit(memlockResource, &saved) }
        for cycle in 0..<20 {
            let shipper = RelayShipper(configuration: RelayShipperConfiguration(ringEntries: 8), logger: testLogger())
            try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("c\(cycle).log")))])
            // The ring thread inherits this thread's capabilities: without CAP_IPC_LOCK, its
            // registration counts against RLIMIT_MEMLOCK.
            #expect(CRelayLinux_set_ipc_lock_effective(0) == 0)
            let started = Result { try shipper.start() }
            #expect(CRelayLinux_set_ipc_lock_effective(1) == 0)
            try started.get()
            channel.write(Array("cycle \(cycle)\n".utf8))
            #expect(shipper.stop(timeout: .seconds(10)))
            let stats = try #require(shipper.stats())
            // The first cycle finds the budget free, unless something else pins memory as this user.
            #expect(
                !stats.registrationFallback && stats.registeredBuffers == 1,
                "cycle \(cycle): the registration failed: the previous shipper's ring still pinned its buffers when its stop() returned")
            if stats.registrationFallback { break }
        }
    }
}
