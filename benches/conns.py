#!/usr/bin/env python3
"""benches/conns.py: hold many idle HTTP/1.1 keep-alive connections open.

Usage: conns.py HOST PORT COUNT [PATH]

Opens COUNT connections to HOST:PORT, sends one `GET PATH HTTP/1.1` on each,
reads the response headers, and keeps every connection open. Prints
`ready <open> <failed>` on stdout once all are up, then waits. On SIGTERM (or
SIGINT) it prints `closing <still open> <closed by peer>` and closes them all.
Used by benches/run.sh (SCALE=1); standard library only.
"""

import asyncio
import resource
import signal
import sys

HOST, PORT, COUNT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
PATH = sys.argv[4] if len(sys.argv) > 4 else "/"
BATCH = 250


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        sys.exit(f"conns.py: open-file limit {soft} < {need}; raise `ulimit -n`")


async def one(conns, closed):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, PORT), 20)
        writer.write(f"GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        if not head.startswith(b"HTTP/1.1 200"):
            writer.close()
            return False
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return False
    conns.append(writer)

    async def watch():
        # Drains the body; returns when the peer closes the connection.
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        closed.append(1)

    asyncio.get_running_loop().create_task(watch())
    return True


async def main():
    raise_nofile(COUNT + 64)
    conns, closed = [], []
    failed = 0
    for start in range(0, COUNT, BATCH):
        results = await asyncio.gather(*(one(conns, closed) for _ in range(min(BATCH, COUNT - start))))
        failed += results.count(False)
    print(f"ready {len(conns) - len(closed)} {failed}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print(f"closing {len(conns) - len(closed)} {len(closed)}", flush=True)
    for w in conns:
        w.close()
    await asyncio.sleep(0.2)


asyncio.run(main())
