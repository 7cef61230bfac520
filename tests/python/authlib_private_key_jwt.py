"""A private_key_jwt client built on Authlib, an independent OAuth library: what a customer
would run. Used by tests/it/private_key_jwt_authlib.rs.

  keygen DIR            writes DIR/private.pem and DIR/public.jwk.json (RSA 2048, public only)
  token BASE ID PEM     gets a token with Authlib's PrivateKeyJWT (exp = iat + 3600, its
                        default; aud = BASE, the issuer, which the service requires by
                        default), verifies it against BASE's JWKS with joserfc and prints
                        {"token": ..., "header": ..., "claims": ...} as JSON
"""
import json
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey


def keygen(out_dir):
    key = RSAKey.generate_key(2048, private=True)
    with open(f"{out_dir}/private.pem", "wb") as f:
        f.write(key.as_pem(private=True))
    with open(f"{out_dir}/public.jwk.json", "w") as f:
        json.dump(key.as_dict(private=False), f)


def token(base, client_id, pem_path):
    with open(pem_path, "rb") as f:
        private_key = f.read()
    token_url = f"{base}/oauth/token"
    session = OAuth2Session(
        client_id, private_key, token_endpoint_auth_method="private_key_jwt"
    )
    # Authlib signs `aud` = the URL it is given, by default the token endpoint. The service
    # accepts the issuer alone (TOKEN_ASSERTION_AUDIENCE=issuer), so name the issuer.
    session.register_client_auth_method(PrivateKeyJWT(base))
    issued = session.fetch_token(token_url, grant_type="client_credentials")
    jwks = KeySet.import_key_set(requests.get(f"{base}/.well-known/jwks.json", timeout=10).json())
    verified = jwt.decode(issued["access_token"], jwks, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": base},
        sub={"essential": True, "value": client_id},
        exp={"essential": True},
    ).validate(verified.claims)
    print(json.dumps({"token": issued, "header": verified.header, "claims": verified.claims}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"keygen": keygen, "token": token}[command](*args)
