# Builds and runs Examples/RelayLoggingExample the way its README does: four tasks log into
# a JSON Lines file through RelayLoggingService until SIGTERM. Checks that the service shut
# down cleanly (exit status 0), that every line is one JSON object, and that what the
# workers logged while stopping reached the file (the logging service drains last), with
# nothing dropped. Sourced by scripts/test.

relay_example_smoke() {
    local package=Examples/RelayLoggingExample dir binary pid status lines stopping
    echo "==> Examples/RelayLoggingExample: build, run, SIGTERM" >&2
    swift build --package-path "$package" --product RelayLoggingExample
    binary="$(swift build --package-path "$package" --show-bin-path)/RelayLoggingExample"
    dir=$(mktemp -d)
    "$binary" "$dir/example.jsonl" >"$dir/stdout" 2>"$dir/stderr" &
    pid=$!
    sleep 2
    kill -TERM "$pid"
    status=0
    wait "$pid" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "error: the example exited with status $status after SIGTERM:" >&2
        cat "$dir/stderr" "$dir/stdout" >&2
        return 1
    fi
    lines=$(wc -l <"$dir/example.jsonl")
    if [ "$lines" -lt 100 ]; then
        echo "error: the example wrote only $lines lines to $dir/example.jsonl in 2 s" >&2
        return 1
    fi
    if grep -v -E '^\{"timestamp":"[0-9T:.-]+Z",.*\}$' "$dir/example.jsonl" | head -3 | grep -q .; then
        echo "error: lines of $dir/example.jsonl that are not one JSON object each:" >&2
        grep -v -E '^\{"timestamp":"[0-9T:.-]+Z",.*\}$' "$dir/example.jsonl" | head -3 >&2
        return 1
    fi
    stopping=$(grep -c '"message":"worker stopping"' "$dir/example.jsonl" || true)
    if [ "$stopping" -ne 4 ]; then
        echo "error: $stopping of 4 'worker stopping' records reached the file: shutdown did not drain" >&2
        return 1
    fi
    if ! grep -q "(dropped 0, truncated 0)" "$dir/stdout"; then
        echo "error: the example reported losses:" >&2
        cat "$dir/stdout" >&2
        return 1
    fi
    echo "==> example: $lines JSON lines, shut down on SIGTERM with every worker's last record written" >&2
    rm -rf "$dir"
}
