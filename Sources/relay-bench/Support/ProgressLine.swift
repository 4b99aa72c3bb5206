import Glibc

/// The once-a-second progress line `run` shows on a terminal: record rate, byte rate, drops and
/// buffer fill over the last interval, redrawn in place with `\r`.
///
/// It is only shown when the output is a TTY and `--json` is off (``isEnabled(json:fd:)``).
/// Feed it cumulative counters with ``update(records:bytes:dropped:bufferFill:nanoseconds:)``;
/// it turns them into rates against the previous sample.
struct ProgressLine: Sendable {
    private var lastRecords: UInt64 = 0
    private var lastBytes: UInt64 = 0
    private var lastNanoseconds: UInt64
    private let startNanoseconds: UInt64

    /// Starts the rate window at `nanoseconds` (a ``BenchClock`` reading).
    init(startNanoseconds: UInt64 = BenchClock.nanoseconds()) {
        self.lastNanoseconds = startNanoseconds
        self.startNanoseconds = startNanoseconds
    }

    /// Whether progress should be shown: `fd` is a terminal and JSON output is off.
    static func isEnabled(json: Bool, fd: Int32 = STDERR_FILENO) -> Bool {
        !json && isatty(fd) == 1
    }

    /// Takes a sample and renders the line (starting with `\r`, padded to erase a longer previous line).
    ///
    /// - Parameters:
    ///   - records: Records written so far (cumulative).
    ///   - bytes: Bytes shipped so far (cumulative).
    ///   - dropped: Records dropped so far (cumulative).
    ///   - bufferFill: The fullest buffer's fill, 0...1.
    ///   - nanoseconds: The sample time (``BenchClock``).
    mutating func update(records: UInt64, bytes: UInt64, dropped: UInt64, bufferFill: Double, nanoseconds: UInt64 = BenchClock.nanoseconds()) -> String {
        let interval = Double(nanoseconds &- self.lastNanoseconds) / 1e9
        let recordRate = interval > 0 ? Double(records &- self.lastRecords) / interval : 0
        let byteRate = interval > 0 ? Double(bytes &- self.lastBytes) / interval : 0
        self.lastRecords = records
        self.lastBytes = bytes
        self.lastNanoseconds = nanoseconds
        let elapsed = Double(nanoseconds &- self.startNanoseconds) / 1e9
        let fill = Int((min(max(bufferFill, 0), 1) * 100).rounded())
        let text = "\(BenchUnits.fixed(elapsed, 0))s  \(BenchUnits.recordRate(recordRate))  \(BenchUnits.byteRate(byteRate))  drops \(dropped)  fill \(fill)%"
        return "\r" + BenchUnits.pad(text, to: 72)
    }

    /// Writes `line` to `fd` without a newline (progress redraws in place).
    static func show(_ line: String, fd: Int32 = STDERR_FILENO) {
        var text = line
        text.withUTF8 { bytes in
            _ = POSIXIO.writeAll(fd, bytes.baseAddress!, bytes.count)
        }
    }

    /// Erases the progress line before the final report.
    static func clear(fd: Int32 = STDERR_FILENO) {
        ProgressLine.show("\r" + String(repeating: " ", count: 73) + "\r", fd: fd)
    }
}
