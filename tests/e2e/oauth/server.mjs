// OAuth-service stand-in for the gatehouse e2e tests. Plain Node, no deps.
//
//   GET  /oauth/.well-known/jwks.json   the public half of an ES256 key made at start
//   GET  /oauth/login?next=/admin       an HTML login form
//   POST /oauth/login                   signs a JWT, writes the session record to
//                                       TokenginX (redis-server), sets the
//                                       access_token cookie, 303 to `next`
//   POST /oauth/logout                  deletes the session record, clears the cookie
//   GET  /oauth/echo-identity           names of x-user-* headers that arrived
//   GET  /oauth/health                  200
//
// Environment: PORT, ISSUER, AUDIENCE, SCOPE, TOKENGINX_PORT, SESSION_KEY
// (template with {jti}/{sub}), TOKEN_TTL_SECONDS.
import http from 'node:http';
import crypto from 'node:crypto';
import { redisCommand } from '../lib/resp.mjs';

const env = (name, dflt) => {
  const v = process.env[name] ?? dflt;
  if (v === undefined) {
    console.error(`oauth stand-in: environment variable ${name} is required`);
    process.exit(2);
  }
  return v;
};
const PORT = Number(env('PORT'));
const ISSUER = env('ISSUER');
const AUDIENCE = env('AUDIENCE', 'gatehouse');
const SCOPE = env('SCOPE', 'admin read');
const TOKENGINX_PORT = Number(env('TOKENGINX_PORT'));
const SESSION_KEY = env('SESSION_KEY', 'oauth:token:{jti}');
const TTL = Number(env('TOKEN_TTL_SECONDS', '900'));

const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const kid = `e2e-${crypto.randomBytes(6).toString('hex')}`;
const jwks = { keys: [{ ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' }] };

const b64url = (b) => Buffer.from(b).toString('base64url');
function signJwt(claims) {
  const input = `${b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid }))}.${b64url(JSON.stringify(claims))}`;
  // JOSE wants the raw r||s signature (64 bytes), not DER.
  const sig = crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64url(sig)}`;
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
// Only local absolute paths: "/x" yes; "//evil", "/\evil", "http://..." no.
const safeNext = (n) => (typeof n === 'string' && /^\/(?![/\\])/.test(n) && !/[\r\n]/.test(n) ? n : '/admin');
const sessionKey = (c) => SESSION_KEY.replaceAll('{jti}', c.jti).replaceAll('{sub}', c.sub);

function loginPage(next, error) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in (oauth stand-in)</title>
<style>body{font-family:system-ui,sans-serif;margin:40px}form{display:grid;gap:8px;max-width:320px}
.err{color:#b00}</style></head>
<body><h1 id="login-title">Sign in</h1>
<p>OAuth-service stand-in: you will return to <code id="login-next">${esc(next)}</code>.</p>
${error ? `<p class="err">${esc(error)}</p>` : ''}
<form method="post" action="/oauth/login">
<input type="hidden" name="next" value="${esc(next)}">
<label>User id <input id="user" name="user" value="alice" autocomplete="username"></label>
<button id="submit" type="submit">Sign in</button>
</form></body></html>`;
}

function readBody(req, limit = 8192) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, headers, body = '') {
  res.writeHead(status, { 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://stand-in');
  const started = Date.now();
  res.on('finish', () =>
    console.log(`${new Date().toISOString()} ${req.method} ${url.pathname} ${res.statusCode} ${Date.now() - started}ms`),
  );
  try {
    if (req.method === 'GET' && url.pathname === '/oauth/.well-known/jwks.json') {
      return send(res, 200, { 'Content-Type': 'application/json', 'Cache-Control': 'max-age=300' }, JSON.stringify(jwks));
    }
    if (req.method === 'GET' && url.pathname === '/oauth/echo-identity') {
      // Public route: shows which identity headers reached this upstream
      // (the gateway must strip client-sent copies on every route).
      const names = Object.keys(req.headers).filter((k) => /^x[-_]user[-_]/i.test(k));
      return send(res, 200, { 'Content-Type': 'application/json' }, JSON.stringify({ identity_header_names: names }));
    }
    if (req.method === 'GET' && url.pathname === '/oauth/health') {
      return send(res, 200, { 'Content-Type': 'application/json' }, '{"status":"ok"}');
    }
    if (req.method === 'GET' && url.pathname === '/oauth/login') {
      return send(res, 200, { 'Content-Type': 'text/html; charset=utf-8' }, loginPage(safeNext(url.searchParams.get('next'))));
    }
    if (req.method === 'POST' && url.pathname === '/oauth/login') {
      const form = new URLSearchParams(await readBody(req));
      const next = safeNext(form.get('next'));
      const user = form.get('user') ?? '';
      if (!/^[A-Za-z0-9._@-]{1,64}$/.test(user)) {
        return send(res, 400, { 'Content-Type': 'text/html; charset=utf-8' }, loginPage(next, 'invalid user id'));
      }
      const now = Math.floor(Date.now() / 1000);
      const claims = { iss: ISSUER, sub: user, aud: AUDIENCE, iat: now, exp: now + TTL, jti: crypto.randomUUID(), scope: SCOPE };
      const record = JSON.stringify({ user_id: user, scope: SCOPE, client_id: 'e2e', issued_at: now, expires_at: claims.exp });
      const ok = await redisCommand(TOKENGINX_PORT, ['SET', sessionKey(claims), record, 'EX', TTL]);
      if (ok !== 'OK') throw new Error(`TokenginX SET answered ${JSON.stringify(ok)}`);
      const cookie = `access_token=${signJwt(claims)}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${TTL}`;
      return send(res, 303, { Location: next, 'Set-Cookie': cookie });
    }
    if (req.method === 'POST' && url.pathname === '/oauth/logout') {
      const m = /(?:^|;\s*)access_token=([^;]+)/.exec(req.headers.cookie ?? '');
      if (m) {
        try {
          const claims = JSON.parse(Buffer.from(m[1].split('.')[1], 'base64url').toString('utf8'));
          await redisCommand(TOKENGINX_PORT, ['DEL', sessionKey(claims)]);
        } catch {
          // a malformed cookie has no session to delete
        }
      }
      return send(res, 303, { Location: '/oauth/login', 'Set-Cookie': 'access_token=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0' });
    }
    return send(res, 404, { 'Content-Type': 'application/json' }, '{"error":"not_found"}');
  } catch (e) {
    console.error(`oauth stand-in: ${req.method} ${url.pathname}: ${e.stack || e}`);
    return send(res, 500, { 'Content-Type': 'application/json' }, '{"error":"internal"}');
  }
});

server.listen(PORT, '127.0.0.1', () => console.log(`oauth stand-in on 127.0.0.1:${PORT}, issuer ${ISSUER}, kid ${kid}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)).closeAllConnections());
