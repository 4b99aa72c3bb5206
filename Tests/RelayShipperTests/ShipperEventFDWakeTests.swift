import Foundation
import Relay
import RelayShipper
import RelayTestSupport
import Testing

/// The wake-up path of kernels without `IORING_OP_FUTEX_WAIT` (before 6.7, such as Debian 12's
/// 6.1): the shipper sleeps on an eventfd read armed in its ring, and writers write the eventfd.
/// This host's kernel has FUTEX_WAIT, so these tests force the eventfd path. Each one would hang
/// (and fail on its deadline) if a wake-up were lost: the switch timer is too long to rescue it.
@Suite("Shipper woken through an eventfd (kernels before 6.7)", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct ShipperEventFDWakeTests {
    static func configuration(switchInterval: Duration) -> RelayShipperConfiguration {
        var configuration = RelayShipperConfiguration(switchInterval: switchInterval)
        configuration.wakesThroughEventFD = true
        return configuration
    }

    @Test("the first record into an idle (deep-sleeping) shipper wakes it through the eventfd, and the switch timer ships it")
    func firstRecordWakesIdleShipper() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let channel = try RelayChannel(
            RelayChannelConfiguration(name: "eventfd-idle", subbufferSize: 65536, subbufferCount: 4, mode: .block(), buffers: 1))
        let shipper = RelayShipper(configuration: Self.configuration(switchInterval: .milliseconds(50)), logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("idle.log")))])
        try shipper.start()
        defer { shipper.stop() }
        // Every buffer empty: the shipper goes to sleep with no timer armed, so the write below
        // is what has to wake it.
        try #require(waitUntilIdle(shipper), "the shipper never went idle")
        let line = Array("wakes the shipper\n".utf8)
        channel.write(line)
        // Only a wake-up makes the shipper arm its 50 ms timer; without one the line waits for stop().
        let deadline = Date().addingTimeInterval(5)
        while readFileBytes(dir.file("idle.log")) != line && Date() < deadline { usleep(5000) }
        #expect(readFileBytes(dir.file("idle.log")) == line, "the record did not reach the file before stop()")
    }

    /// 240 KiB go through 32 KiB of channel while the writers run, and the switch timer never
    /// fires: the shipper can only keep up because every delivery wakes it through the eventfd.
    /// A lost wake-up leaves the channel full, the writers time out after 2 s and drop (counted),
    /// so the no-drop check fails. Whether the writers also had to wait for space depends on the
    /// host's load (a fast enough shipper keeps the channel from filling), so it is not asserted.
    @Test("block-mode writers on a small channel lose nothing while deliveries wake the shipper, across three shippers started and stopped on it")
    func backPressureAcrossRestarts() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let channel = try RelayChannel(
            RelayChannelConfiguration(
                name: "eventfd-block", subbufferSize: 8192, subbufferCount: 4, mode: .block(timeout: .seconds(2)), buffers: 1))
        for cycle in 0..<3 {
            // No switch timer to fall back on: each delivered sub-buffer must wake the shipper.
            let shipper = RelayShipper(configuration: Self.configuration(switchInterval: .seconds(3600)), logger: testLogger())
            let path = dir.file("cycle\(cycle).log")
            try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: path))])
            try shipper.start()
            let before = channel.stats().total
            // 2 × 2048 lines of 60 bytes: 240 KiB through 32 KiB of buffer.
            writeLines(channel, producers: 2, perProducer: 2048)
            #expect(shipper.stop(timeout: .seconds(10)), "cycle \(cycle): the shipper did not drain")
            let after = channel.stats().total
            #expect(after.recordsDropped == before.recordsDropped, "cycle \(cycle): a writer timed out waiting for space")
            let parsed = parseLines(try #require(readFileBytes(path)))
            #expect(parsed.malformed == 0)
            expectExactlyOnce(parsed.records, producers: 2, perProducer: 2048)
        }
    }
}
