"""Checks a running `make local-aws` over HTTP, as a client and a resource server would.

Reads BASE_URL, CLIENT_ID, CLIENT_SECRET, AWS_ENDPOINT_URL, AWS_REGION and TOKEN_AUDIT_TABLE
from the environment (infra/local-aws-e2e.sh loads .data/local-aws.env). Needs PyJWT,
cryptography and boto3 (the .venv has them). The token also goes through the steps of API
Gateway's native JWT authorizer (infra/apigw_jwt_authorizer.py), from the OpenID discovery
document on.
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import boto3
import jwt

import apigw_jwt_authorizer

AUDIENCE = "https://api.example.com"
CHECKS = []


def check(name, condition, detail=""):
    CHECKS.append(name)
    if not condition:
        raise AssertionError(f"{name} {detail}".strip())
    print(f"ok: {name}")


def http(method, url, body=None, headers=None):
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def token_request(base, client_id, secret):
    pair = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
    headers = {
        "Authorization": "Basic " + base64.b64encode(pair.encode()).decode(),
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "local-aws-e2e",
    }
    return http("POST", f"{base}/oauth/token", b"grant_type=client_credentials", headers)


def audit_items(table, endpoint, region):
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return dynamodb.scan(TableName=table)["Items"]


def main():
    base = os.environ["BASE_URL"]
    client_id, secret = os.environ["CLIENT_ID"], os.environ["CLIENT_SECRET"]

    status, headers, body = token_request(base, client_id, secret)
    check("token request answers 200", status == 200, f"(got {status}: {body})")
    check("token response is no-store", headers.get("Cache-Control") == "no-store")
    token = body["access_token"]

    status, headers, body = http("GET", f"{base}/oauth/token")
    check("GET on the token endpoint answers 405 with Allow: POST",
          status == 405 and headers.get("Allow") == "POST", f"(got {status}: {body})")

    status, _, metadata = http("GET", f"{base}/.well-known/oauth-authorization-server")
    check("metadata answers 200", status == 200)
    check("metadata issuer is the base URL", metadata["issuer"] == base, metadata["issuer"])
    check("metadata jwks_uri is under the base URL",
          metadata["jwks_uri"] == f"{base}/.well-known/jwks.json")

    status, _, jwks = http("GET", f"{base}/.well-known/jwks.json")
    check("JWKS answers 200", status == 200)
    header = jwt.get_unverified_header(token)
    check("token header is RS256 at+jwt", header.get("alg") == "RS256" and header.get("typ") == "at+jwt",
          str(header))
    keys = {k["kid"]: k for k in jwks["keys"]}
    check("token kid is in the JWKS", header.get("kid") in keys, f"{header.get('kid')} not in {list(keys)}")
    claims = jwt.decode(
        token,
        jwt.PyJWK(keys[header["kid"]]).key,
        algorithms=["RS256"],
        audience=AUDIENCE,
        issuer=base,
    )
    check("token verifies against the JWKS", claims["client_id"] == client_id)

    status, headers, openid = http("GET", f"{base}/.well-known/openid-configuration")
    check("OpenID discovery answers 200 with the RFC 8414 document",
          status == 200 and openid == metadata, f"(got {status}: {openid})")
    check("OpenID discovery is cacheable like the metadata",
          headers.get("Cache-Control", "").startswith("public, max-age="), str(headers))
    authorized = apigw_jwt_authorizer.authorize(token, base, [AUDIENCE], ["api.read"])
    check("API Gateway's JWT authorizer steps authorize the token",
          authorized["client_id"] == client_id)
    try:
        apigw_jwt_authorizer.authorize(token, base, ["https://elsewhere.example.com"], ["api.read"])
        denied = False
    except apigw_jwt_authorizer.Denied:
        denied = True
    check("API Gateway's JWT authorizer steps deny another audience", denied)

    status, headers, body = token_request(base, client_id, secret + "x")
    check("wrong secret answers 401 invalid_client",
          status == 401 and body.get("error") == "invalid_client", f"(got {status}: {body})")

    items = audit_items(os.environ["TOKEN_AUDIT_TABLE"], os.environ["AWS_ENDPOINT_URL"],
                        os.environ["AWS_REGION"])
    issued = [i for i in items if i.get("jti", {}).get("S") == claims["jti"]]
    check("the issued token has one audit record in DynamoDB", len(issued) == 1,
          f"({len(items)} records scanned)")
    record = issued[0]
    # An issued token's item has no `outcome`: absent means issued (docs/aws-store.md).
    check("the audit record is an issued token's (no outcome attribute) of the client",
          "outcome" not in record and record["client_id"]["S"] == client_id, str(record))
    # The sort key `<time with ms>#<request id>` is the item's only copy of the request id.
    check("the audit record has a request id and source IP",
          record["sk"]["S"].partition("#")[2] and record.get("source_ip", {}).get("S"), str(record))
    check("the audit record has a TTL", int(record["expires_at"]["N"]) > claims["exp"], str(record))
    failed = [i for i in items if i.get("outcome", {}).get("S") == "invalid_client"]
    check("the refused request is audited too", len(failed) == 1, f"({len(failed)} found)")
    text = json.dumps(items)
    check("no secret or token in the audit table", secret not in text and token not in text)


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, KeyError) as error:
        print(f"FAIL: {error!r}", file=sys.stderr)
        print(f"{len(CHECKS) - 1} passed, 1 failed", file=sys.stderr)
        sys.exit(1)
    print(f"{len(CHECKS)} passed, 0 failed")
