#!/usr/bin/env bash
# Runs test_official_sdk.py (the official `stripe` Python package) against a fresh emulator.
#   EMULATOR_BIN  emulator binary (default: <repo>/target/release/stripe-emulator)
#   VENV          virtualenv for the SDK (default: <repo>/.cache/venv-stripe)
# Exits non-zero on any failure; prints "sdk: N passed, M failed".
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${VENV:-$ROOT/.cache/venv-stripe}"
STRIPE_PY_VERSION="16.1.0"
EMULATOR_BIN="${EMULATOR_BIN:-$ROOT/target/release/stripe-emulator}"

if [ ! -x "$EMULATOR_BIN" ]; then
    echo "sdk: emulator binary not found at $EMULATOR_BIN (cargo build --release -p stripe-emulator)" >&2
    echo "sdk: 0 passed, 1 failed"
    exit 2
fi

if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('stripe') != '$STRIPE_PY_VERSION')" 2>/dev/null; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "stripe==$STRIPE_PY_VERSION"
fi

LOG="$(mktemp -t stripe-emulator.XXXXXX)"
# Port 0: the emulator picks a free port and prints its URL on the first line of stdout.
"$EMULATOR_BIN" --listen 127.0.0.1:0 >"$LOG" 2>&1 &
PID=$!
cleanup() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    rm -f "$LOG"
}
trap cleanup EXIT

URL=""
for _ in $(seq 1 100); do
    URL="$(sed -n 's/^stripe-emulator listening on \(http:[^ ]*\).*/\1/p' "$LOG" | head -n1)"
    [ -n "$URL" ] && break
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "sdk: emulator exited early:" >&2
        cat "$LOG" >&2
        echo "sdk: 0 passed, 1 failed"
        exit 1
    fi
    sleep 0.1
done
if [ -z "$URL" ]; then
    echo "sdk: emulator did not start" >&2
    echo "sdk: 0 passed, 1 failed"
    exit 1
fi

STRIPE_API_BASE="$URL" "$VENV/bin/python" "$HERE/test_official_sdk.py"
