import Glibc
import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Testing

@Suite(
    "Shipper in-flight stats",
    .enabled(if: ioUringAvailable, "io_uring is unavailable here"),
    .enabled(if: geteuid() == 0, "mounting a small tmpfs needs root (CI runs as root)")
)
struct ShipperInFlightStatsTests {
    /// A write that failed with ENOSPC waits (parked) for its retry with nothing in the kernel:
    /// between retry rounds a failing file sink has no operation in flight, and its stats must
    /// say so, as the shutdown's count of outstanding operations does.
    @Test("a file sink's failed writes waiting for their retry are not reported as in flight")
    func parkedWritesAreNotInFlight() throws {
        let dir = TemporaryDirectory(prefix: "relay-inflight")
        defer {
            shell("umount '\(dir.path)' 2>/dev/null")
            dir.remove()
        }
        try #require(shell("mount -t tmpfs -o size=1m tmpfs '\(dir.path)'") == 0, "mount tmpfs")
        // Fill the file system: every write fails with ENOSPC until the filler goes.
        shell("dd if=/dev/zero of='\(dir.file("filler"))' bs=64k count=64 status=none 2>/dev/null")
        let channel = try RelayChannel(RelayChannelConfiguration(name: "inflight", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let line = Array("\(String(repeating: "i", count: 99))\n".utf8)
        for _ in 0..<(4 * 163) { #expect(channel.write(line) == .written) }
        channel.flush()
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(fileQueueDepth: 8), logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("out.log"), preallocate: 0, fixedBufferWrites: .always))])
        try shipper.start()
        // Between retry rounds (backing off from 50 ms to 5 s) the shipper publishes its stats
        // before it sleeps: then every write of the sink is parked, none in the kernel.
        let stats = waitForStats(shipper) { $0.sinks[0].failing && $0.sinks[0].errors >= 3 && $0.sinks[0].inFlight == 0 }
        let sink = try #require(stats?.sinks.first)
        #expect(sink.failing && sink.errors >= 3, "the sink never failed: \(sink)")
        #expect(sink.inFlight == 0, "failed writes waiting for their retry reported as \(sink.inFlight) operations in flight")
        // Free space: the retry succeeds and everything drains.
        #expect(shell("rm -f '\(dir.file("filler"))'") == 0)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(30)))
        #expect(shipper.stats()?.sinks[0].inFlight == 0)
    }
}
