import Foundation
import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Testing

/// Two file sinks writing one file (in one process or in two) interleave their writes at
/// offsets each computes alone and corrupt it: the second one must be refused, for as long
/// as the first writes that path (after its rotations and reopens too).
@Suite("File sink: one writer per file", .enabled(if: ioUringAvailable, "io_uring is unavailable here"))
struct FileSinkLockTests {
    private static func lines(_ tag: String) -> (Int) -> String {
        { i in "\(tag) line \(i)\n" }
    }

    /// Starts a shipper with one file sink on `path`; returns the error it was refused with, if any.
    private func startSecond(on path: String, name: String) throws -> RelayShipperError? {
        let channel = try RelayChannel(RelayChannelConfiguration(name: name, subbufferSize: 16384, subbufferCount: 4, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: path))])
        do {
            try shipper.start()
        } catch {
            return error
        }
        channel.close()
        _ = shipper.stop(timeout: .seconds(10))
        return nil
    }

    @Test("a second file sink on a path another sink of this process writes is refused with a clear error; the first goes on intact")
    func secondSinkInProcessRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("one.log")
        let channel = try RelayChannel(RelayChannelConfiguration(name: "lock-a", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: path))])
        try shipper.start()
        var refused = 0
        var expected = writeSequentialLines(channel, count: 1000, refused: &refused, Self.lines("first"))
        let error = try startSecond(on: path, name: "lock-b")
        #expect(error != nil, "the second sink on \(path) was not refused")
        #expect(error?.message.contains(path) == true, "the message names the path: \(error?.message ?? "")")
        #expect(error?.message.contains("another") == true, "the message says what is wrong: \(error?.message ?? "")")
        // Two sinks in one shipper (two channels) on one path: refused too.
        let other = try RelayChannel(RelayChannelConfiguration(name: "lock-c", subbufferSize: 16384, subbufferCount: 4, buffers: 1))
        let both = RelayShipper(logger: testLogger())
        try both.add(other, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("two.log")))])
        let another = try RelayChannel(RelayChannelConfiguration(name: "lock-d", subbufferSize: 16384, subbufferCount: 4, buffers: 1))
        try both.add(another, sinks: [.file(RelayFileSinkConfiguration(path: dir.file("two.log")))])
        var bothRefused = false
        do {
            try both.start()
            _ = both.stop(timeout: .seconds(5))
        } catch {
            bothRefused = true
        }
        #expect(bothRefused, "two sinks of one shipper on one path")
        expected += writeSequentialLines(channel, count: 1000, refused: &refused, Self.lines("more"))
        #expect(refused == 0)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)))
        #expect(readFileBytes(path) == expected, "only the first sink wrote the file")
        // Closed: the path is free again.
        #expect(try startSecond(on: path, name: "lock-e") == nil, "a sink that stopped holds no lock")
    }

    @Test("a shipper restarted on the same path right after stop() returns is never refused (the lock is gone by then)")
    func restartOnSamePath() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("restart.log")
        for round in 0..<100 {
            let channel = try RelayChannel(
                RelayChannelConfiguration(name: "lock-restart-\(round)", subbufferSize: 16384, subbufferCount: 4, mode: .block(), buffers: 1))
            let shipper = RelayShipper(logger: testLogger())
            try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: path))])
            do {
                try shipper.start()
            } catch {
                Issue.record("round \(round): \(error.message)")
                return
            }
            // Writes in flight until the stop drains them.
            var refused = 0
            _ = writeSequentialLines(channel, count: 500, refused: &refused, Self.lines("round \(round)"))
            channel.close()
            #expect(shipper.stop(timeout: .seconds(10)))
        }
    }

    @Test("the lock moves to the fresh file at every rotation and reopen (logrotate, or a reopen of the same file)")
    func lockFollowsRotationAndReopen() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("r.log")
        let channel = try RelayChannel(RelayChannelConfiguration(name: "lock-rot", subbufferSize: 4096, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        let rotation = RelayFileSinkConfiguration.Rotation(maxBytes: 8 * 1024, keep: 100)
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: path, rotation: rotation))])
        try shipper.start()
        var refused = 0
        var expectedOld = writeSequentialLines(channel, count: 1500, refused: &refused, Self.lines("rotated"))
        channel.flush()
        let rotated = waitForStats(shipper) { $0.sinks[0].rotations >= 2 && $0.sinks[0].bytes == UInt64(expectedOld.count) }
        try #require(rotated != nil, "rotated")
        #expect(try startSecond(on: path, name: "lock-rot-1") != nil, "the file a rotation opened is locked")
        // A reopen of the same file (a stray SIGHUP): the sink keeps writing it, still alone.
        shipper.reopen()
        let reopened = waitForStats(shipper) { $0.sinks[0].reopens == 1 }
        try #require(reopened != nil)
        #expect(!(reopened?.sinks[0].failing ?? true), "the reopen of its own file was not refused")
        #expect(try startSecond(on: path, name: "lock-rot-2") != nil, "still locked after a reopen of the same file")
        // logrotate: move the file away, then reopen.
        let files = readRotatedFiles(path)
        expectedOld = files.reversed().flatMap { $0 } + (readFileBytes(path) ?? [])
        #expect(shell("mv '\(path)' '\(dir.file("moved.log"))'") == 0)
        shipper.reopen()
        let moved = waitForStats(shipper) { $0.sinks[0].reopens == 2 }
        try #require(moved != nil)
        #expect(try startSecond(on: path, name: "lock-rot-3") != nil, "the file the reopen created is locked")
        let after = writeSequentialLines(channel, count: 50, refused: &refused, Self.lines("after"))
        #expect(refused == 0)
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)))
        #expect(readFileBytes(path) == after, "writing went on in the fresh file after the reopen")
        let before = readRotatedFiles(path).reversed().flatMap { $0 } + (readFileBytes(dir.file("moved.log")) ?? [])
        #expect(before == expectedOld)
    }

    @Test("a file sink in another process on the same path is refused")
    func secondSinkInOtherProcessRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.file("shared.log")
        let channel = try RelayChannel(RelayChannelConfiguration(name: "lock-parent", subbufferSize: 16384, subbufferCount: 8, mode: .block(), buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: path))])
        try shipper.start()
        let (status, output) = try ChildTestProcess.run(filter: "FileSinkLockProbe", environment: [fileSinkLockProbeVariable: path])
        #expect(status == 0, "the probe failed:\n\(output)")
        #expect(output.contains("FILE-SINK-LOCK-PROBE-REFUSED"), "the child's sink was not refused:\n\(output)")
        var refused = 0
        let expected = writeSequentialLines(channel, count: 500, refused: &refused, Self.lines("parent"))
        channel.close()
        #expect(shipper.stop(timeout: .seconds(20)))
        #expect(readFileBytes(path) == expected)
    }
}

private let fileSinkLockProbeVariable = "RELAY_FILE_SINK_LOCK_PROBE"

/// Runs only in the child process started by ``FileSinkLockTests/secondSinkInOtherProcessRefused()``:
/// a sink on the path the parent's sink writes.
@Suite("FileSinkLockProbe", .enabled(if: ProcessInfo.processInfo.environment[fileSinkLockProbeVariable] != nil))
struct FileSinkLockProbe {
    @Test("a sink on the parent's file")
    func probe() throws {
        let path = try #require(ProcessInfo.processInfo.environment[fileSinkLockProbeVariable])
        let channel = try RelayChannel(RelayChannelConfiguration(name: "lock-child", subbufferSize: 16384, subbufferCount: 4, buffers: 1))
        let shipper = RelayShipper(logger: testLogger())
        try shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: path))])
        do {
            try shipper.start()
            channel.write(Array("the child wrote this\n".utf8))
            channel.close()
            _ = shipper.stop(timeout: .seconds(10))
            Issue.record("the child's sink on \(path) was not refused")
        } catch {
            #expect(error.message.contains(path))
            print("FILE-SINK-LOCK-PROBE-REFUSED: \(error.message)")
        }
    }
}
