"""Sends the same raw, often malformed, HTTP requests to the local AWS path and to the embedded
server, and checks that both give the same status and the same OAuth `error` code.

Usage: python infra/front_parity.py   (infra/local-aws-e2e.sh runs it once both are up)

Reads from the environment:
  BASE_URL, CLIENT_ID, CLIENT_SECRET                      the local AWS path (cargo lambda watch)
  EMBEDDED_URL, EMBEDDED_CLIENT_ID, EMBEDDED_CLIENT_SECRET  a `token-server` with its own DB

It starts nothing. Each request is written byte for byte to a fresh TCP connection, as an
attacker would write it (no client library normalises it), and each answer is read with a
bounded timeout. A few cases are known to differ, each with its reason (API Gateway would
answer as the local path does, or watch itself cannot carry the request as API Gateway would;
docs/aws.md has the table); for those the script checks that the local answer is the one
documented, so that a change in either front is noticed. The baseline cases also name the
answer both must give, so two fronts that fail alike cannot pass. Standard library only.
"""

import base64
import http.client
import json
import os
import socket
import sys
import urllib.parse
from dataclasses import dataclass

# Seconds to wait for one answer: the functions are warm when this runs (local-aws.sh called
# each once), and an answer takes well under a second here.
TIMEOUT_S = 30
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
TOKEN = "/oauth/token"
JWKS = "/.well-known/jwks.json"
METADATA = "/.well-known/oauth-authorization-server"


@dataclass
class Front:
    """One of the two fronts: where it listens and the demo client's credentials there."""

    name: str
    host: str
    port: int
    client_id: str
    secret: str

    @classmethod
    def from_env(cls, name, url_var, id_var, secret_var):
        url = urllib.parse.urlsplit(os.environ[url_var])
        return cls(name, url.hostname, url.port, os.environ[id_var], os.environ[secret_var])

    @property
    def netloc(self):
        return f"{self.host}:{self.port}"

    def basic(self, client_id=None, secret=None):
        """RFC 6749 §2.3.1: id and secret form-urlencoded, then base64."""
        pair = "{}:{}".format(
            urllib.parse.quote_plus(client_id or self.client_id),
            urllib.parse.quote_plus(secret or self.secret),
        )
        return "Basic " + base64.b64encode(pair.encode()).decode()


@dataclass
class Case:
    """A raw request (built per front, as credentials differ) and, when the fronts are known
    to differ, why, and what the local AWS path answers instead."""

    name: str
    build: object  # Front -> bytes
    differs: str = ""
    local: tuple = ()  # (status, error) the local path gives when `differs`
    want: tuple = ()  # (status, error) both must give, when set
    # A path outside the routes is answered by the front, not by a function: its 404 body is
    # the front's own (API Gateway's {"message":"Not Found"}, watch's text, the embedded
    # server's OAuth JSON error), so such a case compares the status alone.
    status_only: bool = False


def request(method, target, headers, body=b"", host=True):
    """Bytes of an HTTP/1.1 request; `headers` is a list of (name, value) kept as given."""
    lines = [f"{method} {target} HTTP/1.1"]
    if host:
        lines.append("Host: 127.0.0.1")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def post(front, body, extra=(), content_type=FORM, auth=True, target=TOKEN, method="POST"):
    """A token request with a Content-Length body: the front's valid Basic credentials and a
    form content type unless told otherwise, then `extra` headers as given."""
    headers = [] if content_type is None else [("Content-Type", content_type)]
    if auth:
        headers.append(("Authorization", front.basic()))
    headers.append(("Content-Length", str(len(body))))
    return request(method, target, headers + list(extra), body)


def framed(front, body, *framing):
    """A token request whose body framing headers are exactly `framing`."""
    headers = [("Content-Type", FORM), ("Authorization", front.basic()), *framing]
    return request("POST", TOKEN, headers, body)


def chunked(data, size=7):
    """`data` in several chunks, then the last chunk (RFC 9112 §7.1)."""
    out = b""
    for i in range(0, len(data), size):
        part = data[i : i + size]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


def secret_post(front):
    form = {"grant_type": "client_credentials", "client_id": front.client_id}
    return urllib.parse.urlencode({**form, "client_secret": front.secret}).encode()


def query_secret(front):
    query = {"client_id": front.client_id, "client_secret": front.secret}
    return f"{TOKEN}?{urllib.parse.urlencode(query)}"


def length(value):
    return ("Content-Length", str(value))


def with_auth(value):
    return lambda f: post(f, GRANT, auth=False, extra=[("Authorization", value)])


def get(target, method="GET", headers=()):
    return lambda f: request(method, target, list(headers))


GRANT = b"grant_type=client_credentials"
BIG = GRANT + b"&padding=" + b"a" * 9000
CHUNKED = ("Transfer-Encoding", "chunked")
BAD_REQUEST = (400, "invalid_request")
PREFLIGHT = [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")]

CASES = [
    # The baseline: both fronts issue a token to the same request.
    Case("valid Basic request", lambda f: post(f, GRANT), want=(200, None)),
    Case("valid client_secret_post request", lambda f: post(f, secret_post(f), auth=False)),
    Case("charset parameter", lambda f: post(f, GRANT, content_type=FORM + "; charset=UTF-8")),
    # Bodies framed in unusual ways must be read, not taken as empty.
    Case("chunked body", lambda f: framed(f, chunked(GRANT), CHUNKED)),
    Case("chunked, wrong grant", lambda f: framed(f, chunked(b"grant_type=password"), CHUNKED)),
    Case("chunked body over 8 KiB", lambda f: framed(f, chunked(BIG), CHUNKED)),
    Case("body over 8 KiB", lambda f: post(f, BIG)),
    Case("Expect: 100-continue", lambda f: post(f, GRANT, extra=[("Expect", "100-continue")])),
    # Methods other than POST reach the token function (ANY /oauth/token) and get 405.
    Case("GET on the token endpoint", get(TOKEN), want=(405, "invalid_request")),
    Case("HEAD on the token endpoint", get(TOKEN, "HEAD")),
    Case("OPTIONS on the token endpoint", get(TOKEN, "OPTIONS")),
    Case("CORS preflight on the token endpoint", get(TOKEN, "OPTIONS", PREFLIGHT)),
    Case("PUT with a valid body", lambda f: post(f, GRANT, method="PUT")),
    Case("DELETE on the token endpoint", get(TOKEN, "DELETE")),
    Case("lower-case method", lambda f: post(f, GRANT, method="post")),
    # Content types: none is added on the way.
    Case("no Content-Type", lambda f: post(f, GRANT, content_type=None), want=BAD_REQUEST),
    Case("JSON body", lambda f: post(f, b'{"grant_type":"password"}', content_type=JSON)),
    Case("text/plain body", lambda f: post(f, GRANT, content_type="text/plain")),
    # Both fronts read the first of two Content-Type headers (watch passes only the first).
    Case("two Content-Type headers", lambda f: post(f, GRANT, extra=[("Content-Type", JSON)])),
    Case("empty body", lambda f: post(f, b"")),
    # Framing attacks: the HTTP parser refuses them before any function runs.
    Case(
        "conflicting Content-Length",
        lambda f: framed(f, GRANT, length(29), length(5)),
        want=(400, None),
    ),
    Case("invalid Content-Length", lambda f: framed(f, GRANT, length("abc"))),
    Case("negative Content-Length", lambda f: framed(f, GRANT, length(-1))),
    Case("Content-Length and chunked", lambda f: framed(f, chunked(GRANT), length(4), CHUNKED)),
    Case("unknown Transfer-Encoding", lambda f: framed(f, GRANT, ("Transfer-Encoding", "gzip"))),
    Case("space before the header colon", lambda f: framed(f, GRANT, ("Content-Length ", "29"))),
    # Parameters: repeated, in the query string, or both authentication methods.
    Case("grant_type twice", lambda f: post(f, GRANT + b"&" + GRANT)),
    Case("credentials in the query", lambda f: post(f, GRANT, auth=False, target=query_secret(f))),
    Case("grant_type in the query", lambda f: post(f, b"", target=TOKEN + "?" + GRANT.decode())),
    Case("empty query string", lambda f: post(f, GRANT, target=TOKEN + "?")),
    Case("Basic and client_secret_post together", lambda f: post(f, secret_post(f))),
    Case("unsupported grant type", lambda f: post(f, b"grant_type=password&username=a")),
    Case("scope not allowed", lambda f: post(f, GRANT + b"&scope=admin")),
    Case("malformed resource", lambda f: post(f, GRANT + b"&resource=not-a-uri")),
    Case("invalid percent-encoding", lambda f: post(f, b"grant_type=client_%ZZcredentials")),
    Case("NUL byte in the scope", lambda f: post(f, GRANT + b"&scope=api.read%00")),
    # Authentication: malformed, missing, wrong, unknown (an id no other case uses, to stay far
    # from the per-client failure limit).
    Case("malformed Basic header", with_auth("Basic !!notbase64")),
    Case("Bearer instead of Basic", with_auth("Bearer abc")),
    Case("no authentication", lambda f: post(f, GRANT, auth=False)),
    Case("unknown client", lambda f: with_auth(f.basic("parity-nobody", "x"))(f)),
    Case("wrong secret", lambda f: with_auth(f.basic(secret=f.secret + "x"))(f)),
    # Paths the API does not route, and the discovery routes.
    Case("unknown path", get("/admin"), status_only=True),
    Case("root path", get("/"), status_only=True),
    Case("trailing slash", lambda f: post(f, GRANT, target=TOKEN + "/"), status_only=True),
    Case("upper-case path", lambda f: post(f, GRANT, target=TOKEN.upper()), status_only=True),
    Case(
        "percent-encoded path",
        lambda f: post(f, GRANT, target="/oauth/%74oken"),
        status_only=True,
    ),
    Case(
        "dot segment in the path",
        lambda f: post(f, GRANT, target="/.well-known/.." + TOKEN),
        status_only=True,
    ),
    Case("absolute-form target", lambda f: post(f, GRANT, target=f"http://{f.netloc}{TOKEN}")),
    Case("JWKS", get(JWKS)),
    Case("metadata", get(METADATA)),
    # Known differences, each with its reason.
    Case(
        "no Host header",
        lambda f: request("GET", TOKEN, [], host=False),
        differs="an HTTP/1.1 request without Host is malformed (RFC 9112 §3.2): the embedded "
        "server refuses it (400) before routing, and API Gateway, which picks the API by its "
        "host name, never passes one to a function; cargo lambda watch does, so the token "
        "function answers the GET (405)",
        local=(405, "invalid_request"),
    ),
    Case(
        "HEAD on the JWKS",
        get(JWKS, "HEAD"),
        differs="API Gateway matches the route GET /.well-known/jwks.json for GET only, and so "
        "does watch (404); axum answers HEAD on a GET route as GET (200)",
        local=(404, None),
    ),
    Case(
        "POST on the JWKS",
        get(JWKS, "POST", [("Content-Length", "0")]),
        differs="API Gateway has the route GET /.well-known/jwks.json only, so another method "
        "gets its 404 (watch routes by method too); the embedded server answers 405",
        local=(404, None),
    ),
    Case(
        "DELETE on the metadata",
        get(METADATA, "DELETE"),
        differs="as for POST on the JWKS: a route for GET only, 404 on API Gateway, 405 in axum",
        local=(404, None),
    ),
    Case(
        "watch's function-URL path",
        get("/lambda-url/jwks" + JWKS),
        differs="cargo lambda watch also serves every function under /lambda-url/<name>/ "
        "(its own emulator API, loopback only); API Gateway and the embedded server have no "
        "such path",
        local=(200, None),
    ),
    Case(
        "non-UTF-8 byte in the Authorization header",
        with_auth("Basic \xff\xfe"),
        differs="watch cannot put a header that is not UTF-8 into the JSON event and answers 500 "
        "itself, before any function runs; the embedded server reads the header as malformed "
        "(401 invalid_client); API Gateway's own handling of such bytes cannot be run locally",
        local=(500, None),
    ),
    Case(
        "non-UTF-8 body without Content-Type",
        lambda f: post(f, b"grant_type=\xff", content_type=None),
        differs="watch reads a body without Content-Type as text and answers 500 itself when it "
        "is not UTF-8; API Gateway base64-encodes it and the function answers 400 "
        "invalid_request (no form content type), as the embedded server does",
        local=(500, None),
    ),
    Case(
        "two Authorization headers, the valid one first",
        lambda f: post(f, GRANT, extra=[("Authorization", "Basic !!notbase64")]),
        differs="watch passes only the first value of a repeated header in the event "
        "(aws_lambda_events serialises one value per name), so the token function sees one "
        "valid header; API Gateway joins the values with a comma, which the function refuses "
        "as a malformed Basic header (400 invalid_request), as the embedded server does",
        local=(200, None),
    ),
]


def send(front, raw):
    """(status, OAuth error code or None) of one raw request; status "closed" when the
    connection closed without an answer, "timeout" when none came within TIMEOUT_S."""
    with socket.create_connection((front.host, front.port), timeout=TIMEOUT_S) as sock:
        try:
            sock.sendall(raw)
            method = raw.split(b" ", 1)[0].decode("latin-1")
            response = http.client.HTTPResponse(sock, method=method)
            response.begin()
            body = response.read()
        except TimeoutError:
            return "timeout", None
        except (http.client.HTTPException, ConnectionError):
            return "closed", None
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    return response.status, error


def main():
    local = Front.from_env("local AWS", "BASE_URL", "CLIENT_ID", "CLIENT_SECRET")
    embedded = Front.from_env(
        "embedded", "EMBEDDED_URL", "EMBEDDED_CLIENT_ID", "EMBEDDED_CLIENT_SECRET"
    )
    failed = 0
    differ = 0
    for case in CASES:
        got_local = send(local, case.build(local))
        got_embedded = send(embedded, case.build(embedded))
        if case.differs:
            differ += 1
            ok = got_local == case.local and got_local != got_embedded
            verdict = "differs as documented" if ok else "FAIL (documented difference changed)"
        else:
            if case.status_only:
                same = got_local[0] == got_embedded[0]
            else:
                same = got_local == got_embedded
            ok = same and (not case.want or got_local == case.want)
            verdict = "same" if ok else "FAIL"
        failed += not ok
        answers = f"local AWS {fmt(got_local)}, embedded {fmt(got_embedded)}"
        print(f"{verdict:>22}: {case.name}: {answers}")
        if case.differs and not ok:
            print(f"{'':>22}  expected local {fmt(case.local)}; reason: {case.differs}")
        if case.want and not ok:
            print(f"{'':>22}  expected from both: {fmt(case.want)}")
    print(f"front parity: {len(CASES) - failed} passed, {failed} failed "
          f"({len(CASES) - differ} equal answers required, {differ} documented differences)")
    return 1 if failed else 0


def fmt(answer):
    status, error = answer
    return f"{status} {error}" if error else str(status)


if __name__ == "__main__":
    sys.exit(main())
