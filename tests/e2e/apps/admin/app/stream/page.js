import StreamPage from '../../../shared/stream-page.js';

export const dynamic = 'force-dynamic';

export default function Page() {
  return <StreamPage title="Admin portal" />;
}
