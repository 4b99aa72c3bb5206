# Installs the Debian packages swift-relay needs, when missing.
# Sourced by scripts/test, scripts/relayd, scripts/build-static and the benchmark scripts.

relay_ensure_packages() {
    local missing=()
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo"
        else
            echo "error: missing packages ${missing[*]}; install them as root: apt-get install -y ${missing[*]}" >&2
            exit 2
        fi
    fi
    echo "==> installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null || $sudo apt-get update
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null || $sudo apt-get install -y "${missing[@]}"
}

relay_require_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        if [ -x /opt/swift/usr/bin/swift ]; then
            export PATH="/opt/swift/usr/bin:$PATH"
        else
            echo "error: swift not found; install Swift 6.2 or later (https://www.swift.org/install/linux/) and put it on PATH" >&2
            exit 2
        fi
    fi
}
