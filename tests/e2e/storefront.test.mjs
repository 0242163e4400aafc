// engaged's own browser tracker (/sdk/engaged.js), its recommendations widget, and the demo
// storefront that `engaged demo` serves at /demo/ — in headless Chromium (lib/browser.mjs).
//
// A scripted visit of the storefront (views, search, cart, login, order) must store every event
// exactly once and end in one profile; a page-unload beacon must arrive; the widget must show only
// in-stock products (a product sold out in the shop admin is gone from the next answer), never what
// is in the cart, and its clicks must be attributed. On a page of another origin with a CSP of
// script-src 'self' and a self-hosted copy of the tracker, consent 'required' must send and store
// nothing before consent; and analytics.js's visitors keep their ids under engaged.js.
// Screenshots of the storefront go to docs/img/ when ENGAGED_SCREENSHOTS=1 (else to a temp dir).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, openPage, startPageServer } from './lib/browser.mjs';
import { basic, request, sleep } from './lib/http.mjs';
import { logOnFail, REPO_ROOT, Server, tmpDataDir } from './lib/server.mjs';

const SHOTS = process.env.ENGAGED_SCREENSHOTS === '1'
  ? path.join(REPO_ROOT, 'docs/img')
  : tmpDataDir('shots');
const RENDERED = '[data-engaged-recs][data-recommendation-id^="rec_"]';

let srv; // engaged demo
let browser;
let pages; // a page server on another origin (consent, CSP, analytics.js)
let tracker; // /sdk/engaged.js as engaged serves it

// Installed in every page before its scripts: records what the tracker hands to fetch and
// sendBeacon for /v1/b (messageIds, and how they went), in sessionStorage, which survives the
// navigations of one tab — Playwright does not report a beacon sent while a page unloads. Also
// records CSP violations.
const RECORDER = () => {
  const texts = new WeakMap();
  const NativeBlob = window.Blob;
  window.Blob = class extends NativeBlob {
    constructor(parts, o) {
      super(parts, o);
      if (parts && parts.length === 1 && typeof parts[0] === 'string') texts.set(this, parts[0]);
    }
  };
  const note = (via, text) => {
    const ids = (JSON.parse(text).batch || []).map((e) => e.messageId);
    const log = JSON.parse(sessionStorage.getItem('sent') || '[]');
    log.push({ via, ids });
    sessionStorage.setItem('sent', JSON.stringify(log));
  };
  const beacon = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = (url, data) => {
    if (String(url).endsWith('/v1/b')) note('beacon', texts.get(data) ?? data);
    return beacon(url, data);
  };
  const f = window.fetch;
  window.fetch = (url, o) => {
    if (String(url).endsWith('/v1/b')) note('fetch', typeof o.body === 'string' ? o.body : texts.get(o.body));
    return f(url, o);
  };
  document.addEventListener('securitypolicyviolation', (e) => {
    const v = JSON.parse(sessionStorage.getItem('csp') || '[]');
    v.push(`${e.violatedDirective} ${e.blockedURI}`);
    sessionStorage.setItem('csp', JSON.stringify(v));
  });
};

// ---- Helpers ----

/** GET with the raw bytes (no decoding): for Content-Encoding checks. */
function raw(url, headers = {}) {
  return new Promise((resolve, reject) => {
    http.get(url, { headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

async function metric(name) {
  const r = await srv.get('/metrics');
  const m = r.text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

/** Waits (bounded) until every id is stored; then each must be stored exactly once. Returns them by id. */
async function storedOnce(anonymousId, ids, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let byId;
  for (;;) {
    byId = new Map();
    for (const e of await srv.allEvents({ anonymous_id: anonymousId })) byId.set(e.messageId, [...(byId.get(e.messageId) ?? []), e]);
    if (ids.every((id) => byId.has(id)) || Date.now() > deadline) break;
    await sleep(200);
  }
  const out = {};
  for (const id of ids) {
    assert.equal(byId.get(id)?.length ?? 0, 1, `messageId ${id} stored ${byId.get(id)?.length ?? 0} times`);
    out[id] = byId.get(id)[0];
  }
  return { byId: out, all: byId };
}

/** The product ids the widget on the page shows, once it has rendered an answer newer than `after`. */
async function widgetItems(page, after = '') {
  await page.waitForFunction((prev) => {
    const box = document.querySelector('[data-engaged-recs]');
    const id = box && box.getAttribute('data-recommendation-id');
    return id && id.startsWith('rec_') && id !== prev;
  }, after, { timeout: 15000 });
  return page.evaluate(() => {
    const box = document.querySelector('[data-engaged-recs]');
    const ids = [...box.querySelectorAll('[data-engaged-item]')].map((a) => new URL(a.href).searchParams.get('id'));
    return { rid: box.getAttribute('data-recommendation-id'), ids };
  });
}

async function inStock(id) {
  const r = await srv.get(`/v1/catalog/products/${id}`);
  assert.equal(r.status, 200, r.text);
  return r.json.in_stock;
}

const sent = (page) => page.evaluate(() => JSON.parse(sessionStorage.getItem('sent') || '[]'));
const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `storefront-${name}.png`) });

before(async () => {
  srv = new Server({ tag: 'storefront', command: 'demo' });
  await srv.start({ readyTimeoutMs: 30000 });
  const r = await raw(`${srv.url}/sdk/engaged.js`);
  assert.equal(r.status, 200);
  tracker = r.body.toString('utf8');
  // A shop's own origin: the tracker self-hosted, its own script, a CSP that allows only those.
  const csp = `default-src 'self'; script-src 'self'; connect-src ${srv.url}; img-src 'self' data: ${srv.url}; style-src 'self'`;
  const shopPage = (consent) => ({
    headers: { 'Content-Security-Policy': csp },
    body: `<!doctype html><html><head><meta charset="utf-8"><title>shop (${consent})</title>
<script src="/js/engaged.js" async></script><script src="/js/app.js" data-consent="${consent}"></script></head>
<body><h1>A shop</h1><div data-engaged-recs="home" data-limit="3"></div></body></html>`,
  });
  pages = await startPageServer({
    '/consent.html': shopPage('required'),
    '/granted.html': shopPage('granted'),
    '/js/engaged.js': { body: tracker, type: 'text/javascript' },
    // The loading snippet's stub, then load(): the engaged URL and key come from the query string.
    '/js/app.js': {
      type: 'text/javascript',
      body: `(function () {
  var e = (window.engaged = window.engaged || []);
  if (!e.load) ['load', 'page', 'track', 'identify', 'reset', 'consent', 'ready', 'flush', 'productViewed'].forEach(function (m) {
    e[m] = function () { e.push([m].concat([].slice.call(arguments))); return e; };
  });
  var q = new URLSearchParams(location.search);
  e.load({ writeKey: q.get('key'), host: q.get('engaged'), consent: document.currentScript.dataset.consent });
})();`,
    },
    '/segment.html': `<!doctype html><html><head><meta charset="utf-8"><title>shop (analytics.js)</title>
<script>
  var q = new URLSearchParams(location.search);
  var analytics = (window.analytics = []);
  ['identify', 'reset', 'track', 'page', 'ready'].forEach(function (m) {
    analytics[m] = function () { var a = [].slice.call(arguments); a.unshift(m); analytics.push(a); return analytics; };
  });
  analytics._writeKey = q.get('key');
  analytics._cdn = q.get('engaged');
  window.sdkReady = new Promise(function (resolve) { analytics.ready(function () { resolve(true); }); });
</script>
<script src="/vendor/segment/standalone.js"></script></head><body></body></html>`,
    '/vendor/segment/standalone.js': { file: 'node_modules/@segment/analytics-next/dist/umd/standalone.js', type: 'text/javascript' },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await pages?.close();
  if (srv) await srv.close();
});

async function demoPage() {
  const o = await openPage(browser, { hosts: [srv.url], engaged: srv.url });
  await o.context.addInitScript(RECORDER);
  await o.page.setViewportSize({ width: 1200, height: 860 });
  return o;
}

// ---- Served by engaged ----

describe('what engaged serves', () => {
  test('/sdk/engaged.js: gzip when accepted, ETag and 304, a day of caching, small', logOnFail(() => srv, async () => {
    const plain = await raw(`${srv.url}/sdk/engaged.js`);
    assert.equal(plain.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.equal(plain.headers['cache-control'], 'public, max-age=86400');
    assert.equal(plain.headers.vary, 'Accept-Encoding');
    assert.equal(plain.body.toString(), fs.readFileSync(path.join(REPO_ROOT, 'web/sdk/engaged.js'), 'utf8'), 'the file as written');
    assert.match(plain.headers.etag, /^"[0-9a-f]{16}"$/);
    const gz = await raw(`${srv.url}/sdk/engaged.js`, { 'Accept-Encoding': 'gzip, deflate, br' });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal(gz.headers.etag, plain.headers.etag.replace(/"$/, '-gz"'));
    assert.ok(gz.body.length < 6144, `engaged.js is ${gz.body.length} bytes gzipped (budget 6 KB)`);
    assert.deepEqual(zlib.gunzipSync(gz.body), plain.body);
    for (const [tag, enc] of [[gz.headers.etag, 'gzip'], [plain.headers.etag, 'gzip'], [`W/${plain.headers.etag}`, undefined]]) {
      const again = await raw(`${srv.url}/sdk/engaged.js`, { 'If-None-Match': tag, ...(enc ? { 'Accept-Encoding': enc } : {}) });
      assert.equal(again.status, 304, tag);
      assert.equal(again.body.length, 0);
    }
    assert.equal((await raw(`${srv.url}/sdk/engaged.js`, { 'If-None-Match': '"other"' })).status, 200);
    assert.equal((await raw(`${srv.url}/sdk/engaged.js`, { 'Accept-Encoding': 'gzip;q=0' })).headers['content-encoding'], undefined);
    assert.equal((await raw(`${srv.url}/sdk/other.js`)).status, 404);
  }));

  test('the storefront and its endpoints: demo pages under a strict CSP; none of it under engaged serve',
    logOnFail(() => srv, async () => {
      const home = await raw(`${srv.url}/demo/`);
      assert.equal(home.status, 200);
      assert.equal(home.headers['content-type'], 'text/html; charset=utf-8');
      assert.match(home.headers['content-security-policy'], /script-src 'self';/);
      assert.equal(home.headers['cache-control'], 'no-cache');
      const moved = await raw(`${srv.url}/demo`);
      assert.equal(moved.status, 301);
      assert.equal(moved.headers.location, '/demo/');
      assert.equal((await raw(`${srv.url}/demo/shop.css`)).headers['content-type'], 'text/css; charset=utf-8');
      assert.equal((await raw(`${srv.url}/demo/img-shoes.svg`)).headers['content-type'], 'image/svg+xml');
      assert.equal((await raw(`${srv.url}/demo/nothing.html`)).status, 404);
      const cfg = await request({ url: `${srv.url}/demo/api/config` });
      assert.deepEqual(cfg.json, { writeKey: srv.writeKey, signing: true, version: cfg.json.version });
      // The demo's signer is the HMAC the recommendations endpoint checks.
      const sig = await request({ url: `${srv.url}/demo/api/sign?user_id=ada` });
      assert.match(sig.json.signature, /^[0-9a-f]{64}$/);
      const asAda = await srv.get(`/v1/recommendations?user_id=ada&signature=${sig.json.signature}&limit=2`, { auth: 'write' });
      assert.equal(asAda.status, 200, asAda.text);
      const forged = await srv.get(`/v1/recommendations?user_id=bob&signature=${sig.json.signature}&limit=2`, { auth: 'write' });
      assert.equal(forged.status, 403);
      for (const [url, status, code, field] of [
        ['/demo/api/sign', 400, 'missing_field', 'user_id'],
        ['/demo/api/sign?user_id=a&x=1', 400, 'invalid_field', 'x'],
        [`/demo/api/sign?user_id=${'u'.repeat(256)}`, 400, 'invalid_field', 'user_id'],
        ['/demo/api/profile?email=a@b.c', 400, 'invalid_field', 'email'],
        ['/demo/api/profile?anonymous_id=nobody-at-all', 404, 'not_found', 'anonymous_id'],
      ]) {
        const r = await request({ url: srv.url + url });
        assert.equal(r.status, status, `${url}: ${r.text}`);
        assert.equal(r.json.error.code, code, url);
        assert.equal(r.json.error.field, field, url);
      }
      // The shop admin changes stock, and only stock.
      const patch = (id, body) => request({ url: `${srv.url}/demo/api/products/${id}`, method: 'PATCH', body: JSON.stringify(body) });
      for (const [body, code, field] of [[{ price: 1 }, 'invalid_field', 'price'], [{ stock: -1 }, 'invalid_field', 'stock'],
        [{ stock: 1.5 }, 'invalid_field', 'stock'], [{}, 'missing_field', 'stock'], [[0], 'invalid_body', undefined]]) {
        const r = await patch('p-1015', body);
        assert.equal(r.status, 400, JSON.stringify(body));
        assert.equal(r.json.error.code, code);
        assert.equal(r.json.error.field, field);
      }
      assert.equal((await patch('no-such-product', { stock: 1 })).status, 404);
      assert.equal((await patch('p-1015', { stock: 50 })).status, 200);
      // The demo catalogue: 24 products with stock, one sold out from the start.
      const list = await srv.get('/v1/catalog/products?limit=100');
      assert.equal(list.json.products.length, 24);
      assert.deepEqual(list.json.products.filter((p) => !p.in_stock).map((p) => p.id), ['p-1024']);

      // engaged serve: the tracker, but no storefront and no demo endpoint.
      const plainSrv = new Server({ tag: 'storefront-serve' });
      await logOnFail(() => plainSrv, async () => {
        await plainSrv.start();
        assert.equal((await raw(`${plainSrv.url}/sdk/engaged.js`)).status, 200);
        for (const p of ['/demo', '/demo/', '/demo/index.html', '/demo/api/config', '/demo/api/sign?user_id=a',
          '/demo/api/profile?anonymous_id=a', '/demo/api/products']) {
          const r = await request({ url: plainSrv.url + p });
          assert.equal(r.status, 404, p);
          assert.equal(r.json.error.code, 'not_found', p);
        }
        const r = await request({ url: `${plainSrv.url}/demo/api/products/p-1`, method: 'PATCH', body: '{"stock":0}' });
        assert.equal(r.status, 404);
      })();
      await plainSrv.close();
    }));
});

// ---- The storefront in Chromium ----

describe('the demo storefront in headless Chromium', () => {
  test('a visit: views, search, cart, login, order — each event stored once, one profile, a beacon on unload',
    logOnFail(() => srv, async () => {
      const { context, page, log } = await demoPage();
      try {
        await page.goto(`${srv.url}/demo/`);
        const homeBefore = await widgetItems(page);
        assert.equal(homeBefore.ids.length, 4);
        await shot(page, 'home');
        const anon = await page.evaluate(() => engaged.user().anonymousId);
        assert.match(anon, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);

        await page.click('header nav a[href*="c=Jackets"]');
        await page.waitForSelector('#grid .card');
        await page.click('#grid .card[data-product-id="p-1004"]');
        const onJacket = await widgetItems(page);
        assert.ok(!onJacket.ids.includes('p-1004'), 'not the product on screen');
        await page.goto(`${srv.url}/demo/product.html?id=p-1006`);
        const onFleece = await widgetItems(page);
        assert.notDeepEqual(onFleece.ids, onJacket.ids, 'each view changes the recommendations');
        await shot(page, 'product');
        await page.click('#add');
        await page.waitForSelector('#cart-link:has-text("Cart (1)")');
        await page.fill('header input[name=q]', 'pack');
        await page.press('header input[name=q]', 'Enter');
        await page.waitForSelector('#grid .card');
        assert.deepEqual(await page.$$eval('#grid .card', (c) => c.map((e) => e.dataset.productId)), ['p-1007', 'p-1020', 'p-1021', 'p-1024']);

        // Back home: a newcomer's picks now follow the session.
        await page.goto(`${srv.url}/demo/`);
        const homeAfter = await widgetItems(page);
        assert.notDeepEqual(homeAfter.ids, homeBefore.ids, 'the home picks changed with the views');

        // The cart's picks never include what is in the cart.
        await page.goto(`${srv.url}/demo/product.html?id=p-1009`);
        await widgetItems(page);
        await page.click('#add');
        await page.waitForSelector('#cart-link:has-text("Cart (2)")');
        await page.click('#cart-link');
        const inCart = await widgetItems(page);
        assert.ok(inCart.ids.length > 0);
        for (const id of ['p-1006', 'p-1009']) assert.ok(!inCart.ids.includes(id), `${id} is in the cart: ${inCart.ids}`);
        await shot(page, 'cart');

        // Log in (the demo's server signs the id), then order.
        await page.goto(`${srv.url}/demo/login.html`);
        await page.fill('input[name=user_id]', 'ada-e2e');
        await page.fill('input[name=email]', 'ada-e2e@example.com');
        await page.click('button[type=submit]');
        await page.waitForSelector('#logged-in');
        assert.equal(await page.evaluate(() => engaged.user().userId), 'ada-e2e');
        await page.goto(`${srv.url}/demo/checkout.html`);
        await page.click('#place-order');
        await page.waitForSelector('#thanks');

        // Leaving a page: what is still queued goes by sendBeacon.
        const leftId = await page.evaluate(() => engaged.track('Checkout Left', { step: 'thanks' }));
        await page.goto(`${srv.url}/demo/profile.html`);
        await page.waitForSelector('#identities li[data-type="user_id"]');
        const identities = await page.$$eval('#identities li', (l) => l.map((e) => e.textContent));
        assert.ok(identities.includes(`anonymous_id: ${anon}`) && identities.includes('user_id: ada-e2e'), identities.join('; '));
        await shot(page, 'profile');

        // Every event the tracker sent is stored exactly once.
        await page.evaluate(() => engaged.flush());
        const wire = await sent(page);
        const ids = [...new Set(wire.flatMap((s) => s.ids))];
        assert.equal(wire.flatMap((s) => s.ids).length, ids.length, 'no event was sent twice');
        assert.ok(wire.some((s) => s.via === 'beacon' && s.ids.includes(leftId)), 'the last event left by sendBeacon');
        const { byId, all } = await storedOnce(anon, ids);
        assert.equal(all.size, ids.length, 'nothing stored that the tracker did not send');
        const evs = ids.map((id) => byId[id]);
        const named = (n) => evs.filter((e) => e.event === n);
        assert.equal(evs.filter((e) => e.type === 'page').length, 11, 'a page view per page');
        for (const e of evs) {
          assert.equal(e.anonymousId, anon);
          assert.equal(e.context.library.name, 'engaged.js');
          assert.ok(e.context.page.url.startsWith(`${srv.url}/demo/`));
        }
        assert.deepEqual(named('Product Viewed').map((e) => e.properties.product_id), ['p-1004', 'p-1006', 'p-1009']);
        assert.deepEqual(named('Product Added').map((e) => e.properties.product_id), ['p-1006', 'p-1009']);
        assert.equal(named('Products Searched')[0].properties.query, 'pack');
        assert.equal(named('Cart Viewed')[0].properties.products.length, 2);
        const identify = evs.find((e) => e.type === 'identify');
        assert.equal(identify.userId, 'ada-e2e');
        assert.equal(identify.traits.email, 'ada-e2e@example.com');
        const [order] = named('Order Completed');
        assert.equal(order.userId, 'ada-e2e', 'after login the events carry the user id');
        assert.equal(order.kind, 'order_completed');
        assert.deepEqual(order.properties.products.map((p) => p.product_id), ['p-1006', 'p-1009']);
        assert.equal(order.properties.total, 92.95);
        assert.equal(byId[leftId].event, 'Checkout Left');

        // One profile: the anonymous visit and the customer.
        const byUser = await srv.get('/v1/profiles/lookup?user_id=ada-e2e');
        const byAnon = await srv.get(`/v1/profiles/lookup?anonymous_id=${anon}`);
        assert.equal(byUser.status, 200, byUser.text);
        assert.equal(byUser.json.id, byAnon.json.id);
        assert.ok(byUser.json.identities.some((i) => i.type === 'anonymous_id' && i.value === anon));
        assert.equal(byUser.json.computed.orders_count, 1);
        assert.deepEqual(await page.evaluate(() => JSON.parse(sessionStorage.getItem('csp') || '[]')), [], 'no CSP violation');
        assert.deepEqual(log.errors, []);
        assert.deepEqual(log.elsewhere, [], 'the storefront loads nothing from elsewhere');
      } finally {
        await context.close();
      }
    }));

  test('the widget: in stock only, a product sold out in the shop admin is gone, a click is attributed',
    logOnFail(() => srv, async () => {
      const { context, page } = await demoPage();
      try {
        await page.goto(`${srv.url}/demo/product.html?id=p-1002`);
        const first = await widgetItems(page);
        for (const id of first.ids) assert.ok(await inStock(id), `${id} is recommended but not in stock`);
        assert.ok(!first.ids.includes('p-1024'), 'sold out from the start: never shown');
        const victim = first.ids[0];
        await page.goto(`${srv.url}/demo/admin.html`);
        await page.click(`tr[data-product-id="${victim}"] .stock-zero`);
        await page.waitForSelector(`tr[data-product-id="${victim}"] td.num:text-is("0")`);
        await shot(page, 'admin');
        assert.equal(await inStock(victim), false);
        await page.goto(`${srv.url}/demo/product.html?id=p-1002`);
        const next = await widgetItems(page);
        assert.ok(!next.ids.includes(victim), `${victim} was sold out but is still recommended: ${next.ids}`);
        for (const id of next.ids) assert.ok(await inStock(id));
        assert.equal((await request({ url: `${srv.url}/demo/api/products/${victim}`, method: 'PATCH', body: '{"stock":20}' })).status, 200);

        // A click on a recommendation is a Product Clicked with its id (beacon on the way out); what is
        // then added to the cart and ordered carries it too.
        const [clicks, carts, orders] = await Promise.all(['clicks', 'carts', 'orders'].map((k) => metric(`engaged_reco_attributed_${k}_total`)));
        const target = next.ids[0];
        await page.click(`[data-engaged-item] >> nth=0`);
        await page.waitForURL(`**/product.html?id=${target}`);
        await widgetItems(page);
        await page.click('#add');
        await page.goto(`${srv.url}/demo/checkout.html`);
        await page.fill('input[name=email]', 'guest@example.com'); // a guest: no email known yet
        await page.click('#place-order');
        await page.waitForSelector('#thanks');
        await page.evaluate(() => engaged.flush());
        const deadline = Date.now() + 10000;
        while ((await metric('engaged_reco_attributed_orders_total')) < orders + 1 && Date.now() < deadline) await sleep(100);
        assert.equal(await metric('engaged_reco_attributed_clicks_total'), clicks + 1, 'one click attributed');
        assert.equal(await metric('engaged_reco_attributed_carts_total'), carts + 1, 'the cart add carries the recommendation id');
        assert.equal(await metric('engaged_reco_attributed_orders_total'), orders + 1, 'and so does the order');
        const anon = await page.evaluate(() => engaged.user().anonymousId);
        const evs = await srv.allEvents({ anonymous_id: anon });
        const click = evs.find((e) => e.event === 'Product Clicked');
        assert.equal(click.properties.product_id, target);
        assert.equal(click.properties.recommendation_id, next.rid);
        assert.equal(evs.find((e) => e.event === 'Product Added').properties.recommendation_id, next.rid);
        assert.equal(evs.find((e) => e.event === 'Product Viewed' && e.properties.product_id === target).properties.recommendation_id,
          undefined, 'the view is not counted as a second click');
        const impression = evs.find((e) => e.event === 'Product List Viewed' && e.properties.list_id === next.rid);
        assert.deepEqual(impression.properties.products.map((p) => p.product_id), next.ids);
      } finally {
        await context.close();
      }
    }));

  test('sending: a 503 or a 429 is retried after a backoff (or Retry-After), a 400 never', logOnFail(() => srv, async () => {
    const { context, page } = await demoPage();
    try {
      // engaged's answers replaced for two events: 'Bad One' always 400; 'Retry Me' 503, then 429 with
      // Retry-After: 1, then through to engaged. Everything else goes through.
      const calls = { 'Bad One': [], 'Retry Me': [] };
      await page.route('**/v1/b', async (route) => {
        const batch = JSON.parse(route.request().postData()).batch;
        const name = batch.map((e) => e.event).find((n) => n in calls);
        if (!name) return route.continue();
        calls[name].push(Date.now());
        const n = calls[name].length;
        if (name === 'Bad One') return route.fulfill({ status: 400, contentType: 'application/json', body: '{"error":{"code":"invalid_body"}}' });
        if (n === 1) return route.fulfill({ status: 503, contentType: 'application/json', body: '{}' });
        if (n === 2) return route.fulfill({ status: 429, headers: { 'Retry-After': '1' }, contentType: 'application/json', body: '{}' });
        return route.continue();
      });
      await page.goto(`${srv.url}/demo/cart.html`);
      await page.waitForFunction(() => window.engaged && window.engaged.VERSION);
      await page.evaluate(() => engaged.flush());
      const bad = await page.evaluate(() => { const id = engaged.track('Bad One'); return engaged.flush().then(() => id); });
      const retried = await page.evaluate(() => { const id = engaged.track('Retry Me'); engaged.flush(); return id; });
      const anon = await page.evaluate(() => engaged.user().anonymousId);
      const { byId, all } = await storedOnce(anon, [retried], 15000);
      assert.equal(byId[retried].event, 'Retry Me');
      assert.equal(calls['Retry Me'].length, 3, 'sent three times: 503, 429, then stored');
      const [t1, t2, t3] = calls['Retry Me'];
      assert.ok(t2 - t1 >= 450, `first retry after a backoff of at least 0.5 s (${t2 - t1} ms)`);
      assert.ok(t3 - t2 >= 950, `second retry after Retry-After: 1 (${t3 - t2} ms)`);
      await sleep(500);
      assert.equal(calls['Bad One'].length, 1, 'a 400 is never retried');
      assert.ok(![...all.keys()].includes(bad));
    } finally {
      await context.close();
    }
  }));

  test('consent required, on another origin under script-src \'self\': nothing sent or stored before consent',
    logOnFail(() => srv, async () => {
      const { context, page, log } = await openPage(browser, { hosts: [pages.origin, srv.url], engaged: srv.url });
      await context.addInitScript(RECORDER);
      try {
        const q = `?engaged=${encodeURIComponent(srv.url)}&key=${srv.writeKey}`;
        await page.goto(`${pages.origin}/consent.html${q}`);
        await page.waitForFunction(() => window.engaged && window.engaged.VERSION);
        const before = await page.evaluate(() => [engaged.track('Before Consent'), engaged.productViewed({ product_id: 'p-1001' }),
          engaged.identify('nobody-yet', { email: 'no@example.com' })]);
        assert.deepEqual(before, [null, null, null], 'dropped, not queued');
        await sleep(1500);
        assert.deepEqual(log.toEngaged, [], 'not one request to engaged before consent');
        assert.deepEqual(await page.evaluate(() => [document.cookie, localStorage.length]), ['', 0], 'nothing stored');
        assert.deepEqual(await page.evaluate(() => engaged.user()), { anonymousId: null, userId: null, traits: {} });

        await page.evaluate(() => engaged.consent(true));
        const anon = await page.evaluate(() => engaged.user().anonymousId);
        const afterId = await page.evaluate(() => engaged.track('After Consent'));
        await page.waitForSelector(RENDERED); // the widget asks once consent is given (cross-origin, CORS)
        await page.evaluate(() => engaged.flush());
        const wire = await sent(page);
        const ids = wire.flatMap((s) => s.ids);
        const { byId, all } = await storedOnce(anon, ids);
        const names = [...all.values()].map(([e]) => e.event ?? e.type);
        assert.ok(names.includes('page'), 'the automatic page view, held until consent');
        assert.ok(!names.includes('Before Consent') && !names.includes('Product Viewed'), names.join());
        assert.equal(byId[afterId].event, 'After Consent');
        assert.equal(byId[afterId].context.page.url.startsWith(pages.origin), true);
        // Stored as analytics.js stores them: the cookie bare, localStorage JSON-quoted.
        assert.equal(await page.evaluate(() => document.cookie), `ajs_anonymous_id=${anon}`);
        assert.equal(await page.evaluate(() => localStorage.getItem('ajs_anonymous_id')), JSON.stringify(anon));
        assert.ok(log.toEngaged.filter((r) => r.path === '/v1/b').every((r) => r.headers['content-type'] === 'text/plain;charset=UTF-8'));
        assert.deepEqual(await page.evaluate(() => JSON.parse(sessionStorage.getItem('csp') || '[]')), [], 'no CSP violation');
        assert.deepEqual(log.errors, []);

        // Withdrawn: nothing more is sent, and the ids are deleted.
        await page.evaluate(() => engaged.consent(false));
        assert.equal(await page.evaluate(() => engaged.track('After Withdrawal')), null);
        assert.deepEqual(await page.evaluate(() => [document.cookie, localStorage.length]), ['', 0]);
      } finally {
        await context.close();
      }
    }));

  test('analytics.js visitors keep their ids under engaged.js, and back', logOnFail(() => srv, async () => {
    const { context, page, log } = await openPage(browser, { hosts: [pages.origin, srv.url], engaged: srv.url });
    try {
      const q = `?engaged=${encodeURIComponent(srv.url)}&key=${srv.writeKey}`;
      await page.goto(`${pages.origin}/segment.html${q}`);
      assert.equal(await page.evaluate(() => Promise.race([window.sdkReady, new Promise((r) => setTimeout(() => r(false), 10000))])), true);
      const ajs = await page.evaluate(async () => {
        await window.analytics.identify('compat-user', { plan: 'pro' });
        return { anon: window.analytics.user().anonymousId(), cookie: document.cookie };
      });
      await page.goto(`${pages.origin}/granted.html${q}`);
      await page.waitForFunction(() => window.engaged && window.engaged.VERSION);
      const seen = await page.evaluate(() => engaged.user());
      assert.deepEqual(seen, { anonymousId: ajs.anon, userId: 'compat-user', traits: { plan: 'pro' } });
      const mid = await page.evaluate(() => engaged.track('Switched Trackers'));
      const { byId } = await storedOnce(ajs.anon, [mid]);
      assert.equal(byId[mid].userId, 'compat-user');
      // And back: what engaged.js writes, analytics.js reads.
      const fresh = await page.evaluate(() => (engaged.reset(), engaged.user().anonymousId));
      assert.notEqual(fresh, ajs.anon);
      await page.goto(`${pages.origin}/segment.html${q}`);
      assert.equal(await page.evaluate(() => window.sdkReady), true);
      assert.deepEqual(await page.evaluate(() => [window.analytics.user().anonymousId(), window.analytics.user().id()]), [fresh, null]);
      assert.deepEqual(log.errors, []);
    } finally {
      await context.close();
    }
  }));
});
