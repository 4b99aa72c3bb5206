import Glibc
import Relay
import Synchronization
import Testing

@testable import relay_bench

@Suite("BenchThread")
struct BenchThreadTests {
    /// The name the kernel shows for the calling thread (`/proc/thread-self/comm`).
    private static func currentThreadName() -> String {
        guard let file = fopen("/proc/thread-self/comm", "r") else { return "" }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 64)
        guard fgets(&line, Int32(line.count), file) != nil else { return "" }
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.hasSuffix("\n") ? String(text.dropLast()) : text
    }

    @Test(
        "a benchmark thread carries its name, cut to the kernel's 15 bytes",
        arguments: [("producer0", "producer0"), ("a-name-longer-than-fifteen", "a-name-longer-t")])
    func threadIsNamed(name: String, expected: String) throws {
        let seen = RelayMutex("")
        let thread = try BenchThread(name: name) {
            let current = Self.currentThreadName()
            seen.withLock { $0 = current }
        }
        thread.join()
        #expect(seen.withLock { $0 } == expected)
    }
}
