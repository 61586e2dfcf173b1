import Link from 'next/link';
import { headers } from 'next/headers';

// Server-rendered on every request: shows the identity the gateway verified
// and forwarded (never a client-sent copy: the gateway strips those).
export const dynamic = 'force-dynamic';

export default async function Home() {
  const h = await headers();
  return (
    <section>
      <h1>Admin portal</h1>
      <p>
        X-User-Id: <strong id="user-id">{h.get('x-user-id') ?? '(none)'}</strong>
      </p>
      <p>
        X-User-Scopes: <strong id="user-scopes">{h.get('x-user-scopes') ?? '(none)'}</strong>
      </p>
      <p>
        X-Request-Id: <code id="request-id">{h.get('x-request-id') ?? '(none)'}</code>
      </p>
      <nav>
        <Link href="/stream">streaming page</Link> · <a href="/admin/api/whoami">whoami API</a> ·{' '}
        <a href="/kline">kline-service</a>
      </nav>
    </section>
  );
}
