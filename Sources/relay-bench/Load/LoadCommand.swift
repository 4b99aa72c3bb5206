import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif

/// `relay-bench load`: a syslog load generator. Sends RFC 5424 messages of a fixed size over N TCP connections,
/// octet-counted (RFC 6587 §3.4.1) or LF-terminated, at full speed or at a set total rate, for a message count or
/// a duration, and reports messages per second.
///
/// Every message is distinct and self-describing: its MSG starts with `c=<connection> s=<sequence>` (fixed
/// width), so a receiver can check that each one arrived exactly once (see ``LoadMessageLayout``).
struct LoadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Send RFC 5424 syslog frames over TCP connections and report messages/s.",
        discussion: """
            Each connection runs on its own thread and sends prebuilt batches with blocking send(2), so the \
            receiver's back-pressure (TCP flow control) sets the pace at full speed. Messages are \
            `<134>1 TIMESTAMP HOST relay-bench PID load - c=NNNN s=NNNNNNNNNNNN xxxx…`, padded to --size bytes.
            """
    )

    /// Output framing.
    enum Framing: String, ExpressibleByArgument, CaseIterable, Sendable {
        /// `LEN SP MSG`.
        case octetCounting = "octet-counting"
        /// `MSG LF`.
        case lf
    }

    @Option(help: "Receiver, host:port.")
    var target = "127.0.0.1:5140"

    @Option(help: "Concurrent TCP connections.")
    var connections = 4

    @Option(help: "Total messages per second over all connections (e.g. 200k); 0 sends at full speed.")
    var rate = CountArgument(0)

    @Option(help: "Bytes per syslog message, without framing (at least \(LoadMessageLayout.minimumSize)).")
    var size = 256

    @Option(help: "Messages to send in total, e.g. 3M (k/M/G are powers of ten; default 1M unless --duration is given).")
    var count: CountArgument?

    @Option(help: "Send for this many seconds instead of a count.")
    var duration: Double?

    @Option(help: "octet-counting or lf.")
    var framing: Framing = .octetCounting

    @Option(help: "HOSTNAME field of the messages.")
    var hostname = "bench-host"

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func validate() throws {
        guard self.connections >= 1 && self.connections <= 4096 else {
            throw ValidationError("--connections must be 1...4096")
        }
        guard self.size >= LoadMessageLayout.minimumSize && self.size <= 1 << 20 else {
            throw ValidationError("--size must be \(LoadMessageLayout.minimumSize)...1048576 bytes")
        }
        guard self.rate.value <= UInt64(Int.max) else { throw ValidationError("--rate is too large") }
        if let count = self.count, count.value < 1 || count.value > UInt64(Int.max) {
            throw ValidationError("--count must be at least 1")
        }
        if let duration = self.duration, !(duration > 0) { throw ValidationError("--duration must be positive") }
        if let duration = self.duration, !(duration <= 86_400) { throw ValidationError("--duration must be at most 86400 seconds") }
        if self.count != nil && self.duration != nil {
            throw ValidationError("give either --count or --duration, not both")
        }
        guard self.hostname.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) && !self.hostname.isEmpty else {
            throw ValidationError("--hostname must be printable ASCII without spaces")
        }
        guard self.hostname.utf8.count <= 255 else {
            throw ValidationError("--hostname must be at most 255 bytes (RFC 5424)")
        }
        let header = LoadMessageLayout.headerLength(hostname: self.hostname)
        guard self.size > header else {
            throw ValidationError("--size must be more than \(header) bytes with this --hostname")
        }
    }

    func run() throws {
        let endpoint = try LoadEndpoint.resolve(self.target)
        let layout = LoadMessageLayout(size: self.size, hostname: self.hostname, framing: self.framing)
        let total = self.duration == nil ? Int(self.count?.value ?? 1_000_000) : nil
        let plan = LoadPlan(
            endpoint: endpoint,
            layout: layout,
            connections: self.connections,
            totalMessages: total,
            duration: self.duration.map { Duration.nanoseconds(Int64($0 * 1e9)) },
            rate: Int(self.rate.value)
        )
        let result = try plan.run()
        if self.json {
            print(result.json(size: self.size, framing: self.framing.rawValue, connections: self.connections))
        } else {
            print(result.text(size: self.size, framing: self.framing.rawValue, connections: self.connections))
        }
    }
}
