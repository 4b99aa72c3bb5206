import ArgumentParser

/// `relay-bench run`: producers write records into a relay channel; the shipper ships its
/// sub-buffers to the sinks; the report says how fast, at what cost, and what was lost.
struct RunCommand: ParsableCommand {
    /// The subcommand's name, abstract and discussion.
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Measure swift-relay: producer threads → relay channel → io_uring shipper → sinks.",
        discussion: """
            Records: one line of exactly --record-size bytes, '<producer> <sequence> <filler>\\n', \
            producer ids from 0, sequences from 0 per producer, both decimal; filler letter i is \
            'a' + (producer + sequence + i) mod 26. --records N is split over P producers: producer p \
            writes N/P records, one more if p < N%P. Check output files with 'relay-bench verify'.

            Sinks (--sink, repeat it to fan out): null | file:PATH | file-per-buffer:DIR (buffer i \
            writes DIR/relay-bench.i) | tcp:HOST:PORT | unix:PATH. File options follow commas: \
            odirect (needs format=packets), fsync=100ms or fsync=64MiB, writeback=1MiB (ask the kernel \
            to start writing back each 1 MiB written; 64KiB or more; O_DIRECT files have nothing to \
            write back) or writeback=kernel (leave writeback to the kernel: the default), format=plain|packets, \
            rotate-size=1GiB, rotate-count=N, fixed-writes (buffered writes as WRITE_FIXED from the \
            registered buffers; by default only O_DIRECT writes are). Output files are truncated first. A tcp/unix receiver \
            sees one short probe connection before the run.

            Report: offered = written + dropped; throughput over the time from releasing the \
            producers to the last byte shipped; cpu_seconds is the process's user+sys time over that \
            interval; producer_ns_per_record is sampled (about 1 record in 64, timed from reserve \
            to commit, clock overhead subtracted); e2e_latency_ms is per sub-buffer, from the moment \
            it opened (at or before its first record) to the completion that released it (page \
            cache for files, peer TCP acknowledgement for sockets).

            Exit status: 0 done, 1 --verify found a problem or the run stalled (block mode, nothing \
            shipped for --stall-timeout seconds), 2 bad input.
            """
    )

    /// Producer threads.
    @Option(help: "Producer threads.")
    var producers: Int = 1

    /// Total records.
    @Option(help: ArgumentHelp("Total records to offer, split over the producers; k/M/G suffixes are powers of ten (default: 1M unless --seconds).", valueName: "n"))
    var records: CountArgument?

    /// Duration instead of a count.
    @Option(help: ArgumentHelp("Offer records for this many seconds instead of a count.", valueName: "s"))
    var seconds: Double?

    /// Open-loop rate per producer.
    @Option(help: ArgumentHelp("Open-loop rate per producer in records/s, e.g. 100k (default: as fast as possible).", valueName: "r"))
    var rate: RateArgument?

    /// Record size.
    @Option(help: ArgumentHelp("Record size in bytes, newline included; at least 32.", valueName: "bytes"))
    var recordSize: Int = 128

    /// Sub-buffer size.
    @Option(help: ArgumentHelp("Sub-buffer size: a power of two from 4KiB to 1GiB.", valueName: "bytes"))
    var subbufSize = ByteCountArgument(1 << 20)

    /// Sub-buffers per buffer.
    @Option(help: ArgumentHelp("Sub-buffers per buffer: a power of two from 2 to 65536.", valueName: "n"))
    var subbufs: Int = 8

    /// Per-CPU buffers.
    @Option(help: ArgumentHelp("Relay buffers (default: one per possible CPU).", valueName: "n"))
    var buffers: Int?

    /// Channel mode.
    @Option(help: "What a producer does when no sub-buffer is free: block (wait), drop (count and go on), overwrite (reuse the oldest).")
    var mode: BenchMode = .block

    /// The write API.
    @Option(help: "How producers hand records to the channel: reserve (format in place, commit), write (format in a scratch record, copy in) or exclusive (one exclusive buffer per producer, formatted in place: no locked instruction and no copy per record).")
    var api: WriteAPI = .reserve

    /// Registered buffers off.
    @Flag(help: "Do not register the relay regions as io_uring fixed buffers: O_DIRECT and fixed-writes files then use WRITE, sockets never use SEND_ZC from registered memory (to measure what registration buys).")
    var unregistered = false

    /// Sinks.
    @Option(name: .customLong("sink"), help: ArgumentHelp("Where sub-buffers go; repeat for fan-out (default: null).", valueName: "spec"))
    var sinks: [String] = []

    /// Stall timeout.
    @Option(help: ArgumentHelp("Block mode: stop the run when the buffers stay full and nothing ships for this many seconds (0: wait forever).", valueName: "s"))
    var stallTimeout: Double = 30

    /// JSON output.
    @Flag(help: "Print the report as one JSON object.")
    var json = false

    /// Verify file outputs.
    @Flag(help: "Verify the plain-format file outputs after the run (expected records, exactly the dropped ones missing).")
    var verify = false

    /// Creates the command with its defaults (ArgumentParser fills in the options).
    init() {}

    /// The validated run configuration these options describe (sinks are parsed, not contacted).
    ///
    /// - Throws: ``BenchError`` (exit code 2) naming the bad option and the fix.
    func makeConfiguration() throws(BenchError) -> RunConfiguration {
        let amount: RunConfiguration.Amount
        switch (self.records, self.seconds) {
        case (.some, .some):
            throw BenchError("both --records and --seconds given: use one of them")
        case (let records?, nil):
            amount = .records(records.value)
        case (nil, let seconds?):
            amount = .seconds(seconds)
        case (nil, nil):
            amount = .records(1_000_000)
        }
        var sinks: [SinkSpec] = []
        for text in self.sinks {
            sinks.append(try SinkSpec.parse(text))
        }
        var configuration = RunConfiguration(
            producers: self.producers,
            amount: amount,
            ratePerProducer: self.rate?.value,
            recordSize: self.recordSize,
            subbufferSize: self.subbufSize.value,
            subbufferCount: self.subbufs,
            buffers: self.buffers,
            mode: self.mode,
            sinks: sinks.isEmpty ? [.null] : sinks,
            api: self.api
        )
        configuration.registerBuffers = !self.unregistered
        try configuration.validate()
        guard self.stallTimeout.isFinite, self.stallTimeout >= 0, self.stallTimeout <= 86_400 else {
            throw BenchError("stall timeout \(self.stallTimeout) is invalid: use --stall-timeout with 0 (wait forever) up to 86400 seconds")
        }
        if self.verify && !configuration.sinks.contains(where: RunSinks.isVerifiable) {
            throw BenchError("--verify needs a sink that writes plain records to files: add --sink file:PATH")
        }
        return configuration
    }

    /// Runs the benchmark and prints the report.
    ///
    /// - Throws: `ExitCode(2)` for bad input, `ExitCode(1)` when `--verify` fails.
    func run() throws {
        let outcome = try BenchError.exitOnError { () throws(BenchError) -> RunOutcome in
            let configuration = try self.makeConfiguration()
            var options = RunOptions(progress: ProgressLine.isEnabled(json: self.json), verify: self.verify)
            options.stallTimeout = self.stallTimeout > 0 ? .milliseconds(Int64(self.stallTimeout * 1000)) : nil
            return try BenchRunner.run(configuration, options: options)
        }
        print(self.json ? BenchJSON.encode(outcome.report) : outcome.report.renderTable())
        if outcome.report.warnings?.contains(where: { $0.hasPrefix("stalled") }) == true {
            throw ExitCode(1)
        }
        if self.verify, let verify = outcome.report.verify, !verify.ok {
            throw ExitCode(1)
        }
    }
}
