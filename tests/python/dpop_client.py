"""A DPoP client built on requests-oauth2client, an independent OAuth library: what a customer
would run. Used by tests/it/dpop_client.rs.

  token BASE ID SECRET ALG   gets a DPoP-bound token with client_secret_basic and a fresh DPoP
                             key of ALG (the library answers a use_dpop_nonce refusal itself),
                             and prints {"token_type", "access_token", "jkt", "nonce"} as JSON:
                             jkt is the RFC 7638 thumbprint of the client's key, nonce the last
                             server nonce the library holds (null when none was asked for)
"""
import json
import sys

from requests_oauth2client import DPoPKey, OAuth2Client


def token(base, client_id, secret, alg):
    key = DPoPKey.generate(alg=alg)
    # testing=True: the library otherwise insists on https, and the test server listens on
    # plain http on 127.0.0.1.
    client = OAuth2Client(f"{base}/oauth/token", auth=(client_id, secret), testing=True)
    issued = client.client_credentials(scope="api.read", dpop_key=key)
    print(
        json.dumps(
            {
                "token_type": issued.token_type,
                "access_token": issued.access_token,
                "jkt": key.private_key.public_jwk().thumbprint(),
                "nonce": key.as_nonce,
            }
        )
    )


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"token": token}[command](*args)
