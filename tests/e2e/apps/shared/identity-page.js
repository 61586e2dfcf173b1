import Link from 'next/link';
import HeaderValue from './header-value.js';

// Home page of an app: shows the identity the gateway verified and forwarded
// (never a client-sent copy: the gateway strips those). `children` go after
// the identity lines, `links` after the link to the streaming page.
export default function IdentityPage({ title, children, links }) {
  return (
    <section>
      <h1>{title}</h1>
      <p>
        X-User-Id: <HeaderValue name="x-user-id" id="user-id" />
      </p>
      <p>
        X-User-Scopes: <HeaderValue name="x-user-scopes" id="user-scopes" />
      </p>
      {children}
      <nav>
        <Link href="/stream">streaming page</Link> · {links}
      </nav>
    </section>
  );
}
