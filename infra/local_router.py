"""One base URL for the local Lambda functions, routed as the API Gateway HTTP API routes them.

Usage: python infra/local_router.py LISTEN_PORT WATCH_PORT

`cargo lambda watch` serves each function under /lambda-url/<function>/...; this forwards
every method on /oauth/token to `token` (the template's `ANY /oauth/token`) and GET /.well-known/{jwks.json,oauth-authorization-server} to
`jwks`, and answers 404 for anything else (as API Gateway does for a route it lacks).
Loopback only, standard library only.
"""

import http.server
import sys
import urllib.error
import urllib.request

ROUTES = {
    ("ANY", "/oauth/token"): "token",
    ("GET", "/.well-known/jwks.json"): "jwks",
    ("GET", "/.well-known/oauth-authorization-server"): "jwks",
}
# Hop-by-hop headers are the proxy's own business (RFC 9110 §7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}


class Router(http.server.BaseHTTPRequestHandler):
    """Forwards routed requests to cargo lambda watch."""

    watch_port = 0
    protocol_version = "HTTP/1.1"

    def _forward(self):
        path, _, query = self.path.partition("?")
        function = ROUTES.get((self.command, path)) or ROUTES.get(("ANY", path))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if function is None:
            self._answer(404, {"Content-Type": "application/json"}, b'{"message":"Not Found"}')
            return
        url = f"http://127.0.0.1:{self.watch_port}/lambda-url/{function}{path}"
        if query:
            url += "?" + query
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        request = urllib.request.Request(url, data=body, headers=headers, method=self.command)
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                self._answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            self._answer(error.code, error.headers, error.read())
        except (urllib.error.URLError, OSError) as error:
            self.log_error("upstream failed: %s", error)
            self._answer(502, {"Content-Type": "application/json"}, b'{"message":"Bad Gateway"}')

    def _answer(self, status, headers, body):
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in HOP_BY_HOP and key.lower() not in {"date", "server"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward


def main(argv):
    if len(argv) != 3:
        print("usage: local_router.py LISTEN_PORT WATCH_PORT", file=sys.stderr)
        return 2
    Router.watch_port = int(argv[2])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(argv[1])), Router)
    print(f"local router on http://127.0.0.1:{argv[1]} -> watch port {argv[2]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
