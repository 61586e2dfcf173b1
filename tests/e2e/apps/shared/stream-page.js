import { Suspense } from 'react';
import { headers } from 'next/headers';

// React streaming SSR: the shell and the fallback are flushed at once, the
// slow part arrives SLOW_MS later in the same response (run.mjs: SLOW_MS).
const SLOW_MS = 2000;

async function Slow() {
  const h = await headers();
  await new Promise((resolve) => setTimeout(resolve, SLOW_MS));
  return (
    <p id="slow">
      slow part done for <strong>{h.get('x-user-id') ?? '(none)'}</strong> after {SLOW_MS} ms
    </p>
  );
}

export default function StreamPage({ title }) {
  return (
    <section>
      <h1>{title}: streaming</h1>
      <p id="shell">shell rendered at {new Date().toISOString()}</p>
      <Suspense fallback={<p id="fallback">loading the slow part…</p>}>
        <Slow />
      </Suspense>
    </section>
  );
}
