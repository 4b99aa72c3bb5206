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
                    onThreads(threads, total: iterations) { _, count in
                        let record = [UInt8](repeating: 0x61, count: size)
                        record.withUnsafeBytes { bytes in
                            for _ in 0..<count { channel.write(bytes) }
                        }
                    }
                    benchmark.stopMeasurement()
                    blackHole(channel.stats().total.recordsLost)
                }
            }

            Benchmark("exclusive write \(size)B \(threads) thread\(threads == 1 ? "" : "s")", configuration: config) {
                benchmark in
                let channel = makeChannel(buffers: 1, exclusive: 2)
                let iterations = benchmark.scaledIterations.count
                benchmark.startMeasurement()
                onThreads(threads, total: iterations) { thread, count in
                    let writer = try! channel.makeExclusiveWriter(buffer: 1 + thread)
                    let record = [UInt8](repeating: 0x61, count: size)
                    record.withUnsafeBytes { bytes in
                        for _ in 0..<count { writer.write(bytes) }
                    }
                }
                benchmark.stopMeasurement()
                blackHole(channel.stats().total.recordsLost)
            }
        }
    }
}
