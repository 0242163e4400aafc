// `make demo` runs `engaged demo`: the first start loads a demo shop (simulated shoppers) into the
// data directory and serves it; later starts serve what is there without loading it again.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { sleep } from './lib/http.mjs';
import { Server, logOnFail } from './lib/server.mjs';

test('engaged demo loads the demo shop once and serves it', async (t) => {
  const srv = new Server({ tag: 'demo', command: 'demo' });
  await logOnFail(() => srv, async () => {
    await srv.start({ readyTimeoutMs: 30000 });
    assert.match(srv.stderr + '', /demo: \d+ events from 300 simulated shoppers stored \(0 refused\)/);
    // The welcome text comes just after the server answers /healthz: wait for it (bounded).
    const url = new RegExp(`http://127\\.0\\.0\\.1:${srv.port}`);
    for (let i = 0; i < 100 && !url.test(srv.stderr); i++) await sleep(50);
    assert.match(srv.stderr, url, 'the welcome text names the URL');
    assert.match(srv.stderr, /profiles\/lookup\?anonymous_id=/, 'the welcome text shows a profile lookup');

    const all = await srv.allEvents();
    assert.ok(all.length >= 900, `a few events per shopper, got ${all.length}`);
    const views = all.filter((e) => e.kind === 'product_viewed');
    const orders = all.filter((e) => e.kind === 'order_completed');
    const identifies = all.filter((e) => e.type === 'identify');
    assert.ok(views.length >= 300, `every shopper views products (${views.length})`);
    assert.ok(orders.length > 10 && orders.length < 300, `some shoppers order (${orders.length})`);
    assert.equal(identifies.length, orders.length, 'every buyer signs up before ordering');
    for (const o of orders) {
      assert.equal(typeof o.properties.total, 'number');
      assert.equal(o.properties.currency, 'EUR');
      assert.ok(o.userId && o.anonymousId, 'an order links the anonymous visit to the customer');
      const own = await srv.allEvents({ anonymous_id: o.anonymousId });
      assert.ok(own.some((e) => e.kind === 'product_viewed'), 'the buyer browsed first');
    }
    // The demo accepts new events like any server.
    // Every buyer has one profile joining the anonymous visit and the sign-up.
    const buyer = orders[0];
    const prof = await srv.get(`/v1/profiles/lookup?user_id=${encodeURIComponent(buyer.userId)}`);
    assert.equal(prof.status, 200, prof.text);
    assert.ok(prof.json.identities.some((i) => i.type === 'anonymous_id' && i.value === buyer.anonymousId));
    assert.ok(prof.json.computed.orders_count >= 1);
    const r = await srv.post('/v1/track', { userId: 'demo-newcomer', event: 'Product Viewed', properties: { product_id: 'p-1001', price: 119 } });
    assert.equal(r.status, 200);
    // The welcome text's recommendation request answers, from the demo's own traffic.
    const rec = srv.stderr.match(/'http:\/\/127\.0\.0\.1:\d+(\/v1\/recommendations\?[^']+)'/);
    assert.ok(rec, 'the welcome text shows a recommendation request');
    const answer = await srv.get(rec[1]);
    assert.equal(answer.status, 200, answer.text);
    assert.equal(answer.json.items.length, 10);
    assert.ok(answer.json.items.every((i) => i.product_id !== 'p-1001' && i.reason), JSON.stringify(answer.json.items));

    await srv.stop();
    await srv.start({ readyTimeoutMs: 30000 });
    assert.doesNotMatch(srv.stderr, /simulated shoppers stored/, 'a second start does not load the demo again');
    assert.equal(await srv.countEvents(), all.length + 1);
    await srv.close();
  })(t);
});
