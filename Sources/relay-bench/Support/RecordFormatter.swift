import Glibc

/// Renders relay-bench records into caller-provided memory without allocating.
///
/// ## Record format
///
/// Every record is one line of exactly `--record-size` bytes:
///
///     <producer> <sequence> <filler>\n
///
/// - `producer`: the producer id in decimal ASCII (no sign, no leading zeros); `--producers N` uses
///   ids `0..<N`, at most ``RecordFormatter/maxProducers`` producers.
/// - `sequence`: the record's number within its producer in decimal ASCII (no sign, no leading
///   zeros), counting from 0, at most ``RecordFormatter/maxSequence``.
/// - one space (0x20) after each number.
/// - `filler`: lowercase letters that pad the line to the record size; the letter at filler
///   position `i` (from 0) is `"a" + (producer + sequence + i) mod 26`. The pattern depends on the
///   record's own numbers, so a flipped, shifted, truncated or spliced record is detected.
/// - a newline (0x0A) as the last byte.
///
/// The smallest record size is 32 bytes, which leaves at least 11 filler letters even for the
/// largest producer id and sequence. Examples at 32 bytes:
///
///     0 0 abcdefghijklmnopqrstuvwxyza
///     3 17 uvwxyzabcdefghijklmnopqrst
///
/// Records of `--records N` are split over `P` producers as ``RecordSplit`` describes.
struct RecordFormatter: Sendable {
    /// The smallest supported record size in bytes.
    static let minimumSize = 32

    /// The largest supported record size in bytes (1 MiB).
    static let maximumSize = 1 << 20

    /// The largest number of producers; producer ids are `0..<maxProducers`.
    static let maxProducers = 65_536

    /// The largest sequence number a record may carry (13 decimal digits).
    static let maxSequence: UInt64 = 9_999_999_999_999

    /// The record size in bytes, newline included.
    let size: Int

    /// Repeating `abc…z` letters, `size + 26` long, so any rotation's filler is one contiguous copy.
    private let pattern: [UInt8]

    /// Creates a formatter for records of `size` bytes.
    ///
    /// - Parameter size: The record size in bytes, newline included.
    /// - Throws: ``BenchError`` when `size` is outside
    ///   ``minimumSize``...``maximumSize``.
    init(size: Int) throws(BenchError) {
        guard size >= RecordFormatter.minimumSize else {
            throw BenchError("record size \(size) is too small: use --record-size \(RecordFormatter.minimumSize) or more")
        }
        guard size <= RecordFormatter.maximumSize else {
            throw BenchError("record size \(size) is too large: use --record-size \(RecordFormatter.maximumSize) (1 MiB) or less")
        }
        self.size = size
        self.pattern = RecordFormatter.makePattern(length: size + 26)
    }

    /// Checks that a workload's largest producer id and sequence number fit the format.
    ///
    /// - Parameters:
    ///   - producers: The number of producers.
    ///   - recordsPerProducer: The most records any one producer will write.
    /// - Throws: ``BenchError`` naming the limit that is exceeded.
    static func validate(producers: Int, recordsPerProducer: UInt64) throws(BenchError) {
        guard producers >= 1 else {
            throw BenchError("producer count \(producers) is invalid: use --producers 1 or more")
        }
        guard producers <= RecordFormatter.maxProducers else {
            throw BenchError("producer count \(producers) exceeds the record format's limit: use --producers \(RecordFormatter.maxProducers) or fewer")
        }
        guard recordsPerProducer <= RecordFormatter.maxSequence + 1 else {
            throw BenchError("\(recordsPerProducer) records per producer exceed the record format's limit of \(RecordFormatter.maxSequence + 1): lower --records or --seconds, or add producers")
        }
    }

    /// Writes record (`producer`, `sequence`) into `buffer`, which must be exactly ``size`` bytes.
    ///
    /// No allocation, no `String`: digits are rendered in place and the filler is one `memcpy`.
    ///
    /// - Parameters:
    ///   - producer: The producer id, `0..<maxProducers`.
    ///   - sequence: The sequence number, `0...maxSequence`.
    ///   - buffer: Exactly ``size`` writable bytes.
    @inline(__always)
    func write(producer: Int, sequence: UInt64, into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count == self.size, "record buffer must be exactly the record size")
        self.write(producer: producer, sequence: sequence, to: buffer.baseAddress!)
    }

    /// Writes record (`producer`, `sequence`) to `base`, which must have ``size`` writable bytes.
    ///
    /// - Warning: `base` must point to at least ``size`` writable bytes; nothing checks it.
    @inline(__always)
    func write(producer: Int, sequence: UInt64, to base: UnsafeMutableRawPointer) {
        precondition(producer >= 0 && producer < RecordFormatter.maxProducers, "producer id out of range")
        precondition(sequence <= RecordFormatter.maxSequence, "sequence out of range")
        var position = RecordFormatter.renderDecimal(UInt64(truncatingIfNeeded: producer), to: base)
        base.storeBytes(of: UInt8(ascii: " "), toByteOffset: position, as: UInt8.self)
        position += 1
        position += RecordFormatter.renderDecimal(sequence, to: base + position)
        base.storeBytes(of: UInt8(ascii: " "), toByteOffset: position, as: UInt8.self)
        position += 1
        let fillerLength = self.size - 1 - position
        let rotation = RecordFormatter.fillerRotation(producer: UInt64(truncatingIfNeeded: producer), sequence: sequence)
        self.pattern.withUnsafeBytes { letters in
            _ = memcpy(base + position, letters.baseAddress! + rotation, fillerLength)
        }
        base.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: self.size - 1, as: UInt8.self)
    }

    /// Returns record (`producer`, `sequence`) as bytes; convenient for tests, allocates.
    func record(producer: Int, sequence: UInt64) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: self.size) { buffer, count in
            self.write(producer: producer, sequence: sequence, into: UnsafeMutableRawBufferPointer(buffer))
            count = self.size
        }
    }

    /// The index of the first filler letter in the `abc…z` cycle: `(producer + sequence) mod 26`.
    @inline(__always)
    static func fillerRotation(producer: UInt64, sequence: UInt64) -> Int {
        Int((producer % 26 + sequence % 26) % 26)
    }

    /// Repeating lowercase letters `abc…zabc…` of `length` bytes.
    static func makePattern(length: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
            RecordFormatter.fillPattern(UnsafeMutableRawPointer(buffer.baseAddress!), length: length)
            count = length
        }
    }

    /// Fills `length` bytes at `base` with repeating `abc…z`, doubling with `memcpy`.
    static func fillPattern(_ base: UnsafeMutableRawPointer, length: Int) {
        let first = min(26, length)
        for index in 0..<first {
            base.storeBytes(of: UInt8(ascii: "a") + UInt8(index), toByteOffset: index, as: UInt8.self)
        }
        // Copying whole multiples of 26 keeps the cycle aligned.
        var filled = first
        while filled < length {
            let chunk = min(filled, length - filled)
            memcpy(base + filled, base, chunk)
            filled += chunk
        }
    }

    /// The number of decimal digits of `value`.
    @inline(__always)
    static func decimalDigits(_ value: UInt64) -> Int {
        var digits = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        return digits
    }

    /// Renders `value` as decimal ASCII at `base`.
    ///
    /// - Returns: The number of bytes written.
    @inline(__always)
    static func renderDecimal(_ value: UInt64, to base: UnsafeMutableRawPointer) -> Int {
        let digits = RecordFormatter.decimalDigits(value)
        var rest = value
        var index = digits - 1
        while index >= 0 {
            let (quotient, remainder) = rest.quotientAndRemainder(dividingBy: 10)
            base.storeBytes(of: UInt8(ascii: "0") + UInt8(truncatingIfNeeded: remainder), toByteOffset: index, as: UInt8.self)
            rest = quotient
            index -= 1
        }
        return digits
    }
}

/// How `--records N` is split over `P` producers, shared by `run`, the baselines and `verify`.
///
/// Producer `p` writes `N / P` records, plus one more if `p < N % P`, with sequences `0..<count`.
enum RecordSplit {
    /// The number of records producer `producer` writes out of `total` over `producers` producers.
    static func count(forProducer producer: Int, total: UInt64, producers: Int) -> UInt64 {
        precondition(producers > 0 && producer >= 0 && producer < producers)
        let (share, extra) = total.quotientAndRemainder(dividingBy: UInt64(producers))
        return share + (UInt64(producer) < extra ? 1 : 0)
    }
}

/// Renders one producer's records in sequence order, incrementally: the same bytes as
/// ``RecordFormatter/write(producer:sequence:to:)`` without its divisions.
///
/// The line's head, `"<producer> <sequence> "`, is kept rendered and its decimal sequence is
/// incremented in place (amortized one digit per record); the filler rotation advances by one.
/// A record then costs one 32-byte move of the head, the filler `memcpy` and the newline,
/// where rendering both numbers from scratch took about as long as the channel write itself
/// (`perf` of `relay-bench run`). Producers write sequences 0, 1, 2, … without gaps (a
/// dropped record's sequence is not reused), so every producer loop can use one.
///
/// `~Copyable`: it owns its head and pattern memory. Its methods are non-mutating and update
/// that memory through pointers, so a cursor held in a borrowed writer can advance; one
/// thread at a time.
struct RecordCursor: ~Copyable {
    /// The record size in bytes.
    let size: Int
    /// Bytes `0..<headCapacity`: the head; then `size + 26` bytes of repeating `abc…z`.
    private let storage: UnsafeMutableRawPointer
    /// `[0]` head length, `[1]` index of the sequence's first digit, `[2]` sequence,
    /// `[3]` filler rotation (`(producer + sequence) mod 26`).
    private let state: UnsafeMutablePointer<UInt64>

    /// Room for the longest head: a 5-digit producer, a 13-digit sequence, two spaces (20
    /// bytes), rounded up to the 32 bytes ``next(to:)`` moves at once.
    private static let headCapacity = 32

    /// Starts at record (`producer`, `sequence`).
    ///
    /// - Precondition: `producer` and `sequence` are within the format's limits and
    ///   `size` is a valid record size (``RecordFormatter/init(size:)`` checks it).
    init(formatter: RecordFormatter, producer: Int, sequence: UInt64 = 0) {
        precondition(producer >= 0 && producer < RecordFormatter.maxProducers, "producer id out of range")
        precondition(sequence <= RecordFormatter.maxSequence, "sequence out of range")
        self.size = formatter.size
        self.storage = .allocate(byteCount: Self.headCapacity + formatter.size + 26, alignment: 64)
        self.storage.initializeMemory(as: UInt8.self, repeating: UInt8(ascii: " "), count: Self.headCapacity)
        RecordFormatter.fillPattern(self.storage + Self.headCapacity, length: formatter.size + 26)
        self.state = .allocate(capacity: 4)
        var length = RecordFormatter.renderDecimal(UInt64(producer), to: self.storage)
        length += 1
        let digitsStart = length
        length += RecordFormatter.renderDecimal(sequence, to: self.storage + length)
        length += 1
        self.state[0] = UInt64(length)
        self.state[1] = UInt64(digitsStart)
        self.state[2] = sequence
        self.state[3] = UInt64(RecordFormatter.fillerRotation(producer: UInt64(producer), sequence: sequence))
    }

    deinit {
        self.storage.deallocate()
        self.state.deallocate()
    }

    /// The sequence of the record ``next(to:)`` writes next.
    var sequence: UInt64 { self.state[2] }

    /// Writes the current record to `base` (``size`` writable bytes) and moves to the next
    /// sequence.
    ///
    /// - Warning: `base` must point to at least ``size`` writable bytes; nothing checks it.
    @inline(__always)
    func next(to base: UnsafeMutableRawPointer) {
        let head = Int(truncatingIfNeeded: self.state[0])
        let rotation = Int(truncatingIfNeeded: self.state[3])
        // 32 bytes at once (records are at least 32 long); the filler overwrites what lies
        // past the head.
        typealias Block = SIMD16<UInt8>
        base.storeBytes(of: self.storage.loadUnaligned(as: Block.self), as: Block.self)
        base.storeBytes(of: self.storage.loadUnaligned(fromByteOffset: 16, as: Block.self), toByteOffset: 16, as: Block.self)
        memcpy(base + head, self.storage + Self.headCapacity + rotation, self.size - 1 - head)
        base.storeBytes(of: UInt8(ascii: "\n"), toByteOffset: self.size - 1, as: UInt8.self)
        self.state[3] = rotation == 25 ? 0 : UInt64(rotation + 1)
        self.state[2] &+= 1
        self.increment(head: head)
    }

    /// Moves to the next sequence without writing (a reservation that failed: its sequence
    /// is not reused).
    func skip() {
        let rotation = self.state[3]
        self.state[3] = rotation == 25 ? 0 : rotation + 1
        self.state[2] &+= 1
        self.increment(head: Int(truncatingIfNeeded: self.state[0]))
    }

    /// Adds one to the rendered sequence, growing it by a digit after a run of nines.
    @inline(__always)
    private func increment(head: Int) {
        var index = head - 2  // the last digit (a space follows it)
        let first = Int(truncatingIfNeeded: self.state[1])
        while index >= first {
            let digit = self.storage.load(fromByteOffset: index, as: UInt8.self)
            if digit != UInt8(ascii: "9") {
                self.storage.storeBytes(of: digit + 1, toByteOffset: index, as: UInt8.self)
                return
            }
            self.storage.storeBytes(of: UInt8(ascii: "0"), toByteOffset: index, as: UInt8.self)
            index -= 1
        }
        // All nines: "1" followed by zeros, one digit longer (never past maxSequence's 13
        // digits while producers stay within the format's limits).
        guard head < Self.headCapacity else { return }
        self.storage.storeBytes(of: UInt8(ascii: "1"), toByteOffset: first, as: UInt8.self)
        self.storage.storeBytes(of: UInt8(ascii: "0"), toByteOffset: head - 1, as: UInt8.self)
        self.storage.storeBytes(of: UInt8(ascii: " "), toByteOffset: head, as: UInt8.self)
        self.state[0] = UInt64(head + 1)
    }
}
