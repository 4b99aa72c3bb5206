import ArgumentParser
import Foundation
import Testing

@testable import relay_bench

/// Parses `arguments` as relay-bench would, builds the subcommand's configuration, and returns
/// what `main` would print and exit with.
private func diagnosis(_ arguments: [String]) -> RelayBench.Diagnosis {
    do {
        let command = try RelayBench.parseAsRoot(arguments)
        switch command {
        case let run as RunCommand: _ = try run.makeConfiguration()
        case let compare as CompareCommand: _ = try compare.makeSettings()
        case let sweep as SweepCommand: _ = try sweep.makePlan()
        default: break
        }
        return RelayBench.Diagnosis(text: nil, toStandardOutput: false, status: 0)
    } catch {
        return RelayBench.diagnose(error)
    }
}

@Suite("Command line")
struct CommandLineTests {
    @Test("count, byte, rate and list arguments")
    func argumentTypes() {
        #expect(CountArgument(argument: "16M")?.value == 16_000_000)
        #expect(CountArgument(argument: "1_000")?.value == 1_000)
        #expect(CountArgument(argument: "500k")?.value == 500_000)
        #expect(CountArgument(argument: "2G")?.value == 2_000_000_000)
        #expect(CountArgument(argument: "12")?.value == 12)
        #expect(CountArgument(argument: "1.5M") == nil)
        #expect(CountArgument(argument: "-3") == nil)
        #expect(CountArgument(argument: "M") == nil)
        #expect(CountArgument(argument: "99999999999999999999") == nil)
        #expect(CountArgument(16_000_000).description == "16M")
        #expect(ByteCountArgument(argument: "1MiB")?.value == 1 << 20)
        #expect(ByteCountArgument(argument: "64K")?.value == 64 << 10)
        #expect(ByteCountArgument(argument: "lots") == nil)
        #expect(RateArgument(argument: "1.5M")?.value == 1_500_000)
        #expect(RateArgument(argument: "0") == nil)
        #expect(RateArgument(argument: "fast") == nil)
        #expect(CommaList<Int>(argument: "16,64,256")?.values == [16, 64, 256])
        #expect(CommaList<Int>(argument: "16,,256") == nil)
        #expect(CommaList<ByteCountArgument>(argument: "4KiB,1MiB")?.values.map(\.value) == [4096, 1 << 20])
    }

    @Test("run: defaults")
    func runDefaults() throws {
        let configuration = try RunCommand.parse([]).makeConfiguration()
        #expect(configuration == RunConfiguration(producers: 1, amount: .records(1_000_000), recordSize: 128, subbufferSize: 1 << 20, subbufferCount: 8, mode: .block, sinks: [.null]))
    }

    @Test("run: every option")
    func runOptions() throws {
        let command = try RunCommand.parse([
            "--producers", "4", "--records", "16M", "--rate", "50k", "--record-size", "256", "--subbuf-size", "256KiB",
            "--subbufs", "16", "--buffers", "2", "--mode", "drop", "--sink", "null", "--sink", "file:/tmp/relay-bench-x.log,fsync=100ms",
            "--sink", "tcp:127.0.0.1:9000", "--json", "--verify",
        ])
        #expect(command.json)
        let configuration = try command.makeConfiguration()
        #expect(configuration.producers == 4)
        #expect(configuration.amount == .records(16_000_000))
        #expect(configuration.ratePerProducer == 50_000)
        #expect(configuration.recordSize == 256)
        #expect(configuration.subbufferSize == 256 << 10)
        #expect(configuration.subbufferCount == 16)
        #expect(configuration.buffers == 2)
        #expect(configuration.mode == .drop)
        #expect(configuration.sinks == [
            .null, .file(path: "/tmp/relay-bench-x.log", options: FileSinkOptions(fsync: .interval(.milliseconds(100)))),
            .tcp(host: "127.0.0.1", port: 9000, format: .plain),
        ])
        let timed = try RunCommand.parse(["--seconds", "2.5", "--mode", "overwrite"]).makeConfiguration()
        #expect(timed.amount == .seconds(2.5))
        #expect(timed.mode == .overwrite)
    }

    @Test(
        "run: bad input is one line naming the problem and the fix, exit status 2",
        arguments: [
            (["run", "--sink", "bogus:x"], "unknown sink 'bogus:x'"),
            (["run", "--sink", "tcp:localhost"], "has no port"),
            (["run", "--sink", "file:/tmp/a.log,odirect"], "add format=packets or drop odirect"),
            (["run", "--sink", "tcp:127.0.0.1:9,format=packets"], "socket sinks send plain records"),
            (["run", "--sink", "file:/tmp/a.log", "--sink", "file:/tmp/a.log"], "used by two sinks"),
            (["run", "--sink", "file:/tmp/a.log,writeback=4KiB"], "use writeback=64KiB or more (e.g. writeback=8MiB), or writeback=kernel"),
            (["run", "--sink", "file-per-buffer:/tmp/d,writeback=soon"], "use a size like writeback=8MiB (64KiB or more) or writeback=kernel"),
            (["run", "--producers", "0"], "use --producers 1 or more"),
            (["run", "--producers", "many"], "see 'relay-bench help <command>'"),
            (["run", "--records", "0"], "use --records 1 or more"),
            (["run", "--records", "10", "--seconds", "1"], "use one of them"),
            (["run", "--seconds", "-1"], "--seconds"),
            (["run", "--record-size", "16"], "use --record-size 32 or more"),
            (["run", "--subbuf-size", "5000"], "e.g. 8192"),
            (["run", "--subbufs", "3"], "power of two from 2 to 65536"),
            (["run", "--record-size", "8192", "--subbuf-size", "4096"], "use --subbuf-size 16384 or a smaller --record-size"),
            (["run", "--subbuf-size", "1GiB", "--subbufs", "2"], "exceeds 1 GiB per CPU"),
            (["run", "--buffers", "0"], "use --buffers from 1 to 4096"),
            (["run", "--mode", "ring"], "see 'relay-bench help <command>'"),
            (["run", "--verify"], "add --sink file:PATH"),
            (["run", "--bogus"], "Unknown option '--bogus'"),
            (["run", "--stall-timeout", "1e20"], "--stall-timeout"),
            (["run", "--records", "3", "--rate", "1e-11"], "--rate"),
            (["frobnicate"], "see 'relay-bench help <command>'"),
        ] as [([String], String)]
    )
    func runRejects(arguments: [String], fragment: String) {
        let result = diagnosis(arguments)
        #expect(result.status == 2, "\(arguments)")
        #expect(!result.toStandardOutput)
        let text = result.text ?? ""
        #expect(text.hasPrefix("relay-bench: error: "), "\(text)")
        #expect(text.contains(fragment), "\(text)")
        #expect(!text.contains("\n"), "\(text)")
    }

    @Test("help goes to standard output with status 0")
    func help() async {
        let result = RelayBench.diagnose(CleanExit.helpRequest(RunCommand.self))
        #expect(result.status == 0)
        #expect(result.toStandardOutput)
        #expect(result.text?.contains("--record-size") == true)
        #expect(await RelayBench.main(arguments: ["run", "--help"]) == 0)
        #expect(await RelayBench.main(arguments: ["help", "compare"]) == 0)
        let names = RelayBench.configuration.subcommands.map { $0.configuration.commandName }
        #expect(["run", "compare", "sweep", "verify"].allSatisfy { names.contains($0) })
    }

    @Test("compare: defaults and options")
    func compareOptions() throws {
        let defaults = try CompareCommand.parse([]).makeSettings()
        #expect(defaults.workload == CompareBaselines.Workload(producers: 2, records: 4_000_000, recordSize: 128))
        #expect(defaults.target == .null)
        #expect(defaults.variants == [.relay, .naive, .mutex, .uring, .memcpy])
        #expect(defaults.repeats == 3 && defaults.warmups == 1 && !defaults.keep && !defaults.verify)
        let settings = try CompareCommand.parse([
            "--producers", "1", "--records", "8M", "--record-size", "64", "--subbuf-size", "4MiB", "--subbufs", "4",
            "--sink", "file:/tmp/relay-bench-cmp", "--repeat", "5", "--warmup", "0", "--variants", "relay,raw,memcpy", "--keep", "--verify", "--json",
        ]).makeSettings()
        #expect(settings.workload == CompareBaselines.Workload(producers: 1, records: 8_000_000, recordSize: 64))
        #expect(settings.subbufferSize == 4 << 20 && settings.subbufferCount == 4)
        #expect(settings.target == .file(path: "/tmp/relay-bench-cmp"))
        #expect(settings.variants == [.relay, .raw, .memcpy])
        #expect(settings.repeats == 5 && settings.warmups == 0 && settings.keep && settings.verify)
        #expect(try CompareTarget.parse("loopback") == .loopback)
        #expect(try CompareTarget.parse("tcp:127.0.0.1:9000") == .tcp(host: "127.0.0.1", port: 9000))
        #expect(try CompareTarget.parse("unix:/tmp/s") == .unix(path: "/tmp/s"))
        #expect(CompareVariant.naive.name(socket: true) == "send-per-record")
        #expect(CompareVariant.uring.name(socket: false) == "io_uring-write-1MiB")
    }

    @Test(
        "compare: bad input exits 2 with one line",
        arguments: [
            (["compare", "--records", "0"], "use --records 1 or more"),
            (["compare", "--repeat", "0"], "use --repeat from 1 to 1000"),
            (["compare", "--warmup", "-1"], "--warmup"),
            (["compare", "--variants", "raw,memcpy"], "must include relay"),
            (["compare", "--variants", "relay,fast"], "unknown variant 'fast'"),
            (["compare", "--variants", "relay,raw,raw"], "appears twice"),
            (["compare", "--sink", "file-per-buffer:/tmp/d"], "use file:PATH"),
            (["compare", "--sink", "file:/tmp/x,fsync=1s"], "without file options"),
            (["compare", "--sink", "smoke:signals"], "unknown sink"),
            (["compare", "--verify"], "use --sink file:PATH"),
            (["compare", "--subbuf-size", "3000"], "power of two"),
            (["compare", "--record-size", "31"], "use --record-size 32 or more"),
            (["compare", "--records", "20000000000000", "--record-size", "1048576", "--subbuf-size", "2MiB", "--sink", "file:/tmp/x"], "lower --records"),
            (["compare", "--producers", "65536", "--records", "600000000000000000"], "lower --records"),
            (["compare", "--record-size", "100000", "--subbuf-size", "1MiB"], "leave mutex out of --variants"),
        ] as [([String], String)]
    )
    func compareRejects(arguments: [String], fragment: String) {
        let result = diagnosis(arguments)
        #expect(result.status == 2, "\(arguments)")
        #expect(result.text?.contains(fragment) == true, "\(result.text ?? "")")
        #expect(result.text?.contains("\n") == false)
    }

    @Test("load: counts and rates take the same k/M/G suffixes as run")
    func loadCounts() throws {
        let load = try LoadCommand.parse(["--count", "3M", "--rate", "200k", "--connections", "8"])
        #expect(load.count?.value == 3_000_000)
        #expect(load.rate.value == 200_000)
        #expect(try LoadCommand.parse([]).rate.value == 0, "full speed by default")
        #expect(throws: (any Error).self) { try LoadCommand.parse(["--count", "0"]) }
        #expect(throws: (any Error).self) { try LoadCommand.parse(["--count", "3M", "--duration", "2"]) }
    }

    @Test("load: a hostname that leaves no room in the message, or breaks RFC 5424's 255 bytes, is rejected")
    func loadRejectsLongHostname() {
        let long = String(repeating: "h", count: 200)
        let tooSmall = diagnosis(["load", "--hostname", long, "--size", "128"])
        #expect(tooSmall.status == 2)
        #expect(tooSmall.text?.contains("--size") == true, "\(tooSmall.text ?? "")")
        #expect(diagnosis(["load", "--hostname", long, "--size", "512"]).status == 0)
        #expect(diagnosis(["load", "--hostname", String(repeating: "h", count: 256), "--size", "4096"]).status == 2)
    }

    @Test("load: a target without a port, or a bracketed IPv6 target without a colon before it, is rejected", arguments: ["[::1]5140", "[::1]", "[::1]x5140", "[::1]:", "127.0.0.1:"])
    func loadRejectsBracketWithoutColon(target: String) {
        #expect(throws: (any Error).self) { try LoadEndpoint.resolve(target) }
        #expect((try? LoadEndpoint.resolve("[::1]:5140")) != nil)
        #expect((try? LoadEndpoint.resolve("127.0.0.1:5140")) != nil)
    }

    @Test("load: a duration the clock cannot hold is bad input, not a crash", arguments: ["1e11", "inf"])
    func loadRejectsEndlessDuration(duration: String) {
        let result = diagnosis(["load", "--duration", duration])
        #expect(result.status == 2)
        #expect(result.text?.contains("--duration") == true, "\(result.text ?? "")")
    }

    @Test("sweep: the listed parameter is swept, the others fixed")
    func sweepPlan() throws {
        let (parameter, values, plans) = try SweepCommand.parse([
            "--record-size", "32,64,256", "--producers", "3", "--bytes", "1MiB", "--repeat", "1", "--warmup", "2",
        ]).makePlan()
        #expect(parameter == .recordSize)
        #expect(values == [32, 64, 256])
        #expect(plans.map(\.workload.recordSize) == [32, 64, 256])
        #expect(plans.map(\.workload.records) == [32_768, 16_384, 4_096])
        #expect(plans.allSatisfy { $0.workload.producers == 3 && $0.repeats == 1 })
        #expect(plans.map(\.warmups) == [2, 0, 0])
        let (byProducers, counts, producerPlans) = try SweepCommand.parse(["--producers", "1,2,4", "--records", "10k"]).makePlan()
        #expect(byProducers == .producers && counts == [1, 2, 4])
        #expect(producerPlans.map(\.workload.records) == [10_000, 10_000, 10_000])
        let (bySubbuf, sizes, _) = try SweepCommand.parse(["--subbuf-size", "64KiB,1MiB"]).makePlan()
        #expect(bySubbuf == .subbufSize && sizes == [64 << 10, 1 << 20])
    }

    @Test(
        "sweep: bad input exits 2 with one line",
        arguments: [
            (["sweep"], "nothing to sweep"),
            (["sweep", "--record-size", "64,128", "--producers", "1,2"], "sweep one at a time"),
            (["sweep", "--record-size", "16,64,256"], "record size 16 is too small: use --record-size 32 or more"),
            (["sweep", "--producers", "1,1"], "list each value once"),
            (["sweep", "--producers", "1,2", "--plot", "chart.png"], "does not end in .svg"),
            (["sweep", "--producers", "1,2", "--plot", "/nonexistent-relay-bench/x.svg"], "does not exist"),
            (["sweep", "--subbuf-size", "4KiB,3000"], "use a power of two from 4096"),
            (["sweep", "--record-size", "4096,131072", "--subbuf-size", "1MiB"], "leave mutex out of --variants"),
        ] as [([String], String)]
    )
    func sweepRejects(arguments: [String], fragment: String) {
        let result = diagnosis(arguments)
        #expect(result.status == 2, "\(arguments)")
        #expect(result.text?.contains(fragment) == true, "\(result.text ?? "")")
        #expect(result.text?.contains("\n") == false)
    }

    @Test("main returns 2 for unusable sinks without hanging")
    func unusableSinks() async throws {
        let directory = try BenchTestDirectory()
        let start = ContinuousClock.now
        // Nothing listens on port 1 of the loopback interface: connection refused.
        #expect(await RelayBench.main(arguments: ["run", "--records", "10", "--sink", "tcp:127.0.0.1:1"]) == 2)
        #expect(await RelayBench.main(arguments: ["run", "--records", "10", "--sink", "file:\(directory.file("missing/out.log"))"]) == 2)
        #expect(await RelayBench.main(arguments: ["run", "--records", "10", "--sink", "unix:\(directory.file("no.sock"))"]) == 2)
        #expect(await RelayBench.main(arguments: ["compare", "--records", "10", "--sink", "tcp:127.0.0.1:1"]) == 2)
        #expect(await RelayBench.main(arguments: ["run", "--subbufs", "7"]) == 2)
        #expect(ContinuousClock.now - start < .seconds(10))
    }
}

@Suite("load pacing")
struct LoadPacingTests {
    @Test("--rate is the total over all connections, also when it does not divide evenly")
    func rateSplitsExactly() throws {
        // 7 messages/s over 4 connections: 1.75/s each, so a connection's fifth message is due
        // after 4 / 1.75 = 2.29 s (at 1/s it would be 4 s, and 4 connections would send 4/s). The
        // upper bound leaves a loaded host 1.1 s of lateness and still fails the 1/s split.
        let plan = LoadPlan(
            endpoint: try LoadEndpoint.resolve("127.0.0.1:1"),
            layout: LoadMessageLayout(size: 128, hostname: "h", framing: .lf),
            connections: 4, totalMessages: 20, duration: nil, rate: 7)
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { for fd in pair { close(fd) } }
        let begin = ContinuousClock.now
        let (sent, failure) = plan.send(fd: pair[0], connection: 0, quota: 5, begin: begin)
        let elapsed = ContinuousClock.now - begin
        #expect(sent == 5 && failure == nil)
        #expect(elapsed >= .milliseconds(2_250), "\(elapsed)")
        #expect(elapsed < .milliseconds(3_400), "\(elapsed)")
    }
}
