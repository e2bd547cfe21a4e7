#!/usr/bin/env python3
"""Cold-start timer: runs a Lambda `bootstrap` against a tiny local Lambda Runtime API emulator.

For each run it starts the binary with a fresh environment, serves it one event through the Runtime API
(`GET /2018-06-01/runtime/invocation/next`, then `POST .../response` or `.../error`), and records
- init: process start -> the function's first `GET next` (runtime up, config read, SDK clients built);
- first event: process start -> the first response posted (init + the first invocation, cold connections);
- peak memory: the process's peak resident set (VmHWM) once it has answered.
The function's AWS calls go wherever AWS_ENDPOINT_URL points (a moto server in BENCHMARKS.md).

usage: coldstart.py BOOTSTRAP {expiry|api} [--runs N]
(a webhook function or the floor given the `api` event answers it with a 404 or a 200: init is what counts)
Environment: the function's own variables (TABLE_NAME, ...) and AWS_ENDPOINT_URL / credentials, passed through.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EVENTS = {
    # What EventBridge Scheduler sends (the schedule's Input): a time bound for a grant that does not exist, so
    # the handler reads the table once and acknowledges.
    "expiry": {
        "job": "expire",
        "grant_id": "01JD3COLDSTART0000000000000",
        "scheduled_time": "2026-01-01T00:00:00Z",
        "attempt": "1",
    },
    # API Gateway HTTP API payload 2.0 with JWT claims: GET /v1/resources (one Query on the table).
    "api": {
        "version": "2.0",
        "routeKey": "GET /v1/resources",
        "rawPath": "/v1/resources",
        "rawQueryString": "",
        "headers": {"accept": "application/json", "host": "api.example.com"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "authorizer": {"jwt": {"claims": {"email": "alice@example.com", "groups": "[engineers]"}, "scopes": None}},
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {"method": "GET", "path": "/v1/resources", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "coldstart"},
            "requestId": "req-1",
            "routeKey": "GET /v1/resources",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000,
        },
        "isBase64Encoded": False,
    },
}


class Run:
    def __init__(self, event):
        self.event = json.dumps(event).encode()
        self.t0 = None
        self.first_next = None
        self.done = None
        self.outcome = None
        self.body = None
        self.served = False
        self.finished = threading.Event()


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the function process is killed mid-poll at the end of every run


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            run = state["run"]
            if self.path.endswith("/runtime/invocation/next"):
                if run.first_next is None:
                    run.first_next = time.perf_counter()
                if run.served:
                    # One event per run: hold the second poll until the process is killed.
                    run.finished.wait(30)
                    return
                run.served = True
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(run.event)))
                self.send_header("Lambda-Runtime-Aws-Request-Id", "coldstart-1")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:coldstart")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.end_headers()
                self.wfile.write(run.event)
            else:
                self.send_error(404)

        def do_POST(self):
            run = state["run"]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if "/invocation/" in self.path and (self.path.endswith("/response") or self.path.endswith("/error")):
                run.done = time.perf_counter()
                run.outcome = "response" if self.path.endswith("/response") else "error"
                run.body = body[:300].decode(errors="replace")
                run.finished.set()
            elif self.path.endswith("/init/error"):
                run.outcome = "init-error"
                run.body = body[:300].decode(errors="replace")
                run.finished.set()

    return Handler


def peak_rss_kib(pid):
    """The process's peak resident set so far, in KiB (Linux's VmHWM, what `time -v` reports as max RSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("kind", choices=sorted(EVENTS))
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    env = dict(os.environ)
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": f"coldstart-{args.kind}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "coldstart",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/coldstart",
        "RUST_LOG": env.get("RUST_LOG", "warn"),
    })

    inits, firsts, peaks = [], [], []
    for i in range(args.runs):
        # A fresh emulator per run, so a killed process's last poll cannot take the next run's event.
        run = Run(EVENTS[args.kind])
        server = QuietServer(("127.0.0.1", 0), make_handler({"run": run}))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{server.server_address[1]}"
        run.t0 = time.perf_counter()
        proc = subprocess.Popen([args.bootstrap], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not run.finished.wait(30):
            proc.kill()
            sys.exit(f"run {i}: no answer within 30 s; stderr: {proc.stderr.read().decode(errors='replace')[:2000]}")
        peaks.append(peak_rss_kib(proc.pid))
        proc.kill()
        proc.wait()
        server.shutdown()
        server.server_close()
        if run.outcome != "response":
            sys.exit(f"run {i}: {run.outcome}: {run.body}")
        inits.append((run.first_next - run.t0) * 1000)
        firsts.append((run.done - run.t0) * 1000)
        if i == 0:
            print(f"first answer: {run.body}")

    def summary(name, xs):
        xs = sorted(xs)
        return f"{name}: median {statistics.median(xs):.1f} ms, min {xs[0]:.1f}, max {xs[-1]:.1f} (n={len(xs)})"

    print(summary("init (start -> first GET next)", inits))
    print(summary("first event (start -> response posted)", firsts))
    kib = sorted(peaks)
    print(f"peak memory (VmHWM): median {statistics.median(kib) / 1024:.1f} MiB, max {kib[-1] / 1024:.1f} (n={len(kib)})")


if __name__ == "__main__":
    main()
