#!/usr/bin/env bash
# benches/reload.sh: config reload with 1,000 routes under load (SPEC §7:
# ≤ 100 ms, zero failed requests).
#
# Generates a config of ROUTES routes (10 route files, UPSTREAMS upstream
# pools, every 4th route `auth: jwt`, every 3rd a rate limit, every 5th
# header edits), starts gatehouse on it against an nginx upstream, keeps wrk
# load on one route, and reloads RELOADS times by SIGHUP, each after editing
# one route file (so every reload compiles all files and swaps in a new
# version). Reported: the gateway's own reload times (the `config reloaded
# ... in X ms` log line: read, parse, compile, swap), their median and max,
# and the requests wrk saw fail during the reloads (non-2xx/3xx + socket
# errors), which must be 0.
#
# Knobs: ROUTES=1000 UPSTREAMS=50 RELOADS=20 CONNECTIONS=16
#        GATEHOUSE_BIN=... (unset: cargo build --release)
# Needs nginx, wrk, curl, python3. Traffic stays on 127.0.0.1; every process
# started here is stopped by PID on exit.

set -euo pipefail

ROUTES=${ROUTES:-1000}
UPSTREAMS=${UPSTREAMS:-50}
RELOADS=${RELOADS:-20}
CONNECTIONS=${CONNECTIONS:-16}
REPO=$(cd "$(dirname "$0")/.." && pwd)

die() {
    echo "reload.sh: $*" >&2
    exit 1
}
for tool in nginx wrk curl python3; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install -y nginx wrk curl python3)"
done
if [[ -z ${GATEHOUSE_BIN:-} ]]; then
    (cd "$REPO" && cargo build --release --quiet)
    GATEHOUSE_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/gatehouse
fi

TMP=$(mktemp -d)
GH_PID='' UP_PID='' WRK_PID=''
cleanup() {
    local rc=$?
    set +e
    for pid in $WRK_PID $GH_PID; do
        kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    [[ -n $UP_PID ]] && kill -QUIT "$UP_PID" 2>/dev/null
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

read -r UP_PORT GW_PORT ADMIN_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')

# nginx upstream: 1 worker, a fixed 1024-byte body on every path.
body=$(python3 -c 'print("x" * 1024, end="")')
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx.err;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$UP_PORT; location / { return 200 "$body"; } }
}
EOF
nginx -c "$TMP/nginx.conf" -p "$TMP" &
UP_PID=$!

# The config: conf.yaml plus 10 route files.
mkdir -p "$TMP/routes"
cat >"$TMP/conf.yaml" <<EOF
listeners:
  - addr: 127.0.0.1:$GW_PORT
admin: 127.0.0.1:$ADMIN_PORT
routes_dir: routes
threads: 2
pid_file: $TMP/gatehouse.pid
upgrade_sock: $TMP/upgrade.sock
access_log: {format: off}
jwt:
  issuers:
    - issuer: bench
      secret: reload-bench-secret-reload-bench-secret
      algorithms: [HS256]
EOF
python3 - "$TMP/routes" "$ROUTES" "$UPSTREAMS" "$UP_PORT" <<'EOF'
import sys
out, routes, upstreams, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
files = 10
for f in range(files):
    lines = []
    if f == 0:
        lines.append("upstreams:")
        for u in range(upstreams):
            lines += [f"  pool{u}:", f"    backends: [127.0.0.1:{port}]",
                      "    health_check: {interval_ms: 5000}"]
    lines.append("routes:")
    for r in range(f, routes, files):
        lines += [f"  - name: r{r}", f"    prefix: /r{r}", f"    upstream: pool{r % upstreams}"]
        if r % 4 == 1:
            lines.append("    auth: jwt")
        if r % 3 == 2:
            lines.append("    rate_limit: {key: ip, rate: 100000/s, burst: 100000}")
        if r % 5 == 3:
            lines.append("    headers: {request_set: {x-route: r%d}, response_remove: [server]}" % r)
    open(f"{out}/routes{f:02}.yaml", "w").write("\n".join(lines) + "\n")
EOF

"$GATEHOUSE_BIN" check -c "$TMP/conf.yaml" >/dev/null || die "gatehouse check failed on the generated config"
RUST_LOG=info "$GATEHOUSE_BIN" run -c "$TMP/conf.yaml" >"$TMP/gatehouse.log" 2>&1 &
GH_PID=$!
# Waits (at most 10 s) until URL answers 200.
answers_200() {
    for _ in $(seq 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$1") == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}
answers_200 "http://127.0.0.1:$GW_PORT/r0/x" ||
    die "gatehouse did not come up: $(tail -5 "$TMP/gatehouse.log")"
# Ready (the supervisor, which handles SIGHUP, is running) before the first reload.
answers_200 "http://127.0.0.1:$ADMIN_PORT/health/ready" ||
    die "gatehouse never became ready: $(tail -5 "$TMP/gatehouse.log")"

reloads_ok() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
        awk '/^gatehouse_config_reloads_total\{result="ok"\}/ {print $2}'
}

# Load for the whole reload sequence (≈ 0.5 s per reload, plus margins).
duration=$((RELOADS / 2 + 4))
wrk -t 2 -c "$CONNECTIONS" -d "${duration}s" "http://127.0.0.1:$GW_PORT/r0/x" >"$TMP/wrk.txt" &
WRK_PID=$!
sleep 1
start_ok=$(reloads_ok)
for i in $(seq "$RELOADS"); do
    sed -i "s|request_set: {x-route: r3}|request_set: {x-route: r3-$i}|; s|request_set: {x-route: r3-[0-9]*}|request_set: {x-route: r3-$i}|" \
        "$TMP/routes/routes03.yaml"
    kill -HUP "$GH_PID"
    want=$((start_ok + i))
    for _ in $(seq 50); do
        [[ $(reloads_ok) -ge $want ]] && break
        sleep 0.05
    done
    [[ $(reloads_ok) -ge $want ]] || die "reload $i did not happen: $(tail -5 "$TMP/gatehouse.log")"
    sleep 0.4
done
wait "$WRK_PID"
WRK_PID=''

python3 - "$TMP/gatehouse.log" "$TMP/wrk.txt" "$ROUTES" "$RELOADS" <<'EOF'
import re, statistics, sys
log, wrk, routes, reloads = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3], int(sys.argv[4])
ms = [float(x) for x in re.findall(r"config reloaded \(SIGHUP\) in ([\d.]+) ms", log)]
if len(ms) < reloads:
    sys.exit(f"reload.sh: {len(ms)} reload lines in the log, expected {reloads}")
reqs = int(re.search(r"(\d+) requests in", wrk).group(1))
non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", wrk) or [0, 0])[1])
sock = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", wrk))
rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1)
print(f"| routes | reloads | reload ms median | p90 | max | requests during reloads | req/s | failed |")
print(f"|---|---|---|---|---|---|---|---|")
p90 = sorted(ms)[int(0.9 * (len(ms) - 1))]
print(f"| {routes} | {len(ms)} | {statistics.median(ms):.1f} | {p90:.1f} | {max(ms):.1f} | {reqs} | {float(rps):.0f} | {non2xx + sock} |")
if non2xx + sock:
    sys.exit("reload.sh: requests failed during the reloads")
EOF
