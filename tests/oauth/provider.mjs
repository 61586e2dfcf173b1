// OAuth 2.1 / OpenID Connect authorization server for gatehouse's login tests:
// oidc-provider (see package.json), configured with a single confidential client.
//
//   node tests/oauth/provider.mjs --port P --redirect-uri URI [--redirect-uri URI2 ...]
//     [--post-logout-redirect-uri URI ...] [--access-ttl SECONDS (60)]
//     [--client-secret S ("gatehouse-test-secret")]
//     [--client-auth client_secret_basic|client_secret_post (basic)]
//
// Issuer is http://127.0.0.1:P (--port 0 picks a free port). Prints `ready <issuer>` on stdout
// once listening, nothing else there. Exits on SIGTERM/SIGINT and when a piped stdin closes.
// Client `gatehouse`: authorization code with mandatory PKCE S256, refresh tokens always issued
// and rotated (reuse of a rotated one revokes the whole grant), opaque access tokens.
// Logins are oidc-provider's dev interactions: any login/password; sub = login; the id_token
// carries sub, nonce, name (= login) and roles (["user"], plus "admin" for logins starting
// with "admin"). Revocation, introspection and RP-initiated logout are enabled; a logout with a
// valid id_token_hint is confirmed here, so it answers with a redirect, not a confirm form.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { fstatSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({
  options: {
    port: { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    'post-logout-redirect-uri': { type: 'string', multiple: true, default: [] },
    'access-ttl': { type: 'string', default: '60' },
    'client-secret': { type: 'string', default: 'gatehouse-test-secret' },
    'client-auth': { type: 'string', default: 'client_secret_basic' },
  },
});
const accessTtl = Number(opt['access-ttl']);
if (opt.port === undefined || !opt['redirect-uri'] || !(accessTtl > 0)
  || !['client_secret_basic', 'client_secret_post'].includes(opt['client-auth'])) {
  console.error('usage: provider.mjs --port P --redirect-uri URI [...] (see the header of this file)');
  process.exit(2);
}

// oidc-provider's development notices go to stdout (console.info) and its warnings to stderr;
// drop both so stdout holds only the ready line and stderr only errors.
console.info = () => {};
const warn = console.warn;
console.warn = (...a) => { if (!String(a[0]).startsWith('oidc-provider WARNING')) warn(...a); };
const { default: Provider } = await import('oidc-provider'); // after the above: it warns on load

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };

const configuration = {
  clients: [{
    client_id: 'gatehouse',
    client_secret: opt['client-secret'],
    redirect_uris: opt['redirect-uri'],
    post_logout_redirect_uris: opt['post-logout-redirect-uri'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: opt['client-auth'],
    id_token_signed_response_alg: 'RS256',
    application_type: 'web', // http redirect URIs are fine for web clients without implicit
  }],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  clientAuthMethods: [opt['client-auth']], // also what discovery advertises
  pkce: { required: () => true }, // only S256 exists in oidc-provider 9
  responseTypes: ['code'],
  scopes: ['openid', 'profile', 'offline_access'],
  claims: { openid: ['sub', 'roles'], profile: ['name'] },
  conformIdTokenClaims: false, // scope claims (roles, name) go into the id_token too
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  ttl: { // seconds; all set, so oidc-provider has no default to complain about
    AccessToken: accessTtl, AuthorizationCode: 60, IdToken: 3600, Interaction: 3600,
    Session: 86400, Grant: 86400, RefreshToken: 86400,
  },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, name: sub, roles: sub.startsWith('admin') ? ['user', 'admin'] : ['user'] };
      },
    };
  },
};

const server = createServer();
server.on('error', (err) => { console.error(`provider: ${err.message}`); process.exit(1); });
server.listen(Number(opt.port), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  provider.proxy = false;
  provider.on('server_error', (ctx, err) => console.error('server_error', ctx.method, ctx.path, err));

  // oidc-provider takes a secret by either method whatever the client registered (and reads
  // Basic even when only client_secret_post is enabled): insist on the registered one.
  const basicAuth = opt['client-auth'] === 'client_secret_basic';
  const authenticated = new Set(['/token', '/token/revocation', '/token/introspection']);
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && authenticated.has(ctx.path) && /^basic /i.test(ctx.get('authorization')) !== basicAuth) {
      ctx.status = 401;
      ctx.body = { error: 'invalid_client', error_description: `client authentication must use ${opt['client-auth']}` };
      return;
    }
    await next();
  });

  // RP-initiated logout: oidc-provider always answers GET /session/end with a form to POST to
  // /session/end/confirm (fields xsrf, logout). When the request carried a valid id_token_hint
  // (the provider has already checked it and the post_logout_redirect_uri), submit that form
  // here, with the browser's cookies, and hand its redirect and cookies back instead.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route !== 'end_session' || ctx.status !== 200 || !ctx.oidc.entities.IdTokenHint) return;
    const jar = new Map((ctx.get('cookie') || '').split(/;\s*/).filter(Boolean)
      .map((c) => [c.slice(0, c.indexOf('=')), c.slice(c.indexOf('=') + 1)]));
    for (const c of [].concat(ctx.response.get('set-cookie') || [])) {
      const pair = c.split(';')[0];
      jar.set(pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1));
    }
    const res = await fetch(ctx.oidc.urlFor('end_session_confirm'), {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') },
      body: new URLSearchParams({ xsrf: ctx.oidc.session.state.secret, logout: 'yes' }),
    });
    if (res.status !== 303) {
      console.error('logout confirmation failed', res.status, await res.text());
      return;
    }
    ctx.set('set-cookie', res.headers.getSetCookie());
    ctx.redirect(res.headers.get('location'));
    ctx.status = 303;
  });

  server.on('request', provider.callback());
  process.stdout.write(`ready ${issuer}\n`);
});

const stop = () => { server.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Die with the parent: tests hold our stdin as a pipe, which closes when they exit. A stdin
// that is not a pipe (a terminal, /dev/null) is left alone.
const stdin = fstatSync(0);
if (stdin.isFIFO() || stdin.isSocket()) {
  process.stdin.on('end', stop).on('close', stop).resume();
}
