#!/usr/bin/env bash
# Load test of the embedded shape, one fresh release token-server per signing algorithm,
# with the machine's own limits and the server's HTTP floor measured in the same run:
#
#   tokens/s        wrk, CONNECTIONS connections, DURATION seconds, 200 answers only
#   limit           `openssl speed -seconds 5 -multi 2 <alg>` signatures/s (both cores)
#   latency         p50 / p99 at CONNECTIONS connections (wrk)
#   CPU per token   utime+stime of the server process (/proc/<pid>/stat) over the load
#                   window / tokens issued
#   bare signature  the CPU of one signature from a single-process `openssl speed -seconds 5
#                   <alg>` (it divides by user CPU time, so a busy machine does not inflate it)
#   HTTP floor      the server's CPU per `GET /.well-known/jwks.json` under the same load (the
#                   same server, connections and wrk): what any answer costs, signing aside
#   cores used      the server's CPU seconds / wall seconds under load (2.0 = both cores), and
#                   how busy the whole machine was (wrk shares the cores: 100 % busy with the
#                   server under 2.0 means wrk took the rest, not that a serial stage held the
#                   server back)
#   RSS             the server's peak resident set (VmHWM)
#
# Goals (issue 22), at 32 connections: CPU per token <= 1.6 x (bare signature + HTTP floor)
# for ES256 and EdDSA, <= 1.10 x for RS256; p99 <= 10 ms; the server able to use both cores.
# The machine's load average is printed: on a shared machine compare the ratios of one run,
# not absolute figures across runs.
#
#   bench/load.sh [connections] [duration_s]
#   ALGS="RS256 ES256 EdDSA" bench/load.sh 32 10      # default ALGS=RS256
#   PERF_OUT=dir bench/load.sh 32 10                  # also profile the server: dir/<alg>.svg
#   TOKEN_SERVER=path/to/token-server bench/load.sh   # measure that binary (no build)
#   DPOP=1 bench/load.sh 32 10                        # also DPoP-bound tokens (ES256 proofs)
#   DB_DIR=/dev/shm bench/load.sh 32 10               # the SQLite file on another file system
#
# Each answer waits for the WAL sync of its audit record's batch (synchronous=FULL), so with a
# fixed number of connections tokens/s cannot pass connections / sync latency. DB_DIR=/dev/shm
# (memory: a sync costs nothing, nothing survives a reboot) shows what the server does when
# the disk does not bound it; the default is a temporary folder on the machine's disk.
#
# With DPOP=1 each server is loaded a second time, with every request carrying a fresh ES256
# DPoP proof (made just before the run by examples/dpop-proofs.rs, DPOP_PROOFS_PER_S x
# DURATION of them, default 4000 a second: raise it for the fast algorithms), and the summary
# adds DPoP tokens/s against Bearer tokens/s of the same server (goal >= 0.7 with RS256).
#
# Each server gets TOKEN_SIGNING_ALG=<alg> in its environment. Every wait is bounded, each
# server is stopped by its PID, and the temporary database is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-32}
DURATION=${2:-10}
ALGS=${ALGS:-RS256}
for tool in wrk openssl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install -y $tool" >&2; exit 1; }
done
if [ -n "${PERF_OUT:-}" ]; then
  command -v perf >/dev/null || { echo "perf is missing: apt-get install -y linux-perf" >&2; exit 1; }
  make -s inferno
  mkdir -p "$PERF_OUT"
fi
if [ -z "${TOKEN_SERVER:-}" ]; then
  cargo build --release --quiet --bin token-server
  TOKEN_SERVER=${CARGO_TARGET_DIR:-target}/release/token-server
fi
PROOFS=
if [ -n "${DPOP:-}" ]; then
  cargo build --release --quiet --example dpop-proofs
  PROOFS=${CARGO_TARGET_DIR:-target}/release/examples/dpop-proofs
fi
WORK=$(mktemp -d)
DB_WORK=$(mktemp -d -p "${DB_DIR:-$WORK}")
SERVER=
stop_server() {
  if [ -n "$SERVER" ]; then
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=
  fi
}
trap 'stop_server; rm -rf "$DB_WORK" "$WORK"' EXIT
CLK_TCK=$(getconf CLK_TCK)

# Busy and total clock ticks of the whole machine (the `cpu` line of /proc/stat: idle and
# iowait are not busy), to tell a server held back by a serial stage (cores idle) from one
# that shares the cores with wrk (none idle).
machine_ticks() {
  awk '/^cpu / {total = 0; for (i = 2; i <= NF; i++) total += $i; print total - $5 - $6, total}' /proc/stat
}

# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat; the
# command name in field 2 may hold spaces, so count from the closing parenthesis).
cpu_ticks() {
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# The sign/s figure of an `openssl speed` output for the line matching $2: the column under
# the header's `sign/s`, counted from the end of the line (rsa, ecdsa and EdDSA lines differ
# in their leading words, and newer OpenSSL adds columns before the rates).
sign_rate() {
  python3 - "$1" "$2" <<'PY'
import re, sys
text, pattern = open(sys.argv[1]).read().splitlines(), re.compile(sys.argv[2])
header = [l.split() for l in text if "sign/s" in l.split()]
rows = [l.split() for l in text if pattern.search(l)]
if not header or not rows:
    sys.exit(f"no '{sys.argv[2]}' line with a sign/s column in {sys.argv[1]}")
from_end = len(header[-1]) - header[-1].index("sign/s")
print(rows[-1][-from_end])
PY
}

# Self time of a perf recording by area (signing, SQLite, kernel, ...) and by function. perf
# 6.1 finds no symbols in lld's layout (text mapped 0x1000 above its file offset), so the
# server's addresses are resolved here with nm and that offset.
perf_top() {
  perf report -i "$1" --no-children --percent-limit 0 --stdio -g none --sort dso,symbol \
    2>/dev/null > "$WORK/perf.report"
  nm -n -C "$TOKEN_SERVER" > "$WORK/nm.out" 2>/dev/null || true
  python3 - "$WORK/perf.report" "$WORK/nm.out" "$(basename "$TOKEN_SERVER")" \
    "$(readelf -lW "$TOKEN_SERVER" | awk '$1 == "LOAD" && / R E / {print $3, $2; exit}')" <<'PY'
import bisect, collections, re, sys
report, nm, binary, segment = sys.argv[1:]
vaddr, offset = (int(x, 16) for x in segment.split())
syms = []
for line in open(nm):
    parts = line.split(" ", 2)
    if len(parts) == 3 and parts[0] and parts[1] in ("t", "T", "w", "W"):
        syms.append((int(parts[0], 16), parts[2].strip()))
addrs = [a for a, _ in syms]
def name(addr):
    i = bisect.bisect_right(addrs, addr + vaddr - offset) - 1
    return syms[i][1] if i >= 0 else hex(addr)
def area(dso, sym):
    if dso.startswith("[kernel"): return "kernel (syscalls, scheduling, loopback TCP)"
    if "sqlite3" in sym: return "SQLite"
    if re.search(r"aws_lc|rsaz|bn_|ecp_|x25519|ed25519|sha256|mont", sym, re.I): return "signing and hashing (aws-lc)"
    if re.search(r"tokio|mio|parking|futex", sym): return "tokio runtime"
    if re.search(r"hyper|axum|http|tower", sym): return "HTTP (hyper, axum)"
    if re.search(r"serde|json", sym): return "JSON"
    if re.search(r"malloc|free|realloc|memcpy|memmove|alloc", sym): return "allocation and copying"
    if dso.startswith("libc"): return "libc (other)"
    return "other"
by_area, by_fn = collections.Counter(), collections.Counter()
for line in open(report):
    m = re.match(r"\s+([0-9.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$", line)
    if not m: continue
    pct, dso, _, sym = float(m[1]), m[2], m[3], m[4]
    sym = re.sub(r"\s+-\s+-\s*$", "", sym)
    if dso == binary and sym.startswith("0x"): sym = name(int(sym, 16))
    by_area[area(dso, sym)] += pct
    by_fn[f"{sym[:90]} ({dso[:20]})"] += pct
for a, p in by_area.most_common(): print(f"{p:6.1f}%  {a}")
print("top functions (self):")
for f, p in by_fn.most_common(15): print(f"{p:6.1f}%  {f}")
PY
}

# One algorithm: server, load, limits. Appends its summary line to $WORK/summary.
measure() {
  local alg=$1 ssl pattern
  case "$alg" in
    RS256) ssl=rsa2048 pattern='^rsa +2048 bits' ;;
    ES256) ssl=ecdsap256 pattern='ecdsa \(nistp256\)' ;;
    EdDSA) ssl=ed25519 pattern='EdDSA \(Ed25519\)' ;;
    *) echo "unknown algorithm $alg (RS256, ES256, EdDSA)" >&2; exit 1 ;;
  esac
  local port out="$WORK/$alg.server.out"
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  # The highest per-client issuance limit (a minute): this measures throughput, not refusals.
  TOKEN_SIGNING_ALG=$alg TOKEN_RATE_LIMIT=1000000 RUST_LOG=warn \
    "$TOKEN_SERVER" --listen "127.0.0.1:$port" --db "$DB_WORK/$alg.db" > "$out" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do grep -q '^Listening on' "$out" && break; sleep 0.1; done
  grep -q '^Listening on' "$out" || { cat "$out"; exit 1; }
  export CLIENT_ID=demo
  CLIENT_SECRET=$(awk '/^client_secret:/ {print $2}' "$out")
  export CLIENT_SECRET
  local url="http://127.0.0.1:$port/oauth/token"

  echo "== $alg: warm-up 1s, then wrk $CONNS connections ${DURATION}s, POST /oauth/token"
  wrk -t2 -c"$CONNS" -d1s -s bench/token.lua "$url" > /dev/null
  local perf_pid=
  if [ -n "${PERF_OUT:-}" ]; then
    # DWARF call graphs: the release build keeps no frame pointers. perf's own work is counted
    # in the server's CPU time (a few per cent at this rate): compare ratios of runs without it.
    perf record -F 499 --call-graph dwarf,16384 -p "$SERVER" -o "$PERF_OUT/$alg.perf.data" \
      -- sleep "$DURATION" \
      > "$WORK/perf.out" 2>&1 &
    perf_pid=$!
  fi
  local cpu0 cpu1
  local machine0 machine1
  cpu0=$(cpu_ticks "$SERVER")
  machine0=$(machine_ticks)
  wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s bench/token.lua "$url" > "$WORK/$alg.wrk.out"
  machine1=$(machine_ticks)
  cpu1=$(cpu_ticks "$SERVER")
  # The HTTP floor: the same server, connections and wrk, a GET of the JWKS document.
  local jwks="http://127.0.0.1:$port/.well-known/jwks.json" floor0 floor1
  echo "== $alg HTTP floor: wrk $CONNS connections ${DURATION}s, GET /.well-known/jwks.json"
  local fmachine0 fmachine1
  floor0=$(cpu_ticks "$SERVER")
  fmachine0=$(machine_ticks)
  wrk -t2 -c"$CONNS" -d"${DURATION}s" "$jwks" > "$WORK/$alg.floor.out"
  fmachine1=$(machine_ticks)
  floor1=$(cpu_ticks "$SERVER")
  local hwm_kb
  hwm_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER/status")
  [ -n "$perf_pid" ] && wait "$perf_pid"
  if [ -n "$PROOFS" ]; then
    echo "== $alg with DPoP: $((${DPOP_PROOFS_PER_S:-4000} * DURATION)) ES256 proofs, wrk $CONNS connections ${DURATION}s"
    "$PROOFS" "$url" "$((${DPOP_PROOFS_PER_S:-4000} * DURATION))" > "$WORK/proofs"
    DPOP_PROOFS="$WORK/proofs" WRK_THREADS=2 \
      wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s bench/token.lua "$url" > "$WORK/$alg.dpop.wrk.out"
    grep -E 'RESULT|Latency  ' "$WORK/$alg.dpop.wrk.out"
    python3 - "$alg" "$WORK/$alg.wrk.out" "$WORK/$alg.dpop.wrk.out" > "$WORK/$alg.dpop.summary" <<'PY'
import re, sys
alg, bearer, dpop = sys.argv[1:]
def result(path):
    f = dict(re.findall(r"(\w+)=([0-9.]+)", next(l for l in open(path) if l.startswith("RESULT"))))
    return (int(f["requests"]) - int(f["errors"])) / float(f["duration_s"]), f, int(f["errors"])
b, _, _ = result(bearer)
d, f, errors = result(dpop)
print(f"{alg} DPoP (ES256 proofs): tokens/s {d:.0f} vs Bearer {b:.0f} = {d / b:.2f} (goal >= 0.7 with RS256)"
      f" | p50 {float(f['p50_ms']):.2f} ms p99 {float(f['p99_ms']):.2f} ms | non-200 {errors}"
      + (" (proofs ran out: raise DPOP_PROOFS_PER_S)" if errors else ""))
PY
  fi
  stop_server
  grep -E 'RESULT|Latency  ' "$WORK/$alg.wrk.out"
  if [ -n "${PERF_OUT:-}" ]; then
    perf_top "$PERF_OUT/$alg.perf.data" > "$PERF_OUT/$alg.top.txt"
    echo "-- perf: self time by area and top functions (all in $PERF_OUT/$alg.top.txt)"
    head -24 "$PERF_OUT/$alg.top.txt"
    # The flame graph of the same recording: every stack, widest where the CPU went.
    perf script -i "$PERF_OUT/$alg.perf.data" 2>/dev/null \
      | .tools/bin/inferno-collapse-perf > "$PERF_OUT/$alg.folded"
    .tools/bin/inferno-flamegraph --title "token-server $alg, $CONNS connections" \
      < "$PERF_OUT/$alg.folded" > "$PERF_OUT/$alg.svg"
    echo "-- flame graph: $PERF_OUT/$alg.svg (stacks: $PERF_OUT/$alg.folded)"
  fi

  echo "== openssl speed -seconds 5 -multi 2 $ssl; openssl speed -seconds 5 $ssl"
  openssl speed -seconds 5 -multi 2 "$ssl" > "$WORK/$alg.multi.out" 2>/dev/null
  openssl speed -seconds 5 "$ssl" > "$WORK/$alg.single.out" 2>/dev/null
  local multi single
  multi=$(sign_rate "$WORK/$alg.multi.out" "$pattern")
  single=$(sign_rate "$WORK/$alg.single.out" "$pattern")

  python3 - "$alg" "$WORK/$alg.wrk.out" "$multi" "$single" "$cpu0" "$cpu1" "$CLK_TCK" \
    "$hwm_kb" "$CONNS" "$WORK/$alg.floor.out" "$floor0" "$floor1" "$machine0" "$machine1" \
    "$fmachine0" "$fmachine1" >> "$WORK/summary" <<'PY'
import re, sys
alg, wrk, multi, single, cpu0, cpu1, tck, hwm_kb, conns, floor, floor0, floor1 = sys.argv[1:13]
def busy(start, end):
    (busy0, total0), (busy1, total1) = (map(int, m.split()) for m in (start, end))
    return (busy1 - busy0) / max(total1 - total0, 1)
machine_busy, floor_busy = busy(*sys.argv[13:15]), busy(*sys.argv[15:17])
fields = dict(re.findall(r"(\w+)=([0-9.]+)", next(l for l in open(wrk) if l.startswith("RESULT"))))
requests, errors, seconds = int(fields["requests"]), int(fields["errors"]), float(fields["duration_s"])
tokens = requests - errors
rate = tokens / seconds
cpu_s = (int(cpu1) - int(cpu0)) / int(tck)
cpu_ms = cpu_s * 1000 / max(tokens, 1)
sign_ms = 1000 / float(single)
text = open(floor).read()
gets = int(re.search(r"(\d+) requests in", text)[1])
floor_s = float(re.search(r"requests in ([0-9.]+)s", text)[1])
floor_cpu_s = (int(floor1) - int(floor0)) / int(tck)
floor_ms = floor_cpu_s * 1000 / max(gets, 1)
goal = 1.10 if alg == "RS256" else 1.6
ratio = cpu_ms / (sign_ms + floor_ms)
print(f"{alg}: tokens/s {rate:.0f} vs openssl -multi 2 {float(multi):.0f} sign/s = {rate / float(multi):.2f}"
      f" | p50 {float(fields['p50_ms']):.2f} ms p99 {float(fields['p99_ms']):.2f} ms at {conns} conns (goal p99 <= 10)"
      f" | CPU/token {cpu_ms * 1000:.1f} us vs bare signature {sign_ms * 1000:.1f} us + HTTP floor"
      f" {floor_ms * 1000:.1f} us = {ratio:.2f} (goal <= {goal})"
      f" | server cores used {cpu_s / seconds:.2f} of 2, machine busy {machine_busy:.0%}"
      f" | JWKS GET/s {gets / floor_s:.0f}, cores used {floor_cpu_s / floor_s:.2f}, machine busy {floor_busy:.0%}"
      f" | peak RSS {int(hwm_kb) / 1024:.1f} MiB | non-200 {errors}")
PY
  if [ -f "$WORK/$alg.dpop.summary" ]; then cat "$WORK/$alg.dpop.summary" >> "$WORK/summary"; fi
}

# The disk's sync latency where the SQLite file lives: 200 syncs of a rewritten 4 KiB page, as
# a WAL commit makes. Every answer waits for at least one, so tokens/s <= connections / this.
SYNC_US=$(python3 - "$DB_WORK" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "sync-probe")
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
os.pwrite(fd, bytes(4096 * 16), 0)
os.fsync(fd)
start, n = time.perf_counter(), 200
for i in range(n):
    os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
    os.fsync(fd)
print(round((time.perf_counter() - start) / n * 1e6))
os.close(fd)
os.remove(path)
PY
)
echo "== $(nproc) CPUs; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== disk sync where the SQLite file is: $SYNC_US us, so at most $CONNS / sync =" \
  "$(( CONNS * 1000000 / (SYNC_US > 0 ? SYNC_US : 1) )) answers/s at $CONNS connections"
for alg in $ALGS; do
  measure "$alg"
done
echo
echo "== summary (load average after: $(cut -d' ' -f1-3 /proc/loadavg); disk sync $SYNC_US us," \
  "at most $(( CONNS * 1000000 / (SYNC_US > 0 ? SYNC_US : 1) )) durable answers/s at $CONNS connections)"
cat "$WORK/summary"
