// The browser's side of CORS, in headless Chromium: pages on one origin
// call API routes of the gateway on another, with fetch(). The Rust test
// (tests/integration/browser.rs) starts the gateway and the page servers,
// passes their URLs in CORS_URLS (JSON), and reads this script's single
// line of JSON output: what each fetch got, as a script on that page sees it.
//
//   CORS_URLS='{"allowedPage": "...", "refusedPage": "...", "api": "..."}' node cors.mjs
//
// Chromium is /usr/bin/chromium, or $CHROMIUM. Everything stays on 127.0.0.1
// or localhost; the script ends by itself (a 60 s watchdog).

import { chromium } from 'playwright-core';

const urls = JSON.parse(process.env.CORS_URLS);
const watchdog = setTimeout(() => {
  console.error('cors.mjs: still running after 60 s');
  process.exit(2);
}, 60000);

/** What a script on `page` gets from fetch(url, init): status and body, or "blocked". */
async function call(page, url, init) {
  return page.evaluate(async ([u, i]) => {
    try {
      const r = await fetch(u, i);
      return { status: r.status, body: await r.text(), exposed: r.headers.get('x-request-id') };
    } catch (e) {
      return { blocked: String(e) };
    }
  }, [url, init]);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  timeout: 30000,
});
const out = {};
try {
  const context = await browser.newContext();
  const allowed = await context.newPage();
  await allowed.goto(urls.allowedPage);
  const refused = await context.newPage();
  await refused.goto(urls.refusedPage);
  const api = urls.api;
  // A simple GET, and one with credentials, from the allowed origin.
  out.simple = await call(allowed, `${api}/api/data`, {});
  out.credentialed = await call(allowed, `${api}/api/data`, { credentials: 'include' });
  // A non-safelisted header needs a preflight; the second call within
  // max_age_seconds reuses the browser's cached answer.
  out.preflighted = await call(allowed, `${api}/api/data`, { method: 'PUT', headers: { 'x-trace': '1' } });
  out.preflightedAgain = await call(allowed, `${api}/api/data`, { method: 'PUT', headers: { 'x-trace': '2' } });
  // The same calls from an origin the route does not list.
  out.refusedSimple = await call(refused, `${api}/api/data`, {});
  out.refusedPreflighted = await call(refused, `${api}/api/data`, { method: 'PUT', headers: { 'x-trace': '1' } });
  // A wildcard route: fine without credentials, refused by the browser with them.
  out.wildcard = await call(refused, `${api}/open/data`, {});
  out.wildcardCredentialed = await call(refused, `${api}/open/data`, { credentials: 'include' });
} finally {
  await browser.close();
  clearTimeout(watchdog);
}
console.log(JSON.stringify(out));
