#!/usr/bin/env bash
# Load test of the embedded shape: tokens/s and latency with wrk against a release
# token-server on a fresh database, next to the bare RSA-2048 signature rate of
# `openssl speed` measured in the same run. Bounded: DURATION seconds of load (default 10).
#
#   bench/load.sh [connections] [duration_s]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-32}
DURATION=${2:-10}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl is missing: apt-get install -y openssl" >&2; exit 1; }
cargo build --release --quiet --bin token-server
TARGET=${CARGO_TARGET_DIR:-target}
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
# Lift the per-client issuance limit: this measures throughput, not the limiter.
TOKEN_RATE_LIMIT=1000000000 RUST_LOG=warn "$TARGET/release/token-server" --listen "127.0.0.1:$PORT" --db "$WORK/bench.db" \
  > "$WORK/server.out" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do grep -q '^Listening on' "$WORK/server.out" && break; sleep 0.1; done
grep -q '^Listening on' "$WORK/server.out" || { cat "$WORK/server.out"; exit 1; }
export CLIENT_ID=demo
CLIENT_SECRET=$(awk '/^client_secret:/ {print $2}' "$WORK/server.out")
export CLIENT_SECRET

echo "== wrk: $CONNS connections, ${DURATION}s, POST /oauth/token"
wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s bench/token.lua "http://127.0.0.1:$PORT/oauth/token" \
  | tee "$WORK/wrk.out" | grep -E 'RESULT|Latency|Requests/sec'
RPS=$(sed -n 's/.*RESULT.* rps=\([0-9.]*\).*/\1/p' "$WORK/wrk.out")

echo "== openssl speed -seconds 5 -multi 2 rsa2048"
openssl speed -seconds 5 -multi 2 rsa2048 2>/dev/null | tee "$WORK/ssl.out" | grep -E '^rsa +2048'
SIGNS=$(awk '/^rsa +2048/ {print $(NF-1)}' "$WORK/ssl.out" | tail -1)
python3 - "$RPS" "$SIGNS" <<'PY'
import sys
rps, signs = float(sys.argv[1]), float(sys.argv[2])
print(f"tokens/s {rps:.0f}  signatures/s {signs:.0f}  ratio {rps / signs:.2f} (goal >= 0.85)")
PY
