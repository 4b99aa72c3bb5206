import Benchmark
import BenchSupport
import CBenchSupport
import Glibc
import Logging
import Relay
import RelayShipper
import Synchronization

// Ring-path benchmarks: producer → relay channel → io_uring shipper → file, for 64 KiB
// and 1 MiB sub-buffers, next to a plain write(2) loop of 1 MiB blocks writing the same
// number of bytes to the same disk, in the same run. Also in the run:
// - the pipeline bounds: 1 or 2 threads copy the same records into 1 MiB blocks, another
//   write(2)s them (what any design with producer threads and a writer thread pays for
//   handing bytes across cores, and, with 2 producers, for 3 threads on this 2-CPU machine);
// - the 1 MiB rows with exclusive writers (is the producer's per-record cost the limit?)
//   and with WRITE_FIXED for these buffered writes (what the default plain WRITE saves);
// - to the disk, 1 GiB ending with fdatasync (the `dd conv=fdatasync` end point), relay
//   with the library's default (writeback left to the kernel) and with early writeback every
//   8 MiB (relayd's default), which also has a 256 MiB row (what it costs while the data is
//   still arriving).
//
// One benchmark iteration writes 256 MiB (2 Mi records of 128 B), so "Throughput (# / s)"
// counts 256 MiB units per second; read the wall-clock p50 (256 MiB / p50 = GB/s). A relay
// sample closes the channel and waits until the shipper has written everything (the drain
// is inside the measurement; opening the channel and starting the shipper, once-per-process
// costs, are not). Every variant empties the same file (truncation frees its blocks and drops
// its cached pages) and then, before the clock starts, reserves the blocks of everything it
// will write with fallocate(FALLOC_FL_KEEP_SIZE), the size staying 0: so no side pays for block
// allocation during the write, every write extends the file the same way, and both allocate
// page-cache pages the same way. (The file sink's own preallocation, 64 MiB ahead of its writes,
// then finds the blocks there: its calls, inside the measurement, allocate nothing.) This VM's
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
func shipToFile(
    subbufferSize: Int, producers: Int, exclusive: Bool = false, fixedWrites: Bool = false, mebibytes: Int, path: String,
    durable: Bool = false, writeback: RelayFileSinkConfiguration.Writeback = .default, measured: (() -> Void) -> Void
) {
    // The shipper appends at the file's end: start from an empty file, its blocks reserved as
    // the loop's are.
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    ftruncate(fd, 0)
    reserveBlocks(fd, bytes: mebibytes * mib)
    close(fd)
    let channel = try! RelayChannel(
        RelayChannelConfiguration(
            name: "shipbench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))",
            subbufferSize: subbufferSize,
            subbufferCount: max(8, (8 * mib) / subbufferSize),
            mode: .block(),
            // Exclusive writers get a buffer each; the one shared buffer stays empty.
            buffers: exclusive ? 1 : nil,
            exclusiveBuffers: exclusive ? producers : 0))
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    let shipper = RelayShipper(logger: logger)
    try! shipper.add(
        channel,
        sinks: [.file(RelayFileSinkConfiguration(path: path, writeback: writeback, fixedBufferWrites: fixedWrites ? .always : .automatic))])
    try! shipper.start()
    measured {
        onThreads(producers, total: mebibytes * recordsPerMiB) { producer, count in
            let record = [UInt8](repeating: 0x61, count: recordSize - 1) + [0x0A]
            record.withUnsafeBytes { bytes in
                if exclusive {
                    let writer = try! channel.makeExclusiveWriter(buffer: channel.sharedBuffers + producer)
                    for _ in 0..<count { writer.write(bytes) }
                } else {
                    for _ in 0..<count { channel.write(bytes) }
                }
            }
        }
        channel.close()
        precondition(shipper.stop(timeout: .seconds(120)), "shipper did not drain")
        if durable { dataSync(path) }
    }
}

/// `fdatasync(2)` of the file at `path`: on the disk, every byte written to it so far (the
/// `dd conv=fdatasync` end point).
func dataSync(_ path: String) {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    precondition(fd >= 0 && fdatasync(fd) == 0, "fdatasync of \(path) failed")
    close(fd)
}

/// Allocates the first `bytes` of the file's blocks, its size unchanged (fallocate(2) with
/// `FALLOC_FL_KEEP_SIZE`, as the file sink's preallocation does), before the clock starts.
func reserveBlocks(_ fd: Int32, bytes: Int) {
    let rc = CBenchSupport_reserve_blocks(fd, Int64(bytes))
    precondition(rc == 0, "fallocate failed: errno \(rc)")
}

/// Writes `mebibytes` 1 MiB blocks into `path` with `write(2)`; the file's blocks are
/// reserved before `measured` starts, as the file sink preallocates before it writes.
func writeLoop(mebibytes: Int, path: String, durable: Bool = false, measured: (() -> Void) -> Void) {
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
        if durable { precondition(fdatasync(fd) == 0, "fdatasync failed") }
    }
    close(fd)
    block.deallocate()
}

/// The hand-off words of ``pipelineLoop(producers:mebibytes:path:measured:)``: per producer,
/// how many blocks it filled and how many of them the writer wrote. Each is a 32-bit futex
/// word bound into raw memory of its own 64-byte line, so a thread that must wait sleeps
/// (FUTEX_WAIT) instead of spinning: with more threads than this machine's 2 CPUs, a spinning
/// waiter would take CPU from the thread it waits for.
final class PipelineWords: @unchecked Sendable {
    // @unchecked: `memory` is written only through the atomics bound into it.
    private let memory: UnsafeMutableRawPointer
    private let producers: Int

    init(producers: Int) {
        self.producers = producers
        self.memory = .allocate(byteCount: 2 * producers * 64, alignment: 64)
        for word in 0..<(2 * producers) {
            (self.memory + word * 64).bindMemory(to: Atomic<UInt32>.self, capacity: 1).initialize(to: Atomic(0))
        }
    }

    deinit { self.memory.deallocate() }

    /// Blocks producer `p` filled.
    func filled(_ p: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        (self.memory + p * 64).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// Blocks of producer `p` the writer wrote (free again).
    func written(_ p: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        (self.memory + (self.producers + p) * 64).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// Waits until `word` reaches at least `target`.
    static func wait(_ word: UnsafeMutablePointer<Atomic<UInt32>>, reaches target: UInt32) {
        var spins = 0
        while true {
            // acquiring: pairs with the releasing store in `advance`; what the other thread did
            // before (filled the block, or write(2) copied it) happens before our use of it.
            let value = word.pointee.load(ordering: .acquiring)
            if value >= target { return }
            spins += 1
            if spins < 64 { continue }
            CBenchSupport_futex_wait(UnsafeMutableRawPointer(word), value)
        }
    }

    /// Stores `value` into `word` and wakes its waiters.
    static func advance(_ word: UnsafeMutablePointer<Atomic<UInt32>>, to value: UInt32) {
        // releasing: pairs with the acquiring load in `wait`.
        word.pointee.store(value, ordering: .releasing)
        CBenchSupport_futex_wake_all(UnsafeMutableRawPointer(word))
    }
}

/// The best a design with `producers` producer threads and one writer thread can do on this
/// machine: each producer fills 1 MiB blocks of its own (8 in rotation, 8 MiB: a relay
/// buffer's size) with the same 128-byte record copies as the relay producers (no
/// reservation, no shared word per record), and the writer `write(2)`s full blocks, taking
/// the producers in turn. Every byte crosses cores, and there are more threads than this
/// machine's 2 CPUs as soon as there are 2 producers: the bound the relay rows are measured
/// against next to the single-threaded loop.
func pipelineLoop(producers: Int, mebibytes: Int, path: String, measured: (() -> Void) -> Void) {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    ftruncate(fd, 0)
    reserveBlocks(fd, bytes: mebibytes * mib)
    let blocks = 8
    let perProducer = mebibytes / producers
    let base = UnsafeMutableRawPointer.allocate(byteCount: producers * blocks * mib, alignment: 4096)
    base.initializeMemory(as: UInt8.self, repeating: 0, count: producers * blocks * mib)
    let address = Int(bitPattern: base)  // the blocks outlive every thread
    let words = PipelineWords(producers: producers)
    measured {
        onThreads(producers + 1, total: producers + 1) { role, _ in
            let base = UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped
            if role < producers {
                let ring = base + role * blocks * mib
                let record = [UInt8](repeating: 0x61, count: recordSize - 1) + [0x0A]
                record.withUnsafeBytes { bytes in
                    for block in 0..<perProducer {
                        // A block is refilled only after write(2) copied it.
                        if block >= blocks { PipelineWords.wait(words.written(role), reaches: UInt32(block - blocks + 1)) }
                        let start = ring + (block % blocks) * mib
                        for r in 0..<recordsPerMiB {
                            (start + r * recordSize).copyMemory(from: bytes.baseAddress!, byteCount: recordSize)
                        }
                        PipelineWords.advance(words.filled(role), to: UInt32(block + 1))
                    }
                }
            } else {
                for block in 0..<perProducer {
                    for producer in 0..<producers {
                        PipelineWords.wait(words.filled(producer), reaches: UInt32(block + 1))
                        let start = base + producer * blocks * mib + (block % blocks) * mib
                        var done = 0
                        while done < mib {
                            let n = write(fd, start + done, mib - done)
                            precondition(n > 0, "write failed")
                            done += n
                        }
                        PipelineWords.advance(words.written(producer), to: UInt32(block + 1))
                    }
                }
            }
        }
    }
    close(fd)
    base.deallocate()
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
    for producers in [1, 2] {
        let threads = producers == 1 ? "1 producer thread" : "\(producers) producer threads"
        Benchmark("pipeline bound: \(threads) + 1 write(2) thread, 1 MiB blocks, 256 MiB", configuration: config) { benchmark in
            for _ in 0..<(benchmark.scaledIterations.count) {
                pipelineLoop(producers: producers, mebibytes: size, path: path, measured: measuring(benchmark))
            }
        }
    }
    // The relay rows: the default at 64 KiB and 1 MiB sub-buffers, then at 1 MiB with
    // exclusive writers and with WRITE_FIXED for these buffered writes.
    struct Variant {
        var subbufferSize: Int
        var producers: Int
        var exclusive = false
        var fixedWrites = false
        var earlyWriteback = false
    }
    var variants: [Variant] = []
    for subbufferSize in [64 * 1024, mib] {
        for producers in [1, 2] { variants.append(Variant(subbufferSize: subbufferSize, producers: producers)) }
    }
    // What starting writeback every 8 MiB (relayd's default) costs while the data is still being
    // written: the disk writes the other rows leave for later happen inside the measurement.
    variants.append(Variant(subbufferSize: mib, producers: 2, earlyWriteback: true))
    for producers in [1, 2] {
        variants.append(Variant(subbufferSize: mib, producers: producers, exclusive: true))
        variants.append(Variant(subbufferSize: mib, producers: producers, fixedWrites: true))
    }
    // To the disk: 1 GiB, ending with fdatasync inside the measurement (the `dd bs=1M
    // conv=fdatasync` end point), where the disk's write bandwidth, not the page-cache copy,
    // sets the pace. Relay's row is the file-target configuration: 2 producers, 1 MiB
    // sub-buffers, plain format.
    let durableSize = 1024
    let durablePath = "\(directory)/relay-shipping-benchmark-durable.out"
    prepareFile(durablePath, bytes: durableSize * mib)
    var durableConfig = config
    durableConfig.maxDuration = .seconds(30)  // a sample takes about a second
    Benchmark("write(2) loop, 1 MiB blocks, 1 GiB + fdatasync", configuration: durableConfig) { benchmark in
        for _ in 0..<(benchmark.scaledIterations.count) {
            writeLoop(mebibytes: durableSize, path: durablePath, durable: true, measured: measuring(benchmark))
        }
    }
    Benchmark("relay → file, 1024 KiB sub-buffers, 2 producers, 1 GiB + fdatasync", configuration: durableConfig) { benchmark in
        for _ in 0..<(benchmark.scaledIterations.count) {
            shipToFile(
                subbufferSize: mib, producers: 2, mebibytes: durableSize, path: durablePath, durable: true,
                measured: measuring(benchmark))
        }
    }
    // The same with early writeback every 8 MiB (relayd's default; the library leaves writeback
    // to the kernel): the disk is written while the sink writes, so the final fdatasync finds
    // little left.
    Benchmark(
        "relay → file, 1024 KiB sub-buffers, 2 producers, writeback every 8 MiB, 1 GiB + fdatasync", configuration: durableConfig
    ) { benchmark in
        for _ in 0..<(benchmark.scaledIterations.count) {
            shipToFile(
                subbufferSize: mib, producers: 2, mebibytes: durableSize, path: durablePath, durable: true,
                writeback: .everyBytes(8 * mib), measured: measuring(benchmark))
        }
    }

    for v in variants {
        let writers = "\(v.producers) \(v.exclusive ? "exclusive writer" : "producer")\(v.producers == 1 ? "" : "s")"
        Benchmark(
            "relay → file, \(v.subbufferSize / 1024) KiB sub-buffers, \(writers)\(v.fixedWrites ? ", WRITE_FIXED" : "")\(v.earlyWriteback ? ", writeback every 8 MiB" : ""), 256 MiB",
            configuration: config
        ) { benchmark in
            for _ in 0..<(benchmark.scaledIterations.count) {
                shipToFile(
                    subbufferSize: v.subbufferSize, producers: v.producers, exclusive: v.exclusive,
                    fixedWrites: v.fixedWrites, mebibytes: size, path: path, writeback: v.earlyWriteback ? .everyBytes(8 * mib) : .default,
                    measured: measuring(benchmark))
            }
        }
    }
}
