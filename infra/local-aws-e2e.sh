#!/usr/bin/env bash
# End-to-end check of the AWS shape on this machine: starts infra/local-aws.sh, gets a token from
# the real Lambda binaries over HTTP, verifies it against the JWKS they serve, finds its audit
# record in the DynamoDB audit table, then stops everything and checks nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LOCAL_AWS_VENV:-$PWD/.venv}
ENV_FILE=.data/local-aws.env
PID_FILE=.data/local-aws.pids
LOG=$(mktemp "${TMPDIR:-/tmp}/local-aws-e2e.XXXXXX.log")
READY_TIMEOUT=${READY_TIMEOUT:-1200}

fail() { echo "local-aws-e2e: FAIL: $*" >&2; echo "--- local-aws output ($LOG) ---" >&2; tail -n 40 "$LOG" >&2; exit 1; }

rm -f "$ENV_FILE"
setsid infra/local-aws.sh > "$LOG" 2>&1 &
MAIN=$!
stop_main() { # on a failure: stop local-aws.sh and give it (bounded) time to stop its children
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
"$VENV/bin/python" infra/local_aws_e2e.py || fail "checks failed"

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
rm -f "$LOG"
echo "local-aws-e2e: 1 passed, 0 failed"
