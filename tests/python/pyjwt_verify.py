"""Verifies an access token with PyJWT as a resource server would: the key by the token's kid
from the JWKS, the algorithm the JWK publishes (one of RS256, ES256, EdDSA; never the token
header's), issuer, audience and expiry. Usage: pyjwt_verify.py ISSUER AUDIENCE, with the token
on the first line of stdin and the JWKS document on the rest. Prints the verified claims."""

import json
import sys

import jwt

ACCEPTED = {"RS256", "ES256", "EdDSA"}


def main():
    issuer, audience = sys.argv[1], sys.argv[2]
    token, _, jwks = sys.stdin.read().partition("\n")
    keys = {k["kid"]: k for k in json.loads(jwks)["keys"]}
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = keys[kid]
    if jwk.get("alg") not in ACCEPTED:
        raise SystemExit(f"JWK alg {jwk.get('alg')!r} is not accepted")
    claims = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=[jwk["alg"]],
        audience=audience,
        issuer=issuer,
    )
    print(json.dumps({"alg": jwk["alg"], "claims": claims}))


if __name__ == "__main__":
    main()
