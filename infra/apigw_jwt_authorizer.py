"""What API Gateway's HTTP API JWT authorizer decides about a token, step by step as AWS
documents it (API Gateway developer guide, "Control access to HTTP APIs with JWT authorizers in
API Gateway", section "Authorizing API requests with a JWT authorizer"):

1. Take the token from the identity source: the token alone, or prefixed with `Bearer`.
2. Decode the token.
3. Check its algorithm and signature with the public key fetched from the issuer's `jwks_uri`
   (found in `{issuer}/.well-known/openid-configuration`). Only RSA-based algorithms are
   supported: an ES256 or EdDSA token is denied, however valid.
4. Validate the claims: `kid` names a key of `jwks_uri`; `iss` is the configured issuer; `aud`
   (or `client_id` only when there is no `aud`) matches one of the configured audiences; `exp`
   is after now, `nbf` and `iat` not after now (UTC); the `scope` (or `scp`) claim holds at least
   one of the route's authorization scopes, when the route names any.

Any failed step denies the request. The guide names no clock leeway; a claim equal to now
(`nbf` = `iat` = issue time, as our tokens carry) is accepted. API Gateway fetches only over
HTTPS; so that the local shapes can be checked, plain HTTP is accepted on loopback addresses.

As a module: `authorize(token, issuer, audiences, route_scopes)` returns the verified claims or
raises `Denied`. As a command (exit 0 authorized, 1 denied, 2 usage):

    python infra/apigw_jwt_authorizer.py --issuer URL --audience AUD [--audience AUD ...]
        [--scope S ...] [--now EPOCH_SECONDS] TOKEN|-

prints `{"isAuthorized": true, "claims": {...}}` or `{"isAuthorized": false, "reason": "..."}`.
Needs PyJWT with cryptography (the .venv of `make venv-authlib` or `make local-aws`).
"""

import argparse
import ipaddress
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import jwt

# The RSA-based JWS algorithms (RFC 7518 §3.3): the only kind the HTTP API authorizer takes.
RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
# Seconds a discovery or JWKS fetch may take, and the most bytes read from one.
FETCH_TIMEOUT_S = 10
MAX_DOCUMENT_BYTES = 1 << 20


class Denied(Exception):
    """The authorizer denies the request; the message says at which step."""


def _allowed_url(url):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def fetch_json(url):
    """GETs a JSON document: HTTPS, or HTTP on loopback; bounded in time and size."""
    if not _allowed_url(url):
        raise Denied(f"{url} is not an https URL")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
            body = response.read(MAX_DOCUMENT_BYTES + 1)
    except (urllib.error.URLError, OSError) as error:
        raise Denied(f"cannot fetch {url}: {error}") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise Denied(f"{url} is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise Denied(f"{url} is not JSON") from None


def jwks_uri(issuer, fetch=fetch_json):
    """The `jwks_uri` of the issuer's OpenID discovery document."""
    document = fetch(issuer.rstrip("/") + "/.well-known/openid-configuration")
    uri = document.get("jwks_uri") if isinstance(document, dict) else None
    if not isinstance(uri, str):
        raise Denied("the discovery document names no jwks_uri")
    return uri


def _identity(source):
    """Step 1: the token alone, or prefixed with `Bearer`."""
    text = source.strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    if not text:
        raise Denied("no token in the identity source")
    return text


def _signing_key(header, issuer, fetch):
    """Step 3 and the `kid` check of step 4: the RSA key of `jwks_uri` named by `kid`."""
    alg = header.get("alg")
    if alg not in RSA_ALGORITHMS:
        raise Denied(f"algorithm {alg!r} is not supported: only RSA-based algorithms are")
    keys = fetch(jwks_uri(issuer, fetch)).get("keys")
    if not isinstance(keys, list):
        raise Denied("the JWKS has no keys")
    kid = header.get("kid")
    matching = [k for k in keys if isinstance(k, dict) and k.get("kid") == kid]
    if kid is None or not matching:
        raise Denied(f"kid {kid!r} matches no key of jwks_uri")
    jwk = matching[0]
    if jwk.get("kty") != "RSA":
        raise Denied(f"key {kid!r} is not an RSA key")
    try:
        return jwt.PyJWK(jwk, algorithm=alg).key, alg
    except jwt.PyJWTError as error:
        raise Denied(f"key {kid!r} is unusable: {error}") from None


def _audience_matches(claims, audiences):
    aud = claims.get("aud")
    if aud is None:
        # The guide: client_id is checked only when the token has no aud.
        return claims.get("client_id") in audiences
    listed = aud if isinstance(aud, list) else [aud]
    return any(a in audiences for a in listed)


def _scopes(claims):
    value = claims.get("scope", claims.get("scp"))
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [s for s in value if isinstance(s, str)]
    return []


def _number(claims, name):
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Denied(f"{name} is missing or not a number")
    return value


def authorize(token, issuer, audiences, route_scopes=(), now=None, fetch=fetch_json):
    """The verified claims of `token`, or `Denied` naming the failed step."""
    token = _identity(token)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise Denied(f"the token cannot be decoded: {error}") from None
    key, alg = _signing_key(header, issuer, fetch)
    try:
        # The signature only: the claims are checked below, one by one, as the guide lists them.
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.PyJWTError as error:
        raise Denied(f"the signature does not verify: {error}") from None
    if claims.get("iss") != issuer:
        raise Denied(f"iss {claims.get('iss')!r} is not the issuer {issuer!r}")
    if not _audience_matches(claims, audiences):
        raise Denied(f"aud {claims.get('aud')!r} matches none of {list(audiences)}")
    now = time.time() if now is None else now
    if _number(claims, "exp") <= now:
        raise Denied("exp is not after now: the token has expired")
    if _number(claims, "nbf") > now:
        raise Denied("nbf is after now: the token is not valid yet")
    if _number(claims, "iat") > now:
        raise Denied("iat is after now")
    if route_scopes and not set(_scopes(claims)) & set(route_scopes):
        raise Denied(f"the token holds none of the route's scopes {list(route_scopes)}")
    return claims


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issuer", required=True, help="the authorizer's issuer URL")
    parser.add_argument("--audience", action="append", required=True, help="an accepted audience (repeat)")
    parser.add_argument("--scope", action="append", default=[], help="a route authorization scope (repeat)")
    parser.add_argument("--now", type=float, help="the time to check against, epoch seconds")
    parser.add_argument("token", help="the token, `Bearer TOKEN`, or - to read it from stdin")
    args = parser.parse_args(argv)
    token = sys.stdin.readline() if args.token == "-" else args.token
    try:
        claims = authorize(token, args.issuer, args.audience, args.scope, args.now)
    except Denied as denied:
        print(json.dumps({"isAuthorized": False, "reason": str(denied)}))
        return 1
    print(json.dumps({"isAuthorized": True, "claims": claims}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
