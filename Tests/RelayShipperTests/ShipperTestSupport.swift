import Logging
import Relay
import RelayShipper
import RelayTestSupport
import Testing

/// Whether io_uring works here; tests that need it skip (with the reason) when it does not.
let ioUringAvailable: Bool = RelayShipper.probeIOURing() == nil

func testLogger() -> Logger {
    var logger = Logger(label: "test.shipper")
    logger.logLevel = .warning
    return logger
}

/// Writes `count` lines `line(i)` from this thread and returns their bytes concatenated: what
/// the destination must hold afterwards. Counts the writes the channel did not take.
@discardableResult
func writeSequentialLines(_ channel: RelayChannel, count: Int, refused: inout Int, _ line: (Int) -> String) -> [UInt8] {
    var expected: [UInt8] = []
    for i in 0..<count {
        let bytes = Array(line(i).utf8)
        expected += bytes
        if channel.write(bytes) != .written { refused += 1 }
    }
    return expected
}

/// Ships lines with a backlog: writes `early` lines before starting `shipper`, so their
/// delivered sub-buffers are all queued when it starts (they must leave in batches), then
/// `late` more while it runs; closes the channel and stops the shipper. Returns every byte
/// written, in order: what the destination must hold.
func shipWithBacklog(
    _ channel: RelayChannel, _ shipper: RelayShipper, early: Int, late: Int,
    sourceLocation: SourceLocation = #_sourceLocation, _ line: (_ early: Bool, _ index: Int) -> String
) throws -> [UInt8] {
    var refused = 0
    var expected = writeSequentialLines(channel, count: early, refused: &refused) { line(true, $0) }
    try shipper.start()
    expected += writeSequentialLines(channel, count: late, refused: &refused) { line(false, $0) }
    #expect(refused == 0, sourceLocation: sourceLocation)
    channel.close()
    #expect(shipper.stop(timeout: .seconds(30)), sourceLocation: sourceLocation)
    return expected
}

/// The rotated files of `path` (`path.1`, `path.2`, …), newest first, until one is missing.
func readRotatedFiles(_ path: String) -> [[UInt8]] {
    var files: [[UInt8]] = []
    while let bytes = readFileBytes("\(path).\(files.count + 1)") {
        files.append(bytes)
    }
    return files
}

/// Writes `lines` text lines "p<producer> <seq> <padding>\n" from `producers` threads.
func writeLines(_ channel: RelayChannel, producers: Int, perProducer: Int, width: Int = 60) {
    TestThreads.run(count: producers) { producer in
        var line = [UInt8](repeating: 0x78, count: width)
        for sequence in 0..<perProducer {
            let text = Array("p\(producer) \(sequence) ".utf8)
            line.replaceSubrange(0..<text.count, with: text)
            line[width - 1] = 0x0A
            _ = line.withUnsafeBytes { channel.write($0) }
            line = [UInt8](repeating: 0x78, count: width)
        }
    }
}

/// Parses lines written by `writeLines`, returning (producer, sequence) pairs in file order.
func parseLines(_ bytes: [UInt8]) -> (records: [(Int, Int)], malformed: Int) {
    var records: [(Int, Int)] = []
    var malformed = 0
    var start = 0
    for i in bytes.indices where bytes[i] == 0x0A {
        let line = String(decoding: bytes[start..<i], as: UTF8.self)
        start = i + 1
        let parts = line.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("p"), let p = Int(parts[0].dropFirst()), let s = Int(parts[1]) else {
            malformed += 1
            continue
        }
        records.append((p, s))
    }
    if start < bytes.count { malformed += 1 }
    return (records, malformed)
}

/// Checks every (producer, sequence) appears exactly once.
func expectExactlyOnce(_ records: [(Int, Int)], producers: Int, perProducer: Int, sourceLocation: SourceLocation = #_sourceLocation) {
    var seen = [[Bool]](repeating: [Bool](repeating: false, count: perProducer), count: producers)
    var duplicates = 0
    for (p, s) in records {
        guard p < producers, s < perProducer else {
            duplicates += 1
            continue
        }
        if seen[p][s] { duplicates += 1 }
        seen[p][s] = true
    }
    let missing = seen.reduce(0) { $0 + $1.filter { !$0 }.count }
    #expect(missing == 0, "missing records", sourceLocation: sourceLocation)
    #expect(duplicates == 0, "duplicated records", sourceLocation: sourceLocation)
}
