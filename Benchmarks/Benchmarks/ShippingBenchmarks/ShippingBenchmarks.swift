import Benchmark
import BenchSupport
import Glibc
import Logging
import Relay
import RelayShipper

// Ring-path benchmarks: producer → relay channel → io_uring shipper → file, for 64 KiB
// and 1 MiB sub-buffers, next to a plain write(2) loop of 1 MiB blocks writing the same
// number of bytes to the same disk, in the same run.
//
// One benchmark iteration writes 256 MiB (2 Mi records of 128 B), so "Throughput (# / s)"
// counts 256 MiB units per second; read the wall-clock p50 (256 MiB / p50 = GB/s). A relay
// sample closes the channel and waits until the shipper has written everything (the drain
// is inside the measurement; opening the channel and starting the shipper, once-per-process
// costs, are not). Every variant empties the same file (truncation frees its blocks and drops
// its cached pages) and then reserves 256 MiB of blocks before writing (the file sink with
// fallocate(FALLOC_FL_KEEP_SIZE), the loop with posix_fallocate), so neither side pays for block
// allocation during the write and both allocate page-cache pages the same way. This VM's
// freshly allocated page cache can be several times slower than recently freed pages, so
// compare variants of one run (package-benchmark runs them one after another) and repeat.

let mib = 1 << 20
let recordSize = 128
let recordsPerMiB = mib / recordSize
let directory = ProcessInfoLite.environment("RELAY_BENCH_DIR") ?? "/var/tmp"

enum ProcessInfoLite {
    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
}

/// Creates (or reuses) the benchmark file with `bytes` of blocks reserved.
func prepareFile(_ path: String, bytes: Int) {
    let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
    precondition(fd >= 0, "cannot create \(path)")
    posix_fallocate(fd, 0, off_t(bytes))
    close(fd)
}

/// Ships `mebibytes` of 128-byte records from `producers` threads through a fresh channel
/// and shipper into `path`. Opening the channel (mapping and prefaulting its buffers) and
/// starting the shipper (ring, registration) happen before `measured` starts, as they do
/// once per process in production; the drain (close, then wait until everything is
/// written) is inside it.
func shipToFile(subbufferSize: Int, producers: Int, mebibytes: Int, path: String, measured: (() -> Void) -> Void) {
    // The shipper appends at the file's end: start from an empty file.
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    ftruncate(fd, 0)
    close(fd)
    let channel = try! RelayChannel(
        RelayChannelConfiguration(
            name: "shipbench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))",
            subbufferSize: subbufferSize,
            subbufferCount: max(8, (8 * mib) / subbufferSize),
            mode: .block()))
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    let shipper = RelayShipper(logger: logger)
    try! shipper.add(channel, sinks: [.file(RelayFileSinkConfiguration(path: path))])
    try! shipper.start()
    measured {
        onThreads(producers, total: mebibytes * recordsPerMiB) { _, count in
            let record = [UInt8](repeating: 0x61, count: recordSize - 1) + [0x0A]
            record.withUnsafeBytes { bytes in
                for _ in 0..<count { channel.write(bytes) }
            }
        }
        channel.close()
        precondition(shipper.stop(timeout: .seconds(120)), "shipper did not drain")
    }
}

/// Allocates the file's blocks before the loop writes over them from offset 0, as the file
/// sink's preallocation does (Glibc does not export `fallocate(2)` to Swift, so this is
/// `posix_fallocate`, which also sets the size; the loop overwrites every byte of it).
func reserveBlocks(_ fd: Int32, bytes: Int) {
    let rc = posix_fallocate(fd, 0, off_t(bytes))
    precondition(rc == 0, "posix_fallocate failed: errno \(rc)")
}

/// Writes `mebibytes` 1 MiB blocks into `path` with `write(2)`; the file's blocks are
/// reserved before `measured` starts, as the file sink preallocates before it writes.
func writeLoop(mebibytes: Int, path: String, measured: (() -> Void) -> Void) {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    ftruncate(fd, 0)
    reserveBlocks(fd, bytes: mebibytes * mib)
    let block = UnsafeMutableRawPointer.allocate(byteCount: mib, alignment: 4096)
    block.initializeMemory(as: UInt8.self, repeating: 0x61, count: mib)
    measured {
        for _ in 0..<mebibytes {
            var done = 0
            while done < mib {
                let n = write(fd, block + done, mib - done)
                precondition(n > 0, "write failed")
                done += n
            }
        }
    }
    close(fd)
    block.deallocate()
}

/// Runs `body` between the benchmark's start and stop of measurement.
func measuring(_ benchmark: Benchmark) -> (() -> Void) -> Void {
    { body in
        benchmark.startMeasurement()
        body()
        benchmark.stopMeasurement()
    }
}

let benchmarks: @Sendable () -> Void = {
    let size = 256
    let path = "\(directory)/relay-shipping-benchmark.out"
    prepareFile(path, bytes: size * mib)
    let config = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .cpuTotal],
        warmupIterations: 1,
        scalingFactor: .one,
        maxDuration: .seconds(20),
        maxIterations: 7
    )

    Benchmark("write(2) loop, 1 MiB blocks, 256 MiB", configuration: config) { benchmark in
        for _ in 0..<(benchmark.scaledIterations.count) {
            writeLoop(mebibytes: size, path: path, measured: measuring(benchmark))
        }
    }
    for subbufferSize in [64 * 1024, mib] {
        for producers in [1, 2] {
            Benchmark(
                "relay → file, \(subbufferSize / 1024) KiB sub-buffers, \(producers) producer\(producers == 1 ? "" : "s"), 256 MiB",
                configuration: config
            ) { benchmark in
                for _ in 0..<(benchmark.scaledIterations.count) {
                    shipToFile(
                        subbufferSize: subbufferSize, producers: producers, mebibytes: size, path: path,
                        measured: measuring(benchmark))
                }
            }
        }
    }
}
