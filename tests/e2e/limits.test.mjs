// Rate limiting (429 + Retry-After, per key, real SDK backing off), `engaged import` (JSONL, CSV) and
// `engaged keys create`.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { Analytics as SegmentAnalytics } from '@segment/analytics-node';
import { basic, bearer, request, sleep } from './lib/http.mjs';
import { logOnFail, runCli, Server, startServer, tmpDataDir } from './lib/server.mjs';

test('rate limit: 429 rate_limited with Retry-After, nothing stored for it, OK again after waiting, per key', async (t) => {
  const srv = new Server({ tag: 'rate', rateLimit: 5 });
  await logOnFail(() => srv, async () => {
    await srv.start();
    let ok = 0;
    let limited = null;
    // Bursts of 20 concurrent single events (at most 3 bursts): at 5 events/s some must be refused.
    for (let burst = 0; burst < 3 && !limited; burst++) {
      const rs = await Promise.all(
        Array.from({ length: 20 }, (_, i) => srv.post('/v1/track', { userId: 'rl-u', event: 'Burst', messageId: `rl-${burst}-${i}` })),
      );
      for (const r of rs) {
        if (r.status === 200) ok++;
        else if (r.status === 429) limited ??= { r };
        else assert.fail(`unexpected ${r.status} ${r.text}`);
      }
    }
    assert.ok(limited, `no 429 in 3 bursts of 20 concurrent events at 5 events/s (${ok} accepted)`);
    const { r } = limited;
    assert.ok(ok >= 1, 'the first events of a burst are accepted');
    assert.equal(r.json?.error?.code, 'rate_limited', r.text);
    assert.ok(typeof r.json.error.message === 'string' && r.json.error.message, 'message');
    const ra = r.headers['retry-after'];
    assert.match(String(ra), /^\d+$/, `Retry-After is whole seconds: ${ra}`);
    assert.ok(Number(ra) <= 60, `Retry-After ${ra} is sane for 5 events/s`);
    t.diagnostic(`${ok} accepted before the first 429; Retry-After: ${ra}`);

    // Another key has its own budget: the admin key may send while the write key is limited.
    const other = await srv.post('/v1/track', { userId: 'rl-u', event: 'Other key', messageId: 'rl-admin' }, { auth: 'admin-basic' });
    assert.equal(other.status, 200, `admin key limited by the write key's budget: ${other.text}`);

    // Limited requests stored nothing.
    const stored = await srv.allEvents({ user_id: 'rl-u' });
    assert.equal(stored.length, ok + 1, `stored ${stored.length}, expected ${ok} accepted + 1 admin`);

    // A limited batch stores nothing either (the write key is still over budget right now).
    const b = await srv.post('/v1/batch', { batch: Array.from({ length: 3 }, (_, j) => ({ type: 'track', userId: 'rl-b', event: 'B', messageId: `rl-b-${j}` })) });
    if (b.status === 429) {
      assert.equal((await srv.allEvents({ user_id: 'rl-b' })).length, 0, 'a 429 batch stored nothing');
    }

    await sleep(Math.min(Math.max(Number(ra), 1), 5) * 1000 + 250);
    const again = await srv.post('/v1/track', { userId: 'rl-u', event: 'After wait', messageId: 'rl-after' });
    assert.equal(again.status, 200, `after waiting Retry-After (${ra} s): ${again.status} ${again.text}`);
    await srv.close();
  })(t);
});

test('rate limit: @segment/analytics-node backs off on 429 and delivers everything exactly once', async (t) => {
  const srv = new Server({ tag: 'rate-sdk', rateLimit: 10 });
  await logOnFail(() => srv, async () => {
    await srv.start();
    const statuses = [];
    const errors = [];
    const analytics = new SegmentAnalytics({ writeKey: srv.writeKey, host: srv.url, path: '/v1/batch', flushAt: 5, flushInterval: 100, maxRetries: 10 });
    analytics.on('http_response', (r) => statuses.push(r.status));
    const n = 40;
    for (let i = 0; i < n; i++) {
      analytics.track({ userId: 'rl-sdk', event: 'Throttled', messageId: `rl-sdk-${i}`, properties: { i } }, (err) => {
        if (err) errors.push(String(err.reason?.message ?? err));
      });
    }
    await analytics.closeAndFlush({ timeout: 45000 });
    assert.deepEqual(errors, []);
    const stored = await srv.allEvents({ user_id: 'rl-sdk' });
    assert.equal(stored.length, n);
    assert.equal(new Set(stored.map((e) => e.messageId)).size, n);
    t.diagnostic(`responses: ${statuses.filter((s) => s === 429).length} × 429, ${statuses.filter((s) => s === 200).length} × 200`);
    assert.ok(statuses.includes(429), 'the SDK was rate limited at least once');
    await srv.close();
  })(t);
});

test('engaged import JSONL: bad lines rejected (exit 1, summary on stderr), good lines stored', async (t) => {
  const dir = tmpDataDir('import');
  let srv;
  await logOnFail(() => srv, async () => {
    const file = path.join(dir, 'events.jsonl');
    const good = [
      { type: 'identify', userId: 'imp-u1', messageId: 'imp-1', traits: { email: 'a@example.com' }, timestamp: '2024-05-01T10:00:00Z' },
      { type: 'track', userId: 'imp-u1', messageId: 'imp-2', event: 'Order Completed', properties: { order_id: 'o1', revenue: '25.5', products: [{ product_id: 'p', price: '3.25', quantity: 2 }] }, timestamp: '2024-05-01T10:01:00Z' },
      { type: 'page', anonymousId: 'imp-a1', messageId: 'imp-3', name: 'Home', timestamp: '2024-05-01T10:02:00Z' },
      { type: 'track', userId: 'imp-u2', messageId: 'imp-4', event: 'Signed Up', timestamp: '2024-05-01T10:03:00Z' },
    ];
    const lines = [
      JSON.stringify(good[0]),
      JSON.stringify(good[1]),
      '{"type":"track","userId":"imp-bad", "event":', // line 3: invalid JSON
      JSON.stringify(good[2]),
      JSON.stringify({ type: 'track', event: 'No Ids', messageId: 'imp-bad-2' }), // line 5: missing ids
      JSON.stringify(good[3]),
    ];
    fs.writeFileSync(file, lines.join('\n') + '\n');
    const data = path.join(dir, 'data');
    const r = runCli(['import', file, '--data', data]);
    t.diagnostic(`import stderr: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    assert.equal(r.code, 1, `exit code 1 when some lines were rejected; stderr: ${r.stderr}`);
    assert.ok(r.stderr.trim().length > 0, 'a summary on stderr');
    assert.match(r.stderr, /\b4\b/, `summary mentions the 4 accepted lines: ${r.stderr}`);
    assert.match(r.stderr, /\b2\b/, `summary mentions the 2 rejected lines: ${r.stderr}`);

    srv = await startServer({ dataDir: data, tag: 'import' });
    const events = await srv.allEvents();
    assert.deepEqual(events.map((e) => e.messageId), ['imp-1', 'imp-2', 'imp-3', 'imp-4'], 'good lines stored in file order');
    assert.deepEqual(events[0].traits, { email: 'a@example.com' });
    assert.equal(events[0].timestamp, '2024-05-01T10:00:00.000Z');
    assert.equal(events[1].kind, 'order_completed');
    assert.equal(events[1].properties.revenue, 25.5);
    assert.equal(events[1].properties.products[0].price, 3.25);
    assert.equal(events[2].anonymousId, 'imp-a1');
    assert.equal(events[2].name, 'Home');
    // The event log has one writer: beside the running server, import refuses and stores nothing.
    const busy = runCli(['import', file, '--data', data]);
    assert.equal(busy.code, 2, `import beside a running server exits 2; stderr: ${busy.stderr}`);
    assert.match(busy.stderr, /in use by another process/);
    assert.equal((await srv.allEvents()).length, 4, 'nothing stored by the refused import');
    // Keys are SQLite's, not the log's: the keys command works beside the server, which takes the
    // new key within its refresh interval (250 ms).
    const made = runCli(['keys', 'create', '--scope', 'write', '--data', data]);
    assert.equal(made.code, 0, `keys create beside a running server; stderr: ${made.stderr}`);
    const auth = 'Basic ' + Buffer.from(`${made.stdout.trim()}:`).toString('base64');
    let status = 0;
    for (let i = 0; i < 40 && status !== 200; i++) {
      if (i) await new Promise((r) => setTimeout(r, 50));
      const res = await srv.post('/v1/track', { type: 'track', event: 'New Key', userId: 'u-key', messageId: `imp-key-${i}` }, { auth });
      status = res.status;
    }
    assert.equal(status, 200, 'the running server accepts the key made beside it');
    await srv.stop();

    // An all-good file exits 0; importing the same ids again stores nothing new.
    const file2 = path.join(dir, 'good.jsonl');
    fs.writeFileSync(file2, good.map((e) => JSON.stringify({ ...e, messageId: `${e.messageId}-b` })).join('\n') + '\n');
    const r2 = runCli(['import', file2, '--data', data]);
    assert.equal(r2.code, 0, `all lines accepted → exit 0; stderr: ${r2.stderr}`);
    runCli(['import', file2, '--data', data]);
    await srv.start();
    const after = await srv.allEvents();
    assert.equal(after.length, 9, `re-import deduplicated by messageId (and the New Key event): ${after.map((e) => e.messageId).join(',')}`);
    await srv.close();
  })(t);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('engaged import CSV with a header: bad rows rejected (exit 1), good rows stored', async (t) => {
  const dir = tmpDataDir('csv');
  let srv;
  await logOnFail(() => srv, async () => {
    const file = path.join(dir, 'events.csv');
    fs.writeFileSync(
      file,
      [
        'type,messageId,userId,anonymousId,event,timestamp',
        'track,csv-1,csv-u1,,Product Viewed,2024-05-01T10:00:00Z',
        'identify,csv-2,csv-u1,,,2024-05-01T10:01:00Z',
        'track,csv-3,csv-u2,,Bad Time,not-a-timestamp', // bad timestamp
        'page,csv-4,,csv-a1,,2024-05-01T10:02:00Z',
        'track,csv-5,,,No Ids,2024-05-01T10:03:00Z', // neither id
        'bogus,csv-6,csv-u3,,X,2024-05-01T10:04:00Z', // unknown type
      ].join('\n') + '\n',
    );
    const data = path.join(dir, 'data');
    const r = runCli(['import', file, '--data', data]);
    t.diagnostic(`import stderr: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    assert.equal(r.code, 1, `exit code 1; stderr: ${r.stderr}`);
    assert.match(r.stderr, /\b3\b/, `summary mentions 3 accepted / 3 rejected: ${r.stderr}`);
    srv = await startServer({ dataDir: data, tag: 'csv' });
    const events = await srv.allEvents();
    assert.deepEqual(events.map((e) => e.messageId), ['csv-1', 'csv-2', 'csv-4']);
    assert.equal(events[0].type, 'track');
    assert.equal(events[0].event, 'Product Viewed');
    assert.equal(events[0].userId, 'csv-u1');
    assert.equal(events[0].timestamp, '2024-05-01T10:00:00.000Z');
    assert.equal(events[0].anonymousId, undefined, 'an empty cell is no value');
    assert.equal(events[1].type, 'identify');
    assert.equal(events[2].type, 'page');
    assert.equal(events[2].anonymousId, 'csv-a1');
    await srv.close();
  })(t);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('engaged keys create: new write and admin keys work with their scopes', async (t) => {
  const dir = tmpDataDir('keys');
  let srv;
  await logOnFail(() => srv, async () => {
    const w = runCli(['keys', 'create', '--scope', 'write', '--data', dir]);
    assert.equal(w.code, 0, w.stderr);
    const a = runCli(['keys', 'create', '--scope', 'admin', '--data', dir]);
    assert.equal(a.code, 0, a.stderr);
    const wk = w.stdout.trim();
    const ak = a.stdout.trim();
    assert.match(wk, /^\S{16,}$/, `one key on stdout: ${JSON.stringify(w.stdout)}`);
    assert.match(ak, /^\S{16,}$/, `one key on stdout: ${JSON.stringify(a.stdout)}`);
    assert.notEqual(wk, ak);
    const bad = runCli(['keys', 'create', '--scope', 'superuser', '--data', dir]);
    assert.notEqual(bad.code, 0, 'unknown scope is an error');

    srv = await startServer({ dataDir: dir, tag: 'keys' });
    const post = (key) =>
      request({
        url: `${srv.url}/v1/track`,
        method: 'POST',
        headers: { Authorization: basic(key), 'Content-Type': 'application/json' },
        body: JSON.stringify({ userId: 'keys-u', event: 'With new key' }),
      });
    assert.equal((await post(wk)).status, 200, 'created write key can send');
    assert.equal((await post(ak)).status, 200, 'created admin key can send');
    const read = (key) => request({ url: `${srv.url}/v1/events?user_id=keys-u`, headers: { Authorization: bearer(key) } });
    const ra = await read(ak);
    assert.equal(ra.status, 200, ra.text);
    assert.equal(ra.json.events.length, 2);
    const rw = await read(wk);
    assert.equal(rw.status, 403, `created write key on an admin endpoint: ${rw.text}`);
    assert.equal(rw.json?.error?.code, 'forbidden');
    await srv.close();
  })(t);
  fs.rmSync(dir, { recursive: true, force: true });
});

// A body far over the limit, or one whose client waits for "100 Continue", is refused before it is
// sent; a body just over the limit is read and dropped first (60-limits.json), so the 413 arrives.
test('a declared Content-Length over the limit is refused at once with 413 (no waiting for the body)', async (t) => {
  const srv = await startServer({ tag: 'clen' });
  await logOnFail(() => srv, async () => {
    for (const [p, len, expect] of [['/v1/batch', 10_000_000_000, ''], ['/v1/track', 40_000, 'Expect: 100-continue\r\n']]) {
      const head =
        `POST ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${basic(srv.writeKey)}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${len}\r\n${expect}\r\n{"batch":[`;
      const { text, ms } = await rawExchange(srv.port, head, 5000);
      assert.match(text, /^HTTP\/1\.1 413 /, `${p} with Content-Length ${len}: ${JSON.stringify(text.slice(0, 300))} after ${ms} ms`);
      assert.match(text, /"code":"body_too_large"/);
    }
    await srv.close();
  })(t);
});

test('access log: one JSON line per request on stderr by default, none with ENGAGED_ACCESS_LOG=off', async (t) => {
  const on = await startServer({ tag: 'log', accessLog: null });
  const off = await startServer({ tag: 'log-off' });
  await logOnFail(() => [on, off], async () => {
    for (const s of [on, off]) {
      await s.post('/v1/track', { userId: 'log-u', event: 'Logged' });
      await s.post('/v1/track', { event: 'Bad' });
      await s.get('/v1/events');
    }
    await sleep(200);
    const lines = (s) => s.stderr.split('\n').filter((l) => /"(path|status|method)"/.test(l));
    const onLines = lines(on);
    assert.ok(onLines.length >= 3, `≥ 3 access log lines by default, got:\n${on.stderr.slice(-2000)}`);
    for (const l of onLines) assert.doesNotThrow(() => JSON.parse(l), `access log line is JSON: ${l}`);
    assert.ok(onLines.some((l) => /\/v1\/track/.test(l) && /400/.test(l)), 'the failed request is logged with its status');
    assert.ok(!onLines.some((l) => l.includes(on.writeKey) || l.includes(on.adminKey)), 'no key in the access log');
    assert.equal(lines(off).length, 0, `no access log lines with ENGAGED_ACCESS_LOG=off:\n${off.stderr.slice(-2000)}`);
    await on.close();
    await off.close();
  })(t);
});

/** Writes raw bytes on a new connection; resolves with what came back before close or timeout. */
function rawExchange(port, payload, timeoutMs) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const sock = net.connect(port, '127.0.0.1');
    let text = '';
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ text, ms: Date.now() - t0 });
    };
    const timer = setTimeout(done, timeoutMs);
    sock.on('data', (d) => {
      text += d.toString('utf8');
      if (/\r\n\r\n/.test(text) && /content-length: *(\d+)/i.test(text)) {
        const n = Number(/content-length: *(\d+)/i.exec(text)[1]);
        if (Buffer.byteLength(text.split('\r\n\r\n').slice(1).join('\r\n\r\n')) >= n) done();
      }
    });
    sock.on('error', done);
    sock.on('close', done);
    sock.write(payload);
  });
}
