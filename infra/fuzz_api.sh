#!/usr/bin/env bash
# The API description against the server: Schemathesis generates requests from docs/openapi.yaml (valid ones and
# invalid ones, every check on) and sends them to a fresh local server (`ticketbound-local`) as an admin, an
# approver and a requester. Any disagreement between the description and what the server answers (a valid
# request refused as malformed, an invalid one accepted, an answer off its schema, a 500) fails the run.
#
#   bash infra/fuzz_api.sh            # FUZZ_EXAMPLES (default 25) cases per operation and phase, FUZZ_SEED (1)
#
# Schemathesis lives in a virtual environment under target/ (the system Python keeps moto and the SAM CLI);
# settings and hooks are in infra/fuzz/. Prints the number of requests sent and a closing line; exits non-zero
# on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

examples="${FUZZ_EXAMPLES:-25}"
seed="${FUZZ_SEED:-1}"
work="target/fuzz"
venv="target/fuzz-venv"
schemathesis_version="4.32.5"

mkdir -p "$work"
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$schemathesis_version"; then
  echo "installing schemathesis $schemathesis_version into $venv..."
  # --clear: a venv moved from elsewhere (a copied target/) keeps dead paths; start it anew.
  python3 -m venv --clear "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

cargo build --locked -q -p ticketbound-local

# A fresh store on a free port of the loopback interface.
data="$work/data"
rm -rf "$data"
port="${FUZZ_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
base="http://127.0.0.1:$port"
target/debug/ticketbound-local --listen "127.0.0.1:$port" --data-dir "$data" --reconcile-every off \
  >"$work/server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if curl -s -o /dev/null "$base/v1/resources"; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then echo "ticketbound-local failed to start:"; cat "$work/server.log"; exit 1; fi
  sleep 0.1
done

ADMIN=(-H 'X-Ticketbound-User: admin@example.com' -H 'X-Ticketbound-Groups: ticketbound-admins')
APPROVER=(-H 'X-Ticketbound-User: bob@example.com' -H 'X-Ticketbound-Groups: ticketbound-approvers')
REQUESTER=(-H 'X-Ticketbound-User: alice@example.com')

# Seed what makes more routes reachable: two resources, a connection (to a ticket system that is not there)
# and two requests, so lists have a second page and the grant routes have grants to act on.
api() { # method path body identity...
  local method=$1 path=$2 body=$3
  shift 3
  curl -sf -X "$method" "$@" -H 'Content-Type: application/json' "$base$path" ${body:+-d "$body"} >/dev/null
}
api PUT /v1/resources/prod-db '{"name": "Production database", "provisioner": {"kind": "none"}}' "${ADMIN[@]}"
api PUT /v1/resources/staging-db '{"name": "Staging database", "provisioner": {"kind": "none"}}' "${ADMIN[@]}"
api POST /v1/connections '{"id": "jira-main", "kind": "jira_cloud", "base_url": "http://127.0.0.1:9", "email": "bot@example.com", "api_token": "fuzz-token-0123456789"}' "${ADMIN[@]}"
api POST /v1/connections '{"id": "fs-main", "kind": "freshservice", "base_url": "http://127.0.0.1:9", "api_key": "fuzz-key-0123456789"}' "${ADMIN[@]}"
api POST /v1/grants '{"resource": "prod-db", "reason": "fuzzing", "duration": "PT1H"}' "${REQUESTER[@]}"
api POST /v1/grants '{"resource": "staging-db", "reason": "fuzzing", "duration": "PT1H"}' "${REQUESTER[@]}"

# The cursors each list really gives out (hooks.py hands them to the valid test cases).
next_of() { curl -sf "${ADMIN[@]}" "$base$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["next"] or "")'; }
grant_id="$(curl -sf "${ADMIN[@]}" "$base/v1/grants?limit=1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["items"][0]["id"])')"
api POST "/v1/grants/$grant_id/approve" '' "${APPROVER[@]}"
FUZZ_CURSORS="$(python3 -c 'import json, sys; print(json.dumps({k: [v] for k, v in zip(sys.argv[1::2], sys.argv[2::2]) if v}))' \
  /v1/grants "$(next_of '/v1/grants?limit=1')" \
  /v1/resources "$(next_of '/v1/resources?limit=1')" \
  /v1/connections "$(next_of '/v1/connections?limit=1')" \
  '/v1/grants/{id}/events' "$(next_of "/v1/grants/$grant_id/events?limit=1")")"
export FUZZ_CURSORS
export SCHEMATHESIS_HOOKS="$PWD/infra/fuzz/hooks.py"

total=0
failed=0
passed=0
run() { # role identity...
  local role=$1
  shift
  export FUZZ_COUNT_FILE="$root/$work/$role.count"
  rm -f "$FUZZ_COUNT_FILE"
  # From the work folder, so Schemathesis' caches stay under target/. The example database lives in memory only,
  # so a seed replays the same run (with none at all, Hypothesis runs about ten times slower). One worker:
  # Hypothesis' strategy descriptions are not thread-safe (two workers end in a runtime error).
  if (cd "$work" && "$root/$venv/bin/st" --config-file "$root/infra/fuzz/schemathesis.toml" --no-color \
    run "$root/docs/openapi.yaml" --url "$base" "$@" --checks all --max-examples "$examples" --seed "$seed" \
    --generation-database :memory: --workers 1 --phases examples,coverage,fuzzing,stateful \
    --report junit --report-junit-path "$role.xml") >"$work/$role.log" 2>&1; then
    passed=$((passed + 1))
    status=passed
  else
    failed=$((failed + 1))
    status=FAILED
  fi
  local sent
  sent="$(cat "$FUZZ_COUNT_FILE" 2>/dev/null || echo 0)"
  total=$((total + sent))
  echo "fuzz as $role: $sent requests, $status ($(tail -n 1 "$work/$role.log" | tr -d '=' | sed 's/^ *//'))"
  if [ "$status" = FAILED ]; then sed -n '/FAILURES/,$p' "$work/$role.log" | head -n 200; fi
}
run admin "${ADMIN[@]}"
run approver "${APPROVER[@]}"
run requester "${REQUESTER[@]}"

echo "fuzz: $total requests from docs/openapi.yaml, $examples examples per operation, seed $seed"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
