// A deterministic mix of SDK calls (track incl. e-commerce, identify, page, screen, group, alias) and the
// checks that compare what a real SDK put on the wire with what engaged stored.
import assert from 'node:assert/strict';
import { deepEqual, RFC3339_MS, short } from './match.mjs';

export const COMMERCE_KINDS = {
  'Order Completed': 'order_completed',
  'Product Viewed': 'product_viewed',
  'Product Added': 'product_added',
  'Completed Order': 'order_completed',
};

// E-commerce numeric fields the server turns from numeric strings into numbers.
const PRODUCT_NUM = ['price', 'quantity', 'position'];
const ORDER_NUM = ['subtotal', 'total', 'revenue', 'shipping', 'tax', 'discount', 'value', 'price', 'quantity'];

/**
 * @param {string} tag  prefix for ids, unique per run
 * @param {number} n    number of calls
 * @returns {{method:string, params:object}[]}
 */
export function planCalls(tag, n) {
  const calls = [];
  for (let i = 0; i < n; i++) {
    const userId = `${tag}-user-${i % 17}`;
    const messageId = `${tag}-m-${i}`;
    switch (i % 10) {
      case 0:
        calls.push({
          method: 'identify',
          params: {
            userId,
            messageId,
            traits: { email: `user${i}@example.com`, name: `Ada ${i}`, age: 20 + (i % 50), vip: i % 20 === 0, score: i / 8, address: { city: 'Zürich', zip: '8001' } },
          },
        });
        break;
      case 1:
        calls.push({
          method: 'track',
          params: {
            userId,
            messageId,
            event: i % 20 === 1 ? 'Order Completed' : 'Completed Order',
            properties: {
              order_id: `${tag}-o-${i}`,
              total: 27.5,
              revenue: i % 3 === 0 ? '25.25' : 25.25, // numeric string, stored as a number
              shipping: 3,
              tax: 2,
              discount: 2.5,
              coupon: 'hasbros',
              currency: 'USD',
              products: [
                { product_id: '507f1f77', sku: '45790-32', name: 'Monopoly', price: 19, quantity: 1, category: 'Games' },
                { product_id: '505bd767', sku: '46493-32', name: 'Uno', price: i % 3 === 0 ? '3.99' : 3.99, quantity: 2 },
              ],
            },
          },
        });
        break;
      case 2:
        calls.push({
          method: 'track',
          params: { userId, messageId, event: 'Product Viewed', properties: { product_id: `p-${i}`, name: 'Tea pot', price: 12.9, currency: 'EUR', position: 3 } },
        });
        break;
      case 3:
        calls.push({
          method: 'page',
          params: { userId, messageId, name: 'Product Detail', properties: { path: `/p/${i}`, title: 'Tea pot – Shop', referrer: 'https://example.com/?q=tea', visits: i } },
        });
        break;
      case 4:
        calls.push({ method: 'screen', params: { anonymousId: `${tag}-anon-${i}`, messageId, name: 'Cart', properties: { items: 3, empty: false } } });
        break;
      case 5:
        calls.push({ method: 'group', params: { userId, messageId, groupId: `${tag}-g-${i % 3}`, traits: { name: 'Acme GmbH', employees: 42, industry: null } } });
        break;
      case 6:
        calls.push({ method: 'alias', params: { userId, messageId, previousId: `${tag}-anon-${i}` } });
        break;
      case 7:
        calls.push({
          method: 'track',
          params: {
            anonymousId: `${tag}-anon-${i}`,
            messageId,
            event: 'Newsletter Signup ✓',
            properties: { nested: { a: [1, 2.5, 'x', null, true, { b: -0.125 }] }, text: 'Grüße 😀 "quoted" \\ back', big: 9007199254740991, neg: -42 },
            context: { locale: 'de-CH', campaign: { source: 'newsletter', medium: 'email' } },
          },
        });
        break;
      case 8:
        calls.push({
          method: 'track',
          params: {
            userId,
            messageId,
            event: 'Backfilled',
            timestamp: new Date(Date.UTC(2024, 4, 1, 10, 0, 0, 123) + i * 1000),
            properties: { i },
          },
        });
        break;
      default:
        calls.push({
          method: 'track',
          params: { userId, messageId, event: 'Product Added', properties: { cart_id: `c-${i % 5}`, product_id: `p-${i}`, sku: 'S-1', price: 0.1, quantity: 3 } },
        });
    }
  }
  return calls;
}

/** The properties the server must store for a wire event: e-commerce numeric strings become numbers. */
export function expectedProperties(wire) {
  const props = wire.properties;
  if (!props || wire.type !== 'track' || !COMMERCE_KINDS[wire.event]) return props;
  const p = structuredClone(props);
  for (const f of ORDER_NUM) if (typeof p[f] === 'string' && p[f].trim() !== '' && !Number.isNaN(Number(p[f]))) p[f] = Number(p[f]);
  if (Array.isArray(p.products)) {
    for (const pr of p.products) {
      for (const f of PRODUCT_NUM) if (typeof pr[f] === 'string' && !Number.isNaN(Number(pr[f]))) pr[f] = Number(pr[f]);
    }
  }
  return p;
}

function isSubset(sub, sup) {
  if (sub === null || typeof sub !== 'object' || Array.isArray(sub)) return deepEqual(sub, sup);
  if (!sup || typeof sup !== 'object' || Array.isArray(sup)) return false;
  return Object.entries(sub).every(([k, v]) => isSubset(v, sup[k]));
}

const ms = (s) => Date.parse(s);

/**
 * Compares one stored event with the event the SDK sent (wire) inside a batch envelope (env).
 * Returns a list of problems.
 */
export function compareStored(stored, wire, env, { writeKey, libraryName }) {
  const p = [];
  const eq = (field, a, b) => {
    if (!deepEqual(a, b)) p.push(`${field}: stored ${short(a)} ≠ sent ${short(b)}`);
  };
  eq('type', stored.type, wire.type);
  eq('messageId', stored.messageId, wire.messageId);
  for (const f of ['userId', 'anonymousId', 'event', 'name', 'groupId', 'previousId']) {
    if (wire[f] !== undefined && wire[f] !== null) eq(f, stored[f], String(wire[f]));
  }
  if (wire.properties && Object.keys(wire.properties).length) eq('properties', stored.properties, expectedProperties(wire));
  if (wire.traits && Object.keys(wire.traits).length) eq('traits', stored.traits, wire.traits);
  if (wire.integrations && Object.keys(wire.integrations).length) eq('integrations', stored.integrations, wire.integrations);
  const ctx = { ...(env.context ?? {}), ...(wire.context ?? {}) };
  if (!isSubset(ctx, stored.context)) p.push(`context: stored ${short(stored.context)} does not contain sent ${short(ctx)}`);
  if (!stored.context?.library?.name) p.push(`context.library missing: ${short(stored.context)}`);
  else if (libraryName && stored.context.library.name !== libraryName) p.push(`context.library.name ${stored.context.library.name} ≠ ${libraryName}`);
  const kind = wire.type === 'track' ? COMMERCE_KINDS[wire.event] : undefined;
  if (kind) eq('kind', stored.kind, kind);
  for (const f of ['timestamp', 'receivedAt']) {
    if (typeof stored[f] !== 'string' || !RFC3339_MS.test(stored[f])) p.push(`${f} ${short(stored[f])} is not RFC 3339 UTC with ms`);
  }
  for (const f of ['originalTimestamp', 'sentAt']) {
    const sent = wire[f] ?? (f === 'sentAt' ? env.sentAt : undefined);
    if (sent !== undefined && (typeof stored[f] !== 'string' || ms(stored[f]) !== ms(sent))) {
      p.push(`${f}: stored ${short(stored[f])} ≠ sent ${short(sent)}`);
    }
  }
  if (wire.timestamp !== undefined) {
    if (ms(stored.timestamp) !== ms(wire.timestamp)) p.push(`timestamp: stored ${stored.timestamp} ≠ sent ${wire.timestamp}`);
  } else if (wire.originalTimestamp !== undefined) {
    // timestamp = receivedAt − (sentAt − originalTimestamp); the SDK may set sentAt on the item and on the
    // envelope a millisecond apart, so either one is fine.
    const got = ms(stored.timestamp);
    const ok = [wire.sentAt, env.sentAt]
      .filter((s) => s !== undefined)
      .some((s) => Math.abs(got - (ms(stored.receivedAt) - (ms(s) - ms(wire.originalTimestamp)))) <= 2);
    if (!ok) {
      p.push(
        `timestamp ${stored.timestamp} ≠ receivedAt ${stored.receivedAt} − (sentAt ${wire.sentAt ?? env.sentAt} − originalTimestamp ${wire.originalTimestamp})`,
      );
    }
  }
  const s = JSON.stringify(stored);
  if (/"writeKey"/.test(s) || (writeKey && s.includes(writeKey))) p.push('stored event contains the write key');
  return p;
}

/**
 * Checks a full store read against the batches the SDK sent.
 * @param {object[]} stored   every event read back (arrival order)
 * @param {{envelope:object, events:object[]}[]} batches  what went over the wire (one entry per 2xx batch)
 */
export function checkAgainstWire(stored, batches, opts) {
  const byId = new Map();
  stored.forEach((e, pos) => {
    if (!byId.has(e.messageId)) byId.set(e.messageId, []);
    byId.get(e.messageId).push({ e, pos });
  });
  const problems = [];
  const wireIds = new Set();
  for (const b of batches) {
    let lastPos = -1;
    for (const w of b.events) {
      if (wireIds.has(w.messageId)) continue; // a retried batch: same events again
      wireIds.add(w.messageId);
      const found = byId.get(w.messageId) ?? [];
      if (found.length !== 1) {
        problems.push(`messageId ${w.messageId} stored ${found.length} times`);
        continue;
      }
      const { e, pos } = found[0];
      if (pos < lastPos) problems.push(`messageId ${w.messageId} stored before an earlier item of its batch`);
      lastPos = pos;
      for (const x of compareStored(e, w, b.envelope, opts)) problems.push(`${w.type} ${w.messageId}: ${x}`);
    }
  }
  return { problems, wireIds, byId };
}

export function assertNoProblems(problems, what) {
  assert.equal(problems.length, 0, `${what}: ${problems.length} problem(s):\n  ${problems.slice(0, 40).join('\n  ')}`);
}
