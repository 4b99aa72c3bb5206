#if RELAY_ADDRESS_SANITIZER
import Foundation
import Testing

/// Checks on the AddressSanitizer build itself (`scripts/sanitize address`, which runs CI's
/// address check): an instrumented build that stayed silent here would pass every other test
/// vacuously.
@Suite("AddressSanitizer build")
struct AddressSanitizerCanaryTests {
    /// Run only by `scripts/sanitize address`, which expects this process to stop with a
    /// heap-buffer-overflow report.
    @Test(
        "a write past the end of an allocation is reported",
        .enabled(if: ProcessInfo.processInfo.environment["RELAY_ASAN_CANARY"] == "1", "run by scripts/sanitize address")
    )
    func overflowIsReported() {
        let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)
        defer { bytes.deallocate() }
        // One past the end: the sanitizer's redzone.
        (bytes + 16).pointee = 1
        Issue.record("AddressSanitizer did not stop the process at the overflow")
    }
}
#endif
