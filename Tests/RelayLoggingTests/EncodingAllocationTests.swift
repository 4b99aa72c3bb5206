//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

// Allocation check of the encode path.
//
// A malloc counter cannot be installed safely inside the (multi-threaded, shared) test process:
// glibc has no malloc hooks any more, `mallinfo2()` cannot see an allocation that is freed again, and
// the Swift runtime's `_swift_allocObject` instrumentation hook crashes retain/release on this
// toolchain (Swift 6.3.1, Linux). So the test builds a tiny LD_PRELOAD library that wraps
// malloc/calloc/realloc/posix_memalign/aligned_alloc with a thread-local counter, re-runs this test
// binary with it preloaded and a filter selecting only `EncodingAllocationProbe`, and checks the
// counts the probe prints. The probe counts only its own thread, so nothing else in the child
// disturbs it.

#if os(Linux)
    import Foundation
    import Glibc
    import Logging
    import Relay
    import RelayTestSupport
    import Testing

    @testable import RelayLogging

    private let probeEnvironmentVariable = "RELAY_ENCODING_ALLOCATION_PROBE"

    private let counterSource = #"""
        #include <stddef.h>
        extern void *__libc_malloc(size_t);
        extern void *__libc_calloc(size_t, size_t);
        extern void *__libc_realloc(void *, size_t);
        extern void *__libc_memalign(size_t, size_t);
        static __thread long counting;
        static __thread long count;
        void *malloc(size_t n) { if (counting) count++; return __libc_malloc(n); }
        void *calloc(size_t a, size_t b) { if (counting) count++; return __libc_calloc(a, b); }
        void *realloc(void *p, size_t n) { if (counting) count++; return __libc_realloc(p, n); }
        void *aligned_alloc(size_t a, size_t n) { if (counting) count++; return __libc_memalign(a, n); }
        int posix_memalign(void **out, size_t a, size_t n) {
            if (counting) count++;
            void *p = __libc_memalign(a, n);
            if (!p) return 12;
            *out = p;
            return 0;
        }
        void relay_test_malloc_counter_start(void) { count = 0; counting = 1; }
        long relay_test_malloc_counter_stop(void) { counting = 0; return count; }
        """#

    /// A C compiler to build the counter with, if there is one.
    private let cCompiler: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") + ["/usr/bin"] {
            for name in ["cc", "clang", "gcc"] {
                let candidate = "\(directory)/\(name)"
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            }
        }
        return nil
    }()

    /// Runs a program and returns its exit status and combined output.
    private func run(_ executable: String, _ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    /// The records and formats whose encoding must not allocate.
    func encodingAllocationFreeCases() -> [(name: String, format: RecordFormat, record: LogRecordFields)] {
        let formats: [(String, RecordFormat)] = [
            ("json", .jsonLines), ("logfmt", .logfmt),
            ("rfc5424", .rfc5424(RFC5424Options(hostname: "h", appName: "a", procID: "1"))),
            ("rfc5424-octet", .rfc5424(RFC5424Options(hostname: "h", appName: "a", procID: "1", octetCounting: true))),
        ]
        let handler: Logger.Metadata = ["service": "api", "zone": "eu-1", "a": ["b": ["c", "d"]]]
        return formats.flatMap { name, format in
            [
                // Common case: the handler block is copied as is.
                (
                    "\(name)/common", format,
                    LogRecordFields(
                        timestampNanoseconds: encodingGoldenTimestamp, level: .info, label: "com.example.application",
                        message: "user \"bob\" logged in\nsecond line 😀 with a long enough text to be a heap string",
                        handlerMetadata: PreEncodedMetadata(handler, format: format),
                        providerMetadata: ["trace-id": "abc123", "span": "s"],
                        callMetadata: [
                            "user": ["id": "42", "roles": ["admin", "dev"]], "path": "/a b", "empty": [:],
                        ],
                        source: "App", file: "App/Handlers.swift", function: "login(user:)", line: 42
                    )
                ),
                // Collisions: handler entries copied one by one, a provider key overridden; keys
                // named like fixed fields (escaped with `_`, one longer than the name check's
                // scratch buffer).
                (
                    "\(name)/collisions", format,
                    LogRecordFields(
                        timestampNanoseconds: 0, level: .critical, label: "l", message: "m",
                        handlerMetadata: PreEncodedMetadata(handler, format: format),
                        providerMetadata: ["service": "p", "k": "p", "line": "p"],
                        callMetadata: [
                            "k": "c", "zone": "c", "msg": "c", "error": ["type": "c"],
                            String(repeating: "_", count: 70) + "source": "c",
                        ],
                        source: "S", file: "f", function: "g", line: 1
                    )
                ),
                // Handler metadata built for another format.
                (
                    "\(name)/other-style", format,
                    LogRecordFields(
                        timestampNanoseconds: 0, level: .debug, label: "l", message: "m",
                        handlerMetadata: PreEncodedMetadata(
                            handler, style: format.metadataStyle == .json ? .logfmt : .json),
                        source: "S", file: "f", function: "g", line: 1
                    )
                ),
            ]
        }
    }

    /// The handler cases whose log calls must not allocate: the fast path with 0, 3 and 10 entries,
    /// all three layers with collisions and nesting, a module name of 15 bytes (the longest small
    /// string), a long explicit source, and the general path (logfmt, RFC 5424).
    func handlerAllocationFreeCases() throws -> [(name: String, handler: RelayLogHandler, event: LogEvent)] {
        func channel() throws -> RelayChannel {
            try RelayChannel(
                RelayChannelConfiguration(
                    name: "alloc-\(UInt32.random(in: 0...UInt32.max))", subbufferSize: 1 << 22, subbufferCount: 4,
                    mode: .overwrite, buffers: 1))
        }
        let json = RelayLogWriter(channel: try channel())
        let provided: Logger.Metadata = ["trace-id": "4bf92f3577b34da6a3ce929d0e0e4736", "span": "s"]
        var layered = json.makeHandler(label: "com.example.layers", metadataProvider: Logger.MetadataProvider { provided })
        layered.metadata = ["service": "api", "span": "handler", "nested": ["a": ["b", "c"]]]
        var ten: Logger.Metadata = [:]
        for i in 0..<10 { ten["key-\(i)"] = .string("value number \(i) of ten") }
        let three: Logger.Metadata = ["request.id": "8f2c1a", "user": "alice", "path": "/api/v1/items/with/a/long/path"]
        // Not `#fileID`: this module's name (RelayLoggingTests) is longer than 15 bytes, so swift-log would
        // allocate the derived source on every call in the formats that read `event.source` (see
        // `handlerLongModuleCase()`).
        func event(
            _ metadata: Logger.Metadata?, source: String? = nil, file: String = "AllocProbe/EncodingAllocationTests.swift"
        ) -> LogEvent {
            LogEvent(
                level: .info, message: "request handled in the benchmark loop with a \"typical\" message",
                metadata: metadata, source: source, file: file, function: #function, line: #line)
        }
        let logfmt = RelayLogWriter(channel: try channel(), format: .logfmt)
        let syslog = RelayLogWriter(
            channel: try channel(), format: .rfc5424(RFC5424Options(hostname: "h", appName: "a", octetCounting: true)))
        return [
            ("handler-json-0", json.makeHandler(label: "l"), event(nil)),
            ("handler-json-3", json.makeHandler(label: "l"), event(three)),
            ("handler-json-10", json.makeHandler(label: "l"), event(ten)),
            ("handler-json-layers", layered, event(["span": "call", "list": ["x", ["y": "z"]]])),
            ("handler-json-15-byte-module", json.makeHandler(label: "l"), event(three, file: "ModuleOf15Bytes/File.swift")),
            (
                "handler-json-explicit-source", json.makeHandler(label: "l"),
                event(three, source: "AVeryLongExplicitSourceName", file: "AVeryLongModuleName/File.swift")
            ),
            ("handler-logfmt-3", logfmt.makeHandler(label: "l"), event(three)),
            ("handler-rfc5424-3", syslog.makeHandler(label: "l"), event(three)),
        ]
    }

    /// A call without an explicit source from a module whose name is longer than 15 UTF-8 bytes: swift-log
    /// builds `event.source` from `event.file` on every access, a heap string, which the JSON Lines fast
    /// path avoids by not reading it.
    func handlerLongModuleCase() throws -> (handler: RelayLogHandler, event: LogEvent) {
        let channel = try RelayChannel(
            RelayChannelConfiguration(
                name: "alloc-\(UInt32.random(in: 0...UInt32.max))", subbufferSize: 1 << 22, subbufferCount: 4,
                mode: .overwrite, buffers: 1))
        let handler = RelayLogWriter(channel: channel).makeHandler(label: "l")
        let event = LogEvent(
            level: .info, message: "m", metadata: ["user": "alice"], source: nil,
            file: "AVeryLongModuleName/File.swift", function: #function, line: #line)
        return (handler, event)
    }

    /// Runs only in the child process started by `EncodingAllocationTests`, with the counter preloaded.
    @Suite(
        "EncodingAllocationProbe", .enabled(if: ProcessInfo.processInfo.environment[probeEnvironmentVariable] != nil))
    struct EncodingAllocationProbe {
        typealias Start = @convention(c) () -> Void
        typealias Stop = @convention(c) () -> Int

        @Test("print malloc counts")
        func probe() throws {
            let handle = dlopen(nil, RTLD_NOW)
            let start = unsafeBitCast(try #require(dlsym(handle, "relay_test_malloc_counter_start")), to: Start.self)
            let stop = unsafeBitCast(try #require(dlsym(handle, "relay_test_malloc_counter_stop")), to: Stop.self)
            var storage = [UInt8](repeating: 0, count: 4096)
            var report = ""

            // Positive control: the counter sees Swift heap allocations.
            var keep: [EncodingTestConvertible] = []
            keep.reserveCapacity(10)
            start()
            for i in 0..<10 { keep.append(EncodingTestConvertible(description: String(repeating: "x", count: 20 + i))) }
            report += "ALLOCATIONS control \(stop())\n"

            for (name, format, record) in encodingAllocationFreeCases() {
                let encoder = LogRecordEncoder(format: format)
                var complete = 0
                var truncated = 0
                var needsLarger = 0
                let sizes = [4096, 4096, 200, 120]  // full, full, truncated, truncated or dropped
                storage.withUnsafeMutableBytes { raw in
                    // Warm up outside the count: the first call instantiates runtime metadata.
                    var warmUp = ByteCursor(raw)
                    _ = encoder.encode(record, into: &warmUp, maxBytes: 200)
                    start()
                    // Index loops: `for in` over an array allocates in unoptimised builds.
                    var s = 0
                    while s < sizes.count {
                        let maxBytes = sizes[s]
                        var repeats = 0
                        while repeats < 25 {
                            var cursor = ByteCursor(raw)
                            let outcome = encoder.encode(record, into: &cursor, maxBytes: maxBytes)
                            if outcome.isComplete { complete += 1 }
                            if outcome.truncated { truncated += 1 }
                            var small = ByteCursor(UnsafeMutableRawBufferPointer(rebasing: raw[0..<40]))
                            if encoder.encode(record, into: &small, maxBytes: maxBytes).needsLargerBuffer {
                                needsLarger += 1
                            }
                            repeats += 1
                        }
                        s += 1
                    }
                    let count = stop()
                    report +=
                        "ALLOCATIONS \(name) \(count) complete=\(complete) truncated=\(truncated) needsLarger=\(needsLarger)\n"
                }
            }

            // The handler: whole log(event:) calls into a relay channel (overwrite mode, so it never fills).
            // The count of a window of 1000 calls minus that of a window of 500 is the count of 500 calls,
            // without the constant cost of the window itself (the loop's own boxes).
            let longModule = try handlerLongModuleCase()
            for (name, handler, event) in try handlerAllocationFreeCases() + [("handler-json-long-module", longModule.handler, longModule.event)] {
                handler.log(event: event)  // warm up
                var counts: [Int] = []
                counts.reserveCapacity(2)
                for calls in [500, 1000] {
                    start()
                    var i = 0
                    while i < calls {
                        handler.log(event: event)
                        i += 1
                    }
                    counts.append(stop())
                }
                report += "ALLOCATIONS \(name) \(counts[1] - counts[0])\n"
            }

            // Negative control: descriptions of stringConvertible values and errors allocate.
            let described = LogRecordFields(
                timestampNanoseconds: 0, level: .info, label: "l", message: "m",
                callMetadata: [
                    "c": .stringConvertible(EncodingTestConvertible(description: String(repeating: "x", count: 40)))
                ],
                source: "S", file: "f", function: "g", line: 1, error: EncodingTestError(description: "e")
            )
            storage.withUnsafeMutableBytes { raw in
                start()
                var cursor = ByteCursor(raw)
                _ = LogRecordEncoder(format: .jsonLines).encode(described, into: &cursor, maxBytes: 4096)
                report += "ALLOCATIONS described \(stop())\n"
            }
            print(report, terminator: "")
        }
    }

    @Suite("Allocations")
    struct EncodingAllocationTests {
        @Test(
            "encoding without stringConvertible metadata or errors does not malloc",
            .enabled(if: cCompiler != nil, "needs a C compiler to build the malloc counter"),
            .enabled(if: ProcessInfo.processInfo.environment[probeEnvironmentVariable] == nil)
        )
        func encodeDoesNotAllocate() throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "relay-alloc-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let source = directory.appendingPathComponent("counter.c")
            let library = directory.appendingPathComponent("counter.so")
            try counterSource.write(to: source, atomically: true, encoding: .utf8)
            let (compileStatus, compileOutput) = try run(
                try #require(cCompiler), ["-shared", "-fPIC", "-O2", "-o", library.path, source.path]
            )
            try #require(compileStatus == 0, "compiling the counter failed: \(compileOutput)")

            let preload = [library.path, ProcessInfo.processInfo.environment["LD_PRELOAD"]].compactMap { $0 }
            let (status, output) = try ChildTestProcess.run(
                filter: "EncodingAllocationProbe",
                environment: ["LD_PRELOAD": preload.joined(separator: ":"), probeEnvironmentVariable: "1"])
            #expect(status == 0, "probe failed:\n\(output)")

            var counts: [String: Int] = [:]
            for line in output.split(separator: "\n") where line.hasPrefix("ALLOCATIONS ") {
                let fields = line.split(separator: " ")
                counts[String(fields[1])] = Int(fields[2])
                if fields.count > 3 {
                    // Each case must have exercised complete, truncated and too-small-buffer outcomes.
                    #expect(!line.contains("=0"), "\(line)")
                }
            }
            #expect(try #require(counts["control"]) >= 10, "the counter must see allocations")
            #expect(try #require(counts["described"]) > 0)
            let cases = encodingAllocationFreeCases().map(\.name) + (try handlerAllocationFreeCases()).map(\.name)
            #expect(cases.count == 20)
            for name in cases {
                #expect(counts[name] == 0, "\(name): \(counts[name].map(String.init) ?? "missing") mallocs\n\(output)")
            }
            // A module name longer than 15 bytes and no explicit source: swift-log would allocate the
            // `event.source` it derives on every read; the JSON Lines fast path writes the name from
            // `event.file` without reading it (`ImplicitSourceProbe`), so no call allocates.
            #expect(counts["handler-json-long-module"] == 0, "\(output)")
        }
    }
#endif
