import IdentityPage from '../../shared/identity-page.js';
import HeaderValue from '../../shared/header-value.js';

// Server-rendered on every request (see apps/shared/identity-page.js).
export const dynamic = 'force-dynamic';

export default function Home() {
  const links = (
    <>
      <a href="/admin/api/whoami">whoami API</a> · <a href="/kline">kline-service</a>
    </>
  );
  return (
    <IdentityPage title="Admin portal" links={links}>
      <p>
        X-Request-Id: <HeaderValue name="x-request-id" id="request-id" as="code" />
      </p>
    </IdentityPage>
  );
}
