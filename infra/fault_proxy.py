"""A fault-injecting proxy between the AWS adapters and moto: the pipeline tested under faults, and (at
FAULT_RATE=0) a counter of every AWS call a test makes.

It forwards every call to moto unchanged, except a configurable share, which it answers the way a busy or
failing AWS answers, in each service's own wire format:

- throttle: DynamoDB (JSON 1.0) 400 `__type: com.amazonaws.dynamodb.v20120810#ThrottlingException` (for
  `TransactWriteItems`, half the time a `TransactionCanceledException` whose `CancellationReasons` say
  `ThrottlingError`); EventBridge Scheduler (REST-JSON) 429 with `x-amzn-ErrorType: ThrottlingException`;
  Secrets Manager (JSON 1.1) 400 `__type: ThrottlingException`.
- error_before: a 500 (`InternalServerError` / `InternalServerException` / `InternalServiceError`) without
  forwarding: nothing happened.
- error_after: the call is forwarded and done, then the caller gets the same 500 instead of the answer: the
  write happened but the caller cannot know (the case an idempotent retry must survive).
- stall: the proxy holds the call for FAULT_STALL_SECONDS (longer than the SDK's attempt timeout) and then
  drops the connection without forwarding it.

Knobs (environment):
  FAULT_RATE           share of calls faulted, 0..1 (default 0.2)
  FAULT_KINDS          comma-separated kinds to draw from, uniformly (default all four above)
  FAULT_SEED           seed of the draws (default: random); printed at start so a failing run can be
                       replayed. The draws follow the order calls arrive in, so a replay with concurrent
                       callers reproduces the same sequence of faults, not necessarily on the same calls.
  FAULT_STALL_SECONDS  how long a stall lasts (default 3)

`GET /__fault_proxy/stats[?table=NAME]` answers counts as JSON: calls and faults by kind, the error_after
faults that hid a successful answer, by operation, and `operations`: per operation (`DeleteAccountAssignment`,
`PutItem`, ... ; a REST call by its first path segment, `schedules`) the calls, the calls that reached the
upstream (`reached`: answered as they were, or faulted after they were done), the items they name (a
DynamoDB transaction or batch counts each item; any other call 1), the request bytes and the faults by kind. With
`table`, only calls whose body names that string are counted: a DynamoDB table (each test has its own) or any
other name a test owns (an Identity Center permission set's ARN).

moto stays one request at a time (infra/moto_server.py): this proxy serves callers concurrently, so a stall
does not hold up other calls, and forwards each call to moto as it comes.

Usage: python3 infra/fault_proxy.py HOST PORT UPSTREAM_URL  (Python standard library only)
"""

import http.client
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = ("throttle", "error_before", "error_after", "stall")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}
STATS_PATH = "/__fault_proxy/stats"


class Faults:
    """The seeded draws and what they did, shared by every connection's thread."""

    def __init__(self, rate: float, kinds: list, seed: int, stall: float):
        self.rate, self.kinds, self.seed, self.stall = rate, kinds, seed, stall
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.log = []  # (body text, operation, outcome) per call

    def draw(self):
        """(kind or None, a number in [0, 1) for the kind's own choices), from the seeded sequence."""
        with self.lock:
            if self.random.random() >= self.rate:
                return None, 0.0
            return self.random.choice(self.kinds), self.random.random()

    def record(self, body: bytes, operation: str, outcome: str):
        with self.lock:
            self.log.append((body, operation, outcome))

    def stats(self, table):
        needle = json.dumps(table).encode() if table else None
        counts = {"calls": 0, "faults": {kind: 0 for kind in KINDS}, "error_after_hid_success": {}, "operations": {}}
        with self.lock:
            for body, operation, outcome in self.log:
                if needle is not None and needle not in body:
                    continue
                counts["calls"] += 1
                kind = outcome.split(":")[0]
                per = counts["operations"].setdefault(operation, {"calls": 0, "reached": 0, "items": 0, "bytes": 0, "faults": {}})
                per["calls"] += 1
                per["bytes"] += len(body)
                per["items"] += items_of(operation, body)
                if kind in ("none", "error_after"):
                    per["reached"] += 1
                if kind in counts["faults"]:
                    counts["faults"][kind] += 1
                    per["faults"][kind] = per["faults"].get(kind, 0) + 1
                if outcome == "error_after:success":
                    hid = counts["error_after_hid_success"]
                    hid[operation] = hid.get(operation, 0) + 1
        counts["seed"] = self.seed
        return counts


def items_of(operation: str, body: bytes) -> int:
    """How many items a call writes or reads (what DynamoDB bills a transaction or batch by); 1 otherwise."""
    if operation not in ("TransactWriteItems", "TransactGetItems", "BatchWriteItem", "BatchGetItem"):
        return 1
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return 1
    if operation.startswith("Transact"):
        return len(request.get("TransactItems", []))
    tables = request.get("RequestItems", {})
    return sum(len(v.get("Keys", [])) if isinstance(v, dict) else len(v) for v in tables.values())


# REST operations by (method, first path segment, whether a name follows), as the services' APIs name them.
REST_OPERATIONS = {
    ("POST", "schedules", True): "CreateSchedule",
    ("PUT", "schedules", True): "UpdateSchedule",
    ("DELETE", "schedules", True): "DeleteSchedule",
    ("GET", "schedules", True): "GetSchedule",
    ("GET", "schedules", False): "ListSchedules",
    ("POST", "schedule-groups", True): "CreateScheduleGroup",
    ("POST", "outbound-emails", False): "SendEmail",
}


def service_of(headers, path: str, method: str = "POST"):
    """(service, operation) of a call: the JSON protocols (DynamoDB, Secrets Manager, IAM Identity Center's
    `sso` and `identitystore`) name the operation in X-Amz-Target; Scheduler and SES v2 are REST, named here
    from the method and path (`REST_OPERATIONS`, else the first path segment). The service is the signature's
    credential scope."""
    target = headers.get("X-Amz-Target", "")
    if target.startswith("DynamoDB_"):
        return "dynamodb", target.split(".", 1)[-1]
    if target.startswith("secretsmanager."):
        return "secretsmanager", target.split(".", 1)[-1]
    scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", headers.get("Authorization", ""))
    service = scope.group(1) if scope else "unknown"
    if "." in target:
        return service, target.split(".", 1)[-1]
    segments = path.split("?")[0].strip("/").split("/")
    if segments[:2] == ["v2", "email"]:
        segments = segments[2:]  # SES v2: /v2/email/outbound-emails
    first = segments[0] if segments else ""
    named = REST_OPERATIONS.get((method, first, len(segments) > 1))
    return service, named or first or "root"


def throttling(service: str, operation: str, body: bytes, variant: float):
    """(status, headers, body) of a throttled answer in the service's wire format."""
    if service == "dynamodb":
        items = 0
        if operation == "TransactWriteItems":
            try:
                items = len(json.loads(body or b"{}").get("TransactItems", []))
            except ValueError:
                items = 0
        if items and variant < 0.5:
            reasons = [{"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity."}]
            reasons += [{"Code": "None"}] * (items - 1)
            payload = {
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
                "[ThrottlingError" + ", None" * (items - 1) + "]",
                "CancellationReasons": reasons,
            }
        else:
            payload = {
                "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                "message": "Rate of requests exceeds the allowed throughput.",
            }
        return 400, {"Content-Type": "application/x-amz-json-1.0"}, payload
    if service == "secretsmanager":
        return 400, {"Content-Type": "application/x-amz-json-1.1"}, {
            "__type": "ThrottlingException",
            "message": "Rate exceeded",
        }
    return 429, {"Content-Type": "application/json", "x-amzn-ErrorType": "ThrottlingException"}, {
        "Message": "Rate exceeded"
    }


def server_error(service: str):
    """(status, headers, body) of a 500 in the service's wire format."""
    if service == "dynamodb":
        return 500, {"Content-Type": "application/x-amz-json-1.0"}, {
            "__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
            "message": "Internal server error",
        }
    if service == "secretsmanager":
        return 500, {"Content-Type": "application/x-amz-json-1.1"}, {
            "__type": "InternalServiceError",
            "message": "An error occurred on the server side.",
        }
    return 500, {"Content-Type": "application/json", "x-amzn-ErrorType": "InternalServerException"}, {
        "Message": "Unexpected error during processing of request."
    }


class Server(ThreadingHTTPServer):
    # Tests open many connections at once (a closing ends 16 grants in parallel): the default backlog of 5
    # would refuse some, adding faults nobody asked for.
    request_queue_size = 128
    daemon_threads = True


def make_handler(faults: Faults, upstream):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # one line per fault instead, see `answer`
            pass

        def answer(self, status, headers, body: bytes):
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def forward(self, body: bytes):
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}}
                return response.status, kept, data
            finally:
                connection.close()

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path.startswith(STATS_PATH):
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                stats = faults.stats(query.get("table", [None])[0])
                return self.answer(200, {"Content-Type": "application/json"}, json.dumps(stats).encode())
            service, operation = service_of(self.headers, self.path, self.command)
            kind, variant = faults.draw()
            if kind:
                print(f"fault {kind} {service} {operation}", flush=True)
            if kind == "stall":
                faults.record(body, operation, "stall")
                time.sleep(faults.stall)
                self.close_connection = True
                return None
            if kind == "throttle":
                faults.record(body, operation, "throttle")
                status, headers, payload = throttling(service, operation, body, variant)
                return self.answer(status, headers, json.dumps(payload).encode())
            if kind == "error_before":
                faults.record(body, operation, "error_before")
                status, headers, payload = server_error(service)
                return self.answer(status, headers, json.dumps(payload).encode())
            status, headers, data = self.forward(body)
            if kind == "error_after":
                faults.record(body, operation, "error_after:" + ("success" if status < 300 else "failure"))
                status, headers, payload = server_error(service)
                return self.answer(status, headers, json.dumps(payload).encode())
            faults.record(body, operation, "none")
            return self.answer(status, headers, data)

        def do_request(self):
            try:
                self.handle_any()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the caller gave up (its attempt timed out)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_request

    return Handler


def main() -> None:
    host, port, upstream = sys.argv[1], int(sys.argv[2]), urllib.parse.urlparse(sys.argv[3])
    rate = float(os.environ.get("FAULT_RATE", "0.2"))
    kinds = [k.strip() for k in os.environ.get("FAULT_KINDS", ",".join(KINDS)).split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not 0.0 <= rate <= 1.0:
        sys.exit(f"fault_proxy: FAULT_KINDS must be among {KINDS} and FAULT_RATE in 0..1")
    seed = int(os.environ["FAULT_SEED"]) if os.environ.get("FAULT_SEED") else random.SystemRandom().randrange(2**32)
    stall = float(os.environ.get("FAULT_STALL_SECONDS", "3"))
    faults = Faults(rate, kinds, seed, stall)
    print(
        f"fault proxy on {host}:{port} -> {upstream.geturl()}: FAULT_RATE={rate} FAULT_KINDS={','.join(kinds)} "
        f"FAULT_SEED={seed} FAULT_STALL_SECONDS={stall}",
        flush=True,
    )
    server = Server((host, port), make_handler(faults, upstream))
    server.serve_forever()


if __name__ == "__main__":
    main()
