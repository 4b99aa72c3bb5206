//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

// `logging-instructions SCENARIO ENTRIES CALLS`: makes CALLS `logger.info` calls with ENTRIES metadata
// entries on one thread (the same call site as logging-bench-table), for counting instructions under
// callgrind (scripts/logging-instructions): a measure that does not move with this machine's noise.
// SCENARIO: `noop` (swift-log's own cost) or `relay` (RelayLogHandler into a channel, no I/O).
import Glibc
import LogBenchSupport

let arguments = CommandLine.arguments
guard arguments.count == 4, let entries = Int(arguments[2]), let calls = Int(arguments[3]),
    let scenario = ["noop": LoggingScenario.noop, "relay": .relay][arguments[1]]
else {
    print("usage: logging-instructions noop|relay ENTRIES CALLS")
    exit(2)
}
runScenario(scenario, entries: entries, threads: 1, calls: calls)
