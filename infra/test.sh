#!/usr/bin/env bash
# The test command (README): starts a moto server (the real AWS wire protocol for DynamoDB, EventBridge
# Scheduler and Secrets Manager), runs every test in the workspace against it, and stops it.
# Extra arguments go to `cargo test` (e.g. `bash infra/test.sh -p ticketbound`).
set -euo pipefail
cd "$(dirname "$0")/.."

port="${MOTO_PORT:-5005}"
if ! python3 -c "import moto.server, flask, flask_cors" >/dev/null 2>&1; then
  echo "installing moto[server] with pip..."
  python3 -m pip install --quiet 'moto[server]>=5.1'
fi

mkdir -p target
python3 infra/moto_server.py 127.0.0.1 "$port" >target/moto.log 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then echo "moto failed to start:"; cat target/moto.log; exit 1; fi
  sleep 0.1
done

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export TICKETBOUND_MOTO=1

cargo test --workspace --locked "$@" 2>&1 | tee target/test-output.log
# One closing line for the whole workspace (cargo prints one per test binary, the last being the doc tests').
grep -E '^test result:' target/test-output.log | awk '{p += $4; f += $6} END {printf "workspace: %d passed, %d failed\n", p, f}'
