internal import CRelayLinux

/// Which CPU the calling thread runs on, and how many CPUs the host may have.
enum CPU {
    /// The CPU the calling thread runs on now (rseq `cpu_id`: one load, no syscall).
    ///
    /// The value can be stale as soon as it is read, because threads migrate. It only
    /// picks a buffer; the reserve on that buffer is atomic regardless.
    @inline(__always)
    static var current: Int {
        Int(CRelayLinux_current_cpu())
    }

    /// The CPU the calling thread runs on, read from its rseq area at `rseqOffset`
    /// (`PerCPU.rseqOffset`, valid once rseq is known to be registered): one load.
    @inline(__always)
    static func current(rseqOffset: Int) -> Int {
        Int(CRelayLinux_rseq_cpu_id_at(rseqOffset))
    }

    /// The number of possible CPUs (configured, not only online), at least 1.
    static var possibleCount: Int {
        Int(CRelayLinux_possible_cpus())
    }
}
