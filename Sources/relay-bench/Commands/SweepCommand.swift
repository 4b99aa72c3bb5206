import ArgumentParser

/// The parameter a sweep varies.
enum SweepParameter: String, Codable, Sendable, Equatable {
    case recordSize = "record_size"
    case producers
    case subbufSize = "subbuf_size"

    /// The axis title, with its unit.
    var axisLabel: String {
        switch self {
        case .recordSize: return "record size (bytes)"
        case .producers: return "producers"
        case .subbufSize: return "sub-buffer size (bytes)"
        }
    }

    /// The column title of the table.
    var columnTitle: String {
        switch self {
        case .recordSize: return "record size"
        case .producers: return "producers"
        case .subbufSize: return "sub-buffer"
        }
    }
}

/// What a sweep plots and tabulates.
enum SweepMetric: String, CaseIterable, Codable, Sendable, ExpressibleByArgument {
    /// Records per second.
    case records
    /// Bytes per second.
    case bytes
}

/// The result of a sweep: one comparison per parameter value.
struct SweepResult: Codable, Sendable {
    /// The swept parameter.
    var parameter: SweepParameter
    /// Its values, in the order run.
    var values: [Int]
    /// The metric of the table and plot.
    var metric: SweepMetric
    /// One comparison (medians, ratios) per value.
    var points: [ComparisonTable]

    /// A table: one row per value, one column per variant, the metric's median and, for the
    /// baselines, the ratio to swift-relay.
    func render() -> String {
        var names: [String] = []
        for point in self.points {
            for row in point.rows where !names.contains(row.variant) { names.append(row.variant) }
        }
        var cells: [[String]] = [[self.parameter.columnTitle] + names]
        for (value, point) in zip(self.values, self.points) {
            var line = [self.parameter == .producers ? "\(value)" : SizeParser.formatSize(UInt64(value))]
            for name in names {
                guard let row = point.rows.first(where: { $0.variant == name }) else {
                    line.append("-")
                    continue
                }
                var cell = self.metric == .records ? BenchUnits.recordRate(row.recordsPerSecond) : BenchUnits.byteRate(row.bytesPerSecond)
                if name != ComparisonTable.referenceVariant, let ratio = row.ratio {
                    cell += " (\(BenchUnits.fixed(ratio, 2))x)"
                }
                line.append(cell)
            }
            cells.append(line)
        }
        var widths = [Int](repeating: 0, count: cells[0].count)
        for line in cells {
            for (index, cell) in line.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        let lines = cells.map { line in
            line.enumerated().map { index, cell in index == 0 ? BenchUnits.pad(cell, to: widths[index]) : BenchUnits.padLeft(cell, to: widths[index]) }
                .joined(separator: "  ")
        }
        let first = self.points.first
        var title = "sweep of \(self.parameter.columnTitle)"
        if let first {
            title += " → \(first.destination)"
            if let repeats = first.repeats, repeats > 1 { title += " (median of \(repeats) runs; ratio to swift-relay)" }
        }
        return ([title, lines[0], String(repeating: "-", count: lines[0].count)] + lines.dropFirst()).joined(separator: "\n")
    }

    /// The chart: throughput against the parameter, one line per variant.
    func plot() -> SVGPlot {
        var names: [String] = []
        for point in self.points {
            for row in point.rows where !names.contains(row.variant) { names.append(row.variant) }
        }
        let series = names.map { name in
            SVGPlot.Series(
                name: name,
                points: zip(self.values, self.points).compactMap { value, point in
                    point.rows.first { $0.variant == name }.map { row in
                        SVGPlot.Point(x: Double(value), y: self.metric == .records ? row.recordsPerSecond : row.bytesPerSecond)
                    }
                }
            )
        }
        let destination = self.points.first?.destination ?? ""
        return SVGPlot(
            title: "relay-bench sweep: throughput by \(self.parameter.columnTitle) → \(destination)",
            xLabel: self.parameter.axisLabel,
            yLabel: self.metric == .records ? "throughput (records/s)" : "throughput (bytes/s)",
            xScale: self.parameter == .producers ? .linear : .log2,
            xFormat: self.parameter == .producers ? .compact : .bytes,
            yFormat: .compact,
            series: series
        )
    }
}

/// `relay-bench sweep`: `compare` at several values of one parameter, as a table and a chart.
struct SweepCommand: ParsableCommand {
    /// The subcommand's name, abstract and discussion.
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Run 'compare' over the values of one parameter; print a table and optionally plot it.",
        discussion: """
            Give a comma-separated list to exactly one of --record-size, --producers or --subbuf-size, \
            e.g. --record-size 32,64,256,1024,4096 or --producers 1,2,4. Each value runs every variant \
            (--repeat times, medians) on --records records, or on --bytes bytes when --records is not \
            given (so large records do not take forever). Warm-up rounds run before the first value only.
            """
    )

    /// Record sizes.
    @Option(help: ArgumentHelp("Record size(s) in bytes, at least 32.", valueName: "list"))
    var recordSize = CommaList<Int>([128])

    /// Producer counts.
    @Option(help: ArgumentHelp("Producer count(s).", valueName: "list"))
    var producers = CommaList<Int>([2])

    /// Sub-buffer sizes.
    @Option(help: ArgumentHelp("swift-relay sub-buffer size(s).", valueName: "list"))
    var subbufSize = CommaList<ByteCountArgument>([ByteCountArgument(1 << 20)])

    /// Sub-buffers.
    @Option(help: ArgumentHelp("swift-relay's sub-buffers per buffer.", valueName: "n"))
    var subbufs: Int = 8

    /// Records per point.
    @Option(help: ArgumentHelp("Records per run (k/M/G are powers of ten); overrides --bytes.", valueName: "n"))
    var records: CountArgument?

    /// Bytes per point.
    @Option(help: ArgumentHelp("Bytes per run when --records is not given: records = bytes / record size.", valueName: "size"))
    var bytes = ByteCountArgument(256 << 20)

    /// Metric.
    @Option(help: "Plot and tabulate records/s or bytes/s (default: bytes for a record-size sweep, records otherwise).")
    var metric: SweepMetric?

    /// SVG output.
    @Option(help: ArgumentHelp("Write an SVG chart of throughput against the parameter, one line per variant.", valueName: "file.svg"))
    var plot: String?

    /// Shared measurement options.
    @OptionGroup var measurement: MeasurementOptions

    /// Creates the command with its defaults.
    init() {}

    /// The swept parameter, its values, and one settings value per point.
    func makePlan() throws(BenchError) -> (SweepParameter, [Int], [CompareSettings]) {
        let lists: [(SweepParameter, [Int])] = [
            (.recordSize, self.recordSize.values),
            (.producers, self.producers.values),
            (.subbufSize, self.subbufSize.values.map(\.value)),
        ]
        let swept = lists.filter { $0.1.count > 1 }
        guard swept.count == 1, let (parameter, values) = swept.first else {
            if swept.isEmpty {
                throw BenchError("nothing to sweep: give a comma-separated list to one of --record-size, --producers or --subbuf-size, e.g. --record-size 64,256,1024")
            }
            throw BenchError("more than one parameter has several values (\(swept.map(\.0.columnTitle).joined(separator: ", "))): sweep one at a time")
        }
        guard Set(values).count == values.count else {
            throw BenchError("the values of the \(parameter.columnTitle) sweep repeat: list each value once")
        }
        let target = try self.measurement.target()
        let variants = try self.measurement.variantList(for: target)
        var plans: [CompareSettings] = []
        for (index, value) in values.enumerated() {
            let recordSize = parameter == .recordSize ? value : self.recordSize.values[0]
            let producers = parameter == .producers ? value : self.producers.values[0]
            let subbufSize = parameter == .subbufSize ? value : self.subbufSize.values[0].value
            guard recordSize >= 1 else {
                throw BenchError("record size \(recordSize) is too small: use --record-size \(RecordFormatter.minimumSize) or more")
            }
            let records = self.records?.value ?? UInt64(max(1, self.bytes.value / recordSize))
            let settings = CompareSettings(
                workload: CompareBaselines.Workload(producers: producers, records: records, recordSize: recordSize),
                subbufferSize: subbufSize,
                subbufferCount: self.subbufs,
                target: target,
                variants: variants,
                repeats: self.measurement.repeats,
                warmups: index == 0 ? self.measurement.warmup : 0,
                keep: self.measurement.keep
            )
            try settings.validate()
            plans.append(settings)
        }
        if let plot = self.plot {
            guard plot.hasSuffix(".svg") else {
                throw BenchError("plot file '\(plot)' does not end in .svg: name it e.g. --plot sweep.svg")
            }
            try Preflight.checkWritableFile(plot, direct: false)
        }
        return (parameter, values, plans)
    }

    /// Runs the sweep, prints the table and writes the plot.
    func run() throws {
        let result = try BenchError.exitOnError { () throws(BenchError) -> SweepResult in
            let (parameter, values, plans) = try self.makePlan()
            let chatty = !self.measurement.json
            var points: [ComparisonTable] = []
            for (value, settings) in zip(values, plans) {
                if chatty { BenchError.printToStandardError("== \(parameter.columnTitle) \(parameter == .producers ? "\(value)" : SizeParser.formatSize(UInt64(value)))") }
                let outcome = try CompareSession.run(settings) { line in
                    if chatty { BenchError.printToStandardError(line) }
                }
                points.append(outcome.table)
            }
            let metric = self.metric ?? (parameter == .recordSize ? .bytes : .records)
            let result = SweepResult(parameter: parameter, values: values, metric: metric, points: points)
            if let plot = self.plot {
                try result.plot().write(to: plot)
            }
            return result
        }
        print(self.measurement.json ? BenchJSON.encode(result) : result.render())
    }
}
