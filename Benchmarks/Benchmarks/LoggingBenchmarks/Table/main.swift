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
// (alone, and to a file through the shipper) and StreamLogHandler to a file. The no-op and relay
// runs alternate, and "relay − no-op" is the median of the differences of back-to-back pairs.
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

/// The no-op handler and RelayLogHandler measured in alternation (A B A B, `runs` pairs, each run
/// `count` calls): the median of each, and the median of the pairs' differences. Each difference
/// compares two runs made back to back, so a slow phase of this machine (other processes, the host)
/// shifts both; the difference of two separately measured medians takes the noise of both.
func measurePaired(entries: Int, threads: Int, count: Int) -> (noop: Double, relay: Double, added: Double) {
    runScenario(.noop, entries: entries, threads: threads, calls: max(count / 20, 1000))  // warm-up
    runScenario(.relay, entries: entries, threads: threads, calls: max(count / 20, 1000))
    var noop: [Double] = []
    var relay: [Double] = []
    var added: [Double] = []
    for _ in 0..<runs {
        var start = monotonicNanoseconds()
        runScenario(.noop, entries: entries, threads: threads, calls: count)
        let a = Double(monotonicNanoseconds() - start) / Double(count)
        start = monotonicNanoseconds()
        runScenario(.relay, entries: entries, threads: threads, calls: count)
        let b = Double(monotonicNanoseconds() - start) / Double(count)
        noop.append(a)
        relay.append(b)
        added.append(b - a)
    }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    return (median(noop), median(relay), median(added))
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
        let (noop, relay, added) = measurePaired(entries: entries, threads: threads, count: calls)
        let source = measure(.noopReadingSource, entries: entries, threads: threads, count: calls)
        let relayFile = measure(.relayToFile, entries: entries, threads: threads, count: calls)
        let stream = measure(.streamToFile, entries: entries, threads: threads, count: max(calls / 10, 10_000))
        print(
            "| \(entries) | \(threads) | \(format(noop)) ns | \(format(relay)) ns | \(format(added)) ns "
                + "| \(format(source - noop)) ns | \(format(relayFile)) ns | \(format(stream)) ns "
                + "| \(format(stream / relayFile))× |")
    }
}
