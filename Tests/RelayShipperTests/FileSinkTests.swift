import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Testing

@Suite("File sink", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct FileSinkTests {
    @Test("plain format: one buffer, records arrive byte-identical and in order")
    func plainSingleBuffer() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let channel = try RelayChannel(RelayChannelConfiguration(name: "plain1", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("out.log")))])
        try shipper.start()
        var expected: [UInt8] = []
        for i in 0..<20_000 {
            let line = Array("line \(i) \(String(repeating: "z", count: i % 50))\n".utf8)
            expected += line
            #expect(channel.write(line) == .written)
        }
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)))
        let bytes = try #require(readFileBytes(dir.file("out.log")))
        #expect(bytes.count == expected.count)
        #expect(bytes == expected)
    }
}
