import { whoami } from '../../../../shared/whoami.js';

export const dynamic = 'force-dynamic';
export const GET = whoami('kline');
