#!/usr/bin/env bash
# Builds the hostile policies of the adversarial tests (testing/policies/*) into
# target/test-policies/, the same way as real plugins: wasm32-unknown-unknown, then
# componentized. Those policy-runner refuses (an ungranted import, the wrong world) are
# wrapped by raw-componentize (wit-component without the interface checks); the
# not-a-component case is the raw core module.
#
# Outputs: hostile.{wasm,toml}, ungranted-import.wasm, wrong-world.wasm,
# wrong-signature.wasm, other-version.wasm, not-a-component.wasm.
# Usage: scripts/build-test-policies.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="wasm32-unknown-unknown"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out_dir="${TEST_POLICY_OUT_DIR:-$target_dir/test-policies}"
core_dir="$target_dir/$target/release"

if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

# 1. The tools: policy-runner (componentize) and raw-componentize.
cargo build --release -p policy-runner -p raw-componentize
runner="$target_dir/release/policy-runner"
raw="$target_dir/release/raw-componentize"

# 2. The SDK-built hostile policy, exactly like a real plugin.
"$runner" build --out-dir "$out_dir" --manifest-path testing/policies/hostile/Cargo.toml

# 3. The components policy-runner would refuse, built with wit-bindgen directly.
cargo build --release --target "$target" -p ungranted-import -p wrong-world -p wrong-signature \
    -p other-version
mkdir -p "$out_dir"
for name in ungranted-import wrong-world wrong-signature other-version; do
    "$raw" "$core_dir/${name//-/_}.wasm" "$out_dir/.$name.wasm.tmp"
    mv "$out_dir/.$name.wasm.tmp" "$out_dir/$name.wasm"
done

# 4. A core module that is not a component.
cp "$core_dir/hostile.wasm" "$out_dir/not-a-component.wasm"
ls -l "$out_dir"
