//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Logging
import RelayLogging
import ServiceLifecycle
import UnixSignals

/// Several tasks doing "work" and logging about it, until graceful shutdown.
struct WorkerService: Service {
    let workers: Int

    func run() async throws {
        let logger = Logger(label: "example.worker")
        // Graceful shutdown cancels the workers; each logs how much it did and returns.
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<self.workers {
                    group.addTask {
                        var logger = logger
                        logger[metadataKey: "worker"] = "\(worker)"
                        var jobs = 0
                        while !Task.isCancelled {
                            jobs += 1
                            logger.info("job done", metadata: ["job": "\(jobs)", "queue": "default"])
                            try? await Task.sleep(for: .milliseconds(5))
                        }
                        logger.notice("worker stopping", metadata: ["jobs": "\(jobs)"])
                    }
                }
            }
        }
    }
}

@main
struct RelayLoggingExample {
    static func main() async throws {
        let path = CommandLine.arguments.dropFirst().first ?? "/tmp/relay-logging-example.jsonl"
        // One call: a relay channel, an io_uring shipper writing a JSON Lines file rotated every
        // MiB (5 generations kept), and LoggingSystem bootstrapped with RelayLogHandler.
        let logging = try RelayLoggingService.bootstrap(
            RelayLoggingConfiguration(
                destination: .file(path: path, rotation: .init(maxBytes: 1 << 20, keep: 5)),
                metadataProvider: Logger.MetadataProvider { ["service": "example"] }
            ))
        let logger = Logger(label: "example")
        logger.info("starting", metadata: ["file": "\(path)"])

        // The logging service comes first: a ServiceGroup shuts services down in reverse order, so
        // it stops last and writes out everything the workers logged while stopping.
        let group = ServiceGroup(
            services: [logging, WorkerService(workers: 4)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        try await group.run()

        let stats = logging.stats().log
        print(
            "logged \(stats.recordsWritten) records to \(path) (dropped \(stats.recordsDropped), "
                + "truncated \(stats.recordsTruncated))")
    }
}
