#!/usr/bin/env bash
# Cold start of each Lambda function against the floor (functions/floor: an empty lambda_http function that
# builds the same AWS SDK configuration and clients), in one run on one machine: BENCHMARKS.md, "Packaging and
# cold start". Builds the five binaries with the release profile (x86_64: this machine cannot run arm64),
# starts a moto server with the template's table, then times each bootstrap with infra/coldstart.py, the floor
# first and again last (the two floor series show the machine's drift during the run).
#
# usage: bash infra/coldstart_floor.sh            RUNS (default 20) runs per binary; MOTO_PORT (default 5206)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-20}"
port="${MOTO_PORT:-5206}"

cargo build --release --locked -p ticketbound-floor -p ticketbound-api -p ticketbound-expiry \
  -p ticketbound-jira-webhook -p ticketbound-freshservice-webhook

python3 infra/moto_server.py 127.0.0.1 "$port" >target/coldstart-moto.log 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/moto-api/" && break
  sleep 0.2
done

export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 TABLE_NAME=coldstart SCHEDULE_GROUP=coldstart SECRET_PREFIX=ticketbound/ \
  MAX_DURATION=P7D EXPIRY_FUNCTION_ARN=arn:aws:lambda:us-east-1:123456789012:function:coldstart-expiry \
  SCHEDULER_ROLE_ARN=arn:aws:iam::123456789012:role/sched \
  SCHEDULE_DLQ_ARN=arn:aws:sqs:us-east-1:123456789012:dlq

# The table exactly as template.yaml declares it (cfn-lint's loader reads the CloudFormation short tags).
python3 - <<'PY'
import os
import boto3
from cfnlint.decode import cfn_yaml

table = cfn_yaml.load("template.yaml")["Resources"]["Table"]["Properties"]
props = {k: table[k] for k in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")}
boto3.client("dynamodb", region_name=os.environ["AWS_REGION"]).create_table(TableName=os.environ["TABLE_NAME"], **props)
PY

bench() { echo "== $1 ($2 event)"; python3 infra/coldstart.py "target/release/$1" "$2" --runs "$runs"; }
bench ticketbound-floor api
bench ticketbound-api api
bench ticketbound-expiry expiry
bench ticketbound-jira-webhook api
bench ticketbound-freshservice-webhook api
bench ticketbound-floor api
ls -l target/release/ticketbound-{floor,api,expiry,jira-webhook,freshservice-webhook} | awk '{print $5, $9}'
