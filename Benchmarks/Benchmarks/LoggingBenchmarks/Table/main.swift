//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

// Prints the RelayLogging comparison as a markdown table: ns per `logger.info` call (median of
// several runs, all in this one process) for swift-log with a no-op handler (and one that only
// reads `event.source`), RelayLogHandler
// (alone, and to a file through the shipper) and StreamLogHandler to a file.
//
//   swift run -c release logging-bench-table [runs] [calls] [metadata counts, e.g. 3 or 0,3,10]
//
// Mallocs per call come from the package-benchmark target (LoggingBenchmarks). The measured call site
// (`logOnce`) lives in `LogBenchSupport`, a module name of 15 bytes: swift-log allocates the source it
// derives from a longer module name on every call (see LoggingBenchmarks.swift).

import Glibc
import LogBenchSupport

let arguments = CommandLine.arguments
let runs = arguments.count > 1 ? Int(arguments[1]) ?? 5 : 5
let calls = arguments.count > 2 ? Int(arguments[2]) ?? 1_000_000 : 1_000_000
let counts = arguments.count > 3 ? arguments[3].split(separator: ",").compactMap { Int($0) } : metadataCounts

func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// The median ns per call over `runs` runs of `count` calls.
func measure(_ scenario: LoggingScenario, entries: Int, threads: Int, count: Int) -> Double {
    runScenario(scenario, entries: entries, threads: threads, calls: max(count / 20, 1000))  // warm-up
    var samples: [Double] = []
    for _ in 0..<runs {
        let start = monotonicNanoseconds()
        runScenario(scenario, entries: entries, threads: threads, calls: count)
        samples.append(Double(monotonicNanoseconds() - start) / Double(count))
    }
    samples.sort()
    return samples[samples.count / 2]
}

func format(_ value: Double) -> String {
    value >= 100 ? String(Int(value.rounded())) : String(Double(Int(value * 10)) / 10)
}

print(
    "| metadata | threads | no-op | relay | relay − no-op | of which swift-log's `event.source` "
        + "| relay → file | StreamLogHandler → file | file throughput ratio |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for entries in counts {
    for threads in [1, 2] {
        let noop = measure(.noop, entries: entries, threads: threads, count: calls)
        let source = measure(.noopReadingSource, entries: entries, threads: threads, count: calls)
        let relay = measure(.relay, entries: entries, threads: threads, count: calls)
        let relayFile = measure(.relayToFile, entries: entries, threads: threads, count: calls)
        let stream = measure(.streamToFile, entries: entries, threads: threads, count: max(calls / 10, 10_000))
        print(
            "| \(entries) | \(threads) | \(format(noop)) ns | \(format(relay)) ns | \(format(relay - noop)) ns "
                + "| \(format(source - noop)) ns | \(format(relayFile)) ns | \(format(stream)) ns "
                + "| \(format(stream / relayFile))× |")
    }
}
