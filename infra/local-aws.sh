#!/usr/bin/env bash
# The AWS shape on this machine: moto (DynamoDB + Secrets Manager) and the real Lambda binaries
# under `cargo lambda watch`, which serves them under one base URL with the template's routes
# (`[workspace.metadata.lambda.watch.router]` in Cargo.toml), as the API Gateway HTTP API does.
#
# Creates the tables and the secret the template declares, runs the first key rotation through
# the rotate-keys function as Secrets Manager does at deployment, creates a demo client with
# `tokenctl --backend aws`, then writes .data/local-aws.env (BASE_URL, CLIENT_ID,
# CLIENT_SECRET, and the emulator's settings) and stays in the foreground until Ctrl-C or
# SIGTERM, when it stops everything it started, by PID. Run it through `make local-aws`, which
# installs the venv first.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${LOCAL_AWS_VENV:-$ROOT/.venv}
ENV_FILE=$ROOT/.data/local-aws.env
PID_FILE=$ROOT/.data/local-aws.pids
# Logs live outside the work tree: cargo lambda watch rebuilds on every change inside it.
LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/local-aws.XXXXXX")
CARGO=${CARGO:-cargo}

die() { echo "local-aws: $*" >&2; exit 1; }
[[ -x $VENV/bin/moto_server && -x $VENV/bin/cargo-lambda ]] \
  || die "moto or cargo-lambda missing in $VENV; run 'make local-aws' (it installs them)"

free_port() { "$VENV/bin/python" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
MOTO_PORT=$(free_port); WATCH_PORT=$(free_port)
BASE_URL=http://127.0.0.1:$WATCH_PORT

PIDS=()
stop_all() {
  trap - INT TERM EXIT
  rm -f "$ENV_FILE"
  local pid
  for pid in "${PIDS[@]}"; do
    # Each child leads its own process group (setsid), so this also stops what it spawned
    # (watch runs cargo and the function binaries), and nothing else.
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -f "$PID_FILE"
  echo "local-aws: stopped (logs in $LOG_DIR)" >&2
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() { # name command... : runs it in its own session, logs to $LOG_DIR/name.log
  local name=$1; shift
  setsid "$@" > "$LOG_DIR/$name.log" 2>&1 &
  PIDS+=("$!")
  echo "${PIDS[*]}" > "$PID_FILE"
}

wait_http() { # url seconds what : until the URL answers (any HTTP status), bounded
  local deadline=$((SECONDS + $2))
  until curl -s -o /dev/null -m 5 "$1"; do
    ((SECONDS < deadline)) || die "$3 did not answer within $2 s (logs in $LOG_DIR)"
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || die "$3: a process exited (logs in $LOG_DIR)"; done
    sleep 0.5
  done
}

mkdir -p "$ROOT/.data"
rm -f "$ENV_FILE"
echo "local-aws: logs in $LOG_DIR" >&2

export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
  TOKEN_CLIENTS_TABLE=token-clients TOKEN_AUDIT_TABLE=token-audit \
  TOKEN_PUBLIC_KEYS_TABLE=token-public-keys TOKEN_RATE_LIMITS_TABLE=token-rate-limits \
  TOKEN_ASSERTION_IDS_TABLE=token-assertion-ids TOKEN_SECRET_INDEX_TABLE=token-secret-index \
  TOKEN_KEY_SECRET_ID=token-service/signing-keys \
  TOKEN_ISSUER=$BASE_URL RUST_LOG=${RUST_LOG:-info}
export PATH=$VENV/bin:$PATH

# Build first: the first request to watch otherwise blocks on the whole debug build.
echo "local-aws: building the functions, tokenctl and the resource tool" >&2
$CARGO build --quiet -p token -p jwks -p rotate-keys -p secret-scanning
$CARGO build --quiet --bin tokenctl
$CARGO build --quiet --features lambda --example aws-seed

start moto "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT"
wait_http "$AWS_ENDPOINT_URL/moto-api/" 60 "moto"

$CARGO run --quiet --features lambda --example aws-seed || die "creating the tables and secret failed"

# --disable-cors: watch would otherwise answer CORS preflights itself and add CORS headers to
# every answer; the template's HTTP API configures no CORS, so OPTIONS reaches the function.
start watch cargo lambda watch -A 127.0.0.1 -P "$WATCH_PORT" --disable-cors
wait_http "$BASE_URL/" 60 "cargo lambda watch"

# The deployment's first rotation (RotateImmediatelyOnUpdate): Secrets Manager invokes the
# rotate-keys function with each step; here cargo lambda does, with the same events.
ROTATION_TOKEN=$("$VENV/bin/python" -c 'import uuid; print(uuid.uuid4())')
for step in createSecret setSecret testSecret finishSecret; do
  event="{\"Step\":\"$step\",\"SecretId\":\"$TOKEN_KEY_SECRET_ID\",\"ClientRequestToken\":\"$ROTATION_TOKEN\"}"
  cargo lambda invoke rotate-keys --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" \
    --data-ascii "$event" > "$LOG_DIR/rotation-$step.json" 2>&1 \
    || die "rotation step $step failed: $(cat "$LOG_DIR/rotation-$step.json")"
done
echo "local-aws: the first rotation created the signing key" >&2

CLIENT=$("${CARGO_TARGET_DIR:-$ROOT/target}/debug/tokenctl" --backend aws clients create --id demo --name "Demo client" \
  --scope api.read --audience https://api.example.com --json) || die "tokenctl could not create the client"
CLIENT_ID=$("$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<< "$CLIENT")
CLIENT_SECRET=$("$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<< "$CLIENT")
[[ -n $CLIENT_ID && -n $CLIENT_SECRET ]] || die "tokenctl printed no client"
# Each function's first invocation starts (and if needed builds) it; wait for both.
for path in /.well-known/jwks.json /.well-known/oauth-authorization-server; do
  deadline=$((SECONDS + 600))
  until [[ $(curl -s -o /dev/null -w '%{http_code}' -m 600 "$BASE_URL$path") == 200 ]]; do
    ((SECONDS < deadline)) || die "GET $path did not answer 200 (logs in $LOG_DIR)"
    sleep 1
  done
done
deadline=$((SECONDS + 600))
until [[ $(curl -s -o /dev/null -w '%{http_code}' -m 600 -X POST "$BASE_URL/oauth/token") == 400 ]]; do
  ((SECONDS < deadline)) || die "the token function did not start (logs in $LOG_DIR)"
  sleep 1
done

umask 077
cat > "$ENV_FILE.tmp" <<EOF
BASE_URL=$BASE_URL
CLIENT_ID=$CLIENT_ID
CLIENT_SECRET=$CLIENT_SECRET
AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
AWS_REGION=$AWS_REGION
TOKEN_AUDIT_TABLE=$TOKEN_AUDIT_TABLE
LOG_DIR=$LOG_DIR
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"
cat >&2 <<EOF
local-aws: ready at $BASE_URL (credentials in .data/local-aws.env). Get a token with:
  set -a; . .data/local-aws.env; set +a
  curl -s -u "\$CLIENT_ID:\$CLIENT_SECRET" -d grant_type=client_credentials \$BASE_URL/oauth/token
Ctrl-C stops everything.
EOF
# Foreground until a signal or a child's exit; the EXIT trap then stops the rest.
wait -n "${PIDS[@]}" || true
die "a process exited on its own (logs in $LOG_DIR)"
