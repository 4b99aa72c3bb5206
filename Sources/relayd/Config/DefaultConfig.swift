/// The configuration relayd uses when started without `--config`, printed by `relayd --print-default-config`.
///
/// Safe by default: it listens on loopback only (TCP syslog on 127.0.0.1:5140, a Unix datagram socket and
/// metrics on 127.0.0.1:9464) and writes rotated files under `./relayd-data`, which it creates.
enum DefaultConfig {
    /// The default configuration as TOML. It validates with ``RelaydConfig/validate(_:options:)`` in any
    /// writable working directory.
    static let text = """
        # relayd configuration (TOML). Print this file with: relayd --print-default-config
        # Check a file without starting the daemon:       relayd check-config FILE
        #
        # Sizes: 4096, "64KiB", "1MiB", "1GiB" (binary units only).
        # Durations: "100ms", "5s", "1m", "1h", "1d"; parts add up, largest unit first: "1m30s", "1s500ms".
        # Relative paths are relative to relayd's working directory.

        [daemon]
        # Prometheus text format on GET /metrics, liveness on GET /healthz. "" disables.
        # Non-loopback addresses need allow_remote = true.
        metrics_listen = "127.0.0.1:9464"
        # On SIGTERM, wait this long for channels to drain; what is left is dropped and counted.
        drain_timeout = "10s"
        state_dir = "./relayd-data/state"
        log_level = "info"
        # Create missing directories for state_dir, sockets and output files at start.
        create_dirs = true

        # Relay channel geometry. Every output owns one channel; outputs use [channels.default]
        # unless they set channel = "<name>".
        [channels.default]
        subbuf_size = "1MiB"       # power of two, >= 4KiB; a record must fit in one sub-buffer
        subbufs = 8                # per channel: a power of two >= 2
        mode = "block"             # block (backpressure, then drop after block_timeout) | drop | overwrite
        block_timeout = "100ms"    # waited once per stall: then records for a stalled output drop at once
                                   # (counted) until it frees space, so it never slows the inputs
        switch_interval = "100ms"  # a partly filled sub-buffer ships after this long

        # TCP syslog (RFC 6587): octet-counted and LF-delimited frames, detected per frame.
        [[inputs]]
        name = "syslog-tcp"
        type = "tcp"
        listen = "127.0.0.1:5140"
        max_frame = "64KiB"
        max_connections = 64
        framing = "auto"
        tag = { input_name = true, peer = true, received_at = true }

        # A /dev/log-compatible datagram socket: logger -u ./relayd-data/run/log.sock "hello"
        [[inputs]]
        name = "local"
        type = "unix_dgram"
        path = "./relayd-data/run/log.sock"
        socket_mode = "0660"
        max_frame = "64KiB"

        # Rotated RFC 5424 files: relayd.log, relayd.log.1, ... relayd.log.8
        [[outputs]]
        name = "files"
        type = "file"
        inputs = ["syslog-tcp", "local"]
        format = "rfc5424"
        path = "./relayd-data/logs/relayd.log"
        rotate_size = "64MiB"
        rotate_count = 8
        fsync = "none"
        writeback = "8MiB"         # start disk writes every 8 MiB written; "kernel" leaves it to the kernel

        # Forward to an aggregator (rsyslog imtcp/imptcp) as RFC 5424 with octet counting:
        # [[outputs]]
        # name = "aggregator"
        # type = "tcp"
        # target = "127.0.0.1:514"
        # format = "rfc5424"
        # framing = "octet-counting"
        # reconnect_backoff = "100ms..5s"

        """
}
