#!/usr/bin/env bash
# Builds build/{{name}}.wasm (a component importing only the host interface) and
# build/{{name}}.toml. Needs clang, lld and wasi-libc (Debian/Ubuntu:
# `apt-get install clang lld wasi-libc libclang-rt-dev-wasm32`) and policy-runner.
set -euo pipefail
cd "$(dirname "$0")"
runner="${POLICY_RUNNER:-policy-runner}"
mkdir -p build
"$runner" bindgen-c --wit wit --out-dir build/bindings >/dev/null
clang --target=wasm32-wasi -O2 -nostartfiles -mexec-model=reactor -Wl,--no-entry -Wl,--strip-all \
    -I build/bindings src/*.c build/bindings/discount_policy.c \
    build/bindings/discount_policy_component_type.o -o build/{{name}}.core.wasm
"$runner" componentize build/{{name}}.core.wasm -o build/{{name}}.wasm
cp policy.toml build/{{name}}.toml
