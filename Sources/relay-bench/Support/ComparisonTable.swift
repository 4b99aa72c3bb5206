/// The `relay-bench compare` output: one row per variant (baselines and swift-relay) running the
/// same workload, with throughput relative to swift-relay.
///
/// `ratio` is the variant's records/s divided by swift-relay's, so swift-relay is `1.00x`, a
/// slower baseline is below 1 and a faster limit (raw write, memcpy) above 1.
struct ComparisonTable: Codable, Sendable, Equatable {
    /// One variant's measurement.
    struct Row: Codable, Sendable, Equatable {
        var variant: String
        var records: UInt64
        var bytes: UInt64
        var elapsedSeconds: Double
        var recordsPerSecond: Double
        var bytesPerSecond: Double
        var cpuSeconds: Double
        /// records/s relative to the reference variant; `nil` when the reference is absent or zero.
        var ratio: Double?
        /// Free text, e.g. "output verified" or "not verifiable (repeated buffer)".
        var note: String?
        /// records/s of every measured repeat, in run order, when the row is a median of several.
        var samples: [Double]?

        enum CodingKeys: String, CodingKey {
            case variant, records, bytes
            case elapsedSeconds = "elapsed_seconds"
            case recordsPerSecond = "records_per_second"
            case bytesPerSecond = "bytes_per_second"
            case cpuSeconds = "cpu_seconds"
            case ratio, note
            case samples = "samples_records_per_second"
        }
    }

    /// The name of the reference variant.
    static let referenceVariant = "swift-relay"

    /// Producer threads of the workload.
    var producers: Int
    /// Record size in bytes.
    var recordSize: Int
    /// Records per variant.
    var records: UInt64
    /// Where the bytes went.
    var destination: String
    /// One row per variant, in display order.
    var rows: [Row]
    /// Measured repeats per variant when each row is a median (`compare --repeat N`).
    var repeats: Int?

    enum CodingKeys: String, CodingKey {
        case producers
        case recordSize = "record_size"
        case records, destination, rows, repeats
    }

    /// Builds the table and fills in each row's ratio against ``referenceVariant``.
    ///
    /// - Parameters:
    ///   - producers: Producer threads of the workload.
    ///   - recordSize: Record size in bytes.
    ///   - records: Records per variant.
    ///   - destination: Where the bytes went, e.g. `file:/tmp/x` or `tcp:127.0.0.1:9000`.
    ///   - results: The measurements, in display order.
    init(producers: Int, recordSize: Int, records: UInt64, destination: String, results: [BaselineResult]) {
        self.producers = producers
        self.recordSize = recordSize
        self.records = records
        self.destination = destination
        let reference = results.first { $0.name == ComparisonTable.referenceVariant }?.recordsPerSecond
        self.rows = results.map { result in
            Row(
                variant: result.name,
                records: result.records,
                bytes: result.bytes,
                elapsedSeconds: result.elapsedSeconds,
                recordsPerSecond: result.recordsPerSecond,
                bytesPerSecond: result.bytesPerSecond,
                cpuSeconds: result.cpuSeconds,
                ratio: reference.flatMap { $0 > 0 ? result.recordsPerSecond / $0 : nil },
                note: result.note
            )
        }
    }

    /// The table as aligned text columns: variant, records/s, bytes/s, cpu s, ratio, note; with
    /// repeats, a `min-max` column of the repeats' records/s (in millions) follows the ratio.
    func render() -> String {
        let showRange = self.rows.contains { ($0.samples?.count ?? 0) > 1 }
        var header = ["variant", "records/s", "bytes/s", "cpu s", "vs swift-relay"]
        if showRange { header.append("range M rec/s") }
        header.append("note")
        var cells: [[String]] = [header]
        for row in self.rows {
            var line = [
                row.variant,
                BenchUnits.recordRate(row.recordsPerSecond),
                BenchUnits.byteRate(row.bytesPerSecond),
                BenchUnits.fixed(row.cpuSeconds, 3),
                row.ratio.map { "\(BenchUnits.fixed($0, 2))x" } ?? "-",
            ]
            if showRange {
                if let samples = row.samples, let low = samples.min(), let high = samples.max() {
                    line.append("\(ComparisonTable.millions(low))-\(ComparisonTable.millions(high))")
                } else {
                    line.append("-")
                }
            }
            line.append(row.note ?? "")
            cells.append(line)
        }
        var widths = [Int](repeating: 0, count: header.count)
        for line in cells {
            for (index, cell) in line.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        // `records` is the total of every producer (split as `RecordSplit` does), not each one's.
        var title = "\(self.records) records of \(self.recordSize) B from \(self.producers) producers → \(self.destination)"
        if let repeats = self.repeats, repeats > 1 {
            title += " (median of \(repeats) runs)"
        }
        let lines = cells.map { line in
            line.enumerated().map { index, cell in
                // The variant and note columns read left-aligned, numbers right-aligned.
                index == 0 || index == header.count - 1 ? BenchUnits.pad(cell, to: widths[index]) : BenchUnits.padLeft(cell, to: widths[index])
            }
            .joined(separator: "  ")
        }
        var output = [title] + lines
        output.insert(String(repeating: "-", count: lines[0].count), at: 2)
        output = output.map { line in
            var trimmed = Substring(line)
            while trimmed.hasSuffix(" ") { trimmed = trimmed.dropLast() }
            return String(trimmed)
        }
        return output.joined(separator: "\n")
    }

    /// Records/s in millions with two significant decimals, e.g. `4.53`, `0.82`, `12.1`.
    static func millions(_ perSecond: Double) -> String {
        let value = perSecond / 1e6
        return BenchUnits.fixed(value, value >= 10 ? 1 : 2)
    }
}
