// Durability: acknowledged = on disk, batches all-or-nothing, dedup across restarts, clean SIGTERM drain.
//
// Several concurrent clients POST /v1/batch; every event of a batch carries the batch's tag. We record
// each batch whose response was 200 ("acked"). Then the server is SIGKILLed at a random moment,
// restarted on the same data dir, and the store must hold every acked event exactly once, and for every
// batch tag either all of its events or none.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { sleep } from './lib/http.mjs';
import { logOnFail, Server, waitOrNull } from './lib/server.mjs';

const ROUNDS = Number(process.env.ENGAGED_KILL_ROUNDS ?? 5);
const CLIENTS = 4;

function rand(n) {
  return crypto.randomInt(n);
}

/**
 * Runs CLIENTS concurrent batch posters until `stopSignal.stopped` is set and each client's current
 * request has finished. Bounded by maxBatches per client and maxMs.
 */
async function runLoad(srv, prefix, ledger, stopSignal, { maxBatches = 400, maxMs = 20000 } = {}) {
  const deadline = Date.now() + maxMs;
  const client = async (c) => {
    for (let k = 0; k < maxBatches && !stopSignal.stopped && Date.now() < deadline; k++) {
      const tag = `${prefix}-c${c}-b${k}`;
      const size = 1 + rand(40);
      const batch = [];
      for (let j = 0; j < size; j++) {
        batch.push({
          type: j % 4 === 0 ? 'identify' : 'track',
          userId: `dur-${prefix}-c${c}`,
          event: 'Durable',
          messageId: `${tag}-e${j}`,
          properties: { tag, j, pad: 'x'.repeat(rand(300)) },
          traits: j % 4 === 0 ? { tag } : undefined,
        });
      }
      ledger.sent.set(tag, size);
      ledger.bodies.set(tag, batch);
      let r;
      try {
        r = await srv.post('/v1/batch', { batch }, { timeoutMs: 15000 });
      } catch (e) {
        ledger.unknown.add(tag); // connection refused/reset: may or may not be stored, but never partly
        if (stopSignal.stopped) return;
        await sleep(20);
        continue;
      }
      if (r.status === 200) {
        if (r.json?.accepted !== size || (r.json?.duplicates ?? 0) !== 0 || r.json?.rejected?.length) {
          ledger.oddAcks.push(`${tag}: ${r.text.slice(0, 300)}`);
        }
        ledger.acked.add(tag);
      } else {
        ledger.unknown.add(tag);
        ledger.non200.push(`${tag}: ${r.status} ${r.text.slice(0, 200)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
}

function newLedger() {
  return { sent: new Map(), bodies: new Map(), acked: new Set(), unknown: new Set(), non200: [], oddAcks: [] };
}

/** Every acked event exactly once; every tag all-or-none; nothing we did not send. */
function verifyStore(events, ledger, label) {
  const problems = [];
  const perTag = new Map();
  const ids = new Map();
  for (const e of events) {
    ids.set(e.messageId, (ids.get(e.messageId) ?? 0) + 1);
    const tag = e.properties?.tag ?? e.traits?.tag;
    if (tag === undefined) continue;
    perTag.set(tag, (perTag.get(tag) ?? 0) + 1);
  }
  for (const [id, n] of ids) if (n > 1) problems.push(`messageId ${id} stored ${n} times`);
  for (const [tag, size] of ledger.sent) {
    const n = perTag.get(tag) ?? 0;
    if (ledger.acked.has(tag) && n !== size) problems.push(`acked batch ${tag}: ${n} of ${size} events stored`);
    else if (!ledger.acked.has(tag) && n !== 0 && n !== size) problems.push(`unacked batch ${tag}: partially stored (${n} of ${size})`);
  }
  for (const tag of perTag.keys()) if (!ledger.sent.has(tag)) problems.push(`stored tag ${tag} was never sent`);
  assert.equal(problems.length, 0, `${label}: ${problems.length} problem(s):\n  ${problems.slice(0, 30).join('\n  ')}`);
  assert.deepEqual(ledger.oddAcks, [], `${label}: 200 responses with unexpected counts`);
}

test('kill -9 at random moments under concurrent load: acked events survive exactly once, batches atomic', async (t) => {
  const srv = new Server({ tag: 'kill' });
  await logOnFail(() => srv, async () => {
    await srv.start();
    const ledger = newLedger();
    const summary = [];
    for (let round = 0; round < ROUNDS; round++) {
      const stop = { stopped: false };
      const load = runLoad(srv, `r${round}`, ledger, stop);
      const delay = 300 + rand(1200);
      await sleep(delay);
      stop.stopped = true;
      const res = await srv.kill();
      await load;
      assert.equal(res.signal, 'SIGKILL', `server was killed (round ${round}), not already dead: ${JSON.stringify(res)}`);
      await srv.start();
      const events = await srv.allEvents();
      verifyStore(events, ledger, `after kill round ${round + 1}`);
      // A client retries what it never got an answer for: batches that made it to disk must now be
      // reported as duplicates, the others accepted; either way each is then stored exactly once.
      const perTag = new Map();
      for (const e of events) if (e.properties?.tag ?? e.traits?.tag) perTag.set(e.properties?.tag ?? e.traits?.tag, (perTag.get(e.properties?.tag ?? e.traits?.tag) ?? 0) + 1);
      let retried = 0;
      let retriedStored = 0;
      for (const tag of ledger.unknown) {
        if (ledger.acked.has(tag)) continue;
        const size = ledger.sent.get(tag);
        const wasStored = (perTag.get(tag) ?? 0) === size;
        const r = await srv.post('/v1/batch', { batch: ledger.bodies.get(tag) });
        assert.equal(r.status, 200, `retry of ${tag}: ${r.text}`);
        const want = wasStored ? { accepted: r.json.accepted, duplicates: size } : { accepted: size, duplicates: 0 };
        assert.deepEqual({ accepted: r.json.accepted, duplicates: r.json.duplicates }, want, `retry of ${tag} (${wasStored ? 'already stored' : 'not stored'} before): ${r.text}`);
        ledger.acked.add(tag);
        retried++;
        if (wasStored) retriedStored++;
      }
      verifyStore(await srv.allEvents(), ledger, `after retrying ${retried} unanswered batches in round ${round + 1}`);
      summary.push(
        `round ${round + 1}: killed after ${delay} ms, ${events.length} events stored, ${retried} unanswered batches retried (${retriedStored} had been stored)`,
      );
    }
    t.diagnostic(summary.join('; '));
    assert.ok(ledger.acked.size >= ROUNDS, `some batches were acked (${ledger.acked.size})`);
    await srv.close();
  })(t);
});

test('dedup survives restarts (SIGKILL and SIGTERM): resent messageIds are duplicates, stored once', async (t) => {
  const srv = new Server({ tag: 'dedup' });
  await logOnFail(() => srv, async () => {
    await srv.start();
    const batch = Array.from({ length: 50 }, (_, j) => ({ type: 'track', userId: 'dedup-u', event: 'Once', messageId: `dedup-${j}`, properties: { j } }));
    const single = { userId: 'dedup-u', event: 'Single', messageId: 'dedup-single' };
    let r = await srv.post('/v1/batch', { batch });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.accepted, 50, r.text);
    assert.equal(r.json.duplicates, 0, r.text);
    r = await srv.post('/v1/track', single);
    assert.equal(r.status, 200, r.text);

    for (const how of ['SIGKILL', 'SIGTERM']) {
      if (how === 'SIGKILL') await srv.kill();
      else await srv.stop();
      await srv.start();
      r = await srv.post('/v1/batch', { batch });
      assert.equal(r.status, 200, `after ${how}: ${r.text}`);
      assert.equal(r.json.duplicates, 50, `after ${how}: every item is a duplicate: ${r.text}`);
      assert.deepEqual(r.json.rejected, [], r.text);
      r = await srv.post('/v1/track', single);
      assert.equal(r.status, 200, `after ${how}: single resend ${r.text}`);
      const events = await srv.allEvents({ user_id: 'dedup-u' });
      assert.equal(events.length, 51, `after ${how}: 51 events stored once each, found ${events.length}`);
      assert.deepEqual(
        events.map((e) => e.messageId),
        [...batch.map((e) => e.messageId), 'dedup-single'],
        'arrival order kept across restarts',
      );
    }
    // A mixed resend: half old ids, half new ones.
    const mixed = [...batch.slice(0, 25), ...Array.from({ length: 25 }, (_, j) => ({ type: 'track', userId: 'dedup-u', event: 'New', messageId: `dedup-new-${j}` }))];
    r = await srv.post('/v1/batch', { batch: mixed });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.duplicates, 25, r.text);
    assert.equal((await srv.allEvents({ user_id: 'dedup-u' })).length, 76);
    await srv.close();
  })(t);
});

test('SIGTERM under load: exit 0, every acked event stored once, batches atomic', async (t) => {
  const srv = new Server({ tag: 'term' });
  await logOnFail(() => srv, async () => {
    await srv.start();
    const ledger = newLedger();
    const stop = { stopped: false };
    const load = runLoad(srv, 'term', ledger, stop);
    await sleep(500 + rand(700));
    const t0 = Date.now();
    srv.proc.kill('SIGTERM');
    const exit = await waitOrNull(srv.exited, 30000);
    stop.stopped = true;
    if (exit === null) {
      await srv.kill();
      await load;
      assert.fail(`engaged did not exit within 30 s of SIGTERM under load`);
    }
    await load;
    assert.deepEqual(exit, { code: 0, signal: null }, `exit after SIGTERM under load (${Date.now() - t0} ms)`);
    await srv.start();
    const events = await srv.allEvents();
    verifyStore(events, ledger, 'after SIGTERM');
    t.diagnostic(`${ledger.acked.size} acked / ${ledger.sent.size} sent batches, drained in ${Date.now() - t0} ms, non-200: ${ledger.non200.slice(0, 3).join(' | ')}`);
    assert.ok(ledger.acked.size > 0, 'some batches were acked');
    await srv.close();
  })(t);
});

test('reads while writing: cursor pages are a stable prefix of the log (nothing skipped or repeated)', async (t) => {
  const srv = new Server({ tag: 'rw' });
  await logOnFail(() => srv, async () => {
    await srv.start();
    let writing = true;
    let written = 0;
    const writer = (async () => {
      for (let k = 0; k < 2000 && writing; k++) {
        const batch = Array.from({ length: 10 }, (_, j) => ({ type: 'track', userId: `rw-${k % 3}`, event: 'RW', messageId: `rw-${k}-${j}` }));
        const r = await srv.post('/v1/batch', { batch });
        assert.equal(r.status, 200, r.text);
        written += 10;
      }
    })();
    const passes = [];
    try {
      await sleep(200);
      for (let pass = 0; pass < 3; pass++) {
        passes.push(await srv.allEvents({}, { limit: 25, maxPages: 4000 }));
        passes.push(await srv.allEvents({ user_id: 'rw-1' }, { limit: 7, maxPages: 4000 }));
      }
    } finally {
      writing = false;
      await writer;
    }
    const final = await srv.allEvents();
    const finalU1 = final.filter((e) => e.userId === 'rw-1');
    assert.equal(final.length, written, 'every written event stored');
    passes.forEach((p, k) => {
      const ref = k % 2 === 0 ? final : finalU1;
      const ids = p.map((e) => e.messageId);
      assert.ok(ids.length > 0, `pass ${k} read something`);
      assert.deepEqual(ids, ref.slice(0, ids.length).map((e) => e.messageId), `pass ${k}: a prefix of the final log`);
    });
    t.diagnostic(`${written} events written while reading; passes read ${passes.map((p) => p.length).join(', ')}`);
    await srv.close();
  })(t);
});

test('100 concurrent connections each sending one event: all acknowledged and stored', async (t) => {
  const srv = new Server({ tag: 'conc' });
  await logOnFail(() => srv, async () => {
    await srv.start();
    const rs = await Promise.all(
      Array.from({ length: 100 }, (_, i) => srv.post('/v1/track', { userId: 'conc', event: 'Concurrent', messageId: `conc-${i}` }, { timeoutMs: 20000 })),
    );
    const bad = rs.filter((r) => r.status !== 200);
    assert.equal(bad.length, 0, `non-200: ${bad.slice(0, 3).map((r) => `${r.status} ${r.text}`).join(' | ')}`);
    const ids = (await srv.allEvents({ user_id: 'conc' })).map((e) => e.messageId).sort();
    assert.deepEqual(ids, Array.from({ length: 100 }, (_, i) => `conc-${i}`).sort());
    await srv.close();
  })(t);
});
