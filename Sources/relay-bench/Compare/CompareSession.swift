import Glibc

/// The settings of one `compare` (or one `sweep` point): the workload and how to measure it.
struct CompareSettings: Sendable, Equatable {
    /// Producers × records × record size, the same for every variant.
    var workload: CompareBaselines.Workload
    /// swift-relay's sub-buffer size.
    var subbufferSize: Int = 1 << 20
    /// swift-relay's sub-buffers per buffer.
    var subbufferCount: Int = 8
    /// Where the bytes go.
    var target: CompareTarget = .null
    /// The variants, in display order; swift-relay must be one.
    var variants: [CompareVariant] = CompareVariant.allCases
    /// Measured runs per variant (the table shows medians).
    var repeats: Int = 3
    /// Unmeasured rounds before the measured ones.
    var warmups: Int = 1
    /// Keep output files (the last run's) instead of removing them.
    var keep = false
    /// Verify each verifiable variant's file output once (not timed).
    var verify = false
    /// How swift-relay's producers write.
    var api: WriteAPI = .reserve
    /// Whether swift-relay's shipper uses registered buffers.
    var registerBuffers = true

    /// The swift-relay configuration for this workload and a sink.
    func relayConfiguration(sink: SinkSpec) -> RunConfiguration {
        var configuration = RunConfiguration(
            producers: self.workload.producers,
            amount: .records(self.workload.records),
            recordSize: self.workload.recordSize,
            subbufferSize: self.subbufferSize,
            subbufferCount: self.subbufferCount,
            mode: .block,
            sinks: [sink],
            api: self.api
        )
        configuration.registerBuffers = self.registerBuffers
        return configuration
    }

    /// Checks everything that can be checked without running.
    func validate() throws(BenchError) {
        try self.workload.validate()
        try self.relayConfiguration(sink: .null).validate()
        guard (1...1000).contains(self.repeats) else {
            throw BenchError("repeat count \(self.repeats) is invalid: use --repeat from 1 to 1000")
        }
        guard (0...100).contains(self.warmups) else {
            throw BenchError("warm-up count \(self.warmups) is invalid: use --warmup from 0 to 100")
        }
        guard self.variants.contains(.relay) else {
            throw BenchError("the variants must include relay, the reference of every ratio: add relay to --variants")
        }
        // Checked here, not when the mutex variant runs after the others.
        if self.variants.contains(.mutex) && self.workload.recordSize > 64 << 10 {
            throw BenchError(
                "record size \(self.workload.recordSize) does not fit the mutex variant's 64 KiB buffer: leave mutex out of --variants or use --record-size 65536 or less")
        }
    }
}

/// What a compare produced.
struct CompareOutcome: Sendable {
    /// Medians and ratios.
    var table: ComparisonTable
    /// Every measured run per variant name, in run order.
    var samples: [String: [BaselineResult]]
    /// Verification of each verified variant's output, by variant name.
    var verification: [String: VerifyReport]
}

/// Runs swift-relay and the baselines on one workload, interleaved, and reports medians.
///
/// Order: `warmups` unmeasured rounds, then `repeats` measured rounds. Every round runs each
/// variant once, in the order of ``order(round:variants:)``: a balanced Latin square, so over a
/// full cycle each variant runs first equally often and right after every other variant
/// equally often. (Rotating one order, A B C, B C A, C A B, would always run B right after A:
/// a variant that leaves the machine in a bad state, say the page cache's free memory
/// fragmented or handed back to the host, would always slow down the same successor.) This
/// VM's page cache is several times slower on memory it touches for the first time; warming
/// up and interleaving let every variant see the same conditions. Each file variant writes
/// its own file, created empty with its blocks reserved (`fallocate` `KEEP_SIZE`) before the
/// clock starts and removed after the run (unless `keep`), so no variant inherits another's
/// dirty pages.
enum CompareSession {
    /// Runs the comparison.
    ///
    /// - Parameters:
    ///   - settings: The workload and measurement settings.
    ///   - log: Called with one line per finished run (progress on standard error).
    /// - Throws: ``BenchError`` for bad input or a failed run.
    static func run(_ settings: CompareSettings, log: (String) -> Void = { _ in }) throws(BenchError) -> CompareOutcome {
        try settings.validate()
        try settings.target.preflight()
        let socket = settings.target.isSocket
        var samples: [String: [BaselineResult]] = [:]
        var verification: [String: VerifyReport] = [:]
        let variants = settings.variants
        let rounds = settings.warmups + settings.repeats
        for round in 0..<rounds {
            let measured = round >= settings.warmups
            for index in CompareSession.order(round: round, variants: variants.count) {
                let variant = variants[index]
                let name = variant.name(socket: socket)
                let wantVerify = settings.verify && measured && verification[name] == nil && variant.isVerifiable
                let (result, report) = try CompareSession.runOnce(variant, settings: settings, verify: wantVerify)
                if let report { verification[name] = report }
                if measured { samples[name, default: []].append(result) }
                let label = measured ? "run \(round - settings.warmups + 1)/\(settings.repeats)" : "warm-up \(round + 1)/\(settings.warmups)"
                log("\(label)  \(BenchUnits.pad(name, to: 20))  \(BenchUnits.recordRate(result.recordsPerSecond))  \(BenchUnits.byteRate(result.bytesPerSecond))")
            }
        }
        var medians: [BaselineResult] = []
        for variant in variants {
            let name = variant.name(socket: socket)
            guard let runs = samples[name], !runs.isEmpty else { continue }
            var median = CompareSession.median(of: runs)
            if let report = verification[name] {
                median.note = (median.note.map { $0 + "; " } ?? "") + (report.ok ? "verified" : "VERIFY FAILED")
            }
            medians.append(median)
        }
        var table = ComparisonTable(
            producers: settings.workload.producers,
            recordSize: settings.workload.recordSize,
            records: settings.workload.records,
            destination: settings.target.description,
            results: medians
        )
        table.repeats = settings.repeats
        for index in table.rows.indices {
            table.rows[index].samples = samples[table.rows[index].variant]?.map(\.recordsPerSecond)
        }
        return CompareOutcome(table: table, samples: samples, verification: verification)
    }

    /// The order of the variants (indices into `variants`) in round `round`: the rows of a
    /// Williams design, a Latin square balanced for the variant that ran just before.
    ///
    /// Row 0 is 0, 1, n−1, 2, n−2, …; row `k` adds `k` to every index (mod n). The steps
    /// between neighbours in row 0 (+1, −2, +3, −4, …) are all different mod n when n is even,
    /// so over n rounds every ordered pair of variants is adjacent exactly once. When n is odd
    /// the steps come in pairs of opposite sign, so rows n…2n−1 are rows 0…n−1 reversed, and
    /// a full cycle is 2n rounds. Either way each variant runs first equally often per cycle.
    static func order(round: Int, variants n: Int) -> [Int] {
        precondition(n > 0 && round >= 0)
        let cycle = n % 2 == 0 ? n : 2 * n
        let row = round % cycle
        let base = (0..<n).map { position in
            position == 0 ? 0 : position % 2 == 1 ? (position + 1) / 2 : n - position / 2
        }
        let shifted = base.map { ($0 + row) % n }
        return row >= n ? Array(shifted.reversed()) : shifted
    }

    /// The median run: median elapsed and median CPU time (each on its own).
    static func median(of runs: [BaselineResult]) -> BaselineResult {
        precondition(!runs.isEmpty)
        var result = runs[0]
        result.elapsedSeconds = CompareSession.median(runs.map(\.elapsedSeconds))
        result.cpuSeconds = CompareSession.median(runs.map(\.cpuSeconds))
        return result
    }

    /// The median of `values` (the mean of the middle two for an even count).
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    /// Runs one variant once; returns its measurement and, when asked, the verification of its output.
    static func runOnce(_ variant: CompareVariant, settings: CompareSettings, verify: Bool) throws(BenchError) -> (BaselineResult, VerifyReport?) {
        let workload = settings.workload
        let socket = settings.target.isSocket
        let name = variant.name(socket: socket)
        var outputPath: String?
        if case .file(let path) = settings.target {
            outputPath = path + "." + name
        }
        defer {
            if let outputPath, !settings.keep { _ = unlink(outputPath) }
        }
        if variant == .memcpy {
            return (try CompareBaselines.memcpyLimit(workload), nil)
        }

        // A fresh in-process receiver per run, so each run starts on a new connection.
        var receiver: LoopbackReceiver?
        if settings.target == .loopback {
            receiver = try LoopbackReceiver()
        }
        var result: BaselineResult
        if variant == .relay {
            result = try CompareSession.runRelay(settings, outputPath: outputPath, receiver: receiver)
            if let receiver {
                // swift-relay's clock stops when the peer's TCP acknowledged the last byte; the
                // baselines' when the receiver read it and closed. Wait for the receiver to
                // read the rest too, so both mean "delivered".
                let start = BenchClock.nanoseconds()
                _ = try receiver.finish()
                result.elapsedSeconds += Double(BenchClock.nanoseconds() - start) / 1e9
            }
        } else {
            let destination: CompareBaselines.Destination
            var socketFD: Int32 = -1
            switch settings.target {
            case .null:
                destination = .file(path: "/dev/null", preallocate: false)
            case .file:
                destination = .file(path: outputPath!, preallocate: true)
            case .loopback:
                socketFD = try receiver!.connect()
                destination = .socket(fd: socketFD)
            case .tcp(let host, let port):
                socketFD = try Preflight.connectTCP(host: host, port: port, timeout: Preflight.defaultTimeout)
                destination = .socket(fd: socketFD, end: .acknowledged)
            case .unix(let path):
                socketFD = try Preflight.connectUnix(path: path)
                destination = .socket(fd: socketFD, end: .acknowledged)
            }
            defer { if socketFD >= 0 { POSIXIO.closeQuietly(socketFD) } }
            switch variant {
            case .naive: result = try CompareBaselines.naivePerRecord(workload, to: destination)
            case .mutex: result = try CompareBaselines.mutexBuffered(workload, to: destination)
            case .uring: result = try CompareBaselines.ioURing(workload, to: destination)
            case .raw:
                result = try CompareBaselines.rawLimit(workload, to: destination)
                if settings.target == .null {
                    result.note = "write(2) to /dev/null reads nothing: not a limit"
                }
            case .relay, .memcpy: preconditionFailure("handled above")
            }
        }
        if let receiver {
            let received = try receiver.finish()
            guard received.bytes == workload.totalBytes else {
                throw BenchError("the loopback receiver got \(received.bytes) of \(workload.totalBytes) bytes from \(name): the run lost data, please report it")
            }
        }
        var report: VerifyReport?
        if verify, let outputPath {
            report = try RecordVerifier.verify(
                files: [outputPath],
                // swift-relay's file interleaves its per-CPU buffers by sub-buffer: a producer that
                // migrated between CPUs may appear out of order (counted, not a failure).
                options: VerifyOptions(
                    recordSize: workload.recordSize, expectedProducers: workload.producers, expectedRecords: workload.records,
                    allowReorder: variant == .relay
                )
            )
        }
        return (result, report)
    }

    /// swift-relay on the workload: block mode (nothing dropped), one sink.
    private static func runRelay(_ settings: CompareSettings, outputPath: String?, receiver: LoopbackReceiver?) throws(BenchError) -> BaselineResult {
        let sink: SinkSpec
        switch settings.target {
        case .null: sink = .null
        case .file: sink = .file(path: outputPath!, options: FileSinkOptions())
        case .loopback: sink = receiver!.sinkSpec
        case .tcp(let host, let port): sink = .tcp(host: host, port: port, format: .plain)
        case .unix(let path): sink = .unix(path: path, format: .plain)
        }
        let configuration = settings.relayConfiguration(sink: sink)
        var options = RunOptions(preflight: false, preallocateBytes: settings.target.isFile ? settings.workload.totalBytes : 0)
        options.sampleProducerCost = false
        let outcome = try BenchRunner.run(configuration, options: options)
        let report = outcome.report
        guard report.writtenRecords == settings.workload.records, report.droppedRecords == 0,
            report.shippedBytes == settings.workload.totalBytes
        else {
            throw BenchError(
                "swift-relay shipped \(report.shippedBytes) of \(settings.workload.totalBytes) bytes (\(report.droppedRecords) records dropped)"
                    + ((report.warnings ?? []).isEmpty ? "" : ": " + report.warnings!.joined(separator: "; "))
                    + "; the comparison would be unfair, check the sink")
        }
        return BaselineResult(
            name: ComparisonTable.referenceVariant,
            records: report.writtenRecords,
            bytes: report.shippedBytes,
            elapsedSeconds: report.elapsedSeconds,
            cpuSeconds: report.cpuSeconds,
            note: "\(settings.api.summary)\(settings.registerBuffers ? "" : ", unregistered"), \(settings.subbufferCount)×\(SizeParser.formatSize(UInt64(settings.subbufferSize))) sub-buffers, io_uring shipper"
        )
    }
}

extension CompareTarget {
    /// Whether the destination is a file.
    var isFile: Bool {
        if case .file = self { return true }
        return false
    }
}
