// swift-tools-version: 6.2
//
// A service that logs from several tasks into a rotated JSON Lines file through RelayLogging,
// and shuts down cleanly on SIGTERM/SIGINT. Run from this directory:
//
//   swift run -c release RelayLoggingExample /tmp/example.jsonl
//
import PackageDescription

import struct Foundation.URL

// A path dependency's package identity is its directory name, which depends on where the
// repository was cloned; derive it instead of hard-coding it.
let relayPackage = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "relay-logging-example",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../.."),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
    ],
    targets: [
        .executableTarget(
            name: "RelayLoggingExample",
            dependencies: [
                .product(name: "RelayLogging", package: relayPackage),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
