// Minimal HTTP/1.1 client on node:http for black-box tests.
//
// Not fetch: when a server answers 413 before it has read a large request body and then closes the
// connection, fetch reports only "other side closed". node:http hands us the response as soon as it
// arrives, and we ignore the write error (EPIPE/ECONNRESET) that follows. Every request uses a fresh
// connection (agent: false) so a killed server never leaves a stale keep-alive socket behind.
import http from 'node:http';
import zlib from 'node:zlib';

export function basic(key) {
  return 'Basic ' + Buffer.from(`${key}:`).toString('base64');
}

export function bearer(key) {
  return `Bearer ${key}`;
}

/**
 * @param {object} o
 * @param {string} o.url full URL
 * @param {string} [o.method]
 * @param {Record<string,string>} [o.headers]
 * @param {Buffer|string|undefined} [o.body]
 * @param {number} [o.timeoutMs]
 * @param {boolean} [o.chunked] send the body with Transfer-Encoding: chunked
 * @returns {Promise<{status:number, headers:Record<string,string|string[]>, text:string, json:any, ms:number}>}
 */
export function request({ url, method = 'GET', headers = {}, body, timeoutMs = 30000, chunked = false }) {
  const u = new URL(url);
  const buf = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body);
  const hdrs = { ...headers };
  if (buf !== undefined && !chunked && !Object.keys(hdrs).some((h) => h.toLowerCase() === 'content-length')) {
    hdrs['Content-Length'] = String(buf.length);
  }
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    let settled = false;
    let gotResponse = false;
    const done = (err, val) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(val);
    };
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method,
        headers: hdrs,
        agent: false,
      },
      (res) => {
        gotResponse = true;
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        let ended = false;
        res.on('error', (e) => done(e));
        res.on('close', () => {
          if (!ended) done(Object.assign(new Error(`connection closed mid-response: ${method} ${url}`), { code: 'ECONNRESET' }));
        });
        res.on('end', () => {
          ended = true;
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = text.length ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          done(null, { status: res.statusCode, headers: res.headers, text, json, ms: Date.now() - t0 });
        });
      },
    );
    const timer = setTimeout(() => {
      const e = Object.assign(new Error(`timeout after ${timeoutMs} ms: ${method} ${url}`), { code: 'ETIMEDOUT' });
      done(e); // settle even if the request was already destroyed (destroy() then emits nothing)
      req.destroy(e);
    }, timeoutMs);
    req.on('error', (e) => {
      // Once the response has started, its own end/close/error settles the promise: a write error
      // then is the server closing early (fine for 413s).
      if (gotResponse) return;
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') {
        const msg =
          `${e.message}: ${method} ${url}: connection reset before any response could be read ` +
          `(${buf ? buf.length : 0}-byte body; a server that answers before reading the whole body must ` +
          'close lingeringly, RFC 9112 §9.6)';
        done(Object.assign(new Error(msg, { cause: e }), { code: e.code }));
        return;
      }
      done(e);
    });
    if (buf !== undefined && chunked) {
      // No Content-Length: node sends Transfer-Encoding: chunked, 16 KB per chunk.
      for (let off = 0; off < buf.length; off += 16384) req.write(buf.subarray(off, off + 16384), () => {});
    } else if (buf !== undefined) {
      req.write(buf, () => {});
    }
    req.end();
  });
}

export function gzip(bufOrString) {
  return zlib.gzipSync(Buffer.isBuffer(bufOrString) ? bufOrString : Buffer.from(bufOrString));
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
