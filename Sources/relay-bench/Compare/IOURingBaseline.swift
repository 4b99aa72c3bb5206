import Dispatch
import Glibc
import Relay
import RelayShipper
import Synchronization
import SystemPackage

extension CompareBaselines {
    /// Why io_uring cannot be used here (and so neither the shipper nor this baseline), or `nil`.
    static var ioURingUnavailableReason: String? {
        RelayShipper.probeIOURing()
    }

    /// Plain io_uring writes without registered buffers: what a careful hand-written io_uring
    /// logger does, and what swift-relay adds its lock-free reservations and registered
    /// (zero-copy) buffers to.
    ///
    /// Each producer formats records into a 1 MiB block it owns (taken from a shared pool of
    /// preallocated, pre-touched blocks), and hands a full block to one I/O thread through a
    /// mutex-protected queue: one lock round trip per block, not per record. The I/O thread owns
    /// an io_uring and writes blocks with `IORING_OP_WRITE` at explicit offsets, up to
    /// `queueDepth` in flight, then returns each block to the pool. Sockets get one `send`
    /// (`MSG_WAITALL`) in flight at a time, since concurrent sends on a stream may interleave.
    /// The output holds every record exactly once (per producer in order), so `verify` accepts it.
    ///
    /// - Parameters:
    ///   - blockSize: Bytes per block (rounded down to whole records), 1 MiB by default.
    ///   - queueDepth: Writes in flight for files, 8 by default.
    /// - Returns: The measurement, named `io_uring-write-1MiB` or `io_uring-send-1MiB`.
    /// - Throws: ``BenchError`` when io_uring is unavailable or the I/O fails.
    static func ioURing(_ workload: Workload, blockSize: Int = 1 << 20, queueDepth: Int = 8, to destination: Destination) throws(BenchError) -> BaselineResult {
        try workload.validate()
        guard blockSize >= workload.recordSize else {
            throw BenchError("block size \(blockSize) is smaller than the record size \(workload.recordSize): use a larger block")
        }
        if let problem = RelayShipper.probeIOURing() {
            throw BenchError("the io_uring baseline cannot run: \(problem)")
        }
        let formatter = try RecordFormatter(size: workload.recordSize)
        let target = try OpenedDestination(destination, totalBytes: workload.totalBytes)
        defer { target.close() }
        let depth = target.isSocket ? 1 : max(1, queueDepth)
        let pool = BlockPool(blocks: max(16, 2 * workload.producers + depth), blockSize: blockSize, recordSize: workload.recordSize)
        defer { pool.deallocate() }
        let failure = FirstFailure()
        let ioFailure = RelayMutex<BenchError?>(nil)
        let size = workload.recordSize
        let fd = target.fd
        let isSocket = target.isSocket
        let producers = workload.producers
        let measured = try BaselineMeasurement.run { () throws(BenchError) in
            let writer = try BenchThread(name: "uring-io") {
                let error = IOURingWriter.run(pool: pool, fd: fd, isSocket: isSocket, depth: depth, producers: producers, failure: failure)
                if let error { ioFailure.withLock { $0 = error } }
            }
            do throws(BenchError) {
                try BenchThread.runAll(count: producers, name: "uring") { producer in
                    let count = RecordSplit.count(forProducer: producer, total: workload.records, producers: producers)
                    var block = -1
                    var fill = 0
                    var sequence: UInt64 = 0
                    let cursor = RecordCursor(formatter: formatter, producer: producer)
                    while sequence < count && !failure.hasFailed {
                        if block < 0 {
                            block = pool.takeFree()
                            fill = 0
                        }
                        cursor.next(to: pool.address(of: block) + fill)
                        fill += size
                        if fill + size > pool.blockCapacity {
                            pool.enqueue(block: block, length: fill)
                            block = -1
                        }
                        sequence += 1
                    }
                    if block >= 0 {
                        if fill > 0 { pool.enqueue(block: block, length: fill) } else { pool.release(block) }
                    }
                    pool.enqueueFinished()
                }
            } catch {
                // Producers that started have finished; tell the writer about the rest.
                for _ in 0..<producers { pool.enqueueFinished() }
                writer.join()
                throw error
            }
            writer.join()
            if let error = ioFailure.withLock({ $0 }) { throw error }
            try failure.check(destination)
            try target.finishStream()
        }
        let kind = isSocket ? "send" : "write"
        return BaselineResult(
            name: "io_uring-\(kind)-\(SizeParser.formatSize(UInt64(blockSize)))",
            records: workload.records,
            bytes: workload.totalBytes,
            elapsedSeconds: measured.seconds,
            cpuSeconds: measured.cpuSeconds,
            note: isSocket ? "per-producer blocks, 1 I/O thread, 1 send in flight" : "per-producer blocks, 1 I/O thread, QD \(depth), unregistered"
        )
    }
}

/// The io_uring baseline's blocks: a free list and a FIFO of full blocks, each guarded by a
/// mutex and counted by a semaphore (so waiting costs nothing while there is work).
final class BlockPool: @unchecked Sendable {
    // @unchecked: `base` is written once in init; each block's bytes belong to one thread at a
    // time (producer, then I/O thread), handed over through the mutex-protected queues.
    private let base: UnsafeMutableRawPointer
    private let stride: Int
    /// Usable bytes per block: whole records only.
    let blockCapacity: Int
    /// The number of blocks.
    let count: Int
    private let free: RelayMutex<[Int]>
    private let freeCount: DispatchSemaphore
    private let queue: RelayMutex<FIFO>
    private let queued = DispatchSemaphore(value: 0)

    /// A queued block; `index` -1 means "a producer finished".
    struct Item: Sendable {
        var index: Int
        var length: Int
    }

    private struct FIFO: Sendable {
        var items: [Item]
        var head = 0
        var count = 0

        init(capacity: Int) {
            self.items = [Item](repeating: Item(index: 0, length: 0), count: capacity)
        }

        mutating func push(_ item: Item) {
            precondition(self.count < self.items.count, "block queue overflow")
            self.items[(self.head + self.count) % self.items.count] = item
            self.count += 1
        }

        mutating func pop() -> Item {
            precondition(self.count > 0, "block queue underflow")
            let item = self.items[self.head]
            self.head = (self.head + 1) % self.items.count
            self.count -= 1
            return item
        }
    }

    /// Allocates and touches `blocks` blocks of `blockSize` bytes.
    init(blocks: Int, blockSize: Int, recordSize: Int) {
        self.count = blocks
        self.stride = (blockSize + 4095) & ~4095
        self.blockCapacity = blockSize / recordSize * recordSize
        self.base = .allocate(byteCount: self.stride * blocks, alignment: 4096)
        // Touch every page now so page faults are not measured (relay prefaults its buffers too).
        memset(self.base, 0, self.stride * blocks)
        self.free = RelayMutex(Array((0..<blocks).reversed()))
        self.freeCount = DispatchSemaphore(value: blocks)
        // Every block plus one "finished" marker per producer can be queued at once; the
        // producer count is at most `blocks / 2`.
        self.queue = RelayMutex(FIFO(capacity: blocks * 2))
    }

    /// Frees the memory; no thread may use the pool any more.
    func deallocate() {
        self.base.deallocate()
    }

    /// The first byte of block `index`.
    func address(of index: Int) -> UnsafeMutableRawPointer {
        self.base + index * self.stride
    }

    /// Waits for a free block and takes it.
    func takeFree() -> Int {
        self.freeCount.wait()
        return self.free.withLock { $0.removeLast() }
    }

    /// Returns a block to the free list.
    func release(_ index: Int) {
        self.free.withLock { $0.append(index) }
        self.freeCount.signal()
    }

    /// Queues a full block for the I/O thread.
    func enqueue(block: Int, length: Int) {
        self.queue.withLock { $0.push(Item(index: block, length: length)) }
        self.queued.signal()
    }

    /// Tells the I/O thread that one producer is done.
    func enqueueFinished() {
        self.queue.withLock { $0.push(Item(index: -1, length: 0)) }
        self.queued.signal()
    }

    /// The next queued item, waiting for one when `wait` is set; `nil` when none is queued.
    func dequeue(wait: Bool) -> Item? {
        if wait {
            self.queued.wait()
        } else if self.queued.wait(timeout: .now()) != .success {
            return nil
        }
        return self.queue.withLock { $0.pop() }
    }
}

/// The I/O thread of the io_uring baseline.
enum IOURingWriter {
    private struct InFlight {
        var block: Int
        var length: Int
        var offset: UInt64
        var done: Int
    }

    /// Writes queued blocks until every producer finished and nothing is in flight.
    ///
    /// - Returns: An error that is not an errno of the writes (those go to `failure`).
    static func run(pool: BlockPool, fd: Int32, isSocket: Bool, depth: Int, producers: Int, failure: FirstFailure) -> BenchError? {
        var ring: IOURing
        do {
            ring = try IOURing(entries: 64)
        } catch {
            failure.record(error.rawValue)
            IOURingWriter.drain(pool: pool, producers: producers)
            return BenchError("cannot create an io_uring for the baseline: \(error); check kernel.io_uring_disabled and RLIMIT_MEMLOCK")
        }
        let descriptor = FileDescriptor(rawValue: fd)
        var completions = CompletionBuffer(capacity: 64)
        var slots = [InFlight?](repeating: nil, count: depth)
        var freeSlots = Array((0..<depth).reversed())
        var inFlight = 0
        var finished = 0
        var offset: UInt64 = 0
        let messageFlags = Int32(MSG_WAITALL) | Int32(MSG_NOSIGNAL)

        func submit(_ slot: Int, ring: inout IOURing) -> Bool {
            let entry = slots[slot]!
            let bytes = UnsafeRawBufferPointer(start: pool.address(of: entry.block) + entry.done, count: entry.length - entry.done)
            do throws(IOURing.SubmitError) {
                if isSocket {
                    try ring.send(descriptor, bytes, messageFlags: messageFlags, userData: UInt64(slot))
                } else {
                    try ring.write(descriptor, bytes, at: entry.offset + UInt64(entry.done), userData: UInt64(slot))
                }
                return true
            } catch {
                switch error {
                case .reapFirst: failure.record(EAGAIN)
                case .failed(let errno): failure.record(errno.rawValue)
                }
                return false
            }
        }

        func finish(_ slot: Int) {
            pool.release(slots[slot]!.block)
            slots[slot] = nil
            freeSlots.append(slot)
            inFlight -= 1
        }

        func take(_ item: BlockPool.Item, ring: inout IOURing) {
            if item.index < 0 {
                finished += 1
                return
            }
            if failure.hasFailed {
                pool.release(item.index)
                return
            }
            let slot = freeSlots.removeLast()
            slots[slot] = InFlight(block: item.index, length: item.length, offset: offset, done: 0)
            offset += UInt64(item.length)
            inFlight += 1
            if !submit(slot, ring: &ring) { finish(slot) }
        }

        while true {
            while inFlight < depth, let item = pool.dequeue(wait: false) {
                take(item, ring: &ring)
            }
            if inFlight == 0 {
                if finished == producers { break }
                if let item = pool.dequeue(wait: true) { take(item, ring: &ring) }
                continue
            }
            // With room for more writes, wake up now and then to pick up newly queued blocks.
            do {
                try ring.submitAndWait(minCompletions: 1, timeoutNanoseconds: inFlight < depth ? 250_000 : nil)
                try ring.reap(into: &completions)
            } catch {
                failure.record(error.rawValue)
                // Nothing more completes reliably: give the blocks back and stop writing.
                for slot in 0..<depth where slots[slot] != nil { finish(slot) }
                continue
            }
            for index in 0..<completions.count {
                let completion = completions[index]
                let slot = Int(completion.userData)
                guard slot < depth, var entry = slots[slot] else { continue }
                let result = completion.result
                if result == -EINTR || result == -EAGAIN {
                    if !submit(slot, ring: &ring) { finish(slot) }
                    continue
                }
                if result <= 0 {
                    failure.record(result == 0 ? EIO : -result)
                    finish(slot)
                    continue
                }
                entry.done += Int(result)
                slots[slot] = entry
                if entry.done < entry.length {
                    if !submit(slot, ring: &ring) { finish(slot) }
                } else {
                    finish(slot)
                }
            }
        }
        return nil
    }

    /// Without a ring: return every block until all producers finished.
    private static func drain(pool: BlockPool, producers: Int) {
        var finished = 0
        while finished < producers {
            guard let item = pool.dequeue(wait: true) else { continue }
            if item.index < 0 { finished += 1 } else { pool.release(item.index) }
        }
    }
}
