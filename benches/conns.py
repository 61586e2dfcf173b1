#!/usr/bin/env python3
"""benches/conns.py: hold many idle HTTP/1.1 keep-alive connections open.

Usage: conns.py HOST PORT COUNT [PATH] [--tls]

Opens COUNT connections to HOST:PORT (with --tls: TLS, ALPN http/1.1, the
certificate not verified: the bench's is self-signed), sends one
`GET PATH HTTP/1.1` on each, reads the response headers, and keeps every
connection open. Prints
`ready <open> <failed>` on stdout once all are up, then waits. On SIGTERM (or
SIGINT) it prints `closing <still open> <closed by peer>` and closes them all.
Used by benches/bench.py (--idle-conns); standard library only.
"""

import asyncio
import resource
import signal
import ssl
import sys

TLS = "--tls" in sys.argv[1:]
ARGS = [a for a in sys.argv[1:] if a != "--tls"]
HOST, PORT, COUNT = ARGS[0], int(ARGS[1]), int(ARGS[2])
PATH = ARGS[3] if len(ARGS) > 3 else "/"
BATCH = 250


def client_tls():
    """TLS client context for --tls: HTTP/1.1 by ALPN, no certificate verification."""
    if not TLS:
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


TLS_CONTEXT = client_tls()


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
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            HOST, PORT, ssl=TLS_CONTEXT, server_hostname="localhost" if TLS else None), 20)
        writer.write(f"GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        if not head.startswith(b"HTTP/1.1 200"):
            writer.close()
            return False
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
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
