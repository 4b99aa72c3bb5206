import Foundation

@testable import relay_bench

/// A temporary directory removed when the value is released.
final class BenchTestDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "relay-bench-test-XXXXXX").utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let created else { throw CocoaError(.fileWriteUnknown) }
        self.path = String(cString: created)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.path)
    }

    /// A path inside the directory.
    func file(_ name: String) -> String { self.path + "/" + name }

    /// Writes `bytes` to `name` and returns its path.
    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = self.file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Writes `text` to `name` and returns its path.
    @discardableResult
    func write(_ name: String, text: String) throws -> String {
        try self.write(name, Array(text.utf8))
    }
}

/// Builds record files with a ``RecordFormatter``.
struct RecordFileBuilder {
    let formatter: RecordFormatter
    var bytes: [UInt8] = []

    init(size: Int) throws {
        self.formatter = try RecordFormatter(size: size)
    }

    /// Appends record (producer, sequence).
    mutating func add(_ producer: Int, _ sequence: UInt64) {
        self.bytes += self.formatter.record(producer: producer, sequence: sequence)
    }

    /// Appends raw text (for malformed lines).
    mutating func raw(_ text: String) {
        self.bytes += Array(text.utf8)
    }

    /// Appends every record of `total` records over `producers`, interleaved round-robin.
    mutating func addWorkload(total: UInt64, producers: Int, skipping: Set<[UInt64]> = []) {
        let counts = (0..<producers).map { RecordSplit.count(forProducer: $0, total: total, producers: producers) }
        let longest = counts.max() ?? 0
        for sequence in 0..<longest {
            for producer in 0..<producers where sequence < counts[producer] {
                if skipping.contains([UInt64(producer), sequence]) { continue }
                self.add(producer, sequence)
            }
        }
    }
}
