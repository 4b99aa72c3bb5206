// swift-tools-version: 6.2
//
// swift-relay: relay channels (the user-space successor of relayfs) feeding io_uring.
//
// Layering (imports only point downward):
//
//   relayd, relay-bench            executables
//   RelayLogging                   swift-log backend, record formats
//   RelayShipper                   io_uring ring owner, file/socket sinks
//   Relay                          the engine: channels, per-CPU buffers, sub-buffers
//   CRelayLinux                    C shims (liburing, rseq, futex, membarrier); never public API
//
import PackageDescription

let package = Package(
    name: "swift-relay",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Relay", targets: ["Relay"]),
        .library(name: "RelayShipper", targets: ["RelayShipper"]),
        .library(name: "RelayLogging", targets: ["RelayLogging"]),
        .library(name: "RelayTestSupport", targets: ["RelayTestSupport"]),
        .executable(name: "relayd", targets: ["relayd"]),
        .executable(name: "relay-bench", targets: ["relay-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.1.0"),
    ],
    targets: [
        // MARK: C shims
        .target(
            name: "CRelayLinux",
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [.linkedLibrary("uring")]
        ),

        // MARK: Engine
        .target(
            name: "Relay",
            dependencies: ["CRelayLinux"]
        ),

        // MARK: Shipper
        .target(
            name: "RelayShipper",
            dependencies: [
                "Relay",
                "CRelayLinux",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // MARK: swift-log backend
        .target(
            name: "RelayLogging",
            dependencies: [
                "CRelayLinux",
                "Relay",
                "RelayShipper",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // MARK: Test support
        .target(
            name: "RelayTestSupport",
            dependencies: ["Relay", "CRelayLinux"]
        ),

        // MARK: Executables
        .executableTarget(
            name: "relayd",
            dependencies: [
                "Relay",
                "RelayShipper",
                "RelayLogging",
                "CRelayLinux",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "relay-bench",
            dependencies: [
                "Relay",
                "RelayShipper",
                "CRelayLinux",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),

        // MARK: Tests
        .testTarget(name: "RelayTests", dependencies: ["Relay", "RelayTestSupport", "CRelayLinux"]),
        .testTarget(
            name: "RelayShipperTests",
            dependencies: ["Relay", "RelayShipper", "RelayTestSupport", "CRelayLinux",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "SystemPackage", package: "swift-system")]
        ),
        .testTarget(
            name: "RelayLoggingTests",
            dependencies: ["Relay", "RelayShipper", "RelayLogging", "RelayTestSupport",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]
        ),
        .testTarget(
            name: "relaydTests",
            dependencies: [
                "relayd", "Relay", "RelayShipper", "RelayTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .testTarget(
            name: "RelayBenchTests",
            dependencies: [
                "relay-bench", "RelayTestSupport", "RelayShipper",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// Settings shared by every Swift target (the swift-log / swift-configuration convention).
for target in package.targets where [.executable, .test, .regular].contains(target.type) && target.name != "CRelayLinux" {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    settings.append(.enableUpcomingFeature("InternalImportsByDefault"))
    settings.append(.enableUpcomingFeature("NonisolatedNonsendingByDefault"))
    target.swiftSettings = settings
}
