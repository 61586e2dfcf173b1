import Link from 'next/link';
import { headers } from 'next/headers';
import HmrMarker from './hmr-marker';

// Server-rendered on every request: shows the identity the gateway verified
// and forwarded (never a client-sent copy: the gateway strips those).
export const dynamic = 'force-dynamic';

export default async function Home() {
  const h = await headers();
  return (
    <section>
      <h1>Kline service</h1>
      <p>
        X-User-Id: <strong id="user-id">{h.get('x-user-id') ?? '(none)'}</strong>
      </p>
      <p>
        X-User-Scopes: <strong id="user-scopes">{h.get('x-user-scopes') ?? '(none)'}</strong>
      </p>
      <HmrMarker />
      <nav>
        <Link href="/stream">streaming page</Link> · <a href="/admin">admin-portal</a>
      </nav>
    </section>
  );
}
