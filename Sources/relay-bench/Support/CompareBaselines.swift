import CRelayLinux
import Glibc
import Relay
import Synchronization

/// One measured variant of `relay-bench compare` (a baseline or swift-relay itself).
struct BaselineResult: Codable, Sendable, Equatable {
    /// The variant name, e.g. `write-per-record`.
    var name: String
    /// Records produced (for the limits: records whose byte count was moved).
    var records: UInt64
    /// Bytes written, sent or copied.
    var bytes: UInt64
    /// Wall-clock seconds from the first record to the last byte accepted by the destination.
    var elapsedSeconds: Double
    /// Process CPU seconds (user + system) over the same interval; in-process receivers count too.
    var cpuSeconds: Double
    /// Free text about the variant.
    var note: String?

    /// Records per second.
    var recordsPerSecond: Double { self.elapsedSeconds > 0 ? Double(self.records) / self.elapsedSeconds : 0 }
    /// Bytes per second.
    var bytesPerSecond: Double { self.elapsedSeconds > 0 ? Double(self.bytes) / self.elapsedSeconds : 0 }

    /// Creates a result.
    init(name: String, records: UInt64, bytes: UInt64, elapsedSeconds: Double, cpuSeconds: Double, note: String? = nil) {
        self.name = name
        self.records = records
        self.bytes = bytes
        self.elapsedSeconds = elapsedSeconds
        self.cpuSeconds = cpuSeconds
        self.note = note
    }

    enum CodingKeys: String, CodingKey {
        case name, records, bytes
        case elapsedSeconds = "elapsed_seconds"
        case cpuSeconds = "cpu_seconds"
        case note
    }
}

/// The engine-independent baselines `relay-bench compare` runs next to swift-relay, all on the
/// same workload (producers × records × record size, records split as ``RecordSplit`` does):
///
/// - ``naivePerRecord(_:to:)``: one `pwrite(2)`/`send(2)` per record from every producer thread;
/// - ``mutexBuffered(_:bufferSize:to:)``: records copied into one mutex-protected 64 KiB buffer,
///   flushed with `write(2)` when full, as a typical hand-written sink does;
/// - ``rawLimit(_:chunkSize:to:)``: the same byte count written (or sent) in 1 MiB calls from one
///   pre-formatted buffer: the syscall/device limit, no formatting, no coordination;
/// - ``memcpyLimit(_:chunkSize:)``: the same bytes copied in memory: the memory-bandwidth limit.
///
/// Files are created (truncated) and preallocated with `fallocate(2)` (`FALLOC_FL_KEEP_SIZE`,
/// exactly as `compare` prepares swift-relay's file) before the clock starts; timing ends when the last byte was accepted by
/// the page cache, not at `fsync`. On sockets the clock stops when the stream reached its
/// ``StreamEnd``: the in-process receiver closed after reading everything, or, with a peer
/// `compare` does not control, that peer took every byte (as for swift-relay). The per-record and buffered variants write
/// intact records that `verify` accepts; the raw limit repeats one buffer and is not verifiable.
enum CompareBaselines {
    /// The workload every variant runs.
    struct Workload: Sendable, Equatable {
        var producers: Int
        var records: UInt64
        var recordSize: Int

        /// Creates a workload.
        init(producers: Int, records: UInt64, recordSize: Int) {
            self.producers = producers
            self.records = records
            self.recordSize = recordSize
        }

        /// Total bytes: records × record size.
        var totalBytes: UInt64 { self.records * UInt64(self.recordSize) }

        /// Checks the workload against the record format's limits.
        func validate() throws(BenchError) {
            _ = try RecordFormatter(size: self.recordSize)
            try RecordFormatter.validate(
                producers: self.producers,
                recordsPerProducer: RecordSplit.count(forProducer: 0, total: self.records, producers: max(self.producers, 1))
            )
            guard self.records > 0 else {
                throw BenchError("record count 0 is invalid: use --records 1 or more")
            }
            guard !self.records.multipliedReportingOverflow(by: UInt64(self.recordSize)).overflow else {
                throw BenchError("\(self.records) records of \(self.recordSize) bytes exceed 2^64 bytes: lower --records or --record-size")
            }
        }
    }

    /// Where a baseline's bytes go.
    enum Destination: Sendable, CustomStringConvertible {
        /// A file, created or truncated, preallocated to the workload's size when `preallocate`.
        case file(path: String, preallocate: Bool = true)
        /// A connected stream socket owned by the caller. When done, the baseline waits (up to
        /// `drainTimeout`) for the stream to reach `end`, so the elapsed time covers delivery.
        case socket(fd: Int32, end: StreamEnd = .peerClosed, drainTimeout: Duration = .seconds(30))

        var description: String {
            switch self {
            case .file(let path, _): return "file:\(path)"
            case .socket(let fd, _, _): return "socket(fd \(fd))"
            }
        }
    }

    /// When a baseline's stream counts as delivered, which is when its clock stops.
    enum StreamEnd: Sendable, Equatable {
        /// The baseline shuts down its write side and the peer closes after reading everything
        /// (``LoopbackReceiver`` does): what swift-relay's clock waits for with that receiver.
        case peerClosed
        /// The peer's TCP acknowledged every byte, or, on a Unix socket, the peer read every
        /// byte (`SIOCOUTQ` is 0): where swift-relay's clock stops with a peer it does not
        /// control (its stop returns once its socket sink saw exactly that). The caller closes
        /// the socket after the clock.
        case acknowledged
    }

    // MARK: Variants

    /// One syscall per record from `producers` threads sharing one descriptor.
    ///
    /// Files: `pwrite(2)` at an offset claimed with an atomic fetch-add, so records never overlap
    /// and no lock is taken (arrival order across producers varies, per producer it is in order).
    /// Sockets: `send(2)` per record under a mutex, because a blocking `send` on a stream socket
    /// can return partially or interleave with another thread's once the send buffer fills.
    ///
    /// - Returns: The measurement, named `write-per-record` or `send-per-record`.
    static func naivePerRecord(_ workload: Workload, to destination: Destination) throws(BenchError) -> BaselineResult {
        try workload.validate()
        let formatter = try RecordFormatter(size: workload.recordSize)
        let target = try OpenedDestination(destination, totalBytes: workload.totalBytes)
        defer { target.close() }
        let failure = FirstFailure()
        let cursor = SharedOffset()
        let sendLock = RelayMutex<Void>(())
        let size = workload.recordSize
        let isSocket = target.isSocket
        let fd = target.fd
        let measured = try BaselineMeasurement.run { () throws(BenchError) in
            try BenchThread.runAll(count: workload.producers, name: "naive") { producer in
                let record = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
                defer { record.deallocate() }
                let count = RecordSplit.count(forProducer: producer, total: workload.records, producers: workload.producers)
                var sequence: UInt64 = 0
                let records = RecordCursor(formatter: formatter, producer: producer)
                while sequence < count && !failure.hasFailed {
                    records.next(to: record)
                    let code: Int32
                    if isSocket {
                        code = sendLock.withLock { _ in POSIXIO.sendAll(fd, record, size) }
                    } else {
                        // Relaxed: the fetch-add only has to hand out distinct offsets; the data
                        // itself is published by pwrite, not through memory.
                        let offset = cursor.value.wrappingAdd(Int64(size), ordering: .relaxed).oldValue
                        code = POSIXIO.pwriteAll(fd, record, size, at: offset)
                    }
                    if code != 0 { failure.record(code) }
                    sequence += 1
                }
            }
            try failure.check(destination)
            try target.finishStream()
        }
        return BaselineResult(
            name: isSocket ? "send-per-record" : "write-per-record",
            records: workload.records,
            bytes: workload.totalBytes,
            elapsedSeconds: measured.seconds,
            cpuSeconds: measured.cpuSeconds,
            note: isSocket ? "1 send(2)/record, mutex-serialized" : "1 pwrite(2)/record, atomic offsets"
        )
    }

    /// Records appended to one mutex-protected buffer, written with `write(2)` (under the lock)
    /// whenever the next record would not fit; the remainder is flushed at the end.
    ///
    /// - Parameter bufferSize: The shared buffer's size, 64 KiB by default.
    /// - Returns: The measurement, named `mutex-buffer-64KiB` (or the given size).
    static func mutexBuffered(_ workload: Workload, bufferSize: Int = 64 << 10, to destination: Destination) throws(BenchError) -> BaselineResult {
        try workload.validate()
        guard bufferSize >= workload.recordSize else {
            throw BenchError("buffer size \(bufferSize) is smaller than the record size \(workload.recordSize): use a larger buffer")
        }
        let formatter = try RecordFormatter(size: workload.recordSize)
        let target = try OpenedDestination(destination, totalBytes: workload.totalBytes)
        defer { target.close() }
        let failure = FirstFailure()
        let shared = LockedBuffer(capacity: bufferSize)
        defer { shared.deallocate() }
        let size = workload.recordSize
        let fd = target.fd
        let isSocket = target.isSocket
        let measured = try BaselineMeasurement.run { () throws(BenchError) in
            try BenchThread.runAll(count: workload.producers, name: "mutexbuf") { producer in
                let record = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
                defer { record.deallocate() }
                let count = RecordSplit.count(forProducer: producer, total: workload.records, producers: workload.producers)
                var sequence: UInt64 = 0
                let records = RecordCursor(formatter: formatter, producer: producer)
                while sequence < count && !failure.hasFailed {
                    records.next(to: record)
                    let code = shared.state.withLock { state -> Int32 in
                        var code: Int32 = 0
                        if state.fill + size > state.capacity {
                            code = isSocket ? POSIXIO.sendAll(fd, state.base, state.fill) : POSIXIO.writeAll(fd, state.base, state.fill)
                            state.fill = 0
                        }
                        (state.base + state.fill).copyMemory(from: record, byteCount: size)
                        state.fill += size
                        return code
                    }
                    if code != 0 { failure.record(code) }
                    sequence += 1
                }
            }
            let code = shared.state.withLock { state -> Int32 in
                defer { state.fill = 0 }
                return isSocket ? POSIXIO.sendAll(fd, state.base, state.fill) : POSIXIO.writeAll(fd, state.base, state.fill)
            }
            if code != 0 { failure.record(code) }
            try failure.check(destination)
            try target.finishStream()
        }
        return BaselineResult(
            name: "mutex-buffer-\(SizeParser.formatSize(UInt64(bufferSize)))",
            records: workload.records,
            bytes: workload.totalBytes,
            elapsedSeconds: measured.seconds,
            cpuSeconds: measured.cpuSeconds,
            note: "shared buffer + \(isSocket ? "send" : "write")(2) when full"
        )
    }

    /// The I/O limit: the workload's byte count written (or sent) by one thread in `chunkSize`
    /// calls from one preallocated buffer of pre-formatted records, reused for every call.
    ///
    /// - Parameter chunkSize: Bytes per call, 1 MiB by default.
    /// - Returns: The measurement, named `raw-write-1MiB` or `raw-send-1MiB`; its output repeats
    ///   one buffer, so it does not pass `verify`.
    static func rawLimit(_ workload: Workload, chunkSize: Int = 1 << 20, to destination: Destination) throws(BenchError) -> BaselineResult {
        try workload.validate()
        let source = try PreformattedBuffer(workload: workload, size: chunkSize)
        defer { source.deallocate() }
        let target = try OpenedDestination(destination, totalBytes: workload.totalBytes)
        defer { target.close() }
        let total = workload.totalBytes
        let measured = try BaselineMeasurement.run { () throws(BenchError) in
            var remaining = total
            while remaining > 0 {
                let count = Int(min(UInt64(source.count), remaining))
                let code = target.isSocket ? POSIXIO.sendAll(target.fd, source.base, count) : POSIXIO.writeAll(target.fd, source.base, count)
                if code != 0 {
                    throw BenchError.system("raw \(target.isSocket ? "send" : "write") to \(destination) failed", errno: code, fix: "check free space or the receiver")
                }
                remaining -= UInt64(count)
            }
            try target.finishStream()
        }
        return BaselineResult(
            name: "raw-\(target.isSocket ? "send" : "write")-\(SizeParser.formatSize(UInt64(chunkSize)))",
            records: workload.records,
            bytes: total,
            elapsedSeconds: measured.seconds,
            cpuSeconds: measured.cpuSeconds,
            note: "1 thread, pre-formatted, limit (not verifiable)"
        )
    }

    /// The memory limit: the workload's byte count copied with `memcpy` in `chunkSize` pieces from
    /// a pre-formatted buffer into a 64 MiB destination (cycled), larger than any CPU cache.
    ///
    /// - Returns: The measurement, named `memcpy`.
    static func memcpyLimit(_ workload: Workload, chunkSize: Int = 1 << 20) throws(BenchError) -> BaselineResult {
        try workload.validate()
        let source = try PreformattedBuffer(workload: workload, size: chunkSize)
        defer { source.deallocate() }
        let destinationSize = max(64 << 20, source.count)
        let destination = UnsafeMutableRawPointer.allocate(byteCount: destinationSize, alignment: 4096)
        defer { destination.deallocate() }
        // Touch every page first so page faults are not part of the measurement.
        memset(destination, 0, destinationSize)
        let total = workload.totalBytes
        var checksum: UInt8 = 0
        let measured = try BaselineMeasurement.run { () throws(BenchError) in
            var remaining = total
            var offset = 0
            while remaining > 0 {
                let count = Int(min(UInt64(source.count), remaining))
                if offset + count > destinationSize { offset = 0 }
                memcpy(destination + offset, source.base, count)
                checksum &+= destination.load(fromByteOffset: offset + count - 1, as: UInt8.self)
                offset += count
                remaining -= UInt64(count)
            }
        }
        // Reading back a byte of every copy and passing the sum to an opaque function keeps the
        // optimizer from treating the copies as dead stores.
        keepObservable(checksum)
        return BaselineResult(
            name: "memcpy",
            records: workload.records,
            bytes: total,
            elapsedSeconds: measured.seconds,
            cpuSeconds: measured.cpuSeconds,
            note: "memory bandwidth limit"
        )
    }
}

// MARK: - Helpers

/// An opaque sink for values the benchmark computes only to keep work from being optimized away.
@inline(never)
@_optimize(none)
private func keepObservable(_ value: UInt8) {}

/// Wall-clock and process-CPU measurement of a block.
struct BaselineMeasurement {
    var seconds: Double
    var cpuSeconds: Double

    static func run(_ body: () throws(BenchError) -> Void) throws(BenchError) -> BaselineMeasurement {
        let cpuStart = ResourceUsage.process()
        let start = BenchClock.nanoseconds()
        try body()
        let end = BenchClock.nanoseconds()
        let cpu = ResourceUsage.process().since(cpuStart)
        return BaselineMeasurement(seconds: Double(end - start) / 1e9, cpuSeconds: cpu.cpuSeconds)
    }
}

/// A baseline's open destination.
struct OpenedDestination {
    let fd: Int32
    let isSocket: Bool
    let ownsDescriptor: Bool
    let drainTimeout: Duration
    let end: CompareBaselines.StreamEnd

    init(_ destination: CompareBaselines.Destination, totalBytes: UInt64) throws(BenchError) {
        switch destination {
        case .file(let path, let preallocate):
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                throw BenchError.system("cannot open '\(path)' for writing", errno: errno, fix: "pick a writable path")
            }
            if preallocate && totalBytes > 0 {
                // KEEP_SIZE, as for swift-relay's file: blocks are reserved, the size grows with
                // the writes, so every variant writes into the same kind of file.
                let rc = -CRelayLinux_fallocate(fd, 1, 0, Int64(clamping: totalBytes))
                if rc == ENOSPC {
                    POSIXIO.closeQuietly(fd)
                    throw BenchError("not enough space for \(totalBytes) bytes at '\(path)': free space or lower --records")
                }
            }
            self.fd = fd
            self.isSocket = false
            self.ownsDescriptor = true
            self.drainTimeout = .zero
            self.end = .peerClosed
        case .socket(let fd, let end, let drainTimeout):
            guard POSIXIO.isSocket(fd) else {
                throw BenchError("descriptor \(fd) is not a socket: connect one before running socket baselines")
            }
            self.fd = fd
            self.isSocket = true
            self.ownsDescriptor = false
            self.drainTimeout = drainTimeout
            self.end = end
        }
    }

    /// For sockets: waits (bounded) until the stream reached its ``CompareBaselines/StreamEnd``.
    func finishStream() throws(BenchError) {
        guard self.isSocket else { return }
        let deadline = ContinuousClock.now + self.drainTimeout
        if self.end == .acknowledged {
            while true {
                let unacknowledged = CRelayLinux_socket_unacked_bytes(self.fd)
                if unacknowledged == 0 { return }
                if unacknowledged < 0 {
                    throw BenchError.system("reading the socket's unacknowledged bytes (SIOCOUTQ) failed", errno: Int32(-unacknowledged), fix: "check the receiver")
                }
                guard ContinuousClock.now < deadline else {
                    throw BenchError("the receiver had not taken all the data \(SizeParser.formatDuration(self.drainTimeout)) after it was sent (\(unacknowledged) bytes outstanding): check that it reads")
                }
                usleep(50)
            }
        }
        _ = shutdown(self.fd, Int32(SHUT_WR))
        var scratch = [UInt8](repeating: 0, count: 4096)
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else {
                throw BenchError("the receiver did not close the connection within \(SizeParser.formatDuration(self.drainTimeout)) after the data: make it close at end of stream")
            }
            let (seconds, attoseconds) = remaining.components
            var descriptor = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, max(1, Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000)))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            let n = scratch.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 { return }  // orderly close: everything was read
            if n < 0 {
                let code = errno
                if code == EINTR || code == EAGAIN { continue }
                if code == ECONNRESET { return }
                throw BenchError.system("waiting for the receiver to finish failed", errno: code, fix: "check the receiver")
            }
        }
    }

    func close() {
        if self.ownsDescriptor { POSIXIO.closeQuietly(self.fd) }
    }
}

/// The first errno any producer thread hit; producers stop when it is set.
final class FirstFailure: Sendable {
    private let code = Atomic<Int32>(0)

    /// Whether a failure was recorded. Relaxed: a late stop costs a few extra records, nothing else.
    var hasFailed: Bool { self.code.load(ordering: .relaxed) != 0 }

    func record(_ errno: Int32) {
        // Relaxed: only the first non-zero value matters and nothing else is published with it.
        _ = self.code.compareExchange(expected: 0, desired: errno, ordering: .relaxed)
    }

    func check(_ destination: CompareBaselines.Destination) throws(BenchError) {
        // Relaxed suffices: the threads were joined, which orders their stores before this load.
        let code = self.code.load(ordering: .relaxed)
        guard code == 0 else {
            throw BenchError.system("writing to \(destination) failed", errno: code, fix: "check free space, permissions or the receiver")
        }
    }
}

/// A file offset handed out by fetch-add.
private final class SharedOffset: Sendable {
    let value = Atomic<Int64>(0)
}

/// The shared buffer of the mutex baseline.
private final class LockedBuffer: Sendable {
    // @unchecked: the pointer is only dereferenced while the mutex is held.
    struct State: @unchecked Sendable {
        var base: UnsafeMutableRawPointer
        var fill: Int
        var capacity: Int
    }

    let state: RelayMutex<State>

    init(capacity: Int) {
        self.state = RelayMutex(State(base: .allocate(byteCount: capacity, alignment: 4096), fill: 0, capacity: capacity))
    }

    func deallocate() {
        self.state.withLock { $0.base.deallocate() }
    }
}

/// Whole records (producers round-robin, rising sequences) filling about `size` bytes.
private struct PreformattedBuffer {
    let base: UnsafeMutableRawPointer
    let count: Int

    init(workload: CompareBaselines.Workload, size: Int) throws(BenchError) {
        guard size >= workload.recordSize else {
            throw BenchError("chunk size \(size) is smaller than the record size \(workload.recordSize): use a larger chunk")
        }
        let formatter = try RecordFormatter(size: workload.recordSize)
        let records = size / workload.recordSize
        self.count = records * workload.recordSize
        self.base = .allocate(byteCount: self.count, alignment: 4096)
        for index in 0..<records {
            formatter.write(
                producer: index % workload.producers,
                sequence: UInt64(index / workload.producers),
                to: self.base + index * workload.recordSize
            )
        }
    }

    func deallocate() {
        self.base.deallocate()
    }
}
