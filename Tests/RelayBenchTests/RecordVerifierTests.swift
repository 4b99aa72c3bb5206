import ArgumentParser
import Foundation
import Testing

@testable import relay_bench

@Suite("RecordVerifier")
struct RecordVerifierTests {
    private func verify(_ paths: [String], _ options: VerifyOptions) throws -> VerifyReport {
        try RecordVerifier.verify(files: paths, options: options)
    }

    @Test("an intact file passes every expectation")
    func intact() throws {
        let directory = try BenchTestDirectory()
        var builder = try RecordFileBuilder(size: 40)
        builder.addWorkload(total: 1_001, producers: 4)
        let path = try directory.write("ok.log", builder.bytes)
        let report = try self.verify([path], VerifyOptions(recordSize: 40, expectedProducers: 4, expectedRecords: 1_001))
        #expect(report.ok)
        #expect(report.problems.isEmpty)
        #expect(report.lines == 1_001)
        #expect(report.distinctRecords == 1_001)
        #expect(report.producers.map(\.records) == [251, 250, 250, 250])
        #expect(report.producers.map(\.expected) == [251, 250, 250, 250])
        #expect(report.producers.map(\.maxSequence) == [250, 249, 249, 249])
    }

    @Test("missing records are counted, ranged, and fail without --allow-gaps")
    func missing() throws {
        let directory = try BenchTestDirectory()
        var builder = try RecordFileBuilder(size: 32)
        var skipped: Set<[UInt64]> = [[1, 5], [1, 6], [1, 7], [0, 0]]
        for sequence in UInt64(90)..<100 { skipped.insert([0, sequence]) }  // a lost tail
        builder.addWorkload(total: 200, producers: 2, skipping: skipped)
        let path = try directory.write("gaps.log", builder.bytes)

        let strict = try self.verify([path], VerifyOptions(recordSize: 32, expectedProducers: 2, expectedRecords: 200))
        #expect(!strict.ok)
        #expect(strict.missingRecords == 14)
        #expect(strict.producers[0].missingRanges == [.init(first: 0, last: 0), .init(first: 90, last: 99)])
        #expect(strict.producers[1].missingRanges == [.init(first: 5, last: 7)])
        #expect(strict.problems.contains { $0.contains("14 record(s) missing") && $0.contains("--allow-gaps") })

        let lenient = try self.verify([path], VerifyOptions(recordSize: 32, expectedProducers: 2, expectedRecords: 200, allowGaps: true))
        #expect(lenient.ok)
        #expect(lenient.missingRecords == 14)

        let matching = try self.verify([path], VerifyOptions(expectedRecords: 200, expectedMissing: 14))
        #expect(matching.ok)
        let mismatching = try self.verify([path], VerifyOptions(expectedRecords: 200, expectedMissing: 13))
        #expect(!mismatching.ok)

        // Without --expect-records only interior gaps are visible: the lost tail 90...99 is not.
        let interior = try self.verify([path], VerifyOptions(recordSize: 32))
        #expect(interior.missingRecords == 4)
    }

    @Test("duplicates across files and within a file are reported with locations")
    func duplicates() throws {
        let directory = try BenchTestDirectory()
        var first = try RecordFileBuilder(size: 32)
        first.addWorkload(total: 10, producers: 1)
        var second = try RecordFileBuilder(size: 32)
        second.add(0, 3)
        second.add(0, 10)
        second.add(0, 10)
        let a = try directory.write("a.log", first.bytes)
        let b = try directory.write("b.log", second.bytes)
        let report = try self.verify([a, b], VerifyOptions(recordSize: 32, expectedRecords: 11))
        #expect(!report.ok)
        #expect(report.duplicateRecords == 2)
        #expect(report.distinctRecords == 11)
        #expect(report.missingRecords == 0)
        #expect(report.duplicateExamples.map(\.file) == [b, b])
        #expect(report.duplicateExamples.map(\.offset) == [0, 64])
        #expect(report.files == [a, b])
    }

    @Test("reordering within a file is an order violation; across files it is not")
    func reordering() throws {
        let directory = try BenchTestDirectory()
        var builder = try RecordFileBuilder(size: 32)
        for sequence: UInt64 in [0, 1, 3, 2, 4] { builder.add(0, sequence) }
        builder.add(1, 0)
        let path = try directory.write("swapped.log", builder.bytes)
        let report = try self.verify([path], VerifyOptions(recordSize: 32))
        #expect(!report.ok)
        #expect(report.orderViolations == 1)
        #expect(report.producers[0].orderViolations == 1)
        let example = try #require(report.orderViolationExamples.first)
        #expect(example.offset == 3 * 32)
        #expect(report.duplicateRecords == 0 && report.missingRecords == 0)

        var later = try RecordFileBuilder(size: 32)
        var earlier = try RecordFileBuilder(size: 32)
        for sequence: UInt64 in 5..<10 { later.add(0, sequence) }
        for sequence: UInt64 in 0..<5 { earlier.add(0, sequence) }
        let x = try directory.write("x.log", later.bytes)
        let y = try directory.write("y.log", earlier.bytes)
        let split = try self.verify([x, y], VerifyOptions(recordSize: 32, expectedProducers: 1, expectedRecords: 10))
        #expect(split.ok, "\(split.problems)")
    }

    @Test(
        "malformed lines are rejected with file:offset",
        arguments: [
            ("0 1 bcdefghijklmnopqrstuvwxyza\n", "wrong length"),  // 31 bytes
            ("0 1 bcdefghijklmnopqrstuvwxyzabc\n", "wrong length"),  // 33 bytes
            ("0 x bcdefghijklmnopqrstuvwxyzab\n", "sequence is not"),
            ("x 1 bcdefghijklmnopqrstuvwxyzab\n", "producer id"),
            ("00 1 cdefghijklmnopqrstuvwxyzab\n", "producer id"),
            ("0 01 bcdefghijklmnopqrstuvwxyza\n", "sequence is not"),
            ("0 1 bcdefghijklmnopqrstuvwxyzaa\n", "filler"),
            ("0 1 BCDEFGHIJKLMNOPQRSTUVWXYZAB\n", "filler"),
            ("0  1 bcdefghijklmnopqrstuvwxyza\n", "sequence is not"),
            ("0 1\tbcdefghijklmnopqrstuvwxyzab\n", "single space"),
            ("0 1 bcdefghijklmnopqrstuvwxyzab", "no newline"),
        ]
    )
    func malformed(line: String, reason: String) throws {
        let directory = try BenchTestDirectory()
        var builder = try RecordFileBuilder(size: 32)
        builder.add(0, 0)
        builder.raw(line)
        let path = try directory.write("bad.log", builder.bytes)
        let report = try self.verify([path], VerifyOptions(recordSize: 32))
        #expect(!report.ok)
        #expect(report.malformedLines == 1)
        #expect(report.records == 1)
        let example = try #require(report.malformedExamples.first)
        #expect(example.file == path)
        #expect(example.offset == 32)
        #expect(example.detail.contains(reason), "\(example.detail)")
        #expect(report.problems.first?.contains("\(path):32") == true)
    }

    @Test("any-length mode checks the format but not the size")
    func anyLength() throws {
        let directory = try BenchTestDirectory()
        var builder = try RecordFileBuilder(size: 32)
        builder.add(0, 0)
        var wide = try RecordFileBuilder(size: 200)
        wide.add(0, 1)
        let path = try directory.write("mixed.log", builder.bytes + wide.bytes)
        #expect(try self.verify([path], VerifyOptions()).ok)
        #expect(try !self.verify([path], VerifyOptions(recordSize: 32)).ok)
        let corrupted = try directory.write("corrupt.log", builder.bytes + Array("0 1 bcdefghijklmnopqrstuvwxyzabcdefz\n".utf8))
        #expect(try self.verify([corrupted], VerifyOptions()).malformedLines == 1)
    }

    @Test("records split across read boundaries and over-long lines are handled")
    func readBoundaries() throws {
        let directory = try BenchTestDirectory()
        var builder = try RecordFileBuilder(size: 100)
        builder.addWorkload(total: 5_000, producers: 3)  // 500 KB, read 64 KiB at a time
        builder.raw(String(repeating: "z", count: 200 << 10) + "\n")  // longer than the read buffer
        builder.add(0, 1_667)
        let path = try directory.write("big.log", builder.bytes)
        let report = try self.verify([path], VerifyOptions(readSize: 64 << 10))
        #expect(report.records == 5_001)
        #expect(report.malformedLines == 1)
        #expect(report.malformedExamples.first?.detail.contains("longer than the read buffer") == true)
        #expect(report.malformedExamples.first?.offset == 500_000)
        #expect(report.lines == 5_002)
    }

    @Test("producer expectations: unexpected ids and silent producers")
    func producerExpectations() throws {
        let directory = try BenchTestDirectory()
        var builder = try RecordFileBuilder(size: 32)
        builder.add(0, 0)
        builder.add(2, 0)
        let path = try directory.write("p.log", builder.bytes)
        let three = try self.verify([path], VerifyOptions(expectedProducers: 3))
        #expect(!three.ok)
        #expect(three.problems.contains { $0.contains("wrote no records (1)") })
        #expect(try self.verify([path], VerifyOptions(expectedProducers: 3, allowGaps: true)).ok)
        let two = try self.verify([path], VerifyOptions(expectedProducers: 2, allowGaps: true))
        #expect(!two.ok)
        #expect(two.unexpectedRecords == 1)
        // More records than expected: the extra sequence is unexpected.
        let short = try self.verify([path], VerifyOptions(expectedProducers: 3, expectedRecords: 2, allowGaps: true))
        #expect(short.unexpectedRecords == 1)
        #expect(!short.ok)
    }

    @Test("an empty file with expected records is all missing")
    func empty() throws {
        let directory = try BenchTestDirectory()
        let path = try directory.write("empty.log", [])
        let report = try self.verify([path], VerifyOptions(expectedProducers: 2, expectedRecords: 5))
        #expect(report.missingRecords == 5)
        #expect(report.producers.map(\.missing) == [3, 2])
        #expect(!report.ok)
    }

    @Test("a directory stands for its regular files")
    func directoryArgument() throws {
        let directory = try BenchTestDirectory()
        var even = try RecordFileBuilder(size: 32)
        var odd = try RecordFileBuilder(size: 32)
        for sequence: UInt64 in 0..<50 { if sequence % 2 == 0 { even.add(0, sequence) } else { odd.add(0, sequence) } }
        try directory.write("cpu0", even.bytes)
        try directory.write("cpu1", odd.bytes)
        let report = try self.verify([directory.path], VerifyOptions(recordSize: 32, expectedRecords: 50))
        #expect(report.ok)
        #expect(report.files.count == 2)
    }

    @Test("unreadable input is a one-line BenchError")
    func unreadable() throws {
        #expect(throws: BenchError.self) { try self.verify(["/nonexistent/relay-bench.log"], VerifyOptions()) }
        do throws(BenchError) {
            _ = try RecordVerifier.verify(files: ["/nonexistent/relay-bench.log"], options: VerifyOptions())
        } catch {
            #expect(error.message == "cannot read '/nonexistent/relay-bench.log': No such file or directory; check the path")
            #expect(error.exitCode == 2)
        }
        #expect(throws: BenchError.self) { try self.verify([], VerifyOptions()) }
        #expect(throws: BenchError.self) { try RecordVerifier(options: VerifyOptions(recordSize: 8)) }
    }

    @Test("bitset: sparse chunks, counts and missing ranges")
    func bitset() {
        let set = SequenceBitset()
        #expect(set.insert(0))
        #expect(!set.insert(0))
        #expect(set.insert(5))
        #expect(set.insert(SequenceBitset.chunkBits * 3 + 1))
        #expect(set.insert(9_000_000_000_000))
        #expect(set.chunkCount == 3)
        #expect(set.count == 4)
        #expect(set.count(below: 6) == 2)
        #expect(set.count(below: 5) == 1)
        #expect(set.contains(9_000_000_000_000))
        #expect(!set.contains(1))
        let limit = SequenceBitset.chunkBits * 3 + 10
        #expect(set.missingRanges(below: limit, maxRanges: 10) == [1...4, 6...(SequenceBitset.chunkBits * 3), (SequenceBitset.chunkBits * 3 + 2)...(limit - 1)])
        #expect(set.missingRanges(below: limit, maxRanges: 1) == [1...4])
    }
}

@Suite("VerifyCommand")
struct VerifyCommandTests {
    @Test("parses every option")
    func parsesOptions() throws {
        let command = try VerifyCommand.parse([
            "a.log", "b.log", "--record-size", "64", "--expect-producers", "4", "--expect-records", "1000",
            "--allow-gaps", "--expect-missing", "3", "--max-examples", "2", "--json",
        ])
        #expect(command.files == ["a.log", "b.log"])
        #expect(command.options == VerifyOptions(recordSize: 64, expectedProducers: 4, expectedRecords: 1000, allowGaps: true, expectedMissing: 3, maxExamples: 2))
        #expect(command.json)
    }

    @Test("--expect-records and --expect-missing take the k/M/G suffixes of run's --records")
    func countSuffixes() throws {
        let command = try VerifyCommand.parse(["a.log", "--expect-records", "10M", "--expect-missing", "2k"])
        #expect(command.options.expectedRecords == 10_000_000)
        #expect(command.options.expectedMissing == 2_000)
    }

    @Test("rejects malformed arguments")
    func rejectsArguments() {
        #expect(throws: (any Error).self) { try VerifyCommand.parse([]) }
        #expect(throws: (any Error).self) { try VerifyCommand.parse(["a.log", "--record-size", "big"]) }
        #expect(throws: (any Error).self) { try VerifyCommand.parse(["a.log", "--expect-records", "-5"]) }
        #expect(throws: (any Error).self) { try VerifyCommand.parse(["a.log", "--bogus"]) }
    }

    @Test("exit codes: 0 ok, 1 verification failure, 2 bad input")
    func exitCodes() throws {
        let directory = try BenchTestDirectory()
        var builder = try RecordFileBuilder(size: 32)
        builder.addWorkload(total: 20, producers: 2)
        let path = try directory.write("ok.log", builder.bytes)
        #expect(throws: Never.self) { try VerifyCommand.parse([path, "--expect-records", "20", "--json"]).run() }
        #expect(throws: ExitCode(1)) { try VerifyCommand.parse([path, "--expect-records", "21"]).run() }
        #expect(throws: ExitCode(2)) { try VerifyCommand.parse([directory.file("missing.log")]).run() }
        #expect(throws: ExitCode(2)) { try VerifyCommand.parse([path, "--record-size", "16"]).run() }
    }

    @Test("JSON has one object with snake_case fields")
    func json() throws {
        let directory = try BenchTestDirectory()
        var builder = try RecordFileBuilder(size: 32)
        builder.addWorkload(total: 9, producers: 2, skipping: [[1, 2]])
        builder.add(0, 1)
        builder.raw("garbage\n")
        let path = try directory.write("j.log", builder.bytes)
        let report = try RecordVerifier.verify(files: [path], options: VerifyOptions(recordSize: 32, expectedProducers: 2, expectedRecords: 9))
        let text = BenchJSON.encode(report)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        for key in [
            "ok", "problems", "files", "bytes", "lines", "records", "distinct_records", "missing_records", "duplicate_records",
            "malformed_lines", "order_violations", "unexpected_records", "record_size", "expected_producers", "expected_records",
            "allow_gaps", "producers", "malformed_examples", "duplicate_examples", "order_violation_examples",
        ] {
            #expect(object[key] != nil, "missing key \(key)")
        }
        #expect(object["ok"] as? Bool == false)
        #expect(object["missing_records"] as? Int == 1)
        #expect(object["duplicate_records"] as? Int == 1)
        #expect(object["malformed_lines"] as? Int == 1)
        let producers = try #require(object["producers"] as? [[String: Any]])
        #expect(producers.count == 2)
        let ranges = try #require(producers[1]["missing_ranges"] as? [[String: Any]])
        #expect(ranges.first?["first"] as? Int == 2)
        #expect(try JSONDecoder().decode(VerifyReport.self, from: Data(text.utf8)) == report)
        #expect(report.renderText().contains("producer 1: records=3 distinct=3 expected=4 seq=0...3 missing=1 [2]"))
    }
}
