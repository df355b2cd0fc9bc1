#!/usr/bin/env bash
# Builds every Rust policy under plugins/* into target/policies/<name>.wasm (a component)
# and target/policies/<name>.toml (its settings, from the crate's policy.toml).
#
# Idempotent: cargo rebuilds only what changed, and outputs whose bytes did not change are
# left untouched (a hot-reloading host sees no event). Usage: scripts/build-policies.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="wasm32-unknown-unknown"
out_dir="${POLICY_OUT_DIR:-$root/target/policies}"

# 1. The wasm target (a no-op once installed).
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

# 2. The runner, which componentizes.
cargo build --release -p policy-runner
target_dir="${CARGO_TARGET_DIR:-$root/target}"
runner="$target_dir/release/policy-runner"

# 3. Every Rust plugin, built in ONE cargo invocation
#    (`cargo build --release --target wasm32-unknown-unknown -p a -p b ...`, run by the
#    runner, which reads each package name from its Cargo.toml), then componentized into
#    <out>/<name>.wasm with its policy.toml copied to <out>/<name>.toml.
manifests=()
for manifest in plugins/*/Cargo.toml; do
    [ -f "$manifest" ] && manifests+=(--manifest-path "$manifest")
done
if [ "${#manifests[@]}" -eq 0 ]; then
    echo "no Rust policies under plugins/" >&2
    exit 0
fi
"$runner" build --out-dir "$out_dir" "${manifests[@]}"
