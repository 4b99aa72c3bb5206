import Foundation
import Relay
import RelayShipper
import RelayTestSupport
import Testing

@Suite("Socket sink send buffer size", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct SocketSendBufferTests {
    @Test("a send buffer size beyond what SO_SNDBUF takes is clamped, not a trap on the ring thread")
    func hugeSendBufferSize() throws {
        let (status, output) = try ChildTestProcess.run(filter: "HugeSendBufferProbe", environment: [hugeSendBufferProbeVariable: "1"])
        #expect(status == 0, "the probe failed or trapped:\n\(output)")
        #expect(output.contains("HUGE-SEND-BUFFER-PROBE-PASSED"), "the probe did not finish:\n\(output)")
    }
}

private let hugeSendBufferProbeVariable = "RELAY_HUGE_SEND_BUFFER_PROBE"

/// Runs only in the child process started by ``SocketSendBufferTests/hugeSendBufferSize()``
/// (a trap there would end the whole test run).
@Suite("HugeSendBufferProbe", .enabled(if: ProcessInfo.processInfo.environment[hugeSendBufferProbeVariable] != nil))
struct HugeSendBufferProbe {
    @Test("huge send buffer size")
    func probe() throws {
        let receiver = try StreamReceiver()
        defer { receiver.stop() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "hugesndbuf", subbufferSize: 16384, subbufferCount: 4, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: "127.0.0.1", port: receiver.port), sendBufferSize: 8 << 30))])
        try shipper.start()
        let line = Array("huge send buffer\n".utf8)
        #expect(channel.write(line) == .written)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)))
        #expect(receiver.waitFor(bytes: line.count, timeout: 20) == line.count)
        #expect(receiver.received == line)
        print("HUGE-SEND-BUFFER-PROBE-PASSED")
    }
}
