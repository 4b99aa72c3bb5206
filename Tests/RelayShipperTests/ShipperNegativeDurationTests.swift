import Foundation
import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Testing

/// Negative durations (a caller's `deadline - now` once the deadline passed) mean "now": they
/// must not trap the ring thread. The child process this test starts runs
/// ``NegativeDurationProbe`` (a trap there would take this process down with it).
@Suite("Negative durations", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct NegativeDurationTests {
    @Test("a negative switch interval and a negative stop timeout of less than a second mean now, not a trap")
    func negativeSubsecondDurations() throws {
        let (status, output) = try ChildTestProcess.run(filter: "NegativeDurationProbe", environment: [negativeDurationProbeVariable: "1"])
        #expect(status == 0, "the probe failed or trapped:\n\(output)")
        #expect(output.contains("NEGATIVE-DURATION-PROBE-PASSED"), "the probe did not finish:\n\(output)")
    }
}

private let negativeDurationProbeVariable = "RELAY_NEGATIVE_DURATION_PROBE"

/// Runs only in the child process started by ``NegativeDurationTests/negativeSubsecondDurations()``.
@Suite("NegativeDurationProbe", .enabled(if: ProcessInfo.processInfo.environment[negativeDurationProbeVariable] != nil))
struct NegativeDurationProbe {
    @Test("negative durations")
    func probe() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "negative", subbufferSize: 16384, subbufferCount: 4, mode: .block(), buffers: 1))
        // Swift's `Duration.components` gives -0.5 s as 0 seconds and -5e17 attoseconds.
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(switchInterval: .milliseconds(-500)), logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("n.log")))])
        try shipper.start()
        let line = Array("sealed at once\n".utf8)
        channel.write(line)  // partly filled: arms the switch timer (already due)
        let deadline = monotonicSeconds() + 20
        while readFileBytes(dir.file("n.log")) != line && monotonicSeconds() < deadline { usleep(5000) }
        #expect(readFileBytes(dir.file("n.log")) == line, "the switch timer did not ship the record")
        channel.close()
        _ = shipper.stop(timeout: .milliseconds(-500))  // a deadline already past: stop now
        #expect(shipper.hasExited)
        print("NEGATIVE-DURATION-PROBE-PASSED")
    }
}
