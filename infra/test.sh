#!/usr/bin/env bash
# The test command (README): starts a moto server (the real AWS wire protocol for DynamoDB, EventBridge
# Scheduler and Secrets Manager) and the fault-injecting proxy in front of it (infra/fault_proxy.py, for
# tests/tests/faults.rs and the Identity Center fault test), runs every test in the workspace against them, and
# stops them. tests/tests/grant_cost.rs starts a counting proxy of its own (0% faults) in front of the same moto.
# Extra arguments go to `cargo test` (e.g. `bash infra/test.sh -p ticketbound`). The whole run (no arguments)
# first checks docs/openapi.yaml against the built local server with the API fuzzer (infra/fuzz_api.sh, about two
# minutes; SKIP_FUZZ=1 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ] && [ "${SKIP_FUZZ:-0}" != 1 ]; then
  bash infra/fuzz_api.sh
fi

port="${MOTO_PORT:-5005}"
if ! python3 -c "import moto.server, flask, flask_cors" >/dev/null 2>&1; then
  echo "installing moto[server] with pip..."
  python3 -m pip install --quiet 'moto[server]>=5.1'
fi

# Headless Chromium and chromedriver for the portal's browser tests (apt-get when missing).
bash infra/browser_deps.sh

mkdir -p target
python3 infra/moto_server.py 127.0.0.1 "$port" >target/moto.log 2>&1 &
moto_pid=$!
# The fault-injecting proxy in front of moto (infra/fault_proxy.py; FAULT_RATE, FAULT_SEED, ... pass through).
proxy_port="${FAULT_PROXY_PORT:-$((port + 10000))}"
python3 infra/fault_proxy.py 127.0.0.1 "$proxy_port" "http://127.0.0.1:$port" >target/fault-proxy.log 2>&1 &
proxy_pid=$!
trap 'kill "$moto_pid" "$proxy_pid" 2>/dev/null || true' EXIT

wait_for() { # name pid port log
  for _ in $(seq 1 100); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $3), 0.2)" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then echo "$1 failed to start:"; cat "$4"; exit 1; fi
    sleep 0.1
  done
}
wait_for moto "$moto_pid" "$port" target/moto.log
wait_for "the fault proxy" "$proxy_pid" "$proxy_port" target/fault-proxy.log
head -n 1 target/fault-proxy.log

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export TICKETBOUND_FAULT_PROXY="http://127.0.0.1:$proxy_port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export TICKETBOUND_MOTO=1

cargo test --workspace --locked "$@" 2>&1 | tee target/test-output.log
# One closing line for the whole workspace (cargo prints one per test binary, the last being the doc tests').
grep -E '^test result:' target/test-output.log | awk '{p += $4; f += $6} END {printf "workspace: %d passed, %d failed\n", p, f}'
