// Real clients against the real binary: @segment/analytics-node and @rudderstack/rudder-sdk-node (gzip on)
// each send a few hundred mixed calls; everything is read back through GET /v1/events cursors and
// compared with exactly what each SDK put on the wire.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Analytics as SegmentAnalytics } from '@segment/analytics-node';
import { assertNoProblems, checkAgainstWire, planCalls } from './lib/plan.mjs';
import { logOnFail, startServer } from './lib/server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const N = Number(process.env.ENGAGED_SDK_EVENTS ?? 300);
const run = Date.now().toString(36);

let srv;
const wire = { segment: [], rudder: [], skewed: [] };

before(async () => {
  srv = await startServer({ tag: 'sdk' });
});
after(async () => {
  if (srv) await srv.close();
});

async function rudderChild(cfg) {
  const { stdout, stderr } = await promisify(execFile)(
    process.execPath,
    [path.join(here, 'lib/rudder-client.mjs'), JSON.stringify(cfg)],
    { timeout: 90000, maxBuffer: 64 << 20 },
  );
  const line = stdout.trim().split('\n').pop();
  let out;
  try {
    out = JSON.parse(line);
  } catch {
    throw new Error(`rudder client printed no result.\nstdout: ${stdout.slice(-2000)}\nstderr: ${stderr.slice(-2000)}`);
  }
  return out;
}

test('@segment/analytics-node: every call delivered with 2xx', logOnFail(() => srv, async () => {
  const errors = [];
  const responses = [];
  const analytics = new SegmentAnalytics({
    writeKey: srv.writeKey,
    host: srv.url,
    path: '/v1/batch',
    flushAt: 20,
    flushInterval: 200,
    maxRetries: 2,
    httpRequestTimeout: 15000,
  });
  analytics.on('http_request', (r) => {
    const body = JSON.parse(r.body);
    const { batch, ...envelope } = body;
    wire.segment.push({ envelope, events: batch, headers: r.headers });
  });
  analytics.on('http_response', (r) => responses.push(r));
  analytics.on('error', (e) => errors.push(`error event: ${e?.reason?.message ?? e?.code ?? String(e)}`));
  const calls = planCalls(`seg-${run}`, N);
  let delivered = 0;
  for (const { method, params } of calls) {
    analytics[method](params, (err) => {
      if (err) errors.push(`${method} ${params.messageId}: ${err.reason?.message ?? err.message ?? err}`);
      else delivered++;
    });
  }
  await analytics.closeAndFlush({ timeout: 60000 });
  const bad = responses.filter((r) => r.status < 200 || r.status > 299);
  assert.equal(bad.length, 0, `non-2xx responses: ${JSON.stringify(bad.slice(0, 3).map((r) => ({ status: r.status, statusText: r.statusText })))}`);
  assert.deepEqual(errors, []);
  assert.equal(delivered, N, 'every callback reported delivery');
  assert.ok(wire.segment.length >= Math.ceil(N / 20), `expected ≥ ${Math.ceil(N / 20)} batches, saw ${wire.segment.length}`);
  for (const b of wire.segment) {
    assert.equal(b.headers['Content-Type'], 'application/json');
    assert.match(b.headers.Authorization, /^Basic /);
    assert.equal(b.envelope.writeKey, srv.writeKey, 'analytics-node puts writeKey in the body');
  }
}));

test('@rudderstack/rudder-sdk-node (gzip): every call delivered with 2xx', logOnFail(() => srv, async () => {
  const out = await rudderChild({ url: srv.url, writeKey: srv.writeKey, tag: `rs-${run}`, n: N, skewMs: 0 });
  wire.rudder = out.batches;
  assert.deepEqual(out.errors, []);
  assert.equal(out.left, 0, 'rudder queue drained');
  assert.ok(out.statuses.length > 0 && out.statuses.every((s) => s === 200), `statuses: ${JSON.stringify(out.statuses)}`);
  assert.ok(out.batches.length > 0 && out.batches.every((b) => b.encoding === 'gzip'), 'rudder sent gzip');
  const sent = out.batches.reduce((n, b) => n + b.events.length, 0);
  assert.ok(sent >= N, `rudder sent ${sent} events, planned ${N}`);
}));

test('rudder client with its clock 1 h fast: timestamp corrected by sentAt − originalTimestamp', logOnFail(() => srv, async () => {
  const skewMs = 3600e3;
  const out = await rudderChild({ url: srv.url, writeKey: srv.writeKey, tag: `skew-${run}`, n: 40, skewMs, flushAt: 10 });
  wire.skewed = out.batches;
  assert.deepEqual(out.errors, []);
  assert.ok(out.statuses.length > 0 && out.statuses.every((s) => s === 200), `statuses: ${JSON.stringify(out.statuses)}`);
  const ids = new Set(out.batches.flatMap((b) => b.events.map((e) => e.messageId)));
  const stored = (await srv.allEvents()).filter((e) => ids.has(e.messageId));
  assert.equal(stored.length, ids.size);
  let checked = 0;
  for (const e of stored) {
    const w = out.batches.flatMap((b) => b.events).find((x) => x.messageId === e.messageId);
    if (w.timestamp !== undefined) continue; // explicit timestamps are kept as sent (checked below)
    checked++;
    const t = Date.parse(e.timestamp);
    // The corrected time is the real time of the call, not the client's clock (1 h ahead).
    assert.ok(
      t >= out.realStart - 2000 && t <= out.realEnd + 2000,
      `${e.messageId}: timestamp ${e.timestamp} not within the real send window ` +
        `${new Date(out.realStart).toISOString()}..${new Date(out.realEnd).toISOString()} ` +
        `(originalTimestamp ${w.originalTimestamp}, sentAt ${w.sentAt}, receivedAt ${e.receivedAt})`,
    );
    assert.ok(Math.abs(Date.parse(w.originalTimestamp) - t) > skewMs - 60000, `${e.messageId}: timestamp not corrected`);
  }
  assert.ok(checked >= 30, `checked ${checked} corrected timestamps`);
}));

test('read back through cursors: every messageId exactly once, fields intact', logOnFail(() => srv, async () => {
  assert.ok(wire.segment.length && wire.rudder.length, 'the sending tests ran');
  const all = await srv.allEvents({}, { limit: 37 }); // small pages: many cursors
  const full = await srv.allEvents({}, { limit: 1000 });
  assert.deepEqual(all.map((e) => e.messageId), full.map((e) => e.messageId), 'paging with limit 37 and 1000 agree');
  const def = await srv.get('/v1/events');
  assert.equal(def.status, 200);
  assert.equal(def.json.events.length, Math.min(100, all.length), 'default limit is 100');

  const seg = checkAgainstWire(all, wire.segment, { writeKey: srv.writeKey, libraryName: '@segment/analytics-node' });
  assertNoProblems(seg.problems, 'analytics-node');
  assert.equal(seg.wireIds.size, N);
  const rs = checkAgainstWire(all, wire.rudder, { writeKey: srv.writeKey, libraryName: 'analytics-node' });
  assertNoProblems(rs.problems, 'rudder-sdk-node');
  assert.equal(rs.wireIds.size, N);
  const sk = checkAgainstWire(all, wire.skewed, { writeKey: srv.writeKey, libraryName: 'analytics-node' });
  assertNoProblems(sk.problems, 'rudder-sdk-node (skewed clock)');

  // Nothing else was stored, and no id twice.
  const counts = new Map();
  for (const e of all) counts.set(e.messageId, (counts.get(e.messageId) ?? 0) + 1);
  const twice = [...counts].filter(([, c]) => c > 1);
  assert.deepEqual(twice, [], 'no messageId stored twice');
  const known = new Set([...seg.wireIds, ...rs.wireIds, ...sk.wireIds]);
  const extra = all.filter((e) => !known.has(e.messageId));
  assert.deepEqual(extra.map((e) => e.messageId), [], 'no event that no SDK sent');

  // Rudder identify copies traits into context.traits; both must survive.
  const rIdentify = all.find((e) => e.type === 'identify' && e.context?.library?.name === 'analytics-node');
  assert.ok(rIdentify?.traits?.email && rIdentify.context?.traits?.email === rIdentify.traits.email, 'rudder identify traits and context.traits');
}));

test('filters agree with a full read (user_id, anonymous_id, type, since)', logOnFail(() => srv, async (t) => {
  const all = await srv.allEvents();
  const user = `seg-${run}-user-3`;
  const byUser = await srv.allEvents({ user_id: user }, { limit: 5 });
  assert.deepEqual(byUser.map((e) => e.messageId), all.filter((e) => e.userId === user).map((e) => e.messageId));
  assert.ok(byUser.length > 5, 'enough events to page');
  const anon = all.find((e) => e.anonymousId && !e.userId).anonymousId;
  const byAnon = await srv.allEvents({ anonymous_id: anon });
  assert.deepEqual(byAnon.map((e) => e.messageId), all.filter((e) => e.anonymousId === anon).map((e) => e.messageId));
  for (const type of ['identify', 'track', 'page', 'screen', 'group', 'alias']) {
    const byType = await srv.allEvents({ type }, { limit: 250 });
    const want = all.filter((e) => e.type === type).map((e) => e.messageId);
    assert.ok(want.length > 0, `some ${type} events`);
    assert.deepEqual(byType.map((e) => e.messageId), want, `type=${type}`);
  }
  // since = a time strictly between two events' receivedAt (so >= vs > does not matter).
  let cut = -1;
  for (let i = Math.floor(all.length / 3); i < all.length; i++) {
    if (Date.parse(all[i].receivedAt) - Date.parse(all[i - 1].receivedAt) >= 2) {
      cut = i;
      break;
    }
  }
  assert.ok(cut > 0, 'two events with receivedAt ≥ 2 ms apart');
  const sinceIso = new Date(Date.parse(all[cut - 1].receivedAt) + 1).toISOString();
  const since = await srv.allEvents({ since: sinceIso });
  // The contract (docs/api.md): since works on storage order. Requests are stored a few ms out of
  // arrival order, and the store keeps "received" non-decreasing along that order (the running
  // maximum of receivedAt), so since returns the suffix of the log from the first event whose
  // running maximum reaches it: every event received at or after since, and never one stored
  // before an event it misses (so polling with since cannot miss an event).
  const sinceMs = Date.parse(sinceIso);
  let runningMax = -Infinity;
  let from = all.length;
  for (let i = 0; i < all.length; i++) {
    runningMax = Math.max(runningMax, Date.parse(all[i].receivedAt));
    if (runningMax >= sinceMs) {
      from = i;
      break;
    }
  }
  const want = all.slice(from).map((e) => e.messageId);
  const received = all.filter((e) => Date.parse(e.receivedAt) >= sinceMs).map((e) => e.messageId);
  assert.ok(received.every((id) => want.includes(id)), 'every event received at or after since is returned');
  let inversions = 0;
  let worst = 0;
  for (let i = 1; i < all.length; i++) {
    const d = Date.parse(all[i - 1].receivedAt) - Date.parse(all[i].receivedAt);
    if (d > 0) {
      inversions++;
      worst = Math.max(worst, d);
    }
  }
  t.diagnostic(`receivedAt decreases ${inversions} time(s) along arrival order (at most ${worst} ms)`);
  assert.deepEqual(since.map((e) => e.messageId), want, `since=${sinceIso}`);
}));
