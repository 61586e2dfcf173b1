// Next.js config of the e2e "kline" app (see apps/shared/next-config.mjs).
import { nextConfig } from '../shared/next-config.mjs';

export default nextConfig('/kline');
