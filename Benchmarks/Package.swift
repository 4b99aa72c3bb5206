// swift-tools-version: 6.2
//
// package-benchmark suites for swift-relay. A nested package, so the library's
// dependency graph never includes the benchmark tool (the swift-nio / swift-log
// convention). Run from this directory:
//
//   swift package --allow-writing-to-directory .benchmarkBaselines benchmark
//
import PackageDescription

import struct Foundation.URL

// A path dependency's package identity is its directory name, which depends on where
// the repository was cloned; derive it instead of hard-coding it.
let relayPackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "swift-relay-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../"),
        .package(url: "https://github.com/ordo-one/package-benchmark.git", from: "1.38.0", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
    ],
    targets: [
        // Helpers shared by the benchmark targets.
        .target(name: "BenchSupport", dependencies: ["CBenchSupport"], path: "Benchmarks/BenchSupport"),
        // sched_setaffinity for pinned producer threads (not exported by Glibc's Swift overlay).
        .target(name: "CBenchSupport", path: "Benchmarks/CBenchSupport"),
        .executableTarget(
            name: "RelayBenchmarks",
            dependencies: [
                "BenchSupport",
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "Relay", package: relayPackage),
            ],
            path: "Benchmarks/RelayBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "ShippingBenchmarks",
            dependencies: [
                "BenchSupport",
                "CBenchSupport",
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "Relay", package: relayPackage),
                .product(name: "RelayShipper", package: relayPackage),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/ShippingBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        // RelayLogging: ns and mallocs per logger.info call next to a no-op handler and
        // StreamLogHandler; logging-bench-table prints the same comparison as a markdown table.
        // The module holding the measured call site (`logOnce`) has a name of at most 15 UTF-8 bytes:
        // swift-log allocates the source it derives from a longer module name on every call.
        .target(
            name: "LogBenchSupport",
            dependencies: [
                "BenchSupport",
                .product(name: "Relay", package: relayPackage),
                .product(name: "RelayLogging", package: relayPackage),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/LoggingBenchmarks/Support"
        ),
        .executableTarget(
            name: "LoggingBenchmarks",
            dependencies: [
                "LogBenchSupport",
                .product(name: "Benchmark", package: "package-benchmark"),
            ],
            path: "Benchmarks/LoggingBenchmarks",
            exclude: ["Support", "Table"],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        // Resident memory of the engine and shipper under load, next to the buffers' size.
        .executableTarget(
            name: "relay-resident-memory",
            dependencies: [
                "BenchSupport",
                .product(name: "Relay", package: relayPackage),
                .product(name: "RelayShipper", package: relayPackage),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/ResidentMemory"
        ),
        .executableTarget(
            name: "logging-instructions",
            dependencies: ["LogBenchSupport"],
            path: "Benchmarks/LoggingInstructions"
        ),
        .executableTarget(
            name: "logging-bench-table",
            dependencies: ["LogBenchSupport"],
            path: "Benchmarks/LoggingBenchmarks/Table"
        ),
    ],
    swiftLanguageModes: [.v6]
)
