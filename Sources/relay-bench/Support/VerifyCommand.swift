import ArgumentParser

/// `relay-bench verify FILE...`: checks that output files hold every record exactly once, intact
/// and in per-producer order (see ``RecordVerifier`` for the rules, ``RecordFormatter`` for the format).
///
/// Exit codes: 0 when every expectation holds, 1 when verification finds a problem, 2 for bad
/// input (unreadable file, invalid option), with a one-line message on standard error.
struct VerifyCommand: ParsableCommand {
    /// The subcommand's name, abstract and discussion.
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check relay-bench output for lost, duplicated, corrupted or reordered records.",
        discussion: """
            Each record is one line of exactly --record-size bytes: '<producer> <sequence> <filler>\\n', \
            decimal numbers from 0, filler letter i = 'a' + (producer + sequence + i) mod 26. \
            --expect-records N is the total offered across producers: producer p must hold sequences \
            0..<(N/P + (p < N%P ? 1 : 0)). Exit status: 0 all expectations hold, 1 verification failed, \
            2 bad input.
            """
    )

    /// Files written by relay-bench sinks; a directory stands for its regular files.
    @Argument(help: ArgumentHelp("Files (or directories of files, e.g. from file-per-buffer:DIR) to check.", valueName: "file"))
    var files: [String]

    /// Exact record size in bytes; any length is accepted (format still checked) when absent.
    @Option(help: "Require every line to be exactly this many bytes, newline included (default: any length).")
    var recordSize: Int?

    /// Expected producer count.
    @Option(help: "Producer ids must be 0..<N (without --expect-records, each must have written a record).")
    var expectProducers: Int?

    /// Expected total record count across producers.
    @Option(help: ArgumentHelp(
        "Total records offered across all producers, split as 'run' does (N/P, +1 for p < N%P); k/M/G suffixes are powers of ten, as for 'run --records'.",
        valueName: "n"))
    var expectRecords: CountArgument?

    /// Whether gaps are acceptable.
    @Flag(help: "Accept missing records (drop/overwrite modes); they are still counted and reported.")
    var allowGaps = false

    /// The exact number of records that must be missing.
    @Option(help: ArgumentHelp(
        "Require exactly N missing records (the dropped count of a drop-mode run); implies --allow-gaps. k/M/G suffixes as for --expect-records.",
        valueName: "n"))
    var expectMissing: CountArgument?

    /// Whether order violations are acceptable.
    @Flag(help: "Count but accept records whose sequence goes backwards within a file: a per-channel file interleaves per-CPU buffers, so a producer that migrated between CPUs can appear out of order.")
    var allowReorder = false

    /// How many examples of each problem to list.
    @Option(help: "How many example locations and missing ranges to list per kind of problem.")
    var maxExamples: Int = 5

    /// JSON output.
    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    /// Creates the command with its defaults (ArgumentParser fills in the options).
    init() {}

    /// The verifier options these arguments describe.
    var options: VerifyOptions {
        VerifyOptions(
            recordSize: self.recordSize,
            expectedProducers: self.expectProducers,
            expectedRecords: self.expectRecords?.value,
            allowGaps: self.allowGaps,
            expectedMissing: self.expectMissing?.value,
            allowReorder: self.allowReorder,
            maxExamples: self.maxExamples
        )
    }

    /// Runs the verification and prints the report.
    ///
    /// - Throws: `ExitCode(1)` when verification fails, `ExitCode(2)` for bad input.
    func run() throws {
        let report = try BenchError.exitOnError { () throws(BenchError) -> VerifyReport in
            try RecordVerifier.verify(files: self.files, options: self.options)
        }
        print(self.json ? BenchJSON.encode(report) : report.renderText())
        if !report.ok {
            throw ExitCode(1)
        }
    }
}
