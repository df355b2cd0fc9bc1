#!/usr/bin/env bash
# Storefront load while a new JavaScript policy build compiles: the real host (release)
# against the Stripe stub (host/examples/stripe_stub.rs), wrk on the loyalty route, and
# 2 s into the load a new js-time-limited build dropped into the policy directory.
# Each round runs, on the same cache and stub:
#   quiet  - the load alone (the baseline);
#   large  - [reload] compile_process = "large": the build compiles in a compile process;
#   none   - compile_process = "none": it compiles inside the host.
# Reports req/s, p50 and p99 of each, their ratios to quiet, when the new build served
# (from its write), and the host's peak resident memory.
# Not part of scripts/test.sh: timings are benchmarks. See docs/hot-reload.md.
#
# Usage: scripts/compile-under-load.sh   (ROUNDS=2 DURATION=30 CONNECTIONS=64 THREADS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-30}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
STUB_PORT="${STUB_PORT:-12113}"
HOST_PORT="${HOST_PORT:-4245}"
ROUTE=/apply-loyalty-discount
TOKEN=compile-under-load
export RUST_LOG="${RUST_LOG:-warn}"

command -v wrk >/dev/null || { echo "wrk is missing: scripts/load-test.sh installs it" >&2; exit 1; }
[ -f target/policies/loyalty-tier.wasm ] || scripts/build-policies.sh
[ -f target/policies/js-time-limited.wasm ] || scripts/build-lang-policies.sh
cargo build --release -p discount-host --bin discount-host --example stripe_stub
host_bin="$root/target/release/discount-host"

source scripts/load-common.sh

start_stub "$STUB_PORT"

write_post_lua "$ROUTE"

now_ms() { date +%s%3N; }
peak_mb() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
# The JS policy's serving version, from the admin API.
js_version() {
    curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HOST_PORT/admin/policies" |
        python3 -c 'import json,sys; print(next((p.get("version") or "") for p in json.load(sys.stdin) if p["name"] == "js-time-limited"))'
}
# Writes a new build of js-time-limited (a custom section appended) into $1; prints its hash.
new_js_build() {
    python3 - "$1" "$root/target/policies/js-time-limited.wasm" <<'EOF'
import hashlib, os, sys, time
d, src = sys.argv[1], open(sys.argv[2], 'rb').read()
name = b'policy-build'; payload = bytes([len(name)]) + name + str(time.time_ns()).encode()
wasm = src + bytes([0, len(payload)]) + payload
open(os.path.join(d, '.js.tmp'), 'wb').write(wasm)
os.rename(os.path.join(d, '.js.tmp'), os.path.join(d, 'js-time-limited.wasm'))
print(hashlib.sha256(wasm).hexdigest())
EOF
}

# One run: mode $1 (quiet, large, none). Prints "req/s p50 p99 served_ms peak_mb".
run() {
    local mode=$1 dir="$work/policies-$1" config="$work/host-$1.toml"
    rm -rf "$dir"; mkdir -p "$dir"
    for p in loyalty-tier js-time-limited; do cp "target/policies/$p.wasm" "target/policies/$p.toml" "$dir/"; done
    printf '[reload]\ncompile_process = "%s"\n' "$([ "$mode" = quiet ] && echo large || echo "$mode")" >"$config"
    DISCOUNT_HOST_CONFIG="$config" DISCOUNT_HOST_ADMIN_TOKEN=$TOKEN STRIPE_SECRET_KEY=sk_test_load \
        "$host_bin" --listen "127.0.0.1:$HOST_PORT" --policy-dir "$dir" --cache-dir "$work/cache" \
        --stripe-api-base "http://127.0.0.1:$STUB_PORT" >"$work/host.out" 2>"$work/host.err" &
    local host=$!
    pids+=("$host")
    until grep -q "discount-host ready" "$work/host.out" 2>/dev/null; do
        kill -0 "$host" 2>/dev/null || { cat "$work/host.err" >&2; exit 1; }
        sleep 0.05
    done
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/post.lua" \
        "http://127.0.0.1:$HOST_PORT" >"$work/wrk-$mode.txt" &
    local load=$! served_ms=-
    if [ "$mode" != quiet ]; then
        sleep 2
        local hash written
        hash=$(new_js_build "$dir")
        written=$(now_ms)
        for _ in $(seq 6000); do
            [ "$(js_version)" = "$hash" ] && { served_ms=$(( $(now_ms) - written )); break; }
            sleep 0.1
        done
    fi
    wait "$load"
    local peak rps p50 p99
    peak=$(peak_mb "$host")
    kill "$host"; wait "$host" 2>/dev/null || true
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk-$mode.txt")
    p50=$(awk '$1 == "50%" {print $2}' "$work/wrk-$mode.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk-$mode.txt")
    echo "$rps $p50 $p99 $served_ms $peak"
}

# Fills the cache with the shipped builds, so that each run compiles only the new one.
run quiet >/dev/null
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.3f", a / b }'; }
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v / 1000; else if (v ~ /ms$/) printf "%.3f", v + 0; else if (v ~ /s$/) printf "%.3f", v * 1000; else print v }'; }
{
    echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s on $ROUTE; a new js-time-limited build written 2 s in"
    printf '%-6s %-6s %10s %9s %9s %8s %10s %12s %9s\n' round mode "req/s" p50 p99 "÷quiet" "p99÷quiet" "JS served" "host peak"
    for round in $(seq "$ROUNDS"); do
        read -r q_rps q_p50 q_p99 _ q_peak < <(run quiet)
        printf '%-6s %-6s %10s %9s %9s %8s %10s %12s %9s\n' "$round" quiet "$q_rps" "$q_p50" "$q_p99" 1 1 - "${q_peak} MB"
        for mode in large none; do
            read -r rps p50 p99 served peak < <(run "$mode")
            printf '%-6s %-6s %10s %9s %9s %8s %10s %12s %9s\n' "$round" "$mode" "$rps" "$p50" "$p99" \
                "$(ratio "$rps" "$q_rps")" "$(ratio "$(ms "$p99")" "$(ms "$q_p99")")" "${served} ms" "${peak} MB"
        done
    done
} | tee "$work/summary.txt"
mkdir -p target/load-test
cp "$work/summary.txt" target/load-test/compile-under-load.txt
