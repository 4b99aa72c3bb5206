//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

// Resident memory of the engine and the shipper under full load, next to the size of the relay
// buffers: a channel of one buffer per CPU × 8 × 1 MiB sub-buffers in block mode, 2 producer
// threads writing 128-byte records as fast as they can, shipped by the io_uring shipper to
// `null` (consumed without I/O) or to a file. Prints the process's peak RSS (VmHWM) before the
// channel exists (the Swift runtime and libraries) and after shipping, and the difference
// minus the buffers: what the engine and the shipper themselves keep resident. Then the
// kinds of resident pages at the end: the buffers (shared memory), code and read-only data
// mapped from the executable and libraries (file-backed, shared with the page cache), and
// anonymous memory (heap, stacks, the ring's bookkeeping).
//
//   swift run -c release relay-resident-memory [null|FILE] [records]
//   swift run -c release --scratch-path .build-static -Xswiftc -static-executable \
//       relay-resident-memory …      (fully static, as relayd deploys: scripts/build-static)
//   swift run -c release --scratch-path .build-staticstdlib --static-swift-stdlib \
//       relay-resident-memory …      (static Swift runtime, dynamic glibc)

import BenchSupport
import Glibc
import Logging
import Relay
import RelayShipper

/// A field of /proc/self/status in bytes (`VmHWM:`, `VmRSS:`).
func statusBytes(_ key: String) -> Int {
    guard let file = fopen("/proc/self/status", "r") else { return -1 }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.hasPrefix(key), let kib = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
            return kib * 1024
        }
    }
    return -1
}

func mebibytes(_ bytes: Int) -> String {
    let tenths = (bytes * 10 + (1 << 19)) >> 20
    return "\(tenths / 10).\(tenths % 10) MiB"
}

let arguments = CommandLine.arguments
let destination = arguments.count > 1 ? arguments[1] : "null"
let records = arguments.count > 2 ? Int(arguments[2]) ?? 20_000_000 : 20_000_000
let subbufferSize = 1 << 20
let subbufferCount = 8

let atStart = statusBytes("VmHWM:")
let channel = try RelayChannel(
    RelayChannelConfiguration(
        name: "relay-rss-\(getpid())", subbufferSize: subbufferSize, subbufferCount: subbufferCount, mode: .block()))
var logger = Logger(label: "relay-resident-memory")
logger.logLevel = .error
let shipper = RelayShipper(logger: logger)
try shipper.add(
    channel, sinks: [destination == "null" ? .discard : .file(RelayFileSinkConfiguration(path: destination))])
try shipper.start()
onThreads(2, total: records) { _, count in
    var record = [UInt8](repeating: UInt8(ascii: "a"), count: 127)
    record.append(UInt8(ascii: "\n"))
    record.withUnsafeBytes { bytes in
        for _ in 0..<count { channel.write(bytes) }
    }
}
channel.close()
guard shipper.stop(timeout: .seconds(120)) else {
    print("the shipper did not drain within 120 s")
    exit(1)
}
let peak = statusBytes("VmHWM:")
let buffers = channel.buffers * subbufferCount * subbufferSize
print("\(records) records × 128 B, 2 producers → \(destination); \(channel.buffers) buffers × \(subbufferCount) × 1 MiB")
print("peak RSS at start (Swift runtime, libraries):  \(mebibytes(atStart))")
print("peak RSS after shipping:                       \(mebibytes(peak))")
print("relay buffers:                                 \(mebibytes(buffers))")
print("peak − buffers:                                \(mebibytes(peak - buffers))")
print("peak − buffers − start (engine + shipper):     \(mebibytes(peak - buffers - atStart))")
let shmem = statusBytes("RssShmem:")
let file = statusBytes("RssFile:")
let anonymous = statusBytes("RssAnon:")
print("resident now: \(mebibytes(shmem + file + anonymous)) = \(mebibytes(shmem)) shared memory (buffers) + "
    + "\(mebibytes(file)) file-backed (code, read-only data) + \(mebibytes(anonymous)) anonymous (heap, stacks)")
