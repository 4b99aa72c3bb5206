import CRelayLinux
import Glibc
import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Testing

/// RLIMIT_MEMLOCK (8 on Linux; the glibc enum does not import).
private let memlockResource = __rlimit_resource_t(8)

@Suite(
    "Registration fallback",
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
}
