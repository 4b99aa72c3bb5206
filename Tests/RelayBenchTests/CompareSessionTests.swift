import ArgumentParser
import Foundation
import Testing

@testable import relay_bench

@Suite("compare and sweep", .serialized, .enabled(if: ioURingProblem == nil, "io_uring is unavailable (see RelayShipper.probeIOURing())"))
struct CompareSessionTests {
    private let workload = CompareBaselines.Workload(producers: 2, records: 60_000, recordSize: 64)

    @Test("io_uring baseline: files and sockets get every record once, in order")
    func ioURingBaseline() throws {
        let directory = try BenchTestDirectory()
        let path = directory.file("uring.log")
        // Blocks of 4 KiB and QD 3 make many writes, several in flight.
        let result = try CompareBaselines.ioURing(self.workload, blockSize: 4096, queueDepth: 3, to: .file(path: path))
        #expect(result.name == "io_uring-write-4KiB")
        #expect(result.bytes == 60_000 * 64)
        let options = VerifyOptions(recordSize: 64, expectedProducers: 2, expectedRecords: 60_000)
        let report = try RecordVerifier.verify(files: [path], options: options)
        #expect(report.ok, "\(report.problems)")
        #expect(report.orderViolations == 0)

        let received = directory.file("uring-received.log")
        let receiver = try LoopbackReceiver(outputPath: received)
        let fd = try receiver.connect()
        defer { close(fd) }
        let sent = try CompareBaselines.ioURing(self.workload, to: .socket(fd: fd))
        #expect(sent.name == "io_uring-send-1MiB")
        #expect(try receiver.finish().bytes == 60_000 * 64)
        let socketReport = try RecordVerifier.verify(files: [received], options: options)
        #expect(socketReport.ok, "\(socketReport.problems)")
    }

    @Test("io_uring baseline: a failing file is an error, not a hang")
    func ioURingFailure() throws {
        // /dev/full fails every write with ENOSPC.
        #expect(throws: BenchError.self) {
            try CompareBaselines.ioURing(self.workload, to: .file(path: "/dev/full", preallocate: false))
        }
    }

    @Test("compare to files: every variant runs, verifiable outputs verify, files are removed")
    func compareFiles() throws {
        let directory = try BenchTestDirectory()
        let base = directory.file("cmp")
        var settings = CompareSettings(workload: self.workload, subbufferSize: 64 << 10, subbufferCount: 4, target: .file(path: base))
        settings.repeats = 1
        settings.warmups = 0
        settings.verify = true
        var lines: [String] = []
        let outcome = try CompareSession.run(settings) { lines.append($0) }
        let names = ["swift-relay", "write-per-record", "mutex-buffer-64KiB", "io_uring-write-1MiB", "raw-write-1MiB", "memcpy"]
        #expect(outcome.table.rows.map(\.variant) == names)
        #expect(lines.count == names.count)
        #expect(outcome.table.rows.first?.ratio == 1)
        #expect(outcome.table.rows.allSatisfy { $0.records == 60_000 && $0.bytes == 60_000 * 64 && $0.recordsPerSecond > 0 })
        #expect(Set(outcome.verification.keys) == ["swift-relay", "write-per-record", "mutex-buffer-64KiB", "io_uring-write-1MiB"])
        let problems = outcome.verification.mapValues { $0.problems }
        #expect(outcome.verification.values.allSatisfy { $0.ok }, "\(problems)")
        #expect(outcome.table.rows[0].note?.hasSuffix("verified") == true)
        let left = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(left.isEmpty, "\(left)")
        #expect(outcome.table.render().contains("→ file:\(base)"))
    }

    @Test("compare to the loopback receiver, interleaved repeats, medians; --keep keeps files")
    func compareLoopbackRepeats() throws {
        var settings = CompareSettings(workload: self.workload, subbufferSize: 64 << 10, subbufferCount: 4, target: .loopback)
        settings.variants = [.relay, .mutex, .raw]
        settings.repeats = 3
        settings.warmups = 1
        var lines: [String] = []
        let outcome = try CompareSession.run(settings) { lines.append($0) }
        #expect(outcome.table.rows.map(\.variant) == ["swift-relay", "mutex-buffer-64KiB", "raw-send-1MiB"])
        #expect(outcome.table.repeats == 3)
        #expect(outcome.table.rows.allSatisfy { $0.samples?.count == 3 })
        #expect(lines.count == 4 * 3)
        // The rounds follow `CompareSession.order`: relay, mutex, raw first in turn, then the
        // reversed rows (raw, mutex, relay: raw first again).
        let order = lines.map { line in
            ["swift-relay", "mutex-buffer-64KiB", "raw-send-1MiB"].first { line.contains($0) }
        }
        #expect(order == [
            "swift-relay", "mutex-buffer-64KiB", "raw-send-1MiB",
            "mutex-buffer-64KiB", "raw-send-1MiB", "swift-relay",
            "raw-send-1MiB", "swift-relay", "mutex-buffer-64KiB",
            "raw-send-1MiB", "mutex-buffer-64KiB", "swift-relay",
        ])
        // The median row's rate is the median of the samples.
        for row in outcome.table.rows {
            let samples = try #require(row.samples).sorted()
            #expect(abs(row.recordsPerSecond - samples[1]) <= samples[1] * 1e-9, "\(row.variant)")
        }
        #expect(outcome.table.render().contains("(median of 3 runs)"))

        let directory = try BenchTestDirectory()
        var keep = CompareSettings(workload: self.workload, subbufferSize: 64 << 10, subbufferCount: 4, target: .file(path: directory.file("k")))
        keep.variants = [.relay, .naive]
        keep.repeats = 1
        keep.warmups = 0
        keep.keep = true
        _ = try CompareSession.run(keep)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: directory.path)) == ["k.swift-relay", "k.write-per-record"])
    }

    @Test("compare to an external tcp receiver: one connection per run, every byte arrives")
    func compareExternalTCP() throws {
        let receiver = try LoopbackReceiver()
        var settings = CompareSettings(workload: self.workload, subbufferSize: 64 << 10, subbufferCount: 4, target: .tcp(host: "127.0.0.1", port: receiver.port))
        settings.variants = [.relay, .naive, .uring, .raw]
        settings.repeats = 1
        settings.warmups = 0
        let outcome = try CompareSession.run(settings)
        #expect(outcome.table.rows.map(\.variant) == ["swift-relay", "send-per-record", "io_uring-send-1MiB", "raw-send-1MiB"])
        #expect(outcome.table.destination == "tcp:127.0.0.1:\(receiver.port)")
        // The preflight probe sends nothing; each of the four runs sends the whole workload.
        #expect(try receiver.finish().bytes == 4 * 60_000 * 64)
    }

    @Test("median of an even and odd number of runs")
    func medians() {
        #expect(CompareSession.median([3, 1, 2]) == 2)
        #expect(CompareSession.median([4, 1, 3, 2]) == 2.5)
        let runs = [1.0, 3.0, 2.0].map { BaselineResult(name: "x", records: 10, bytes: 100, elapsedSeconds: $0, cpuSeconds: $0 / 2) }
        let median = CompareSession.median(of: runs)
        #expect(median.elapsedSeconds == 2 && median.cpuSeconds == 1)
    }

    @Test("sweep over producers writes a table and an SVG with one line per variant")
    func sweep() throws {
        let directory = try BenchTestDirectory()
        let plot = directory.file("sweep.svg")
        var command = try SweepCommand.parse([
            "--producers", "1,2", "--records", "20k", "--record-size", "64", "--repeat", "1", "--warmup", "0",
            "--variants", "relay,mutex,memcpy", "--plot", plot, "--json",
        ])
        try command.run()
        let svg = try String(contentsOfFile: plot, encoding: .utf8)
        #expect(svg.hasPrefix("<svg") || svg.hasPrefix("<?xml"))
        for name in ["swift-relay", "mutex-buffer-64KiB", "memcpy"] {
            #expect(svg.contains(name), "\(name)")
        }
        #expect(svg.components(separatedBy: "class=\"series\"").count - 1 == 3)
        let (parameter, values, plans) = try command.makePlan()
        let points = try plans.map { try CompareSession.run($0).table }
        let result = SweepResult(parameter: parameter, values: values, metric: .records, points: points)
        let table = result.render().split(separator: "\n").map(String.init)
        #expect(table[0].hasPrefix("sweep of producers → null"))
        #expect(table[1].contains("swift-relay") && table[1].contains("memcpy"))
        #expect(table.count == 5)
        #expect(table[3].hasPrefix("1 ") && table[4].hasPrefix("2 "))
        command = try SweepCommand.parse(["--record-size", "32,64", "--bytes", "64KiB"])
        #expect(try command.makePlan().2.map(\.workload.records) == [2048, 1024])
    }
}

@Suite("compare's round order")
struct CompareOrderTests {
    @Test("a balanced Latin square: over a cycle, every variant first and after every other equally often", arguments: 1...9)
    func balanced(variants n: Int) {
        let cycle = n % 2 == 0 ? n : 2 * n
        var firsts = [Int](repeating: 0, count: n)
        var after = [[Int]](repeating: [Int](repeating: 0, count: n), count: n)
        for round in 0..<cycle {
            let row = CompareSession.order(round: round, variants: n)
            #expect(row.sorted() == Array(0..<n), "round \(round): \(row)")
            firsts[row[0]] += 1
            for (previous, next) in zip(row, row.dropFirst()) { after[previous][next] += 1 }
            // The next cycle repeats this one.
            #expect(CompareSession.order(round: round + cycle, variants: n) == row)
        }
        let each = n % 2 == 0 ? 1 : 2
        #expect(firsts == [Int](repeating: each, count: n))
        for a in 0..<n {
            for b in 0..<n where a != b {
                #expect(after[a][b] == each, "\(b) right after \(a): \(after[a][b]) times in \(cycle) rounds")
            }
        }
    }
}
