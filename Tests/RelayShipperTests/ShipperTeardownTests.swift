import Foundation
import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Testing

/// `stop()` returns once the ring thread has torn the ring down, not just once it stopped
/// shipping. Counting the process's io_uring descriptors needs a process where no other test
/// creates rings meanwhile: the child process this test starts runs ``RingTeardownProbe``.
@Suite("Ring teardown", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct ShipperTeardownTests {
    @Test("when stop() returns, the ring's descriptor is closed")
    func stopClosesTheRing() throws {
        let (status, output) = try ChildTestProcess.run(filter: "RingTeardownProbe", environment: [ringTeardownProbeVariable: "1"])
        #expect(status == 0, "the probe failed:\n\(output)")
        #expect(output.contains("RING-TEARDOWN-PROBE-PASSED"), "the probe did not finish:\n\(output)")
    }
}

private let ringTeardownProbeVariable = "RELAY_RING_TEARDOWN_PROBE"

/// The io_uring descriptors open in this process.
private func ioUringDescriptors() -> Int {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return entries.count { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")) == "anon_inode:[io_uring]" }
}

/// Runs only in the child process started by ``ShipperTeardownTests/stopClosesTheRing()``.
@Suite("RingTeardownProbe", .enabled(if: ProcessInfo.processInfo.environment[ringTeardownProbeVariable] != nil))
struct RingTeardownProbe {
    @Test("ring descriptors around start() and stop()")
    func probe() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "teardown", subbufferSize: 16384, subbufferCount: 4, mode: .block(), buffers: 1))
        defer { channel.close() }
        _ = RelayShipper.probeIOURing()  // its probe ring is closed before it returns
        let before = ioUringDescriptors()
        // The window this guards is a few microseconds wide: many rounds, each checked at once.
        for round in 0..<100 {
            let shipper = RelayShipper(logger: testLogger())
            // A file per round: this counts ring descriptors, not how soon the file's lock goes.
            try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("t\(round).log")))])
            try shipper.start()
            let running = ioUringDescriptors()
            channel.write(Array("round \(round)\n".utf8))
            #expect(shipper.stop(timeout: .seconds(10)))
            let after = ioUringDescriptors()
            try #require(running == before + 1, "round \(round): \(running - before) ring descriptors while running, expected 1")
            try #require(after == before, "round \(round): the ring's descriptor was still open when stop() returned")
        }
        print("RING-TEARDOWN-PROBE-PASSED")
    }
}
