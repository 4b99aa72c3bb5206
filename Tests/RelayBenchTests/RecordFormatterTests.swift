import Testing

@testable import relay_bench

@Suite("RecordFormatter")
struct RecordFormatterTests {
    @Test("documented examples are exact")
    func documentedExamples() throws {
        let formatter = try RecordFormatter(size: 32)
        #expect(String(decoding: formatter.record(producer: 0, sequence: 0), as: UTF8.self) == "0 0 abcdefghijklmnopqrstuvwxyza\n")
        #expect(String(decoding: formatter.record(producer: 3, sequence: 17), as: UTF8.self) == "3 17 uvwxyzabcdefghijklmnopqrst\n")
    }

    @Test("every record is exactly the record size", arguments: [32, 33, 64, 100, 256, 4096])
    func exactSizes(size: Int) throws {
        let formatter = try RecordFormatter(size: size)
        let cases: [(Int, UInt64)] = [(0, 0), (9, 9), (10, 10), (65_535, RecordFormatter.maxSequence), (123, 4_567_890)]
        for (producer, sequence) in cases {
            let record = formatter.record(producer: producer, sequence: sequence)
            #expect(record.count == size)
            #expect(record.last == UInt8(ascii: "\n"))
            #expect(record.dropLast().allSatisfy { $0 != UInt8(ascii: "\n") })
            let text = String(decoding: record.dropLast(), as: UTF8.self)
            let fields = text.split(separator: " ", omittingEmptySubsequences: false)
            #expect(fields.count == 3)
            #expect(fields[0] == "\(producer)")
            #expect(fields[1] == "\(sequence)")
            #expect(fields[2].utf8.allSatisfy { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") })
            let rotation = Int((UInt64(producer) + sequence) % 26)
            let expectedFiller = (0..<fields[2].utf8.count).map { UInt8(ascii: "a") + UInt8((rotation + $0) % 26) }
            #expect(Array(fields[2].utf8) == expectedFiller)
        }
    }

    @Test("writes in place into a buffer of exactly the record size")
    func writesInPlace() throws {
        let formatter = try RecordFormatter(size: 48)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 48, alignment: 8)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0xFF)
        formatter.write(producer: 7, sequence: 1_000_000, into: buffer)
        #expect(Array(buffer) == formatter.record(producer: 7, sequence: 1_000_000))
        #expect(!buffer.contains(0xFF))
    }

    @Test("rejects sizes below 32 and above 1 MiB with a fix")
    func rejectsBadSizes() {
        #expect(throws: BenchError("record size 31 is too small: use --record-size 32 or more")) {
            try RecordFormatter(size: 31)
        }
        #expect(throws: BenchError.self) { try RecordFormatter(size: (1 << 20) + 1) }
        #expect(throws: Never.self) { try RecordFormatter(size: 1 << 20) }
    }

    @Test("workload limits: producers and sequences must fit the format")
    func workloadLimits() {
        #expect(throws: Never.self) { try RecordFormatter.validate(producers: 65_536, recordsPerProducer: RecordFormatter.maxSequence + 1) }
        #expect(throws: BenchError.self) { try RecordFormatter.validate(producers: 65_537, recordsPerProducer: 1) }
        #expect(throws: BenchError.self) { try RecordFormatter.validate(producers: 0, recordsPerProducer: 1) }
        #expect(throws: BenchError.self) { try RecordFormatter.validate(producers: 1, recordsPerProducer: RecordFormatter.maxSequence + 2) }
    }

    @Test("records split over producers as documented")
    func split() {
        #expect((0..<3).map { RecordSplit.count(forProducer: $0, total: 10, producers: 3) } == [4, 3, 3])
        #expect((0..<4).map { RecordSplit.count(forProducer: $0, total: 2, producers: 4) } == [1, 1, 0, 0])
        #expect((0..<5).map { RecordSplit.count(forProducer: $0, total: 1_000_003, producers: 5) }.reduce(0, +) == 1_000_003)
    }

    @Test("formatted records pass verify", arguments: [32, 57, 512])
    func formattedRecordsVerify(size: Int) throws {
        let directory = try BenchTestDirectory()
        var builder = try RecordFileBuilder(size: size)
        builder.addWorkload(total: 2_000, producers: 3)
        let path = try directory.write("records.log", builder.bytes)
        let report = try RecordVerifier.verify(
            files: [path],
            options: VerifyOptions(recordSize: size, expectedProducers: 3, expectedRecords: 2_000)
        )
        #expect(report.ok, "\(report.problems)")
        #expect(report.records == 2_000)
        #expect(report.bytes == UInt64(2_000 * size))
    }

    @Test(
        "the incremental cursor writes the same bytes as the formatter, across digit-count changes",
        arguments: [32, 33, 128, 4096])
    func cursorMatchesFormatter(size: Int) throws {
        let formatter = try RecordFormatter(size: size)
        let starts: [(Int, UInt64)] = [
            (0, 0), (1, 5), (7, 95), (12, 990), (65_535, 99_990), (3, 9_999_980), (65_535, RecordFormatter.maxSequence - 30),
        ]
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { buffer.deallocate() }
        for (producer, start) in starts {
            let cursor = RecordCursor(formatter: formatter, producer: producer, sequence: start)
            for offset in 0..<31 as Range<UInt64> {
                let sequence = start + offset
                #expect(cursor.sequence == sequence)
                if offset % 7 == 3 {
                    cursor.skip()  // a failed reservation: the sequence is not reused
                    continue
                }
                cursor.next(to: buffer)
                let written = Array(UnsafeRawBufferPointer(start: buffer, count: size))
                #expect(written == formatter.record(producer: producer, sequence: sequence), "producer \(producer) sequence \(sequence)")
            }
        }
    }
}
