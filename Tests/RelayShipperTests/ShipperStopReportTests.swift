import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Testing

@Suite("Shipper stop reports", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct ShipperStopReportTests {
    @Test("stop() whose deadline passes while a sealed sub-buffer still waits for a writer's commit reports false")
    func stopReportsUncommittedSubbuffer() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "held", subbufferSize: 4096, subbufferCount: 4, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("held.log")))])
        try shipper.start()
        channel.write(Array("before\n".utf8))
        // A writer inside its record: the stop's flush seals the sub-buffer, but it is
        // delivered (and can be shipped) only at this commit.
        let reservation = try channel.reserve(6)
        reservation.withUnsafeMutableBytes { $0.copyBytes(from: Array("held!\n".utf8)) }
        let started = monotonicSeconds()
        let shipped = shipper.stop(timeout: .milliseconds(200))
        // stop() returns at its 200 ms deadline rather than waiting for the commit (which
        // comes only after it returns); 10 s leaves a loaded CI host room.
        #expect(monotonicSeconds() - started < 10)
        #expect(!shipped, "the sub-buffer holding \"before\" never left: stop() must not report everything shipped")
        #expect(readFileBytes(dir.file("held.log"))?.count == 0)
        reservation.commit()
        channel.close()
    }

    @Test("a stop() with a shorter timeout than one already requested returns at its own deadline, not the earlier request's")
    func laterStopWithEarlierDeadline() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "tighten", subbufferSize: 4096, subbufferCount: 4, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("tighten.log")))])
        try shipper.start()
        channel.write(Array("before\n".utf8))
        // A writer inside its record: the shipper cannot drain until it commits, which comes
        // only after the stops below returned.
        let reservation = try channel.reserve(6)
        reservation.withUnsafeMutableBytes { $0.copyBytes(from: Array("held!\n".utf8)) }
        // A graceful shutdown that may take 30 s (a service's drain timeout), then a stop that
        // must end sooner (a cancellation, `requestStop(timeout: .zero)`, or a caller's stop).
        #expect(shipper.requestStop(timeout: .seconds(30)))
        let started = monotonicSeconds()
        let shipped = shipper.stop(timeout: .milliseconds(200))
        let elapsed = monotonicSeconds() - started
        // 10 s leaves a loaded CI host room and is far below the first request's 30 s.
        #expect(elapsed < 10, "stop(timeout: 200 ms) took \(elapsed) s: it waited for the earlier request's 30 s deadline")
        #expect(!shipped)
        reservation.commit()
        channel.close()
    }
}
