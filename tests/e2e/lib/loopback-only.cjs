// Preloaded (NODE_OPTIONS=--require) into every Next.js process run.mjs
// starts, so the test's traffic stays on 127.0.0.1: `next dev` otherwise
// asks registry.npmjs.org whether Next.js is outdated. Refused requests are
// logged to the process's log and fail like an offline network would.
'use strict';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const original = globalThis.fetch;
if (typeof original === 'function') {
  globalThis.fetch = function loopbackOnlyFetch(input, init) {
    let host = '';
    try {
      const url = new URL(typeof input === 'string' || input instanceof URL ? String(input) : input.url);
      host = url.hostname;
    } catch {
      // relative or odd input: let the original fetch decide
      return original.call(this, input, init);
    }
    if (!LOOPBACK.has(host)) {
      const target = typeof input === 'string' || input instanceof URL ? String(input) : input.url;
      console.error(`[e2e loopback-only] refused fetch to ${target}`);
      return Promise.reject(new TypeError(`fetch failed: e2e run allows only loopback traffic (${host})`));
    }
    return original.call(this, input, init);
  };
}
