import Glibc

/// Checks files of relay-bench records (see ``RecordFormatter``) for loss, duplication, corruption
/// and reordering; the engine behind `relay-bench verify`, also used by `run` and the tests.
///
/// Files are streamed in large reads (``VerifyOptions/readSize``, 8 MiB by default) into one
/// buffer and split at newlines with `memchr`; lines are parsed in place, never turned into
/// `String`s. Each producer's sequences go into a ``SequenceBitset`` (1 bit per sequence), so
/// 100 million records need about 12.5 MB whatever the file sizes.
///
/// Rules:
/// - a line is *malformed* when it does not match the format exactly: wrong length (when a record
///   size is given), missing or non-decimal numbers, leading zeros, out-of-range ids, wrong
///   separators, a filler that is not the expected letter pattern, or no final newline;
/// - a *duplicate* is a (producer, sequence) pair seen before, in any file;
/// - an *order violation* is a record whose sequence is lower than that producer's previous
///   record in the same file (files are independent: fan-out and per-buffer files each keep
///   their own order);
/// - *missing* records are the absent sequences of each producer's expected range (see
///   ``VerifyOptions/expectedRecords``);
/// - *unexpected* records lie outside the expected producers or ranges.
///
/// Usage: ``verify(files:options:)``, or ``init(options:)``, ``verify(path:)`` per file, then
/// ``finish()``.
final class RecordVerifier {
    /// Why a line was rejected.
    enum Malformed: Sendable {
        case wrongLength(Int)
        case badProducer
        case producerOutOfRange
        case badSequence
        case sequenceOutOfRange
        case badSeparator
        case badFiller
        case missingNewline(Int)
        case lineTooLong

        func describe(expectedSize: Int?) -> String {
            switch self {
            case .wrongLength(let length):
                return "wrong length \(length) bytes, expected \(expectedSize ?? 0)"
            case .badProducer: return "producer id is not a decimal number without leading zeros"
            case .producerOutOfRange: return "producer id above \(RecordFormatter.maxProducers - 1)"
            case .badSequence: return "sequence is not a decimal number without leading zeros"
            case .sequenceOutOfRange: return "sequence above \(RecordFormatter.maxSequence)"
            case .badSeparator: return "expected a single space after the number"
            case .badFiller: return "filler does not match the expected letter pattern"
            case .missingNewline(let length): return "last line (\(length) bytes) has no newline: truncated record"
            case .lineTooLong: return "line longer than the read buffer; not a relay-bench record"
            }
        }
    }

    private enum LineResult {
        case record(producer: Int, sequence: UInt64)
        case malformed(Malformed)
    }

    private struct ProducerState {
        let sequences = SequenceBitset()
        var records: UInt64 = 0
        var duplicates: UInt64 = 0
        var orderViolations: UInt64 = 0
        var minSequence: UInt64 = .max
        var maxSequence: UInt64 = 0
        var lastSequence: UInt64 = 0
        var lastFile: Int = -1
    }

    private let options: VerifyOptions
    private let buffer: UnsafeMutableRawPointer
    private let pattern: UnsafeMutableRawPointer
    private var producers: [ProducerState] = []
    private var files: [String] = []
    private var bytes: UInt64 = 0
    private var lines: UInt64 = 0
    private var records: UInt64 = 0
    private var malformed: UInt64 = 0
    private var malformedExamples: [VerifyReport.Location] = []
    private var duplicateExamples: [VerifyReport.Location] = []
    private var orderExamples: [VerifyReport.Location] = []

    /// Creates a verifier.
    ///
    /// - Parameter options: What to expect.
    /// - Throws: ``BenchError`` for contradictory options (record size below 32, zero producers…).
    init(options: VerifyOptions) throws(BenchError) {
        if let size = options.recordSize {
            guard size >= RecordFormatter.minimumSize && size <= RecordFormatter.maximumSize else {
                throw BenchError("record size \(size) is invalid: use --record-size between \(RecordFormatter.minimumSize) and \(RecordFormatter.maximumSize)")
            }
        }
        if let producers = options.expectedProducers {
            guard producers >= 1 && producers <= RecordFormatter.maxProducers else {
                throw BenchError("expected producer count \(producers) is invalid: use --expect-producers between 1 and \(RecordFormatter.maxProducers)")
            }
        }
        guard options.readSize >= 64 << 10 else {
            throw BenchError("read size \(options.readSize) is too small: use 64 KiB or more")
        }
        if let size = options.recordSize, size > options.readSize {
            throw BenchError("record size \(size) exceeds the read size \(options.readSize): raise the read size")
        }
        guard options.maxExamples >= 0 else {
            throw BenchError("example count \(options.maxExamples) is invalid: use 0 or more")
        }
        self.options = options
        self.buffer = .allocate(byteCount: options.readSize, alignment: 4096)
        self.pattern = .allocate(byteCount: options.readSize + 26, alignment: 64)
        RecordFormatter.fillPattern(self.pattern, length: options.readSize + 26)
    }

    deinit {
        self.buffer.deallocate()
        self.pattern.deallocate()
    }

    /// Verifies `files` (a directory stands for its regular files, sorted by name).
    ///
    /// - Parameters:
    ///   - files: File or directory paths.
    ///   - options: What to expect.
    /// - Returns: The report; `ok` tells whether every expectation held.
    /// - Throws: ``BenchError`` when a file cannot be read or the options are invalid.
    static func verify(files: [String], options: VerifyOptions) throws(BenchError) -> VerifyReport {
        guard !files.isEmpty else {
            throw BenchError("no files to verify: pass one or more FILE arguments")
        }
        let verifier = try RecordVerifier(options: options)
        for path in files {
            try verifier.verify(path: path)
        }
        return verifier.finish()
    }

    /// Streams one file (or every regular file of a directory) through the checks.
    ///
    /// - Parameter path: A file or directory.
    /// - Throws: ``BenchError`` when it cannot be opened or read.
    func verify(path: String) throws(BenchError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw BenchError.system("cannot read '\(path)'", errno: errno, fix: "check the path")
        }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for entry in try RecordVerifier.regularFiles(in: path) {
                try self.verifyFile(entry)
            }
        } else {
            try self.verifyFile(path)
        }
    }

    /// Builds the report from everything verified so far.
    func finish() -> VerifyReport {
        let options = self.options
        // Without --expect-producers, the producers seen are the expected ones (at least one when
        // records are expected, so an empty output still counts as all missing).
        let expectedProducerCount =
            options.expectedPerProducer?.count ?? options.expectedProducers
            ?? (options.expectedRecords != nil ? max(self.producers.count, 1) : self.producers.count)
        let producerRows = max(self.producers.count, expectedProducerCount)
        var summaries: [VerifyReport.Producer] = []
        var problems: [String] = []
        var missingTotal: UInt64 = 0
        var duplicateTotal: UInt64 = 0
        var orderTotal: UInt64 = 0
        var unexpectedTotal: UInt64 = 0
        var distinctTotal: UInt64 = 0
        var silentProducers: [Int] = []
        for id in 0..<producerRows {
            let state = id < self.producers.count ? self.producers[id] : ProducerState()
            let distinct = state.sequences.count
            var expected: UInt64?
            var missing: UInt64 = 0
            var unexpected: UInt64 = 0
            var ranges: [VerifyReport.MissingRange] = []
            if id < expectedProducerCount {
                if let perProducer = options.expectedPerProducer {
                    expected = perProducer[id]
                } else if let total = options.expectedRecords {
                    expected = RecordSplit.count(forProducer: id, total: total, producers: expectedProducerCount)
                }
                let limit = expected ?? (state.records > 0 ? state.maxSequence + 1 : 0)
                let present = state.sequences.count(below: limit)
                missing = limit - present
                unexpected = distinct - present
                if missing > 0 {
                    ranges = state.sequences.missingRanges(below: limit, maxRanges: options.maxExamples)
                        .map { VerifyReport.MissingRange(first: $0.lowerBound, last: $0.upperBound) }
                }
                if state.records == 0 && expected == nil && options.expectedProducers != nil {
                    silentProducers.append(id)
                }
            } else {
                unexpected = distinct
            }
            if state.records == 0 && expected == nil && id >= expectedProducerCount {
                continue
            }
            missingTotal += missing
            duplicateTotal += state.duplicates
            orderTotal += state.orderViolations
            unexpectedTotal += unexpected
            distinctTotal += distinct
            summaries.append(
                VerifyReport.Producer(
                    producer: id,
                    records: state.records,
                    distinct: distinct,
                    expected: expected,
                    minSequence: state.records > 0 ? state.minSequence : nil,
                    maxSequence: state.records > 0 ? state.maxSequence : nil,
                    missing: missing,
                    duplicates: state.duplicates,
                    orderViolations: state.orderViolations,
                    unexpected: unexpected,
                    missingRanges: ranges
                )
            )
        }

        if self.malformed > 0 {
            let first = self.malformedExamples.first.map { " (first at \($0))" } ?? ""
            problems.append("\(self.malformed) malformed line(s)\(first): the files are not intact relay-bench records of this size")
        }
        if duplicateTotal > 0 {
            problems.append("\(duplicateTotal) duplicate record(s): some records were written more than once")
        }
        if orderTotal > 0 && !options.allowReorder {
            problems.append("\(orderTotal) order violation(s): a producer's sequence went backwards within one file (pass --allow-reorder for a per-channel file of several per-CPU buffers)")
        }
        if unexpectedTotal > 0 {
            problems.append("\(unexpectedTotal) unexpected record(s): producer ids or sequences beyond the expected producers/records")
        }
        let allowGaps = options.allowGaps || options.expectedMissing != nil
        if let expectedMissing = options.expectedMissing {
            if missingTotal != expectedMissing {
                problems.append("\(missingTotal) record(s) missing but \(expectedMissing) expected missing (dropped): loss does not match the drop count")
            }
        } else if missingTotal > 0 && !allowGaps {
            problems.append("\(missingTotal) record(s) missing: pass --allow-gaps if the run dropped records on purpose")
        }
        if !silentProducers.isEmpty && !allowGaps {
            let list = silentProducers.prefix(options.maxExamples).map(String.init).joined(separator: ", ")
            problems.append("\(silentProducers.count) expected producer(s) wrote no records (\(list)): check --expect-producers or pass --allow-gaps")
        }

        return VerifyReport(
            ok: problems.isEmpty,
            problems: problems,
            files: self.files,
            bytes: self.bytes,
            lines: self.lines,
            records: self.records,
            distinctRecords: distinctTotal,
            missingRecords: missingTotal,
            duplicateRecords: duplicateTotal,
            malformedLines: self.malformed,
            orderViolations: orderTotal,
            unexpectedRecords: unexpectedTotal,
            recordSize: options.recordSize,
            expectedProducers: options.expectedProducers,
            expectedRecords: options.expectedRecords,
            allowGaps: allowGaps,
            producers: summaries,
            malformedExamples: self.malformedExamples,
            duplicateExamples: self.duplicateExamples,
            orderViolationExamples: self.orderExamples
        )
    }

    // MARK: Streaming

    private func verifyFile(_ path: String) throws(BenchError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw BenchError.system("cannot open '\(path)' for reading", errno: errno, fix: "check the path and its permissions")
        }
        defer { POSIXIO.closeQuietly(fd) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        let fileIndex = self.files.count
        self.files.append(path)

        let capacity = self.options.readSize
        let buffer = self.buffer
        var filled = 0  // bytes in `buffer`
        var start = 0  // first byte of the current, unfinished line
        var bufferOffset: UInt64 = 0  // file offset of buffer[0]
        var skippingLongLine = false
        while true {
            let n = POSIXIO.readSome(fd, buffer + filled, capacity - filled)
            if n < 0 {
                throw BenchError.system("cannot read '\(path)'", errno: Int32(-n), fix: "check the file and the disk")
            }
            if n == 0 {
                if filled > start && !skippingLongLine {
                    self.lines += 1
                    self.noteMalformed(.missingNewline(filled - start), file: fileIndex, offset: bufferOffset + UInt64(start))
                }
                break
            }
            self.bytes += UInt64(n)
            filled += n

            while start < filled {
                guard let newline = memchr(buffer + start, 0x0A, filled - start) else { break }
                let length = buffer.distance(to: newline) - start
                if skippingLongLine {
                    skippingLongLine = false
                } else {
                    self.lines += 1
                    self.check(line: UnsafeRawPointer(buffer + start), length: length, file: fileIndex, offset: bufferOffset + UInt64(start))
                }
                start += length + 1
            }

            if start == filled {
                bufferOffset += UInt64(filled)
                start = 0
                filled = 0
            } else if start > 0 {
                let rest = filled - start
                memmove(buffer, buffer + start, rest)
                bufferOffset += UInt64(start)
                filled = rest
                start = 0
            } else if filled == capacity {
                // A whole buffer without a newline: reject the line once and skip to its end.
                if !skippingLongLine {
                    self.lines += 1
                    self.noteMalformed(.lineTooLong, file: fileIndex, offset: bufferOffset)
                    skippingLongLine = true
                }
                bufferOffset += UInt64(filled)
                filled = 0
            }
        }
    }

    @inline(__always)
    private func check(line: UnsafeRawPointer, length: Int, file: Int, offset: UInt64) {
        switch self.parse(line: line, length: length) {
        case .malformed(let reason):
            self.noteMalformed(reason, file: file, offset: offset)
        case .record(let producer, let sequence):
            self.noteRecord(producer: producer, sequence: sequence, file: file, offset: offset)
        }
    }

    @inline(__always)
    private func parse(line: UnsafeRawPointer, length: Int) -> LineResult {
        if let size = self.options.recordSize, length + 1 != size {
            return .malformed(.wrongLength(length + 1))
        }
        var index = 0

        // Producer id: 1...5 digits, no leading zero.
        var producer: UInt64 = 0
        while index < length {
            let digit = line.load(fromByteOffset: index, as: UInt8.self) &- UInt8(ascii: "0")
            if digit > 9 { break }
            producer = producer &* 10 &+ UInt64(digit)
            index += 1
            if index > 5 { return .malformed(.producerOutOfRange) }
        }
        if index == 0 || (index > 1 && line.load(as: UInt8.self) == UInt8(ascii: "0")) {
            return .malformed(.badProducer)
        }
        if producer >= UInt64(RecordFormatter.maxProducers) { return .malformed(.producerOutOfRange) }
        guard index < length, line.load(fromByteOffset: index, as: UInt8.self) == UInt8(ascii: " ") else {
            return .malformed(.badSeparator)
        }
        index += 1

        // Sequence: 1...13 digits, no leading zero.
        let sequenceStart = index
        var sequence: UInt64 = 0
        while index < length {
            let digit = line.load(fromByteOffset: index, as: UInt8.self) &- UInt8(ascii: "0")
            if digit > 9 { break }
            sequence = sequence &* 10 &+ UInt64(digit)
            index += 1
            if index - sequenceStart > 13 { return .malformed(.sequenceOutOfRange) }
        }
        let sequenceDigits = index - sequenceStart
        if sequenceDigits == 0
            || (sequenceDigits > 1 && line.load(fromByteOffset: sequenceStart, as: UInt8.self) == UInt8(ascii: "0"))
        {
            return .malformed(.badSequence)
        }
        guard index < length, line.load(fromByteOffset: index, as: UInt8.self) == UInt8(ascii: " ") else {
            return .malformed(.badSeparator)
        }
        index += 1

        // Filler: at least one letter, exactly the rotated alphabet.
        let fillerLength = length - index
        guard fillerLength >= 1 else { return .malformed(.badFiller) }
        let rotation = RecordFormatter.fillerRotation(producer: producer, sequence: sequence)
        if memcmp(line + index, self.pattern + rotation, fillerLength) != 0 {
            return .malformed(.badFiller)
        }
        return .record(producer: Int(producer), sequence: sequence)
    }

    @inline(__always)
    private func noteRecord(producer: Int, sequence: UInt64, file: Int, offset: UInt64) {
        self.records += 1
        if producer >= self.producers.count {
            self.growProducers(to: producer + 1)
        }
        let fresh = self.producers[producer].sequences.insert(sequence)
        var outOfOrder = false
        self.producers.withUnsafeMutableBufferPointer { all in
            let state = all.baseAddress! + producer
            state.pointee.records += 1
            if sequence < state.pointee.minSequence { state.pointee.minSequence = sequence }
            if sequence > state.pointee.maxSequence { state.pointee.maxSequence = sequence }
            if !fresh { state.pointee.duplicates += 1 }
            if state.pointee.lastFile == file && sequence < state.pointee.lastSequence {
                state.pointee.orderViolations += 1
                outOfOrder = true
            }
            state.pointee.lastFile = file
            state.pointee.lastSequence = sequence
        }
        if !fresh && self.duplicateExamples.count < self.options.maxExamples {
            self.duplicateExamples.append(
                VerifyReport.Location(file: self.files[file], offset: offset, detail: "producer \(producer) sequence \(sequence) seen before")
            )
        }
        if outOfOrder && self.orderExamples.count < self.options.maxExamples {
            self.orderExamples.append(
                VerifyReport.Location(file: self.files[file], offset: offset, detail: "producer \(producer) sequence \(sequence) after a higher sequence")
            )
        }
    }

    private func growProducers(to count: Int) {
        while self.producers.count < count {
            self.producers.append(ProducerState())
        }
    }

    private func noteMalformed(_ reason: Malformed, file: Int, offset: UInt64) {
        self.malformed += 1
        if self.malformedExamples.count < self.options.maxExamples {
            self.malformedExamples.append(
                VerifyReport.Location(file: self.files[file], offset: offset, detail: reason.describe(expectedSize: self.options.recordSize))
            )
        }
    }

    private static func regularFiles(in directory: String) throws(BenchError) -> [String] {
        guard let handle = opendir(directory) else {
            throw BenchError.system("cannot list directory '\(directory)'", errno: errno, fix: "check the path and its permissions")
        }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            var info = stat()
            if stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG {
                names.append(path)
            }
        }
        return names.sorted()
    }
}
