import Foundation
import Relay
import Testing
import Synchronization

@testable import relay_bench

@Suite("BenchReport")
struct BenchReportTests {
    private func sampleReport(e2e: EndToEndLatency?) -> BenchReport {
        BenchReport(
            producers: 4,
            recordSize: 128,
            mode: BenchMode.drop.rawValue,
            sinks: ["file:/tmp/out.log", "file:/tmp/other.log,writeback=kernel", "null"],
            offeredRecords: 10_000_000,
            writtenRecords: 9_990_000,
            droppedRecords: 10_000,
            shippedBytes: 1_278_720_000,
            elapsedSeconds: 2,
            cpuSeconds: 3.5,
            peakRSSBytes: 210_000_000,
            producerNsPerRecord: LatencyPercentiles(p50: 41, p99: 220, p999: 1_900),
            e2eLatencyMs: e2e,
            subbufSize: 1 << 20,
            subbufs: 8,
            config: BenchReport.Config(records: 10_000_000, cpus: 2),
            sinkStats: [
                BenchReport.SinkStats(sink: "file:/tmp/out.log", shippedBytes: 1_278_720_000, subbuffers: 1220, batches: 3, writebacks: 152),
                BenchReport.SinkStats(sink: "file:/tmp/other.log,writeback=kernel", shippedBytes: 1_278_720_000, subbuffers: 1220, writebacks: 0),
                BenchReport.SinkStats(sink: "null", shippedBytes: 1_278_720_000, subbuffers: 1220),
            ]
        )
    }

    @Test("JSON carries every required key in snake_case")
    func requiredKeys() throws {
        let text = BenchJSON.encode(self.sampleReport(e2e: EndToEndLatency(p50: 0.8, p99: 4.2)))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        for key in [
            "producers", "record_size", "mode", "sinks", "offered_records", "written_records", "dropped_records", "shipped_bytes",
            "elapsed_seconds", "records_per_second", "bytes_per_second", "cpu_seconds", "peak_rss_bytes", "producer_ns_per_record",
            "e2e_latency_ms", "subbuf_size", "subbufs", "config", "sink_stats",
        ] {
            #expect(object[key] != nil, "missing \(key)")
        }
        #expect(object["records_per_second"] as? Double == 4_995_000)
        #expect(object["bytes_per_second"] as? Double == 639_360_000)
        let latency = try #require(object["producer_ns_per_record"] as? [String: Any])
        #expect(Set(latency.keys) == ["p50", "p99", "p999"])
        let e2e = try #require(object["e2e_latency_ms"] as? [String: Any])
        #expect(Set(e2e.keys) == ["p50", "p99"])
        let stats = try #require((object["sink_stats"] as? [[String: Any]])?.first)
        #expect(stats["shipped_bytes"] as? Int == 1_278_720_000)
        #expect(stats["writebacks"] as? Int == 152)
        // Written for file sinks even when 0, absent for the others.
        let allStats = try #require(object["sink_stats"] as? [[String: Any]])
        #expect(allStats.map { $0["writebacks"] as? Int } == [152, 0, nil])
        #expect(try JSONDecoder().decode(BenchReport.self, from: Data(text.utf8)) == self.sampleReport(e2e: EndToEndLatency(p50: 0.8, p99: 4.2)))
    }

    @Test("e2e latency is omitted when not measured")
    func optionalLatency() throws {
        let text = BenchJSON.encode(self.sampleReport(e2e: nil), pretty: false)
        #expect(!text.contains("e2e_latency_ms"))
        #expect(!text.contains("\n"))
    }

    @Test("human table aligns values and uses units")
    func table() throws {
        let table = self.sampleReport(e2e: EndToEndLatency(p50: 0.8, p99: 4.2)).renderTable()
        let lines = table.split(separator: "\n").map(String.init)
        // label, at least two spaces, value: every value starts in the same column.
        var columns: Set<Int> = []
        var values: [String: String] = [:]
        for line in lines {
            let body = line.drop(while: { $0 == " " })
            let gap = try #require(body.range(of: "  "))
            let value = body[gap.upperBound...].drop(while: { $0 == " " })
            columns.insert(line.distance(from: line.startIndex, to: value.startIndex))
            values[String(body[..<gap.lowerBound])] = String(value)
        }
        #expect(columns.count == 1)
        #expect(values["throughput"] == "5.00 M rec/s   639.4 MB/s")
        #expect(values["dropped"] == "10000 records (0.10%)")
        #expect(values["cpu"] == "3.500 s (1.75 cores)")
        #expect(values["producer ns/record"] == "p50 41  p99 220  p99.9 1900")
        #expect(values["end-to-end latency"] == "p50 0.800 ms  p99 4.200 ms")
        #expect(values["geometry"] == "8 × 1MiB sub-buffers")
        #expect(values["peak rss"] == "210.0 MB")
        #expect(values["file:/tmp/out.log"] == "1.28 GB in 1220 sub-buffers, 3 batches, 152 writeback requests")
        // No writeback requests, nothing said.
        #expect(values["file:/tmp/other.log,writeback=kernel"] == "1.28 GB in 1220 sub-buffers")
        #expect(values["null"] == "1.28 GB in 1220 sub-buffers")
    }

    @Test("units switch at the documented thresholds")
    func units() {
        #expect(BenchUnits.recordRate(12_345_678) == "12.35 M rec/s")
        #expect(BenchUnits.recordRate(45_600) == "45.6 k rec/s")
        #expect(BenchUnits.recordRate(789) == "789 rec/s")
        #expect(BenchUnits.byteRate(2_500_000_000) == "2.50 GB/s")
        #expect(BenchUnits.byteRate(456_700_000) == "456.7 MB/s")
        #expect(BenchUnits.bytes(512) == "512 B")
        #expect(BenchUnits.fixed(-1.005, 1) == "-1.0")
        #expect(BenchUnits.fixed(0.05, 1) == "0.1")
    }

    @Test("comparison table: ratios against swift-relay, aligned columns")
    func comparison() throws {
        let results = [
            BaselineResult(name: "swift-relay", records: 1_000_000, bytes: 128_000_000, elapsedSeconds: 0.1, cpuSeconds: 0.15),
            BaselineResult(name: "mutex-buffer-64KiB", records: 1_000_000, bytes: 128_000_000, elapsedSeconds: 0.4, cpuSeconds: 0.8, note: "shared buffer"),
            BaselineResult(name: "memcpy", records: 1_000_000, bytes: 128_000_000, elapsedSeconds: 0.01, cpuSeconds: 0.01),
        ]
        let table = ComparisonTable(producers: 2, recordSize: 128, records: 1_000_000, destination: "file:/tmp/x", results: results)
        #expect(table.rows.map(\.ratio) == [1, 0.25, 10])
        let text = table.render()
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines[0] == "1000000 records of 128 B from 2 producers → file:/tmp/x")
        #expect(lines[1].hasPrefix("variant"))
        #expect(lines[2].allSatisfy { $0 == "-" })
        #expect(lines[3].contains("10.00 M rec/s") && lines[3].contains("1.28 GB/s") && lines[3].contains("1.00x"))
        #expect(lines[4].contains("2.50 M rec/s") && lines[4].contains("320.0 MB/s") && lines[4].contains("0.25x") && lines[4].hasSuffix("shared buffer"))
        // Right-aligned numeric columns end at the same offset.
        let rateEnds = [lines[1], lines[3], lines[4], lines[5]].map { line in
            line.distance(from: line.startIndex, to: (line.range(of: "records/s") ?? line.range(of: "rec/s")!).upperBound)
        }
        #expect(Set(rateEnds).count == 1)
        let json = BenchJSON.encode(table)
        #expect(json.contains("\"records_per_second\""))
        #expect(json.contains("\"ratio\""))
        let without = ComparisonTable(producers: 1, recordSize: 64, records: 1, destination: "x", results: Array(results.dropFirst()))
        #expect(without.rows.allSatisfy { $0.ratio == nil })
        #expect(without.render().contains(" -"))
    }
}

@Suite("LatencyRecorder and ResourceUsage")
struct LatencyAndResourceTests {
    @Test("per-thread recorders merge into correct percentiles")
    func percentiles() throws {
        let recorders = RelayMutex<[LatencyRecorder]>([])
        try BenchThread.runAll(count: 4, name: "lat") { index in
            var recorder = LatencyRecorder()
            for value in 1...1_000 { recorder.record(UInt64(value + index * 1_000)) }
            recorders.withLock { $0.append(recorder) }
        }
        let merged = LatencyRecorder.merged(recorders.withLock { $0 })
        #expect(merged.count == 4_000)
        let p = merged.percentiles
        #expect(abs(p.p50 - 2_000) <= 2)
        #expect(abs(p.p99 - 3_960) <= 4)
        #expect(abs(p.p999 - 3_996) <= 4)
        var clamped = LatencyRecorder()
        clamped.record(UInt64.max)
        #expect(clamped.value(atPercentile: 100) >= LatencyRecorder.highestTrackable)
        #expect(LatencyRecorder().percentiles == LatencyPercentiles(p50: 0, p99: 0, p999: 0))
        var e2e = LatencyRecorder()
        for _ in 0..<10 { e2e.record(2_000_000) }
        #expect(abs(e2e.endToEndMilliseconds.p50 - 2) < 0.01)
    }

    @Test("process and thread CPU grow with work; peak RSS is plausible")
    func usage() throws {
        let before = ResourceUsage.process()
        let threadBefore = ResourceUsage.currentThread()
        // Spin until this thread has used 30 ms of CPU (bounded by 10 s of wall time on a busy machine).
        var x: UInt64 = 1
        let deadline = BenchClock.nanoseconds() + 10_000_000_000
        while ResourceUsage.currentThread().since(threadBefore).cpuSeconds < 0.03 && BenchClock.nanoseconds() < deadline {
            for _ in 0..<100_000 { x = x &* 6_364_136_223_846_793_005 &+ 1 }
        }
        #expect(x != 0)
        let threadDelta = ResourceUsage.currentThread().since(threadBefore)
        let delta = ResourceUsage.process().since(before)
        #expect(threadDelta.cpuSeconds >= 0.03)
        // The process total includes this thread's time (rusage granularity is a few ms).
        #expect(delta.cpuSeconds >= threadDelta.cpuSeconds - 0.005)
        #expect(delta.peakRSSBytes > 1 << 20)
        let proc = try #require(ResourceUsage.peakRSSFromProc())
        #expect(proc > 1 << 20)
    }
}

@Suite("ProgressLine")
struct ProgressLineTests {
    @Test("rates come from the interval since the previous sample")
    func rates() {
        var progress = ProgressLine(startNanoseconds: 1_000_000_000)
        let first = progress.update(records: 5_000_000, bytes: 640_000_000, dropped: 0, bufferFill: 0.25, nanoseconds: 2_000_000_000)
        #expect(first.hasPrefix("\r1s  5.00 M rec/s  640.0 MB/s  drops 0  fill 25%"))
        let second = progress.update(records: 6_000_000, bytes: 3_640_000_000, dropped: 12, bufferFill: 1.5, nanoseconds: 2_500_000_000)
        #expect(second.hasPrefix("\r2s  2.00 M rec/s  6.00 GB/s  drops 12  fill 100%"))
        #expect(second.count == 73)
    }

    @Test("disabled with --json or when not a terminal")
    func enabled() throws {
        #expect(!ProgressLine.isEnabled(json: true, fd: STDERR_FILENO))
        let directory = try BenchTestDirectory()
        let path = try directory.write("not-a-tty", text: "")
        let fd = open(path, O_WRONLY)
        defer { close(fd) }
        #expect(!ProgressLine.isEnabled(json: false, fd: fd))
    }
}
