#!/usr/bin/env bash
# Builds build/{{name}}.wasm (a component importing only the host interface) and
# build/{{name}}.toml. componentize-py comes from PyPI into .venv on first use (set
# COMPONENTIZE_PY to an installed componentize-py binary to use that one).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
py="${COMPONENTIZE_PY:-}"
if [ -z "$py" ]; then
    [ -x .venv/bin/componentize-py ] ||
        { python3 -m venv .venv && .venv/bin/pip install --quiet componentize-py==0.25.1; }
    py=.venv/bin/componentize-py
fi
# --stub-wasi: no WASI imports (the host refuses them); `app` is src/app.py.
"$py" -d wit -w discount-policy componentize --stub-wasi -p src app -o build/{{name}}.wasm
cp policy.toml build/{{name}}.toml
