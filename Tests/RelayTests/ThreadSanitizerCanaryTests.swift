#if RELAY_THREAD_SANITIZER
import Foundation
import Relay
import RelayTestSupport
import Synchronization
import Testing

/// Checks on the ThreadSanitizer build itself (`scripts/sanitize thread`, which runs CI's
/// thread check): that it reports a real race, and that it does not report `RelayMutex` bodies
/// that met contention (see RelayMutex.swift).
@Suite("ThreadSanitizer build")
struct ThreadSanitizerCanaryTests {
    /// A counter behind a mutex, incremented with plain (non-atomic) loads and stores.
    final class Counter: @unchecked Sendable {
        let lock = RelayMutex<Void>(())
        let value = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        init() { self.value.initialize(to: 0) }
        deinit { self.value.deallocate() }
    }

    @Test("two threads hammering one RelayMutex: every body is ordered, nothing is reported")
    func contendedMutexIsOrdered() {
        let counter = Counter()
        let perThread = 20_000
        TestThreads.run(count: 2) { _ in
            for _ in 0..<perThread {
                counter.lock.withLock { _ in
                    // A few loads and stores inside the body, so the other thread finds the
                    // lock held and goes to the kernel (the path the sanitizer cannot see).
                    for _ in 0..<8 { counter.value.pointee &+= 1 }
                }
            }
        }
        #expect(counter.value.pointee == 2 * perThread * 8)
    }

    /// Run only by `scripts/sanitize thread`, which expects this process to stop with a race
    /// report: a build that stayed silent here would pass every other test vacuously.
    @Test(
        "an unordered write is reported",
        .enabled(if: ProcessInfo.processInfo.environment["RELAY_TSAN_CANARY"] == "1", "run by scripts/sanitize thread")
    )
    func unorderedWriteIsReported() {
        let counter = Counter()
        TestThreads.run(count: 2) { _ in
            for _ in 0..<1_000 { counter.value.pointee &+= 1 }
        }
        Issue.record("ThreadSanitizer did not stop the process at the unordered writes")
    }
}
#endif
