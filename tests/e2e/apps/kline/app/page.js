import IdentityPage from '../../shared/identity-page.js';
import HmrMarker from './hmr-marker';

// Server-rendered on every request (see apps/shared/identity-page.js).
export const dynamic = 'force-dynamic';

export default function Home() {
  return (
    <IdentityPage title="Kline service" links={<a href="/admin">admin-portal</a>}>
      <HmrMarker />
    </IdentityPage>
  );
}
