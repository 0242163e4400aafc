// Browser collection: what analytics.js (@segment/analytics-next) and RudderStack's JavaScript SDK v3
// send — short paths, text/plain bodies, Basic auth, sendBeacon with the key in the body, CORS
// preflights — and write keys with an origin allow-list.
//
// First as exact requests from node (wire-formats.md §1 "Browser SDKs"), then in headless Chromium
// (Debian's chromium, driven by playwright-core): pages served by a small node server on other
// loopback ports (so CORS is real) load the SDKs' own bundles from node_modules, pointed at engaged,
// and run a scripted visit. Every event must be stored exactly once (by messageId); a page on an
// origin the key does not list must store nothing.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, openPage as openBrowserPage, startPageServer as startPages } from './lib/browser.mjs';
import { basic, bearer, request, sleep } from './lib/http.mjs';
import { logOnFail, runCli, Server, tmpDataDir } from './lib/server.mjs';

const run = Date.now().toString(36);
const VENDOR = {
  '/vendor/segment/standalone.js': 'node_modules/@segment/analytics-next/dist/umd/standalone.js',
  '/vendor/rudder/rudder.js': 'node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js',
};

let srv; // engaged, with the provisioned key (no allow-list) and shopKey (an allow-list)
let shopKey; // a write key that lists only `allowed.origin` and https://shop.example
let allowed; // the page server whose origin shopKey lists
let refused; // another page server: an origin shopKey does not list

// ---- The page server: the shop's pages, on a loopback port of its own ----

// analytics.js's snippet, less its loader: the stub queues calls until the standalone bundle (loaded
// from this server, not Segment's CDN) replaces it; _cdn points the settings request at engaged.
const SEGMENT_PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>shop (analytics.js)</title>
<script>
(function () {
  var q = new URLSearchParams(location.search);
  var analytics = (window.analytics = window.analytics || []);
  analytics.methods = ['trackSubmit', 'trackClick', 'trackLink', 'trackForm', 'pageview', 'identify', 'reset',
    'group', 'track', 'ready', 'alias', 'debug', 'page', 'screen', 'once', 'off', 'on', 'addSourceMiddleware',
    'addIntegrationMiddleware', 'setAnonymousId', 'addDestinationMiddleware', 'register'];
  analytics.factory = function (m) {
    return function () {
      if (window.analytics.initialized) return window.analytics[m].apply(window.analytics, arguments);
      var args = Array.prototype.slice.call(arguments);
      args.unshift(m);
      analytics.push(args);
      return analytics;
    };
  };
  for (var i = 0; i < analytics.methods.length; i++) analytics[analytics.methods[i]] = analytics.factory(analytics.methods[i]);
  analytics._writeKey = q.get('key');
  analytics._cdn = q.get('engaged');
  analytics.SNIPPET_VERSION = '5.2.1';
  window.sdkReady = new Promise(function (resolve) { analytics.ready(function () { resolve(true); }); });
})();
</script>
<script src="/vendor/segment/standalone.js"></script>
</head><body><h1>A shop</h1></body></html>`;

// RudderStack's v3 bundled build (all plugins inside: nothing loaded from its CDN).
const RUDDER_PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>shop (RudderStack)</title>
<script src="/vendor/rudder/rudder.js"></script>
<script>
(function () {
  var q = new URLSearchParams(location.search);
  var ra = new rudderanalytics.RudderAnalytics();
  window.ra = ra;
  ra.load(q.get('key'), q.get('engaged'), {
    configUrl: q.get('engaged'),
    useBeacon: q.get('beacon') === '1',
    logLevel: 'ERROR',
  });
  window.sdkReady = new Promise(function (resolve) { ra.ready(function () { resolve(true); }); });
})();
</script>
</head><body><h1>A shop</h1></body></html>`;

function startPageServer() {
  const routes = { '/segment.html': SEGMENT_PAGE, '/rudder.html': RUDDER_PAGE, '/next.html': '<!doctype html><p>next page</p>' };
  for (const [p, file] of Object.entries(VENDOR)) routes[p] = { file, type: 'text/javascript' };
  return startPages(routes);
}

before(async () => {
  allowed = await startPageServer();
  refused = await startPageServer();
  srv = new Server({ tag: 'browser', accessLog: 'on' });
  const r = runCli(['keys', 'create', '--scope', 'write', '--origin', allowed.origin, '--origin', 'https://shop.example',
    '--label', 'browser test', '--data', srv.dataDir]);
  assert.equal(r.code, 0, r.stderr);
  shopKey = r.stdout.trim();
  const list = runCli(['keys', 'list', '--data', srv.dataDir]);
  assert.match(list.stdout, new RegExp(` ${allowed.origin.replace(/[.]/g, '\\.')},https://shop\\.example +browser test\\n`));
  await srv.start();
});

after(async () => {
  if (srv) await srv.close();
  await allowed?.close();
  await refused?.close();
});

// ---- Helpers ----

let seq = 0;
const mid = (tag) => `${tag}-${run}-${++seq}`;

/** An event as analytics.js puts it on the wire (one per request, its own type, the key inside). */
function ajsEvent(type, fields, key = shopKey) {
  const now = new Date().toISOString();
  return {
    type,
    anonymousId: `anon-${run}`,
    ...fields,
    messageId: fields.messageId ?? mid('ajs-next'),
    timestamp: now,
    context: { library: { name: 'analytics.js', version: 'npm:next-1.84.3' }, page: { path: '/', url: `${allowed.origin}/` } },
    integrations: {},
    writeKey: key,
    sentAt: now,
    _metadata: { bundled: ['Segment.io'], unbundled: [], bundledIds: [] },
  };
}

/** POSTs body as a browser would: text/plain, Origin, and Basic auth unless key is null. */
function post(p, body, { key = shopKey, origin = allowed.origin, contentType = 'text/plain', headers = {} } = {}) {
  const h = { 'Content-Type': contentType, ...headers };
  if (origin) h.Origin = origin;
  if (key) h.Authorization = basic(key);
  return request({ url: srv.url + p, method: 'POST', headers: h, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

function preflight(p, { origin = refused.origin, method = 'POST', asked = 'authorization,content-type' } = {}) {
  const h = { 'Access-Control-Request-Method': method };
  if (origin) h.Origin = origin;
  if (asked !== null) h['Access-Control-Request-Headers'] = asked;
  return request({ url: srv.url + p, method: 'OPTIONS', headers: h });
}

/** Stored events by messageId (each id → how many times it is stored). */
async function storedById() {
  const byId = new Map();
  for (const e of await srv.allEvents()) byId.set(e.messageId, [...(byId.get(e.messageId) ?? []), e]);
  return byId;
}

/** Waits (bounded) until every id is stored, then returns each id's one stored event; fails on a missing or doubled id. */
async function expectStoredOnce(ids, { timeoutMs = 15000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let byId;
  for (;;) {
    byId = await storedById();
    if (ids.every((id) => byId.has(id)) || Date.now() > deadline) break;
    await sleep(200);
  }
  await sleep(300); // a late duplicate would show now
  byId = await storedById();
  const out = {};
  for (const id of ids) {
    const evs = byId.get(id) ?? [];
    assert.equal(evs.length, 1, `messageId ${id} stored ${evs.length} times`);
    out[id] = evs[0];
  }
  return out;
}

function assertCors(r, origin) {
  assert.equal(r.headers['access-control-allow-origin'], origin, `Access-Control-Allow-Origin of ${r.status} ${r.text}`);
  assert.match(r.headers.vary ?? '', /\bOrigin\b/);
  assert.equal(r.headers['access-control-allow-credentials'], undefined, 'credentials are never allowed');
}

/** How many access-log lines name this error code. */
function errorCount(code) {
  return srv.stderr.split('\n').filter((l) => l.includes(`"error":"${code}"`)).length;
}

/** Waits (bounded) for at least n such lines: the log line may follow its reply by a moment. */
async function waitErrorCount(code, n, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (errorCount(code) < n && Date.now() < deadline) await sleep(50);
  return errorCount(code);
}

// ---- Node-level: the exact requests ----

test('engaged keys create --origin: normalised, listed, and refused when it is no origin', () => {
  const dir = tmpDataDir('keys-origin');
  try {
    const ok = runCli(['keys', 'create', '--scope', 'write', '--origin', 'HTTPS://Shop.Example:443/', '--origin', 'http://[::1]:8080',
      '--data', dir]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^wk_[0-9a-f]{40}\n$/);
    const list = runCli(['keys', 'list', '--data', dir]);
    assert.match(list.stdout, /\n1 +write +wk_\S+ +default +active +https:\/\/shop\.example,http:\/\/\[::1\]:8080 \n$/);
    for (const [args, says] of [
      [['--scope', 'write', '--origin', 'https://shop.example/checkout'], 'must be scheme://host[:port]'],
      [['--scope', 'write', '--origin', 'shop.example'], 'must start with http:// or https://'],
      [['--scope', 'write', '--origin', 'https://*.shop.example'], 'must be scheme://host[:port]'],
      [['--scope', 'admin', '--origin', 'https://shop.example'], 'only write keys have an origin allow-list'],
      [['--scope', 'write', ...Array.from({ length: 33 }, (_, i) => ['--origin', `https://s${i}.example`]).flat()], 'at most 32 --origin'],
    ]) {
      const r = runCli(['keys', 'create', ...args, '--data', dir]);
      assert.equal(r.code, 2, args.join(' '));
      assert.ok(r.stderr.includes(says), `${args.slice(0, 4).join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, '', 'no key printed');
    }
    assert.equal(runCli(['keys', 'list', '--data', dir]).stdout.trim().split('\n').length, 2, 'the refusals stored no key');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe('browser wire formats (node)', () => {
  test('preflights: every browser path answers 204 and allows what was asked', logOnFail(() => srv, async () => {
    const posts = ['/v1/t', '/v1/p', '/v1/i', '/v1/a', '/v1/g', '/v1/s', '/v1/b', '/v1/track', '/v1/page', '/v1/identify',
      '/v1/batch', '/beacon/v1/batch'];
    const gets = [`/v1/projects/${shopKey}/settings`, '/sourceConfig/', '/sourceConfig'];
    for (const [paths, method] of [[posts, 'POST'], [gets, 'GET']]) {
      for (const p of paths) {
        // Any origin: a preflight carries no key, so the allow-list is enforced on the request itself.
        const r = await preflight(p, { method });
        assert.equal(r.status, 204, `${p}: ${r.text}`);
        assert.equal(r.text, '');
        assert.equal(r.headers['access-control-allow-origin'], refused.origin, p);
        assert.equal(r.headers['access-control-allow-methods'], method, p);
        assert.equal(r.headers['access-control-allow-headers'], 'authorization,content-type', p);
        assert.equal(r.headers['access-control-max-age'], '86400', p);
        assert.equal(r.headers.vary, 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers', p);
        assert.equal(r.headers['access-control-allow-credentials'], undefined, p);
      }
    }
    // RudderStack's headers, and those of its retries, are echoed as asked.
    for (const asked of ['anonymousid,authorization,content-type,sentat',
      'anonymousid,authorization,content-type,rsa-retry-attempt,rsa-retry-reason,rsa-since-first-attempt,rsa-since-last-attempt,sentat',
      'Content-Type, X-Retry-Count']) {
      const r = await preflight('/v1/track', { asked });
      assert.equal(r.status, 204);
      assert.equal(r.headers['access-control-allow-headers'], asked);
    }
    // What is not a list of header names, or is too long, is not echoed (the browser then refuses).
    for (const asked of ['x-a, x-b(', 'x-a;x-b', 'a'.repeat(513), 'x-a,\u00e9']) {
      const r = await preflight('/v1/t', { asked });
      assert.equal(r.status, 204);
      assert.equal(r.headers['access-control-allow-headers'], undefined, JSON.stringify(asked.slice(0, 20)));
      assert.equal(r.headers['access-control-allow-origin'], refused.origin);
    }
    assert.equal((await preflight('/v1/t', { asked: 'a'.repeat(512) })).headers['access-control-allow-headers'], 'a'.repeat(512));
    const noAsk = await preflight('/v1/t', { asked: null });
    assert.equal(noAsk.status, 204);
    assert.equal(noAsk.headers['access-control-allow-headers'], undefined);
    // Without an Origin it is no CORS preflight: answered, but with nothing to allow.
    const noOrigin = await preflight('/v1/t', { origin: null });
    assert.equal(noOrigin.status, 204);
    assert.equal(noOrigin.headers['access-control-allow-origin'], undefined);
    // Admin paths are never preflighted successfully; unknown paths stay unknown.
    for (const [p, status, code] of [['/v1/events', 405, 'method_not_allowed'], ['/metrics', 405, 'method_not_allowed'],
      ['/v1/profiles/x', 405, 'method_not_allowed'], ['/v1/nothing', 404, 'not_found'], ['/v1/tt', 404, 'not_found']]) {
      const r = await preflight(p, { method: 'GET' });
      assert.equal(r.status, status, p);
      assert.equal(r.json?.error?.code, code, p);
      assert.equal(r.headers['access-control-allow-origin'], undefined, p);
    }
  }));

  test('analytics.js: one event per short path, text/plain with Basic auth, each stored once with its type',
    logOnFail(() => srv, async () => {
      const sent = [
        ['/v1/p', ajsEvent('page', { name: 'Home', properties: { path: '/' } })],
        ['/v1/t', ajsEvent('track', { event: 'Product Viewed', properties: { product_id: 'p-1001', price: 119 } })],
        ['/v1/i', ajsEvent('identify', { userId: `u-${run}`, traits: { email: 'ada@example.com' } })],
        ['/v1/g', ajsEvent('group', { userId: `u-${run}`, groupId: 'g-1', traits: { name: 'Acme' } })],
        ['/v1/a', ajsEvent('alias', { userId: `u-${run}`, previousId: `anon-${run}` })],
        ['/v1/s', ajsEvent('screen', { name: 'Cart' })],
      ];
      for (const [p, ev] of sent) {
        const r = await post(p, ev);
        assert.equal(r.status, 200, `${p}: ${r.text}`);
        assert.deepEqual(r.json, { success: true });
        assert.equal(r.headers['content-type'], 'application/json');
        assertCors(r, allowed.origin);
      }
      // The batching strategy: /v1/b, the key in the body and in Basic auth.
      const batch = [ajsEvent('track', { event: 'Product Added', properties: { cart_id: 'c1', product_id: 'p-1001', quantity: 1 } }),
        ajsEvent('track', { event: 'Cart Viewed', properties: { cart_id: 'c1' } }),
        ajsEvent('page', { name: 'Checkout' })];
      const b = await post('/v1/b', { batch: batch.map(({ sentAt, ...e }) => e), writeKey: shopKey, sentAt: new Date().toISOString() });
      assert.equal(b.status, 200, b.text);
      assert.deepEqual(b.json, { success: true, accepted: 3, duplicates: 0, rejected: [] });
      assertCors(b, allowed.origin);
      // A retry of the same event (same messageId) is acknowledged and not stored again.
      const again = await post('/v1/t', sent[1][1]);
      assert.equal(again.status, 200);

      const all = [...sent.map(([, e]) => e), ...batch];
      const stored = await expectStoredOnce(all.map((e) => e.messageId));
      for (const e of all) {
        const s = stored[e.messageId];
        assert.equal(s.type, e.type, e.messageId);
        assert.equal(s.event, e.event, e.messageId);
        assert.equal(s.anonymousId, `anon-${run}`);
        assert.equal('writeKey' in s, false, 'the key is never stored');
      }
      assert.deepEqual(stored[sent[2][1].messageId].traits, { email: 'ada@example.com' });
      assert.equal(stored[sent[4][1].messageId].previousId, `anon-${run}`);
      // The path sets the type: a body that says otherwise is stored as the path's type.
      const odd = ajsEvent('page', { event: 'Typed By Path' });
      assert.equal((await post('/v1/t', odd)).status, 200);
      assert.equal((await expectStoredOnce([odd.messageId]))[odd.messageId].type, 'track');
      // The short paths validate like the long ones.
      const bad = await post('/v1/t', ajsEvent('track', { event: '' }));
      assert.equal(bad.status, 400);
      assert.equal(bad.json.error.code, 'missing_field');
      assert.equal(bad.json.error.field, 'event');
      assertCors(bad, allowed.origin); // the page may read why
      const notJson = await post('/v1/p', '{"type":"page",');
      assert.equal(notJson.status, 400);
      assert.equal(notJson.json.error.code, 'invalid_json');
      const big = await post('/v1/t', ajsEvent('track', { event: 'Big', properties: { blob: 'x'.repeat(40000) } }));
      assert.equal(big.status, 413);
    }));

  test('sendBeacon: no Authorization header, the key in the body (or in RudderStack\'s query)', logOnFail(() => srv, async () => {
    const one = ajsEvent('track', { event: 'Page Left' });
    const r1 = await post('/v1/t', one, { key: null });
    assert.equal(r1.status, 200, r1.text);
    assertCors(r1, allowed.origin);
    const two = [ajsEvent('track', { event: 'Tab Hidden' }), ajsEvent('page', { name: 'Gone' })];
    const r2 = await post('/v1/b', { batch: two, writeKey: shopKey }, { key: null });
    assert.equal(r2.status, 200, r2.text);
    // RudderStack's BeaconQueue: /beacon/v1/batch?writeKey=K, {batch, sentAt}, text/plain.
    const three = [{ type: 'track', event: 'Beaconed', anonymousId: `anon-${run}`, messageId: mid('rs-beacon'), originalTimestamp: new Date().toISOString(), channel: 'web' }];
    const r3 = await post(`/beacon/v1/batch?writeKey=${shopKey}`, { batch: three, sentAt: new Date().toISOString() }, { key: null });
    assert.equal(r3.status, 200, r3.text);
    assert.equal(r3.json.accepted, 1);
    assertCors(r3, allowed.origin);
    await expectStoredOnce([one, ...two, ...three].map((e) => e.messageId));
    // No key anywhere: 401, and the key in the body must be a known one.
    const none = await post('/v1/t', { ...ajsEvent('track', { event: 'Keyless' }), writeKey: undefined }, { key: null });
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'unauthorized');
    const unknown = await post('/beacon/v1/batch?writeKey=wk_nope', { batch: three }, { key: null });
    assert.equal(unknown.status, 401);
  }));

  test('origin allow-list: a refused origin gets 403 origin_not_allowed and nothing is stored', logOnFail(() => srv, async () => {
    const before = errorCount('origin_not_allowed');
    const ids = [];
    const expectRefused = (r, origin, what) => {
      assert.equal(r.status, 403, `${what}: ${r.text}`);
      assert.equal(r.json.error.code, 'origin_not_allowed', what);
      assert.equal(r.json.error.field, 'Origin', what);
      assert.equal(r.json.error.message,
        `the origin ${origin} is not allowed to use this write key (its allow-list is set with engaged keys create --origin)`);
      assert.equal(r.headers['access-control-allow-origin'], undefined, `${what}: no allow header on a refusal`);
      assert.match(r.headers.vary, /\bOrigin\b/);
    };
    for (const origin of [refused.origin, 'null', 'https://shop.example.evil', 'http://shop.example', `${allowed.origin}/`]) {
      const ev = ajsEvent('track', { event: 'Refused' });
      ids.push(ev.messageId);
      expectRefused(await post('/v1/t', ev, { origin }), origin, `Basic auth from ${origin}`);
      const beacon = ajsEvent('track', { event: 'Refused Beacon' });
      ids.push(beacon.messageId);
      expectRefused(await post('/v1/t', beacon, { origin, key: null }), origin, `body key from ${origin}`);
    }
    const batch = [ajsEvent('track', { event: 'Refused In Batch' }), ajsEvent('page', { name: 'Refused' })];
    ids.push(...batch.map((e) => e.messageId));
    expectRefused(await post('/v1/b', { batch, writeKey: shopKey }, { origin: refused.origin }), refused.origin, '/v1/b');
    expectRefused(await post(`/beacon/v1/batch?writeKey=${shopKey}`, { batch }, { key: null, origin: refused.origin }),
      refused.origin, 'beacon');
    const settings = await request({ url: `${srv.url}/v1/projects/${shopKey}/settings`, headers: { Origin: refused.origin } });
    expectRefused(settings, refused.origin, 'settings');
    const config = await request({ url: `${srv.url}/sourceConfig/?writeKey=${shopKey}`, headers: { Origin: refused.origin, Authorization: basic(shopKey) } });
    expectRefused(config, refused.origin, 'sourceConfig');
    assert.equal(await waitErrorCount('origin_not_allowed', before + 14), before + 14);

    // The listed origins pass; so does a request without Origin (a server, not a browser).
    const ok = [ajsEvent('track', { event: 'Listed' }), ajsEvent('track', { event: 'Listed 2' }), ajsEvent('track', { event: 'No Origin' })];
    assertCors(await post('/v1/t', ok[0], { origin: allowed.origin }), allowed.origin);
    assertCors(await post('/v1/t', ok[1], { origin: 'https://shop.example' }), 'https://shop.example');
    const server = await post('/v1/t', ok[2], { origin: null });
    assert.equal(server.status, 200);
    assert.equal(server.headers['access-control-allow-origin'], undefined);
    // A key without a list (the provisioned one) may be used from any origin.
    const anyKey = ajsEvent('track', { event: 'Any Origin' }, srv.writeKey);
    const r = await post('/v1/t', anyKey, { key: srv.writeKey, origin: refused.origin });
    assert.equal(r.status, 200, r.text);
    assertCors(r, refused.origin);
    await expectStoredOnce([...ok, anyKey].map((e) => e.messageId));

    const byId = await storedById();
    assert.deepEqual(ids.filter((id) => byId.has(id)), [], 'nothing from a refused origin is stored');
  }));

  test('admin routes never answer CORS; write keys still read nothing', logOnFail(() => srv, async () => {
    const a = await request({ url: `${srv.url}/v1/events?limit=1`, headers: { Origin: allowed.origin, Authorization: bearer(srv.adminKey) } });
    assert.equal(a.status, 200);
    assert.equal(a.headers['access-control-allow-origin'], undefined);
    assert.equal(a.headers.vary, undefined);
    const w = await request({ url: `${srv.url}/v1/events`, headers: { Origin: allowed.origin, Authorization: basic(shopKey) } });
    assert.equal(w.status, 403);
    assert.equal(w.json.error.code, 'forbidden');
    assert.equal(w.headers['access-control-allow-origin'], undefined);
    const m = await request({ url: `${srv.url}/metrics`, headers: { Origin: allowed.origin, Authorization: bearer(srv.adminKey) } });
    assert.equal(m.status, 200);
    assert.equal(m.headers['access-control-allow-origin'], undefined);
  }));

  test('the settings documents: analytics.js\'s and RudderStack\'s source config', logOnFail(() => srv, async () => {
    const get = (p, headers = {}) => request({ url: srv.url + p, headers: { Origin: allowed.origin, ...headers } });
    const s = await get(`/v1/projects/${shopKey}/settings`);
    assert.equal(s.status, 200, s.text);
    assertCors(s, allowed.origin);
    const segmentIo = (apiHost, protocol) => ({
      integrations: {
        'Segment.io': { apiKey: shopKey, apiHost, protocol, unbundledIntegrations: [], addBundledMetadata: true,
          maybeBundledConfigIds: {}, versionSettings: { componentTypes: [] } },
      },
      plan: {}, edgeFunction: {}, analyticsNextEnabled: true, middlewareSettings: {}, enabledMiddleware: {},
      metrics: { sampleRate: 0 }, legacyVideoPluginsEnabled: false, remotePlugins: [],
    });
    assert.deepEqual(s.json, segmentIo(`127.0.0.1:${srv.port}/v1`, 'http'));
    // Behind a proxy: its X-Forwarded-Host and -Proto say where the browser reaches engaged.
    const p = await get(`/v1/projects/${shopKey}/settings`, { 'X-Forwarded-Host': 'collect.shop.example, inner:8080', 'X-Forwarded-Proto': 'https' });
    assert.deepEqual(p.json, segmentIo('collect.shop.example/v1', 'https'));
    const h = await get(`/v1/projects/${shopKey}/settings`, { Host: 'engaged.test:8443', 'X-Forwarded-Proto': 'http' });
    assert.deepEqual(h.json, segmentIo('engaged.test:8443/v1', 'http'));
    const bad = await get(`/v1/projects/${shopKey}/settings`, { 'X-Forwarded-Host': 'evil"host/x' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'invalid_field');
    assert.equal(bad.json.error.field, 'X-Forwarded-Host');
    // Unknown keys and admin keys have no settings document.
    for (const key of ['wk_unknown', srv.adminKey, 'x'.repeat(300)]) {
      const r = await get(`/v1/projects/${key}/settings`);
      assert.equal(r.status, 404, key.slice(0, 10));
      assert.equal(r.json.error.code, 'not_found');
      assert.equal(r.json.error.message, `there is no write key "${key.slice(0, 7)}..."`);
    }
    assert.equal((await get(`/v1/projects/${shopKey}/settings/x`)).status, 404);
    assert.equal((await request({ url: `${srv.url}/v1/projects/${shopKey}/settings`, method: 'POST', body: '{}' })).status, 405);

    // RudderStack: GET {configUrl}/sourceConfig/?p=..&v=..&writeKey=.. with Basic auth.
    const q = `?p=npm&v=3.34.1&build=modern&writeKey=${shopKey}&lockIntegrationsVersion=true&lockPluginsVersion=true`;
    for (const [path_, headers] of [[`/sourceConfig/${q}`, { Authorization: basic(shopKey) }], [`/sourceConfig/${q}`, {}],
      [`/sourceConfig?writeKey=${shopKey}`, {}]]) {
      const r = await get(path_, headers);
      assert.equal(r.status, 200, r.text);
      assertCors(r, allowed.origin);
      assert.match(r.json.source.id, /^engaged-\d+$/);
      assert.deepEqual(r.json, {
        isHosted: false,
        source: { id: r.json.source.id, name: 'engaged', writeKey: shopKey, config: {}, enabled: true, workspaceId: 'engaged', destinations: [] },
      });
    }
    const noKey = await get('/sourceConfig/?p=npm');
    assert.equal(noKey.status, 401);
    assert.equal(noKey.json.error.code, 'unauthorized');
    assert.equal((await get('/sourceConfig/?writeKey=wk_unknown')).status, 404);
    assert.equal((await get(`/sourceConfig/?writeKey=${srv.adminKey}`)).status, 404);
    assert.equal((await get(`/sourceConfig/${q}`, { Authorization: basic('wk_unknown') })).status, 401);
  }));
});

// ---- Real browsers ----

describe('browser SDKs in headless Chromium', () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });

  /**
   * A fresh browser context whose page may reach only the page servers and engaged: anything else
   * (an SDK's CDN, its own API) is aborted and recorded, so the test shows engaged needs nothing else.
   */
  function openPage() {
    return openBrowserPage(browser, { hosts: [allowed.origin, refused.origin, srv.url], engaged: srv.url });
  }

  const visitTimeout = 20000;

  test('analytics.js from an allowed origin: a visit, each event once, and a beacon on unload',
    logOnFail(() => srv, async () => {
      const { context, page, log } = await openPage();
      try {
        await page.goto(`${allowed.origin}/segment.html?engaged=${encodeURIComponent(srv.url)}&key=${shopKey}`);
        const ready = await page.evaluate((ms) => Promise.race([window.sdkReady, new Promise((r) => setTimeout(() => r(false), ms))]), 10000);
        assert.equal(ready, true, `analytics.js did not become ready: ${JSON.stringify(log)}`);
        const visit = await page.evaluate(async ({ user, order }) => {
          const a = window.analytics;
          const out = [];
          const rec = (ctx) => out.push({ id: ctx.event.messageId, type: ctx.event.type, event: ctx.event.event ?? null });
          rec(await a.page('Home'));
          rec(await a.track('Product Viewed', { product_id: 'p-1001', name: 'Trail shoe', price: 119, currency: 'EUR' }));
          rec(await a.track('Product Added', { cart_id: 'cart-1', product_id: 'p-1001', price: 119, quantity: 1 }));
          rec(await a.identify(user, { email: 'ada@example.com' }));
          rec(await a.track('Order Completed', { order_id: order, total: 119, revenue: 119, currency: 'EUR',
            products: [{ product_id: 'p-1001', price: 119, quantity: 1 }] }));
          return { events: out, anonymousId: a.user().anonymousId() };
        }, { user: `ajs-user-${run}`, order: `ajs-order-${run}` });
        assert.deepEqual(visit.events.map((e) => [e.type, e.event]), [['page', null], ['track', 'Product Viewed'],
          ['track', 'Product Added'], ['identify', null], ['track', 'Order Completed']]);
        const stored = await expectStoredOnce(visit.events.map((e) => e.id), { timeoutMs: visitTimeout });
        for (const e of visit.events) {
          const s = stored[e.id];
          assert.equal(s.type, e.type);
          assert.equal(s.anonymousId, visit.anonymousId, 'one anonymous visitor throughout');
          assert.equal(s.context.library.name, 'analytics.js');
        }
        const [, viewed, , identify, order] = visit.events.map((e) => stored[e.id]);
        assert.equal(viewed.event, 'Product Viewed');
        assert.equal(viewed.properties.product_id, 'p-1001');
        assert.equal(identify.userId, `ajs-user-${run}`);
        assert.equal(identify.traits.email, 'ada@example.com');
        assert.equal(order.userId, `ajs-user-${run}`, 'after login the events carry the userId');
        assert.equal(order.properties.order_id, `ajs-order-${run}`);

        // What went over the wire: the settings document first, then short paths, text/plain, Basic auth.
        const posts = log.toEngaged.filter((r) => r.method === 'POST');
        assert.equal(log.toEngaged[0].path, `/v1/projects/${shopKey}/settings`);
        assert.deepEqual([...new Set(posts.map((r) => r.path))].sort(), ['/v1/i', '/v1/p', '/v1/t']);
        for (const r of posts) {
          assert.equal(r.headers['content-type'], 'text/plain');
          assert.equal(r.headers.authorization, basic(shopKey));
        }
        assert.deepEqual(log.elsewhere, [], 'nothing fetched from anywhere but the shop and engaged');

        // Leaving the page: a beacon sent from pagehide, as SDKs flush on unload (no header: the key in the body).
        const beaconId = `ajs-beacon-${run}`;
        await page.evaluate(({ engaged, key, id, anon }) => {
          addEventListener('pagehide', () => {
            const body = JSON.stringify({ type: 'track', event: 'Page Left', anonymousId: anon, messageId: id, writeKey: key, properties: {} });
            navigator.sendBeacon(`${engaged}/v1/t`, new Blob([body], { type: 'text/plain' }));
          });
        }, { engaged: srv.url, key: shopKey, id: beaconId, anon: visit.anonymousId });
        await page.goto(`${allowed.origin}/next.html`);
        const left = await expectStoredOnce([beaconId], { timeoutMs: visitTimeout });
        assert.equal(left[beaconId].event, 'Page Left');
        assert.deepEqual(log.errors, []);
      } finally {
        await context.close();
      }
    }));

  test('RudderStack v3 from an allowed origin: a visit, each event once, and its beacon queue on unload',
    logOnFail(() => srv, async () => {
      const { context, page, log } = await openPage();
      try {
        const url = (beacon) => `${allowed.origin}/rudder.html?engaged=${encodeURIComponent(srv.url)}&key=${shopKey}&beacon=${beacon}`;
        await page.goto(url(0));
        const ready = await page.evaluate((ms) => Promise.race([window.sdkReady, new Promise((r) => setTimeout(() => r(false), ms))]), 10000);
        assert.equal(ready, true, `RudderStack did not become ready: ${JSON.stringify(log)}`);
        const user = `rs-user-${run}`;
        // Each call's callback gets the event as queued for delivery, messageId included.
        const events = await page.evaluate(async ({ user: u, order }) => {
          const ra = window.ra;
          const sent = (start) => new Promise((resolve) => start((ev) => resolve({ id: ev.messageId, type: ev.type, event: ev.event ?? null })));
          return [
            await sent((cb) => ra.page('Shop', 'Home', {}, cb)),
            await sent((cb) => ra.track('Product Viewed', { product_id: 'p-2002', price: 49 }, cb)),
            await sent((cb) => ra.track('Product Added', { cart_id: 'cart-2', product_id: 'p-2002', price: 49, quantity: 2 }, cb)),
            await sent((cb) => ra.identify(u, { email: 'grace@example.com' }, cb)),
            await sent((cb) => ra.track('Order Completed', { order_id: order, total: 98,
              products: [{ product_id: 'p-2002', price: 49, quantity: 2 }] }, cb)),
          ];
        }, { user, order: `rs-order-${run}` });
        assert.deepEqual(events.map((e) => [e.type, e.event]), [['page', null], ['track', 'Product Viewed'],
          ['track', 'Product Added'], ['identify', null], ['track', 'Order Completed']]);
        const anon = await page.evaluate(() => window.ra.getAnonymousId());
        const stored = await expectStoredOnce(events.map((e) => e.id), { timeoutMs: visitTimeout });
        for (const e of events) {
          assert.equal(stored[e.id].type, e.type);
          assert.equal(stored[e.id].anonymousId, anon, 'one anonymous visitor throughout');
        }
        const identify = stored[events[3].id];
        assert.equal(identify.userId, user);
        assert.equal(identify.context.traits.email, 'grace@example.com', 'RudderStack sends traits in context.traits');
        assert.equal(stored[events[4].id].userId, user);
        assert.equal(stored[events[4].id].properties.order_id, `rs-order-${run}`);

        const cfg = log.toEngaged.find((r) => r.method === 'GET');
        assert.equal(cfg.path, '/sourceConfig/');
        assert.equal(cfg.headers.authorization, basic(shopKey));
        const posts = log.toEngaged.filter((r) => r.method === 'POST');
        assert.deepEqual([...new Set(posts.map((r) => r.path))].sort(), ['/v1/identify', '/v1/page', '/v1/track']);
        for (const r of posts) {
          assert.equal(r.headers['content-type'], 'application/json;charset=UTF-8');
          assert.equal(r.headers.authorization, basic(shopKey));
          assert.ok(r.headers.anonymousid && r.headers.sentat, 'custom headers, allowed by the preflight');
        }

        // With useBeacon, events wait in the beacon queue and go out with sendBeacon when the page is left.
        await page.goto(url(1));
        assert.equal(await page.evaluate(() => window.sdkReady), true);
        const left = await page.evaluate(() => new Promise((resolve) => {
          window.ra.track('Checkout Left', { step: 2 }, (ev) => resolve({ id: ev.messageId }));
        }));
        await page.goto(`${allowed.origin}/next.html`);
        const got = await expectStoredOnce([left.id], { timeoutMs: visitTimeout });
        assert.equal(got[left.id].event, 'Checkout Left');
        assert.deepEqual(log.elsewhere, [], 'nothing fetched from anywhere but the shop and engaged');
        assert.deepEqual(log.errors, []);
      } finally {
        await context.close();
      }
    }));

  test('a page on an origin the key does not list stores nothing', logOnFail(() => srv, async () => {
    const countBefore = (await srv.allEvents()).length;
    const refusalsBefore = errorCount('origin_not_allowed');
    const { context, page, log } = await openPage();
    try {
      // analytics.js: its settings request is refused, so it never sends; calls stay queued.
      await page.goto(`${refused.origin}/segment.html?engaged=${encodeURIComponent(srv.url)}&key=${shopKey}`);
      const ready = await page.evaluate(() => Promise.race([window.sdkReady, new Promise((r) => setTimeout(() => r(false), 3000))]));
      assert.equal(ready, false, 'analytics.js must not load with a refused key');
      await page.evaluate(() => window.analytics.track('Should Not Arrive'));
      // What the SDK would send, sent by hand: the POST is refused (403, no allow header: the page cannot
      // even read it), and a beacon (no CORS at all) is refused too.
      const outcome = await page.evaluate(async ({ engaged, key, run: r }) => {
        const body = JSON.stringify({ type: 'track', event: 'Refused Fetch', anonymousId: `x-${r}`, messageId: `refused-fetch-${r}`, writeKey: key });
        let fetched;
        try {
          const res = await fetch(`${engaged}/v1/t`, { method: 'POST', headers: { 'Content-Type': 'text/plain', Authorization: `Basic ${btoa(`${key}:`)}` }, body });
          fetched = `status ${res.status}`;
        } catch (e) {
          fetched = 'blocked';
        }
        const beacon = JSON.stringify({ type: 'track', event: 'Refused Beacon', anonymousId: `x-${r}`, messageId: `refused-beacon-${r}`, writeKey: key });
        const queued = navigator.sendBeacon(`${engaged}/v1/t`, new Blob([beacon], { type: 'text/plain' }));
        return { fetched, queued };
      }, { engaged: srv.url, key: shopKey, run });
      assert.deepEqual(outcome, { fetched: 'blocked', queued: true });

      // RudderStack: its source config is refused, so it never sends either.
      await page.goto(`${refused.origin}/rudder.html?engaged=${encodeURIComponent(srv.url)}&key=${shopKey}`);
      const rsReady = await page.evaluate(() => Promise.race([window.sdkReady, new Promise((r) => setTimeout(() => r(false), 3000))]));
      assert.equal(rsReady, false, 'RudderStack must not load with a refused key');
      await page.evaluate(() => window.ra.track('Should Not Arrive Either'));

      // engaged saw and refused: the settings, the fetch, the beacon, the source config.
      const refusals = (await waitErrorCount('origin_not_allowed', refusalsBefore + 4)) - refusalsBefore;
      assert.ok(refusals >= 4, `refusals logged: ${refusals}`);
      await sleep(500);
      assert.equal((await srv.allEvents()).length, countBefore, 'nothing stored');
      // analytics.js, having no settings, reports its failure to Segment's own metrics host (blocked here).
      assert.deepEqual(log.elsewhere.filter((u) => u !== 'https://api.segment.io/v1/m'), []);
    } finally {
      await context.close();
    }
  }));
});
