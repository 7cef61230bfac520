"""Init time of the authorizer's release bootstrap (README "Development").

Starts the bootstrap N times against a loopback Lambda runtime API and measures, for each
start, the wall time from spawning the process to its first `GET .../invocation/next`: the
whole init (process start, settings, the verifier built, and with discovery the issuer's
metadata read). Each start is then given one event (a request without credentials) and must
answer `isAuthorized: false`; then it is stopped by PID. Prints the median, min and max, with
`AUTHORIZER_JWKS_URI` set and with the JWKS URI discovered from a loopback issuer.

Usage: python3 functions/authorizer/bench/init_time.py BOOTSTRAP [N]   (default N = 15)
Build first, for example: cargo lambda build --release --bin authorizer (x86_64: it runs here).
"""

import http.server
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EVENT = open(os.path.join(HERE, "..", "tests", "fixtures", "no-authorization.json"), "rb").read()


class Runtime(http.server.BaseHTTPRequestHandler):
    """The Lambda runtime API (2018-06-01), just enough for one invocation. Each start gets a
    server (and a queue) of its own, so a late call of the previous process is never counted."""

    calls = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.endswith("/runtime/invocation/next"):
            self.send_error(404)
            return
        self.calls.put(("next", time.monotonic(), None))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Lambda-Runtime-Aws-Request-Id", "init-time-1")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                         "arn:aws:lambda:eu-west-1:123456789012:function:authorizer")
        self.send_header("Content-Length", str(len(EVENT)))
        self.end_headers()
        self.wfile.write(EVENT)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.calls.put(("post", time.monotonic(), (self.path, body)))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Issuer(http.server.BaseHTTPRequestHandler):
    """A loopback issuer's metadata, for the discovery runs."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        body = json.dumps({"issuer": base, "jwks_uri": f"{base}/.well-known/jwks.json",
                           "token_endpoint": f"{base}/oauth/token"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the stopped bootstrap's pending `next` call: expected, not worth a traceback


def serve(handler):
    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_once(binary, env):
    """Milliseconds from spawn to the first `next`; checks the one answer it then gives."""
    calls = queue.Queue()
    runtime = serve(type("OneRuntime", (Runtime,), {"calls": calls}))
    env = {**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{runtime.server_address[1]}"}
    start = time.monotonic()
    p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        kind, at, _ = calls.get(timeout=10)
        if kind != "next":
            sys.exit(f"expected a next call, got {kind}")
        init_ms = (at - start) * 1000
        kind, _, reply = calls.get(timeout=10)
        if kind != "post":
            sys.exit(f"expected the invocation's response, got {kind}")
        path, body = reply
        if kind != "post" or not path.endswith("/init-time-1/response"):
            sys.exit(f"expected the invocation's response, got {kind} {path}")
        answer = json.loads(body)
        if answer.get("isAuthorized") is not False or answer.get("context") != {}:
            sys.exit(f"unexpected answer to a request without credentials: {answer}")
        return init_ms
    except queue.Empty:
        p.kill()
        sys.exit(f"the bootstrap did not reach the runtime API: {p.stderr.read().decode()}")
    finally:
        p.kill()
        p.wait()
        runtime.shutdown()


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    issuer = serve(Issuer)
    issuer_url = f"http://127.0.0.1:{issuer.server_address[1]}"
    base = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_FUNCTION_NAME": "authorizer",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_LOG_STREAM_NAME": "init-time",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/authorizer",
        "TOKEN_ISSUER": issuer_url,
        "AUTHORIZER_AUDIENCE": "https://orders.example.com",
    }
    runs = {
        "AUTHORIZER_JWKS_URI set": {**base, "AUTHORIZER_JWKS_URI": f"{issuer_url}/.well-known/jwks.json"},
        "JWKS URI discovered": base,
    }
    for name, env in runs.items():
        times = [start_once(binary, env) for _ in range(n)]
        print(f"{name}: spawn to first next median {statistics.median(times):.1f} ms "
              f"(min {min(times):.1f}, max {max(times):.1f}), {n} starts")


if __name__ == "__main__":
    main()
