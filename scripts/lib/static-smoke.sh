# Builds relayd as one fully static executable (scripts/build-static) and checks that it is
# one and that it works: 100,000 lines through stdin → relay channel → io_uring shipper →
# file, every line arriving. Sourced by scripts/test.

relay_static_smoke() {
    local binary dir lines=100000
    binary=$(scripts/build-static relayd | tail -n 1)
    if ldd "$binary" >/dev/null 2>&1; then
        echo "error: $binary is not a static executable:" >&2
        ldd "$binary" >&2
        return 1
    fi
    dir=$(mktemp -d)
    cat >"$dir/relayd.toml" <<TOML
[daemon]
metrics_listen = ""
state_dir = "$dir"

[channels.default]
subbuf_size = "256KiB"
subbufs = 8
switch_interval = "20ms"

[[inputs]]
name = "stdin"
type = "stdin"

[[outputs]]
name = "file"
type = "file"
format = "raw"
path = "$dir/out.log"
TOML
    seq 1 "$lines" | sed 's/^/static relayd line /' | "$binary" --config "$dir/relayd.toml"
    local got
    got=$(wc -l <"$dir/out.log")
    if [ "$got" -ne "$lines" ]; then
        echo "error: static relayd wrote $got of $lines lines to $dir/out.log" >&2
        return 1
    fi
    echo "==> static relayd: $(stat -c %s "$binary") bytes, $lines of $lines lines shipped" >&2
    rm -rf "$dir"
}
