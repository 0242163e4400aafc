// Customer 360 on the real binary: identity resolution, live profiles, unmerge, erasure, export,
// offers under concurrent redemption, and the state rebuilt after SIGKILL.
//
// The scenario of the issue: an anonymous visitor browses and adds to the cart, signs up by email,
// later writes from a phone number that an order linked to that email — one profile, a complete
// timeline, the right cart and aggregates; a shared device must not merge two people; an unmerge
// restores both.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { bearer, request } from './lib/http.mjs';
import { logOnFail, runCli, Server, tmpDataDir } from './lib/server.mjs';

function admin(srv, method, p, body) {
  const headers = { Authorization: bearer(srv.adminKey) };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  return request({ url: srv.url + p, method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

async function ok(promise) {
  const r = await promise;
  assert.equal(r.status, 200, `${r.status} ${r.text}`);
  return r.json;
}

async function send(srv, type, body) {
  await ok(srv.post(`/v1/${type}`, body));
}

async function lookup(srv, q) {
  return ok(srv.get(`/v1/profiles/lookup?${new URLSearchParams(q)}`));
}

const T0 = Date.parse('2026-03-02T10:00:00Z');
const at = (min) => new Date(T0 + min * 60000).toISOString();

test(
  'an anonymous visit, a sign-up and a phone message end in one profile',
  logOnFail(
    () => [srv1],
    async () => {
      srv1 = new Server({ tag: 'c360', env: { ENGAGED_DEFAULT_COUNTRY: 'DE' } });
      const srv = srv1;
      await srv.start();
      const anon = 'anon-scenario';
      await send(srv, 'page', { anonymousId: anon, name: 'Home', timestamp: at(0), context: { userAgent: 'Mozilla/5.0 (iPhone) Mobile Safari' } });
      await send(srv, 'track', {
        anonymousId: anon, event: 'Product Viewed', timestamp: at(1),
        properties: { product_id: 'shoe-1', price: 80, category: 'Shoes', brand: 'Acme' },
      });
      await send(srv, 'track', {
        anonymousId: anon, event: 'Product Added', timestamp: at(2),
        properties: { product_id: 'shoe-1', price: 80, quantity: 1, category: 'Shoes', brand: 'Acme' },
      });
      await send(srv, 'track', {
        anonymousId: anon, event: 'Product Added', timestamp: at(3),
        properties: { product_id: 'sock-1', price: 5.5, quantity: 2, category: 'Socks', brand: 'Acme' },
      });
      // The profile is live before any sign-up: the anonymous visitor has a cart.
      let p = await lookup(srv, { anonymous_id: anon });
      assert.equal(p.computed.cart.value, 91);
      assert.equal(p.computed.cart.items.length, 2);
      const id = p.id;

      // Sign-up by email (with a messy address), on the same device.
      await send(srv, 'identify', { anonymousId: anon, userId: 'cust-42', timestamp: at(5), traits: { email: '  Ada.Lovelace@Shop.DE ', first_name: 'Ada' } });
      // An order from the shop's backend links the email and a national phone number.
      await send(srv, 'track', {
        userId: 'cust-42', event: 'Order Completed', timestamp: at(10),
        context: { traits: { email: 'ada.lovelace@shop.de', phone: '0151 2345 6789' } },
        properties: { order_id: 'o-1', revenue: 91, currency: 'eur', products: [{ product_id: 'shoe-1', price: 80, quantity: 1 }, { product_id: 'sock-1', price: 5.5, quantity: 2 }] },
      });
      // Days later the customer writes from that phone (an inbound message, in E.164).
      await send(srv, 'track', { anonymousId: 'wa-session-9', event: 'Message Received', timestamp: at(3000), context: { traits: { phone: '+49 151 23456789' }, channel: 'whatsapp' } });

      for (const q of [{ anonymous_id: anon }, { user_id: 'cust-42' }, { email: 'ADA.LOVELACE@shop.de' }, { phone: '+4915123456789' }, { phone: '0151/23456789' }, { anonymous_id: 'wa-session-9' }]) {
        p = await lookup(srv, q);
        assert.equal(p.id, id, `lookup ${JSON.stringify(q)}`);
      }
      const types = p.identities.map((i) => `${i.type}:${i.value}`).sort();
      assert.deepEqual(types, ['anonymous_id:anon-scenario', 'anonymous_id:wa-session-9', 'email:ada.lovelace@shop.de', 'phone:+4915123456789', 'user_id:cust-42']);
      const c = p.computed;
      assert.equal(c.events, 7);
      assert.equal(c.page_views, 1);
      assert.equal(c.product_views, 1);
      assert.equal(c.orders_count, 1);
      assert.equal(c.total_spend, 91);
      assert.equal(c.currency, 'EUR');
      assert.equal(c.last_order_id, 'o-1');
      assert.equal(c.cart.value, 0, 'the order consumed the cart');
      assert.deepEqual(c.products_bought, ['shoe-1', 'sock-1']);
      assert.equal(c.favourite_categories[0], 'Shoes');
      assert.equal(c.sessions, 2, 'a gap of two days starts a second session');
      assert.equal(c.first_seen, at(0).replace('Z', '').slice(0, 23) + 'Z');
      assert.equal(p.traits.first_name, 'Ada');
      assert.ok(c.channels.some((ch) => ch.channel === 'email' && ch.address === 'ada.lovelace@shop.de'));
      assert.ok(c.channels.some((ch) => ch.channel === 'sms' && ch.address === '+4915123456789'));
      assert.ok(c.rfm && c.rfm.frequency >= 1);

      // The timeline holds every event across channels, in log order, paged by cursor.
      const seen = [];
      let cursor = null;
      for (let i = 0; i < 10; i++) {
        const r = await ok(srv.get(`/v1/profiles/${id}/events?limit=3${cursor ? `&cursor=${cursor}` : ''}`));
        seen.push(...r.events.map((e) => e.event ?? e.type));
        cursor = r.next;
        if (!cursor) break;
      }
      assert.deepEqual(seen, ['page', 'Product Viewed', 'Product Added', 'Product Added', 'identify', 'Order Completed', 'Message Received']);

      // Traits are last-write-wins by timestamp: an older identify arriving late changes nothing.
      await send(srv, 'identify', { userId: 'cust-42', timestamp: at(4), traits: { first_name: 'Augusta' } });
      p = await lookup(srv, { user_id: 'cust-42' });
      assert.equal(p.traits.first_name, 'Ada');

      // /metrics counts customers and identifiers.
      const m = (await srv.get('/metrics')).text;
      assert.match(m, /^engaged_profiles 1$/m);
      assert.match(m, /^engaged_identities 5$/m);
      assert.match(m, /^engaged_events_applied_total 8$/m);

      // The state is rebuilt from the log after SIGKILL: the same profile, byte for byte.
      const before = await ok(srv.get(`/v1/profiles/${id}`));
      await srv.kill();
      await srv.restart();
      const after = await ok(srv.get(`/v1/profiles/${id}`));
      delete before.computed.days_since_last_order;
      delete after.computed.days_since_last_order;
      assert.deepEqual(after, before);
      await srv.stop();
    },
  ),
);
let srv1;

test(
  'a shared device does not merge two people; an unmerge splits a wrong merge and holds',
  logOnFail(
    () => [srv2],
    async () => {
      srv2 = new Server({ tag: 'c360-shared' });
      const srv = srv2;
      await srv.start();
      // Two people log in on one tablet: the anonymous id is linked to the first only.
      await send(srv, 'identify', { anonymousId: 'tablet', userId: 'alice', traits: { email: 'alice@example.org' } });
      await send(srv, 'track', { anonymousId: 'tablet', userId: 'bob', event: 'Signed In' });
      const alice = await lookup(srv, { user_id: 'alice' });
      const bob = await lookup(srv, { user_id: 'bob' });
      assert.notEqual(alice.id, bob.id);
      assert.equal((await lookup(srv, { anonymous_id: 'tablet' })).id, alice.id);
      assert.equal(bob.refused_links.length, 1);
      assert.equal(bob.refused_links[0].reason, 'limit');
      assert.equal(bob.computed.events, 1, "bob's event is bob's");

      // A wrong merge: a phone app's anonymous profile joins alice through a shared email
      // placeholder someone typed; the operator unmerges it.
      await send(srv, 'track', { anonymousId: 'phone-app', event: 'Product Viewed', properties: { product_id: 'x1', category: 'Toys' } });
      await send(srv, 'track', { anonymousId: 'phone-app', event: 'Product Viewed', properties: { product_id: 'x2', category: 'Toys' } });
      const phone = await lookup(srv, { anonymous_id: 'phone-app' });
      await send(srv, 'identify', { anonymousId: 'phone-app', traits: { email: 'alice@example.org' } });
      const merged = await lookup(srv, { anonymous_id: 'phone-app' });
      assert.equal(merged.id, alice.id, 'the older profile survives a merge');
      assert.equal(merged.computed.product_views, 2);
      assert.equal(merged.merges.length, 1);
      assert.equal(merged.merges[0].merged_profile, phone.id);
      // The merged-away id still answers, with the surviving profile.
      assert.equal((await ok(srv.get(`/v1/profiles/${phone.id}`))).id, alice.id);

      const link = merged.links.find((l) => l.to.value === 'phone-app' || l.from.value === 'phone-app');
      assert.ok(link, JSON.stringify(merged.links));
      let r = await admin(srv, 'POST', `/v1/profiles/${alice.id}/unmerge`, { link: link.id });
      assert.equal(r.status, 200, r.text);
      const split = r.json.split_profile;
      const a2 = await lookup(srv, { user_id: 'alice' });
      const p2 = await lookup(srv, { anonymous_id: 'phone-app' });
      assert.equal(a2.id, alice.id);
      assert.equal(p2.id, split);
      assert.equal(a2.computed.product_views, 0);
      assert.equal(p2.computed.product_views, 2, "the phone's events went with it");
      assert.equal(a2.computed.events + p2.computed.events, merged.computed.events);
      // The split holds: the same evidence arriving again is refused.
      await send(srv, 'identify', { anonymousId: 'phone-app', traits: { email: 'alice@example.org' } });
      assert.equal((await lookup(srv, { anonymous_id: 'phone-app' })).id, split);
      // And after a restart.
      await srv.restart();
      assert.equal((await lookup(srv, { anonymous_id: 'phone-app' })).id, split);
      assert.equal((await lookup(srv, { user_id: 'alice' })).computed.product_views, 0);

      // Bad input to unmerge.
      r = await admin(srv, 'POST', `/v1/profiles/${alice.id}/unmerge`, {});
      assert.equal(r.status, 400);
      assert.equal(r.json.error.code, 'missing_field');
      r = await admin(srv, 'POST', `/v1/profiles/${alice.id}/unmerge`, { link: 'nonsense' });
      assert.equal(r.status, 400);
      assert.equal(r.json.error.field, 'link');
      r = await admin(srv, 'POST', `/v1/profiles/${alice.id}/unmerge`, { link: '999999.1' });
      assert.equal(r.status, 404);
      r = await admin(srv, 'POST', '/v1/profiles/p_424242/unmerge', { link: '1.1' });
      assert.equal(r.status, 404);
      await srv.stop();
    },
  ),
);
let srv2;

test(
  'export holds everything; erasure removes the person, and the identity starts afresh',
  logOnFail(
    () => [srv3],
    async () => {
      srv3 = new Server({ tag: 'c360-gdpr' });
      const srv = srv3;
      await srv.start();
      await send(srv, 'identify', { userId: 'eve', anonymousId: 'eve-anon', traits: { email: 'eve@example.org', city: 'Berlin' } });
      for (let i = 0; i < 5; i++) await send(srv, 'track', { userId: 'eve', event: 'Product Viewed', properties: { product_id: `p${i}` } });
      await send(srv, 'track', { userId: 'someone-else', event: 'Product Viewed', properties: { product_id: 'p1' } });
      const p = await lookup(srv, { email: 'eve@example.org' });
      const ex = await ok(srv.get(`/v1/profiles/${p.id}/export`));
      assert.equal(ex.id, p.id);
      assert.equal(ex.events.length, 6);
      assert.equal(ex.traits.city, 'Berlin');
      assert.ok(ex.identities.length >= 3);

      const r = await admin(srv, 'DELETE', `/v1/profiles/${p.id}`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.erased, true);
      assert.equal(r.json.events, 6);
      assert.equal((await srv.get(`/v1/profiles/${p.id}`)).status, 404);
      assert.equal((await srv.get('/v1/profiles/lookup?email=eve@example.org')).status, 404);
      assert.equal((await srv.allEvents({ user_id: 'eve' })).length, 0, 'the events are deleted from the store');
      assert.equal((await srv.allEvents({ user_id: 'someone-else' })).length, 1, 'nobody else is touched');
      assert.equal((await admin(srv, 'DELETE', `/v1/profiles/${p.id}`)).status, 404);

      // Both are audited: who (the key), when, which profile — and nothing personal.
      let audit = await ok(srv.get('/v1/audit'));
      const mine = audit.entries.filter((a) => a.profile === p.id).map((a) => a.action);
      assert.deepEqual(mine, ['export', 'erase'], JSON.stringify(audit));
      assert.ok(audit.entries.every((a) => Number.isInteger(a.key) && a.at));
      assert.ok(!JSON.stringify(audit).includes('eve@example.org'), 'the audit holds no personal data');

      // Erased and restarted: still gone. The identity seen again is a new person.
      await srv.restart();
      audit = await ok(srv.get('/v1/audit'));
      assert.deepEqual(audit.entries.filter((a) => a.profile === p.id).map((a) => a.action), ['export', 'erase'], 'the audit survives a restart');
      assert.equal((await srv.get('/v1/profiles/lookup?user_id=eve')).status, 404);
      await send(srv, 'identify', { userId: 'eve', traits: { email: 'eve@example.org' } });
      const again = await lookup(srv, { user_id: 'eve' });
      assert.notEqual(again.id, p.id);
      assert.equal(again.computed.events, 1);
      assert.equal(again.traits.city, undefined);
      await srv.stop();
    },
  ),
);
let srv3;

test(
  'offers: a limit of 5 holds under 40 concurrent redemptions; eligibility is the profile',
  logOnFail(
    () => [srv4],
    async () => {
      srv4 = new Server({ tag: 'c360-offers' });
      const srv = srv4;
      await srv.start();
      let r = await admin(srv, 'PUT', '/v1/offers/welcome', {
        name: 'Welcome 10%', discount: { type: 'percent', value: 10 }, code_type: 'shared', code: 'WELCOME10',
        eligibility: 'profile.orders_count == 0', limits: { per_customer: 1, total: 5 },
      });
      assert.equal(r.status, 200, r.text);
      const ids = [];
      for (let i = 0; i < 40; i++) {
        await send(srv, 'identify', { userId: `new-${i}` });
        ids.push((await lookup(srv, { user_id: `new-${i}` })).id);
      }
      await send(srv, 'track', { userId: 'loyal', event: 'Order Completed', properties: { order_id: 'L1', revenue: 10 } });
      const loyal = (await lookup(srv, { user_id: 'loyal' })).id;
      r = await admin(srv, 'POST', '/v1/offers/welcome/validate', { profile: loyal, code: 'welcome10' });
      assert.equal(r.status, 409);
      assert.equal(r.json.error.code, 'not_eligible');
      const el = await ok(srv.get(`/v1/profiles/${loyal}/offers`));
      assert.equal(el.offers.length, 0, 'a loyal customer never sees a new-customer offer');
      assert.equal((await ok(srv.get(`/v1/profiles/${ids[0]}/offers`))).offers.length, 1);

      const results = await Promise.all(ids.map((pid, i) => admin(srv, 'POST', '/v1/offers/welcome/redeem', { profile: pid, code: 'WELCOME10', order_id: `ord-${i}` })));
      const won = results.filter((x) => x.status === 200).length;
      assert.equal(won, 5, results.map((x) => x.status).join(','));
      for (const x of results.filter((y) => y.status !== 200)) assert.equal(x.json.error.code, 'limit_reached');
      await srv.restart();
      const offer = await ok(srv.get('/v1/offers/welcome'));
      assert.equal(offer.stats.redemptions, 5, JSON.stringify(offer.stats));
      // An order event carrying a coupon redeems it; cancelling the order gives it back.
      r = await admin(srv, 'PUT', '/v1/offers/vip', { name: 'VIP', discount: { type: 'amount', value: 5, currency: 'EUR' }, code_type: 'shared', code: 'VIP5', limits: { per_customer: 3 } });
      assert.equal(r.status, 200, r.text);
      await send(srv, 'track', { userId: 'loyal', event: 'Order Completed', properties: { order_id: 'L2', revenue: 20, coupon: 'vip5' } });
      assert.equal((await ok(srv.get('/v1/offers/vip'))).stats.redemptions, 1);
      await send(srv, 'track', { userId: 'loyal', event: 'Order Cancelled', properties: { order_id: 'L2', total: 20 } });
      assert.equal((await ok(srv.get('/v1/offers/vip'))).stats.redemptions, 0);
      // A per-customer limit follows the customer through a merge: what an anonymous device
      // redeemed counts once the device turns out to be a known customer.
      r = await admin(srv, 'PUT', '/v1/offers/once', { name: 'Once', discount: { type: 'percent', value: 5 }, code_type: 'shared', code: 'ONCE5', limits: { per_customer: 1 } });
      assert.equal(r.status, 200, r.text);
      // The customer is known first; the device (a newer profile) is merged into them later.
      await send(srv, 'identify', { userId: 'u-m', traits: { email: 'm@example.org' } });
      await send(srv, 'page', { anonymousId: 'dev-a' });
      const pa = (await lookup(srv, { anonymous_id: 'dev-a' })).id;
      const pu = (await lookup(srv, { user_id: 'u-m' })).id;
      assert.notEqual(pa, pu);
      r = await admin(srv, 'POST', '/v1/offers/once/redeem', { profile: pa, code: 'ONCE5', order_id: 'o-a' });
      assert.equal(r.status, 200, r.text);
      await send(srv, 'identify', { anonymousId: 'dev-a', userId: 'u-m' });
      const merged = (await lookup(srv, { user_id: 'u-m' })).id;
      assert.equal(merged, pu, 'the older profile survives');
      assert.equal((await lookup(srv, { anonymous_id: 'dev-a' })).id, merged);
      r = await admin(srv, 'POST', '/v1/offers/once/redeem', { profile: merged, code: 'ONCE5', order_id: 'o-b' });
      assert.equal(r.status, 409, r.text);
      assert.equal(r.json.error.code, 'customer_limit_reached');
      r = await admin(srv, 'PUT', '/v1/offers/bad', { name: 'x', discount: { type: 'percent', value: 10 }, code_type: 'shared', code: 'BAD', eligibility: 'profile.orders_count ==' });
      assert.equal(r.status, 400);
      assert.equal(r.json.error.field, 'eligibility');
      await srv.stop();
    },
  ),
);
let srv4;

test(
  'consent: identify traits and the endpoint feed one ledger; channels show what a send may do',
  logOnFail(
    () => [srv5],
    async () => {
      srv5 = new Server({ tag: 'c360-consent' });
      const srv = srv5;
      await srv.start();
      await send(srv, 'identify', { userId: 'cara', timestamp: at(0), traits: { email: 'cara@example.org', consent: { email: { marketing: true } } } });
      let p = await lookup(srv, { user_id: 'cara' });
      assert.equal(p.consent.email.marketing.status, 'granted');
      assert.equal(p.consent.email.marketing.source, 'identify');
      const email = p.computed.channels.find((c) => c.channel === 'email');
      assert.equal(email.marketing, true);
      // An unsubscribe through the API, later in time, wins; the history keeps both.
      let r = await admin(srv, 'POST', `/v1/profiles/${p.id}/consent`, {
        records: [{ channel: 'email', purpose: 'marketing', status: 'withdrawn', at: at(60), source: 'unsubscribe_link', proof: 'msg-123', actor: 'customer' }],
      });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.email.marketing.status, 'withdrawn');
      p = await lookup(srv, { user_id: 'cara' });
      assert.equal(p.computed.channels.find((c) => c.channel === 'email').marketing, false);
      // An older opt-in arriving late does not override the newer withdrawal.
      await send(srv, 'identify', { userId: 'cara', timestamp: at(30), traits: { email_opt_in: true } });
      p = await lookup(srv, { user_id: 'cara' });
      assert.equal(p.consent.email.marketing.status, 'withdrawn');
      const ex = await ok(srv.get(`/v1/profiles/${p.id}/export`));
      assert.ok(ex.consent_history.records.length >= 2, JSON.stringify(ex.consent_history));
      // Refused cleanly: a misspelt field names itself, and nothing is recorded.
      r = await admin(srv, 'POST', `/v1/profiles/${p.id}/consent`, { records: [{ channel: 'email', purpos: 'marketing', status: 'granted' }] });
      assert.equal(r.status, 400);
      assert.match(r.json.error.field, /records\[0\]/);
      r = await admin(srv, 'POST', `/v1/profiles/${p.id}/consent`, { channel: 'pigeon', purpose: 'marketing', status: 'granted' });
      assert.equal(r.status, 400);
      assert.equal(r.json.error.field, 'channel');
      await srv.restart();
      assert.equal((await lookup(srv, { user_id: 'cara' })).consent.email.marketing.status, 'withdrawn');
      await srv.stop();
    },
  ),
);
let srv5;

test(
  'catalogue: bulk upsert, partial updates, availability per customer, change events',
  logOnFail(
    () => [srv6],
    async () => {
      srv6 = new Server({ tag: 'c360-catalog' });
      const srv = srv6;
      await srv.start();
      let r = await admin(srv, 'PUT', '/v1/catalog/products', [
        { id: 'shoe-1', title: 'Runner', price: 120, currency: 'EUR', brand: 'Acme', categories: ['Shoes'], stock: { berlin: 3, hamburg: 0 } },
        { id: 'vip-1', title: 'Members jacket', price: 300, currency: 'EUR', stock: 5, availability: { segments: ['vip'] } },
        { id: 'de-1', title: 'Only in DE', price: 10, currency: 'EUR', stock: 1, availability: { markets: ['de'] } },
        { id: 'first-1', title: 'First order gift', price: 0, currency: 'EUR', stock: 9, availability: { rule: 'profile.orders_count == 0' } },
      ]);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.upserted, 4);
      await send(srv, 'identify', { userId: 'vera', traits: { segments: ['vip'], market: 'de' } });
      await send(srv, 'identify', { userId: 'olaf', traits: { market: 'at' } });
      await send(srv, 'track', { userId: 'olaf', event: 'Order Completed', properties: { order_id: 'x', revenue: 5 } });
      const vera = (await lookup(srv, { user_id: 'vera' })).id;
      const olaf = (await lookup(srv, { user_id: 'olaf' })).id;
      const avail = async (pid, who) => (await ok(srv.get(`/v1/catalog/products/${pid}/available?profile=${who}`)));
      assert.equal((await avail('vip-1', vera)).available, true);
      assert.equal((await avail('vip-1', olaf)).reason, 'segment');
      assert.equal((await avail('de-1', vera)).available, true);
      assert.equal((await avail('de-1', olaf)).reason, 'not_in_market');
      assert.equal((await avail('first-1', vera)).available, true);
      assert.equal((await avail('first-1', olaf)).reason, 'rule');
      // Sold out the moment stock is set to zero; back in stock is a change event too.
      r = await admin(srv, 'PATCH', '/v1/catalog/products/shoe-1', { stock: { berlin: 0 } });
      assert.equal(r.status, 200, r.text);
      assert.equal((await avail('shoe-1', vera)).reason, 'out_of_stock');
      r = await admin(srv, 'PATCH', '/v1/catalog/products/shoe-1', { stock: { hamburg: 4 }, sale_price: 99 });
      assert.equal(r.status, 200, r.text);
      assert.equal((await avail('shoe-1', vera)).available, true);
      const ch = await ok(srv.get('/v1/catalog/changes'));
      const kinds = ch.changes.filter((c) => c.product_id === 'shoe-1').map((c) => JSON.stringify(c));
      assert.ok(kinds.some((k) => k.includes('sold_out')), kinds.join('\n'));
      assert.ok(kinds.some((k) => k.includes('back_in_stock')), kinds.join('\n'));
      assert.ok(kinds.some((k) => k.includes('price_drop')), kinds.join('\n'));
      // Products seen in events fill the catalogue; a price in an event never changes a catalogue price.
      await send(srv, 'track', { userId: 'vera', event: 'Product Viewed', properties: { product_id: 'new-9', name: 'Seen in an event', price: 15, brand: 'Zed' } });
      await send(srv, 'track', { userId: 'vera', event: 'Product Viewed', properties: { product_id: 'shoe-1', price: 1 } });
      assert.equal((await ok(srv.get('/v1/catalog/products/new-9'))).title, 'Seen in an event');
      assert.equal((await ok(srv.get('/v1/catalog/products/shoe-1'))).price, 120);
      // Bad input names the product and field, and stores nothing.
      r = await admin(srv, 'PUT', '/v1/catalog/products', [{ id: 'ok-1', price: 1 }, { id: 'bad', price: 'cheap' }]);
      assert.equal(r.status, 400);
      assert.match(r.json.error.field, /^\[1\]\.price/);
      assert.equal((await srv.get('/v1/catalog/products/ok-1')).status, 404);
      r = await admin(srv, 'PUT', '/v1/catalog/products', [{ id: 'r', price: 1, availability: { rule: 'profile.orders_count ==' } }]);
      assert.equal(r.status, 400);
      assert.match(r.json.error.field, /rule/);
      r = await admin(srv, 'PATCH', '/v1/catalog/products/nope', { price: 1 });
      assert.equal(r.status, 404);
      await srv.restart();
      assert.equal((await ok(srv.get('/v1/catalog/products/shoe-1'))).sale_price, 99);
      assert.equal((await avail('de-1', olaf)).reason, 'not_in_market');
      const list = await ok(srv.get('/v1/catalog/products?limit=2'));
      assert.equal(list.products.length, 2);
      assert.ok(list.next);
      await srv.stop();
    },
  ),
);
let srv6;

test(
  'engaged import --products loads a catalogue the server serves, refusing bad lines by number',
  logOnFail(
    () => [srv7],
    async () => {
      const data = tmpDataDir('c360-import');
      const input = [
        JSON.stringify({ id: 'i1', title: 'Kettle', price: 30, currency: 'EUR', stock: 2 }),
        JSON.stringify({ id: 'i2', title: 'Bad price', price: -1 }),
        '{"id": "i3", "name": "Mug", "price": 8, "stock": {"berlin": 0}}',
        '{not json',
        JSON.stringify({ id: 'i1', title: 'Kettle v2', price: 28, currency: 'EUR', stock: 2 }),
      ].join('\n');
      const r = runCli(['import', '--products', '-', '--data', data], { input });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /rejected line 2: price/);
      assert.match(r.stderr, /rejected line 4:/);
      assert.match(r.stderr, /3 stored, 0 duplicates skipped, 2 rejected/);
      srv7 = new Server({ tag: 'c360-import', dataDir: data });
      const srv = srv7;
      await srv.start();
      const list = await ok(srv.get('/v1/catalog/products'));
      assert.deepEqual(list.products.map((p) => `${p.id}:${p.title}`), ['i1:Kettle v2', 'i3:Mug']);
      assert.equal((await ok(srv.get('/v1/catalog/products/i3/available'))).reason, 'out_of_stock');
      await srv.stop();
      fs.rmSync(data, { recursive: true, force: true });
    },
  ),
);
let srv7;
