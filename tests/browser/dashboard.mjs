// The admin service's live dashboard in headless Chromium. The Rust test
// (tests/integration/dashboard.rs) starts a gateway with the dashboard on,
// puts wrk on its `web` route, and passes the admin URL and a directory for
// screenshots in DASHBOARD (JSON). This script prints one line of JSON:
//
//   updated       the page replaced its numbers by itself (the script's poll)
//   underLoadRps  the `web` route's 1-minute requests/s as the page showed it
//   noScript      with JavaScript off: the tables are there, and the refresh
//   consoleErrors anything the page logged as an error (a CSP refusal, too)
//
// and saves dashboard.png, dashboard-under-load.png and dashboard-no-js.png.
//
//   DASHBOARD='{"admin": "http://127.0.0.1:…", "artifacts": "/tmp/…"}' node dashboard.mjs
//
// Chromium is /usr/bin/chromium, or $CHROMIUM. Everything stays on 127.0.0.1;
// the script ends by itself (a 60 s watchdog).

import { chromium } from 'playwright-core';
import path from 'node:path';

const { admin, artifacts } = JSON.parse(process.env.DASHBOARD);
const watchdog = setTimeout(() => {
  console.error('dashboard.mjs: still running after 60 s');
  process.exit(2);
}, 60000);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` every 250 ms for up to `ms`; its first truthy answer, or null. */
async function within(ms, probe) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const got = await probe();
    if (got) return got;
    await sleep(250);
  }
  return null;
}

/** The `web` route's 1-minute requests/s as the page's traffic table shows it. */
async function webRps(page) {
  return page.evaluate(() => {
    for (const row of document.querySelectorAll('#live-routes tr')) {
      const cells = row.querySelectorAll('td');
      if (cells.length > 1 && cells[0].textContent === 'web') return parseFloat(cells[1].textContent);
    }
    return null;
  });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  timeout: 30000,
});
const out = { consoleErrors: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.on('console', (m) => m.type() === 'error' && out.consoleErrors.push(`${m.text()} (${m.location().url})`));
  page.on('pageerror', (e) => out.consoleErrors.push(String(e)));
  await page.goto(`${admin}/`);
  const generated = () => page.locator('#dashboard').getAttribute('data-generated');
  const first = await generated();
  await page.screenshot({ path: path.join(artifacts, 'dashboard.png'), fullPage: true });
  out.updated = (await within(6000, async () => (await generated()) !== first)) !== null;

  // wrk runs for 12 s from before this script started: the 1-minute
  // rate climbs with every update the page takes in.
  out.underLoadRps = await within(9000, async () => {
    const rps = await webRps(page);
    return rps > 10 ? rps : null;
  });
  await page.screenshot({ path: path.join(artifacts, 'dashboard-under-load.png'), fullPage: true });

  const plain = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1400, height: 900 } });
  const still = await plain.newPage();
  await still.goto(`${admin}/`);
  const tables = await Promise.all(
    ['#live-routes', '#live-backends', '#refusals', '#routes'].map((t) => still.locator(t).count()),
  );
  out.noScript = {
    tables: tables.every((n) => n === 1),
    refresh: await still.locator('meta[http-equiv="refresh"]').getAttribute('content'),
  };
  await still.screenshot({ path: path.join(artifacts, 'dashboard-no-js.png'), fullPage: true });
} finally {
  await browser.close();
  clearTimeout(watchdog);
}
console.log(JSON.stringify(out));
