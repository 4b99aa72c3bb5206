import Foundation
import RelayTestSupport
import Testing

@testable import relay_bench

@Suite("CompareBaselines")
struct CompareBaselinesTests {
    private let workload = CompareBaselines.Workload(producers: 3, records: 20_000, recordSize: 48)

    private func verifyOptions(_ workload: CompareBaselines.Workload) -> VerifyOptions {
        VerifyOptions(recordSize: workload.recordSize, expectedProducers: workload.producers, expectedRecords: workload.records)
    }

    private func fileSize(_ path: String) throws -> UInt64 {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.size] as? NSNumber)?.uint64Value ?? 0
    }

    @Test("write-per-record output passes verify")
    func naiveFile() throws {
        let directory = try BenchTestDirectory()
        let path = directory.file("naive.log")
        let result = try CompareBaselines.naivePerRecord(self.workload, to: .file(path: path))
        #expect(result.name == "write-per-record")
        #expect(result.bytes == 20_000 * 48)
        #expect(result.elapsedSeconds > 0)
        #expect(result.cpuSeconds >= 0)
        #expect(try self.fileSize(path) == 20_000 * 48)
        let report = try RecordVerifier.verify(files: [path], options: self.verifyOptions(self.workload))
        #expect(report.ok, "\(report.problems)")
    }

    @Test("mutex-buffer output passes verify, with and without preallocation", arguments: [true, false])
    func mutexFile(preallocate: Bool) throws {
        let directory = try BenchTestDirectory()
        let path = directory.file("mutex.log")
        // 1000 B does not divide by 48: flushes happen before the buffer is exactly full.
        let result = try CompareBaselines.mutexBuffered(self.workload, bufferSize: 1000, to: .file(path: path, preallocate: preallocate))
        #expect(result.name == "mutex-buffer-1000")
        #expect(try self.fileSize(path) == 20_000 * 48)
        let report = try RecordVerifier.verify(files: [path], options: self.verifyOptions(self.workload))
        #expect(report.ok, "\(report.problems)")
        #expect(try CompareBaselines.mutexBuffered(self.workload, to: .file(path: path)).name == "mutex-buffer-64KiB")
    }

    @Test("raw write limit writes exactly the workload's byte count of whole records")
    func rawFile() throws {
        let directory = try BenchTestDirectory()
        let path = directory.file("raw.log")
        let result = try CompareBaselines.rawLimit(self.workload, chunkSize: 4096, to: .file(path: path))
        #expect(result.name == "raw-write-4KiB")
        #expect(try self.fileSize(path) == 20_000 * 48)
        // The repeated buffer holds well-formed records (duplicates, but no malformed lines).
        let report = try RecordVerifier.verify(files: [path], options: VerifyOptions(recordSize: 48))
        #expect(report.malformedLines == 0)
        #expect(report.records == 20_000)
        #expect(report.duplicateRecords > 0)
    }

    @Test("memcpy limit reports the workload's bytes")
    func memcpyLimit() throws {
        let result = try CompareBaselines.memcpyLimit(CompareBaselines.Workload(producers: 2, records: 100_000, recordSize: 64))
        #expect(result.name == "memcpy")
        #expect(result.bytes == 6_400_000)
        #expect(result.bytesPerSecond > 0)
    }

    @Test("socket baselines deliver verifiable records through the loopback receiver")
    func sockets() throws {
        let directory = try BenchTestDirectory()
        for variant in ["naive", "mutex", "raw"] {
            let output = directory.file("\(variant).log")
            let receiver = try LoopbackReceiver(outputPath: output)
            let fd = try receiver.connect()
            defer { close(fd) }
            let result: BaselineResult
            switch variant {
            case "naive": result = try CompareBaselines.naivePerRecord(self.workload, to: .socket(fd: fd))
            case "mutex": result = try CompareBaselines.mutexBuffered(self.workload, to: .socket(fd: fd))
            default: result = try CompareBaselines.rawLimit(self.workload, to: .socket(fd: fd))
            }
            let received = try receiver.finish()
            #expect(received.accepted)
            #expect(received.bytes == 20_000 * 48, "\(variant)")
            #expect(result.bytes == received.bytes)
            let report = try RecordVerifier.verify(files: [output], options: self.verifyOptions(self.workload))
            if variant == "raw" {
                #expect(result.name == "raw-send-1MiB")
                #expect(report.malformedLines == 0)
            } else {
                #expect(result.name == (variant == "naive" ? "send-per-record" : "mutex-buffer-64KiB"))
                #expect(report.ok, "\(variant): \(report.problems)")
            }
        }
    }

    @Test("with a peer it does not control, a socket baseline's clock stops once the peer took every byte, as swift-relay's does, not when the peer closes")
    func acknowledgedEnd() throws {
        let (listener, port) = try StreamReceiver.tcpListener()
        defer { close(listener) }
        let total = 20_000 * 48
        let done = DispatchSemaphore(value: 0)
        let read = DispatchSemaphore(value: 0)
        let peer = Thread {
            // Reads everything, then keeps the connection open until the test is done: a
            // collector that does not close after a client's data.
            let connection = accept(listener, nil, nil)
            var buffer = [UInt8](repeating: 0, count: 65536)
            var got = 0
            while connection >= 0 && got < total {
                let n = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                got += n
            }
            read.signal()
            done.wait()
            if connection >= 0 { close(connection) }
        }
        peer.start()
        defer { done.signal() }
        let fd = try Preflight.connectTCP(host: "127.0.0.1", port: UInt16(port), timeout: .seconds(5))
        defer { close(fd) }
        let result = try CompareBaselines.rawLimit(self.workload, to: .socket(fd: fd, end: .acknowledged, drainTimeout: .seconds(10)))
        #expect(result.bytes == UInt64(total))
        #expect(read.wait(timeout: .now() + 10) == .success, "the peer got every byte")
    }

    @Test("bad destinations and workloads are one-line errors")
    func errors() throws {
        let directory = try BenchTestDirectory()
        #expect(throws: BenchError.self) {
            try CompareBaselines.naivePerRecord(self.workload, to: .file(path: directory.file("missing/dir.log")))
        }
        #expect(throws: BenchError("descriptor 0 is not a socket: connect one before running socket baselines")) {
            try CompareBaselines.rawLimit(self.workload, to: .socket(fd: 0))
        }
        #expect(throws: BenchError("record size 8 is too small: use --record-size 32 or more")) {
            try CompareBaselines.memcpyLimit(CompareBaselines.Workload(producers: 1, records: 10, recordSize: 8))
        }
        #expect(throws: BenchError("record count 0 is invalid: use --records 1 or more")) {
            try CompareBaselines.memcpyLimit(CompareBaselines.Workload(producers: 1, records: 0, recordSize: 64))
        }
        #expect(throws: BenchError.self) { try LoopbackReceiver(outputPath: "/proc/relay-bench-cannot-write") }
    }

    @Test("a receiver that fails mid-stream makes the sender fail, not hang")
    func failingReceiver() throws {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let receiver = try LoopbackReceiver(outputPath: "/dev/full")
        let fd = try receiver.connect()
        defer { close(fd) }
        let big = CompareBaselines.Workload(producers: 1, records: 2_000_000, recordSize: 64)
        #expect(throws: BenchError.self) { try CompareBaselines.rawLimit(big, to: .socket(fd: fd)) }
        #expect(throws: BenchError.self) { try receiver.finish() }
    }

    @Test("a receiver nobody connects to finishes promptly")
    func idleReceiver() throws {
        let receiver = try LoopbackReceiver()
        let start = ContinuousClock.now
        let result = try receiver.finish()
        #expect(!result.accepted)
        #expect(result.bytes == 0)
        #expect(ContinuousClock.now - start < .seconds(1))
    }
}
