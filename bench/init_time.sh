#!/usr/bin/env bash
# Init time of the release token and jwks functions (docs/performance.md): starts moto, creates
# the tables, the secret and the first signing key, then starts each function N times and reads
# its `init_ms` log line (main() to ready for the first event, key set loaded for token) and the
# wall time from spawning the process to that line. Prints the median of each. The functions
# wait for their first event at an address where nothing answers and are stopped by PID.
#
# Usage: bench/init_time.sh [N]   (default 9; needs `make venv` for moto)
set -euo pipefail
N=${1:-9}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$ROOT/.venv
CARGO=${CARGO:-cargo}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ -x $VENV/bin/moto_server ]] || { echo "init_time: moto is missing; run 'make venv'" >&2; exit 1; }

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
MOTO_PORT=$(port)
LOG=$(mktemp -d)
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" > "$LOG/moto.log" 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null; wait "$MOTO_PID" 2>/dev/null; rm -rf "$LOG"' EXIT

export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
  TOKEN_CLIENTS_TABLE=init-clients TOKEN_AUDIT_TABLE=init-audit \
  TOKEN_PUBLIC_KEYS_TABLE=init-public-keys TOKEN_RATE_LIMITS_TABLE=init-rate-limits \
  TOKEN_ASSERTION_IDS_TABLE=init-assertion-ids TOKEN_SECRET_INDEX_TABLE=init-secret-index \
  TOKEN_KEY_SECRET_ID=init/signing-keys TOKEN_ISSUER=https://init.example.com RUST_LOG=info

export PATH=$VENV/bin:$PATH
(cd "$ROOT/functions/token" && cargo lambda build --release --bin token) >&2
(cd "$ROOT/functions/jwks" && cargo lambda build --release --bin jwks) >&2
(cd "$ROOT" && $CARGO build --quiet --features lambda --example aws-seed) >&2

for _ in $(seq 100); do curl -s -o /dev/null "$AWS_ENDPOINT_URL/moto-api/" && break; sleep 0.1; done
# The tables, the secret and the first key, made by the rotation steps as after a deployment.
"$TARGET/debug/examples/aws-seed" --first-key >&2

# Nothing listens on the runtime API port: the function logs init_ms, then fails to get an event.
export AWS_LAMBDA_RUNTIME_API=127.0.0.1:$(port) AWS_LAMBDA_FUNCTION_NAME=init-time \
  AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 AWS_LAMBDA_FUNCTION_VERSION=1
for function in token jwks; do
  python3 - "$TARGET/lambda/$function/bootstrap" "$N" <<'EOF'
import json, statistics, subprocess, sys, time

binary, n = sys.argv[1], int(sys.argv[2])
init, wall = [], []
for _ in range(n):
    start = time.monotonic()
    p = subprocess.Popen([binary], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        if "key set not loaded" in line:
            sys.exit(f"{binary}: the key set was not loaded during init: {line}")
        if '"init_ms"' in line:
            wall.append((time.monotonic() - start) * 1000)
            init.append(json.loads(line)["fields"]["init_ms"])
            break
    p.kill()
    p.wait()
if len(init) != n:
    sys.exit(f"{binary}: {n - len(init)} start(s) logged no init_ms")
print(f"{binary.split('/')[-2]}: init_ms median {statistics.median(init)} "
      f"(min {min(init)}, max {max(init)}); spawn to ready median "
      f"{statistics.median(wall):.1f} ms, {n} starts")
EOF
done
