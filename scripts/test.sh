#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, builds
# everything once in the release profile, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
step() { printf '\n==> %s\n' "$*"; }

step "policies (wasm32 components)"
scripts/build-policies.sh

step "hostile test policies (testing/policies, for the adversarial suite)"
scripts/build-test-policies.sh

step "policies in JavaScript, Python and C (toolchains cached in .cache/)"
scripts/build-lang-policies.sh

step "build (release, whole workspace, tests and benches)"
cargo build --release --workspace --all-targets

step "cargo test"
cargo test --release --workspace

step "isolation when the machine swaps (a temporary swap file, where allowed)"
scripts/check-swap-isolation.sh

step "policy author's walkthrough (plugin-sdk/README.md): new, build, test, run"
scripts/walkthrough.sh

step "official Stripe SDK against the emulator"
EMULATOR_BIN="$PWD/target/release/stripe-emulator" emulator/sdk-test/run.sh

step "Kubernetes manifests (schemas, references, host.toml)"
scripts/validate-k8s.sh

step "dashboard in headless Chromium"
scripts/browser-test.sh
