// Minimal RESP2 client (the protocol TokenginX and Redis speak): one
// connection per command, bounded by a timeout. Enough for SET/DEL/EXISTS/PING.
import net from 'node:net';

function encode(args) {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const b = Buffer.from(String(a));
    parts.push(`$${b.length}\r\n`, b, '\r\n');
  }
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
}

// Returns {value, end} or null when `buf` does not yet hold a whole reply.
function parse(buf, pos) {
  const nl = buf.indexOf('\r\n', pos);
  if (nl === -1) return null;
  const type = String.fromCharCode(buf[pos]);
  const line = buf.toString('utf8', pos + 1, nl);
  const after = nl + 2;
  switch (type) {
    case '+':
      return { value: line, end: after };
    case '-':
      return { value: new Error(`redis: ${line}`), end: after };
    case ':':
      return { value: Number(line), end: after };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: after };
      if (buf.length < after + len + 2) return null;
      return { value: buf.toString('utf8', after, after + len), end: after + len + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: after };
      const out = [];
      let p = after;
      for (let i = 0; i < n; i++) {
        const r = parse(buf, p);
        if (!r) return null;
        out.push(r.value);
        p = r.end;
      }
      return { value: out, end: p };
    }
    default:
      return { value: new Error(`redis: unexpected reply type ${JSON.stringify(type)}`), end: buf.length };
  }
}

export function redisCommand(port, args, { host = '127.0.0.1', timeoutMs = 2000 } = {}) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let done = false;
    const sock = net.connect({ host, port });
    const finish = (err, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(
      () => finish(new Error(`redis ${args[0]} on ${host}:${port} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    sock.on('connect', () => sock.write(encode(args)));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const r = parse(buf, 0);
      if (r) r.value instanceof Error ? finish(r.value) : finish(null, r.value);
    });
    sock.on('error', (e) => finish(new Error(`redis ${args[0]} on ${host}:${port}: ${e.message}`)));
    sock.on('close', () => finish(new Error(`redis ${args[0]} on ${host}:${port}: connection closed`)));
  });
}
