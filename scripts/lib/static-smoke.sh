# Builds relayd and relay-bench as fully static, optimized executables (scripts/build-static)
# and checks them: both are static; relayd ships 100,000 lines through stdin → relay channel
# → io_uring shipper → file, every line arriving; relay-bench writes records through every
# write API (the exclusive writer's inlined path, the shared path, reserve/commit) at sizes
# that take each branch of the record copy, and verifies every record in the file. The test
# suite runs debug builds; this is where the optimized record paths are checked end to end.
# Sourced by scripts/test.

relay_static_smoke() {
    local binaries relayd bench dir lines=100000
    binaries=$(scripts/build-static relayd relay-bench)
    relayd=$(echo "$binaries" | sed -n 1p)
    bench=$(echo "$binaries" | sed -n 2p)
    for binary in "$relayd" "$bench"; do
        if ldd "$binary" >/dev/null 2>&1; then
            echo "error: $binary is not a static executable:" >&2
            ldd "$binary" >&2
            return 1
        fi
    done
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
    seq 1 "$lines" | sed 's/^/static relayd line /' | "$relayd" --config "$dir/relayd.toml"
    local got
    got=$(wc -l <"$dir/out.log")
    if [ "$got" -ne "$lines" ]; then
        echo "error: static relayd wrote $got of $lines lines to $dir/out.log" >&2
        return 1
    fi
    echo "==> static relayd: $(stat -c %s "$relayd") bytes, $lines of $lines lines shipped" >&2

    local api size
    for api in exclusive write reserve; do
        for size in 40 100 128 200; do
            if ! "$bench" run --producers 2 --records 400k --record-size "$size" --api "$api" --mode block \
                --subbuf-size 64KiB --subbufs 8 --sink "file:$dir/bench-$api-$size.log" --verify >"$dir/bench.out" 2>&1; then
                echo "error: relay-bench --api $api --record-size $size failed verification:" >&2
                cat "$dir/bench.out" >&2
                return 1
            fi
            rm -f "$dir/bench-$api-$size.log"*
        done
    done
    echo "==> static relay-bench: every record verified through the exclusive, write and reserve APIs" >&2
    rm -rf "$dir"
}
