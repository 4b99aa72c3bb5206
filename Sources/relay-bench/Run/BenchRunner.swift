import Dispatch
import Glibc
import Logging
import Relay
import RelayShipper
import Synchronization

/// How ``BenchRunner`` runs, beyond the workload.
struct RunOptions: Sendable {
    /// Show the once-a-second progress line on standard error.
    var progress = false
    /// Check sinks with ``Preflight`` first (off when the caller created the receiver itself).
    var preflight = true
    /// Bytes to reserve (`fallocate`, size unchanged) across each file sink's files before the clock starts.
    var preallocateBytes: UInt64 = 0
    /// How long the shipper may take to drain after the producers finished.
    var drainTimeout: Duration = .seconds(60)
    /// Verify the plain-format file outputs after the run and attach the result to the report.
    var verify = false
    /// Block mode: how long a full buffer may go without any record or byte moving before the
    /// run is declared stalled (a receiver that stopped reading) and stopped; `nil` waits forever.
    var stallTimeout: Duration? = .seconds(30)
    /// Time about one record in 64 from `reserve` to `commit` (the report's producer cost
    /// percentiles). `compare` turns it off: its baselines time nothing per record, so the
    /// clock reads would be a cost only swift-relay pays.
    var sampleProducerCost = true

    /// Creates options.
    init(progress: Bool = false, preflight: Bool = true, preallocateBytes: UInt64 = 0, drainTimeout: Duration = .seconds(60), verify: Bool = false) {
        self.progress = progress
        self.preflight = preflight
        self.preallocateBytes = preallocateBytes
        self.drainTimeout = drainTimeout
        self.verify = verify
    }
}

/// A finished run: the report and what it wrote.
struct RunOutcome: Sendable {
    /// The final report.
    var report: BenchReport
    /// Plain-format files the run wrote, which `verify` can check.
    var verifiableFiles: [String]
    /// Every file the run wrote.
    var outputFiles: [String]
}

/// Runs the swift-relay workload: producer threads writing records into a relay channel whose
/// sub-buffers a ``RelayShipper`` ships to the sinks.
///
/// The clock starts when the producers are released (channel, shipper, sinks and threads are
/// set up before) and stops when the shipper has drained: the last byte was written to the
/// page cache, acknowledged by the peer's TCP, or accounted for by the null sink. CPU time is
/// the whole process's (`getrusage`) over the same interval, shipper thread included.
enum BenchRunner {
    private static let runCounter = Atomic<Int>(0)

    /// Runs `configuration` and returns the report.
    ///
    /// - Throws: ``BenchError`` for invalid input (exit code 2) or a failed setup.
    static func run(_ configuration: RunConfiguration, options: RunOptions = RunOptions()) throws(BenchError) -> RunOutcome {
        try configuration.validate()
        if options.preflight {
            try Preflight.check(configuration.sinks)
        }
        let formatter = try RecordFormatter(size: configuration.recordSize)
        // Relaxed: only distinct channel names are needed.
        let serial = BenchRunner.runCounter.wrappingAdd(1, ordering: .relaxed).oldValue
        let channel: RelayChannel
        do {
            channel = try RelayChannel(configuration.channelConfiguration(name: "relay-bench-\(getpid())-\(serial)"))
        } catch {
            throw BenchError("cannot create the relay channel: \(error.message)")
        }
        let buffers = channel.buffers
        try RunSinks.prepareOutputs(configuration.sinks, buffers: buffers, preallocate: options.preallocateBytes)

        var logger = Logger(label: "relay-bench.shipper")
        logger.logLevel = .warning
        let shipper = RelayShipper(
            configuration: RelayShipperConfiguration(registerBuffers: configuration.registerBuffers), drainTimeout: options.drainTimeout, logger: logger)
        do {
            try shipper.add(channel, sinks: configuration.sinks.map(RunSinks.relaySink(for:)))
            try shipper.start()
        } catch {
            channel.close()
            throw BenchError("cannot start the shipper: \(error.message)")
        }

        let control = ProducerControl(producers: configuration.producers, samplesCost: options.sampleProducerCost)
        let overhead = ProducerLoop.clockOverhead()
        var threads: [BenchThread] = []
        threads.reserveCapacity(configuration.producers)
        let rate = configuration.ratePerProducer
        let api = configuration.api
        for producer in 0..<configuration.producers {
            let limit: UInt64
            switch configuration.amount {
            case .records(let total): limit = RecordSplit.count(forProducer: producer, total: total, producers: configuration.producers)
            case .seconds: limit = UInt64.max
            }
            do {
                threads.append(
                    try BenchThread(name: "producer\(producer)") {
                        control.gate.wait()
                        let result = ProducerLoop.run(
                            channel: channel, formatter: formatter, producer: producer, limit: limit, rate: rate,
                            api: api, clockOverhead: overhead, control: control
                        )
                        control.results.withLock { $0[producer] = result }
                        control.done.signal()
                    })
            } catch {
                // Release the threads already started into a closed channel: their first write
                // fails with `.closed` and they stop.
                channel.close()
                // Relaxed: the gate (a semaphore) orders it before their first load.
                control.stop.store(true, ordering: .relaxed)
                for _ in threads.indices { control.gate.signal() }
                for thread in threads { thread.join() }
                shipper.stop(timeout: .seconds(5))
                throw error
            }
        }

        let cpuStart = ResourceUsage.process()
        let start = BenchClock.nanoseconds()
        // Relaxed: the gate's signal/wait orders this store before every producer's load.
        control.startNanoseconds.store(start, ordering: .relaxed)
        if case .seconds(let seconds) = configuration.amount {
            // Relaxed: as `startNanoseconds`.
            control.deadlineNanoseconds.store(start + UInt64(seconds * 1e9), ordering: .relaxed)
        }
        for _ in 0..<configuration.producers { control.gate.signal() }

        let stalled = BenchRunner.waitForProducers(
            configuration, control: control, channel: channel, shipper: shipper, start: start, progress: options.progress,
            stallTimeout: configuration.mode == .block ? options.stallTimeout : nil
        )
        for thread in threads { thread.join() }
        channel.close()
        // A stalled sink will not drain either; do not wait the full drain timeout for it.
        let drained = shipper.stop(timeout: stalled == nil ? options.drainTimeout : min(options.drainTimeout, .seconds(5)))
        let end = BenchClock.nanoseconds()
        let usage = ResourceUsage.process().since(cpuStart)
        if options.progress { ProgressLine.clear() }

        let results = control.results.withLock { $0.compactMap { $0 } }
        let offeredPerProducer = control.results.withLock { $0.map { $0?.offered ?? 0 } }
        var report = BenchRunner.makeReport(
            configuration, results: results, channel: channel, shipperStats: shipper.stats(), drained: drained,
            elapsed: Double(end - start) / 1e9, usage: usage
        )
        if let stalled {
            report.warnings = [
                "stalled: the buffers stayed full and nothing was shipped for \(SizeParser.formatDuration(stalled)); the run was stopped (is the receiver reading?)"
            ] + (report.warnings ?? [])
        }
        var outputs: [String] = []
        var verifiable: [VerifiableOutput] = []
        for (index, sink) in configuration.sinks.enumerated() {
            let files = RunSinks.outputFiles(of: sink, buffers: buffers)
            outputs += files
            if RunSinks.isVerifiable(sink) {
                // A per-channel file interleaves the buffers, so a producer that migrated between
                // CPUs can appear out of order in it; each buffer's own file stays in order.
                var interleaved = false
                if case .file = sink { interleaved = buffers > 1 }
                let shipped = index < report.sinkStats.count ? report.sinkStats[index].shippedBytes / UInt64(configuration.recordSize) : nil
                verifiable.append(VerifiableOutput(files: files, interleavesBuffers: interleaved, shippedRecords: shipped))
            }
        }
        if options.verify {
            report.verify = try BenchRunner.verify(configuration, report: report, offered: offeredPerProducer, sinkFiles: verifiable)
        }
        return RunOutcome(report: report, verifiableFiles: verifiable.flatMap(\.files), outputFiles: outputs)
    }

    /// Waits for every producer, ending a `--seconds` run on time, drawing the progress line and
    /// watching for a stall.
    ///
    /// - Returns: The stall timeout when the run stalled and was stopped (the channel is closed
    ///   then, which wakes blocked producers), otherwise `nil`.
    private static func waitForProducers(
        _ configuration: RunConfiguration, control: ProducerControl, channel: RelayChannel, shipper: RelayShipper, start: UInt64,
        progress: Bool, stallTimeout: Duration?
    ) -> Duration? {
        var deadline: UInt64?
        if case .seconds(let seconds) = configuration.amount {
            deadline = start + UInt64(seconds * 1e9)
        }
        var line = ProgressLine(startNanoseconds: start)
        let tick = progress || stallTimeout != nil
        var nextTick = start + 1_000_000_000
        var lastMovement: (records: UInt64, bytes: UInt64) = (0, 0)
        var lastMoved = start
        var stalled: Duration?
        var finished = 0
        while finished < configuration.producers {
            let wake = min(deadline ?? UInt64.max, tick ? nextTick : UInt64.max)
            let now = BenchClock.nanoseconds()
            let outcome: DispatchTimeoutResult
            if wake == UInt64.max {
                control.done.wait()
                outcome = .success
            } else {
                outcome = control.done.wait(timeout: .now() + .nanoseconds(Int(wake > now ? wake - now : 0)))
            }
            if outcome == .success {
                finished += 1
                continue
            }
            let current = BenchClock.nanoseconds()
            if let end = deadline, current >= end {
                // Relaxed: producers only poll the flag; their results are published by `done`.
                control.stop.store(true, ordering: .relaxed)
                deadline = nil
            }
            if tick && current >= nextTick {
                let stats = channel.stats()
                let shipped = shipper.stats()?.sinks.map(\.bytes).min() ?? 0
                let fill = stats.buffers.map { Double($0.unconsumedSubbuffers) / Double(configuration.subbufferCount) }.max() ?? 0
                if progress {
                    ProgressLine.show(
                        line.update(
                            records: stats.total.recordsWritten, bytes: shipped,
                            dropped: stats.total.recordsDropped + stats.total.recordsLapped, bufferFill: fill, nanoseconds: current
                        ))
                }
                let movement = (records: stats.total.recordsWritten, bytes: shipped)
                if movement != lastMovement || fill < 1 {
                    lastMovement = movement
                    lastMoved = current
                } else if let stallTimeout, stalled == nil, Duration.nanoseconds(Int64(current - lastMoved)) >= stallTimeout {
                    // Full buffers and nothing moving: the sink stopped taking data. Closing the
                    // channel wakes the blocked producers, whose writes then fail (counted).
                    stalled = stallTimeout
                    // Relaxed: see the deadline above.
                    control.stop.store(true, ordering: .relaxed)
                    channel.close()
                }
                while nextTick <= current { nextTick += 1_000_000_000 }
            }
        }
        return stalled
    }

    /// Assembles the report from the producers' counts, the channel's and the shipper's stats.
    static func makeReport(
        _ configuration: RunConfiguration,
        results: [ProducerResult],
        channel: RelayChannel,
        shipperStats: RelayShipperStats?,
        drained: Bool,
        elapsed: Double,
        usage: ResourceUsage
    ) -> BenchReport {
        let offered = results.reduce(0) { $0 + $1.offered }
        let written = results.reduce(0) { $0 + $1.written }
        let dropped = results.reduce(0) { $0 + $1.dropped }
        let latency = LatencyRecorder.merged(results.map(\.latency))
        var warnings: [String] = []
        if !drained {
            warnings.append("the sinks did not finish within the drain timeout; shipped counts are short")
        }
        let allChannelStats = channel.stats()
        let channelStats = allChannelStats.total
        let channelAccounted = channelStats.recordsWritten + channelStats.recordsDropped + channelStats.recordsLapped
            + channelStats.recordsTooBig + channelStats.recordsRefusedClosed
        if channelAccounted != offered {
            warnings.append("the channel accounts for \(channelAccounted) records, the producers offered \(offered)")
        }
        warnings += results.compactMap(\.failure)
        let refused = results.reduce(0) { $0 + $1.refusedClosed }
        if refused > 0 {
            warnings.append("\(refused) records were refused because the channel was closed (counted as dropped)")
        }

        var sinkStats: [BenchReport.SinkStats] = []
        var shippedBytes: UInt64 = 0
        var shippedRecords: UInt64?
        for (index, spec) in configuration.sinks.enumerated() {
            let stats = shipperStats.flatMap { index < $0.sinks.count ? $0.sinks[index] : nil }
            let bytes = stats?.bytes ?? 0
            shippedBytes += bytes
            var writebacks: UInt64?
            switch spec {
            case .file, .filePerBuffer: writebacks = stats?.writebacks
            case .null, .tcp, .unix: break
            }
            sinkStats.append(
                BenchReport.SinkStats(
                    sink: spec.description, shippedBytes: bytes, subbuffers: stats?.subbuffers ?? 0, errors: stats?.errors ?? 0,
                    batches: stats?.batches, fixedWrites: stats?.fixedWrites, writebacks: writebacks))
            if BenchRunner.shipsPlainRecords(spec) {
                let records = bytes / UInt64(configuration.recordSize)
                shippedRecords = min(shippedRecords ?? records, records)
                if configuration.mode != .overwrite && drained && records != written {
                    warnings.append("sink \(spec) shipped \(records) records of the \(written) written")
                }
            }
        }
        var overwritten: UInt64?
        if configuration.mode == .overwrite, let shippedRecords {
            overwritten = written >= shippedRecords ? written - shippedRecords : 0
        }

        var e2e: EndToEndLatency?
        var shipper: BenchReport.ShipperSummary?
        if let stats = shipperStats {
            if stats.delayMicroseconds.count > 0 {
                e2e = EndToEndLatency(p50: stats.delayMicroseconds.p50 / 1000, p99: stats.delayMicroseconds.p99 / 1000)
            }
            shipper = BenchReport.ShipperSummary(
                subbuffersShipped: stats.subbuffersShipped,
                timerFlushes: stats.timerFlushes,
                threadCPUSeconds: stats.threadCPUSeconds,
                sleeps: stats.sleeps,
                doorbellRings: stats.doorbellRings,
                registeredBuffers: stats.registeredBuffers,
                registrationFallback: stats.registrationFallback,
                ringSetup: stats.ringSetup,
                latencySamples: stats.delayMicroseconds.count,
                latencyMaxMs: stats.delayMicroseconds.max / 1000
            )
        }
        var config = BenchReport.Config(ratePerProducer: configuration.ratePerProducer, cpus: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        config.api = configuration.api.rawValue
        switch configuration.amount {
        case .records(let count): config.records = count
        case .seconds(let seconds): config.seconds = seconds
        }
        var report = BenchReport(
            producers: configuration.producers,
            recordSize: configuration.recordSize,
            mode: configuration.mode.rawValue,
            sinks: configuration.sinks.map(\.description),
            offeredRecords: offered,
            writtenRecords: written,
            droppedRecords: dropped,
            shippedBytes: shippedBytes,
            elapsedSeconds: elapsed,
            cpuSeconds: usage.cpuSeconds,
            peakRSSBytes: usage.peakRSSBytes,
            producerNsPerRecord: latency.percentiles,
            e2eLatencyMs: e2e,
            subbufSize: configuration.subbufferSize,
            subbufs: configuration.subbufferCount,
            config: config,
            sinkStats: sinkStats
        )
        report.overwrittenRecords = overwritten
        report.producerSamples = latency.count
        report.shipper = shipper
        report.channel = BenchReport.ChannelSummary(
            buffers: allChannelStats.buffers.count,
            subbuffersProduced: channelStats.subbuffersProduced,
            writerWaits: channelStats.writerWaits,
            bufferFullEvents: channelStats.bufferFullEvents,
            flushes: channelStats.flushes
        )
        report.warnings = warnings.isEmpty ? nil : warnings
        return report
    }

    /// Whether a sink's byte count is records only (so bytes / record size = records).
    static func shipsPlainRecords(_ spec: SinkSpec) -> Bool {
        switch spec {
        case .null: return true
        case .file(_, let options), .filePerBuffer(_, let options): return options.format == .plain
        case .tcp, .unix: return true
        }
    }

    /// Verifies the run's plain-format files against what the producers offered and dropped.
    ///
    /// Every verifiable sink got every shipped record, so each sink is checked on its own.
    struct VerifiableOutput {
        var files: [String]
        var interleavesBuffers: Bool
        /// The records the sink shipped (its byte count / record size), when known.
        var shippedRecords: UInt64? = nil
    }

    /// The run's verification; `offered` holds each producer's offered record count (sequences `0..<offered[p]`).
    static func verify(
        _ configuration: RunConfiguration, report: BenchReport, offered: [UInt64], sinkFiles: [VerifiableOutput]
    ) throws(BenchError) -> VerifyReport? {
        guard !sinkFiles.isEmpty else { return nil }
        var expectedRecords: UInt64?
        if case .records(let count) = configuration.amount { expectedRecords = count }
        var options = VerifyOptions(recordSize: configuration.recordSize, expectedProducers: configuration.producers, expectedRecords: expectedRecords)
        if expectedRecords == nil {
            // A timed run: each producer offered its own count, sequences 0..<offered.
            options.expectedPerProducer = offered
        }
        switch configuration.mode {
        case .block, .drop:
            options.expectedMissing = report.droppedRecords
            options.allowGaps = report.droppedRecords > 0
        case .overwrite:
            options.allowGaps = true
        }
        let offeredTotal = offered.reduce(0, +)
        var combined: VerifyReport?
        for output in sinkFiles {
            options.allowReorder = output.interleavesBuffers
            if configuration.mode == .overwrite, let shipped = output.shippedRecords {
                // What this sink did not ship was dropped or overwritten; nothing else may be missing.
                options.expectedMissing = offeredTotal >= shipped ? offeredTotal - shipped : 0
            }
            let result = try RecordVerifier.verify(files: output.files, options: options)
            if combined == nil || !result.ok { combined = result }
        }
        return combined
    }
}
