#!/usr/bin/env bash
# Builds the policies written in JavaScript, Python and C (plugins/js-*, py-*, c-*) into
# target/policies/<name>.wasm (a component importing only the host interface) and
# target/policies/<name>.toml (its settings, from the policy's policy.toml).
#
# Toolchains come from their registries, installed once into .cache/ (gitignored):
#   JavaScript  @bytecodealliance/componentize-js (npm)  -> .cache/node
#   Python      componentize-py (PyPI)                   -> .cache/venv-componentize
#   C           clang, lld, wasi-libc, libclang-rt-dev-wasm32 (apt, when missing)
#               + `policy-runner bindgen-c` (wit-bindgen's C generator) and
#                 `policy-runner componentize` (wit-component)
# Each policy is rebuilt only when its sources, the WIT, the toolchain pin or this script
# change (a hash stamp in target/policies/.stamps), and a toolchain is installed only when
# a policy needs it. Outputs whose bytes did not change are left untouched.
#
# Usage: scripts/build-lang-policies.sh [name...]    (default: every non-Rust policy)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out_dir="${POLICY_OUT_DIR:-$root/target/policies}"
cache="$root/.cache"
stamps="$out_dir/.stamps"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
runner="$target_dir/release/policy-runner"
mkdir -p "$out_dir" "$stamps"

# Pinned toolchain versions (part of every stamp).
COMPONENTIZE_JS_VERSION="0.23.0"
COMPONENTIZE_PY_VERSION="0.25.1"
CLANG_FLAGS=(--target=wasm32-wasi -O2 -nostartfiles -mexec-model=reactor -Wl,--no-entry -Wl,--strip-all)

log() { printf '  [lang-policies] %s\n' "$*" >&2; }

# --- toolchains ------------------------------------------------------------------------

ensure_runner() {
    cargo build --release -p policy-runner --quiet
}

ensure_node() {
    local bin="$cache/node/node_modules/.bin/componentize-js"
    if [ -x "$bin" ] && grep -q "\"version\": \"$COMPONENTIZE_JS_VERSION\"" \
        "$cache/node/node_modules/@bytecodealliance/componentize-js/package.json" 2>/dev/null; then
        return
    fi
    log "installing componentize-js $COMPONENTIZE_JS_VERSION from npm into .cache/node"
    mkdir -p "$cache/node"
    [ -f "$cache/node/package.json" ] || echo '{"private": true}' >"$cache/node/package.json"
    (cd "$cache/node" && npm install --no-audit --no-fund --loglevel=error \
        "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION")
}

ensure_python() {
    local venv="$cache/venv-componentize"
    if [ -x "$venv/bin/componentize-py" ] &&
        "$venv/bin/componentize-py" --version 2>/dev/null | grep -q "$COMPONENTIZE_PY_VERSION"; then
        return
    fi
    log "installing componentize-py $COMPONENTIZE_PY_VERSION from PyPI into .cache/venv-componentize"
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
}

apt_updated=false
ensure_clang() {
    local missing=()
    command -v clang >/dev/null || missing+=(clang)
    command -v wasm-ld >/dev/null || missing+=(lld)
    [ -f /usr/include/wasm32-wasi/stdlib.h ] || missing+=(wasi-libc)
    compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null ||
        missing+=(libclang-rt-dev-wasm32)
    [ "${#missing[@]}" -eq 0 ] && return
    log "installing ${missing[*]} with apt-get"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    if ! $apt_updated; then
        "${sudo[@]}" apt-get update -qq
        apt_updated=true
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# --- building --------------------------------------------------------------------------

# The hash of everything a policy's component depends on.
stamp_of() {
    local dir="$1" tool="$2"
    {
        echo "$tool"
        sha256sum <"$root/scripts/build-lang-policies.sh"
        sha256sum wit/*.wit
        find "$dir/src" -type f -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum
    } | sha256sum | cut -d' ' -f1
}

# Checks a freshly built component as the host loads it (with its settings), then moves
# it into place unless its bytes did not change.
install_output() {
    local built="$1" name="$2" settings="$3"
    "$runner" inspect "$built" --settings "$settings" >&2
    if ! cmp -s "$built" "$out_dir/$name.wasm"; then
        mv "$built" "$out_dir/$name.wasm"
    else
        rm -f "$built"
    fi
}

build_js() {
    local dir="$1" name="$2" tmp="$3"
    ensure_node
    "$cache/node/node_modules/.bin/componentize-js" "$dir/src/policy.js" \
        --wit wit --world-name discount-policy \
        -d stdio -d random -d clocks -d http -d fetch-event \
        -o "$tmp/$name.wasm" >&2
}

build_py() {
    local dir="$1" name="$2" tmp="$3"
    ensure_python
    # --stub-wasi: every WASI import becomes a trapping stub, so the host grants none.
    "$cache/venv-componentize/bin/componentize-py" -d wit -w discount-policy \
        componentize --stub-wasi -p "$dir/src" app -o "$tmp/$name.wasm" >&2
}

build_c() {
    local dir="$1" name="$2" tmp="$3"
    ensure_clang
    "$runner" bindgen-c --wit wit --out-dir "$tmp/bindings" >/dev/null
    clang "${CLANG_FLAGS[@]}" -I "$tmp/bindings" "$dir"/src/*.c \
        "$tmp/bindings/discount_policy.c" "$tmp/bindings/discount_policy_component_type.o" \
        -o "$tmp/$name.core.wasm"
    "$runner" componentize "$tmp/$name.core.wasm" -o "$tmp/$name.wasm" >/dev/null
}

names=("$@")
if [ "${#names[@]}" -eq 0 ]; then
    for dir in plugins/js-* plugins/py-* plugins/c-*; do
        [ -d "$dir/src" ] && names+=("$(basename "$dir")")
    done
fi

ensure_runner
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for name in "${names[@]}"; do
    dir="plugins/$name"
    case "$name" in
    js-*) lang=js tool="componentize-js $COMPONENTIZE_JS_VERSION" ;;
    py-*) lang=py tool="componentize-py $COMPONENTIZE_PY_VERSION" ;;
    c-*) lang=c tool="clang ${CLANG_FLAGS[*]}" ;;
    *) echo "unknown language for $name (expected js-, py- or c-)" >&2 && exit 2 ;;
    esac
    [ -f "$dir/policy.toml" ] || { echo "$dir/policy.toml missing" >&2 && exit 2; }
    cmp -s "$dir/policy.toml" "$out_dir/$name.toml" || cp "$dir/policy.toml" "$out_dir/$name.toml"
    stamp="$(stamp_of "$dir" "$tool")"
    if [ -f "$out_dir/$name.wasm" ] && [ "$(cat "$stamps/$name" 2>/dev/null)" = "$stamp" ]; then
        log "$name: up to date"
        continue
    fi
    log "$name: building ($tool)"
    started=$SECONDS
    "build_$lang" "$dir" "$name" "$tmp"
    install_output "$tmp/$name.wasm" "$name" "$dir/policy.toml"
    echo "$stamp" >"$stamps/$name"
    log "$name: built in $((SECONDS - started)) s"
done
