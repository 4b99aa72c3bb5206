import ArgumentParser
import Foundation
import Glibc
import RelayTestSupport
import Testing

@testable import relay_bench

/// Whether io_uring works here; the shipper (and so every run) needs it.
let ioURingProblem: String? = CompareBaselines.ioURingUnavailableReason

@Suite("run end to end", .serialized, .enabled(if: ioURingProblem == nil, "io_uring is unavailable (see RelayShipper.probeIOURing())"))
struct RunEndToEndTests {
    @Test("1M records to a file: the report adds up and verify accepts the file")
    func millionRecords() throws {
        let directory = try BenchTestDirectory()
        let path = directory.file("out.log")
        let configuration = RunConfiguration(
            producers: 2, amount: .records(1_000_000), recordSize: 64, subbufferSize: 256 << 10, subbufferCount: 8, mode: .block,
            sinks: [.file(path: path, options: FileSinkOptions())]
        )
        let outcome = try BenchRunner.run(configuration, options: RunOptions(verify: true))
        let report = outcome.report
        #expect(report.offeredRecords == 1_000_000)
        #expect(report.writtenRecords == 1_000_000)
        #expect(report.droppedRecords == 0)
        #expect(report.shippedBytes == 64_000_000)
        #expect(report.elapsedSeconds > 0 && report.recordsPerSecond > 0)
        #expect(report.cpuSeconds > 0)
        #expect(report.peakRSSBytes > 2 * 8 * (256 << 10))
        #expect(report.producerNsPerRecord.p50 > 0 && report.producerNsPerRecord.p50 <= report.producerNsPerRecord.p999)
        // About one record in 64 is timed.
        let samples = try #require(report.producerSamples)
        #expect(samples > 1_000_000 / 128 && samples < 1_000_000 / 32)
        #expect(report.e2eLatencyMs != nil)
        #expect(report.warnings == nil, "\(report.warnings ?? [])")
        let verify = try #require(report.verify)
        #expect(verify.ok, "\(verify.problems)")
        #expect(verify.distinctRecords == 1_000_000)
        #expect(outcome.verifiableFiles == [path])

        // An independent check with the verify command's defaults (reordering across the
        // per-CPU buffers is counted, not hidden).
        let independent = try RecordVerifier.verify(
            files: [path], options: VerifyOptions(recordSize: 64, expectedProducers: 2, expectedRecords: 1_000_000, allowReorder: true))
        #expect(independent.ok, "\(independent.problems)")
        #expect(independent.missingRecords == 0 && independent.duplicateRecords == 0 && independent.malformedLines == 0)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.size] as? NSNumber)?.uint64Value == 64_000_000)
    }

    @Test("without producer-cost sampling (compare's setting) no record is timed, and every record is still shipped")
    func noProducerSampling() throws {
        var options = RunOptions()
        options.sampleProducerCost = false
        let report = try BenchRunner.run(
            RunConfiguration(producers: 2, amount: .records(200_000), recordSize: 64, sinks: [.null]), options: options
        ).report
        #expect(report.producerSamples == 0)
        #expect(report.writtenRecords == 200_000 && report.droppedRecords == 0)
        #expect(report.shippedBytes == 200_000 * 64)
    }

    @Test("every write API produces the same verifiable output", arguments: WriteAPI.allCases)
    func writeAPIs(api: WriteAPI) throws {
        let directory = try BenchTestDirectory()
        let path = directory.file("\(api).log")
        let configuration = RunConfiguration(
            producers: 3, amount: .records(150_000), recordSize: 96, subbufferSize: 64 << 10, subbufferCount: 4, mode: .block,
            sinks: [.file(path: path, options: FileSinkOptions())], api: api
        )
        let report = try BenchRunner.run(configuration, options: RunOptions(verify: true)).report
        #expect(report.writtenRecords == 150_000 && report.droppedRecords == 0)
        #expect(report.config.api == api.rawValue)
        #expect(report.warnings == nil, "\(report.warnings ?? [])")
        #expect(report.verify?.ok == true, "\(report.verify?.problems ?? [])")
        if api == .exclusive {
            // One buffer per producer: every producer's records stay in order even in one file.
            #expect(report.verify?.orderViolations == 0)
            // At least one shared buffer plus the three exclusive ones.
            #expect((report.channel?.buffers ?? 0) >= 4)
        }
    }

    @Test("the JSON report has every required key")
    func jsonKeys() throws {
        let configuration = RunConfiguration(producers: 1, amount: .records(50_000), recordSize: 100, sinks: [.null])
        let report = try BenchRunner.run(configuration).report
        let object = try #require(try JSONSerialization.jsonObject(with: Data(BenchJSON.encode(report).utf8)) as? [String: Any])
        for key in [
            "producers", "record_size", "mode", "sinks", "offered_records", "written_records", "dropped_records", "shipped_bytes",
            "elapsed_seconds", "records_per_second", "bytes_per_second", "cpu_seconds", "peak_rss_bytes", "producer_ns_per_record",
            "e2e_latency_ms",
        ] {
            #expect(object[key] != nil, "missing \(key)")
        }
        let producer = try #require(object["producer_ns_per_record"] as? [String: Any])
        #expect(Set(producer.keys).isSuperset(of: ["p50", "p99", "p999"]))
        let latency = try #require(object["e2e_latency_ms"] as? [String: Any])
        #expect(Set(latency.keys).isSuperset(of: ["p50", "p99"]))
        #expect(object["sinks"] as? [String] == ["null"])
        #expect(object["shipped_bytes"] as? Int == 5_000_000)
        #expect(report.renderTable().contains("offered             50000 records"))
    }

    @Test("drop mode: dropped_records equals the gaps verify finds")
    func dropMode() throws {
        let directory = try BenchTestDirectory()
        let path = directory.file("drop.log")
        // Two 4 KiB sub-buffers per CPU hold about 120 records: the producers outrun the shipper.
        // fsync after every 16 KiB slows the sink down further.
        let configuration = RunConfiguration(
            producers: 4, amount: .records(400_000), recordSize: 64, subbufferSize: 4096, subbufferCount: 2, mode: .drop,
            sinks: [.file(path: path, options: FileSinkOptions(fsync: .bytes(16 << 10)))]
        )
        let report = try BenchRunner.run(configuration, options: RunOptions(verify: true)).report
        #expect(report.offeredRecords == 400_000)
        #expect(report.writtenRecords + report.droppedRecords == report.offeredRecords)
        try #require(report.droppedRecords > 0, "no drops happened; the test cannot check the accounting")
        #expect(report.shippedBytes == report.writtenRecords * 64)
        let verify = try #require(report.verify)
        #expect(verify.ok, "\(verify.problems)")
        #expect(verify.missingRecords == report.droppedRecords)
        // The same through the verify command's options, as a user would run it.
        let command = try VerifyCommand.parse([
            path, "--record-size", "64", "--expect-producers", "4", "--expect-records", "400000",
            "--expect-missing", "\(report.droppedRecords)", "--allow-reorder",
        ])
        let independent = try RecordVerifier.verify(files: command.files, options: command.options)
        #expect(independent.ok, "\(independent.problems)")
        #expect(independent.missingRecords == report.droppedRecords)
        #expect(independent.duplicateRecords == 0 && independent.malformedLines == 0)
    }

    @Test("overwrite mode: dropped plus overwritten records are exactly the missing ones")
    func overwriteMode() throws {
        let directory = try BenchTestDirectory()
        let path = directory.file("overwrite.log")
        let configuration = RunConfiguration(
            producers: 2, amount: .records(300_000), recordSize: 64, subbufferSize: 4096, subbufferCount: 2, mode: .overwrite,
            sinks: [.file(path: path, options: FileSinkOptions(fsync: .bytes(16 << 10)))]
        )
        let report = try BenchRunner.run(configuration, options: RunOptions(verify: true)).report
        #expect(report.writtenRecords + report.droppedRecords == report.offeredRecords)
        let overwritten = try #require(report.overwrittenRecords)
        let verify = try #require(report.verify)
        #expect(verify.ok, "\(verify.problems)")
        #expect(verify.duplicateRecords == 0 && verify.malformedLines == 0)
        #expect(verify.missingRecords == report.droppedRecords + overwritten)
    }

    @Test("fan-out to a file, a per-buffer directory and TCP: every copy is complete")
    func fanOut() throws {
        let directory = try BenchTestDirectory()
        let received = directory.file("received.log")
        let receiver = try LoopbackReceiver(outputPath: received)
        let perBuffer = directory.file("buffers")
        let configuration = RunConfiguration(
            producers: 3, amount: .records(200_000), recordSize: 48, subbufferSize: 64 << 10, subbufferCount: 4, mode: .block,
            sinks: [
                .file(path: directory.file("all.log"), options: FileSinkOptions()),
                .filePerBuffer(directory: perBuffer, options: FileSinkOptions()),
                receiver.sinkSpec,
                .null,
            ]
        )
        // Preflight connects to the receiver once; it serves that probe and then the shipper.
        let outcome = try BenchRunner.run(configuration, options: RunOptions(verify: true))
        let result = try receiver.finish()
        #expect(result.bytes == 200_000 * 48)
        let report = outcome.report
        #expect(report.shippedBytes == 4 * 200_000 * 48)
        #expect(report.sinkStats.map(\.shippedBytes) == [UInt64](repeating: 200_000 * 48, count: 4))
        #expect(report.verify?.ok == true, "\(report.verify?.problems ?? [])")
        let options = VerifyOptions(recordSize: 48, expectedProducers: 3, expectedRecords: 200_000, allowReorder: true)
        let tcp = try RecordVerifier.verify(files: [received], options: options)
        #expect(tcp.ok, "\(tcp.problems)")
        // Each buffer's file on its own is in per-producer order.
        let buffers = try RecordVerifier.verify(files: [perBuffer], options: VerifyOptions(recordSize: 48, expectedProducers: 3, expectedRecords: 200_000))
        #expect(buffers.ok, "\(buffers.problems)")
        #expect(buffers.orderViolations == 0)
    }

    @Test(
        "a timed, rate-limited run offers about rate × seconds per producer",
        .disabled(if: SanitizerBuild.isThread, "needs producers fast enough to keep up 20,000 records/s each")
    )
    func timedRate() throws {
        let directory = try BenchTestDirectory()
        let path = directory.file("timed.log")
        let configuration = RunConfiguration(
            producers: 2, amount: .seconds(0.5), ratePerProducer: 20_000, recordSize: 64, subbufferSize: 4096, subbufferCount: 4,
            sinks: [.file(path: path, options: FileSinkOptions())]
        )
        let report = try BenchRunner.run(configuration, options: RunOptions(verify: true)).report
        // The open-loop schedule offers exactly the 0.5 s × 20k records due before the deadline,
        // unless a producer could not keep up (then fewer).
        #expect(report.offeredRecords <= 2 * 10_000)
        #expect(report.offeredRecords >= 2 * 5_000)
        #expect(report.elapsedSeconds >= 0.49)
        #expect(report.writtenRecords == report.offeredRecords)
        #expect(report.verify?.ok == true, "\(report.verify?.problems ?? [])")
        #expect(report.config.seconds == 0.5 && report.config.ratePerProducer == 20_000)
    }

    @Test("writeback=SIZE starts writeback as the files grow, writeback=kernel never: the JSON and text reports count the requests")
    func writeback() throws {
        let directory = try BenchTestDirectory()
        let perBuffer = directory.file("per-buffer")
        let sinks = try [
            "file:\(directory.file("every-1MiB.log")),writeback=1MiB",
            "file:\(directory.file("kernel.log")),writeback=kernel",
            // However the records spread over the buffers, one file gets 64 KiB or more.
            "file-per-buffer:\(perBuffer),writeback=64KiB",
        ].map(SinkSpec.parse)
        // 8 MiB of records, shipped to every sink.
        let configuration = RunConfiguration(
            producers: 2, amount: .records(131_072), recordSize: 64, subbufferSize: 256 << 10, subbufferCount: 4, mode: .block, sinks: sinks)
        let report = try BenchRunner.run(configuration, options: RunOptions(verify: true)).report
        #expect(report.writtenRecords == 131_072 && report.droppedRecords == 0)
        #expect(report.warnings == nil, "\(report.warnings ?? [])")
        #expect(report.verify?.ok == true, "\(report.verify?.problems ?? [])")

        let object = try #require(try JSONSerialization.jsonObject(with: Data(BenchJSON.encode(report).utf8)) as? [String: Any])
        let stats = try #require(object["sink_stats"] as? [[String: Any]])
        try #require(stats.count == 3)
        #expect(stats.map { $0["sink"] as? String } == sinks.map(\.description))
        #expect(stats.allSatisfy { $0["shipped_bytes"] as? Int == 8 << 20 })
        // Each request covers 1 MiB or more of the 8 MiB, at most one in flight.
        let everyMiB = try #require(stats[0]["writebacks"] as? Int)
        #expect(everyMiB > 0 && everyMiB <= 8, "\(everyMiB) writeback requests")
        #expect(stats[1]["writebacks"] as? Int == 0)
        #expect((stats[2]["writebacks"] as? Int ?? 0) > 0)

        // The sink rows of the text report: the label is the spec, indented.
        let lines = report.renderTable().split(separator: "\n")
        let rows = try sinks.map { sink in try #require(lines.first { $0.hasPrefix("  \(sink) ") }, "no row for \(sink)") }
        #expect(rows[0].hasSuffix(", \(everyMiB) writeback requests"), "\(rows[0])")
        #expect(!rows[1].contains("writeback requests"), "\(rows[1])")
        #expect(rows[2].contains(" writeback requests"), "\(rows[2])")
    }

    @Test("a sink that writes no files reports no writebacks key")
    func writebackNotFile() throws {
        let configuration = RunConfiguration(producers: 1, amount: .records(10_000), recordSize: 64, sinks: [.null])
        let report = try BenchRunner.run(configuration).report
        let object = try #require(try JSONSerialization.jsonObject(with: Data(BenchJSON.encode(report).utf8)) as? [String: Any])
        let stats = try #require((object["sink_stats"] as? [[String: Any]])?.first)
        #expect(stats["writebacks"] == nil)
    }

    @Test("RunCommand.run prints the JSON report")
    func command() throws {
        let directory = try BenchTestDirectory()
        let command = try RunCommand.parse(["--records", "20000", "--record-size", "40", "--sink", "file:\(directory.file("c.log"))", "--json", "--verify"])
        try command.run()
        // One file for the channel's per-CPU buffers: a producer that migrated between CPUs may
        // appear out of order there (as the command's own --verify allows).
        var options = VerifyOptions(recordSize: 40, expectedProducers: 1, expectedRecords: 20_000)
        options.allowReorder = true
        let verify = try RecordVerifier.verify(files: [directory.file("c.log")], options: options)
        #expect(verify.ok, "\(verify.problems)")
    }
}

/// A TCP listener on 127.0.0.1 that never accepts or reads: the kernel completes connections
/// into its backlog and buffers a little, then senders block.
private final class DeafListener {
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var size: Int32 = 4096
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 4) == 0 else {
            close(fd)
            throw CocoaError(.fileWriteUnknown)
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        self.port = UInt16(bigEndian: address.sin_port)
    }

    deinit {
        close(self.fd)
    }
}

@Suite("run stall", .enabled(if: ioURingProblem == nil, "io_uring is unavailable (see RelayShipper.probeIOURing())"))
struct RunStallTests {
    @Test("block mode against a receiver that never reads stops with a warning instead of hanging")
    func stalledReceiver() throws {
        let listener = try DeafListener()
        let configuration = RunConfiguration(
            producers: 2, amount: .records(20_000_000), recordSize: 64, subbufferSize: 64 << 10, subbufferCount: 4, mode: .block,
            sinks: [.tcp(host: "127.0.0.1", port: listener.port, format: .plain)]
        )
        let start = ContinuousClock.now
        var options = RunOptions(drainTimeout: .seconds(1))
        options.stallTimeout = .seconds(1)
        let report = try BenchRunner.run(configuration, options: options).report
        #expect(ContinuousClock.now - start < .seconds(20))
        #expect(report.warnings?.first?.hasPrefix("stalled") == true, "\(report.warnings ?? [])")
        #expect(report.offeredRecords < 20_000_000)
        #expect(report.writtenRecords + report.droppedRecords == report.offeredRecords)
    }
}

@Suite("run --verify expectations")
struct RunVerifyExpectationTests {
    @Test("a timed run expects each producer's offered records: a lost tail fails verify", arguments: [BenchMode.block, .drop])
    func timedRunLostTail(mode: BenchMode) throws {
        let directory = try BenchTestDirectory()
        // Producer 0 offered 100 records and producer 1 offered 80; in drop mode the channel
        // dropped producer 0's sequences 10..<15.
        let dropped: Set<[UInt64]> = mode == .drop ? Set((UInt64(10)..<15).map { [0, $0] }) : []
        func file(_ name: String, losing lost: Set<[UInt64]>) throws -> String {
            var builder = try RecordFileBuilder(size: 64)
            for sequence in UInt64(0)..<100 {
                for (producer, offered) in [(0, UInt64(100)), (1, UInt64(80))] where sequence < offered {
                    let key = [UInt64(producer), sequence]
                    if !dropped.contains(key) && !lost.contains(key) { builder.add(producer, sequence) }
                }
            }
            return try directory.write(name, builder.bytes)
        }
        let droppedCount = UInt64(dropped.count)
        let report = BenchReport(
            producers: 2, recordSize: 64, mode: mode.rawValue, sinks: ["file"], offeredRecords: 180,
            writtenRecords: 180 - droppedCount, droppedRecords: droppedCount, shippedBytes: (180 - droppedCount) * 64,
            elapsedSeconds: 1, cpuSeconds: 1, peakRSSBytes: 0, producerNsPerRecord: LatencyPercentiles(p50: 0, p99: 0, p999: 0),
            subbufSize: 1 << 20, subbufs: 8
        )
        func verify(_ path: String) throws -> VerifyReport {
            let configuration = RunConfiguration(
                producers: 2, amount: .seconds(1), recordSize: 64, mode: mode, sinks: [.file(path: path, options: FileSinkOptions())])
            let output = BenchRunner.VerifiableOutput(files: [path], interleavesBuffers: false)
            return try #require(try BenchRunner.verify(configuration, report: report, offered: [100, 80], sinkFiles: [output]))
        }

        let intact = try verify(try file("intact.log", losing: []))
        #expect(intact.ok, "\(intact.problems)")
        #expect(intact.missingRecords == droppedCount)

        // The file lost producer 1's last five records, which the channel had accepted.
        let lostTail = try verify(try file("lost-tail.log", losing: Set((UInt64(75)..<80).map { [1, $0] })))
        #expect(!lostTail.ok)
        #expect(lostTail.missingRecords == droppedCount + 5)
    }
}

extension RunVerifyExpectationTests {
    @Test("overwrite mode: the records a sink did not ship are exactly the missing ones", arguments: [false, true])
    func overwriteLostRecords(timed: Bool) throws {
        let directory = try BenchTestDirectory()
        // 2 producers offered 100 records each; the sink shipped 180: sequences 20..<30 of both
        // producers were overwritten before the shipper copied them.
        func file(_ name: String, losing lost: Set<[UInt64]>) throws -> String {
            var builder = try RecordFileBuilder(size: 64)
            for sequence in UInt64(0)..<100 where !(20..<30).contains(sequence) {
                for producer in 0..<2 where !lost.contains([UInt64(producer), sequence]) { builder.add(producer, sequence) }
            }
            return try directory.write(name, builder.bytes)
        }
        let report = BenchReport(
            producers: 2, recordSize: 64, mode: BenchMode.overwrite.rawValue, sinks: ["file"], offeredRecords: 200,
            writtenRecords: 200, droppedRecords: 0, shippedBytes: 180 * 64, elapsedSeconds: 1, cpuSeconds: 1, peakRSSBytes: 0,
            producerNsPerRecord: LatencyPercentiles(p50: 0, p99: 0, p999: 0), subbufSize: 1 << 20, subbufs: 8
        )
        func verify(_ path: String) throws -> VerifyReport {
            let configuration = RunConfiguration(
                producers: 2, amount: timed ? .seconds(1) : .records(200), recordSize: 64, mode: .overwrite,
                sinks: [.file(path: path, options: FileSinkOptions())])
            let output = BenchRunner.VerifiableOutput(files: [path], interleavesBuffers: false, shippedRecords: 180)
            return try #require(try BenchRunner.verify(configuration, report: report, offered: [100, 100], sinkFiles: [output]))
        }

        let intact = try verify(try file("intact.log", losing: []))
        #expect(intact.ok, "\(intact.problems)")
        #expect(intact.missingRecords == 20)

        // The file also lost records the sink had shipped.
        let lost = try verify(try file("lost.log", losing: [[0, 50], [1, 99]]))
        #expect(!lost.ok)
        #expect(lost.missingRecords == 22)
    }
}
