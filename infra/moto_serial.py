"""moto's server, applying one request at a time.

DynamoDB applies a conditional write to an item atomically; moto's threaded server does not:
two concurrent conditional updates of one item can both pass their condition. Serialising the
requests (connections stay concurrent) restores the guarantee that the rate-limit tests rely
on, as real DynamoDB gives it.

Usage: python infra/moto_serial.py HOST PORT
"""

import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

APP = DomainDispatcherApplication(create_backend_app)
LOCK = threading.Lock()


def serial(environ, start_response):
    """Runs the request and materialises its response under one lock."""
    with LOCK:
        return list(APP(environ, start_response))


if __name__ == "__main__":
    run_simple(
        sys.argv[1],
        int(sys.argv[2]),
        serial,
        threaded=True,
        request_handler=MotoRequestHandler,
    )
