# Shared by scripts/load-test.sh and scripts/compile-under-load.sh (sourced, not run):
# a scratch directory whose processes stop on exit, the Stripe stub, and wrk's script.

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Starts the Stripe stub on port $1 and waits until it answers.
start_stub() {
    "$root/target/release/examples/stripe_stub" "127.0.0.1:$1" >"$work/stub.log" 2>&1 &
    stub_pid=$!
    pids+=("$stub_pid")
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1/v1/checkout/sessions/cs_x" >/dev/null && break; sleep 0.05; done
}

# wrk's script for POST $1: a new session id per request (the host serializes requests
# per session), written to $work/post.lua.
write_post_lua() {
    cat >"$work/post.lua" <<LUA
local n = 0
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function request()
  n = n + 1
  return wrk.format("POST", "$1", {["Content-Type"] = "application/json"},
    '{"checkout_session_id":"cs_test_load_' .. tid .. '_' .. n .. '"}')
end
LUA
}
