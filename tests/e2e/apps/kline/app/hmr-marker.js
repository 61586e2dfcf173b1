'use client';

import { useEffect, useState } from 'react';

// run.mjs edits the marker below in a temporary copy served by `next dev`:
// Fast Refresh (over the HMR WebSocket, through the gateway) must swap the
// text while the click count (React state) survives, i.e. no full reload.
// data-hydrated turns "true" once React has hydrated this component (effects
// run only after the hydration commit, when the click handler is live), so the
// test waits for that instead of guessing how long a cold `next dev` needs.
export default function HmrMarker() {
  const [clicks, setClicks] = useState(0);
  const [hydrated, setHydrated] = useState(false);
  useEffect(() => setHydrated(true), []);
  return (
    <p>
      HMR marker: <span id="hmr-marker">marker-v1</span>{' '}
      <button id="hmr-clicks" type="button" data-hydrated={hydrated ? 'true' : 'false'} onClick={() => setClicks((n) => n + 1)}>
        clicked {clicks}
      </button>
    </p>
  );
}
