#!/usr/bin/env node
// End-to-end browser test of gatehouse with real parts only:
//   two Next.js apps (basePath /admin, /kline; `next build` + `next start`;
//   what they have in common lives in apps/shared),
//   a `next dev` copy of kline (basePath /kline-dev) for HMR over WebSocket,
//   an OAuth-service stand-in (oauth/server.mjs: ES256 JWKS, login page),
//   TokenginX = a real redis-server on a free loopback port,
//   the gatehouse binary ($GATEHOUSE_BIN, default target/debug/gatehouse),
//   headless Chromium (/usr/bin/chromium or $CHROMIUM) driven by playwright-core.
// The oauth-* steps run a second gatehouse in front of the same apps and
// redis-server as the OAuth 2.1 client of both (`oauth:` block, `auth: oauth`
// routes with `on_unauthenticated: login`) against a real authorization server:
// oidc-provider (../oauth/provider.mjs, 5 s access tokens, rotated refresh tokens).
//
// Usage: node tests/e2e/run.mjs   (or `npm test` in tests/e2e)
// Env: GATEHOUSE_BIN, CHROMIUM, E2E_ARTIFACTS (default tests/e2e/artifacts),
//      E2E_DEADLINE_SECONDS (default 480), E2E_KEEP_TMP=1 (keep the temp dir),
//      E2E_HOLD_SECONDS=N (keep the stack up N s after the tests, for poking at it).
// Every process started here is stopped by PID (its own process group) at the
// end, on failure, on SIGINT/SIGTERM and when the global deadline passes.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { redisCommand } from './lib/resp.mjs';

const E2E = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(E2E, '../..');
const BIN = path.resolve(process.env.GATEHOUSE_BIN || path.join(REPO, 'target/debug/gatehouse'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.resolve(process.env.E2E_ARTIFACTS || path.join(E2E, 'artifacts'));
const SHOTS = path.join(ARTIFACTS, 'screenshots');
const LOGS = path.join(ARTIFACTS, 'logs');
const DEADLINE_S = Number(process.env.E2E_DEADLINE_SECONDS || 480);
const NEXT_BIN = path.join(E2E, 'node_modules/next/dist/bin/next');
const OAUTH_DIR = path.resolve(E2E, '../oauth'); // oidc-provider and provider.mjs
const CACHE_MS = 300; // tokenginx.cache_ms: a revoked session must be refused within this
const SLOW_MS = 2000; // the Suspense'd part of apps/shared/stream-page.js
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
  '--no-proxy-server', // traffic goes straight to 127.0.0.1, whatever proxy the environment names
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', // and no other host resolves
];

const t0 = Date.now();
const secs = (ms) => `${(ms / 1000).toFixed(1)}s`;
const log = (msg) => console.log(`[e2e +${secs(Date.now() - t0)}] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class StepError extends Error {}
const fail = (msg) => {
  throw new StepError(msg);
};
const check = (cond, msg) => {
  if (!cond) fail(msg);
};

// ---------------------------------------------------------------- processes

const procs = []; // every process this run started (each leads its own process group)
let browser = null;
let tmp = null;
let cleaning = null;

// stdin 'pipe': the child may watch it and exit when this runner dies (it closes).
function spawnTracked(name, cmd, args, { cwd = E2E, env = {}, stdin = 'ignore' } = {}) {
  if (cleaning) throw new StepError(`not starting ${name}: the run is being stopped`);
  const logFile = path.join(LOGS, `${name}.log`);
  const fd = fs.openSync(logFile, 'a');
  const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, detached: true, stdio: [stdin, fd, fd] });
  fs.closeSync(fd);
  const p = { name, child, logFile, exit: undefined };
  p.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      p.exit = signal ? `signal ${signal}` : `exit code ${code}`;
      resolve();
    });
    child.on('error', (e) => {
      p.exit = `spawn error: ${e.message}`;
      resolve();
    });
  });
  procs.push(p);
  return p;
}

function logTail(p, lines = 25) {
  try {
    const text = fs.readFileSync(p.logFile, 'utf8').trimEnd().split('\n');
    return text.slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function stopProc(p, graceMs = 5000) {
  const signalGroup = (sig) => {
    try {
      process.kill(-p.child.pid, sig); // the group it leads: the process and its children
    } catch {
      // group already gone
    }
  };
  if (!p.child.pid) return;
  signalGroup('SIGTERM');
  if (p.exit === undefined) {
    const exited = await Promise.race([p.exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (!exited) {
      log(`${p.name} (pid ${p.child.pid}) ignored SIGTERM for ${graceMs} ms: SIGKILL`);
      signalGroup('SIGKILL');
      await Promise.race([p.exited, sleep(2000)]);
    }
  }
  // children that outlived their leader (e.g. a Next.js worker)
  await sleep(50);
  signalGroup('SIGKILL');
}

async function runCmd(name, cmd, args, { cwd, env, timeoutMs }) {
  const p = spawnTracked(name, cmd, args, { cwd, env });
  const exited = await Promise.race([p.exited.then(() => true), sleep(timeoutMs).then(() => false)]);
  if (!exited) {
    await stopProc(p);
    fail(`${name}: \`${cmd} ${args.join(' ')}\` did not finish within ${secs(timeoutMs)}; log ${p.logFile}:\n${logTail(p)}`);
  }
  if (p.exit !== 'exit code 0') fail(`${name}: \`${cmd} ${args.join(' ')}\` failed (${p.exit}); log ${p.logFile}:\n${logTail(p)}`);
  return p;
}

async function cleanup() {
  if (cleaning) return cleaning;
  cleaning = (async () => {
    if (browser) {
      const pid = browser.process?.()?.pid;
      await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
      if (pid) {
        try {
          process.kill(pid, 0);
          log(`chromium (pid ${pid}) still running after close: SIGKILL`);
          process.kill(pid, 'SIGKILL');
        } catch {
          // exited
        }
      }
    }
    // The gateways first (they drain in grace_period_seconds: 1), then their peers.
    const isGateway = (p) => p.name === 'gatehouse' || p.name === 'gatehouse-oauth';
    await Promise.all(procs.filter(isGateway).map((p) => stopProc(p)));
    await Promise.all(procs.filter((p) => !isGateway(p)).map((p) => stopProc(p)));
    if (tmp && !process.env.E2E_KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
    else if (tmp) log(`kept temp dir ${tmp}`);
  })();
  return cleaning;
}

// ---------------------------------------------------------------- helpers

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A plain HTTP/1.1 request (no cookie jar, no proxy). Resolves with status,
// headers, body and the arrival time of every body chunk (ms since start).
function request(url, { method = 'GET', headers = {}, body, timeoutMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push({ at: Date.now() - started, data: c }));
      res.on('end', () => {
        clearTimeout(timer);
        const buf = Buffer.concat(chunks.map((c) => c.data));
        resolve({ status: res.statusCode, headers: res.headers, body: buf.toString('utf8'), chunks });
      });
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${url} timed out after ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end(body);
  });
}

function jsonOf(res, what) {
  try {
    return JSON.parse(res.body);
  } catch {
    return fail(`${what}: expected JSON, got ${res.status} ${res.body.slice(0, 300)}`);
  }
}

async function waitFor(what, fn, { timeoutMs = 30000, intervalMs = 200, proc } = {}) {
  const end = Date.now() + timeoutMs;
  let last = 'no attempt';
  while (Date.now() < end) {
    if (proc && proc.exit !== undefined) fail(`${what}: ${proc.name} exited (${proc.exit}); log ${proc.logFile}:\n${logTail(proc)}`);
    try {
      const v = await fn();
      if (v) return v;
      last = 'not yet';
    } catch (e) {
      last = e.message;
    }
    await sleep(intervalMs);
  }
  return fail(`${what}: not reached within ${secs(timeoutMs)} (last: ${last})${proc ? `; log ${proc.logFile}:\n${logTail(proc)}` : ''}`);
}

// A gateway's JSON access log, one object a line (a line still being written is skipped).
const accessLogLines = (file = 'gatehouse-access.log') =>
  fs
    .readFileSync(path.join(LOGS, file), 'utf8')
    .split('\n')
    .flatMap((l) => {
      try {
        return l ? [JSON.parse(l)] : [];
      } catch {
        return [];
      }
    });

const jwtClaims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));

// ---------------------------------------------------------------- steps

const results = [];
let aborted = false;
let current = null;

async function step(name, fn, { timeoutMs = 90000, needs = [], fatal = false } = {}) {
  const missing = needs.filter((n) => results.find((r) => r.name === n)?.status !== 'PASS');
  if (aborted || missing.length) {
    const why = aborted ? 'an earlier setup step failed' : `needs ${missing.join(', ')}`;
    results.push({ name, status: 'NOT RUN', ms: 0, detail: why });
    log(`NOT RUN ${name}: ${why}`);
    return;
  }
  const started = Date.now();
  current = name;
  log(`step ${name} ...`);
  let timer;
  try {
    const detail = await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new StepError(`step timed out after ${secs(timeoutMs)}`)), timeoutMs);
      }),
    ]);
    results.push({ name, status: 'PASS', ms: Date.now() - started, detail: detail || '' });
    log(`PASS ${name} (${secs(Date.now() - started)})${detail ? `: ${detail}` : ''}`);
  } catch (e) {
    const msg = e instanceof StepError ? e.message : e.stack || String(e);
    results.push({ name, status: 'FAIL', ms: Date.now() - started, detail: msg });
    log(`FAIL ${name} (${secs(Date.now() - started)}): ${msg}`);
    if (fatal) aborted = true;
  } finally {
    clearTimeout(timer);
    current = null;
  }
}

function printSummary() {
  const w = Math.max(...results.map((r) => r.name.length), 10);
  console.log('\n==== gatehouse e2e summary ====');
  for (const r of results) {
    const first = r.detail.split('\n')[0];
    console.log(`${r.status.padEnd(7)} ${r.name.padEnd(w)} ${secs(r.ms).padStart(6)}  ${first.slice(0, 160)}`);
  }
  const failed = results.filter((r) => r.status !== 'PASS').length;
  console.log(`${failed ? 'FAILED' : 'OK'}: ${results.length - failed}/${results.length} steps passed in ${secs(Date.now() - t0)}; artifacts in ${ARTIFACTS}`);
  try {
    fs.writeFileSync(path.join(ARTIFACTS, 'summary.json'), `${JSON.stringify({ total_ms: Date.now() - t0, results }, null, 2)}\n`);
  } catch {
    // artifacts dir unwritable: the console summary is enough
  }
  return failed;
}

let deadlineHit = false;
const deadline = setTimeout(async () => {
  deadlineHit = true;
  log(`global deadline of ${DEADLINE_S}s reached${current ? ` during step ${current}` : ''}: stopping everything`);
  results.push({ name: 'global-deadline', status: 'FAIL', ms: 0, detail: `run exceeded ${DEADLINE_S}s (E2E_DEADLINE_SECONDS)` });
  await cleanup();
  printSummary();
  process.exit(1);
}, DEADLINE_S * 1000);

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, async () => {
    if (cleaning) return;
    log(`${sig}: stopping everything`);
    results.push({ name: 'interrupted', status: 'FAIL', ms: 0, detail: `${sig} received${current ? ` during step ${current}` : ''}` });
    await cleanup();
    printSummary();
    process.exit(130);
  });
}

// ---------------------------------------------------------------- setup

const ports = {};
let GW; // http://127.0.0.1:<listener>
let ADMIN_API; // gatehouse admin service
let devCopy; // temp copy of apps/kline served by `next dev`
let devWarmup; // promise: first compile of the dev page
const started = {};

function nodeModulesState(dir = E2E) {
  const lockPath = path.join(dir, 'package-lock.json');
  const hiddenPath = path.join(dir, 'node_modules/.package-lock.json');
  if (!fs.existsSync(hiddenPath)) return 'node_modules missing';
  const lock = JSON.parse(fs.readFileSync(lockPath, 'utf8')).packages;
  const hidden = JSON.parse(fs.readFileSync(hiddenPath, 'utf8')).packages;
  for (const [k, v] of Object.entries(lock)) {
    if (k === '') continue;
    const h = hidden[k];
    if (!h) {
      if (v.optional) continue; // other platforms' binaries
      return `stale: ${k} not installed`;
    }
    if (h.version !== v.version) return `stale: ${k} is ${h.version}, lockfile says ${v.version}`;
  }
  for (const k of Object.keys(hidden)) if (!(k in lock)) return `stale: ${k} is not in the lockfile`;
  return 'ok';
}

const nextEnv = (extra = {}) => ({
  NEXT_TELEMETRY_DISABLED: '1',
  NODE_OPTIONS: `--require "${path.join(E2E, 'lib/loopback-only.cjs')}"`,
  ...extra,
});

async function preflight() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  check(major > 20 || (major === 20 && minor >= 9), `node ${process.versions.node} is too old: Next.js 16 needs >= 20.9 (apt-get install -y nodejs npm, or a newer Node.js)`);
  const npm = spawnSync('npm', ['--version'], { encoding: 'utf8', timeout: 30000 });
  check(npm.status === 0, `npm not found or not working (${npm.error?.message || npm.stderr}): apt-get install -y nodejs npm`);
  check(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM=/path/to/chromium)`);
  const ver = spawnSync(CHROMIUM, ['--version'], { encoding: 'utf8', timeout: 30000 });
  check(ver.status === 0, `${CHROMIUM} --version failed (${ver.error?.message || ver.stderr}): apt-get install -y chromium`);
  const redis = spawnSync('redis-server', ['--version'], { encoding: 'utf8', timeout: 30000 });
  check(redis.status === 0, `redis-server not found (TokenginX stand-in): apt-get install -y redis-server`);
  check(fs.existsSync(BIN), `gateway binary ${BIN} not found: build it with \`cargo build\` or set GATEHOUSE_BIN`);
  return `node ${process.versions.node}, npm ${npm.stdout.trim()}, ${ver.stdout.trim()}, ${redis.stdout.trim().split(' ').slice(0, 3).join(' ')}, gatehouse ${BIN}`;
}

async function npmCi() {
  const state = nodeModulesState();
  if (state === 'ok') return 'node_modules matches package-lock.json: npm ci not needed';
  log(`node_modules: ${state}: running npm ci`);
  await runCmd('npm-ci', 'npm', ['ci', '--no-audit', '--no-fund'], { cwd: E2E, env: {}, timeoutMs: 300000 });
  const after = nodeModulesState();
  check(after === 'ok', `after npm ci node_modules is still not the lockfile's: ${after}`);
  return `npm ci (${state})`;
}

// The authorization server of the oauth-* steps has its own package (tests/oauth).
async function npmCiOauth() {
  const state = nodeModulesState(OAUTH_DIR);
  if (state === 'ok') return 'tests/oauth/node_modules matches its package-lock.json: npm ci not needed';
  log(`tests/oauth/node_modules: ${state}: running npm ci`);
  await runCmd('npm-ci-oauth', 'npm', ['ci', '--no-audit', '--no-fund'], { cwd: OAUTH_DIR, env: {}, timeoutMs: 300000 });
  const after = nodeModulesState(OAUTH_DIR);
  check(after === 'ok', `after npm ci tests/oauth/node_modules is still not the lockfile's: ${after}`);
  return `npm ci in tests/oauth (${state})`;
}

async function buildApp(app) {
  const dir = path.join(E2E, 'apps', app);
  fs.rmSync(path.join(dir, '.next'), { recursive: true, force: true }); // build from scratch: no cache CI did not build
  await runCmd(`build-${app}`, process.execPath, [NEXT_BIN, 'build'], { cwd: dir, env: nextEnv(), timeoutMs: 240000 });
  check(fs.existsSync(path.join(dir, '.next/BUILD_ID')), `${app}: next build left no .next/BUILD_ID`);
  return `next build apps/${app}`;
}

// The part of a gateway's conf.yaml both gateways share: process files in
// \`conf\`, one listener, the admin service, routes/ beside it.
function confHead(writer, conf, port, adminPort) {
  return `# written by ${writer}
version: 1
threads: 2
pid_file: ${conf}/gatehouse.pid
upgrade_sock: ${conf}/gatehouse_upgrade.sock
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
listeners:
  - addr: 127.0.0.1:${port}
admin: 127.0.0.1:${adminPort}
routes_dir: routes
security_headers: true`;
}

function writeGatewayConfig() {
  const conf = path.join(tmp, 'gateway');
  fs.mkdirSync(path.join(conf, 'routes'), { recursive: true });
  fs.writeFileSync(
    path.join(conf, 'conf.yaml'),
    `${confHead('tests/e2e/run.mjs', conf, ports.gw, ports.gwAdmin)}
jwt:
  leeway_seconds: 60
  token_sources: [header, "cookie:access_token"]
  issuers:
    - issuer: ${GW}/oauth
      audiences: [gatehouse]
      jwks_url: http://127.0.0.1:${ports.oauth}/oauth/.well-known/jwks.json
      algorithms: [ES256]
tokenginx:
  url: redis://127.0.0.1:${ports.redis}
  session_key: "oauth:token:{jti}"
  timeout_ms: 250
  cache_ms: ${CACHE_MS}
  on_error: deny
access_log:
  format: json
  path: ${path.join(LOGS, 'gatehouse-access.log')}
forward_identity:
  sub: X-User-Id
  scope: X-User-Scopes
  roles: X-User-Roles
`,
  );
  const nextRoutes = (name, prefix, upstream, port, scope, { healthPath, readTimeoutMs = 30000 } = {}) => `upstreams:
  ${upstream}:
    backends: [127.0.0.1:${port}]
${healthPath ? `    health_check: { path: ${healthPath}, interval_ms: 1000, timeout_ms: 1000 }\n` : ''}    connect_timeout_ms: 1000
    read_timeout_ms: ${readTimeoutMs}
routes:
  - name: ${name}
    prefix: ${prefix}
    upstream: ${upstream}
    strip_prefix: false
    auth: jwt
    session: required
    scopes: [${scope}]
    on_unauthenticated: "redirect:/oauth/login?next={uri}"
  - name: ${name}-static
    prefix: ${prefix}/_next/static
    upstream: ${upstream}
    auth: none
`;
  fs.writeFileSync(
    path.join(conf, 'routes/10-oauth.yaml'),
    `upstreams:
  oauth-service:
    backends: [127.0.0.1:${ports.oauth}]
    health_check: { path: /oauth/health, interval_ms: 1000, timeout_ms: 1000 }
routes:
  - name: oauth
    prefix: /oauth
    upstream: oauth-service
    auth: none
`,
  );
  fs.writeFileSync(path.join(conf, 'routes/20-admin.yaml'), nextRoutes('admin', '/admin', 'admin-portal', ports.admin, 'admin', { healthPath: '/admin/api/health' }));
  fs.writeFileSync(path.join(conf, 'routes/30-kline.yaml'), nextRoutes('kline', '/kline', 'kline-service', ports.kline, 'read', { healthPath: '/kline/api/health' }));
  // next dev: TCP health check (an HTTP probe would make it compile a route); HMR socket may idle
  fs.writeFileSync(path.join(conf, 'routes/40-kline-dev.yaml'), nextRoutes('kline-dev', '/kline-dev', 'kline-dev', ports.klineDev, 'read', { readTimeoutMs: 120000 }));
  // keep a copy next to the other artifacts
  fs.cpSync(conf, path.join(ARTIFACTS, 'gateway-config'), { recursive: true, filter: (src) => !/\.(pid|sock)$/.test(src) });
  return path.join(conf, 'conf.yaml');
}

// A distinct free port for each of \`keys\`, recorded in \`ports\`.
async function pickPorts(keys) {
  for (const k of keys) {
    let p;
    do p = await freePort();
    while (Object.values(ports).includes(p));
    ports[k] = p;
  }
}

async function startServices() {
  await pickPorts(['gw', 'gwAdmin', 'redis', 'oauth', 'admin', 'kline', 'klineDev']);
  GW = `http://127.0.0.1:${ports.gw}`;
  ADMIN_API = `http://127.0.0.1:${ports.gwAdmin}`;

  // TokenginX: a real redis-server, nothing persisted
  const redisDir = path.join(tmp, 'redis');
  fs.mkdirSync(redisDir);
  started.redis = spawnTracked('redis', 'redis-server', ['--port', String(ports.redis), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redisDir]);
  // OAuth stand-in
  started.oauth = spawnTracked('oauth', process.execPath, [path.join(E2E, 'oauth/server.mjs')], {
    env: { PORT: String(ports.oauth), ISSUER: `${GW}/oauth`, AUDIENCE: 'gatehouse', SCOPE: 'admin read', TOKENGINX_PORT: String(ports.redis), SESSION_KEY: 'oauth:token:{jti}', TOKEN_TTL_SECONDS: '900' },
  });
  // production apps
  for (const app of ['admin', 'kline']) {
    started[app] = spawnTracked(app, process.execPath, [NEXT_BIN, 'start', '-p', String(ports[app]), '-H', '127.0.0.1'], { cwd: path.join(E2E, 'apps', app), env: nextEnv() });
  }
  // `next dev` on a copy of kline outside the repo (the HMR step edits it); webpack
  // dev server, basePath /kline-dev; node_modules is a link to the shared one, and
  // apps/shared is copied next to it so the apps' `../shared/...` imports resolve.
  devCopy = path.join(tmp, 'kline-dev');
  const noBuild = { recursive: true, filter: (src) => !src.includes(`${path.sep}.next`) };
  fs.cpSync(path.join(E2E, 'apps/kline'), devCopy, noBuild);
  check(!fs.existsSync(path.join(devCopy, '.next')), `${devCopy} has a .next: the dev server must start cold`);
  fs.cpSync(path.join(E2E, 'apps/shared'), path.join(tmp, 'shared'), noBuild);
  fs.symlinkSync(path.join(E2E, 'node_modules'), path.join(tmp, 'node_modules'), 'dir');
  started.klineDev = spawnTracked('kline-dev', process.execPath, [NEXT_BIN, 'dev', '--webpack', '-p', String(ports.klineDev), '-H', '127.0.0.1'], {
    cwd: devCopy,
    env: nextEnv({ E2E_BASE_PATH: '/kline-dev', E2E_ROOT: tmp }),
  });

  await waitFor('redis-server answers PING', async () => (await redisCommand(ports.redis, ['PING'], { timeoutMs: 500 })) === 'PONG', { proc: started.redis, timeoutMs: 15000 });
  await waitFor('oauth stand-in healthy', async () => (await request(`http://127.0.0.1:${ports.oauth}/oauth/health`, { timeoutMs: 2000 })).status === 200, { proc: started.oauth, timeoutMs: 15000 });
  for (const app of ['admin', 'kline']) {
    await waitFor(`next start ${app} healthy`, async () => (await request(`http://127.0.0.1:${ports[app]}/${app}/api/health`, { timeoutMs: 5000 })).status === 200, { proc: started[app], timeoutMs: 60000 });
  }
  // the dev server compiles on first request: warm the page and its chunks directly (no gateway) in the background
  devWarmup = warmDevPage().then(
    (summary) => ({ summary }),
    (error) => ({ error }),
  );
  return `redis :${ports.redis}, oauth :${ports.oauth}, admin :${ports.admin}, kline :${ports.kline}, kline-dev :${ports.klineDev}`;
}

// A cold `next dev` (webpack) compiles on the first request, and for an app
// router page the HTML is answered once the *server* compile is done: the
// client compile that emits the page's chunks (app/page.js ...) runs in
// parallel and may still be busy (or be queued for a second pass), so a
// browser that loads the page at once can get 404s or wait for its scripts,
// and then hydrates late or not at all. So: fetch the page until 200, then every
// /_next/static chunk it references (script/link tags and the client chunks
// named in the RSC payload) until each answers 200 with a body, and once more
// the page, to see that it names no chunk we have not fetched. All of it
// straight from the dev server, bounded by one compile-sized deadline.
async function warmDevPage() {
  const base = `http://127.0.0.1:${ports.klineDev}`;
  const startedAt = Date.now();
  const end = startedAt + 180000;
  const left = () => Math.max(1000, end - Date.now());
  const fetchPage = () =>
    waitFor(
      'next dev kline-dev compiles its page',
      async () => {
        const r = await request(`${base}/kline-dev`, { timeoutMs: left(), headers: { accept: 'text/html' } });
        return r.status === 200 && r;
      },
      { proc: started.klineDev, timeoutMs: left(), intervalMs: 500 },
    );
  const chunksOf = (html) => {
    const found = new Set();
    for (const m of html.matchAll(/(?:src|href)="([^"]*\/_next\/static\/[^"]+)"/g)) found.add(new URL(m[1].replace(/&amp;/g, '&'), base).pathname);
    for (const m of html.matchAll(/static\/(?:chunks|css)\/[^"'\\\s?]+?\.(?:js|css)(?=["'\\?])/g)) found.add(`/kline-dev/_next/${m[0]}`);
    return [...found].filter((p) => p.startsWith('/kline-dev/_next/static/'));
  };
  const page = await fetchPage();
  const pageMs = Date.now() - startedAt;
  const warmed = new Map(); // chunk path -> { ms, bytes, misses }
  const warm = async (chunks) => {
    for (const c of chunks) {
      if (warmed.has(c)) continue;
      let misses = 0;
      const r = await waitFor(
        `next dev kline-dev serves ${c} (the page's client compile)`,
        async () => {
          const res = await request(`${base}${c}`, { timeoutMs: left() });
          if (res.status === 200 && res.body.length > 0) return res;
          misses++;
          throw new Error(`${res.status}, ${res.body.length} B`);
        },
        { proc: started.klineDev, timeoutMs: left(), intervalMs: 250 },
      );
      warmed.set(c, { ms: Date.now() - startedAt, bytes: r.body.length, misses });
    }
  };
  const first = chunksOf(page.body);
  check(first.some((c) => c.endsWith('/app/page.js')), `the dev page names no app/page.js chunk: ${JSON.stringify(first)}`);
  await warm(first);
  const again = chunksOf((await fetchPage()).body);
  await warm(again);
  const missed = [...warmed].filter(([, w]) => w.misses > 0).map(([c, w]) => `${c.split('/').pop()} x${w.misses}`);
  return `page compiled in ${pageMs} ms; ${warmed.size} chunks 200 by ${Date.now() - startedAt} ms (${missed.length ? `not ready at first: ${missed.join(', ')}` : 'all ready with the page'})`;
}

async function startGateway() {
  const conf = writeGatewayConfig();
  const chk = spawnSync(BIN, ['check', '-c', conf], { encoding: 'utf8', timeout: 30000 });
  fs.writeFileSync(path.join(LOGS, 'gatehouse-check.log'), `${chk.stdout}${chk.stderr}`);
  check(chk.status === 0, `gatehouse check -c ${conf} failed (${chk.error?.message || `exit ${chk.status}`}):\n${chk.stdout}${chk.stderr}`);
  check(/^ok\b/m.test(chk.stdout), `gatehouse check did not print ok:\n${chk.stdout}`);

  started.gateway = spawnTracked('gatehouse', BIN, ['run', '-c', conf], { cwd: tmp });
  const ready = await waitFor(
    'gatehouse /health/ready with every upstream healthy and tokenginx ok',
    async () => {
      const r = await request(`${ADMIN_API}/health/ready`, { timeoutMs: 2000 });
      if (r.status !== 200) return false;
      const b = JSON.parse(r.body);
      const ups = Object.values(b.components?.upstreams ?? {});
      return b.components?.tokenginx === 'ok' && ups.length === 4 && ups.every((u) => u.healthy === u.total && u.total > 0) && b;
    },
    { proc: started.gateway, timeoutMs: 30000 },
  );
  return `gatehouse check ok; ready on ${GW} (admin ${ADMIN_API}), version ${ready.version}`;
}

// ---------------------------------------------------------------- browser steps

let ctxA; // alice's browser context
let shotNo = 0;
async function shot(page, name) {
  const file = path.join(SHOTS, `${String(++shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: 15000 });
  return file;
}

async function cookieOf(ctx) {
  const c = (await ctx.cookies(GW)).find((x) => x.name === 'access_token');
  check(c, 'no access_token cookie in the browser context');
  return c;
}

async function loginWithForm(page, user, expectNext) {
  const u = new URL(page.url());
  check(u.pathname === '/oauth/login', `expected the login page, browser is at ${page.url()}`);
  check(u.searchParams.get('next') === expectNext, `login page next=${JSON.stringify(u.searchParams.get('next'))}, expected ${JSON.stringify(expectNext)}`);
  await page.locator('#user').fill(user, { timeout: 10000 });
  await Promise.all([page.waitForURL(`${GW}${expectNext}`, { timeout: 30000, waitUntil: 'load' }), page.locator('#submit').click({ timeout: 10000 })]);
}

async function stepRedirect() {
  // the gateway's own answer, seen without a browser
  const r = await request(`${GW}/admin/stream?tab=a&b=1`, { headers: { accept: 'text/html,application/xhtml+xml' } });
  check(r.status === 302, `GET /admin/stream (Accept: text/html, no cookie): expected 302, got ${r.status} ${r.body.slice(0, 200)}`);
  const loc = r.headers.location ?? '';
  check(loc.startsWith('/oauth/login?next='), `Location ${JSON.stringify(loc)} is not /oauth/login?next=...`);
  const next = new URL(loc, GW).searchParams.get('next');
  check(next === '/admin/stream?tab=a&b=1', `Location next=${JSON.stringify(next)} should be the original URI /admin/stream?tab=a&b=1`);
  const head = await request(`${GW}/admin`, { method: 'HEAD', headers: { accept: 'text/html' } });
  check(head.status === 302 && (head.headers.location ?? '').startsWith('/oauth/login?next='), `HEAD /admin (text/html, no cookie): ${head.status} Location ${head.headers.location}`);
  const api = await request(`${GW}/admin/api/whoami`, { headers: { accept: 'application/json' } });
  check(api.status === 401, `GET /admin/api/whoami (API call, no cookie): expected 401, got ${api.status}`);
  check(/^Bearer/.test(api.headers['www-authenticate'] ?? ''), `401 without WWW-Authenticate: Bearer (${api.headers['www-authenticate']})`);
  const err = jsonOf(api, '401 body').error;
  check(['missing_token', 'invalid_token'].includes(err), `401 error code ${err}`);

  // the browser
  const page = await ctxA.newPage();
  const resp = await page.goto(`${GW}/admin`, { timeout: 30000 });
  const u = new URL(page.url());
  check(u.pathname === '/oauth/login' && u.searchParams.get('next') === '/admin', `browser without cookie at /admin ended on ${page.url()} (status ${resp?.status()}), expected /oauth/login?next=%2Fadmin`);
  await page.locator('#login-title').waitFor({ timeout: 10000 });
  await shot(page, 'login-redirect');
  return `302 Location ${loc}; API 401 ${err}; browser landed on ${u.pathname}${u.search}`;
}

async function stepLogin() {
  const page = ctxA.pages()[0];
  await loginWithForm(page, 'alice', '/admin');
  const userId = await page.locator('#user-id').textContent({ timeout: 10000 });
  const scopes = await page.locator('#user-scopes').textContent({ timeout: 10000 });
  check(userId === 'alice', `admin page shows X-User-Id ${JSON.stringify(userId)}, expected "alice"`);
  check(scopes === 'admin read', `admin page shows X-User-Scopes ${JSON.stringify(scopes)}, expected "admin read"`);
  const c = await cookieOf(ctxA);
  check(c.httpOnly && c.sameSite === 'Lax' && c.path === '/', `access_token cookie flags: ${JSON.stringify({ httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path })}`);
  const claims = jwtClaims(c.value);
  check(claims.sub === 'alice' && claims.jti, `token claims ${JSON.stringify(claims)}`);
  check((await redisCommand(ports.redis, ['EXISTS', `oauth:token:${claims.jti}`])) === 1, `session oauth:token:${claims.jti} not in TokenginX after login`);
  // response headers of the page as the browser got them
  const resp = await page.reload({ timeout: 30000 });
  const h = resp.headers();
  check(resp.status() === 200, `reload of /admin: ${resp.status()}`);
  check(!('x-powered-by' in h), `X-Powered-By leaked to the browser: ${h['x-powered-by']}`);
  check(!('server' in h), `Server header leaked to the browser: ${h.server}`);
  check(/^[0-9a-f]{32}$|^[A-Za-z0-9._:-]{1,128}$/.test(h['x-request-id'] ?? ''), `no X-Request-Id on the response`);
  check(h['x-content-type-options'] === 'nosniff', `X-Content-Type-Options is ${h['x-content-type-options']}`);
  const shown = await page.locator('#request-id').textContent();
  check(shown === h['x-request-id'], `request id the app saw (${shown}) != the response's X-Request-Id (${h['x-request-id']})`);
  // the stand-in only returns to local paths (no open redirect)
  const evil = await request(`${GW}/oauth/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'user=eve&next=%2F%2Fevil.example%2F' });
  check(evil.status === 303 && evil.headers.location === '/admin', `POST /oauth/login next=//evil.example/: ${evil.status} Location ${evil.headers.location}`);
  await shot(page, 'admin-after-login');
  return `page shows alice / "admin read"; cookie HttpOnly SameSite=Lax; session oauth:token:${claims.jti.slice(0, 8)}… in TokenginX; X-Powered-By/Server removed, X-Request-Id ${h['x-request-id']}`;
}

async function stepForgedIdentity() {
  const forged = { 'X-User-Id': 'mallory', 'X-User-Scopes': 'admin superuser', 'X-User-Roles': 'root' };
  // 1. the browser sends forged headers on every request of this page
  const page = await ctxA.newPage();
  await page.setExtraHTTPHeaders(forged);
  await page.goto(`${GW}/admin`, { timeout: 30000 });
  const shown = await page.locator('#user-id').textContent({ timeout: 10000 });
  const scopes = await page.locator('#user-scopes').textContent();
  check(shown === 'alice' && scopes === 'admin read', `with forged X-User-Id: mallory the page shows ${JSON.stringify(shown)} / ${JSON.stringify(scopes)}, expected alice / admin read`);
  await shot(page, 'forged-header-ignored');
  await page.close();
  // 2. raw requests: also the underscore and other-case spellings, on a protected and a public route
  const cookie = `access_token=${(await cookieOf(ctxA)).value}`;
  const rawHeaders = { cookie, accept: 'application/json', 'X-User-Id': 'mallory', x_user_id: 'mallory', 'x-USER-scopes': 'superuser', X_User_Roles: 'root', 'X-Forwarded-For': '203.0.113.66' };
  const who = jsonOf(await request(`${GW}/admin/api/whoami`, { headers: rawHeaders }), 'whoami');
  check(who.user_id === 'alice', `whoami with forged headers: user_id ${JSON.stringify(who.user_id)}`);
  check(who.scopes === 'admin read', `whoami with forged headers: scopes ${JSON.stringify(who.scopes)}`);
  check(who.roles === null, `whoami: roles ${JSON.stringify(who.roles)} (token has no roles claim: the forged X_User_Roles must be gone)`);
  const names = who.identity_header_names.slice().sort();
  check(JSON.stringify(names) === JSON.stringify(['x-user-id', 'x-user-scopes']), `identity headers the app received: ${JSON.stringify(names)}`);
  // the peer (127.0.0.1) is no trusted proxy: its X-Forwarded-For is replaced, not extended
  check(who.forwarded_for === '127.0.0.1', `X-Forwarded-For at the app: ${JSON.stringify(who.forwarded_for)}, expected "127.0.0.1"`);
  check(who.forwarded_host === `127.0.0.1:${ports.gw}`, `X-Forwarded-Host at the app: ${JSON.stringify(who.forwarded_host)}`);
  const pub = jsonOf(await request(`${GW}/oauth/echo-identity`, { headers: rawHeaders }), 'echo-identity');
  check(pub.identity_header_names.length === 0, `public /oauth route received client identity headers ${JSON.stringify(pub.identity_header_names)}`);
  return `app shows alice, not mallory; whoami headers ${JSON.stringify(names)}; public route got none of x-user-id/x_user_id/X_User_Roles; forged X-Forwarded-For replaced by 127.0.0.1`;
}

async function stepStaticAssets(app) {
  const page = await ctxA.newPage();
  const assets = new Map();
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith(`/${app}/_next/static/`)) assets.set(r.url(), r.status());
  });
  await page.goto(`${GW}/${app}`, { timeout: 30000, waitUntil: 'load' });
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const expectBg = app === 'admin' ? 'rgb(250, 246, 230)' : 'rgb(230, 244, 250)';
  check(bg === expectBg, `${app}: body background ${bg}, expected ${expectBg} from globals.css (CSS asset not applied)`);
  if (app === 'kline') {
    const u = await page.locator('#user-id').textContent({ timeout: 10000 });
    check(u === 'alice', `kline (second app, same cookie) shows X-User-Id ${JSON.stringify(u)}`);
    await shot(page, 'kline-same-session');
  }
  await page.close();
  const urls = [...assets.keys()];
  check(urls.some((u) => u.endsWith('.js')) && urls.some((u) => u.endsWith('.css')), `${app}: expected .js and .css under /${app}/_next/static/, saw ${JSON.stringify(urls)}`);
  for (const [u, st] of assets) check(st === 200 || st === 304, `${app}: browser got ${st} for ${u}`);
  // the same assets without any cookie: public route
  for (const u of urls) {
    const r = await request(u, { headers: { accept: '*/*' } });
    check(r.status === 200, `${app}: GET ${new URL(u).pathname} without cookie: ${r.status} ${r.body.slice(0, 200)}`);
    check(/javascript|css/.test(r.headers['content-type'] ?? ''), `${app}: ${u} content-type ${r.headers['content-type']}`);
    check(r.body.length > 0, `${app}: ${u} empty body`);
  }
  // and from a fresh browser context that never logged in
  const fresh = await browser.newContext();
  try {
    const p2 = await fresh.newPage();
    await p2.goto(`${GW}/oauth/login`, { timeout: 30000 });
    const statuses = await p2.evaluate(async (list) => Promise.all(list.map(async (u) => (await fetch(u, { credentials: 'omit', cache: 'no-store' })).status)), urls);
    check(statuses.every((st) => st === 200), `${app}: fresh browser context fetching the assets got ${JSON.stringify(statuses)}`);
    check((await fresh.cookies()).length === 0, 'the fresh context has cookies');
  } finally {
    await fresh.close().catch(() => {});
  }
  // prefix on segment boundaries and path normalisation: neither opens the app
  const sib = await request(`${GW}/${app}/_next/staticky/x.js`, { headers: { accept: '*/*' } });
  check(sib.status === 401, `${app}: /${app}/_next/staticky/x.js without cookie should hit the protected route (401), got ${sib.status}`);
  const dots = await request(`${GW}/${app}/_next/static/../../${app}/api/whoami`, { headers: { accept: '*/*' } });
  check(dots.status === 401, `${app}: /${app}/_next/static/../../${app}/api/whoami without cookie should be normalised to the protected route (401), got ${dots.status} ${dots.body.slice(0, 200)}`);
  return `${urls.length} assets under /${app}/_next/static/ (js+css) 200 without cookie (node and a fresh Chromium context); CSS applied; /_next/staticky and ../ tricks get 401`;
}

// Reads a streamed response and notes when the fallback and the slow part arrived.
async function measureStream(url, headers) {
  const r = await request(url, { headers: { accept: 'text/html', ...headers }, timeoutMs: 20000 });
  check(r.status === 200, `GET ${url}: ${r.status} ${r.body.slice(0, 200)}`);
  let acc = '';
  let fallbackAt = null;
  let slowAt = null;
  for (const c of r.chunks) {
    acc += c.data.toString('utf8');
    if (fallbackAt === null && acc.includes('id="fallback"')) fallbackAt = c.at;
    if (slowAt === null && acc.includes('id="slow"')) slowAt = c.at;
  }
  check(fallbackAt !== null && slowAt !== null, `${url}: fallback or slow part missing in the body`);
  return { fallbackAt, slowAt, chunks: r.chunks.length, encoding: r.headers['transfer-encoding'] ?? `content-length ${r.headers['content-length']}` };
}

async function stepStreaming() {
  const cookie = `access_token=${(await cookieOf(ctxA)).value}`;
  const direct = await measureStream(`http://127.0.0.1:${ports.admin}/admin/stream`, {});
  const via = await measureStream(`${GW}/admin/stream`, { cookie });
  check(
    via.slowAt - via.fallbackAt >= SLOW_MS * 0.6,
    `through the gateway the fallback arrived at ${via.fallbackAt} ms and the slow part at ${via.slowAt} ms: the first chunk was held back (direct to the app: ${direct.fallbackAt} / ${direct.slowAt} ms)`,
  );
  // in the browser: the fallback is on screen before the slow part exists
  const page = await ctxA.newPage();
  const navStart = Date.now();
  const nav = page.goto(`${GW}/admin/stream`, { timeout: 30000, waitUntil: 'commit' });
  await nav;
  await page.locator('#fallback').waitFor({ state: 'visible', timeout: 15000 });
  const fallbackSeen = Date.now() - navStart;
  const slowYet = await page.locator('#slow').count();
  check(slowYet === 0, 'the slow part was already in the DOM when the fallback became visible');
  await shot(page, 'stream-fallback');
  await page.locator('#slow').waitFor({ state: 'visible', timeout: 20000 });
  const slowSeen = Date.now() - navStart;
  // (the exact gap depends on when Chromium first paints; the HTTP timings above are the precise measure)
  check(slowSeen - fallbackSeen >= 250, `browser: fallback visible at ${fallbackSeen} ms, slow part at ${slowSeen} ms (expected up to ~${SLOW_MS} ms apart)`);
  check(!(await page.locator('#fallback').isVisible()), 'fallback still visible after the slow part arrived');
  const txt = await page.locator('#slow').textContent();
  check(txt.includes('alice'), `slow part text ${JSON.stringify(txt)} lacks the user`);
  await shot(page, 'stream-resolved');
  await page.close();
  return `HTTP via gateway: fallback at ${via.fallbackAt} ms, slow part at ${via.slowAt} ms, ${via.chunks} chunks (${via.encoding}); direct: ${direct.fallbackAt}/${direct.slowAt} ms; browser: fallback visible ${fallbackSeen} ms, slow ${slowSeen} ms`;
}

async function stepRevocation() {
  const c = await cookieOf(ctxA);
  const { jti } = jwtClaims(c.value);
  const key = `oauth:token:${jti}`;
  const cookie = `access_token=${c.value}`;
  const page = await ctxA.newPage();
  await page.goto(`${GW}/admin`, { timeout: 30000 });
  check((await page.locator('#user-id').textContent({ timeout: 10000 })) === 'alice', 'before revocation /admin does not show alice');
  // Let any cached TokenginX verdict expire, then one request that must look
  // the session up (t=0), then DEL: the gateway may reuse "found" until
  // t=cache_ms, never later.
  await sleep(CACHE_MS + 200);
  const lookupAt = Date.now();
  const warm = await request(`${GW}/admin/api/whoami`, { headers: { cookie, accept: 'application/json' } });
  check(warm.status === 200, `before revocation whoami: ${warm.status}`);
  const warmDone = Date.now() - lookupAt; // its session lookup started before this
  const deleted = await redisCommand(ports.redis, ['DEL', key]);
  const delAt = Date.now();
  check(deleted === 1, `DEL ${key} answered ${deleted}`);
  const timeline = []; // [start ms after the lookup, status]
  let last;
  while (Date.now() - delAt < 5000) {
    const at = Date.now() - lookupAt;
    last = await request(`${GW}/admin/api/whoami`, { headers: { cookie, accept: 'application/json' } });
    timeline.push([at, last.status]);
    if (last.status !== 200) break;
    await sleep(10);
  }
  check(last.status === 401, `5 s after DEL ${key} the API answers ${last.status} (timeline ${JSON.stringify(timeline)})`);
  const lastOk = timeline.filter(([, st]) => st === 200).pop();
  const firstRefused = timeline[timeline.length - 1][0];
  const delMs = delAt - lookupAt;
  check(
    !lastOk || lastOk[0] <= warmDone + CACHE_MS + 5,
    `a request started ${lastOk?.[0]} ms after the last session lookup began (lookup answered by ${warmDone} ms, DEL at ${delMs} ms) was still let in: the revoked session outlived cache_ms ${CACHE_MS} (timeline [start ms, status]: ${JSON.stringify(timeline)})`,
  );
  const err = jsonOf(last, 'revoked 401').error;
  // the next navigation, client-side first: the page loaded before the DEL
  // follows a <Link>; Next.js fetches the RSC payload, gets the gateway's
  // 401 and falls back to a full navigation, which the gateway redirects
  await page.getByRole('link', { name: 'streaming page' }).click({ timeout: 10000 });
  await page
    .waitForURL((url) => url.pathname === '/oauth/login', { timeout: 20000 })
    .catch(() => fail(`after revocation a client-side <Link> navigation to /admin/stream stayed on ${page.url()} instead of reaching the login page`));
  const viaLink = new URL(page.url());
  check(viaLink.searchParams.get('next') === '/admin/stream', `login page after the <Link> navigation has next=${viaLink.searchParams.get('next')}`);
  // then a plain navigation
  await page.goto(`${GW}/admin`, { timeout: 30000 });
  const u = new URL(page.url());
  check(u.pathname === '/oauth/login' && u.searchParams.get('next') === '/admin', `after revocation navigation to /admin ended on ${page.url()}, expected the login page`);
  await shot(page, 'revoked-redirects-to-login');
  await page.close();
  return `lookup at 0-${warmDone} ms, DEL at ${delMs} ms, last 200 for a request started at ${lastOk?.[0] ?? '-'} ms, 401 (${err}) from ${firstRefused} ms (cache_ms ${CACHE_MS}); <Link> navigation and page load both ended on /oauth/login (next=/admin/stream, /admin)`;
}

async function stepHmr() {
  const waitFrom = Date.now();
  const warm = await devWarmup;
  if (warm.error) throw warm.error;
  const stepT0 = Date.now();
  const warmWaitMs = stepT0 - waitFrom;
  const ctx = await browser.newContext();
  try {
    const page = await ctx.newPage();
    // what the page loads from the dev server, for the hydration deadline and its diagnosis
    const isDevStatic = (u) => new URL(u).pathname.startsWith('/kline-dev/_next/static/');
    const inflight = new Map(); // request -> url
    const badResponses = [];
    const pageErrors = [];
    let lastStaticAt = 0;
    page.on('request', (r) => {
      if (isDevStatic(r.url())) inflight.set(r, r.url());
    });
    page.on('requestfinished', async (r) => {
      if (!inflight.delete(r)) return;
      lastStaticAt = Date.now();
      const res = await r.response().catch(() => null);
      if (!res || res.status() !== 200) badResponses.push(`${res ? res.status() : 'no response'} ${new URL(r.url()).pathname}`);
    });
    page.on('requestfailed', (r) => {
      if (!inflight.delete(r)) return;
      lastStaticAt = Date.now();
      badResponses.push(`failed (${r.failure()?.errorText}) ${new URL(r.url()).pathname}`);
    });
    page.on('pageerror', (e) => pageErrors.push(String(e).slice(0, 300)));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(`console: ${m.text().slice(0, 300)}`);
    });
    const sockets = [];
    page.on('websocket', (ws) => {
      const s = { url: ws.url(), openedAtMs: Date.now() - stepT0, received: 0, sent: 0, closed: false, lastFrames: [] };
      ws.on('framereceived', (f) => {
        s.received++;
        s.lastFrames.push(String(f.payload).slice(0, 120));
        if (s.lastFrames.length > 20) s.lastFrames.shift();
      });
      ws.on('framesent', () => s.sent++);
      ws.on('close', () => {
        s.closed = true;
        s.closedAtMs = Date.now() - stepT0;
      });
      ws.on('socketerror', (e) => {
        s.error = String(e);
      });
      sockets.push(s);
    });
    let navigations = 0;
    page.on('framenavigated', (f) => {
      if (f === page.mainFrame()) navigations++;
    });
    await page.goto(`${GW}/kline-dev`, { timeout: 60000 });
    await loginWithForm(page, 'bob', '/kline-dev');
    const loadedAt = Date.now(); // the dev page's load event (loginWithForm waits for it)
    check((await page.locator('#user-id').textContent({ timeout: 30000 })) === 'bob', 'dev page does not show bob');
    // Next.js 16 names the socket /_next/hmr (earlier versions /_next/webpack-hmr)
    const hmrUrl = new RegExp(`^ws://127\\.0\\.0\\.1:${ports.gw}/kline-dev/_next/(webpack-)?hmr([?]|$)`);
    const hmr = await waitFor(
      `a WebSocket to ws://127.0.0.1:${ports.gw}/kline-dev/_next/hmr receiving frames`,
      async () => sockets.find((s) => hmrUrl.test(s.url) && s.received > 0 && !s.closed),
      { timeoutMs: 30000, proc: started.klineDev },
    ).catch((e) => fail(`${e.message}; sockets seen: ${JSON.stringify(sockets)}`));
    // the same upgrade without the cookie: refused by the gateway, never proxied
    const anon = await request(`${GW}${new URL(hmr.url).pathname}`, {
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' },
    });
    check(anon.status === 401, `WebSocket upgrade of the HMR path without cookie: ${anon.status} (expected 401)`);
    // React state that a full reload would lose. A click before hydration has
    // no handler yet, so wait for React itself to say it has hydrated
    // (hmr-marker.js sets data-hydrated in an effect) before the first click.
    // The chunks were compiled and fetched once by warmDevPage; the browser
    // still downloads and runs them (megabytes of dev JS, through the gateway):
    // while any of them is in flight the page cannot hydrate, so the deadline
    // is 30 s after the last one arrived (or after the load event), within a
    // hard 120 s.
    // Next.js 16 streams the page's React debug channel over the *first* HMR
    // socket of the document (the socket's ?id= is the HTML request's id) and
    // only that one: if that socket dies, a reconnect gets nothing for the
    // page and React never finishes decoding it, so the page cannot hydrate.
    // A dead HMR socket is therefore reported as such, at once, with the
    // gateway's record of it, instead of as a hydration timeout.
    const droppedHmr = async (when) => {
      const dead = sockets.filter((w) => hmrUrl.test(w.url) && w.closed);
      if (!dead.length) return;
      await sleep(1000); // the gateway logs an upgraded connection when it closes
      const ids = new Set(dead.map((w) => new URL(w.url).search));
      const lines = accessLogLines().filter((l) => l.path.startsWith(`${new URL(hmr.url).pathname}?`) && ids.has(new URL(l.path, GW).search));
      fail(
        `an HMR WebSocket through the gateway was closed ${when} (Next.js only reconnects, and the page's React debug channel is lost with the first socket): ` +
          `${JSON.stringify(sockets.map((w) => ({ ...w, lastFrames: w.lastFrames.slice(-3) })))} (ms since the step began); ` +
          `gateway access log of these sockets: ${JSON.stringify(lines.map((l) => ({ time: l.time, path: l.path, status: l.status, duration_ms: l.duration_ms, bytes_sent: l.bytes_sent, bytes_received: l.bytes_received, error: l.error })))}; ` +
          `page errors: ${JSON.stringify(pageErrors.slice(-5))}; dev log:\n${logTail(started.klineDev)}`,
      );
    };
    const button = page.locator('#hmr-clicks');
    const hydrated = page.locator('#hmr-clicks[data-hydrated="true"]');
    for (;;) {
      if (started.klineDev.exit !== undefined) fail(`next dev exited (${started.klineDev.exit}) before the page hydrated:\n${logTail(started.klineDev)}`);
      if ((await hydrated.count().catch(() => 0)) === 1) break; // (0 while a reload replaces the document)
      await droppedHmr('before the page hydrated');
      const now = Date.now();
      const quietFor = now - Math.max(loadedAt, lastStaticAt);
      if ((inflight.size === 0 && quietFor > 30000) || now - loadedAt > 120000) {
        fail(
          `the dev page did not hydrate (#hmr-clicks data-hydrated=${await button.getAttribute('data-hydrated').catch((e) => e.message)}) ` +
            `within ${secs(now - loadedAt)} of its load event (${secs(quietFor)} after its last /_next/static response); still loading: ${JSON.stringify([...inflight.values()])}; ` +
            `not 200: ${JSON.stringify(badResponses)}; page errors: ${JSON.stringify(pageErrors.slice(-5))}; ` +
            `WebSockets (ms since the step began): ${JSON.stringify(sockets.map((w) => ({ ...w, lastFrames: w.lastFrames.slice(-3) })))}; warm-up: ${warm.summary}; dev log:\n${logTail(started.klineDev)}`,
        );
      }
      await sleep(100);
    }
    const hydrateMs = Date.now() - loadedAt;
    check((await button.textContent()) === 'clicked 0', `the counter counted before any click: ${await button.textContent()}`);
    for (const n of [1, 2]) {
      await button.click({ timeout: 10000 });
      await page
        .locator('#hmr-clicks', { hasText: `clicked ${n}` })
        .waitFor({ timeout: 10000 })
        .catch(async () => fail(`click ${n} on the hydrated page was not counted: ${await button.textContent()}; page errors: ${JSON.stringify(pageErrors.slice(-5))}`));
    }
    await page.evaluate(() => {
      window.__e2eNoReload = 'still here';
    });
    await shot(page, 'hmr-before-edit');
    const navBefore = navigations;
    const framesBefore = hmr.received;
    const file = path.join(devCopy, 'app/hmr-marker.js');
    const src = fs.readFileSync(file, 'utf8');
    check(src.includes('marker-v1'), 'hmr-marker.js in the dev copy lacks marker-v1');
    const editAt = Date.now();
    fs.writeFileSync(file, src.replace('marker-v1', 'marker-v2'));
    await page
      .locator('#hmr-marker', { hasText: 'marker-v2' })
      .waitFor({ timeout: 60000 })
      .catch(() => fail(`edited marker not shown within 60 s; HMR socket: ${JSON.stringify({ ...hmr, lastFrames: hmr.lastFrames.slice(-5) })}; dev log:\n${logTail(started.klineDev)}`));
    const updateMs = Date.now() - editAt;
    const kept = await page.evaluate(() => window.__e2eNoReload);
    const clicks = await page.locator('#hmr-clicks').textContent();
    check(kept === 'still here' && navigations === navBefore, `the page reloaded instead of hot-updating (window marker ${kept}, navigations ${navBefore} -> ${navigations})`);
    check(clicks === 'clicked 2', `React state lost on hot update: ${clicks}`);
    check(hmr.received > framesBefore, 'no HMR frame arrived over the WebSocket after the edit');
    await droppedHmr('while the page was open');
    const hmrSockets = sockets.filter((w) => hmrUrl.test(w.url));
    check(hmrSockets.length === 1, `the page opened ${hmrSockets.length} HMR WebSockets (one expected, reconnects mean one died): ${JSON.stringify(hmrSockets.map((w) => ({ ...w, lastFrames: w.lastFrames.slice(-3) })))}`);
    await shot(page, 'hmr-after-edit');
    await ctx.close();
    // the gateway's own record of the upgrade (written when the socket closes)
    const line = await waitFor(
      'the gateway access log line of the HMR WebSocket',
      async () => accessLogLines().find((l) => l.path === new URL(hmr.url).pathname + new URL(hmr.url).search && l.status !== 401),
      { timeoutMs: 10000 },
    );
    check(line.status === 101 && line.route === 'kline-dev' && line.auth === 'ok' && line.user === 'bob', `access log of the HMR socket: ${JSON.stringify(line)}`);
    return `access log: ${line.method} ${line.path.split('?')[0]} ${line.status} route=${line.route} user=${line.user} (${line.bytes_sent} B out); same upgrade without cookie 401; HMR socket ${new URL(hmr.url).pathname} via the gateway: ${hmr.received} frames in, ${hmr.sent} out; edit shown after ${updateMs} ms without reload (state kept); hydrated by ${hydrateMs} ms after the load event; dev warm-up: ${warm.summary}, waited ${warmWaitMs} ms for it`;
  } finally {
    await ctx.close().catch(() => {});
  }
}

// ---------------------------------------------------------------- the gateway's own login (oauth-* steps)
//
// A second gateway, "gatehouse-oauth", in front of the same Next.js apps and
// the same redis-server (TokenginX), as the OAuth 2.1 client of both apps:
// an `oauth:` block, `auth: oauth` routes with `on_unauthenticated: login`
// (their /_next/static stays public, as on the first gateway). The
// authorization server is oidc-provider (tests/oauth/provider.mjs) with
// OAUTH_ACCESS_TTL-second opaque access tokens and rotated refresh tokens
// (reuse of a rotated one revokes the grant). The first gateway and its steps
// are untouched; these steps use their own browser context (cookie jar).

const OAUTH_USER = 'olivia'; // typed into the provider's login form (sub = login)
const OAUTH_ACCESS_TTL = 5; // provider --access-ttl (seconds)
const OAUTH_REFRESH_BEFORE = 2; // oauth.refresh_before_seconds
const OAUTH_BROWSE_MS = 30000; // how long the browsing step browses
const OAUTH_CLIENT_SECRET = 'gatehouse-test-secret'; // provider.mjs's default
let GW2; // http://127.0.0.1:<listener of gatehouse-oauth>
let ADMIN2; // its admin service
let ISSUER; // http://127.0.0.1:<oidc-provider>
let ctxO; // the browser context of the oauth-* steps
const oauth = {
  session: null, // value of the gatehouse_session cookie after the login
  loggedInAt: 0, // when the browser landed back on the app
  requests: [], // every request of ctxO: { at, method, url, nav }
  firstRefreshToken: null,
};

function writeOauthGatewayConfig() {
  const conf = path.join(tmp, 'gateway-oauth');
  fs.mkdirSync(path.join(conf, 'routes'), { recursive: true });
  fs.writeFileSync(
    path.join(conf, 'conf.yaml'),
    `${confHead('tests/e2e/run.mjs (the oauth-* steps)', conf, ports.gwOauth, ports.gwOauthAdmin)}
tokenginx:
  url: redis://127.0.0.1:${ports.redis}
  timeout_ms: 250
  cache_ms: ${CACHE_MS}
  on_error: deny
oauth:
  issuer: ${ISSUER}
  client_id: gatehouse
  client_secret: ${OAUTH_CLIENT_SECRET}
  refresh_before_seconds: ${OAUTH_REFRESH_BEFORE}
  timeout_ms: 2000
access_log:
  format: json
  path: ${path.join(LOGS, 'gatehouse-oauth-access.log')}
forward_identity:
  sub: X-User-Id
  scope: X-User-Scopes
  roles: X-User-Roles
`,
  );
  const oauthRoutes = (name, prefix, upstream, port) => `upstreams:
  ${upstream}:
    backends: [127.0.0.1:${port}]
    health_check: { path: ${prefix}/api/health, interval_ms: 1000, timeout_ms: 1000 }
    connect_timeout_ms: 1000
    read_timeout_ms: 30000
routes:
  - name: ${name}
    prefix: ${prefix}
    upstream: ${upstream}
    strip_prefix: false
    auth: oauth
    on_unauthenticated: login
  - name: ${name}-static
    prefix: ${prefix}/_next/static
    upstream: ${upstream}
    auth: none
`;
  fs.writeFileSync(path.join(conf, 'routes/20-admin.yaml'), oauthRoutes('admin', '/admin', 'admin-portal', ports.admin));
  fs.writeFileSync(path.join(conf, 'routes/30-kline.yaml'), oauthRoutes('kline', '/kline', 'kline-service', ports.kline));
  fs.cpSync(conf, path.join(ARTIFACTS, 'gateway-oauth-config'), { recursive: true, filter: (src) => !/\.(pid|sock)$/.test(src) });
  return path.join(conf, 'conf.yaml');
}

const metricsOf = async (adminUrl) => {
  const r = await request(`${adminUrl}/metrics`, { timeoutMs: 5000 });
  check(r.status === 200, `GET ${adminUrl}/metrics: ${r.status}`);
  return r.body;
};
// One series of a Prometheus text exposition, e.g. name{result="ok"}; undefined when absent.
const metricValue = (text, series) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};
const oauthCounters = (text) => ({
  loginsOk: metricValue(text, 'gatehouse_oauth_logins_total{result="ok"}'),
  refreshOk: metricValue(text, 'gatehouse_oauth_refreshes_total{result="ok"}'),
  refreshJoined: metricValue(text, 'gatehouse_oauth_refreshes_total{result="joined"}'),
  refreshInvalidGrant: metricValue(text, 'gatehouse_oauth_refreshes_total{result="invalid_grant"}'),
  refreshError: metricValue(text, 'gatehouse_oauth_refreshes_total{result="error"}'),
  logouts: metricValue(text, 'gatehouse_oauth_logouts_total'),
});

// RFC 7662 introspection at the provider, as the gateway's client.
async function introspect(token, hint) {
  const body = new URLSearchParams({ token, ...(hint ? { token_type_hint: hint } : {}) }).toString();
  const r = await request(`${ISSUER}/token/introspection`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`gatehouse:${OAUTH_CLIENT_SECRET}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
      'content-length': Buffer.byteLength(body),
      accept: 'application/json',
    },
    body,
  });
  check(r.status === 200, `introspection at ${ISSUER}/token/introspection: ${r.status} ${r.body.slice(0, 200)}`);
  return jsonOf(r, 'introspection');
}

// The gateway keeps a session under a SHA-256 of its id, never the id (src/oauth/store.rs).
const oauthSessionKey = (id) => `gatehouse:oauth:session:${crypto.createHash('sha256').update(id).digest('hex')}`;
async function oauthSessionRecord(id) {
  const v = await redisCommand(ports.redis, ['GET', oauthSessionKey(id)]);
  return v === null ? null : JSON.parse(v);
}

// A same-origin fetch from the page (the browser's cookies, no navigation).
async function pageFetchJson(page, url) {
  const { status, text } = await page.evaluate(async (u) => {
    const r = await fetch(u, { cache: 'no-store', headers: { accept: 'application/json' } });
    return { status: r.status, text: await r.text() };
  }, url);
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: the caller reports the text
  }
  return { status, body, text };
}

const bearerOf = (authorization) => /^Bearer (\S+)$/.exec(authorization ?? '')?.[1];
const atProvider = (url) => url.startsWith(`${ISSUER}/`);
// "GET provider/interaction/…" for a request record (the provider's ids elided)
const hopName = (r) => `${r.method} ${atProvider(r.url) ? 'provider' : 'gateway'}${new URL(r.url).pathname.replace(/^\/(interaction|auth)\/[^/]+/, '/$1/…')}`;

async function startOauthStack() {
  await pickPorts(['gwOauth', 'gwOauthAdmin', 'provider']);
  GW2 = `http://127.0.0.1:${ports.gwOauth}`;
  ADMIN2 = `http://127.0.0.1:${ports.gwOauthAdmin}`;
  ISSUER = `http://127.0.0.1:${ports.provider}`;
  const conf = writeOauthGatewayConfig();
  const chk = spawnSync(BIN, ['check', '-c', conf], { encoding: 'utf8', timeout: 30000 });
  fs.writeFileSync(path.join(LOGS, 'gatehouse-oauth-check.log'), `${chk.stdout}${chk.stderr}`);
  check(chk.status === 0 && /^ok\b/m.test(chk.stdout), `gatehouse check -c ${conf} failed (${chk.error?.message || `exit ${chk.status}`}):\n${chk.stdout}${chk.stderr}`);

  // the authorization server first: the redirect URIs name the gateway's port, chosen above
  const providerT0 = Date.now();
  started.provider = spawnTracked(
    'oauth-provider',
    process.execPath,
    [
      path.join(OAUTH_DIR, 'provider.mjs'),
      '--port', String(ports.provider),
      '--redirect-uri', `${GW2}/_gatehouse/oauth/callback`,
      '--post-logout-redirect-uri', `${GW2}/`,
      '--access-ttl', String(OAUTH_ACCESS_TTL),
    ],
    { cwd: OAUTH_DIR, stdin: 'pipe' }, // it exits when its stdin closes: it dies with this runner
  );
  await waitFor(
    `oidc-provider prints "ready ${ISSUER}"`,
    async () => fs.readFileSync(started.provider.logFile, 'utf8').split('\n').includes(`ready ${ISSUER}`),
    { proc: started.provider, timeoutMs: 30000, intervalMs: 100 },
  );
  const providerMs = Date.now() - providerT0;
  const disc = jsonOf(await request(`${ISSUER}/.well-known/openid-configuration`), 'provider discovery');
  check(disc.issuer === ISSUER && disc.code_challenge_methods_supported?.includes('S256') && disc.end_session_endpoint && disc.revocation_endpoint, `provider metadata: ${JSON.stringify(disc).slice(0, 400)}`);

  const gwT0 = Date.now();
  started.gatewayOauth = spawnTracked('gatehouse-oauth', BIN, ['run', '-c', conf], { cwd: tmp });
  let lastOauth;
  const ready = await waitFor(
    'gatehouse-oauth /health/ready with components.oauth "ok", tokenginx ok and both upstreams healthy',
    async () => {
      const r = await request(`${ADMIN2}/health/ready`, { timeoutMs: 2000 });
      const b = JSON.parse(r.body);
      lastOauth = b.components?.oauth;
      const ups = Object.values(b.components?.upstreams ?? {});
      return r.status === 200 && lastOauth === 'ok' && b.components?.tokenginx === 'ok' && ups.length === 2 && ups.every((u) => u.healthy === u.total && u.total > 0) && b;
    },
    { proc: started.gatewayOauth, timeoutMs: 30000 },
  ).catch((e) => fail(`${e.message} (components.oauth last "${lastOauth}"); gateway log:\n${logTail(started.gatewayOauth)}`));
  const c = oauthCounters(await metricsOf(ADMIN2));
  check(c.loginsOk === 0 && c.refreshOk === 0 && c.refreshInvalidGrant === 0 && c.logouts === 0, `gatehouse-oauth metrics at start: ${JSON.stringify(c)}`);
  return `oidc-provider ${ISSUER} ready in ${providerMs} ms (access tokens ${OAUTH_ACCESS_TTL} s, refresh tokens rotated); gatehouse-oauth ${GW2} (admin ${ADMIN2}) check ok, components.oauth ok ${Date.now() - gwT0} ms after start, version ${ready.version}`;
}

async function stepOauthLogin() {
  ctxO = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const responses = []; // { method, url, status }
  ctxO.on('request', (r) => oauth.requests.push({ at: Date.now(), method: r.method(), url: r.url(), nav: r.isNavigationRequest() }));
  ctxO.on('response', (r) => responses.push({ method: r.request().method(), url: r.url(), status: r.status() }));
  const page = await ctxO.newPage();
  const target = `${GW2}/admin?from=oauth-e2e&n=1`;
  const began = Date.now();
  await page.goto(target, { timeout: 30000 });
  const navs = () => oauth.requests.filter((r) => r.nav).map((r) => `${r.method} ${r.url.split('?')[0]}`);
  const atLogin = new URL(page.url());
  check(atProvider(page.url()) && atLogin.pathname.startsWith('/interaction/'), `a navigation to ${target} without a session ended on ${page.url()}, expected the provider's login page ${ISSUER}/interaction/…; navigations: ${JSON.stringify(navs())}`);
  const first = responses.find((r) => r.url === target);
  check(first?.status === 302, `the gateway answered the first navigation with ${first?.status}, expected 302 to the authorization endpoint`);
  const authorize = oauth.requests.find((r) => r.nav && r.url.startsWith(`${ISSUER}/auth?`));
  check(authorize, `no navigation to ${ISSUER}/auth?…: ${JSON.stringify(navs())}`);
  const q = new URL(authorize.url).searchParams;
  check(
    q.get('response_type') === 'code' && q.get('client_id') === 'gatehouse' && q.get('code_challenge_method') === 'S256' && q.get('code_challenge') && q.get('state') && q.get('nonce') && q.get('redirect_uri') === `${GW2}/_gatehouse/oauth/callback`,
    `authorization request ${authorize.url}`,
  );
  // oidc-provider's dev interaction: a login form, then a consent form
  await page.locator('input[name="login"]').fill(OAUTH_USER, { timeout: 10000 });
  await page.locator('input[name="password"]').fill('any password', { timeout: 10000 });
  await shot(page, 'oauth-provider-login');
  await Promise.all([
    page.locator('input[name="prompt"][value="consent"]').waitFor({ state: 'attached', timeout: 30000 }),
    page.locator('button[type="submit"]').click({ timeout: 10000 }),
  ]);
  check(atProvider(page.url()), `after the login form the browser is at ${page.url()}, expected the provider's consent page`);
  await shot(page, 'oauth-provider-consent');
  await Promise.all([page.waitForURL((u) => u.href === target, { timeout: 30000, waitUntil: 'load' }), page.locator('button[type="submit"]').click({ timeout: 10000 })]).catch((e) =>
    fail(`after consent the browser did not land on ${target} (at ${page.url()}): ${e.message.split('\n')[0]}; navigations: ${JSON.stringify(navs())}`),
  );
  oauth.loggedInAt = Date.now();
  const loginMs = oauth.loggedInAt - began;
  const userId = await page.locator('#user-id').textContent({ timeout: 10000 });
  check(userId === OAUTH_USER, `after the login the admin page shows X-User-Id ${JSON.stringify(userId)}, expected ${JSON.stringify(OAUTH_USER)}`);
  // the callback: code + the state that was sent, answered 303 to the original URL
  const cb = oauth.requests.find((r) => r.url.startsWith(`${GW2}/_gatehouse/oauth/callback?`));
  check(cb, `no callback request: ${JSON.stringify(navs())}`);
  const cbq = new URL(cb.url).searchParams;
  check(cbq.get('code') && cbq.get('state') === q.get('state'), `callback ${cb.url.replace(/code=[^&]+/, 'code=…')} does not carry a code and the state sent`);
  const cbRes = responses.find((r) => r.url === cb.url);
  check(cbRes?.status === 303, `the callback was answered ${cbRes?.status}, expected 303`);
  // the browser holds an opaque session id, no token
  const cookies = await ctxO.cookies(GW2);
  const sess = cookies.find((c) => c.name === 'gatehouse_session');
  check(sess, `no gatehouse_session cookie; cookies: ${JSON.stringify(cookies.map((c) => c.name))}`);
  check(sess.httpOnly && sess.sameSite === 'Lax' && sess.path === '/' && /^[A-Za-z0-9_-]{43}$/.test(sess.value), `gatehouse_session cookie: ${JSON.stringify({ httpOnly: sess.httpOnly, sameSite: sess.sameSite, path: sess.path, length: sess.value.length })}`);
  oauth.session = sess.value;
  // the app got the access token as a bearer token: the provider says it is live and olivia's
  const b = await pageFetchJson(page, '/admin/api/bearer');
  check(b.status === 200 && b.body?.user_id === OAUTH_USER, `/admin/api/bearer after the login: ${b.status} ${b.text.slice(0, 300)}`);
  const token = bearerOf(b.body.authorization);
  check(token, `the app got Authorization ${JSON.stringify(b.body.authorization)}, expected "Bearer <access token>"`);
  const gwCookies = b.body.cookie_names.filter((n) => n.startsWith('gatehouse'));
  check(gwCookies.length === 0, `the gateway's cookies reached the app: ${JSON.stringify(b.body.cookie_names)}`);
  check(!cookies.some((c) => c.value.includes(token)), 'the access token is in a browser cookie');
  const intro = await introspect(token);
  check(intro.active === true && intro.sub === OAUTH_USER && intro.client_id === 'gatehouse' && intro.token_type === 'Bearer', `introspection of the token the app got: ${JSON.stringify(intro)}`);
  const record = await oauthSessionRecord(sess.value);
  check(record?.sub === OAUTH_USER && record.access_token === token && record.refresh_token, `TokenginX record ${oauthSessionKey(sess.value).slice(0, 40)}… for the session: ${JSON.stringify(record && { sub: record.sub, access_token_is_the_apps: record.access_token === token, refresh_token: !!record.refresh_token })}`);
  oauth.firstRefreshToken = record.refresh_token;
  const who = await pageFetchJson(page, '/admin/api/whoami');
  check(who.status === 200 && who.body?.user_id === OAUTH_USER && who.body.roles === 'user', `/admin/api/whoami (roles from the id_token): ${who.status} ${who.text.slice(0, 300)}`);
  // the gateway's record of the landing request; no code, state, session id or token in its logs
  const landing = await waitFor(
    'the access log line of the landing request',
    async () => accessLogLines('gatehouse-oauth-access.log').find((l) => l.path === '/admin?from=oauth-e2e&n=1' && l.status === 200),
    { timeoutMs: 5000 },
  );
  check(landing.route === 'admin' && landing.user === OAUTH_USER, `access log of the landing request: ${JSON.stringify(landing)}`);
  await sleep(300);
  const logs = fs.readFileSync(path.join(LOGS, 'gatehouse-oauth-access.log'), 'utf8') + fs.readFileSync(started.gatewayOauth.logFile, 'utf8');
  for (const [what, secret] of [['code', cbq.get('code')], ['state', cbq.get('state')], ['session id', sess.value], ['access token', token], ['refresh token', record.refresh_token]]) {
    check(!logs.includes(secret), `the ${what} is in the gateway's logs`);
  }
  const c = oauthCounters(await metricsOf(ADMIN2));
  check(c.loginsOk === 1, `gatehouse_oauth_logins_total{result="ok"} is ${c.loginsOk} after one login`);
  await shot(page, 'oauth-admin-after-login');
  const hops = oauth.requests.filter((r) => r.nav && r.at <= oauth.loggedInAt).map(hopName);
  return `logged in as ${OAUTH_USER} in ${loginMs} ms (${hops.length} hops: ${hops.join(' → ')}); landed on ${new URL(target).pathname}${new URL(target).search}; page shows X-User-Id ${userId}; app got Bearer ${token.slice(0, 6)}… (introspection: active, sub ${intro.sub}); roles "${who.body.roles}"; cookie gatehouse_session HttpOnly SameSite=Lax, no gateway cookie at the app; no code/state/session/token in the logs`;
}

async function stepOauthBrowsing() {
  const page = ctxO.pages()[0];
  const reqFrom = oauth.requests.length;
  const logFrom = accessLogLines('gatehouse-oauth-access.log').length;
  const before = oauthCounters(await metricsOf(ADMIN2));
  const mainFrameUrls = [];
  const onNav = (f) => {
    if (f === page.mainFrame()) mainFrameUrls.push(f.url());
  };
  page.on('framenavigated', onNav);
  const t0b = Date.now();
  const ms = () => Date.now() - t0b;
  const showsUser = async (what) => {
    check(new URL(page.url()).origin === GW2, `${what} at ${ms()} ms: the browser is at ${page.url()}, not on the gateway`);
    const shown = await page.locator('#user-id').textContent({ timeout: 10000 });
    check(shown === OAUTH_USER, `${what} at ${ms()} ms: the page shows X-User-Id ${JSON.stringify(shown)}, expected ${JSON.stringify(OAUTH_USER)}`);
  };
  const clickTo = (name, pathname) =>
    Promise.all([page.waitForURL((u) => u.origin === GW2 && u.pathname === pathname, { timeout: 15000 }), page.getByRole('link', { name, exact: true }).click({ timeout: 10000 })]);
  const okStatus = (r, what) => check(r?.status() === 200, `${what} at ${ms()} ms: status ${r?.status()}`);
  // one cycle: admin → (client-side <Link>) streaming page → back → (<a>) kline app → (<a>) admin → reload
  const actions = [
    ['goto /admin', async () => {
      okStatus(await page.goto(`${GW2}/admin`, { timeout: 15000 }), 'goto /admin');
      await showsUser('goto /admin');
    }],
    ['<Link> /admin/stream', async () => {
      await clickTo('streaming page', '/admin/stream');
      const slow = await page.locator('#slow').textContent({ timeout: 10000 });
      check(slow.includes(OAUTH_USER), `/admin/stream at ${ms()} ms: the streamed part says ${JSON.stringify(slow)}`);
    }],
    ['back', async () => {
      await page.goBack({ timeout: 15000 });
      await page.waitForURL((u) => u.pathname === '/admin', { timeout: 10000 });
      await showsUser('back to /admin');
    }],
    ['<a> /kline', async () => {
      await clickTo('kline-service', '/kline');
      await showsUser('kline app');
    }],
    ['<a> /admin', async () => {
      await clickTo('admin-portal', '/admin');
      await showsUser('admin from the kline link');
    }],
    ['reload /admin', async () => {
      okStatus(await page.reload({ timeout: 15000 }), 'reload /admin');
      await showsUser('reload /admin');
    }],
  ];
  const done = []; // [start ms, action, ms taken]
  const tokens = new Map(); // access token the app got -> first seen (ms)
  const refreshTokens = new Set([oauth.firstRefreshToken]);
  for (let i = 0; ms() < OAUTH_BROWSE_MS; i++) {
    const [name, act] = actions[i % actions.length];
    const startedAt = Date.now();
    await act().catch((e) => fail(`browsing action ${i} "${name}" at ${ms()} ms failed: ${e.message.split('\n')[0]} (browser at ${page.url()}); gateway log:\n${logTail(started.gatewayOauth, 10)}`));
    // what the app receives now, from the page the browser is on
    const b = await pageFetchJson(page, '/admin/api/bearer');
    check(b.status === 200 && b.body?.user_id === OAUTH_USER, `after "${name}" at ${ms()} ms /admin/api/bearer: ${b.status} ${b.text.slice(0, 300)}`);
    const token = bearerOf(b.body.authorization);
    check(token, `after "${name}" at ${ms()} ms the app got Authorization ${JSON.stringify(b.body.authorization)}`);
    if (!tokens.has(token)) {
      tokens.set(token, ms());
      const intro = await introspect(token);
      check(intro.active === true && intro.sub === OAUTH_USER, `new access token at ${ms()} ms is not live at the provider: ${JSON.stringify(intro)}`);
    }
    const record = await oauthSessionRecord(oauth.session);
    check(record, `the session's TokenginX record is gone at ${ms()} ms`);
    refreshTokens.add(record.refresh_token);
    done.push([Date.now() - startedAt, name]);
    await sleep(Math.max(0, startedAt + 1000 - Date.now())); // an action every ~1 s
  }
  const browsedMs = ms();
  page.off('framenavigated', onNav);
  await shot(page, 'oauth-after-30s-browsing');
  // never back at the authorization server after the first login
  const toProvider = oauth.requests.filter((r) => r.at > oauth.loggedInAt && atProvider(r.url));
  check(toProvider.length === 0, `after the login the browser went to the authorization server again: ${JSON.stringify(toProvider.slice(0, 5).map((r) => `${r.method} ${r.url.split('?')[0]}`))}`);
  const offGateway = mainFrameUrls.filter((u) => new URL(u).origin !== GW2);
  check(offGateway.length === 0, `the page navigated off the gateway: ${JSON.stringify(offGateway.slice(0, 5))}`);
  // the gateway answered every request of the browsing without an error
  await sleep(500);
  // (Chromium may ask for /favicon.ico: this gateway has no route for it, a 404 that is no refusal)
  const lines = accessLogLines('gatehouse-oauth-access.log')
    .slice(logFrom)
    .filter((l) => !(l.path === '/favicon.ico' && l.status === 404 && l.route === null));
  const refused = lines.filter((l) => l.status >= 400);
  check(refused.length === 0, `gatehouse-oauth refused or failed ${refused.length} of ${lines.length} requests during the browsing: ${JSON.stringify(refused.slice(0, 5).map((l) => ({ path: l.path, status: l.status, route: l.route, auth: l.auth, error: l.error })))}`);
  const appLines = lines.filter((l) => l.route === 'admin' || l.route === 'kline');
  const anonymous = appLines.filter((l) => l.auth !== 'ok' || l.user !== OAUTH_USER);
  check(anonymous.length === 0, `access log lines of the app routes not authenticated as ${OAUTH_USER}: ${JSON.stringify(anonymous.slice(0, 3))}`);
  const after = oauthCounters(await metricsOf(ADMIN2));
  const refreshed = { ok: after.refreshOk - before.refreshOk, joined: after.refreshJoined - before.refreshJoined, error: after.refreshError - before.refreshError };
  check(after.refreshOk >= 4, `gatehouse_oauth_refreshes_total{result="ok"} is ${after.refreshOk} after ${secs(browsedMs)} of browsing with ${OAUTH_ACCESS_TTL} s access tokens (expected >= 4); all: ${JSON.stringify(after)}`);
  check(after.refreshInvalidGrant === 0, `gatehouse_oauth_refreshes_total{result="invalid_grant"} is ${after.refreshInvalidGrant}: a refresh token was reused or refused (all: ${JSON.stringify(after)})`);
  check(after.loginsOk === 1, `gatehouse_oauth_logins_total{result="ok"} is ${after.loginsOk}: the browsing logged in again`);
  check(tokens.size >= 4, `the app saw only ${tokens.size} distinct access tokens in ${secs(browsedMs)}`);
  check(refreshTokens.size >= 4, `only ${refreshTokens.size} distinct refresh tokens in the session record: no rotation?`);
  // the rotated-away refresh token of the login is dead at the provider
  const firstRt = await introspect(oauth.firstRefreshToken, 'refresh_token');
  check(firstRt.active === false, `the login's refresh token, rotated since, is still active at the provider: ${JSON.stringify(firstRt)}`);
  const firstSeen = [...tokens.values()];
  const gaps = firstSeen.slice(1).map((t, i) => t - firstSeen[i]);
  const slowest = done.reduce((a, d) => (d[0] > a[0] ? d : a), [0, '']);
  return `${done.length} actions in ${secs(browsedMs)} (admin, client-side <Link>, back, kline, reload; slowest ${slowest[1]} ${slowest[0]} ms), ${lines.length} requests through the gateway (${appLines.length} to the apps, all as ${OAUTH_USER}), none refused, 0 to the provider; app saw ${tokens.size} access tokens (each live at the provider; first seen ${secs(Math.min(...gaps))}-${secs(Math.max(...gaps))} apart), ${refreshTokens.size} refresh tokens in the session record; metrics: refreshes ok=${after.refreshOk} (+${refreshed.ok} while browsing) joined=${after.refreshJoined} error=${after.refreshError} invalid_grant=${after.refreshInvalidGrant}, logins ok=${after.loginsOk}; the login's refresh token is inactive at the provider`;
}

async function stepOauthLogout() {
  const page = ctxO.pages()[0];
  const r0 = await page.goto(`${GW2}/admin`, { timeout: 15000 });
  check(r0?.status() === 200 && (await page.locator('#user-id').textContent({ timeout: 10000 })) === OAUTH_USER, `before the logout /admin: ${r0?.status()} at ${page.url()}`);
  const record = await oauthSessionRecord(oauth.session);
  check(record?.refresh_token, 'no session record before the logout');
  let logoutReq = null;
  const onReq = (r) => {
    if (r.url() === `${GW2}/_gatehouse/oauth/logout`) logoutReq = r;
  };
  page.on('request', onReq);
  const logoutAt = Date.now();
  // a real form post from the page, as an app's "Sign out" button would send it
  await Promise.all([
    page.waitForURL((u) => u.href === `${GW2}/`, { timeout: 20000 }),
    page
      .evaluate(() => {
        const f = document.createElement('form');
        f.method = 'POST';
        f.action = '/_gatehouse/oauth/logout';
        document.body.append(f);
        f.submit();
      })
      .catch((e) => {
        // the submission may replace the document before evaluate returns
        if (!/context was destroyed|navigat/i.test(e.message)) throw e;
      }),
  ]).catch((e) => fail(`the logout form post did not end on ${GW2}/ (browser at ${page.url()}): ${e.message.split('\n')[0]}`));
  const logoutMs = Date.now() - logoutAt;
  page.off('request', onReq);
  check(logoutReq?.method() === 'POST', `no POST ${GW2}/_gatehouse/oauth/logout seen`);
  const sent = await logoutReq.allHeaders();
  check(sent.origin === GW2, `the form post's Origin is ${JSON.stringify(sent.origin)}, expected ${GW2}`);
  const res = await logoutReq.response();
  check(res?.status() === 303, `POST /_gatehouse/oauth/logout answered ${res?.status()}, expected 303`);
  const loc = new URL(res.headers().location, GW2);
  check(
    `${loc.origin}${loc.pathname}` === new URL(jsonOf(await request(`${ISSUER}/.well-known/openid-configuration`), 'discovery').end_session_endpoint).href &&
      loc.searchParams.get('id_token_hint') &&
      loc.searchParams.get('post_logout_redirect_uri') === `${GW2}/`,
    `logout redirect ${loc.href.replace(/id_token_hint=[^&]+/, 'id_token_hint=…')} is not the provider's end_session_endpoint with id_token_hint and post_logout_redirect_uri ${GW2}/`,
  );
  const landed = oauth.requests.filter((r) => r.at >= logoutAt && r.nav).map(hopName);
  // the session is gone: cookie, record, the old id, the refresh token at the provider
  const cookies = await ctxO.cookies(GW2);
  check(!cookies.some((c) => c.name === 'gatehouse_session'), `gatehouse_session cookie still in the browser after the logout`);
  check((await redisCommand(ports.redis, ['EXISTS', oauthSessionKey(oauth.session)])) === 0, 'the session record is still in TokenginX after the logout');
  const old = await request(`${GW2}/admin/api/bearer`, { headers: { cookie: `gatehouse_session=${oauth.session}`, accept: 'application/json' } });
  check(old.status === 401, `the old session cookie after the logout: ${old.status} ${old.body.slice(0, 200)} (expected 401)`);
  const rt = await introspect(record.refresh_token, 'refresh_token');
  check(rt.active === false, `the session's refresh token is still active at the provider after the logout: ${JSON.stringify(rt)}`);
  const c = oauthCounters(await metricsOf(ADMIN2));
  check(c.logouts === 1, `gatehouse_oauth_logouts_total is ${c.logouts}`);
  // the next navigation to the app: the provider's login page again (its session ended too)
  await page.goto(`${GW2}/admin`, { timeout: 30000 });
  const u = new URL(page.url());
  check(atProvider(page.url()) && u.pathname.startsWith('/interaction/'), `after the logout a navigation to /admin ended on ${page.url()}, expected the provider's login page`);
  await page.locator('input[name="login"]').waitFor({ state: 'visible', timeout: 10000 });
  check((await page.locator('input[name="prompt"]').getAttribute('value')) === 'login', 'the provider page after the logout is not its login prompt');
  await shot(page, 'oauth-login-again-after-logout');
  await ctxO.close();
  ctxO = null;
  return `form POST (Origin ${sent.origin}) answered 303 to the provider's end_session (id_token_hint); hops ${landed.join(' → ')} in ${logoutMs} ms; cookie cleared, TokenginX record gone, old cookie 401, refresh token inactive at the provider, logouts_total ${c.logouts}; next /admin → provider ${u.pathname.replace(/[^/]+$/, '…')} login form`;
}

// ---------------------------------------------------------------- main

async function main() {
  for (const d of [SHOTS, LOGS, path.join(ARTIFACTS, 'gateway-config'), path.join(ARTIFACTS, 'gateway-oauth-config')]) fs.rmSync(d, { recursive: true, force: true });
  fs.mkdirSync(SHOTS, { recursive: true });
  fs.mkdirSync(LOGS, { recursive: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-e2e-'));
  log(`artifacts ${ARTIFACTS}, temp ${tmp}, deadline ${DEADLINE_S}s`);

  await step('preflight', preflight, { fatal: true, timeoutMs: 60000 });
  await step('npm-ci', npmCi, { fatal: true, timeoutMs: 320000 });
  await step('npm-ci-oauth', npmCiOauth, { timeoutMs: 320000 });
  await step('build-admin', () => buildApp('admin'), { fatal: true, timeoutMs: 250000 });
  await step('build-kline', () => buildApp('kline'), { fatal: true, timeoutMs: 250000 });
  await step('start-services', startServices, { fatal: true, timeoutMs: 120000 });
  await step('gateway-check-and-ready', startGateway, { fatal: true, timeoutMs: 60000 });

  await step(
    'launch-chromium',
    async () => {
      const { chromium } = await import('playwright-core');
      // playwright-core refuses --user-data-dir in launch(); it makes a fresh
      // temporary profile in os.tmpdir() itself: point that at our temp dir.
      const savedTmp = process.env.TMPDIR;
      process.env.TMPDIR = tmp;
      try {
        browser = await chromium.launch({
          executablePath: CHROMIUM,
          headless: true,
          args: CHROMIUM_ARGS,
          timeout: 60000,
          // our own handlers stop every process (Playwright's would exit at once)
          handleSIGINT: false,
          handleSIGTERM: false,
          handleSIGHUP: false,
        });
      } finally {
        if (savedTmp === undefined) delete process.env.TMPDIR;
        else process.env.TMPDIR = savedTmp;
      }
      if (cleaning) {
        await browser.close();
        fail('the run is being stopped');
      }
      ctxA = await browser.newContext({ viewport: { width: 1000, height: 700 } });
      return `Chromium ${browser.version()} (playwright-core, profile in ${tmp})`;
    },
    { fatal: true, timeoutMs: 70000 },
  );

  await step('redirect-to-login-without-cookie', stepRedirect);
  await step('login-shows-user-id', stepLogin, { needs: ['redirect-to-login-without-cookie'] });
  await step('forged-identity-headers-stripped', stepForgedIdentity, { needs: ['login-shows-user-id'] });
  await step('static-assets-public-admin', () => stepStaticAssets('admin'), { needs: ['login-shows-user-id'] });
  await step('second-app-kline-same-session', () => stepStaticAssets('kline'), { needs: ['login-shows-user-id'] });
  await step('streaming-first-chunk-before-slow-part', stepStreaming, { needs: ['login-shows-user-id'] });
  await step('revoked-session-redirects-to-login', stepRevocation, { needs: ['login-shows-user-id'] });
  await step('next-dev-hmr-websocket-through-gateway', stepHmr, { timeoutMs: 240000 });
  // the gateway's own login: a second gateway, oidc-provider, the same apps and TokenginX
  await step('oauth-provider-and-gateway-ready', startOauthStack, { needs: ['npm-ci-oauth'], timeoutMs: 75000 });
  await step('oauth-login-lands-on-original-url', stepOauthLogin, { needs: ['oauth-provider-and-gateway-ready'], timeoutMs: 90000 });
  await step('oauth-30s-browsing-refresh-under-rotation', stepOauthBrowsing, { needs: ['oauth-login-lands-on-original-url'], timeoutMs: OAUTH_BROWSE_MS + 60000 });
  await step('oauth-logout-ends-session', stepOauthLogout, { needs: ['oauth-login-lands-on-original-url'], timeoutMs: 60000 });

  const hold = Number(process.env.E2E_HOLD_SECONDS || 0);
  if (hold > 0 && GW) {
    log(`E2E_HOLD_SECONDS=${hold}: stack stays up: gateway ${GW}, admin ${ADMIN_API}, redis 127.0.0.1:${ports.redis}, oauth :${ports.oauth}, admin app :${ports.admin}, kline :${ports.kline}, kline-dev :${ports.klineDev}${GW2 ? `; oauth gateway ${GW2} (admin ${ADMIN2}), oidc-provider ${ISSUER}` : ''}`);
    await sleep(hold * 1000);
  }

  // lib/loopback-only.cjs kept the Next.js processes off the internet: say what it refused
  for (const f of fs.readdirSync(LOGS)) {
    const hits = fs.readFileSync(path.join(LOGS, f), 'utf8').split('\n').filter((l) => l.includes('[e2e loopback-only] refused'));
    for (const h of new Set(hits)) log(`${f}: ${h.trim()}`);
  }
}

let code = 1;
try {
  await main();
  code = 0;
} catch (e) {
  log(`unexpected error: ${e.stack || e}`);
  results.push({ name: 'runner', status: 'FAIL', ms: 0, detail: String(e.stack || e) });
} finally {
  if (!deadlineHit) {
    await cleanup();
    clearTimeout(deadline);
    const failed = printSummary();
    process.exit(code === 0 && failed === 0 ? 0 : 1);
  }
}
