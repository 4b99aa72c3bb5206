import Benchmark
import BenchSupport
import Relay
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// Engine benchmarks: ns per record for the shared (multi-producer-safe) and exclusive
// (`__relay_write`) paths, 16/128/1024-byte records, 1 and 2 threads, next to a
// memcpy-only baseline measured in the same run. The shared path runs twice: per-CPU
// buffers with restartable sequences (the default), and with locked instructions
// (`perCPUFastPath: false`, what hosts without rseq get).
//
// Channels run in overwrite mode so no consumer is needed and every write succeeds
// (the sub-buffer switch costs are included). Each benchmark iteration is one record;
// with 2 threads the iterations are split between the threads, so the reported time
// per iteration is the aggregate cost per record.

let recordSizes = [16, 128, 1024]

func makeChannel(buffers: Int?, exclusive: Int, perCPU: Bool = true) -> RelayChannel {
    try! RelayChannel(
        RelayChannelConfiguration(
            name: "bench-\(UInt32.random(in: 0...UInt32.max))",
            subbufferSize: 64 * 1024,
            subbufferCount: 8,
            mode: .overwrite,
            buffers: buffers,
            exclusiveBuffers: exclusive,
            perCPUFastPath: perCPU
        ))
}


/// The speed-up of 2 threads over 1 on the same path, ×100, measured back to back inside one
/// benchmark iteration (1 thread then 2, or 2 then 1, alternating), so both sides of the ratio
/// come from the same few milliseconds of this drifting host.
let twoThreadSpeedUp = BenchmarkMetric.custom("2-thread speed-up ×100", polarity: .prefersLarger, useScalingFactor: false)

/// Wall-clock nanoseconds of `body`.
func nanoseconds(_ body: () -> Void) -> UInt64 {
    var start = timespec()
    var end = timespec()
    clock_gettime(CLOCK_MONOTONIC, &start)
    body()
    clock_gettime(CLOCK_MONOTONIC, &end)
    return UInt64(end.tv_sec - start.tv_sec) * 1_000_000_000 + UInt64(end.tv_nsec) - UInt64(start.tv_nsec)
}

/// Writes `records` records of `size` bytes on `threads` threads into `channel`, through the
/// shared path or (with `exclusive`) thread t through exclusive buffer 1 + t; with `pinned`,
/// thread t runs on CPU t (see `onThreads`).
func writeRecords(
    _ channel: RelayChannel, size: Int = 128, threads: Int, records: Int, exclusive: Bool, pinned: Bool = false
) {
    onThreads(threads, total: records, pinned: pinned) { thread, count in
        let record = [UInt8](repeating: 0x61, count: size)
        record.withUnsafeBytes { bytes in
            if exclusive {
                let writer = try! channel.makeExclusiveWriter(buffer: 1 + thread)
                for _ in 0..<count { writer.write(bytes) }
            } else {
                for _ in 0..<count { channel.write(bytes) }
            }
        }
    }
}

let benchmarks: @Sendable () -> Void = {
    let config = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions],
        warmupIterations: 1000,
        scalingFactor: .mega,
        maxDuration: .seconds(3),
        maxIterations: 20,
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])]
    )

    for size in recordSizes {
        // memcpy-only baseline: the same bytes appended into a ring of the same size.
        Benchmark("memcpy baseline \(size)B", configuration: config) { benchmark in
            let ringSize = 64 * 1024 * 8
            let ring = UnsafeMutableRawPointer.allocate(byteCount: ringSize, alignment: 4096)
            defer { ring.deallocate() }
            let record = [UInt8](repeating: 0x61, count: size)
            var offset = 0
            benchmark.startMeasurement()
            record.withUnsafeBytes { bytes in
                for _ in benchmark.scaledIterations {
                    if offset + size > ringSize { offset = 0 }
                    (ring + offset).copyMemory(from: bytes.baseAddress!, byteCount: size)
                    offset += size
                }
            }
            blackHole(ring)
        }

        for threads in [1, 2] {
            for (label, perCPU) in [("shared write", true), ("shared write locked", false)] {
                Benchmark("\(label) \(size)B \(threads) thread\(threads == 1 ? "" : "s")", configuration: config) {
                    benchmark in
                    // One buffer per CPU (the default): each thread writes its own CPU's buffer.
                    let channel = makeChannel(buffers: nil, exclusive: 0, perCPU: perCPU)
                    let iterations = benchmark.scaledIterations.count
                    benchmark.startMeasurement()
                    writeRecords(channel, size: size, threads: threads, records: iterations, exclusive: false)
                    benchmark.stopMeasurement()
                    blackHole(channel.stats().total.recordsLost)
                }
            }

            Benchmark("exclusive write \(size)B \(threads) thread\(threads == 1 ? "" : "s")", configuration: config) {
                benchmark in
                let channel = makeChannel(buffers: 1, exclusive: 2)
                let iterations = benchmark.scaledIterations.count
                benchmark.startMeasurement()
                writeRecords(channel, size: size, threads: threads, records: iterations, exclusive: true)
                benchmark.stopMeasurement()
                blackHole(channel.stats().total.recordsLost)
            }
        }
    }

    // Scaling: 2 threads vs 1 on 128-byte records, each iteration timing both back to back.
    let scalingConfig = Benchmark.Configuration(
        metrics: [twoThreadSpeedUp],
        warmupIterations: 1,
        scalingFactor: .one,
        maxDuration: .seconds(10),
        maxIterations: 21
    )
    // Floating: threads go wherever the scheduler puts them, the 1-thread side on the benchmark's
    // own (main) thread. Pinned: thread t on CPU t, the 1-thread side on a new thread on CPU 0, so
    // the ratio compares thread counts only (see `onThreads`).
    for (label, exclusive) in [("shared write", false), ("exclusive write", true)] {
        for pinned in [false, true] {
            Benchmark("\(label) 128B, 2 threads vs 1\(pinned ? ", pinned" : "")", configuration: scalingConfig) {
                benchmark in
                let channel = exclusive ? makeChannel(buffers: 1, exclusive: 2) : makeChannel(buffers: nil, exclusive: 0)
                let records = 2_000_000
                func timed(_ threads: Int) -> UInt64 {
                    nanoseconds {
                        writeRecords(channel, threads: threads, records: records, exclusive: exclusive, pinned: pinned)
                    }
                }
                for iteration in benchmark.scaledIterations {
                    var one: UInt64 = 0
                    var two: UInt64 = 0
                    if iteration % 2 == 0 {
                        one = timed(1)
                        two = timed(2)
                    } else {
                        two = timed(2)
                        one = timed(1)
                    }
                    benchmark.measurement(twoThreadSpeedUp, Int(one * 100 / max(two, 1)))
                }
                blackHole(channel.stats().total.recordsLost)
            }
        }
    }
}
