import Synchronization

/// Counters of the io_uring shipper.
///
/// Every access to these counters is relaxed: they are statistics that publish nothing, and each is one
/// atomic word, so no update is lost or counted twice; a scrape reads each on its own.
final class ShipperMetrics: Sendable {
    /// Sub-buffers registered with the ring (`IORING_REGISTER_BUFFERS`, fixed writes).
    let registeredBuffers = Atomic<Int64>(0)
    /// Sub-buffers shipped with ordinary (non-fixed) writes because registration failed or `RLIMIT_MEMLOCK` was short.
    let fallbackBuffers = Atomic<Int64>(0)
    /// `IORING_OP_SEND_ZC` completions whose notification said the kernel sent without copying.
    let zeroCopySends = Atomic<UInt64>(0)
    /// `IORING_OP_SEND_ZC` completions with `IORING_NOTIF_USAGE_ZC_COPIED` (the kernel copied after all).
    let zeroCopyCopied = Atomic<UInt64>(0)

    /// Creates zeroed counters.
    init() {}

    /// Sets the buffer registration gauges.
    func setBuffers(registered: Int, fallback: Int) {
        // Relaxed: two independent gauges.
        self.registeredBuffers.store(Int64(registered), ordering: .relaxed)
        self.fallbackBuffers.store(Int64(fallback), ordering: .relaxed)
    }

    /// Records one zero-copy send notification.
    @inline(__always)
    func zeroCopyCompleted(copied: Bool) {
        // Relaxed: exposition-only counters.
        if copied {
            self.zeroCopyCopied.wrappingAdd(1, ordering: .relaxed)
        } else {
            self.zeroCopySends.wrappingAdd(1, ordering: .relaxed)
        }
    }
}
