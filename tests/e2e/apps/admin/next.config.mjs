// Next.js config of the e2e "admin" app. The gateway keeps the prefix
// (strip_prefix: false), so the app lives under its basePath.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// Root holding the shared node_modules (tests/e2e); E2E_ROOT overrides it for
// the temporary copy that run.mjs serves with `next dev`.
const root = process.env.E2E_ROOT || path.resolve(here, '../..');

/** @type {import('next').NextConfig} */
export default {
  basePath: process.env.E2E_BASE_PATH || '/admin',
  reactStrictMode: true,
  // The dev server is reached through the gateway at http://127.0.0.1:<port>.
  allowedDevOrigins: ['127.0.0.1'],
  outputFileTracingRoot: root,
  turbopack: { root },
};
