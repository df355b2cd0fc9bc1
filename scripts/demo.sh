#!/usr/bin/env bash
# The main job, from a fresh machine: builds the example policies and the host,
# then runs the host with the embedded Stripe emulator and demo sessions.
# Set STRIPE_SECRET_KEY to talk to real Stripe instead.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-policies.sh
cargo build --release -p discount-host
exec target/release/discount-host --config host.example.toml "$@"
