#!/usr/bin/env bash
# The policy author's walkthrough of plugin-sdk/README.md, run for real:
# scaffold a Rust policy outside the workspace, unit-test it natively, build it into a
# component, run its cases and run it on its fixture. Usage: scripts/walkthrough.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
step() { printf '\n--> %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
cargo build --release -p policy-runner
runner="$target_dir/release/policy-runner"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
# One shared target dir: the scaffolded project reuses what the workspace compiled.
export CARGO_TARGET_DIR="$target_dir"

step "policy-runner new welcome-offer"
"$runner" new welcome-offer
cd welcome-offer

step "cargo test --release (native unit tests)"
cargo test --release

step "policy-runner build"
"$runner" build --out-dir "$work/dist"
wasm="$work/dist/welcome-offer.wasm"
test -f "$wasm" && test -f "$work/dist/welcome-offer.toml"

step "policy-runner test cases"
"$runner" test cases --component "$wasm"

step "policy-runner run"
"$runner" run "$wasm" --fixture cases/fixtures/session.json --now 2026-11-27T09:00:00Z

step "policy-runner run --json with a configuration override"
out="$("$runner" run "$wasm" --fixture cases/fixtures/session.json --config percent=25 --json)"
echo "$out" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["ok"] and r["decision"]["coupon_data"]["percent_off"] == 25, r["decision"]
assert r["totals"]["after"]["total"] == 11250, r["totals"]
print("json ok: 25% off, total", r["totals"]["after"]["total"])
'

step "a failing case fails the run"
sed 's/percent_off = 10/percent_off = 11/' cases/big-cart.toml > cases/zz-wrong.toml
if "$runner" test cases --component "$wasm" > "$work/failing.txt"; then
    echo "a failing case did not fail the run" >&2
    exit 1
fi
grep -q "coupon_data.percent_off: expected 11.0, got 10.0" "$work/failing.txt"
echo "walkthrough ok"
