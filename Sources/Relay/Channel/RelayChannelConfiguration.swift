/// How to open a ``RelayChannel``: the arguments of relayfs's `relay_open`.
public struct RelayChannelConfiguration: Sendable, Hashable {
    /// The base name: shared-memory files are `<name>.<buffer>`, memfds are named after it,
    /// and errors and shipper messages name the channel by it.
    public var name: String
    /// Bytes per sub-buffer: a power of two, at least 4096 and at most 1 GiB.
    public var subbufferSize: Int
    /// Sub-buffers per buffer: a power of two, at least 2.
    public var subbufferCount: Int
    /// What writers do when no sub-buffer is free.
    public var mode: RelayMode
    /// Per-CPU buffers for the shared write path. `nil`: one per possible CPU.
    /// Threads map to `cpu % buffers`.
    public var buffers: Int?
    /// Extra buffers that only ``RelayExclusiveWriter``s use (the `__relay_write`
    /// analogue). The shared path never picks them.
    public var exclusiveBuffers: Int
    /// Bytes reserved after the engine header of every sub-buffer for the client's own
    /// header, which ``RelayCallbacks/subbufferStart`` fills.
    public var clientHeaderSize: Int
    /// Where buffer memory comes from.
    public var backing: RelayMemoryBacking
    /// Touch every page at open (`MAP_POPULATE`), so the first writes do not fault and
    /// io_uring registration is fast.
    public var prefault: Bool
    /// What fills the unused tail of a shrunk or abandoned reservation.
    public var filler: RelayFiller
    /// Let writers of per-CPU buffers reserve and commit with restartable sequences
    /// (rseq(2)) instead of locked instructions when the host supports it and there is
    /// one shared buffer per possible CPU (see ``RelayChannel/usesRestartableSequences``).
    /// The semantics are the same either way; turn it off to compare, or under a
    /// seccomp policy that forbids membarrier(2).
    public var perCPUFastPath: Bool

    /// Creates a configuration.
    public init(
        name: String,
        subbufferSize: Int = 1 << 20,
        subbufferCount: Int = 8,
        mode: RelayMode = .drop,
        buffers: Int? = nil,
        exclusiveBuffers: Int = 0,
        clientHeaderSize: Int = 0,
        backing: RelayMemoryBacking = .anonymous,
        prefault: Bool = true,
        filler: RelayFiller = .logLines,
        perCPUFastPath: Bool = true
    ) {
        self.name = name
        self.subbufferSize = subbufferSize
        self.subbufferCount = subbufferCount
        self.mode = mode
        self.buffers = buffers
        self.exclusiveBuffers = exclusiveBuffers
        self.clientHeaderSize = clientHeaderSize
        self.backing = backing
        self.prefault = prefault
        self.filler = filler
        self.perCPUFastPath = perCPUFastPath
    }

    /// The largest record a channel with this configuration accepts.
    public var maxRecordSize: Int {
        self.subbufferSize - ((RegionLayout.engineHeaderSize + self.clientHeaderSize + 7) & ~7)
    }

    func validate() throws(RelayError) {
        func invalid(_ message: String) -> RelayError {
            RelayError(code: .invalidConfiguration, message: "channel '\(self.name)': \(message)")
        }
        if self.name.isEmpty || self.name.contains("/") || self.name.utf8.count > 200 {
            throw invalid("name must be 1-200 characters without '/'")
        }
        let size = self.subbufferSize
        if size < 4096 || size > 1 << 30 || size & (size - 1) != 0 {
            throw invalid(
                "subbufferSize \(size) must be a power of two between 4096 and 1073741824 "
                    + "(positions map to sub-buffers with a mask, and sub-buffers must be page aligned); "
                    + "try \(Self.nextPowerOfTwo(max(4096, min(size, 1 << 30))))"
            )
        }
        let count = self.subbufferCount
        if count < 2 || count > 1 << 16 || count & (count - 1) != 0 {
            throw invalid(
                "subbufferCount \(count) must be a power of two between 2 and 65536 "
                    + "(one sub-buffer guarantees overwrites or losses); try \(Self.nextPowerOfTwo(max(2, min(count, 1 << 16))))"
            )
        }
        if size * count > 1 << 30 {
            throw invalid(
                "subbufferSize × subbufferCount = \(size * count) bytes exceeds 1 GiB per buffer, "
                    + "the io_uring fixed-buffer limit; use fewer or smaller sub-buffers"
            )
        }
        if let buffers = self.buffers, buffers < 1 || buffers > 4096 {
            throw invalid("buffers \(buffers) must be between 1 and 4096")
        }
        if self.exclusiveBuffers < 0 || self.exclusiveBuffers > 4096 {
            throw invalid("exclusiveBuffers \(self.exclusiveBuffers) must be between 0 and 4096")
        }
        if self.clientHeaderSize < 0 || self.clientHeaderSize > size / 2 {
            throw invalid("clientHeaderSize \(self.clientHeaderSize) must be between 0 and half a sub-buffer")
        }
        // Every sub-buffer header carries the header size (engine + client, rounded up to 8)
        // in 16 bits.
        if (RegionLayout.engineHeaderSize + self.clientHeaderSize + 7) & ~7 > Int(UInt16.max) {
            throw invalid(
                "clientHeaderSize \(self.clientHeaderSize) must be at most "
                    + "\(Int(UInt16.max) & ~7 - RegionLayout.engineHeaderSize) (the sub-buffer header stores the "
                    + "header size in 16 bits)")
        }
        if case .block(let timeout?) = self.mode.kind, timeout < .zero {
            throw invalid("block timeout must not be negative")
        }
    }

    private static func nextPowerOfTwo(_ value: Int) -> Int {
        var result = 1
        while result < value { result <<= 1 }
        return result
    }
}

/// The bytes that stand in for record data the client did not write.
///
/// Used when a reservation is committed with fewer bytes than reserved and the tail
/// cannot be handed back (another record follows it), and when a reservation is
/// dropped without `commit()`. The tail is filled with `byte`; if `terminator` is
/// set, the record still ends with it. For log lines (`.logLines`) a shrunk record
/// becomes `{"msg":"…"}␠␠␠␠\n` (valid JSON Lines) and an abandoned one a blank line.
public struct RelayFiller: Sendable, Hashable {
    /// The fill byte.
    public var byte: UInt8
    /// The byte every record ends with, if any.
    public var terminator: UInt8?

    /// Creates a filler.
    public init(byte: UInt8, terminator: UInt8?) {
        self.byte = byte
        self.terminator = terminator
    }

    /// Spaces, and a newline at the end of each record: text logs.
    public static let logLines = RelayFiller(byte: 0x20, terminator: 0x0A)
    /// Zero bytes, no terminator: binary records.
    public static let zeros = RelayFiller(byte: 0, terminator: nil)
}
