#!/usr/bin/env bash
# Validates deploy/k8s offline: the manifests (and a policies ConfigMap generated
# from the built policies) against the Kubernetes schemas shipped in the
# `kubernetes-validate` package, their cross-references, and the host.toml they
# carry booted by the real host. Prints `k8s: N passed, M failed`.
# Usage: scripts/validate-k8s.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
venv="$target_dir/k8s-venv"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0 pyyaml==6.0.3
fi
if [ ! -f "$target_dir/policies/cart-threshold.wasm" ]; then
    scripts/build-policies.sh
fi
work="$(mktemp -d)"
host_pid=""
cleanup() {
    if [ -n "$host_pid" ]; then kill "$host_pid" 2>/dev/null || true; wait "$host_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

python3 deploy/k8s/policies-configmap.py "$target_dir/policies" cart-threshold loyalty-tier >"$work/policies.json"
status=0
"$venv/bin/python" deploy/k8s/validate.py deploy/k8s/*.yaml "$work/policies.json" \
    --host-config-out "$work/host.toml" >"$work/validate.out" || status=$?
grep -v '^k8s:' "$work/validate.out" || true
passed="$(sed -n 's/^k8s: \([0-9]*\) passed.*/\1/p' "$work/validate.out")"
failed="$(sed -n 's/.* \([0-9]*\) failed$/\1/p' "$work/validate.out")"
passed="${passed:-0}"
failed="${failed:-1}"

# The host accepts the deployed host.toml (unknown keys are errors) and starts
# on it, with the paths and Stripe pointed at this machine.
cargo build --release -p discount-host
mkdir -p "$work/policies"
cp "$target_dir/policies/cart-threshold."{wasm,toml} "$work/policies/"
STRIPE_SECRET_KEY=sk_test_k8s_check STRIPE_API_BASE=http://127.0.0.1:9 \
    "$target_dir/release/discount-host" --config "$work/host.toml" --listen 127.0.0.1:0 \
    --policy-dir "$work/policies" --cache-dir "$target_dir/policy-cache" --no-demo \
    >"$work/host.out" 2>"$work/host.err" &
host_pid=$!
booted=0
for _ in $(seq 1 300); do
    if grep -q '^discount-host ready:' "$work/host.out" 2>/dev/null; then booted=1; break; fi
    kill -0 "$host_pid" 2>/dev/null || break
    sleep 0.1
done
if [ "$booted" = 1 ]; then
    echo "ok   the host starts on the deployed host.toml"
    passed=$((passed + 1))
else
    echo "FAIL the host starts on the deployed host.toml"
    tail -5 "$work/host.err" >&2 || true
    failed=$((failed + 1))
fi
echo "k8s: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$status" = 0 ]
