#!/usr/bin/env bash
# End-to-end browser test of the dashboard page: starts the real host (with its
# embedded Stripe emulator and demo sessions) and drives /dashboard in Debian's
# headless Chromium through playwright-core (scripts/browser/dashboard.test.mjs).
# Installs Chromium (apt, as root) and playwright-core (npm) when missing.
# Prints `browser: N passed, M failed`. Usage: scripts/browser-test.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium_bin" ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium is missing: apt-get install -y chromium" >&2
        exit 1
    fi
fi
if [ ! -d scripts/browser/node_modules/playwright-core ]; then
    (cd scripts/browser && npm ci --no-audit --no-fund --silent)
fi
if [ ! -f "$target_dir/policies/cart-threshold.wasm" ]; then
    scripts/build-policies.sh
fi
if [ ! -f "$target_dir/policies/js-time-limited.wasm" ]; then
    POLICY_OUT_DIR="$target_dir/policies" scripts/build-lang-policies.sh
fi
cargo build --release -p discount-host

work="$(mktemp -d)"
host_pid=""
cleanup() {
    if [ -n "$host_pid" ]; then kill "$host_pid" 2>/dev/null || true; wait "$host_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/policies"
cp "$target_dir/policies/cart-threshold.wasm" "$target_dir/policies/cart-threshold.toml" "$work/policies/"
printf '[audit]\nsink = "off"\n' >"$work/host.toml"
token="browser-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

env -u STRIPE_SECRET_KEY \
    DISCOUNT_HOST_ADMIN_TOKEN="$token" \
    DISCOUNT_HOST_CONFIG="$work/host.toml" \
    DISCOUNT_HOST_LISTEN=127.0.0.1:0 \
    DISCOUNT_HOST_EMULATOR_LISTEN=127.0.0.1:0 \
    DISCOUNT_HOST_POLICY_DIR="$work/policies" \
    DISCOUNT_HOST_CACHE_DIR="$target_dir/policy-cache" \
    RUST_LOG=warn \
    "$target_dir/release/discount-host" >"$work/host.out" 2>"$work/host.err" &
host_pid=$!
for _ in $(seq 1 600); do
    grep -q '^discount-host ready:' "$work/host.out" 2>/dev/null && break
    if ! kill -0 "$host_pid" 2>/dev/null; then cat "$work/host.err" >&2; echo "browser: 0 passed, 1 failed"; exit 1; fi
    sleep 0.1
done
ready="$(grep '^discount-host ready:' "$work/host.out")"
host_url="$(sed -n 's/.*listen=\([^ ]*\).*/\1/p' <<<"$ready")"
stripe_url="$(sed -n 's/.*stripe=\([^ ]*\).*/\1/p' <<<"$ready")"
# Wait for the demo session lines, printed right after the ready line.
for _ in $(seq 1 50); do grep -q 'demo session' "$work/host.out" && break; sleep 0.1; done
session="$(grep -m1 'demo session' "$work/host.out" | awk '{print $3}')"
echo "host $host_url, stripe $stripe_url, demo session $session"

# One decision and one error for the recent list and the chart.
curl -fsS -X POST "$host_url/apply-cart-discount" -H 'Content-Type: application/json' \
    -d "{\"checkout_session_id\":\"$session\"}" >/dev/null
curl -sS -o /dev/null -X POST "$host_url/apply-cart-discount" -H 'Content-Type: application/json' \
    -d '{"checkout_session_id":"cs_test_doesnotexist"}'

mkdir -p "$target_dir/browser"
HOST_URL="$host_url" STRIPE_URL="$stripe_url" ADMIN_TOKEN="$token" DRY_SESSION_ID="$session" \
    POLICY_DIR="$work/policies" NEW_BUILD="$target_dir/policies/js-time-limited" \
    CHROMIUM="$chromium_bin" SCREENSHOT="$target_dir/browser/dashboard.png" \
    node scripts/browser/dashboard.test.mjs
