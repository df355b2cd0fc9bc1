#!/usr/bin/env bash
# Builds build/{{name}}.wasm (a component importing only the host interface) and
# build/{{name}}.toml. Needs Node 18+; componentize-js comes from npm on first use
# (set COMPONENTIZE_JS to an installed componentize-js binary to use that one).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
js="${COMPONENTIZE_JS:-}"
if [ -z "$js" ]; then
    [ -x node_modules/.bin/componentize-js ] ||
        npm install --no-audit --no-fund --loglevel=error @bytecodealliance/componentize-js@0.23.0
    js=node_modules/.bin/componentize-js
fi
# -d ...: no WASI at all (no stdio, clocks, random, http); the host refuses WASI imports.
"$js" src/policy.js --wit wit --world-name discount-policy \
    -d stdio -d random -d clocks -d http -d fetch-event -o build/{{name}}.wasm
cp policy.toml build/{{name}}.toml
