"""Schemathesis hooks for `infra/fuzz_api.sh`: what the API description says in prose and a fuzzer cannot guess.

A list's `cursor` is opaque: only a `next` that list gave out is one (docs/openapi.yaml, `Cursor`); any other value
is answered 400 `invalid_cursor`, as documented. So a test case meant to be valid (positive mode) carries a cursor
the server really gave out for that list (collected by the script before the run, `FUZZ_CURSORS`), or none; cases
meant to be invalid keep the made-up cursors, which must be refused.

The server under test is the local one, whose identity is the `localIdentity` scheme (`X-Ticketbound-User`):
the bearer JWT is checked by API Gateway before a request reaches the Lambda API, never by the server itself, so
the run drops that alternative rather than send made-up tokens the local server does not read.

JSON Schema counts `2.0` as an integer; the description says integers are written without a fraction (`2`), as
the server reads them, so valid test cases write them that way.

Every request sent is counted and written to `FUZZ_COUNT_FILE` at exit, for the script's summary.
"""

import atexit
import json
import os
import threading

import schemathesis

# Path template -> cursors that list gave out.
CURSORS: dict[str, list[str]] = json.loads(os.environ.get("FUZZ_CURSORS", "{}"))

_lock = threading.Lock()
_sent = 0


@schemathesis.hook
def before_load_schema(ctx, raw_schema):
    raw_schema["security"] = [{"localIdentity": []}]


def _integers_as_integers(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integers_as_integers(v) for v in value]
    if isinstance(value, dict):
        return {k: _integers_as_integers(v) for k, v in value.items()}
    return value


@schemathesis.hook
def map_case(ctx, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    if isinstance(case.body, (dict, list)):
        case.body = _integers_as_integers(case.body)
    if case.query and "cursor" in case.query:
        given = CURSORS.get(case.path) or []
        if given:
            case.query["cursor"] = given[len(str(case.query["cursor"])) % len(given)]
        else:
            del case.query["cursor"]
    return case


@schemathesis.hook
def after_call(ctx, case, response):
    global _sent
    with _lock:
        _sent += 1


@atexit.register
def _write_count():
    path = os.environ.get("FUZZ_COUNT_FILE")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{_sent}\n")
