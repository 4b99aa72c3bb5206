import Relay
import Testing

/// Small helpers shared by the engine tests.
extension RelayChannel {
    /// Writes a string record.
    @discardableResult
    func write(_ string: String) -> RelayWriteResult {
        var copy = string
        return copy.withUTF8 { self.write(UnsafeRawBufferPointer($0)) }
    }

    /// Reads every delivered sub-buffer of every buffer (consuming them) and returns
    /// (buffer, sequence, content) triples in per-buffer order.
    func drainSubbuffers() -> [(buffer: Int, sequence: UInt64, content: [UInt8], records: Int)] {
        var result: [(buffer: Int, sequence: UInt64, content: [UInt8], records: Int)] = []
        for buffer in 0..<self.buffers {
            while true {
                let read = self.withNextSubbuffer(buffer: buffer, consume: true) { sub in
                    (sub.sequence, Array(sub.content), sub.records)
                }
                guard case .read(let (sequence, content, records)) = read else { break }
                result.append((buffer, sequence, content, records))
            }
        }
        return result
    }

    /// All delivered records, split on newlines, as strings.
    func drainLines() -> [String] {
        var lines: [String] = []
        for sub in self.drainSubbuffers() {
            var start = 0
            for (i, byte) in sub.content.enumerated() where byte == 0x0A {
                lines.append(String(decoding: sub.content[start..<i], as: UTF8.self))
                start = i + 1
            }
        }
        return lines
    }
}

func smallChannel(
    _ name: String = "test",
    subbufferSize: Int = 4096,
    subbufferCount: Int = 4,
    mode: RelayMode = .drop,
    buffers: Int = 1,
    exclusiveBuffers: Int = 0,
    clientHeaderSize: Int = 0,
    backing: RelayMemoryBacking = .anonymous,
    callbacks: RelayCallbacks = RelayCallbacks()
) throws -> RelayChannel {
    try RelayChannel(
        RelayChannelConfiguration(
            name: "\(name)-\(UInt32.random(in: 0...UInt32.max))",
            subbufferSize: subbufferSize,
            subbufferCount: subbufferCount,
            mode: mode,
            buffers: buffers,
            exclusiveBuffers: exclusiveBuffers,
            clientHeaderSize: clientHeaderSize,
            backing: backing
        ),
        callbacks: callbacks
    )
}

/// A thread-safe list for collecting callback events.
final class EventLog<Event: Sendable>: @unchecked Sendable {
    private var events: [Event] = []
    private let lock = NSLockish()
    func append(_ event: Event) { self.lock.withLock { self.events.append(event) } }
    var all: [Event] { self.lock.withLock { self.events } }
}

import Synchronization

final class NSLockish: @unchecked Sendable {
    private let mutex = RelayMutex<Void>(())
    func withLock<T>(_ body: () -> T) -> T { self.mutex.withLock { _ in body() } }
}

/// Polls `condition` every millisecond until it holds or `timeout` passes (generous: the
/// CI host is a loaded 2-vCPU VM); returns whether it held.
func waitUntil(timeout: Duration = .seconds(20), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}
import Glibc
