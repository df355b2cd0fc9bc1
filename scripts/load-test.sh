#!/usr/bin/env bash
# End-to-end load test of the real host (release) against a Stripe stub on loopback
# that answers at once (host/examples/stripe_stub.rs). Measures, in one run:
#   - startup to the first served storefront request, cold and warm compilation cache;
#   - resident memory idle (no policies, the example policies) and under load;
#   - requests/s, p50 and p99 at $CONNECTIONS connections for the discount route
#     (one Stripe retrieve + one update per request),
#     for the no-op route (GET /healthz), for the stub alone, and for the same discount
#     endpoint written by hand (host/examples/handwritten.rs: axum and reqwest, the
#     decision in its own code, no sandbox, guard, audit or metrics);
#   - CPU time per discount request of the host and of the hand-written server.
# Not part of scripts/test.sh: timings are benchmarks, not tests. See docs/performance.md.
#
# Usage: scripts/load-test.sh            (DURATION=10 CONNECTIONS=64 THREADS=2 RUST_LOG=warn)
#
# To compare two builds in one run, point BASELINE_HOST at another discount-host binary and
# BASELINE_POLICY_DIR at the policies built with it (loyalty-tier.wasm and .toml): the
# discount route is then measured on both, one after the other, and the ratio printed.
# BASELINE_POLICY_DIR alone compares other policy settings (say, without `expand`) on
# this host.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
STUB_PORT="${STUB_PORT:-12112}"
HOST_PORT="${HOST_PORT:-4243}"
ROUTE="${ROUTE:-/apply-loyalty-discount}"
export RUST_LOG="${RUST_LOG:-warn}"

if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian package)" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    else sudo apt-get install -y wrk >/dev/null; fi
fi

[ -f target/policies/loyalty-tier.wasm ] || scripts/build-policies.sh
cargo build --release -p discount-host --bin discount-host --example stripe_stub --example handwritten
host_bin="$root/target/release/discount-host"
BASELINE_HOST="${BASELINE_HOST:-}"
[ -z "$BASELINE_HOST" ] && [ -n "${BASELINE_POLICY_DIR:-}" ] && BASELINE_HOST="$host_bin"
handwritten_bin="$root/target/release/examples/handwritten"
HANDWRITTEN_PORT="${HANDWRITTEN_PORT:-4244}"

source scripts/load-common.sh

mkdir -p "$work/policies" "$work/empty" "$work/cold-cache"
for p in cart-threshold loyalty-tier; do
    cp "target/policies/$p.wasm" "target/policies/$p.toml" "$work/policies/"
done
write_post_lua "$ROUTE"

now_ms() { date +%s%3N; }
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
# User plus system CPU time of process $1, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Microseconds of CPU per request: $1 ticks over $2 requests.
cpu_us_per_request() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (n + 0 == 0) print "-"; else printf "%.0f", t * 1e6 / hz / n }'; }

start_stub "$STUB_PORT"

# One storefront request to the discount route on port $1; succeeds on a 2xx.
post_once() {
    curl -fs -o /dev/null -X POST "http://127.0.0.1:$1$ROUTE" \
        -H 'Content-Type: application/json' -d '{"checkout_session_id":"cs_test_startup"}'
}

# Starts the host on $1 (policy dir) with cache $2; sets host_pid and startup_ms
# (launch to the first 200 on $3: "post" for the discount route, "get" for /healthz).
start_host() {
    local t0 bin="${4:-$host_bin}"
    t0=$(now_ms)
    STRIPE_SECRET_KEY=sk_test_load "$bin" --listen "127.0.0.1:$HOST_PORT" \
        --policy-dir "$1" --cache-dir "$2" --stripe-api-base "http://127.0.0.1:$STUB_PORT" \
        >"$work/host.out" 2>"$work/host.err" &
    host_pid=$!
    pids+=("$host_pid")
    for _ in $(seq 2000); do
        if [ "$3" = post ]; then
            post_once "$HOST_PORT" && break
        else
            curl -fs -o /dev/null "http://127.0.0.1:$HOST_PORT/healthz" && break
        fi
        kill -0 "$host_pid" 2>/dev/null || { cat "$work/host.err" >&2; exit 1; }
        sleep 0.005
    done
    startup_ms=$(( $(now_ms) - t0 ))
}
stop_host() { kill "$host_pid"; wait "$host_pid" 2>/dev/null || true; }

# wrk summary: "req/s p50 p99 errors requests"
run_wrk() {
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@")
    echo "$out" >>"$work/wrk.log"
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx/ {print $5} /Socket errors/ {e = $4 + $6 + $8 + $10} END {print e + 0}' <<<"$out" | paste -sd+ | bc)
    echo "$rps $p50 $p99 $errors $(awk '/requests in/ {print $1}' <<<"$out")"
}

echo "== startup and idle memory"
start_host "$work/empty" "$work/cold-cache" get
sleep 1
rss_empty=$(rss_mb "$host_pid")
stop_host
start_host "$work/policies" "$work/cold-cache" post
startup_cold=$startup_ms
stop_host
start_host "$work/policies" "$work/cold-cache" post
startup_warm=$startup_ms
sleep 1
rss_idle=$(rss_mb "$host_pid")

echo "== load: $CONNECTIONS connections, $THREADS wrk threads, ${DURATION}s each, RUST_LOG=$RUST_LOG"
read -r stub_rps stub_p50 stub_p99 stub_err _ < <(run_wrk "http://127.0.0.1:$STUB_PORT/v1/checkout/sessions/cs_test_direct")
read -r noop_rps noop_p50 noop_p99 noop_err _ < <(run_wrk "http://127.0.0.1:$HOST_PORT/healthz")
( sleep $((DURATION / 2)); rss_mb "$host_pid" >"$work/rss-load" ) &
sampler=$!
ticks0=$(cpu_ticks "$host_pid")
read -r disc_rps disc_p50 disc_p99 disc_err disc_n < <(run_wrk -s "$work/post.lua" "http://127.0.0.1:$HOST_PORT")
disc_cpu=$(cpu_us_per_request $(( $(cpu_ticks "$host_pid") - ticks0 )) "$disc_n")
wait "$sampler"
rss_load=$(cat "$work/rss-load")
sleep 2
rss_after=$(rss_mb "$host_pid")
stop_host

"$handwritten_bin" "127.0.0.1:$HANDWRITTEN_PORT" "http://127.0.0.1:$STUB_PORT" >"$work/handwritten.log" 2>&1 &
hand_pid=$!
pids+=("$hand_pid")
for _ in $(seq 200); do post_once "$HANDWRITTEN_PORT" && break; sleep 0.02; done
ticks0=$(cpu_ticks "$hand_pid")
read -r hand_rps hand_p50 hand_p99 hand_err hand_n < <(run_wrk -s "$work/post.lua" "http://127.0.0.1:$HANDWRITTEN_PORT")
hand_cpu=$(cpu_us_per_request $(( $(cpu_ticks "$hand_pid") - ticks0 )) "$hand_n")
kill "$hand_pid"

if [ -n "$BASELINE_HOST" ]; then
    mkdir -p "$work/baseline-policies" "$work/baseline-cache"
    cp "${BASELINE_POLICY_DIR:?set BASELINE_POLICY_DIR to the baseline policies}"/loyalty-tier.{wasm,toml} "$work/baseline-policies/"
    start_host "$work/baseline-policies" "$work/baseline-cache" post "$BASELINE_HOST"
    read -r base_rps base_p50 base_p99 base_err _ < <(run_wrk -s "$work/post.lua" "http://127.0.0.1:$HOST_PORT")
    stop_host
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.3f", a / b }'; }
summary="$work/summary.txt"
{
    echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s; host RUST_LOG=$RUST_LOG; wrk, host and stub share the machine"
    printf '%-44s %10s %9s %9s %7s\n' "route" "req/s" "p50" "p99" "errors"
    printf '%-44s %10s %9s %9s %7s\n' "stub alone (GET session)" "$stub_rps" "$stub_p50" "$stub_p99" "$stub_err"
    printf '%-44s %10s %9s %9s %7s\n' "host no-op (GET /healthz)" "$noop_rps" "$noop_p50" "$noop_p99" "$noop_err"
    printf '%-44s %10s %9s %9s %7s\n' "host POST $ROUTE" "$disc_rps" "$disc_p50" "$disc_p99" "$disc_err"
    printf '%-44s %10s %9s %9s %7s\n' "hand-written POST $ROUTE" "$hand_rps" "$hand_p50" "$hand_p99" "$hand_err"
    if [ -n "$BASELINE_HOST" ]; then
        printf '%-44s %10s %9s %9s %7s\n' "baseline POST $ROUTE" "$base_rps" "$base_p50" "$base_p99" "$base_err"
        echo "discount route / baseline's: $(ratio "$disc_rps" "$base_rps") (baseline: $BASELINE_HOST, $BASELINE_POLICY_DIR)"
    fi
    echo "discount route / no-op route throughput: $(ratio "$disc_rps" "$noop_rps")"
    echo "discount route / hand-written server throughput: $(ratio "$disc_rps" "$hand_rps")"
    echo "CPU per discount request: host ${disc_cpu} us, hand-written ${hand_cpu} us (host/hand-written $(ratio "$disc_cpu" "$hand_cpu"))"
    echo "discount route / stub alone throughput: $(ratio "$disc_rps" "$stub_rps")"
    echo "startup to first served request: warm cache ${startup_warm} ms, cold cache ${startup_cold} ms (warm/cold $(ratio "$startup_warm" "$startup_cold"))"
    echo "RSS: no policies ${rss_empty} MB; example policies idle ${rss_idle} MB (ratio $(ratio "$rss_idle" "$rss_empty")); under load ${rss_load} MB; 2 s after load ${rss_after} MB"
} | tee "$summary"
mkdir -p target/load-test
cp "$summary" "$work/wrk.log" target/load-test/
