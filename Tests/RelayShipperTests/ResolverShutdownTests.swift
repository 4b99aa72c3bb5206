import Glibc
import Logging
import Relay
@testable import RelayShipper
import RelayTestSupport
import Synchronization
import Testing

@Suite("Resolver threads at shutdown", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct ResolverShutdownTests {
    /// A shipper with one socket sink whose host name look-up runs `lookUp` (a stand-in).
    private func shipper(host: String, log: CapturedLog, lookUp: @escaping @Sendable () -> [(host: String, port: Int)]) throws -> (RelayShipper, RelayChannel) {
        SocketAddress.lookUpStandIns.withLock { $0[host] = lookUp }
        let channel = try RelayChannel(RelayChannelConfiguration(name: host, subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(configuration: RelayShipperConfiguration(switchInterval: .milliseconds(10)), logger: log.logger())
        try shipper.add(channel, sinks: [.socket(RelaySocketSinkConfiguration(
            endpoint: .tcp(host: host, port: 1), reconnectDelay: .seconds(2)...(.seconds(4))))])
        return (shipper, channel)
    }

    /// A flag the stand-in look-up and the test share.
    final class Flag: Sendable {
        private let value = Atomic<Bool>(false)
        var isSet: Bool { self.value.load(ordering: .acquiring) }
        func set() { self.value.store(true, ordering: .releasing) }

        /// Waits until set (or `timeout` seconds); returns whether it is.
        func wait(timeout: Double = 5) -> Bool {
            let deadline = monotonicSeconds() + timeout
            while !self.isSet && monotonicSeconds() < deadline { usleep(1000) }
            return self.isSet
        }
    }

    @Test("stop waits for a look-up still running on its resolver thread and joins the thread")
    func stopJoinsRunningLookUp() throws {
        let host = "join.relay-test"
        defer { _ = SocketAddress.lookUpStandIns.withLock { $0.removeValue(forKey: host) } }
        let started = Flag()
        let returned = Flag()
        let log = CapturedLog()
        let (shipper, channel) = try self.shipper(host: host, log: log) {
            started.set()
            usleep(400_000)
            returned.set()
            return [("127.0.0.1", 9)]
        }
        try shipper.start()
        channel.write(Array("never delivered\n".utf8))
        #expect(started.wait(), "the look-up started")
        channel.close()
        #expect(!shipper.stop(timeout: .milliseconds(50)), "the record had nowhere to go")
        // The ring thread exited only after the resolver thread returned and was joined.
        #expect(returned.isSet, "stop returned while the resolver thread was still in its look-up")
        #expect(shipper.shared.resolvers.outstanding == 0)
        #expect(shipper.shared.resolvers.totals == ResolverThreads.ReapResult(joined: 1, abandoned: 0))
        #expect(!log.all.contains { $0.contains("look-ups were still running") }, "\(log.all)")
    }

    @Test("a look-up that outlasts the bounded wait is abandoned: stop returns in time, says so, and the late result posts nothing")
    func stopAbandonsStuckLookUp() throws {
        let host = "stuck.relay-test"
        defer { _ = SocketAddress.lookUpStandIns.withLock { $0.removeValue(forKey: host) } }
        let started = Flag()
        let release = Flag()
        let returned = Flag()
        let log = CapturedLog()
        let (shipper, channel) = try self.shipper(host: host, log: log) {
            started.set()
            while !release.isSet { usleep(1000) }
            returned.set()
            return [("127.0.0.1", 9)]
        }
        shipper.shared.resolvers.joinTimeoutNanoseconds.store(200_000_000, ordering: .relaxed)
        try shipper.start()
        channel.write(Array("never delivered\n".utf8))
        #expect(started.wait(), "the look-up started")
        channel.close()
        let stopping = monotonicSeconds()
        #expect(!shipper.stop(timeout: .milliseconds(50)))
        let took = monotonicSeconds() - stopping
        #expect(took >= 0.2, "stop did not wait for the look-up (\(Int(took * 1000)) ms)")
        // Unbounded, stop would never return (the look-up runs until released below); 10 s
        // leaves a loaded CI host room past the 200 ms bound.
        #expect(took < 10, "stop took \(Int(took * 1000)) ms: the wait for the look-up is not bounded")
        #expect(!returned.isSet)
        #expect(shipper.shared.resolvers.outstanding == 0, "nothing left to join")
        #expect(shipper.shared.resolvers.totals == ResolverThreads.ReapResult(joined: 0, abandoned: 1))
        #expect(log.all.contains { $0.contains("look-ups were still running") && $0.contains("abandoned_lookups=1") }, "\(log.all)")
        // The look-up answers late: its thread returns without posting to the stopped shipper.
        release.set()
        #expect(returned.wait())
        usleep(20_000)
        #expect(!shipper.shared.hasCommands, "the abandoned look-up posted its result")
    }
}
