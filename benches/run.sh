#!/usr/bin/env bash
# benches/run.sh: gatehouse load benchmark (the reference load of SPEC §7).
#
# What it measures, in one run, on 127.0.0.1 only:
#   direct       wrk -> nginx upstream                  (the floor: no proxy hop)
#   nginx-proxy  wrk -> nginx proxy_pass -> upstream    (the yardstick, upstream keepalive)
#   gatehouse    wrk -> gatehouse -> upstream           (one route `prefix: /`, no auth)
# The upstream is nginx (1 worker) answering every path with a fixed 1024-byte
# body over HTTP/1.1 keep-alive. wrk drives each target with keep-alive
# connections and --latency; targets run in alternating rounds (direct,
# nginx-proxy, gatehouse, direct, ...) after a short warm-up of each, so a
# noisy neighbour hurts all three alike. Reported per target: median req/s,
# p50 and p99 latency (ms) over the rounds, RSS (MB) right after the last
# round, req/s relative to nginx-proxy, CPU µs per request of that target's
# own processes (the proxy only, not the upstream), and errors (non-2xx/3xx
# responses + socket errors; a target with errors is flagged).
#
# Output: the tables on stdout and in benches/results/latest.md (git-ignored;
# a copy named by date and commit is kept next to it).
#
# Knobs (environment):
#   THREADS=2          gatehouse `threads:` and nginx-proxy worker_processes
#   DURATION=10        seconds per measured wrk run
#   ROUNDS=3           measured rounds (each runs all three targets)
#   CONNECTIONS=64     wrk -c (keep-alive connections)
#   WRK_THREADS=2      wrk -t
#   WARMUP=3           seconds of the warm-up run per target (before round 1)
#   GATEHOUSE_BIN=...  binary to measure; unset: `cargo build --release` in the
#                      repo and use target/release/gatehouse (or
#                      $CARGO_TARGET_DIR/release/gatehouse)
#   GATEHOUSE_CONF_EXTRA=...  YAML lines appended to the generated conf.yaml,
#                      for experiments (e.g. 'work_stealing: false')
#   KEEP_TMP=1         keep the temp dir (configs, logs, raw wrk output)
#
# Needs nginx, wrk, curl and python3. Every process it starts is stopped by
# PID on exit; nothing else is touched.

set -euo pipefail

THREADS=${THREADS:-2}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
WARMUP=${WARMUP:-3}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
RESULTS_DIR=$BENCH_DIR/results
TARGETS=(direct nginx-proxy gatehouse)

log() { printf '==> %s\n' "$*"; }
die() {
    printf 'run.sh: error: %s\n' "$*" >&2
    exit 1
}

# --- preconditions ----------------------------------------------------------

for knob in THREADS DURATION ROUNDS CONNECTIONS WRK_THREADS WARMUP; do
    [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got '${!knob}')"
done
((CONNECTIONS >= WRK_THREADS)) || die "CONNECTIONS ($CONNECTIONS) must be >= WRK_THREADS ($WRK_THREADS)"

missing=()
for tool in nginx wrk; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    die "${missing[*]} not found; install with: apt-get install -y nginx wrk"
fi
for tool in curl python3 timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (needed by the harness)"
done

if [[ -n ${GATEHOUSE_BIN:-} ]]; then
    [[ -x $GATEHOUSE_BIN ]] || die "GATEHOUSE_BIN=$GATEHOUSE_BIN is not an executable file"
else
    GATEHOUSE_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/gatehouse
    if command -v cargo >/dev/null 2>&1; then
        # A no-op when the binary is fresh; otherwise the measured binary
        # would not match the source it is reported against.
        log "cargo build --release (set GATEHOUSE_BIN to skip)"
        (cd "$REPO" && cargo build --release)
    fi
    [[ -x $GATEHOUSE_BIN ]] || die "$GATEHOUSE_BIN missing and cargo is not available to build it"
fi
GATEHOUSE_BIN=$(cd "$(dirname "$GATEHOUSE_BIN")" && pwd)/$(basename "$GATEHOUSE_BIN")

# --- temp dir and cleanup ---------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench.XXXXXX")
UP_PID='' PROXY_PID='' GH_PID=''
UP_WORKERS=() PROXY_WORKERS=()

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

# Sends $2 to PID $1, waits up to $3 seconds, then SIGKILLs it.
stop_pid() {
    local pid=$1 sig=$2 secs=$3 i
    alive "$pid" || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        echo "run.sh: PID $pid ignored SIG$sig for ${secs}s, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# nginx: graceful quit of the master (what `nginx -s quit` sends), then make
# sure the workers recorded at start-up are gone too (still named nginx).
stop_nginx() {
    local master=$1 w
    shift
    stop_pid "$master" QUIT 5
    for w in "$@"; do
        if alive "$w" && [[ $(cat "/proc/$w/comm" 2>/dev/null) == nginx ]]; then
            kill -KILL "$w" 2>/dev/null || true
        fi
    done
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM HUP
    stop_pid "$GH_PID" TERM 10
    stop_nginx "$PROXY_PID" "${PROXY_WORKERS[@]}"
    stop_nginx "$UP_PID" "${UP_WORKERS[@]}"
    if [[ -n ${KEEP_TMP:-} ]]; then
        echo "run.sh: temp dir kept: $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Shows the end of a log, for failures.
show_log() {
    echo "---- $1 (last 30 lines) ----" >&2
    tail -n 30 "$1" >&2 2>/dev/null || true
}

# --- ports ------------------------------------------------------------------

# Four distinct free loopback ports: bound together to :0, then released.
read -r UP_PORT PROXY_PORT GH_PORT ADMIN_PORT < <(python3 -c '
import socket
socks = []
for _ in range(4):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
')
[[ -n ${ADMIN_PORT:-} ]] || die "could not pick free ports"

# --- helpers ----------------------------------------------------------------

# Waits up to $3 seconds for URL $1 to answer 200 while PID $2 lives.
wait_http_200() {
    local url=$1 pid=$2 secs=$3 i code
    for ((i = 0; i < secs * 10; i++)); do
        alive "$pid" || return 1
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

# Sum of VmRSS (kB) of the given PIDs.
rss_kb() {
    local pid kb total=0
    for pid in "$@"; do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

# Sum of utime+stime (clock ticks) of the given PIDs (all their threads).
cpu_ticks() {
    local pid stat rest total=0
    local -a f
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        rest=${stat##*) } # fields from 3 (state) on; comm may hold spaces
        read -ra f <<<"$rest"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# A PID and its direct children (nginx master + workers; gatehouse + any child).
with_children() {
    echo "$1"
    ps --ppid "$1" -o pid= 2>/dev/null | tr -d ' ' || true
}

# --- nginx upstream and nginx proxy ----------------------------------------

BODY=$(head -c 1024 /dev/zero | tr '\0' 'x')

# Common nginx settings: everything inside the temp dir, no access log,
# keep-alive connections never closed by a request count during a run.
nginx_common() {
    local name=$1
    mkdir -p "$TMP/$name"
    cat <<EOF
daemon off;
pid $TMP/$name.pid;
error_log $TMP/$name-error.log warn;
events { worker_connections 4096; }
EOF
}
nginx_http_common() {
    local name=$1
    cat <<EOF
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $TMP/$name/body;
    proxy_temp_path $TMP/$name/proxy;
    fastcgi_temp_path $TMP/$name/fastcgi;
    uwsgi_temp_path $TMP/$name/uwsgi;
    scgi_temp_path $TMP/$name/scgi;
EOF
}

{
    echo "worker_processes 1;"
    nginx_common upstream
    echo "http {"
    nginx_http_common upstream
    cat <<EOF
    server {
        listen 127.0.0.1:$UP_PORT;
        default_type text/plain;
        location / { return 200 "$BODY"; }
    }
}
EOF
} >"$TMP/upstream.conf"

{
    echo "worker_processes $THREADS;"
    nginx_common proxy
    echo "http {"
    nginx_http_common proxy
    cat <<EOF
    upstream bench_upstream {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$TMP/proxy.conf"

# Starts nginx with config $TMP/$1.conf in the foreground of a background job.
start_nginx() {
    local name=$1
    nginx -t -q -p "$TMP/" -e "$TMP/$name-error.log" -c "$TMP/$name.conf" ||
        die "nginx rejected $TMP/$name.conf"
    nginx -p "$TMP/" -e "$TMP/$name-error.log" -c "$TMP/$name.conf" >"$TMP/$name.out" 2>&1 &
}

log "starting nginx upstream on 127.0.0.1:$UP_PORT"
start_nginx upstream
UP_PID=$!
if ! wait_http_200 "http://127.0.0.1:$UP_PORT/" "$UP_PID" 10; then
    show_log "$TMP/upstream-error.log"
    die "nginx upstream did not answer 200 within 10s"
fi
mapfile -t UP_WORKERS < <(ps --ppid "$UP_PID" -o pid= | tr -d ' ')
size=$(curl -s "http://127.0.0.1:$UP_PORT/any/path" | wc -c)
[[ $size == 1024 ]] || die "upstream body is $size bytes, expected 1024"

log "starting nginx proxy on 127.0.0.1:$PROXY_PORT ($THREADS workers)"
start_nginx proxy
PROXY_PID=$!
if ! wait_http_200 "http://127.0.0.1:$PROXY_PORT/" "$PROXY_PID" 10; then
    show_log "$TMP/proxy-error.log"
    die "nginx proxy did not answer 200 within 10s"
fi
mapfile -t PROXY_WORKERS < <(ps --ppid "$PROXY_PID" -o pid= | tr -d ' ')

# --- gatehouse --------------------------------------------------------------

mkdir -p "$TMP/routes"
cat >"$TMP/conf.yaml" <<EOF
# generated by benches/run.sh
version: 1
threads: $THREADS
pid_file: $TMP/gatehouse.pid
upgrade_sock: $TMP/gatehouse_upgrade.sock
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 1
listeners:
  - addr: 127.0.0.1:$GH_PORT
admin: 127.0.0.1:$ADMIN_PORT
routes_dir: routes
${GATEHOUSE_CONF_EXTRA:-}
EOF
cat >"$TMP/routes/bench.yaml" <<EOF
upstreams:
  bench-upstream:
    backends: [127.0.0.1:$UP_PORT]
    balance: round_robin
    health_check: { path: /, interval_ms: 2000, timeout_ms: 1000 }
routes:
  - name: bench
    prefix: /
    upstream: bench-upstream
EOF

log "gatehouse check -c $TMP/conf.yaml"
if ! RUST_LOG=warn "$GATEHOUSE_BIN" check -c "$TMP/conf.yaml" >"$TMP/check.out" 2>&1; then
    cat "$TMP/check.out" >&2
    die "gatehouse check failed on the generated config"
fi

log "starting gatehouse on 127.0.0.1:$GH_PORT (admin :$ADMIN_PORT, $THREADS threads)"
RUST_LOG=warn "$GATEHOUSE_BIN" run -c "$TMP/conf.yaml" >"$TMP/gatehouse.log" 2>&1 &
GH_PID=$!
if ! wait_http_200 "http://127.0.0.1:$ADMIN_PORT/health/ready" "$GH_PID" 30; then
    show_log "$TMP/gatehouse.log"
    die "gatehouse /health/ready did not answer 200 within 30s"
fi
size=$(curl -s --max-time 5 "http://127.0.0.1:$GH_PORT/via/gatehouse" | wc -c)
if [[ $size != 1024 ]]; then
    show_log "$TMP/gatehouse.log"
    die "GET through gatehouse returned $size bytes, expected 1024"
fi
if [[ -s $TMP/gatehouse.pid ]] && [[ $(<"$TMP/gatehouse.pid") != "$GH_PID" ]]; then
    echo "run.sh: note: pid file says $(<"$TMP/gatehouse.pid"), launched PID is $GH_PID; measuring the launched PID" >&2
fi

# --- load -------------------------------------------------------------------

port_of() {
    case $1 in
    direct) echo "$UP_PORT" ;;
    nginx-proxy) echo "$PROXY_PORT" ;;
    gatehouse) echo "$GH_PORT" ;;
    esac
}
pids_of() {
    case $1 in
    direct) with_children "$UP_PID" ;;
    nginx-proxy) with_children "$PROXY_PID" ;;
    gatehouse) with_children "$GH_PID" ;;
    esac
}

# Runs wrk against target $1 for $2 seconds, output to file $3.
run_wrk() {
    local target=$1 secs=$2 out=$3
    if ! timeout --kill-after=5 $((secs + 30)) \
        wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "${secs}s" --latency \
        "http://127.0.0.1:$(port_of "$target")/" >"$out" 2>&1; then
        cat "$out" >&2
        die "wrk against $target failed or timed out"
    fi
}

# Parses wrk output $1; prints: req/s p50_ms p99_ms requests non2xx socket_errors
parse_wrk() {
    python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
def ms(pct):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s|m|h)\s*$" % pct, text, re.M)
    if not m:
        sys.exit("no %s%% latency line in wrk output" % pct)
    return float(m.group(1)) * UNIT_MS[m.group(2)]
rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
reqs = re.search(r"^\s*(\d+) requests in", text, re.M)
if not rps or not reqs:
    sys.exit("cannot parse wrk output")
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
print(rps.group(1), "%.3f" % ms(50), "%.3f" % ms(99), reqs.group(1),
      non2xx.group(1) if non2xx else 0,
      sum(map(int, sock.groups())) if sock else 0)
PY
}

CLK_TCK=$(getconf CLK_TCK)
ROUNDS_TSV=$TMP/rounds.tsv
printf 'round\ttarget\trps\tp50_ms\tp99_ms\trequests\tnon2xx\tsocket_errors\tcpu_us_per_req\n' >"$ROUNDS_TSV"

# One measured run: wrk plus the target's CPU time over the run.
measure() {
    local round=$1 target=$2 out=$TMP/wrk-$2-$1.txt
    local -a pids
    local t0 t1 rps p50 p99 reqs non2xx sockerr cpu
    mapfile -t pids < <(pids_of "$target")
    t0=$(cpu_ticks "${pids[@]}")
    run_wrk "$target" "$DURATION" "$out"
    t1=$(cpu_ticks "${pids[@]}")
    alive "${pids[0]}" || die "$target (PID ${pids[0]}) died during round $round"
    read -r rps p50 p99 reqs non2xx sockerr < <(parse_wrk "$out") ||
        die "cannot parse $out"
    cpu=$(python3 -c "import sys; t, r = map(int, sys.argv[1:3]); print('%.1f' % ((t * 1e6 / $CLK_TCK) / r if r else 0))" \
        "$((t1 - t0))" "$reqs")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$rps" "$p50" "$p99" \
        "$reqs" "$non2xx" "$sockerr" "$cpu" >>"$ROUNDS_TSV"
    printf '    round %s  %-12s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  %6s µs CPU/req  errors %s\n' \
        "$round" "$target" "$rps" "$p50" "$p99" "$cpu" "$((non2xx + sockerr))"
}

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before the run: $LOADAVG"
log "warm-up: ${WARMUP}s per target"
for target in "${TARGETS[@]}"; do
    run_wrk "$target" "$WARMUP" "$TMP/wrk-$target-warmup.txt"
done

log "$ROUNDS rounds x ${DURATION}s per target (wrk -t $WRK_THREADS -c $CONNECTIONS, keep-alive)"
for ((round = 1; round <= ROUNDS; round++)); do
    for target in "${TARGETS[@]}"; do
        measure "$round" "$target"
    done
done

# RSS right after the last round, every process of each target.
RSS_TSV=$TMP/rss.tsv
for target in "${TARGETS[@]}"; do
    mapfile -t pids < <(pids_of "$target")
    printf '%s\t%s\n' "$target" "$(rss_kb "${pids[@]}")"
done >"$RSS_TSV"

# --- report -----------------------------------------------------------------

COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    COMMIT="$COMMIT (src has uncommitted changes)"
fi
MACHINE="$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(uname -sr)"
GH_VERSION=$("$GATEHOUSE_BIN" --version 2>/dev/null || echo gatehouse)
WRK_VERSION=$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2 || true)
NGINX_VERSION=$(nginx -v 2>&1 | sed 's/^nginx version: //')

mkdir -p "$RESULTS_DIR"
REPORT=$TMP/report.md
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
export DATE COMMIT MACHINE GH_VERSION WRK_VERSION NGINX_VERSION LOADAVG GATEHOUSE_BIN \
    THREADS DURATION ROUNDS CONNECTIONS WRK_THREADS WARMUP
python3 - "$ROUNDS_TSV" "$RSS_TSV" >"$REPORT" <<'PY'

import csv, os, statistics, sys

env = os.environ

rounds = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
rss = dict(line.rstrip("\n").split("\t") for line in open(sys.argv[2]))
targets = ["direct", "nginx-proxy", "gatehouse"]
label = {
    "direct": "direct (nginx upstream)",
    "nginx-proxy": "nginx proxy",
    "gatehouse": "gatehouse",
}

def med(t, key):
    return statistics.median(float(r[key]) for r in rounds if r["target"] == t)

def errors(t):
    return sum(int(r["non2xx"]) + int(r["socket_errors"]) for r in rounds if r["target"] == t)

def table(header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)

nginx_rps = med("nginx-proxy", "rps")
rows = []
for t in targets:
    e = errors(t)
    rows.append([
        label[t] + (" (ERRORS)" if e else ""),
        "%.0f" % med(t, "rps"),
        "%.3f" % med(t, "p50_ms"),
        "%.3f" % med(t, "p99_ms"),
        "%.1f" % (int(rss[t]) / 1024),
        "%.2f" % (med(t, "rps") / nginx_rps),
        "%.1f" % med(t, "cpu_us_per_req"),
        e,
    ])
summary = table(
    ["target", "req/s (median)", "p50 ms (median)", "p99 ms (median)", "RSS MB",
     "req/s vs nginx proxy", "CPU µs/req (median)", "errors"],
    rows,
)
raw = table(
    ["round", "target", "req/s", "p50 ms", "p99 ms", "requests", "non-2xx/3xx",
     "socket errors", "CPU µs/req"],
    [[r["round"], r["target"], "%.0f" % float(r["rps"]), "%.3f" % float(r["p50_ms"]),
      "%.3f" % float(r["p99_ms"]), r["requests"], r["non2xx"], r["socket_errors"],
      r["cpu_us_per_req"]] for r in rounds],
)
added_p99 = med("gatehouse", "p99_ms") - med("direct", "p99_ms")
added_p99_nginx = med("nginx-proxy", "p99_ms") - med("direct", "p99_ms")

e = env
print(f"""# gatehouse load benchmark

- date: {e["DATE"]}
- commit: {e["COMMIT"]}; binary: `{e["GATEHOUSE_BIN"]}` ({e["GH_VERSION"]})
- machine: {e["MACHINE"]}; load average before the run: {e["LOADAVG"]}
- tools: {e["WRK_VERSION"]}, {e["NGINX_VERSION"]}
- load: wrk -t {e["WRK_THREADS"]} -c {e["CONNECTIONS"]} -d {e["DURATION"]}s --latency, HTTP/1.1 keep-alive, 1024-byte responses; {e["ROUNDS"]} alternating rounds after a {e["WARMUP"]}s warm-up per target
- gatehouse threads: {e["THREADS"]}; nginx proxy worker_processes: {e["THREADS"]}; nginx upstream worker_processes: 1

{summary}

req/s, p50 and p99 are medians over the rounds; RSS is every process of the
target right after the last round; CPU µs/req is the target's own processes
only (for the proxies, not the upstream); errors are non-2xx/3xx responses
plus socket errors summed over the rounds.
Added p99 vs direct at full load: gatehouse {added_p99:+.3f} ms, nginx proxy {added_p99_nginx:+.3f} ms
(SPEC §7's ≤ 1 ms target is defined at half of max load; this run saturates).

## Per round

{raw}""")
PY

cat "$REPORT"
cp "$REPORT" "$RESULTS_DIR/latest.md"
STAMP=$(date -u '+%Y%m%dT%H%M%SZ')
cp "$REPORT" "$RESULTS_DIR/$STAMP-${COMMIT%% *}.md"
log "written: $RESULTS_DIR/latest.md"
