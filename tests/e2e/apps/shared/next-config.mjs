// Next.js config shared by the e2e apps (apps/admin, apps/kline). The gateway
// keeps the prefix (strip_prefix: false), so each app lives under its basePath.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** @returns {import('next').NextConfig} */
export function nextConfig(basePath) {
  // Root holding the shared node_modules (tests/e2e) and this folder; E2E_ROOT
  // overrides it for the temporary copy (kline-dev + shared) that run.mjs
  // serves with `next dev`.
  const root = process.env.E2E_ROOT || path.resolve(here, '../..');
  return {
    basePath: process.env.E2E_BASE_PATH || basePath,
    reactStrictMode: true,
    // The dev server is reached through the gateway at http://127.0.0.1:<port>.
    allowedDevOrigins: ['127.0.0.1'],
    // Compile the JSX of apps/shared (outside the app dir) with webpack too
    // (`next dev --webpack`); Turbopack builds anything under turbopack.root.
    experimental: { externalDir: true },
    outputFileTracingRoot: root,
    turbopack: { root },
  };
}
