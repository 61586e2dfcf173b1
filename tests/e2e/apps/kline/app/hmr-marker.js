'use client';

import { useState } from 'react';

// run.mjs edits the marker below in a temporary copy served by `next dev`:
// Fast Refresh (over the HMR WebSocket, through the gateway) must swap the
// text while the click count (React state) survives, i.e. no full reload.
export default function HmrMarker() {
  const [clicks, setClicks] = useState(0);
  return (
    <p>
      HMR marker: <span id="hmr-marker">marker-v1</span>{' '}
      <button id="hmr-clicks" type="button" onClick={() => setClicks((n) => n + 1)}>
        clicked {clicks}
      </button>
    </p>
  );
}
