#!/usr/bin/env bash
# End-to-end check of the AWS shape on this machine: starts infra/local-aws.sh, gets a token from
# the real Lambda binaries over HTTP, verifies it against the JWKS they serve, finds its audit
# record in the DynamoDB audit table; then starts an embedded `token-server` (temporary database)
# and sends both the same raw, malformed requests (infra/front_parity.py), which must get the
# same status and error code; then stops everything and checks nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LOCAL_AWS_VENV:-$PWD/.venv}
ENV_FILE=.data/local-aws.env
PID_FILE=.data/local-aws.pids
LOG=$(mktemp "${TMPDIR:-/tmp}/local-aws-e2e.XXXXXX.log")
READY_TIMEOUT=${READY_TIMEOUT:-1200}
CARGO=${CARGO:-cargo}
EMBEDDED_DIR=$(mktemp -d "${TMPDIR:-/tmp}/front-parity.XXXXXX")
EMBEDDED=

fail() { echo "local-aws-e2e: FAIL: $*" >&2; echo "--- local-aws output ($LOG) ---" >&2; tail -n 40 "$LOG" >&2; exit 1; }

# The embedded server for the comparison, built before anything runs.
$CARGO build --quiet --bin token-server
TOKEN_SERVER=${CARGO_TARGET_DIR:-$PWD/target}/debug/token-server

rm -f "$ENV_FILE"
setsid infra/local-aws.sh > "$LOG" 2>&1 &
MAIN=$!
stop_embedded() { # SIGTERM, then (bounded) wait; SIGKILL if it did not stop
  [[ -n $EMBEDDED ]] || return 0
  kill -TERM "$EMBEDDED" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$EMBEDDED" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$EMBEDDED" 2>/dev/null || true
  wait "$EMBEDDED" 2>/dev/null || true
}
stop_main() { # on a failure: stop both servers, local-aws.sh with (bounded) time for its children
  stop_embedded
  # Its whole process group, so that a build or seeding step in progress stops too.
  kill -TERM -- "-$MAIN" 2>/dev/null || return 0
  for _ in $(seq 150); do kill -0 "$MAIN" 2>/dev/null || return 0; sleep 0.2; done
}
trap stop_main EXIT

start=$SECONDS
until [[ -s $ENV_FILE ]]; do
  kill -0 "$MAIN" 2>/dev/null || fail "local-aws.sh exited before it was ready"
  ((SECONDS - start < READY_TIMEOUT)) || fail "not ready within $READY_TIMEOUT s"
  sleep 1
done
echo "local-aws-e2e: ready after $((SECONDS - start)) s"
CHILDREN=$(cat "$PID_FILE")

set -a; . "$ENV_FILE"; set +a
# First: it counts the audit records of its own requests.
"$VENV/bin/python" infra/local_aws_e2e.py || fail "checks failed"

# The embedded server on a free port, with a database outside the work tree (watch restarts the
# functions on every change inside it); it prints the demo client's credentials once.
EMBEDDED_PORT=$("$VENV/bin/python" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
env -u TOKEN_ISSUER "$TOKEN_SERVER" --listen "127.0.0.1:$EMBEDDED_PORT" --db "$EMBEDDED_DIR/token.db" \
  > "$EMBEDDED_DIR/out.log" 2> "$EMBEDDED_DIR/err.log" &
EMBEDDED=$!
for _ in $(seq 150); do
  grep -q '^Listening on' "$EMBEDDED_DIR/out.log" && break
  kill -0 "$EMBEDDED" 2>/dev/null || fail "token-server exited: $(tail -n 5 "$EMBEDDED_DIR/err.log")"
  sleep 0.2
done
grep -q '^Listening on' "$EMBEDDED_DIR/out.log" || fail "token-server did not listen within 30 s"
field() { sed -n "s/^$1: *//p" "$EMBEDDED_DIR/out.log"; }
EMBEDDED_URL=http://127.0.0.1:$EMBEDDED_PORT
EMBEDDED_CLIENT_ID=$(field client_id)
EMBEDDED_CLIENT_SECRET=$(field client_secret)
[[ -n $EMBEDDED_CLIENT_ID && -n $EMBEDDED_CLIENT_SECRET ]] || fail "token-server printed no client"
export EMBEDDED_URL EMBEDDED_CLIENT_ID EMBEDDED_CLIENT_SECRET
"$VENV/bin/python" infra/front_parity.py \
  || fail "the local AWS path and the embedded server answer differently"
stop_embedded
kill -0 "$EMBEDDED" 2>/dev/null && fail "token-server $EMBEDDED still running after the stop"

kill -TERM "$MAIN"
for _ in $(seq 150); do kill -0 "$MAIN" 2>/dev/null || break; sleep 0.2; done
kill -0 "$MAIN" 2>/dev/null && fail "local-aws.sh still running 30 s after SIGTERM"
trap - EXIT
wait "$MAIN" 2>/dev/null || true
for pid in $CHILDREN; do
  kill -0 "$pid" 2>/dev/null && fail "process $pid is still running after the stop"
  pgrep -s "$pid" > /dev/null && fail "processes of session $pid are still running after the stop"
done
for url in "$BASE_URL/" "$AWS_ENDPOINT_URL/moto-api/"; do
  curl -s -o /dev/null -m 2 "$url" && fail "$url still answers after the stop"
done
[[ -e $ENV_FILE ]] && fail "$ENV_FILE was left behind"
echo "local-aws-e2e: stopped cleanly, nothing left running"
# Logs are kept only when something failed.
[[ $LOG_DIR == */local-aws.* ]] && rm -rf "$LOG_DIR"
rm -rf "$LOG" "$EMBEDDED_DIR"
echo "local-aws-e2e: 2 passed (end to end, front parity), 0 failed"
