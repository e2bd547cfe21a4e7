"""moto's server, answering one request at a time.

moto's own server handles each request on a thread and its DynamoDB conditional writes and transactions are not
atomic across threads, so two racing conditional writes can both succeed there, which real DynamoDB never allows.
The tests race conditional writes on purpose, so this server runs the same moto application behind one lock:
every request is atomic, as a conditional write on one DynamoDB item is. Connections are still accepted on
threads (keep-alive clients do not block each other while idle).

Usage: python3 infra/moto_server.py HOST PORT
"""

import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    run_simple(host, port, one_at_a_time, threaded=True)


if __name__ == "__main__":
    main()
