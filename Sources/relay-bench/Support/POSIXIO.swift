import Glibc

/// Thin, allocation-free wrappers over the POSIX calls relay-bench's baselines and verifier use.
///
/// Each wrapper retries `EINTR` and loops over partial transfers; failures come back as the raw
/// `errno` so hot loops need not build messages (callers turn them into ``BenchError`` at the edge).
enum POSIXIO {
    /// `O_DIRECT`, which Glibc's Swift overlay does not import (it is behind `_GNU_SOURCE`).
    static var directFlag: Int32 {
        #if arch(x86_64) || arch(i386)
        return 0o40000
        #else
        return 0o200000  // arm64, aarch64 and most other Linux ABIs
        #endif
    }

    /// `RUSAGE_THREAD`, which Glibc's Swift overlay does not import (it is behind `_GNU_SOURCE`).
    static let rusageThread: Int32 = 1

    /// Writes all of `count` bytes at `base` to `fd` with `write(2)`.
    ///
    /// - Returns: 0 on success, otherwise the `errno` of the failing call.
    @inline(__always)
    static func writeAll(_ fd: Int32, _ base: UnsafeRawPointer, _ count: Int) -> Int32 {
        transferAll(count) { done in write(fd, base + done, count - done) }
    }

    /// Writes all of `count` bytes at `base` to `fd` at `offset` with `pwrite(2)`.
    ///
    /// - Returns: 0 on success, otherwise the `errno` of the failing call.
    @inline(__always)
    static func pwriteAll(_ fd: Int32, _ base: UnsafeRawPointer, _ count: Int, at offset: Int64) -> Int32 {
        transferAll(count) { done in pwrite(fd, base + done, count - done, off_t(offset) + off_t(done)) }
    }

    /// Sends all of `count` bytes at `base` on the stream socket `fd` with blocking `send(2)`
    /// (`MSG_NOSIGNAL`, so a closed peer yields `EPIPE` instead of killing the process).
    ///
    /// - Returns: 0 on success, otherwise the `errno` of the failing call.
    @inline(__always)
    static func sendAll(_ fd: Int32, _ base: UnsafeRawPointer, _ count: Int) -> Int32 {
        transferAll(count) { done in send(fd, base + done, count - done, Int32(MSG_NOSIGNAL)) }
    }

    /// Calls `transfer(done)` (one `write`/`pwrite`/`send` of the bytes from `done` on) until
    /// `count` bytes have moved, retrying `EINTR`.
    ///
    /// - Returns: 0 on success, otherwise the `errno` of the failing call.
    @inline(__always)
    private static func transferAll(_ count: Int, _ transfer: (_ done: Int) -> Int) -> Int32 {
        var done = 0
        while done < count {
            let n = transfer(done)
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                return code
            }
            done += n
        }
        return 0
    }

    /// Reads up to `count` bytes into `base`, retrying `EINTR`.
    ///
    /// - Returns: The byte count (0 at end of file), or `-errno`.
    @inline(__always)
    static func readSome(_ fd: Int32, _ base: UnsafeMutableRawPointer, _ count: Int) -> Int {
        while true {
            let n = read(fd, base, count)
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                return -Int(code)
            }
            return n
        }
    }

    /// Closes `fd`, ignoring `EINTR` (on Linux the descriptor is released even then).
    static func closeQuietly(_ fd: Int32) {
        _ = close(fd)
    }

    /// Whether `fd` refers to a socket.
    static func isSocket(_ fd: Int32) -> Bool {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return false }
        return (info.st_mode & S_IFMT) == S_IFSOCK
    }
}
