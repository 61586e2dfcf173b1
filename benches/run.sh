#!/usr/bin/env bash
# benches/run.sh: gatehouse load benchmark (the reference load of SPEC §7).
#
# What it measures, in one run, on 127.0.0.1 only (the TARGETS knob picks a
# subset):
#   direct                wrk -> nginx upstream               (the floor: no proxy hop)
#   nginx-proxy           wrk -> nginx proxy_pass -> upstream (the yardstick, upstream keepalive)
#   gatehouse             wrk -> gatehouse -> upstream        (one route `prefix: /`, no auth)
#   gatehouse-traced      the plain gatehouse plus trace export (conf.yaml `tracing`,
#                         `sample_ratio: 1.0`: every request's server span and
#                         client span POSTed as OTLP/HTTP protobuf to the nginx
#                         upstream, which answers 200 like a receiver): the cost
#                         of tracing is this row against gatehouse
#   gatehouse-no-dashboard  the plain gatehouse with `dashboard: {enabled: false}`:
#                         the cost of the live dashboard's per-request
#                         recording (on by default) is gatehouse against this row
#   gatehouse-auth        wrk -> gatehouse -> upstream        (route `auth: jwt` (HS256) + a
#                         per-user rate limit that is never hit, local store)
#   gatehouse-api         wrk -> gatehouse -> upstream        (the API-consumer features at
#                         once: route `auth: api_key` with `scopes: [kline:read]` (a
#                         consumer file, key sent as `X-Api-Key`), `cors` (an `Origin`
#                         on every request, credentials, an exposed header), a
#                         `rewrite` of /api/(.*) to /$1 and a never-hit per-consumer
#                         limit, local store)
#   gatehouse-session     the gateway's own login session: route `auth: oauth`,
#                         the same never-hit per-user limit, a `Cookie:
#                         gatehouse_session=<id>` on every request whose record
#                         was written to the redis-server started here
#                         (`tokenginx.cache_ms: 1000`, so caches are warm): the
#                         cookie session beside the bearer-JWT route
#   gatehouse-auth-redis  the same as gatehouse-auth with `rate_limit: {store: redis}` against a
#                         redis-server started here (one round trip per request)
#   gatehouse-full        the full policy of SPEC §7: ES256 JWT verified against
#                         a JWKS (served by a python3 http.server started here),
#                         `session: required` checked in TokenginX (the same
#                         redis-server, `cache_ms: 1000`), a never-hit per-user
#                         limit (local), metrics, JSON access log to a file
#   nginx-proxy-h2        (H2=1) h2load -> nginx `listen ssl http2` -> upstream
#   gatehouse-h2          (H2=1) h2load -> the plain gatehouse's TLS listener
#                         (ALPN h2) -> upstream; same processes as nginx-proxy /
#                         gatehouse, second listener
# Each gatehouse target is its own gatehouse process (own conf, ports, pid
# file, upgrade socket), so RSS and CPU are that target's alone. The protected
# targets get `Authorization: Bearer <HS256 JWT>` on every request (one token:
# the verified-token cache is warm after the first request); gatehouse-api
# gets `X-Api-Key: <key>` and `Origin: https://app.example.com` instead.
# The upstream is nginx (1 worker) answering every path with a fixed 1024-byte
# body over HTTP/1.1 keep-alive. wrk drives each target with keep-alive
# connections and --latency; targets run in alternating rounds (direct,
# nginx-proxy, gatehouse, gatehouse-traced, gatehouse-auth, ..., direct, ...)
# after a short warm-up of each, so a noisy neighbour hurts all alike.
# Reported per target: median req/s, p50 and p99 latency (ms) over the rounds,
# RSS (MB) right after the last round, req/s relative to nginx-proxy, CPU µs
# per request of that target's own processes (the proxy only, not the
# upstream, not redis-server), and errors (non-2xx/3xx responses + socket
# errors; a target with errors is flagged). redis-server's own CPU per request
# and Redis calls per request are reported separately.
# SCALE=1 also opens 10,000 idle keep-alive connections to the plain gatehouse
# (benches/conns.py) and reports its RSS idle / with them, and the req/s of a
# wrk run while they stay open.
#
# Output: the tables on stdout and in benches/results/latest.md (git-ignored;
# a copy named by date and commit is kept next to it).
#
# Knobs (environment):
#   TARGETS="direct nginx-proxy gatehouse gatehouse-no-dashboard gatehouse-traced gatehouse-auth gatehouse-api gatehouse-session gatehouse-auth-redis gatehouse-full"
#                      targets to run (space- or comma-separated; always run
#                      in that order); the ratio column needs nginx-proxy
#   THREADS=2          gatehouse `threads:` and nginx-proxy worker_processes
#   DURATION=10        seconds per measured wrk run
#   ROUNDS=3           measured rounds (each runs every selected target)
#   CONNECTIONS=64     wrk -c (keep-alive connections)
#   WRK_THREADS=2      wrk -t
#   WARMUP=3           seconds of the warm-up run per target (before round 1)
#   GATEHOUSE_BIN=...  binary to measure; unset: `cargo build --release` in the
#                      repo and use target/release/gatehouse (or
#                      $CARGO_TARGET_DIR/release/gatehouse)
#   GATEHOUSE_ACCESS_LOG=off  `off`: `access_log: {format: off}` in every
#                      gatehouse conf (the nginx servers log nothing either);
#                      `json`: JSON access log to <target>/access.log
#   GATEHOUSE_CONF_EXTRA=...  YAML lines appended to every generated
#                      conf.yaml, for experiments (e.g. 'work_stealing: false')
#   H2=1               add the HTTP/2-over-TLS rows (h2load -c CONNECTIONS -m 10
#                      against nginx-proxy and gatehouse, when selected); 0: off
#   H2_STREAMS=10      h2load -m (concurrent streams per connection)
#   HALF=1             latency at half of max load (SPEC §7's added-p99 target):
#                      h2load --h1 --rps at half of gatehouse-full's (else
#                      gatehouse's) median req/s, against direct and each
#                      HTTP/1.1 target, ROUNDS rounds; 0: off (needs h2load)
#   HALF_STAGGER=1     open the half-load connections WRK_THREADS per ms so
#                      their requests are spread over time; 0: h2load's
#                      default, every connection sends at the same instant
#   SCALE=1            the 10,000-connection test of the plain gatehouse; 0: off
#   SCALE_CONNS=10000  how many idle connections it opens
#   KEEP_TMP=1         keep the temp dir (configs, logs, raw wrk output)
#
# Needs nginx, wrk, curl, openssl and python3, redis-server + redis-cli for
# gatehouse-auth-redis and gatehouse-full, h2load for H2=1. Every process it starts is stopped by PID on exit;
# nothing else is touched.

set -euo pipefail

THREADS=${THREADS:-2}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
WARMUP=${WARMUP:-3}
GATEHOUSE_ACCESS_LOG=${GATEHOUSE_ACCESS_LOG:-off}
H2=${H2:-1}
H2_STREAMS=${H2_STREAMS:-10}
SCALE=${SCALE:-1}
HALF=${HALF:-1}
HALF_STAGGER=${HALF_STAGGER:-1}
SCALE_CONNS=${SCALE_CONNS:-10000}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
RESULTS_DIR=$BENCH_DIR/results
ALL_TARGETS=(direct nginx-proxy gatehouse gatehouse-no-dashboard gatehouse-traced gatehouse-auth gatehouse-api gatehouse-session gatehouse-auth-redis gatehouse-full)
TARGETS=${TARGETS:-${ALL_TARGETS[*]}}

log() { printf '==> %s\n' "$*"; }
die() {
    printf 'run.sh: error: %s\n' "$*" >&2
    exit 1
}

# --- preconditions ----------------------------------------------------------

for knob in THREADS DURATION ROUNDS CONNECTIONS WRK_THREADS WARMUP H2_STREAMS SCALE_CONNS; do
    [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got '${!knob}')"
done
[[ $GATEHOUSE_ACCESS_LOG == off || $GATEHOUSE_ACCESS_LOG == json ]] ||
    die "GATEHOUSE_ACCESS_LOG must be off or json (got '$GATEHOUSE_ACCESS_LOG')"
[[ $H2 == 0 || $H2 == 1 ]] || die "H2 must be 0 or 1 (got '$H2')"
[[ $SCALE == 0 || $SCALE == 1 ]] || die "SCALE must be 0 or 1 (got '$SCALE')"
[[ $HALF == 0 || $HALF == 1 ]] || die "HALF must be 0 or 1 (got '$HALF')"
[[ $HALF_STAGGER == 0 || $HALF_STAGGER == 1 ]] || die "HALF_STAGGER must be 0 or 1 (got '$HALF_STAGGER')"
((CONNECTIONS >= WRK_THREADS)) || die "CONNECTIONS ($CONNECTIONS) must be >= WRK_THREADS ($WRK_THREADS)"

# The selected targets, in the canonical order, each once.
read -ra wanted <<<"${TARGETS//,/ }"
((${#wanted[@]})) || die "TARGETS is empty (choose from: ${ALL_TARGETS[*]})"
for t in "${wanted[@]}"; do
    [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || die "unknown target '$t' in TARGETS (choose from: ${ALL_TARGETS[*]})"
done
RUN_TARGETS=()
for t in "${ALL_TARGETS[@]}"; do
    [[ " ${wanted[*]} " == *" $t "* ]] && RUN_TARGETS+=("$t")
done
# H2=1: the HTTP/2-over-TLS rows of the selected proxies, measured last in
# each round (they reuse the nginx-proxy / gatehouse processes).
if ((H2)); then
    for t in nginx-proxy gatehouse; do
        [[ " ${RUN_TARGETS[*]} " == *" $t "* ]] && RUN_TARGETS+=("$t-h2")
    done
fi
selected() { [[ " ${RUN_TARGETS[*]} " == *" $1 "* ]]; }
is_h2() { [[ $1 == *-h2 ]]; }
needs_redis() { selected gatehouse-auth-redis || selected gatehouse-full || selected gatehouse-session; }

missing=()
for tool in nginx wrk; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    die "${missing[*]} not found; install with: apt-get install -y nginx wrk"
fi
for tool in curl python3 timeout openssl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (needed by the harness)"
done
if needs_redis; then
    for tool in redis-server redis-cli; do
        command -v "$tool" >/dev/null 2>&1 ||
            die "$tool not found (needed by gatehouse-auth-redis and gatehouse-full); install with: apt-get install -y redis-server"
    done
fi
if [[ " ${RUN_TARGETS[*]} " == *-h2* ]]; then
    command -v h2load >/dev/null 2>&1 ||
        die "h2load not found (needed by H2=1); install with: apt-get install -y nghttp2-client (or run with H2=0)"
fi

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

# SCALE=1: gatehouse (started from this shell) and conns.py need more open
# files than the usual 1024.
if ((SCALE)); then
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    (($(ulimit -n) >= SCALE_CONNS + 1024)) ||
        die "SCALE=1 needs ulimit -n >= $((SCALE_CONNS + 1024)) (hard limit is $(ulimit -Hn)); lower SCALE_CONNS or run with SCALE=0"
fi

# --- temp dir and cleanup ---------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench.XXXXXX")
UP_PID='' PROXY_PID='' REDIS_PID='' MONITOR_PID='' JWKS_PID='' CONNS_PID=''
UP_WORKERS=() PROXY_WORKERS=()
declare -A GH_PID=() # gatehouse target -> PID of its gatehouse process

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
    stop_pid "$MONITOR_PID" TERM 2
    stop_pid "$CONNS_PID" TERM 10
    stop_pid "$JWKS_PID" TERM 5
    for t in "${!GH_PID[@]}"; do
        stop_pid "${GH_PID[$t]}" TERM 10
    done
    stop_pid "$REDIS_PID" TERM 5
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

# Twenty-two distinct free loopback ports: bound together to :0, then released.
# upstream, nginx proxy, redis, then listener + admin for each gatehouse, the
# JWKS server, the TLS listeners of nginx proxy and gatehouse.
read -ra ports < <(python3 -c '
import socket
socks = []
for _ in range(22):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
')
((${#ports[@]} == 22)) || die "could not pick free ports"
UP_PORT=${ports[0]} PROXY_PORT=${ports[1]} REDIS_PORT=${ports[2]}
declare -A PORT=([direct]=$UP_PORT [nginx-proxy]=$PROXY_PORT
    [gatehouse]=${ports[3]} [gatehouse-auth]=${ports[5]} [gatehouse-auth-redis]=${ports[7]}
    [gatehouse-full]=${ports[9]} [nginx-proxy-h2]=${ports[12]} [gatehouse-h2]=${ports[13]}
    [gatehouse-session]=${ports[14]} [gatehouse-api]=${ports[16]} [gatehouse-traced]=${ports[18]}
    [gatehouse-no-dashboard]=${ports[20]})
declare -A ADMIN_PORT=(
    [gatehouse]=${ports[4]} [gatehouse-auth]=${ports[6]} [gatehouse-auth-redis]=${ports[8]}
    [gatehouse-full]=${ports[10]} [gatehouse-session]=${ports[15]} [gatehouse-api]=${ports[17]}
    [gatehouse-traced]=${ports[19]} [gatehouse-no-dashboard]=${ports[21]})
JWKS_PORT=${ports[11]}

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

# A self-signed P-256 certificate for the TLS listeners (H2=1), shared by
# nginx and gatehouse.
if ((H2)); then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -keyout "$TMP/k.pem" -out "$TMP/c.pem" >"$TMP/openssl-cert.out" 2>&1 ||
        die "openssl could not make the self-signed certificate: $(cat "$TMP/openssl-cert.out")"
fi

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
        # gatehouse-api rewrites /api/X to /X: a request that arrives
        # here unrewritten is a 404, an error in the table.
        location /api/ { return 404 "not rewritten"; }
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
EOF
    if ((H2)); then
        cat <<EOF
    server {
        listen 127.0.0.1:${PORT[nginx-proxy-h2]} ssl http2;
        ssl_certificate $TMP/c.pem;
        ssl_certificate_key $TMP/k.pem;
        http2_max_concurrent_streams 128;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
    fi
    echo "}"
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
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$UP_PORT/api/kline" || true)
[[ $code == 404 ]] || die "upstream answered /api/kline with $code, expected 404 (the unrewritten path)"

if selected nginx-proxy; then
    log "starting nginx proxy on 127.0.0.1:$PROXY_PORT ($THREADS workers)"
    start_nginx proxy
    PROXY_PID=$!
    if ! wait_http_200 "http://127.0.0.1:$PROXY_PORT/" "$PROXY_PID" 10; then
        show_log "$TMP/proxy-error.log"
        die "nginx proxy did not answer 200 within 10s"
    fi
    mapfile -t PROXY_WORKERS < <(ps --ppid "$PROXY_PID" -o pid= | tr -d ' ')
fi

# --- redis (for gatehouse-auth-redis) ---------------------------------------

redis_cli() { timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

if needs_redis; then
    log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    mkdir -p "$TMP/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$TMP/redis" --logfile "$TMP/redis.log" --daemonize no >"$TMP/redis.out" 2>&1 &
    REDIS_PID=$!
    for ((i = 0; i < 100; i++)); do
        alive "$REDIS_PID" || break
        [[ $(redis_cli ping 2>/dev/null) == PONG ]] && break
        sleep 0.1
    done
    if ! alive "$REDIS_PID" || [[ $(redis_cli ping 2>/dev/null) != PONG ]]; then
        show_log "$TMP/redis.log"
        die "redis-server did not answer PING within 10s"
    fi
fi

# --- gatehouse --------------------------------------------------------------

# One secret and one token for the run (python3 standard library only). The
# token outlives the run; BAD_TOKEN has the same claims under another secret.
JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
TOKEN_LIFETIME=$((3600 + 2 * (WARMUP + ROUNDS * DURATION) * ${#RUN_TARGETS[@]}))
make_jwt() {
    python3 - "$1" "$2" <<'PY'
import base64, hashlib, hmac, json, sys, time
def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
def part(obj):
    return b64(json.dumps(obj, separators=(",", ":")).encode())
secret, lifetime = sys.argv[1].encode(), int(sys.argv[2])
signing_input = part({"alg": "HS256", "typ": "JWT"}) + "." + part(
    {"iss": "bench", "sub": "bench-user", "exp": int(time.time()) + lifetime})
sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
print(signing_input + "." + b64(sig))
PY
}
TOKEN=$(make_jwt "$JWT_SECRET" "$TOKEN_LIFETIME")
BAD_TOKEN=$(make_jwt "not-the-secret-$JWT_SECRET" "$TOKEN_LIFETIME")

# gatehouse-full: an EC P-256 key made with the openssl CLI, its public half
# as a JWKS served over HTTP, and an ES256 token (raw r||s signature) with a
# `jti` whose TokenginX session key is set in Redis.
ES_JTI=bench-$(python3 -c 'import secrets; print(secrets.token_hex(8))')
SESSION_KEY="oauth:token:$ES_JTI"
if selected gatehouse-full; then
    mkdir -p "$TMP/jwks"
    openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/es256.pem" 2>"$TMP/openssl-es.out" ||
        die "openssl could not make the ES256 key: $(cat "$TMP/openssl-es.out")"
    ES_TOKEN=$(python3 - "$TMP/es256.pem" "$TMP/jwks/jwks.json" "$TOKEN_LIFETIME" "$ES_JTI" <<'PY2'
import base64, json, subprocess, sys, time
key, jwks_path, lifetime, jti = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
def part(obj):
    return b64(json.dumps(obj, separators=(",", ":")).encode())
# SubjectPublicKeyInfo DER of a P-256 key ends with the uncompressed point 04||x||y.
spki = subprocess.run(["openssl", "ec", "-in", key, "-pubout", "-outform", "DER"],
                      check=True, capture_output=True).stdout
point = spki[-65:]
assert point[0] == 4, "unexpected public key encoding"
jwk = {"kty": "EC", "crv": "P-256", "kid": "bench-es256", "alg": "ES256", "use": "sig",
       "x": b64(point[1:33]), "y": b64(point[33:65])}
with open(jwks_path, "w") as f:
    json.dump({"keys": [jwk]}, f)
now = int(time.time())
signing_input = part({"alg": "ES256", "typ": "JWT", "kid": "bench-es256"}) + "." + part(
    {"iss": "bench-es", "sub": "bench-user", "jti": jti, "iat": now, "exp": now + lifetime})
der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input.encode(),
                     check=True, capture_output=True).stdout
# ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } -> raw r||s (32 + 32 bytes).
def read_len(buf, i):
    n = buf[i]
    if n < 0x80:
        return n, i + 1
    k = n & 0x7F
    return int.from_bytes(buf[i + 1:i + 1 + k], "big"), i + 1 + k
assert der[0] == 0x30
_, i = read_len(der, 1)
ints = []
for _ in range(2):
    assert der[i] == 0x02
    n, i = read_len(der, i + 1)
    ints.append(int.from_bytes(der[i:i + n], "big"))
    i += n
print(signing_input + "." + b64(b"".join(v.to_bytes(32, "big") for v in ints)))
PY2
    ) || die "could not build the ES256 token and JWKS"
    log "gatehouse-full: serving the JWKS on http://127.0.0.1:$JWKS_PORT/jwks.json"
    python3 -m http.server "$JWKS_PORT" --bind 127.0.0.1 --directory "$TMP/jwks" >"$TMP/jwks.log" 2>&1 &
    JWKS_PID=$!
    wait_http_200 "http://127.0.0.1:$JWKS_PORT/jwks.json" "$JWKS_PID" 10 ||
        die "the JWKS server did not answer 200 within 10s"
    [[ $(redis_cli set "$SESSION_KEY" 1) == OK ]] || die "could not SET $SESSION_KEY in redis"
fi

# gatehouse-session: a login session as the gateway writes it at a callback,
# stored under the SHA-256 of its id, living as long as the token.
SESSION_ID=$(python3 -c 'import base64, secrets; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode())')
if selected gatehouse-session; then
    record=$(python3 - "$TOKEN_LIFETIME" <<'PY3'
import json, sys, time
now = int(time.time()); life = int(sys.argv[1])
print(json.dumps({"sub": "bench-user", "scopes": ["openid"], "roles": [], "claims": {"sub": "bench-user"},
                  "access_token": "opaque-bench-access-token", "access_expires_at": now + life,
                  "refresh_token": None, "id_token": None, "expires_at": now + life}))
PY3
    )
    key="gatehouse:oauth:session:$(printf '%s' "$SESSION_ID" | sha256sum | cut -d' ' -f1)"
    [[ $(redis_cli set "$key" "$record" EX "$TOKEN_LIFETIME") == OK ]] || die "could not SET the bench session in redis"
fi

# gatehouse-api: a consumer key (made like `gatehouse hash-key` makes one;
# the consumer file holds only its SHA-256) and a second consumer's key,
# valid but without the route's scope, for the 403 check.
new_api_key() { python3 -c 'import base64, secrets; print("gh_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode())'; }
API_KEY=$(new_api_key)
API_KEY_NOSCOPE=$(new_api_key)
API_ORIGIN=https://app.example.com

# Request path of each target; the protected targets also send the token
# (gatehouse-session its session cookie, gatehouse-api its key and Origin).
declare -A URL_PATH=([direct]=/ [nginx-proxy]=/ [gatehouse]=/ [gatehouse-traced]=/ [gatehouse-no-dashboard]=/
    [gatehouse-auth]=/protected [gatehouse-auth-redis]=/protected [gatehouse-full]=/protected
    [gatehouse-session]=/protected [gatehouse-api]=/api/kline [nginx-proxy-h2]=/ [gatehouse-h2]=/)
is_protected() { [[ $1 == gatehouse-auth || $1 == gatehouse-auth-redis || $1 == gatehouse-full || $1 == gatehouse-session || $1 == gatehouse-api ]]; }
token_of() { if [[ $1 == gatehouse-full ]]; then echo "$ES_TOKEN"; else echo "$TOKEN"; fi; }
# The credential header of protected target $1 (`$2` = bad: a wrong one).
credential_of() {
    if [[ $1 == gatehouse-api ]]; then
        if [[ ${2:-} == bad ]]; then echo "X-Api-Key: ${API_KEY}x"; else echo "X-Api-Key: $API_KEY"; fi
    elif [[ $1 == gatehouse-session ]]; then
        if [[ ${2:-} == bad ]]; then echo "Cookie: gatehouse_session=${SESSION_ID//?/A}"; else echo "Cookie: gatehouse_session=$SESSION_ID"; fi
    elif [[ ${2:-} == bad ]]; then
        echo "Authorization: Bearer $BAD_TOKEN"
    else
        echo "Authorization: Bearer $(token_of "$1")"
    fi
}
# Sets REQ_HEADERS to the -H arguments every request to target $1 carries
# (wrk and h2load take the same flag): the credential of a protected target,
# and gatehouse-api's Origin.
request_headers() {
    REQ_HEADERS=()
    is_protected "$1" && REQ_HEADERS+=(-H "$(credential_of "$1")")
    [[ $1 == gatehouse-api ]] && REQ_HEADERS+=(-H "Origin: $API_ORIGIN")
    return 0
}

# Writes $TMP/<target>/conf.yaml and routes/bench.yaml for gatehouse target $1.
write_gatehouse_conf() {
    local t=$1 dir=$TMP/$1
    mkdir -p "$dir/routes"
    {
        cat <<EOF
# generated by benches/run.sh for target $t
version: 1
threads: $THREADS
pid_file: $dir/gatehouse.pid
upgrade_sock: $dir/gatehouse_upgrade.sock
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 1
listeners:
  - addr: 127.0.0.1:${PORT[$t]}
EOF
        if [[ $t == gatehouse ]] && selected gatehouse-h2; then
            echo "  - {addr: 127.0.0.1:${PORT[gatehouse-h2]}, tls: {cert: $TMP/c.pem, key: $TMP/k.pem}}"
        fi
        cat <<EOF
admin: 127.0.0.1:${ADMIN_PORT[$t]}
routes_dir: routes
EOF
        # Like the nginx servers (access_log off): no access log unless asked;
        # gatehouse-full always writes its JSON access log to a file.
        if [[ $t == gatehouse-full ]]; then
            echo "access_log: {format: json, path: access.log}"
        else
            case $GATEHOUSE_ACCESS_LOG in
            off) echo "access_log: {format: off}" ;;
            json) echo "access_log: {format: json, path: access.log}" ;;
            esac
        fi
        if [[ $t == gatehouse-full ]]; then
            cat <<EOF
jwt:
  issuers:
    - issuer: bench-es
      jwks_url: "http://127.0.0.1:$JWKS_PORT/jwks.json"
      algorithms: [ES256]
tokenginx: {url: "redis://127.0.0.1:$REDIS_PORT", cache_ms: 1000}
rate_limit: {store: local}
EOF
        elif [[ $t == gatehouse-session ]]; then
            # No authorization server is reached: sessions are only read,
            # and the access token outlives the run (no refresh).
            cat <<EOF
tokenginx: {url: "redis://127.0.0.1:$REDIS_PORT", cache_ms: 1000}
oauth: {issuer: "http://127.0.0.1:9", client_id: bench, client_secret: bench}
EOF
        elif [[ $t == gatehouse-api ]]; then
            # consumers_dir defaults to `consumers` beside conf.yaml.
            echo 'api_keys: {sources: ["header:X-Api-Key"]}'
        elif is_protected "$t"; then
            cat <<EOF
jwt:
  issuers:
    - issuer: bench
      secret: "$JWT_SECRET"
      algorithms: [HS256]
EOF
        fi
        if [[ $t == gatehouse-no-dashboard ]]; then echo "dashboard: {enabled: false}"; fi
        if [[ $t == gatehouse-traced ]]; then
            # Every request sampled (one server span + one client span);
            # the nginx upstream answers the POSTs 200, as a receiver would.
            echo "tracing: {otlp_endpoint: 'http://127.0.0.1:$UP_PORT/v1/traces', sample_ratio: 1.0}"
        fi
        case $t in
        gatehouse-auth | gatehouse-session | gatehouse-api) echo "rate_limit: {store: local}" ;;
        gatehouse-auth-redis)
            # on_error: deny, so a failing store shows as 503s (errors) in
            # the table instead of silently falling back to the local store.
            echo "rate_limit: {store: redis, redis_url: \"redis://127.0.0.1:$REDIS_PORT\", timeout_ms: 50, on_error: deny}"
            ;;
        esac
        echo "${GATEHOUSE_CONF_EXTRA:-}"
    } >"$dir/conf.yaml"
    {
        cat <<EOF
upstreams:
  bench-upstream:
    backends: [127.0.0.1:$UP_PORT]
    balance: round_robin
    health_check: { path: /, interval_ms: 2000, timeout_ms: 1000 }
routes:
EOF
        if [[ $t == gatehouse-api ]]; then
            cat <<EOF
  - name: api
    prefix: /api
    upstream: bench-upstream
    auth: api_key
    scopes: [kline:read]
    cors: {allow_origins: ["$API_ORIGIN"], allow_credentials: true, expose_headers: [x-request-id]}
    rewrite: {regex: '^/api/(.*)\$', replacement: '/\$1'}
    rate_limit: {key: consumer, rate: 1000000/s, burst: 1000000}   # never hit
EOF
        elif is_protected "$t"; then
            cat <<EOF
  - name: protected
    prefix: /protected
    upstream: bench-upstream
    auth: $([[ $t == gatehouse-session ]] && echo oauth || echo jwt)
    rate_limit: {key: user, rate: 1000000/s, burst: 1000000}   # never hit
EOF
            if [[ $t == gatehouse-full ]]; then echo "    session: required"; fi
        else
            cat <<EOF
  - name: bench
    prefix: /
    upstream: bench-upstream
EOF
        fi
    } >"$dir/routes/bench.yaml"
    if [[ $t == gatehouse-api ]]; then
        # Only the keys' SHA-256 (lower-case hex), never the keys.
        mkdir -p "$dir/consumers"
        cat >"$dir/consumers/bench.yaml" <<EOF
consumers:
  - {name: bench, key_sha256: '$(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1)', scopes: [kline:read]}
  - {name: bench-noscope, key_sha256: '$(printf %s "$API_KEY_NOSCOPE" | sha256sum | cut -d' ' -f1)', scopes: [kline:write]}
EOF
    fi
}

# curl against gatehouse target $1 (path $2, extra curl args after); prints
# "<status> <body bytes>", headers in $TMP/$1/curl-headers.txt.
gh_curl() {
    local t=$1 path=$2 out
    shift 2
    rm -f "$TMP/$t/curl-headers.txt" "$TMP/$t/curl-body.txt"
    out=$(curl -s --max-time 5 -D "$TMP/$t/curl-headers.txt" -o "$TMP/$t/curl-body.txt" \
        -w '%{http_code}' "$@" "http://127.0.0.1:${PORT[$t]}$path" || true)
    touch "$TMP/$t/curl-body.txt"
    echo "${out:-000} $(wc -c <"$TMP/$t/curl-body.txt")"
}

# Whether header file $1 (curl -D) has the line $2 (case-insensitive, exact).
has_header() { tr -d '\r' <"$1" | grep -ixF -- "$2" >/dev/null; }

# gatehouse-full: the session check is live. DEL the session key, expect a
# 401 within cache_ms (1 s; polled for up to 3 s), SET it again, expect 200
# again; then the access log file must have grown.
check_session() {
    local t=$1 i status size t0 t1 tok
    tok=$(token_of "$t")
    redis_cli del "$SESSION_KEY" >/dev/null || die "redis DEL failed"
    t0=$(date +%s%N)
    for ((i = 0; i < 60; i++)); do
        read -r status size < <(gh_curl "$t" /protected -H "Authorization: Bearer $tok")
        [[ $status == 401 ]] && break
        sleep 0.05
    done
    t1=$(date +%s%N)
    [[ $status == 401 ]] || die "$t: after DEL $SESSION_KEY, /protected still answered $status after 3s (cache_ms is 1000)"
    SESSION_REVOKE_MS=$(((t1 - t0) / 1000000))
    ((SESSION_REVOKE_MS <= 1100)) ||
        echo "run.sh: warning: $t: revocation took ${SESSION_REVOKE_MS} ms, more than cache_ms (1000)" >&2
    [[ $(redis_cli set "$SESSION_KEY" 1) == OK ]] || die "redis SET failed"
    for ((i = 0; i < 60; i++)); do
        read -r status size < <(gh_curl "$t" /protected -H "Authorization: Bearer $tok")
        [[ $status == 200 ]] && break
        sleep 0.05
    done
    [[ $status == 200 ]] || die "$t: after SET $SESSION_KEY again, /protected answered $status"
    sleep 0.3
    [[ -s $TMP/$t/access.log ]] || die "$t: no access log written to $TMP/$t/access.log"
    log "$t: session revoked -> 401 after ${SESSION_REVOKE_MS} ms; restored -> 200; access log: $(wc -l <"$TMP/$t/access.log") lines"
}

# gatehouse-traced: its export counters from /metrics, printed as
# "<exports ok> <exports error> <spans dropped>" (a missing series is 0).
trace_counters() {
    curl -s --max-time 5 "http://127.0.0.1:${ADMIN_PORT[$1]}/metrics" | awk '
        /^gatehouse_trace_exports_total\{/ && /result="ok"/ { ok += $2 }
        /^gatehouse_trace_exports_total\{/ && /result="error"/ { err += $2 }
        /^gatehouse_trace_spans_dropped_total[{ ]/ { dropped += $2 }
        END { printf "%d %d %d\n", ok, err, dropped }'
}

# gatehouse-traced: the export works before anything is measured. A few
# requests, then (batches leave at least once a second) within 5 s
# gatehouse_trace_exports_total{result="ok"} > 0, no failed export and
# gatehouse_trace_spans_dropped_total 0; the script stops otherwise.
check_tracing() {
    local t=$1 i status size ok=0 err=0 dropped=0
    for ((i = 0; i < 5; i++)); do
        read -r status size < <(gh_curl "$t" /trace/check)
        [[ $status == 200 && $size == 1024 ]] || die "$t: GET /trace/check answered $status ($size bytes), expected 200 (1024 bytes)"
    done
    for ((i = 0; i < 50; i++)); do
        read -r ok err dropped < <(trace_counters "$t")
        ((ok > 0)) && break
        sleep 0.1
    done
    if ((ok == 0 || err > 0 || dropped > 0)); then
        show_log "$TMP/$t/gatehouse.log"
        die "$t: trace export not working after 6 requests: gatehouse_trace_exports_total ok=$ok error=$err, gatehouse_trace_spans_dropped_total=$dropped (expected ok > 0, error 0, dropped 0)"
    fi
    log "$t: trace export works: gatehouse_trace_exports_total{result=\"ok\"} $ok, error $err, spans dropped $dropped"
}

# Starts gatehouse target $1 and checks it answers as it should.
start_gatehouse() {
    local t=$1 dir=$TMP/$1 pid status size i
    write_gatehouse_conf "$t"
    log "$t: gatehouse check -c $dir/conf.yaml"
    if ! RUST_LOG=warn "$GATEHOUSE_BIN" check -c "$dir/conf.yaml" >"$dir/check.out" 2>&1; then
        cat "$dir/check.out" >&2
        die "gatehouse check failed on the generated config of $t"
    fi
    log "$t: starting gatehouse on 127.0.0.1:${PORT[$t]} (admin :${ADMIN_PORT[$t]}, $THREADS threads)"
    RUST_LOG=warn "$GATEHOUSE_BIN" run -c "$dir/conf.yaml" >"$dir/gatehouse.log" 2>&1 &
    pid=$!
    GH_PID[$t]=$pid
    if ! wait_http_200 "http://127.0.0.1:${ADMIN_PORT[$t]}/health/ready" "$pid" 30; then
        show_log "$dir/gatehouse.log"
        die "$t: gatehouse /health/ready did not answer 200 within 30s"
    fi
    if is_protected "$t"; then
        local path=${URL_PATH[$t]} origin=()
        [[ $t == gatehouse-api ]] && origin=(-H "Origin: $API_ORIGIN")
        request_headers "$t"
        # With the token (the key and Origin): 200 and the 1024 bytes
        # (retried for up to 10s: the Redis connection is made on first use).
        for ((i = 0; i < 100; i++)); do
            read -r status size < <(gh_curl "$t" "$path" "${REQ_HEADERS[@]}")
            [[ $status == 200 ]] && break
            alive "$pid" || break
            sleep 0.1
        done
        if [[ $status != 200 || $size != 1024 ]]; then
            show_log "$dir/gatehouse.log"
            die "$t: GET $path with the token answered $status ($size bytes), expected 200 (1024 bytes)"
        fi
        grep -qi '^ratelimit-policy:' "$dir/curl-headers.txt" ||
            echo "run.sh: warning: $t: no RateLimit-Policy header on an allowed response; is the limit applied?" >&2
        if [[ $t == gatehouse-api ]]; then
            # CORS on the actual response: the exact origin, credentials, the
            # exposed header. (The 1024 bytes above already prove the rewrite:
            # the upstream answers /api/... with a 404.)
            has_header "$dir/curl-headers.txt" "access-control-allow-origin: $API_ORIGIN" || {
                cat "$dir/curl-headers.txt" >&2
                die "$t: the allowed response lacks 'access-control-allow-origin: $API_ORIGIN'"
            }
            has_header "$dir/curl-headers.txt" 'access-control-allow-credentials: true' ||
                die "$t: the allowed response lacks 'access-control-allow-credentials: true'"
            grep -qi '^access-control-expose-headers:.*x-request-id' "$dir/curl-headers.txt" ||
                die "$t: the allowed response does not expose x-request-id"
        fi
        read -r status size < <(gh_curl "$t" "$path" "${origin[@]}")
        [[ $status == 401 ]] || die "$t: GET $path without a token answered $status, expected 401"
        if [[ $t == gatehouse-api ]]; then
            # The gateway's own refusal carries the CORS headers too.
            has_header "$dir/curl-headers.txt" "access-control-allow-origin: $API_ORIGIN" ||
                echo "run.sh: warning: $t: the 401 without a key has no access-control-allow-origin" >&2
        fi
        read -r status size < <(gh_curl "$t" "$path" -H "$(credential_of "$t" bad)" "${origin[@]}")
        [[ $status == 401 ]] || die "$t: GET $path with a wrongly signed token (unknown key) answered $status, expected 401"
        if [[ $t == gatehouse-api ]]; then
            read -r status size < <(gh_curl "$t" "$path" -H "X-Api-Key: $API_KEY_NOSCOPE" "${origin[@]}")
            [[ $status == 403 ]] || die "$t: GET $path with the key of a consumer without kline:read answered $status, expected 403"
            log "$t: $path answers 200 with the key and Origin (CORS headers present, rewritten upstream), 401 without a key and with an unknown one, 403 for a consumer without the scope"
        else
            log "$t: $path answers 200 with the token, 401 without it and with a wrongly signed one"
        fi
        if [[ $t == gatehouse-full ]]; then check_session "$t"; fi
    else
        read -r status size < <(gh_curl "$t" /via/gatehouse)
        if [[ $status != 200 || $size != 1024 ]]; then
            show_log "$dir/gatehouse.log"
            die "$t: GET through gatehouse answered $status ($size bytes), expected 200 (1024 bytes)"
        fi
        if [[ $t == gatehouse-traced ]]; then check_tracing "$t"; fi
    fi
    if [[ -s $dir/gatehouse.pid ]] && [[ $(<"$dir/gatehouse.pid") != "$pid" ]]; then
        echo "run.sh: note: $t: pid file says $(<"$dir/gatehouse.pid"), launched PID is $pid; measuring the launched PID" >&2
    fi
}

for t in gatehouse gatehouse-no-dashboard gatehouse-traced gatehouse-auth gatehouse-api gatehouse-session gatehouse-auth-redis gatehouse-full; do
    selected "$t" && start_gatehouse "$t"
done
# Idle RSS of each gatehouse process, right after start-up and the checks.
declare -A IDLE_RSS=()
for t in gatehouse gatehouse-no-dashboard gatehouse-traced gatehouse-auth gatehouse-api gatehouse-session gatehouse-auth-redis gatehouse-full; do
    selected "$t" && IDLE_RSS[$t]=$(rss_kb "${GH_PID[$t]}")
done
if selected gatehouse-h2; then
    code=$(curl -sk --http2 -o /dev/null -w '%{http_code} %{http_version}' --max-time 5 \
        "https://127.0.0.1:${PORT[gatehouse-h2]}/" || true)
    [[ $code == "200 2" ]] || die "gatehouse TLS listener: curl --http2 answered '$code', expected '200 2'"
    log "gatehouse-h2: TLS listener answers 200 over HTTP/2"
fi
if selected nginx-proxy-h2; then
    code=$(curl -sk --http2 -o /dev/null -w '%{http_code} %{http_version}' --max-time 5 \
        "https://127.0.0.1:${PORT[nginx-proxy-h2]}/" || true)
    [[ $code == "200 2" ]] || die "nginx proxy TLS listener: curl --http2 answered '$code', expected '200 2'"
fi

# The Redis variant must really decide in Redis. Its bucket key expires ~2 ms
# after a request (a 1,000,000/s bucket is full again at once), so rather than
# racing `--scan`, watch the commands with MONITOR while one request passes.
if selected gatehouse-auth-redis; then
    mon=$TMP/redis-monitor.txt
    timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" monitor >"$mon" 2>&1 &
    MONITOR_PID=$!
    for ((i = 0; i < 50; i++)); do
        grep -q '^OK' "$mon" 2>/dev/null && break
        sleep 0.1
    done
    read -r status size < <(gh_curl gatehouse-auth-redis /protected -H "Authorization: Bearer $TOKEN")
    for ((i = 0; i < 30; i++)); do
        grep -q 'gatehouse:rl:' "$mon" 2>/dev/null && break
        sleep 0.1
    done
    stop_pid "$MONITOR_PID" TERM 2
    MONITOR_PID=''
    if [[ $status != 200 ]] || ! grep -q 'gatehouse:rl:' "$mon"; then
        echo "---- redis MONITOR ----" >&2
        head -n 20 "$mon" >&2
        die "gatehouse-auth-redis: a request (status $status) left no gatehouse:rl:* command in Redis"
    fi
    REDIS_KEY=$(grep -o 'gatehouse:rl:[^"]*' "$mon" | head -n1)
    log "gatehouse-auth-redis: Redis saw the bucket $REDIS_KEY"
fi

# --- load -------------------------------------------------------------------

port_of() { echo "${PORT[$1]}"; }
pids_of() {
    case $1 in
    direct) with_children "$UP_PID" ;;
    nginx-proxy | nginx-proxy-h2) with_children "$PROXY_PID" ;;
    gatehouse-h2) with_children "${GH_PID[gatehouse]}" ;;
    *) with_children "${GH_PID[$1]}" ;;
    esac
}

# Runs h2load (HTTP/2 over TLS) against target $1 for $2 seconds, output to
# file $3 and the per-request log to $3.log.
run_h2load() {
    local target=$1 secs=$2 out=$3
    if ! timeout --kill-after=5 $((secs + 30)) \
        h2load -t "$WRK_THREADS" -c "$CONNECTIONS" -m "$H2_STREAMS" -D "$secs" --log-file="$out.log" \
        "https://127.0.0.1:$(port_of "$target")${URL_PATH[$target]}" >"$out" 2>&1; then
        cat "$out" >&2
        die "h2load against $target failed or timed out"
    fi
}

# Runs wrk against target $1 for $2 seconds, output to file $3.
run_wrk() {
    local target=$1 secs=$2 out=$3
    if is_h2 "$target"; then
        run_h2load "$@"
        return
    fi
    request_headers "$target"
    if ! timeout --kill-after=5 $((secs + 30)) \
        wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "${secs}s" --latency "${REQ_HEADERS[@]}" \
        "http://127.0.0.1:$(port_of "$target")${URL_PATH[$target]}" >"$out" 2>&1; then
        cat "$out" >&2
        die "wrk against $target failed or timed out"
    fi
}

# Parses wrk (or h2load) output $1; prints: req/s p50_ms p99_ms requests non2xx socket_errors
parse_wrk() {
    python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
if text.lstrip().startswith("starting benchmark") or "h2load" in text[:200]:
    # h2load: totals from its summary, latency percentiles from --log-file
    # (start µs, status, duration µs per request).
    fin = re.search(r"^finished in [\d.]+m?s, ([\d.]+) req/s", text, re.M)
    req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if not fin or not req or not codes:
        sys.exit("cannot parse h2load output")
    durs = sorted(int(l.split("\t")[2]) for l in open(sys.argv[1] + ".log") if l.count("\t") == 2)
    if not durs:
        sys.exit("empty h2load log")
    pct = lambda p: durs[min(len(durs) - 1, int(len(durs) * p / 100))] / 1000
    done = int(req.group(3))
    non2xx = int(codes.group(3)) + int(codes.group(4))
    print(fin.group(1), "%.3f" % pct(50), "%.3f" % pct(99), done, non2xx,
          int(req.group(6)) + int(req.group(7)) + max(0, done - int(req.group(4)) - non2xx))
    sys.exit(0)
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
# gatehouse-auth-redis only: redis-server's CPU and Redis script calls per request.
REDIS_TSV=$TMP/redis-rounds.tsv
printf 'round\tredis_cpu_us_per_req\tcalls_per_req\n' >"$REDIS_TSV"
# gatehouse-traced only: its exports and dropped spans over each run.
TRACE_TSV=$TMP/trace-rounds.tsv
printf 'round\trequests\texports_ok\texports_error\tspans_dropped\n' >"$TRACE_TSV"

# EVAL/EVALSHA calls Redis has served so far.
redis_script_calls() {
    redis_cli info commandstats |
        awk -F'[:=,]' '/^cmdstat_(eval|evalsha|eval_ro|evalsha_ro):/ {n += $3} END {print n + 0}'
}

# One measured run: wrk plus the target's CPU time over the run.
measure() {
    local round=$1 target=$2 out=$TMP/wrk-$2-$1.txt
    local -a pids
    local t0 t1 rps p50 p99 reqs non2xx sockerr cpu r0='' r1 c0 c1 x0=() x1=()
    mapfile -t pids < <(pids_of "$target")
    [[ $target == gatehouse-traced ]] && read -ra x0 < <(trace_counters "$target")
    if [[ $target == gatehouse-auth-redis ]]; then
        r0=$(cpu_ticks "$REDIS_PID")
        c0=$(redis_script_calls)
    fi
    t0=$(cpu_ticks "${pids[@]}")
    run_wrk "$target" "$DURATION" "$out"
    # gatehouse-traced: the spans still queued when wrk stops leave within
    # FLUSH_EVERY (1 s); their encoding and POSTs are this run's CPU too.
    [[ $target == gatehouse-traced ]] && sleep 1.5
    t1=$(cpu_ticks "${pids[@]}")
    if [[ -n $r0 ]]; then
        r1=$(cpu_ticks "$REDIS_PID")
        c1=$(redis_script_calls)
        alive "$REDIS_PID" || die "redis-server (PID $REDIS_PID) died during round $round"
    fi
    alive "${pids[0]}" || die "$target (PID ${pids[0]}) died during round $round"
    read -r rps p50 p99 reqs non2xx sockerr < <(parse_wrk "$out") ||
        die "cannot parse $out"
    cpu=$(python3 -c "import sys; t, r = map(int, sys.argv[1:3]); print('%.1f' % ((t * 1e6 / $CLK_TCK) / r if r else 0))" \
        "$((t1 - t0))" "$reqs")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$rps" "$p50" "$p99" \
        "$reqs" "$non2xx" "$sockerr" "$cpu" >>"$ROUNDS_TSV"
    printf '    round %s  %-20s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  %6s µs CPU/req  errors %s\n' \
        "$round" "$target" "$rps" "$p50" "$p99" "$cpu" "$((non2xx + sockerr))"
    if [[ -n $r0 ]]; then
        python3 -c "import sys; t, c, r = map(int, sys.argv[1:4]); print('%s\t%.1f\t%.3f' % (sys.argv[4], (t * 1e6 / $CLK_TCK) / r if r else 0, c / r if r else 0))" \
            "$((r1 - r0))" "$((c1 - c0))" "$reqs" "$round" >>"$REDIS_TSV"
    fi
    if ((${#x0[@]})); then
        read -ra x1 < <(trace_counters "$target")
        printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$reqs" "$((x1[0] - x0[0]))" "$((x1[1] - x0[1]))" \
            "$((x1[2] - x0[2]))" >>"$TRACE_TSV"
        printf '    round %s  %-20s exports ok %s, failed %s; spans dropped %s (of ~%s)\n' "$round" "$target" \
            "$((x1[0] - x0[0]))" "$((x1[1] - x0[1]))" "$((x1[2] - x0[2]))" "$((2 * reqs))"
    fi
}

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before the run: $LOADAVG"
log "warm-up: ${WARMUP}s per target"
for target in "${RUN_TARGETS[@]}"; do
    run_wrk "$target" "$WARMUP" "$TMP/wrk-$target-warmup.txt"
done

log "$ROUNDS rounds x ${DURATION}s per target (wrk -t $WRK_THREADS -c $CONNECTIONS, keep-alive)"
for ((round = 1; round <= ROUNDS; round++)); do
    for target in "${RUN_TARGETS[@]}"; do
        measure "$round" "$target"
    done
done

LOADAVG_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average after the run: $LOADAVG_AFTER"

# RSS right after the last round, every process of each target.
RSS_TSV=$TMP/rss.tsv
for target in "${RUN_TARGETS[@]}"; do
    mapfile -t pids < <(pids_of "$target")
    printf '%s\t%s\n' "$target" "$(rss_kb "${pids[@]}")"
done >"$RSS_TSV"

# HALF=1: each HTTP/1.1 target at a fixed rate, half of the max req/s the
# rounds measured for gatehouse-full (else gatehouse), with h2load --h1 --rps
# (wrk cannot pace), in ROUNDS alternating rounds; p50/p99 from h2load's
# per-request log. h2load starts every connection's pacing timer at once,
# so by default all CONNECTIONS requests leave in the same instant (bursts
# of 64 every 7.5 ms at 8.5k req/s: the latency measured is then the time to
# drain a burst). HALF_STAGGER=1 opens the connections WRK_THREADS per
# millisecond instead (h2load -r/--rate-period), which spreads their timers
# over the pacing period: requests arrive as from independent clients.
HALF_TSV=$TMP/half.tsv
: >"$HALF_TSV"
if ((HALF)) && selected direct && command -v h2load >/dev/null 2>&1; then
    half_base=gatehouse-full
    selected gatehouse-full || half_base=gatehouse
    if selected "$half_base"; then
        max_rps=$(awk -F'\t' -v t="$half_base" '$2 == t {print $3}' "$ROUNDS_TSV" | sort -n |
            awk '{v[NR] = $1} END {print int(NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}')
        per_conn=$(((max_rps / 2 + CONNECTIONS - 1) / CONNECTIONS))
        pacing=(-D "$DURATION")
        ((HALF_STAGGER)) && pacing=(-n "$((per_conn * CONNECTIONS * DURATION))" -r "$WRK_THREADS" --rate-period=1ms)
        log "half load: $((per_conn * CONNECTIONS)) req/s (half of $half_base's $max_rps), ${DURATION}s per target, $ROUNDS rounds, staggered starts: $HALF_STAGGER"
        for ((round = 1; round <= ROUNDS; round++)); do
            for target in "${RUN_TARGETS[@]}"; do
                is_h2 "$target" && continue
                out=$TMP/half-$round-$target.txt
                request_headers "$target"
                timeout --kill-after=5 $((DURATION + 30)) h2load --h1 -t "$WRK_THREADS" -c "$CONNECTIONS" \
                    --rps="$per_conn" "${pacing[@]}" --log-file="$out.log" "${REQ_HEADERS[@]}" \
                    "http://127.0.0.1:$(port_of "$target")${URL_PATH[$target]}" >"$out" 2>&1 ||
                    die "h2load --h1 against $target failed: $(tail -n3 "$out")"
                read -r rps p50 p99 reqs non2xx sockerr < <(parse_wrk "$out")
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$((per_conn * CONNECTIONS))" \
                    "$rps" "$p50" "$p99" "$((non2xx + sockerr))" >>"$HALF_TSV"
                printf '    half round %s  %-20s p50 %7.3f ms  p99 %7.3f ms\n' "$round" "$target" "$p50" "$p99"
            done
        done
    fi
fi

# SCALE=1: SCALE_CONNS idle keep-alive connections to the plain gatehouse
# (one GET each, then held open by benches/conns.py), RSS with them, and one
# wrk run of DURATION seconds while they stay open.
SCALE_TXT=$TMP/scale.txt
SCALE_TSV=$TMP/scale-rounds.tsv
: >"$SCALE_TXT"
if ((SCALE)) && selected gatehouse; then
    gpid=${GH_PID[gatehouse]}
    rss_before=$(rss_kb "$gpid")
    log "scale: opening $SCALE_CONNS idle keep-alive connections to gatehouse"
    python3 "$BENCH_DIR/conns.py" 127.0.0.1 "${PORT[gatehouse]}" "$SCALE_CONNS" / >"$TMP/conns.out" 2>&1 &
    CONNS_PID=$!
    for ((i = 0; i < 1800; i++)); do
        grep -q '^ready' "$TMP/conns.out" 2>/dev/null && break
        alive "$CONNS_PID" || break
        sleep 0.1
    done
    grep -q '^ready' "$TMP/conns.out" || {
        cat "$TMP/conns.out" >&2
        die "conns.py did not get its connections up within 180s"
    }
    read -r _ conns_open conns_failed < <(grep '^ready' "$TMP/conns.out")
    sleep 2
    rss_conns=$(rss_kb "$gpid")
    log "scale: $conns_open open ($conns_failed failed), gatehouse RSS $((rss_conns / 1024)) MB; wrk ${DURATION}s while they stay open"
    printf 'round\ttarget\trps\tp50_ms\tp99_ms\trequests\tnon2xx\tsocket_errors\tcpu_us_per_req\n' >"$SCALE_TSV"
    ROUNDS_TSV=$SCALE_TSV measure scale gatehouse
    rss_load=$(rss_kb "$gpid")
    stop_pid "$CONNS_PID" TERM 10
    CONNS_PID=''
    read -r _ conns_end conns_peer_closed < <(grep '^closing' "$TMP/conns.out" || echo "closing ? ?")
    sleep 2
    rss_closed=$(rss_kb "$gpid")
    read -r _ _ s_rps s_p50 s_p99 s_reqs s_non2xx s_sock s_cpu < <(tail -n1 "$SCALE_TSV")
    printf '%s\t%s\n' idle_kb "${IDLE_RSS[gatehouse]}" before_kb "$rss_before" conns "$SCALE_CONNS" \
        open "$conns_open" failed "$conns_failed" conns_kb "$rss_conns" load_kb "$rss_load" \
        open_at_end "$conns_end" peer_closed "$conns_peer_closed" closed_kb "$rss_closed" \
        rps "$s_rps" p50 "$s_p50" p99 "$s_p99" cpu "$s_cpu" errors "$((s_non2xx + s_sock))" >"$SCALE_TXT"
fi

# What the protected gatehouses counted over the whole run (from /metrics).
METRICS_TXT=$TMP/metrics.txt
metric_summary() {
    local t=$1
    curl -s --max-time 5 "http://127.0.0.1:${ADMIN_PORT[$t]}/metrics" | awk -v t="$t" '
        /^gatehouse_rate_limit_store_total\{/ { match($1, /result="[^"]*"/); store = store " " substr($1, RSTART + 8, RLENGTH - 9) "=" $2 }
        /^gatehouse_rate_limited_total[{ ]/ { limited += $2 }
        /^gatehouse_auth_failures_total[{ ]/ { authfail += $2 }
        /^gatehouse_tokenginx_lookups_total[{ ]/ { tgx = tgx " " $1 "=" $2 }
        /^gatehouse_jwks_refreshes_total[{ ]/ { jwks = jwks " " $1 "=" $2 }
        END {
            printf "%s: requests refused by the rate limit %d; auth failures %d (%s%s)", t, limited, authfail, (t == "gatehouse-api" ? "3 are the deliberate 401/401/403 checks" : "2 are the deliberate 401 checks"), (t == "gatehouse-full" ? ", the others the session-revocation check" : "")
            if (t == "gatehouse-auth-redis") printf "; shared-store decisions:%s", store
            if (t == "gatehouse-full") printf "; TokenginX lookups:%s; JWKS refreshes:%s", tgx, jwks
            printf "\n"
        }'
}
for t in gatehouse-auth gatehouse-api gatehouse-session gatehouse-auth-redis gatehouse-full; do
    selected "$t" && metric_summary "$t"
done >"$METRICS_TXT"
# gatehouse-traced over the whole run (checks and warm-up included).
TRACE_TOTAL=''
selected gatehouse-traced && TRACE_TOTAL=$(trace_counters gatehouse-traced)

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
REDIS_VERSION=''
H2LOAD_VERSION=''
if [[ " ${RUN_TARGETS[*]} " == *-h2* ]]; then
    H2LOAD_VERSION=", h2load $(h2load --version 2>&1 | grep -o 'nghttp2/[^ ]*' | head -n1)"
fi
if needs_redis; then
    REDIS_VERSION=", redis $(redis-server --version | grep -o 'v=[^ ]*' | cut -d= -f2)"
fi
BENCH_TARGETS=${RUN_TARGETS[*]}
SESSION_REVOKE_MS=${SESSION_REVOKE_MS:-}
export DATE COMMIT MACHINE GH_VERSION WRK_VERSION NGINX_VERSION REDIS_VERSION LOADAVG LOADAVG_AFTER GATEHOUSE_BIN \
    THREADS DURATION ROUNDS CONNECTIONS WRK_THREADS WARMUP GATEHOUSE_ACCESS_LOG H2LOAD_VERSION H2_STREAMS \
    SESSION_REVOKE_MS TRACE_TOTAL
export BENCH_TARGETS
python3 - "$ROUNDS_TSV" "$RSS_TSV" "$REDIS_TSV" "$METRICS_TXT" "$SCALE_TXT" "$TMP/results.csv" "$TRACE_TSV" >"$REPORT" <<'PY'

import csv, os, statistics, sys

env = os.environ

rounds = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
rss = dict(line.rstrip("\n").split("\t") for line in open(sys.argv[2]))
redis_rounds = list(csv.DictReader(open(sys.argv[3]), delimiter="\t"))
metrics_notes = [line.rstrip("\n") for line in open(sys.argv[4]) if line.strip()]
scale = dict(line.rstrip("\n").split("\t") for line in open(sys.argv[5]) if line.strip())
trace_rounds = list(csv.DictReader(open(sys.argv[7]), delimiter="\t"))
targets = env["BENCH_TARGETS"].split()
label = {
    "direct": "direct (nginx upstream)",
    "nginx-proxy": "nginx proxy",
    "gatehouse": "gatehouse",
    "gatehouse-traced": "gatehouse-traced (OTLP export of every request)",
    "gatehouse-no-dashboard": "gatehouse-no-dashboard (dashboard: {enabled: false})",
    "gatehouse-auth": "gatehouse-auth (JWT + limit, local)",
    "gatehouse-api": "gatehouse-api (API key + CORS + rewrite + limit)",
    "gatehouse-session": "gatehouse-session (login cookie + limit, local)",
    "gatehouse-auth-redis": "gatehouse-auth-redis (JWT + limit, Redis)",
    "gatehouse-full": "gatehouse-full (ES256/JWKS + session + limit + log)",
    "nginx-proxy-h2": "nginx proxy h2",
    "gatehouse-h2": "gatehouse h2",
}
def base(t):
    # The nginx proxy row a target's ratio is taken against: the same protocol.
    return "nginx-proxy-h2" if t.endswith("-h2") else "nginx-proxy"

def med(t, key):
    return statistics.median(float(r[key]) for r in rounds if r["target"] == t)

def redis_med(key):
    return statistics.median(float(r[key]) for r in redis_rounds)

def errors(t):
    return sum(int(r["non2xx"]) + int(r["socket_errors"]) for r in rounds if r["target"] == t)

def table(header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)

rows = []
csv_rows = []
for t in targets:
    e = errors(t)
    ratio = med(t, "rps") / med(base(t), "rps") if base(t) in targets else None
    cpu = med(t, "cpu_us_per_req")
    rows.append([
        label[t] + (" (ERRORS)" if e else ""),
        "%.0f" % med(t, "rps"),
        "%.3f" % med(t, "p50_ms"),
        "%.3f" % med(t, "p99_ms"),
        "%.1f" % (int(rss[t]) / 1024),
        "%.2f" % ratio if ratio is not None else "n/a",
        "%.1f" % cpu,
        "%.2f" % (cpu * 0.1),
        e,
    ])
    csv_rows.append([t, label[t], "%.0f" % med(t, "rps"), "%.3f" % med(t, "p50_ms"),
                     "%.3f" % med(t, "p99_ms"), "%.1f" % (int(rss[t]) / 1024),
                     "%.3f" % ratio if ratio is not None else "", "%.1f" % cpu,
                     "%.2f" % (cpu * 0.1), e])
with open(sys.argv[6], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["target", "label", "rps", "p50_ms", "p99_ms", "rss_mb", "ratio_vs_nginx",
                "cpu_us_per_req", "cpu_s_per_100k", "errors"])
    w.writerows(csv_rows)
summary = table(
    ["target", "req/s (median)", "p50 ms (median)", "p99 ms (median)", "RSS MB",
     "req/s vs nginx proxy", "CPU µs/req (median)", "CPU s / 100k req", "errors"],
    rows,
)
raw = table(
    ["round", "target", "req/s", "p50 ms", "p99 ms", "requests", "non-2xx/3xx",
     "socket errors", "CPU µs/req"],
    [[r["round"], r["target"], "%.0f" % float(r["rps"]), "%.3f" % float(r["p50_ms"]),
      "%.3f" % float(r["p99_ms"]), r["requests"], r["non2xx"], r["socket_errors"],
      r["cpu_us_per_req"]] for r in rounds],
)

notes = []
if "direct" in targets:
    added = ", ".join(
        "%s %+.3f ms" % (t, med(t, "p99_ms") - med("direct", "p99_ms"))
        for t in targets if t != "direct" and not t.endswith("-h2"))
    if added:
        notes.append("Added p99 vs direct at full load: %s\n"
                     "(SPEC §7's ≤ 1 ms target is defined at half of max load; this run saturates)." % added)
def paired(t, key):
    # Per round, target minus the plain gatehouse of the same round (they run
    # back to back, so slow drifts of the machine cancel out).
    base = {r["round"]: float(r[key]) for r in rounds if r["target"] == "gatehouse"}
    return [float(r[key]) - base[r["round"]] for r in rounds if r["target"] == t]

if "gatehouse" in targets:
    cost = []
    for t in ("gatehouse-auth", "gatehouse-api", "gatehouse-session", "gatehouse-auth-redis", "gatehouse-full"):
        if t in targets:
            d = paired(t, "cpu_us_per_req")
            c = "%s %+.1f µs (rounds: %s)" % (
                t, statistics.median(d), ", ".join("%+.1f" % x for x in d))
            if t == "gatehouse-auth-redis" and redis_rounds:
                c += ", plus redis-server's %.1f µs" % redis_med("redis_cpu_us_per_req")
            cost.append(c)
    if cost:
        notes.append("Policy cost over the plain gatehouse route, CPU µs/req of the gateway "
                     "process (median over rounds of target minus gatehouse in the same round): "
                     + "; ".join(cost) + ".")
if "gatehouse-no-dashboard" in targets and "gatehouse" in targets:
    d = [-x for x in paired("gatehouse-no-dashboard", "cpu_us_per_req")]
    notes.append(
        "Dashboard cost (gatehouse minus gatehouse-no-dashboard in the same round, CPU µs/req of "
        "the gateway process): %+.1f µs median (rounds: %s)."
        % (statistics.median(d), ", ".join("%+.1f" % x for x in d)))
if "gatehouse-traced" in targets and "gatehouse" in targets:
    d = paired("gatehouse-traced", "cpu_us_per_req")
    base_rps = {r["round"]: float(r["rps"]) for r in rounds if r["target"] == "gatehouse"}
    rel = [float(r["rps"]) / base_rps[r["round"]] for r in rounds if r["target"] == "gatehouse-traced"]
    per_round = "; ".join(
        "round %s: %s exports ok, %s failed, %s spans dropped of ~%d" % (
            r["round"], r["exports_ok"], r["exports_error"], r["spans_dropped"], 2 * int(r["requests"]))
        for r in trace_rounds)
    dropped = sum(int(r["spans_dropped"]) for r in trace_rounds)
    total = env.get("TRACE_TOTAL", "").split()
    notes.append(
        "Trace export cost (gatehouse-traced minus gatehouse in the same round, CPU µs/req of the "
        "gateway process, export included: each run's CPU is read 1.5 s after wrk stops, once the "
        "last batch has left): %+.1f µs median (rounds: %s); req/s %.2f of gatehouse's (rounds: %s). "
        "Spans per request: 2 (server + client). Per round: %s. Spans dropped in the measured rounds: "
        "%d%s.%s"
        % (statistics.median(d), ", ".join("%+.1f" % x for x in d),
           statistics.median(rel), ", ".join("%.2f" % x for x in rel), per_round, dropped,
           " (the export queue was full: those spans were not encoded nor sent, so the CPU figure "
           "is below the cost of exporting everything)" if dropped else " (every span was queued)",
           " Whole run (checks and warm-up included): exports ok %s, failed %s, spans dropped %s."
           % tuple(total) if len(total) == 3 else ""))
if redis_rounds:
    notes.append(
        "Redis (gatehouse-auth-redis): redis-server CPU %.1f µs per request (median; not in the "
        "table, which is the gateway process only); Redis script calls per request %s (per round)."
        % (redis_med("redis_cpu_us_per_req"),
           ", ".join("%.3f" % float(r["calls_per_req"]) for r in redis_rounds)))
if "nginx-proxy-h2" in targets or "gatehouse-h2" in targets:
    notes.append("HTTP/2 rows: h2load -t %s -c %s -m %s -D %ss over TLS (self-signed P-256 certificate, "
                 "ALPN h2) to the same nginx proxy / plain gatehouse processes (second listener); the "
                 "upstream hop stays HTTP/1.1 keep-alive. Their ratio is to nginx proxy h2; p50/p99 are "
                 "per-request times from h2load's log (each connection has %s streams in flight)."
                 % (env["WRK_THREADS"], env["CONNECTIONS"], env["H2_STREAMS"], env["DURATION"],
                    env["H2_STREAMS"]))
if "gatehouse-full" in targets and env.get("SESSION_REVOKE_MS"):
    notes.append("gatehouse-full checks before the run: 200 with the ES256 token, 401 without it and "
                 "with an HS256 token of another issuer; after `DEL` of its TokenginX session key "
                 "the next 401 came %s ms later (cache_ms: 1000), and 200 again after `SET`."
                 % env["SESSION_REVOKE_MS"])
if scale:
    mb = lambda k: "%.1f" % (int(scale[k]) / 1024)
    g = med("gatehouse", "rps") if "gatehouse" in targets else None
    notes.append(
        "Connection scale (plain gatehouse, SPEC §7: RSS ≤ 30 MB idle, ≤ 200 MB with 10,000 "
        "connections):\n"
        "- RSS idle (after start-up and the checks, before any load): %s MB\n"
        "- RSS after the rounds, before opening the connections: %s MB\n"
        "- RSS with %s idle keep-alive connections open (%s failed to open): %s MB\n"
        "- wrk -c %s for %ss while they stay open: %.0f req/s%s, p50 %.3f ms, p99 %.3f ms, "
        "CPU %s µs/req, errors %s; RSS after it %s MB\n"
        "- connections still open at the end: %s (closed by gatehouse: %s); RSS 2 s after "
        "closing them: %s MB"
        % (mb("idle_kb"), mb("before_kb"), scale["open"], scale["failed"], mb("conns_kb"),
           env["CONNECTIONS"], env["DURATION"], float(scale["rps"]),
           " (%.2f of its median without them)" % (float(scale["rps"]) / g) if g else "",
           float(scale["p50"]), float(scale["p99"]), scale["cpu"], scale["errors"], mb("load_kb"),
           scale["open_at_end"], scale["peer_closed"], mb("closed_kb")))
if metrics_notes:
    notes.append("Counted by the protected gateways over the whole run (warm-up and checks "
                 "included), from /metrics:\n" + "\n".join("- " + m for m in metrics_notes))

e = env
print(f"""# gatehouse load benchmark

- date: {e["DATE"]}
- commit: {e["COMMIT"]}; binary: `{e["GATEHOUSE_BIN"]}` ({e["GH_VERSION"]})
- machine: {e["MACHINE"]}; load average before / after the run: {e["LOADAVG"]} / {e["LOADAVG_AFTER"]}
- tools: {e["WRK_VERSION"]}, {e["NGINX_VERSION"]}{e["REDIS_VERSION"]}{e["H2LOAD_VERSION"]}
- load: wrk -t {e["WRK_THREADS"]} -c {e["CONNECTIONS"]} -d {e["DURATION"]}s --latency, HTTP/1.1 keep-alive, 1024-byte responses; {e["ROUNDS"]} alternating rounds after a {e["WARMUP"]}s warm-up per target
- gatehouse threads: {e["THREADS"]} (each gatehouse target its own process), access log: {e["GATEHOUSE_ACCESS_LOG"]}; nginx proxy worker_processes: {e["THREADS"]}; nginx upstream worker_processes: 1
- protected targets: `Authorization: Bearer` HS256 JWT (one token, verified-token cache warm), route `auth: jwt` + `rate_limit: {{key: user, rate: 1000000/s, burst: 1000000}}` (never hit)
- gatehouse-traced: the plain gatehouse's route plus `tracing: {{otlp_endpoint: 'http://127.0.0.1:<upstream port>/v1/traces', sample_ratio: 1.0}}` (the nginx upstream answers the POSTs 200); its cost is this row against gatehouse
- gatehouse-api: `X-Api-Key` (one consumer key, found by its SHA-256 in a consumer file) and `Origin: https://app.example.com` on every request; route `auth: api_key` + `scopes: [kline:read]`, `cors` (credentials, one exposed header), `rewrite` of `/api/(.*)` to `/$1`, `rate_limit: {{key: consumer, rate: 1000000/s, burst: 1000000}}` (never hit); its cost is this row against gatehouse
- gatehouse-session: the same route as `auth: oauth`, a `Cookie: gatehouse_session` whose record is in TokenginX (redis-server, `cache_ms: 1000`); cookie session vs bearer JWT is this row against gatehouse-auth
- gatehouse-full: ES256 JWT (one token) verified against a JWKS over HTTP, `session: required` in TokenginX (redis-server, `cache_ms: 1000`), the same never-hit limit (local), JSON access log to a file

{summary}

req/s, p50 and p99 are medians over the rounds; RSS is every process of the
target right after the last round (the h2 rows share the process of their
HTTP/1.1 row); the ratio is to nginx proxy over the same protocol; CPU µs/req
is the target's own processes only (for the proxies, not the upstream nor
redis-server), and CPU s / 100k req is the same figure × 0.1; errors are
non-2xx/3xx responses plus socket errors summed over the rounds.

""" + "\n\n".join(notes) + f"""

## Per round

{raw}""")
PY

if [[ -s $HALF_TSV ]]; then
    python3 - "$HALF_TSV" "$HALF_STAGGER" "$WRK_THREADS" >>"$REPORT" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
stagger = sys.argv[2] == "1"
targets = list(dict.fromkeys(r[1] for r in rows))
by = {(r[0], r[1]): r for r in rows}
rounds = sorted({r[0] for r in rows}, key=int)
med = lambda xs: statistics.median(xs) if xs else float("nan")
print("\n## Latency at half load\n")
print("SPEC §7: added p99 vs direct ≤ 1 ms at half of max load. Each HTTP/1.1 target at the "
      "same fixed rate (h2load --h1 --rps, %s requests/s offered, half of the max measured above), "
      "the same keep-alive connections, %d alternating rounds; medians over the rounds. %s\n"
      % (rows[0][2], len(rounds),
         "Connections opened %s per ms, so their pacing timers are out of phase (HALF_STAGGER=1)."
         % sys.argv[3] if stagger else
         "All connections send at the same instant (HALF_STAGGER=0): the latency is the time to drain a burst."))
print("| target | req/s offered | req/s done | p50 ms | p99 ms | added p99 vs direct ms (per round) | errors |")
print("|---|---|---|---|---|---|---|")
for t in targets:
    mine = [by[(r, t)] for r in rounds if (r, t) in by]
    added = [float(by[(r, t)][5]) - float(by[(r, "direct")][5])
             for r in rounds if (r, t) in by and (r, "direct") in by]
    cell = "" if t == "direct" or not added else "%+.3f (%s)" % (
        med(added), ", ".join("%+.2f" % a for a in added))
    print("| %s | %s | %.0f | %.3f | %.3f | %s | %d |" % (
        t, mine[0][2], med([float(m[3]) for m in mine]), med([float(m[4]) for m in mine]),
        med([float(m[5]) for m in mine]), cell, sum(int(m[6]) for m in mine)))
PY
fi

cat "$REPORT"
cp "$REPORT" "$RESULTS_DIR/latest.md"
cp "$TMP/results.csv" "$RESULTS_DIR/latest.csv"
if python3 "$BENCH_DIR/plot.py" "$RESULTS_DIR/latest.csv" "$RESULTS_DIR/latest.png" >"$TMP/plot.out" 2>&1; then
    log "chart: $RESULTS_DIR/latest.png"
else
    echo "run.sh: warning: no chart: $(tail -n1 "$TMP/plot.out")" >&2
fi
STAMP=$(date -u '+%Y%m%dT%H%M%SZ')
cp "$REPORT" "$RESULTS_DIR/$STAMP-${COMMIT%% *}.md"
log "written: $RESULTS_DIR/latest.md"
