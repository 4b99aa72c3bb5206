//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Benchmark
import LogBenchSupport

// RelayLogging benchmarks: ns and mallocs per `logger.info` call with 0, 3 and 10 metadata
// entries, on 1 and 2 threads, for
//
// - noop:        a handler that does nothing (swift-log's own cost: the baseline),
// - noop-source: a handler that only reads `event.source` (what swift-log adds for any handler
//                that writes the source),
// - relay:       RelayLogHandler into a relay channel (the handler alone, no I/O),
// - relay-file:  RelayLogHandler through RelayLoggingService to a file, drain included,
// - stream-file: swift-log's StreamLogHandler writing to a file (fwrite + fflush per call, as
//                with stdout redirected to a file),
//
// all in the same run. One benchmark iteration is one log call; with 2 threads the calls are split
// between them, so the time per iteration is the aggregate cost per call. Run from Benchmarks/:
//
//   swift package --allow-writing-to-directory .benchmarkBaselines benchmark --target LoggingBenchmarks
//
// and `swift run -c release logging-bench-table` prints the same comparison as a markdown table.
//
// Mallocs: the log call itself allocates the metadata dictionary (2 mallocs for 3 or 10 entries, in
// every scenario). RelayLogHandler adds none, on one condition that is swift-log's: a call site that
// passes no `source:` gets `event.source` derived from its `#fileID` on every access, and swift-log
// builds that String on the heap when the module name is longer than 15 UTF-8 bytes (shorter ones are
// small strings, stored inline). Every handler that writes the source pays it (StreamLogHandler too);
// the no-op handler does not read it. So the module that holds the measured call site (`logOnce`) is
// named `LogBenchSupport`, exactly 15 bytes; with a longer name the relay and stream scenarios would
// show one more malloc per call.

let benchmarks: @Sendable () -> Void = {
    for entries in metadataCounts {
        for threads in [1, 2] {
            for scenario in LoggingScenario.allCases {
                let slow = scenario == .streamToFile
                // The log call itself allocates the metadata dictionary (2 mallocs for 3 or 10 entries,
                // in every scenario); RelayLogHandler adds none (the call site's module name is at most
                // 15 bytes, see above).
                let mallocs = entries == 0 ? 0 : 2
                var thresholds: [BenchmarkMetric: BenchmarkThresholds] = [:]
                if scenario == .relay || scenario == .noop || scenario == .noopReadingSource {
                    thresholds[.mallocCountTotal] = .init(absolute: [.p90: mallocs])
                }
                let configuration = Benchmark.Configuration(
                    metrics: [.wallClock, .throughput, .mallocCountTotal],
                    warmupIterations: 1,
                    scalingFactor: slow ? .kilo : .mega,
                    maxDuration: .seconds(5),
                    maxIterations: slow ? 200 : 7,
                    thresholds: thresholds
                )
                Benchmark("\(scenario.rawValue) \(entries) metadata \(threads) thread\(threads == 1 ? "" : "s")",
                          configuration: configuration) { benchmark in
                    runScenario(scenario, entries: entries, threads: threads, calls: benchmark.scaledIterations.count)
                }
            }
        }
    }
}
