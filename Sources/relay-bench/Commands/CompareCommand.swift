import ArgumentParser

/// Options shared by `compare` and `sweep` for the non-swept parts of the measurement.
struct MeasurementOptions: ParsableArguments {
    /// Where the bytes go.
    @Option(name: .customLong("sink"), help: ArgumentHelp("Destination of every variant: null, file:PATH (variant V writes PATH.V), loopback (in-process TCP receiver on 127.0.0.1), tcp:HOST:PORT or unix:PATH.", valueName: "spec"))
    var sink: String = "null"

    /// Measured repeats.
    @Option(name: .customLong("repeat"), help: ArgumentHelp("Measured runs per variant; the table shows medians.", valueName: "n"))
    var repeats: Int = 3

    /// Warm-up rounds.
    @Option(help: ArgumentHelp("Unmeasured rounds of every variant before measuring.", valueName: "n"))
    var warmup: Int = 1

    /// Variant selection.
    @Option(help: ArgumentHelp("Variants to run, comma-separated: relay,naive,mutex,uring,raw,memcpy (default: all; without raw for --sink null, where write(2) to /dev/null moves no data).", valueName: "list"))
    var variants: String?

    /// Keep output files.
    @Flag(help: "Keep each file variant's output (of its last run) instead of removing it.")
    var keep = false

    /// JSON output.
    @Flag(help: "Print the result as one JSON object.")
    var json = false

    /// Creates the options with their defaults.
    init() {}

    /// The parsed destination.
    func target() throws(BenchError) -> CompareTarget {
        try CompareTarget.parse(self.sink)
    }

    /// The parsed variant list; by default every variant that means something for `target`.
    func variantList(for target: CompareTarget) throws(BenchError) -> [CompareVariant] {
        guard let variants = self.variants else { return CompareVariant.defaults(for: target) }
        return try CompareVariant.parseList(variants)
    }
}

/// `relay-bench compare`: the same workload through swift-relay and the baselines, in one
/// invocation, interleaved, with medians and ratios to swift-relay.
struct CompareCommand: ParsableCommand {
    /// The subcommand's name, abstract and discussion.
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Run one workload through swift-relay and baselines; print each result and its ratio to swift-relay.",
        discussion: """
            Variants: relay (swift-relay, block mode), naive (one pwrite/send per record), mutex \
            (a mutex-protected 64 KiB buffer flushed with write/send), uring (per-producer 1 MiB \
            blocks written by one io_uring thread, QD 8, no registered buffers), raw (the same bytes \
            in 1 MiB write/send calls from one preformatted buffer: the I/O limit), memcpy (the same \
            bytes copied in memory: the memory limit).

            Method: --warmup rounds first, then --repeat rounds; each round runs every variant once, \
            in a balanced order (a Williams design: over a cycle of rounds each variant runs first \
            equally often and right after every other variant equally often); the table shows the \
            median per variant and the range of its runs. File variants write their own file, created empty with its \
            blocks reserved before the clock starts and removed after each run unless --keep. \
            swift-relay's producers time no records here (run does, about one in 64): the baselines \
            time none either.
            """
    )

    /// Producers.
    @Option(help: "Producer threads.")
    var producers: Int = 2

    /// Records.
    @Option(help: ArgumentHelp("Total records per variant (k/M/G are powers of ten).", valueName: "n"))
    var records = CountArgument(4_000_000)

    /// Record size.
    @Option(help: ArgumentHelp("Record size in bytes, newline included; at least 32.", valueName: "bytes"))
    var recordSize: Int = 128

    /// Sub-buffer size.
    @Option(help: ArgumentHelp("swift-relay's sub-buffer size.", valueName: "bytes"))
    var subbufSize = ByteCountArgument(1 << 20)

    /// Sub-buffers.
    @Option(help: ArgumentHelp("swift-relay's sub-buffers per buffer.", valueName: "n"))
    var subbufs: Int = 8

    /// Verify.
    @Flag(help: "Verify each verifiable variant's file output once (not timed).")
    var verify = false

    /// Registered buffers off.
    @Flag(help: "Ship swift-relay without registering its regions as io_uring fixed buffers (no WRITE_FIXED, no SEND_ZC from registered memory).")
    var unregistered = false

    /// swift-relay's write API.
    @Option(help: "How swift-relay's producers write: reserve (format in place, commit), write (copy in) or exclusive (a buffer per producer, formatted in place).")
    var api: WriteAPI = .reserve

    /// Shared measurement options.
    @OptionGroup var measurement: MeasurementOptions

    /// Creates the command with its defaults.
    init() {}

    /// The validated settings these options describe (the target is parsed, not contacted).
    func makeSettings() throws(BenchError) -> CompareSettings {
        let target = try self.measurement.target()
        var settings = CompareSettings(
            workload: CompareBaselines.Workload(producers: self.producers, records: self.records.value, recordSize: self.recordSize),
            subbufferSize: self.subbufSize.value,
            subbufferCount: self.subbufs,
            target: target,
            variants: try self.measurement.variantList(for: target),
            repeats: self.measurement.repeats,
            warmups: self.measurement.warmup,
            keep: self.measurement.keep,
            verify: self.verify,
            api: self.api
        )
        settings.registerBuffers = !self.unregistered
        try settings.validate()
        if self.verify && !settings.target.isFile {
            throw BenchError("--verify checks output files: use --sink file:PATH")
        }
        return settings
    }

    /// Runs the comparison and prints the table.
    func run() throws {
        let outcome = try BenchError.exitOnError { () throws(BenchError) -> CompareOutcome in
            let settings = try self.makeSettings()
            let chatty = !self.measurement.json
            return try CompareSession.run(settings) { line in
                if chatty { BenchError.printToStandardError(line) }
            }
        }
        print(self.measurement.json ? BenchJSON.encode(outcome.table) : outcome.table.render())
        if outcome.verification.values.contains(where: { !$0.ok }) {
            for (name, report) in outcome.verification.sorted(by: { $0.key < $1.key }) where !report.ok {
                BenchError.printToStandardError("relay-bench: verify of \(name) failed: " + report.problems.joined(separator: "; "))
            }
            throw ExitCode(1)
        }
    }
}
