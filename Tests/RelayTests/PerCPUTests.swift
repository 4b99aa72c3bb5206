import Foundation
import Relay
import RelayTestSupport
import Synchronization
import Testing

/// The restartable-sequence path of per-CPU buffers: when it is used, and that writers on
/// other CPUs (migrated writers, flushers) stay correct through the remote path.
@Suite("Per-CPU buffers (restartable sequences)", .serialized)
struct PerCPUTests {
    static let cpus = CPUAffinity.onlineCount
    /// Whether the engine must use restartable sequences here: x86-64, and glibc registered an
    /// rseq area for its threads (a nonzero `__rseq_size`; `GLIBC_TUNABLES=glibc.pthread.rseq=0`,
    /// as sanitizer runs set, leaves it 0). Read from glibc itself, not from the engine's probe.
    static let perCPUHost: Bool = {
        #if arch(x86_64)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__rseq_size") else { return false }
        return symbol.load(as: UInt32.self) != 0
        #else
        return false
        #endif
    }()

    static func channel(
        _ name: String, mode: RelayMode = .block(), subbufferSize: Int = 4096, subbufferCount: Int = 8,
        buffers: Int? = nil, perCPU: Bool = true
    ) throws -> RelayChannel {
        try RelayChannel(
            RelayChannelConfiguration(
                name: "\(name)-\(UInt32.random(in: 0...UInt32.max))", subbufferSize: subbufferSize,
                subbufferCount: subbufferCount, mode: mode, buffers: buffers, perCPUFastPath: perCPU))
    }

    /// Reads every delivered sub-buffer of every buffer and decodes its stress records.
    static func drain(_ channel: RelayChannel, into seen: inout [UInt64: Int], torn: inout Int) {
        for buffer in 0..<channel.buffers {
            while case .read = channel.withNextSubbuffer(buffer: buffer, consume: true, { sub in
                var offset = 0
                let bytes = sub.content
                while offset < bytes.count {
                    guard let record = StressRecord.decode(UnsafeRawBufferPointer(rebasing: bytes[offset...])) else {
                        torn += 1
                        return
                    }
                    seen[UInt64(record.producer) << 40 | record.sequence, default: 0] += 1
                    offset += record.size
                }
            }) {}
        }
    }

    @Test("one buffer per CPU uses restartable sequences; fewer buffers, or the option off, use locked instructions")
    func whenUsed() throws {
        let perCPU = try Self.channel("percpu-when")
        #expect(perCPU.usesRestartableSequences == Self.perCPUHost, "x86-64 hosts with glibc rseq must use it")
        // Opening (and resetting) a channel starts every buffer's first sub-buffer without
        // remote operations: no thread can race it there.
        #expect(perCPU.stats().total.remoteOperations == 0)
        try perCPU.reset()
        #expect(perCPU.stats().total.remoteOperations == 0)
        let off = try Self.channel("percpu-off", perCPU: false)
        #expect(!off.usesRestartableSequences)
        if Self.cpus >= 2 {
            let shared = try Self.channel("percpu-shared", buffers: 1)
            #expect(!shared.usesRestartableSequences, "two CPUs share the buffer: locked instructions")
        }
    }

    @Test(
        "a reservation committed after migrating to another CPU takes the remote path and is delivered",
        .enabled(if: cpus >= 2 && perCPUHost, "needs 2 CPUs and x86-64 restartable sequences"))
    func commitAfterMigration() throws {
        let channel = try Self.channel("percpu-migrate")
        try #require(channel.usesRestartableSequences)
        defer { CPUAffinity.pin(to: nil) }
        CPUAffinity.pin(to: 0)
        var record = [UInt8](repeating: 0, count: 64)
        record.withUnsafeMutableBytes { StressRecord.encode(producer: 1, sequence: 7, size: 64, into: $0) }
        let reservation = try channel.reserve(64)
        #expect(reservation.buffer == 0)
        reservation.withUnsafeMutableBytes { destination in record.withUnsafeBytes { destination.copyMemory(from: $0) } }
        CPUAffinity.pin(to: 1)
        #expect(CPUAffinity.current == 1)
        let before = channel.stats(buffer: 0).remoteOperations
        reservation.commit()
        #expect(channel.stats(buffer: 0).remoteOperations == before + 1, "the commit ran on CPU 1: remote")
        // A write on CPU 1 goes to buffer 1 without any remote operation.
        let before1 = channel.stats(buffer: 1).remoteOperations
        channel.write(record)
        #expect(channel.stats(buffer: 1).remoteOperations == before1)
        channel.flush()
        var seen: [UInt64: Int] = [:]
        var torn = 0
        Self.drain(channel, into: &seen, torn: &torn)
        #expect(torn == 0)
        #expect(seen == [1 << 40 | 7: 2])
        #expect(channel.stats().total.recordsWritten == 2)
    }

    @Test(
        "flush from another CPU is a remote operation; writers on the owner CPU keep going",
        .enabled(if: cpus >= 2 && perCPUHost, "needs 2 CPUs and x86-64 restartable sequences"))
    func remoteFlush() throws {
        let channel = try Self.channel("percpu-flush")
        try #require(channel.usesRestartableSequences)
        defer { CPUAffinity.pin(to: nil) }
        CPUAffinity.pin(to: 1)
        var record = [UInt8](repeating: 0, count: 48)
        record.withUnsafeMutableBytes { StressRecord.encode(producer: 2, sequence: 1, size: 48, into: $0) }
        channel.write(record)
        CPUAffinity.pin(to: 0)
        channel.flush(buffer: 1)
        #expect(channel.stats(buffer: 1).remoteOperations >= 1)
        #expect(channel.stats(buffer: 1).flushes == 1)
        var seen: [UInt64: Int] = [:]
        var torn = 0
        Self.drain(channel, into: &seen, torn: &torn)
        #expect(seen == [2 << 40 | 1: 1])
        #expect(torn == 0)
    }

    /// Writers that hop between CPUs in the middle of reservations, writers that stay on
    /// one CPU, and a flusher on whichever CPU it lands: every record arrives once, intact.
    @Test(
        "migration storm: remote and local operations on the same buffers lose and tear nothing",
        .enabled(if: cpus >= 2 && perCPUHost, "needs 2 CPUs and x86-64 restartable sequences"))
    func migrationStorm() throws {
        // A timeout turns a lost commit (a sub-buffer that never completes) into failed
        // writes instead of a hang.
        let channel = try Self.channel(
            "percpu-storm", mode: .block(timeout: .seconds(5)), subbufferSize: 8192, subbufferCount: 16)
        try #require(channel.usesRestartableSequences)
        let hoppers = 2
        let hops = 4000
        let steadyRecords = 200_000
        let done = Atomic<Bool>(false)
        let result = RelayMutex<(seen: [UInt64: Int], torn: Int)>(([:], 0))
        let consumer = TestThreads.spawn {
            var seen: [UInt64: Int] = [:]
            var torn = 0
            while !done.load(ordering: .acquiring) {
                Self.drain(channel, into: &seen, torn: &torn)
                channel.flush()  // also a remote operation whenever this thread is on the other CPU
            }
            channel.flush()
            Self.drain(channel, into: &seen, torn: &torn)
            result.withLock { $0 = (seen, torn) }
        }
        TestThreads.run(count: hoppers + 2) { index in
            var scratch = [UInt8](repeating: 0, count: 256)
            if index < hoppers {
                // Reserve on one CPU, fill and commit on the other.
                for sequence in 0..<hops {
                    CPUAffinity.pin(to: (sequence + index) % 2)
                    let size = 32 + (sequence % 7) * 24
                    scratch.withUnsafeMutableBytes {
                        StressRecord.encode(producer: UInt32(index), sequence: UInt64(sequence), size: size, into: $0)
                    }
                    guard let reservation = try? channel.reserve(size) else {
                        Issue.record("hopper \(index): reservation refused (a sub-buffer never completed?)")
                        continue
                    }
                    CPUAffinity.pin(to: (sequence + index + 1) % 2)
                    scratch.withUnsafeBytes { bytes in
                        reservation.withUnsafeMutableBytes {
                            $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<size]))
                        }
                    }
                    reservation.commit()
                }
                CPUAffinity.pin(to: nil)
            } else {
                // Stay on one CPU: restartable sequences racing the remote operations.
                CPUAffinity.pin(to: index - hoppers)
                for sequence in 0..<steadyRecords {
                    let size = 32 + (sequence % 5) * 16
                    let written = scratch.withUnsafeMutableBytes { raw -> RelayWriteResult in
                        StressRecord.encode(producer: UInt32(index), sequence: UInt64(sequence), size: size, into: raw)
                        return channel.write(UnsafeRawBufferPointer(rebasing: raw[0..<size]))
                    }
                    if written != .written { Issue.record("steady writer \(index): \(written)") }
                }
                CPUAffinity.pin(to: nil)
            }
        }
        done.store(true, ordering: .releasing)
        TestThreads.join(consumer)
        let (seen, torn) = result.withLock { $0 }
        #expect(torn == 0)
        let expected = hoppers * hops + 2 * steadyRecords
        #expect(seen.count == expected, "every record arrived")
        #expect(seen.values.allSatisfy { $0 == 1 }, "exactly once")
        let stats = channel.stats().total
        #expect(stats.recordsWritten == UInt64(expected))
        #expect(stats.remoteOperations >= UInt64(hoppers * hops), "every migrated commit went remote")
    }
}

/// Without restartable sequences the engine must notice and use locked instructions: the
/// child process this test starts has glibc's rseq registration switched off
/// (`GLIBC_TUNABLES=glibc.pthread.rseq=0`) and runs ``PerCPUFallbackProbe``.
@Suite("Per-CPU fallback")
struct PerCPUFallbackTests {
    @Test("with glibc's rseq switched off, one buffer per CPU falls back to locked instructions and loses nothing")
    func fallbackWithoutRseq() throws {
        let (status, output) = try ChildTestProcess.run(
            filter: "PerCPUFallbackProbe",
            environment: [perCPUFallbackProbeVariable: "1", "GLIBC_TUNABLES": "glibc.pthread.rseq=0"])
        #expect(status == 0, "the fallback probe failed:\n\(output)")
        #expect(output.contains("PER-CPU-FALLBACK-PROBE-PASSED"), "the probe did not run:\n\(output)")
    }
}

private let perCPUFallbackProbeVariable = "RELAY_PER_CPU_FALLBACK_PROBE"

/// Runs only in the child process started by ``PerCPUFallbackTests/fallbackWithoutRseq()``.
@Suite("PerCPUFallbackProbe", .enabled(if: ProcessInfo.processInfo.environment[perCPUFallbackProbeVariable] != nil))
struct PerCPUFallbackProbe {
    @Test("locked instructions without rseq")
    func probe() throws {
        // 2 MiB per buffer holds every record even if all threads share one CPU: no consumer needed.
        let channel = try PerCPUTests.channel("percpu-fallback", subbufferSize: 65536, subbufferCount: 32)
        #expect(!channel.usesRestartableSequences, "glibc registered no rseq area: the per-CPU path must be off")
        let producers = 4
        let perProducer = 5000
        TestThreads.run(count: producers) { producer in
            var scratch = [UInt8](repeating: 0, count: 64)
            for sequence in 0..<perProducer {
                let written = scratch.withUnsafeMutableBytes { raw -> RelayWriteResult in
                    StressRecord.encode(producer: UInt32(producer), sequence: UInt64(sequence), size: 64, into: raw)
                    return channel.write(UnsafeRawBufferPointer(raw))
                }
                if written != .written { Issue.record("producer \(producer): \(written)") }
            }
        }
        channel.flush()
        var seen: [UInt64: Int] = [:]
        var torn = 0
        PerCPUTests.drain(channel, into: &seen, torn: &torn)
        #expect(torn == 0)
        #expect(seen.count == producers * perProducer)
        #expect(seen.values.allSatisfy { $0 == 1 })
        #expect(channel.stats().total.remoteOperations == 0)
        print("PER-CPU-FALLBACK-PROBE-PASSED")
    }
}
