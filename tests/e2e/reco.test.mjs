// Recommendations on the real binary: what may never be shown (sold out, unavailable, bought, in the
// cart), that the next view changes the answer, who may read whose recommendations with a write key,
// the request's filter, boost and diversity, the reasons, cold start, and bad requests refused.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { basic, bearer, request } from './lib/http.mjs';
import { logOnFail, Server } from './lib/server.mjs';

const SECRET = 'test-signing-secret-0123456789';
let srv;

function admin(method, p, body) {
  const headers = { Authorization: bearer(srv.adminKey) };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  return request({ url: srv.url + p, method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

async function ok(promise) {
  const r = await promise;
  assert.equal(r.status, 200, `${r.status} ${r.text}`);
  return r.json;
}

async function recs(q, auth = 'admin') {
  const headers = { Authorization: auth === 'admin' ? bearer(srv.adminKey) : basic(srv.writeKey) };
  const r = await request({ url: `${srv.url}/v1/recommendations?${new URLSearchParams(q)}`, headers });
  return r;
}

async function ids(q) {
  const j = await ok(recs(q));
  return j.items.map((i) => i.product_id);
}

const T0 = Date.parse('2026-03-02T10:00:00Z');
const at = (min) => new Date(T0 + min * 60000).toISOString();

async function batch(events) {
  await ok(srv.post('/v1/batch', { batch: events }));
}

const viewed = (who, product, min) => ({
  type: 'track', ...who, event: 'Product Viewed', timestamp: at(min), properties: { product_id: product },
});

// Twelve products in three brands; shoppers who view a go on to b, c and d.
const products = [];
for (let i = 0; i < 12; i++) {
  products.push({
    id: `p${i}`, title: `Product ${i}`, brand: `brand-${i % 3}`, category: i < 6 ? 'Shoes' : 'Socks',
    price: 10 + i * 10, currency: 'EUR', stock: 5, url: `https://shop.example/p${i}`,
  });
}
products.push({ id: 'refill', title: 'Refill', price: 5, currency: 'EUR', stock: 10, replenishable: true });
products.push({ id: 'de-only', title: 'Only in DE', price: 5, currency: 'EUR', stock: 10, availability: { markets: ['de'] } });

test(
  'recommendations: filters, signatures, fresh answers and bad requests',
  logOnFail(
    () => [srv],
    async () => {
      srv = new Server({ tag: 'reco', env: { ENGAGED_SIGNING_SECRET: SECRET } });
      await srv.start();
      await ok(admin('PUT', '/v1/catalog/products', products));
      const events = [];
      for (let s = 0; s < 20; s++) {
        const who = { anonymousId: `shopper-${s}` };
        events.push(viewed(who, 'p0', 0), viewed(who, 'p1', 1), viewed(who, 'p2', 2));
        if (s % 2) events.push(viewed(who, 'p3', 3), viewed(who, 'de-only', 4));
        if (s < 5) events.push(viewed(who, 'refill', 5));
      }
      // Co-purchases: p0 with p4 (and refill), several times.
      for (let s = 0; s < 4; s++) {
        events.push({
          type: 'track', userId: `buyer-${s}`, event: 'Order Completed', timestamp: at(10),
          properties: { order_id: `o-${s}`, products: [{ product_id: 'p0' }, { product_id: 'p4' }, { product_id: 'refill' }] },
        });
      }
      await batch(events);

      // A product page: co-viewed products first, each with a reason, and one id for the answer.
      let j = await ok(recs({ product_id: 'p0', limit: '5' }));
      assert.match(j.recommendation_id, /^rec_[0-9a-f]{24}$/);
      assert.equal(j.context, 'product');
      assert.ok(j.items.length === 5, JSON.stringify(j));
      assert.ok(!j.items.some((i) => i.product_id === 'p0'), 'the product itself is not recommended');
      assert.ok(['p1', 'p2'].includes(j.items[0].product_id), JSON.stringify(j.items));
      for (const it of j.items) {
        assert.equal(typeof it.score, 'number');
        assert.ok(it.reason.length > 0);
        assert.equal(typeof it.strategy, 'string');
      }
      const bt = await ok(recs({ product_id: 'p0', strategy: 'bought_together', limit: '2' }));
      assert.deepEqual(bt.items.map((i) => i.product_id).sort(), ['p4', 'refill']);
      assert.match(bt.items[0].reason, /^bought together with Product 0$/);
      const vt = await ok(recs({ product_id: 'p0', strategy: 'viewed_together', limit: '3' }));
      assert.deepEqual(vt.items.slice(0, 2).map((i) => i.product_id).sort(), ['p1', 'p2']);
      assert.equal(vt.items[0].reason, 'viewed together with Product 0');
      assert.equal(vt.items[0].title, vt.items[0].product_id === 'p1' ? 'Product 1' : 'Product 2');
      // A long title is named whole in the reason: once, a reason was cut at 511 bytes, which could
      // split a multi-byte character (here 2-byte é's, 600 bytes).
      const long = `Chaussure ${'é'.repeat(300)}`;
      await ok(admin('PATCH', '/v1/catalog/products/p0', { title: long }));
      const lt = await ok(recs({ product_id: 'p0', strategy: 'viewed_together', limit: '1' }));
      assert.equal(lt.items[0].reason, `viewed together with ${long}`);
      await ok(admin('PATCH', '/v1/catalog/products/p0', { title: 'Product 0' }));

      // Sold out: gone the moment its stock is zero, back when restocked.
      assert.ok((await ids({ product_id: 'p0', strategy: 'viewed_together' })).includes('p1'));
      await ok(admin('PATCH', '/v1/catalog/products/p1', { stock: 0 }));
      for (const ctx of ['home', 'product', 'cart', 'email']) {
        const got = await ids({ product_id: 'p0', context: ctx, limit: '20' });
        assert.ok(!got.includes('p1'), `${ctx}: ${got}`);
      }
      assert.ok(!(await ids({ strategy: 'popular', limit: '20' })).includes('p1'));
      await ok(admin('PATCH', '/v1/catalog/products/p1', { stock: 3 }));
      assert.ok((await ids({ product_id: 'p0', strategy: 'viewed_together' })).includes('p1'));

      // Availability: the DE-only product only for a viewer in DE.
      assert.ok(!(await ids({ product_id: 'p2', limit: '20' })).includes('de-only'));
      assert.ok((await ids({ product_id: 'p2', limit: '20', market: 'de' })).includes('de-only'));

      // Bought: never again, unless replenishable. In the cart: never.
      const buyer = 'buyer-0';
      let got = await ids({ user_id: buyer, product_id: 'p1', limit: '20' });
      assert.ok(!got.includes('p4') && !got.includes('p0'), got.join());
      assert.ok(got.includes('refill'), `a replenishable product comes back: ${got}`);
      await batch([{ type: 'track', userId: buyer, event: 'Product Added', timestamp: at(20), properties: { product_id: 'p2', quantity: 1 } }]);
      for (const ctx of ['home', 'product', 'cart', 'email']) {
        got = await ids({ user_id: buyer, context: ctx, product_id: 'p1', limit: '20' });
        assert.ok(!got.includes('p2'), `${ctx}: the cart's p2 in ${got}`);
      }
      const cart = await ok(recs({ user_id: buyer, context: 'cart', strategy: 'viewed_together', limit: '3' }));
      assert.ok(cart.items.length > 0 && cart.items[0].reason.startsWith('viewed together with'), JSON.stringify(cart));

      // A new view changes the next answer, at once. (Sent without a timestamp, so the visit is
      // happening now: the session strategy looks at the current session only.)
      const fresh = { anonymous_id: 'newcomer', strategy: 'session', limit: '3' };
      const now = (product) => ({ type: 'track', anonymousId: 'newcomer', event: 'Product Viewed', properties: { product_id: product } });
      await batch([now('p0')]);
      const first = await ids(fresh);
      assert.ok(first.length > 0 && (await ok(recs(fresh))).items.every((i) => i.strategy === 'session'));
      await batch([now('p3')]);
      const second = await ids(fresh);
      assert.notDeepEqual(first, second);
      assert.ok(!second.includes('p3'), 'the product on screen is not a suggestion');

      // Another shopper's views change a product page's answer at once, though the session model
      // keeps its answers about one product (asked for every visitor without a session) between
      // events.
      const walk = (who, product) => ({ type: 'track', anonymousId: who, event: 'Product Viewed', properties: { product_id: product } });
      await batch([walk('walker-1', 'p7'), walk('walker-1', 'p9')]);
      const page = { anonymous_id: 'page-visitor', product_id: 'p7', strategy: 'session', limit: '5' };
      const bySession = async () => (await ok(recs(page))).items.filter((i) => i.strategy === 'session').map((i) => i.product_id);
      const pageBefore = await bySession();
      assert.ok(pageBefore.includes('p9') && !pageBefore.includes('p8'), pageBefore.join());
      assert.deepEqual(await bySession(), pageBefore);
      await batch([walk('walker-2', 'p7'), walk('walker-2', 'p8')]);
      const pageAfter = await bySession();
      assert.ok(pageAfter.includes('p8'), `p8 after a shopper viewed p7 then p8: ${pageAfter}`);

      // Cold start: somebody nobody has seen still gets a list.
      j = await ok(recs({ anonymous_id: 'never-seen', limit: '4' }));
      assert.equal(j.items.length, 4);
      assert.equal(j.profile, null);
      assert.ok(j.items.every((i) => i.fallback === true || ['trending', 'popular'].includes(i.strategy)));

      // Filter, boost, diversity, exclusion.
      got = await ids({ strategy: 'popular', limit: '20', filter: 'product.price < 50' });
      assert.ok(got.length > 0);
      for (const id of got) {
        const p = products.find((x) => x.id === id);
        assert.ok(p.price < 50, `${id} costs ${p.price}`);
      }
      // A number multiplies: p1 and p2 were co-viewed 20 times (1.0), p3 10 times (0.5); times the
      // price, p2 (30) leads p1 (20) and p3 (0.5 * 40 = 20).
      const num = await ok(recs({ product_id: 'p0', strategy: 'viewed_together', limit: '3', boost: 'product.price' }));
      assert.equal(num.items[0].product_id, 'p2', JSON.stringify(num.items));
      const cond = await ok(recs({ product_id: 'p0', strategy: 'viewed_together', limit: '3', boost: 'product.id == "p3"' }));
      assert.equal(cond.items[0].product_id, 'p3', JSON.stringify(cond.items));
      const div = await ok(recs({ strategy: 'popular', limit: '10', max_per_brand: '1' }));
      const brands = div.items.map((i) => i.brand ?? 'none');
      assert.equal(new Set(brands).size, brands.length, brands.join());
      got = await ids({ product_id: 'p0', strategy: 'viewed_together', exclude: 'p1,p2' });
      assert.ok(!got.includes('p1') && !got.includes('p2'));

      // Friends and segments.
      await batch([
        { type: 'identify', userId: 'friend-a', traits: { segments: ['runners'] }, timestamp: at(40) },
        { type: 'track', userId: 'friend-a', event: 'Order Completed', timestamp: at(41), properties: { order_id: 'of', products: [{ product_id: 'p9' }] } },
        { type: 'identify', userId: 'me', traits: { friends: ['friend-a'], segments: ['runners'] }, timestamp: at(42) },
      ]);
      j = await ok(recs({ user_id: 'me', strategy: 'friends_bought', limit: '1' }));
      assert.equal(j.items[0].product_id, 'p9');
      assert.equal(j.items[0].reason, 'bought by your friends');
      j = await ok(recs({ user_id: 'me', strategy: 'popular_in_segment', limit: '1' }));
      assert.equal(j.items[0].product_id, 'p9');
      assert.equal(j.items[0].reason, 'popular in your segment runners');

      // Write keys: anonymous visitors freely; a user id only with the server's signature of it.
      const sign = (u) => crypto.createHmac('sha256', SECRET).update(u).digest('hex');
      let r = await recs({ anonymous_id: 'shopper-1', limit: '2' }, 'write');
      assert.equal(r.status, 200, r.text);
      r = await recs({ user_id: buyer }, 'write');
      assert.equal(r.status, 403);
      assert.equal(r.json.error.field, 'signature');
      r = await recs({ user_id: buyer, signature: sign('buyer-1') }, 'write');
      assert.equal(r.status, 403, 'a signature made for another user');
      r = await recs({ user_id: buyer, signature: 'zz' }, 'write');
      assert.equal(r.status, 403);
      r = await recs({ user_id: buyer, signature: sign(buyer), limit: '3' }, 'write');
      assert.equal(r.status, 200, r.text);
      assert.match(r.json.profile, /^p_\d+$/);
      r = await recs({ profile: r.json.profile }, 'write');
      assert.equal(r.status, 403);
      assert.equal(r.json.error.field, 'profile');
      r = await request({ url: `${srv.url}/v1/recommendations` });
      assert.equal(r.status, 401);

      // Attribution: events that carry an answer's recommendation_id are counted in /metrics.
      const metric = async (name) => Number((await srv.get('/metrics')).text.match(new RegExp(`^${name} (\\S+)$`, 'm'))[1]);
      const rid = j.recommendation_id;
      await batch([
        { type: 'track', userId: 'me', event: 'Product Clicked', timestamp: at(50), properties: { product_id: 'p9', recommendation_id: rid } },
        { type: 'track', userId: 'me', event: 'Product Clicked', timestamp: at(50), properties: { product_id: 'p8' } },
        {
          type: 'track', userId: 'me', event: 'Order Completed', timestamp: at(51),
          properties: { order_id: 'oa', products: [{ product_id: 'p9', price: 100, quantity: 2, recommendation_id: rid }, { product_id: 'p8', price: 7 }] },
        },
      ]);
      assert.equal(await metric('engaged_reco_attributed_clicks_total'), 1);
      assert.equal(await metric('engaged_reco_attributed_orders_total'), 1);
      assert.equal(await metric('engaged_reco_attributed_revenue_total'), 200);
      assert.ok((await metric('engaged_reco_session_model_bytes')) > 0);

      // The models are rebuilt from the log: after a kill -9 the answers are the same.
      const before = await ok(recs({ product_id: 'p0', strategy: 'viewed_together,bought_together', limit: '6' }));
      const forMe = await ok(recs({ user_id: 'me', strategy: 'friends_bought,popular_in_segment', limit: '3' }));
      await srv.kill();
      await srv.start();
      const after = await ok(recs({ product_id: 'p0', strategy: 'viewed_together,bought_together', limit: '6' }));
      assert.deepEqual(after.items, before.items);
      assert.deepEqual((await ok(recs({ user_id: 'me', strategy: 'friends_bought,popular_in_segment', limit: '3' }))).items, forMe.items);

      // Bad requests: a clear error naming the field.
      const bad = [
        [{ strategy: 'nope' }, 400, 'strategy'],
        [{ user_id: 'me', strategy: 'nope' }, 400, 'strategy'],
        [{ user_id: 'me', filter: 'product.' }, 400, 'filter'],
        [{ user_id: 'me', product_id: 'no-such' }, 404, 'product_id'],
        [{ limit: '0' }, 400, 'limit'],
        [{ limit: '101' }, 400, 'limit'],
        [{ limit: 'ten' }, 400, 'limit'],
        [{ context: 'checkout' }, 400, 'context'],
        [{ filter: 'product.price <' }, 400, 'filter'],
        [{ filter: 'product.price + 1' }, 400, 'filter'],
        [{ boost: '(((' }, 400, 'boost'],
        [{ product_id: 'no-such' }, 404, 'product_id'],
        [{ profile: 'p_999999' }, 404, 'profile'],
        [{ user_id: 'a', anonymous_id: 'b' }, 400, 'anonymous_id'],
        [{ color: 'red' }, 400, 'color'],
        [{ max_per_brand: '-1' }, 400, 'max_per_brand'],
        [{ strategy: 'popular,'.repeat(20) }, 400, 'strategy'],
      ];
      for (const [q, status, field] of bad) {
        r = await recs(q);
        assert.equal(r.status, status, `${JSON.stringify(q)}: ${r.text}`);
        assert.equal(r.json.error.field, field, `${JSON.stringify(q)}: ${r.text}`);
        assert.ok(r.json.error.code && r.json.error.message);
      }
      // Bought, for a customer with more purchases than the engine lists per request (64): the
      // same rules. (Last: the extra products learned from the order change what is popular.)
      const many = ['p0', 'p4', 'refill'];
      for (let i = 0; i < 67; i++) many.push(`extra-${i}`);
      await batch([{
        type: 'track', userId: 'big-buyer', event: 'Order Completed', timestamp: at(10),
        properties: { order_id: 'o-big', products: many.map((id) => ({ product_id: id })) },
      }]);
      got = await ids({ user_id: 'big-buyer', product_id: 'p1', limit: '20' });
      assert.ok(!got.includes('p4') && !got.includes('p0'), got.join());
      assert.ok(got.includes('refill'), `a replenishable product comes back: ${got}`);
      await srv.stop();
    },
  ),
);
