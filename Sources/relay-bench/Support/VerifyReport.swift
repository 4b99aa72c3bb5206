/// What ``RecordVerifier`` may expect of the files it checks.
struct VerifyOptions: Sendable, Equatable {
    /// When set, every line must be exactly this many bytes, newline included; otherwise any
    /// length is accepted as long as the line follows the record format.
    var recordSize: Int?

    /// When set, producer ids must be `0..<expectedProducers`, and without ``expectedRecords``
    /// every one of them must have written at least one record (unless ``allowGaps``).
    var expectedProducers: Int?

    /// When set, the total records offered across all producers, split as ``RecordSplit`` does:
    /// producer `p` must hold exactly sequences `0..<count(p)`. Without it, gaps are only
    /// detected below each producer's highest sequence (a lost tail is invisible).
    var expectedRecords: UInt64?

    /// When set, producer `p` must hold exactly sequences `0..<expectedPerProducer[p]` (what each
    /// producer of a timed run offered); it takes the place of ``expectedRecords`` and sets the
    /// producer count.
    var expectedPerProducer: [UInt64]?

    /// Whether missing records are acceptable (drop and overwrite modes); they are still counted.
    var allowGaps: Bool = false

    /// When set, the number of missing records must equal this (e.g. the dropped count of a
    /// drop-mode run); implies ``allowGaps``.
    var expectedMissing: UInt64?

    /// Whether a producer's sequence may go backwards within one file (counted, not a failure).
    ///
    /// A per-channel file interleaves the per-CPU buffers at sub-buffer granularity, so a
    /// producer thread that migrates between CPUs can have later records in an earlier shipped
    /// sub-buffer. Each buffer on its own (`file-per-buffer:DIR`) stays in order.
    var allowReorder: Bool = false

    /// How many example locations/ranges to keep per kind of problem.
    var maxExamples: Int = 5

    /// The read size in bytes; also the longest line that is parsed rather than rejected.
    var readSize: Int = 8 << 20

    /// Creates options; every expectation is off by default.
    init(
        recordSize: Int? = nil,
        expectedProducers: Int? = nil,
        expectedRecords: UInt64? = nil,
        allowGaps: Bool = false,
        expectedMissing: UInt64? = nil,
        allowReorder: Bool = false,
        maxExamples: Int = 5,
        readSize: Int = 8 << 20
    ) {
        self.allowReorder = allowReorder
        self.recordSize = recordSize
        self.expectedProducers = expectedProducers
        self.expectedRecords = expectedRecords
        self.allowGaps = allowGaps
        self.expectedMissing = expectedMissing
        self.maxExamples = maxExamples
        self.readSize = readSize
    }
}

/// The result of verifying relay-bench output; `--json` prints it as one object (snake_case keys).
struct VerifyReport: Codable, Sendable, Equatable {
    /// A place in a file: the byte offset of a line's first byte, and what is wrong there.
    struct Location: Codable, Sendable, Equatable, CustomStringConvertible {
        var file: String
        var offset: UInt64
        var detail: String

        var description: String { "\(self.file):\(self.offset): \(self.detail)" }
    }

    /// A run of missing sequences of one producer, both ends included.
    struct MissingRange: Codable, Sendable, Equatable, CustomStringConvertible {
        var first: UInt64
        var last: UInt64

        var description: String { self.first == self.last ? "\(self.first)" : "\(self.first)-\(self.last)" }
    }

    /// Per-producer counts.
    struct Producer: Codable, Sendable, Equatable {
        var producer: Int
        /// Well-formed records seen, duplicates included.
        var records: UInt64
        /// Distinct sequence numbers seen.
        var distinct: UInt64
        /// The expected record count, when `--expect-records` was given.
        var expected: UInt64?
        var minSequence: UInt64?
        var maxSequence: UInt64?
        var missing: UInt64
        var duplicates: UInt64
        var orderViolations: UInt64
        /// Sequences outside the expected range (or all records of an unexpected producer).
        var unexpected: UInt64
        var missingRanges: [MissingRange]

        enum CodingKeys: String, CodingKey {
            case producer, records, distinct, expected
            case minSequence = "min_sequence"
            case maxSequence = "max_sequence"
            case missing, duplicates
            case orderViolations = "order_violations"
            case unexpected
            case missingRanges = "missing_ranges"
        }
    }

    /// Whether every expectation held; the process exits 0 only then.
    var ok: Bool
    /// One line per failed expectation.
    var problems: [String]
    /// The files read, in order.
    var files: [String]
    /// Bytes read.
    var bytes: UInt64
    /// Lines read, malformed ones included.
    var lines: UInt64
    /// Well-formed records, duplicates included.
    var records: UInt64
    /// Distinct (producer, sequence) pairs.
    var distinctRecords: UInt64
    /// Absent sequences of the expected ranges.
    var missingRecords: UInt64
    /// Records seen more than once (each repeat counts).
    var duplicateRecords: UInt64
    /// Lines that are not valid records.
    var malformedLines: UInt64
    /// Records whose sequence went backwards within a file.
    var orderViolations: UInt64
    /// Distinct records outside the expected producers or ranges.
    var unexpectedRecords: UInt64
    /// The required line length, if any.
    var recordSize: Int?
    /// The `--expect-producers` value, if any.
    var expectedProducers: Int?
    /// The `--expect-records` value, if any.
    var expectedRecords: UInt64?
    /// Whether gaps were acceptable.
    var allowGaps: Bool
    /// Per-producer counts, by producer id.
    var producers: [Producer]
    /// The first malformed lines.
    var malformedExamples: [Location]
    /// The first duplicates.
    var duplicateExamples: [Location]
    /// The first order violations.
    var orderViolationExamples: [Location]

    enum CodingKeys: String, CodingKey {
        case ok, problems, files, bytes, lines, records
        case distinctRecords = "distinct_records"
        case missingRecords = "missing_records"
        case duplicateRecords = "duplicate_records"
        case malformedLines = "malformed_lines"
        case orderViolations = "order_violations"
        case unexpectedRecords = "unexpected_records"
        case recordSize = "record_size"
        case expectedProducers = "expected_producers"
        case expectedRecords = "expected_records"
        case allowGaps = "allow_gaps"
        case producers
        case malformedExamples = "malformed_examples"
        case duplicateExamples = "duplicate_examples"
        case orderViolationExamples = "order_violation_examples"
    }

    /// A human-readable multi-line summary.
    func renderText() -> String {
        var lines: [String] = []
        lines.append("verify: \(self.ok ? "OK" : "FAILED")  files=\(self.files.count) bytes=\(self.bytes) lines=\(self.lines)")
        lines.append(
            "records=\(self.records) distinct=\(self.distinctRecords) missing=\(self.missingRecords) "
                + "duplicates=\(self.duplicateRecords) malformed=\(self.malformedLines) "
                + "order_violations=\(self.orderViolations) unexpected=\(self.unexpectedRecords)"
        )
        for producer in self.producers {
            var line = "  producer \(producer.producer): records=\(producer.records) distinct=\(producer.distinct)"
            if let expected = producer.expected { line += " expected=\(expected)" }
            if let low = producer.minSequence, let high = producer.maxSequence { line += " seq=\(low)...\(high)" }
            line += " missing=\(producer.missing)"
            if !producer.missingRanges.isEmpty {
                line += " [" + producer.missingRanges.map(\.description).joined(separator: ", ")
                line += producer.missing > producer.missingRanges.reduce(0, { $0 + $1.last - $1.first + 1 }) ? ", …]" : "]"
            }
            if producer.duplicates > 0 { line += " duplicates=\(producer.duplicates)" }
            if producer.orderViolations > 0 { line += " order_violations=\(producer.orderViolations)" }
            if producer.unexpected > 0 { line += " unexpected=\(producer.unexpected)" }
            lines.append(line)
        }
        for example in self.malformedExamples { lines.append("  malformed: \(example)") }
        for example in self.duplicateExamples { lines.append("  duplicate: \(example)") }
        for example in self.orderViolationExamples { lines.append("  out of order: \(example)") }
        for problem in self.problems { lines.append("problem: \(problem)") }
        return lines.joined(separator: "\n")
    }
}
