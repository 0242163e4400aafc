/* engaged.js: engaged's tracker and recommendations widget (docs/browser.md). No eval, nothing
 * inline (runs under script-src 'self'); analytics.js's ids and storage, so visitors carry over. */
(() => {
  'use strict';
  const VERSION = '0.1.0';
  const w = window, d = document, nav = navigator, loc = location;
  const stub = w.engaged;
  if (stub && stub.VERSION) return; // loaded twice
  const script = d.currentScript;
  const AKEY = 'ajs_anonymous_id', UKEY = 'ajs_user_id', TKEY = 'ajs_user_traits';
  const SKEY = 'engaged_signature', RKEY = 'engaged_recs';
  const MAX_QUEUE = 1000, MAX_EVENT = 32000, MAX_BODY = 60000, MAX_TRIES = 10;
  const warn = (m) => w.console && console.warn(`engaged.js: ${m}`);
  const safe = (f, dflt) => {
    try {
      return f();
    } catch (e) {
      return dflt;
    }
  };

  let cfg = null;
  let allowed = false; // may send and store: consent given or not required
  let heldPage = false; // the automatic page view waits for consent
  let anon = null, userId = null, traits = {}, signature = null;
  let recIds = []; // [product_id, recommendation_id], newest last
  let queue = [], timer = 0, retryAt = 0, backoff = 0, chain = Promise.resolve(), pending = null;
  const tries = new WeakMap(), answers = new WeakMap(), renders = new WeakMap();
  const early = [], readyFns = [];

  // ---- Storage: localStorage holds JSON, cookies the bare string ----

  const parse = (v) => safe(() => JSON.parse(v), v);
  const ls = {
    get: (k) => safe(() => parse(localStorage.getItem(k)), null),
    set: (k, v) => safe(() => (v == null ? localStorage.removeItem(k) : localStorage.setItem(k, JSON.stringify(v)))),
  };
  let domain; // as analytics.js: the widest that takes a cookie
  function cookieDomain() {
    if (domain !== undefined) return domain;
    const parts = loc.hostname.split('.');
    domain = '';
    if (parts.length < 2 || (parts.length === 4 && +parts[3] > 0)) return domain; // localhost, IP
    for (let i = parts.length - 2; i >= 0 && !domain; i--) {
      const dom = parts.slice(i).join('.');
      d.cookie = `__tld__=1; path=/; domain=${dom}`;
      if (/(^|; )__tld__=1/.test(d.cookie)) {
        d.cookie = `__tld__=; path=/; domain=${dom}; max-age=0`;
        domain = dom;
      }
    }
    return domain;
  }
  function cookie(k, v) {
    if (v === undefined) {
      const m = d.cookie.match(new RegExp(`(?:^|; )${k}=([^;]*)`));
      return m && m[1] ? parse(safe(() => decodeURIComponent(m[1]), m[1])) : null;
    }
    const dom = cookieDomain();
    const attrs = `; path=/${dom ? `; domain=${dom}` : ''}; SameSite=Lax${loc.protocol === 'https:' ? '; Secure' : ''}`;
    d.cookie = v === null ? `${k}=${attrs}; max-age=0` : `${k}=${encodeURIComponent(v)}${attrs}; max-age=31536000`;
  }
  // The cookie wins: only it spans subdomains.
  function readId(k) {
    const v = cookie(k) ?? ls.get(k);
    return v == null || v === '' || typeof v === 'object' ? null : String(v);
  }
  function writeId(k, v) {
    if (!allowed) return;
    cookie(k, v);
    ls.set(k, v);
  }
  function restore() {
    writeId(AKEY, (anon = readId(AKEY) || uuid()));
    userId = readId(UKEY);
    const t = ls.get(TKEY), s = ls.get(SKEY), r = ls.get(RKEY);
    traits = t && typeof t === 'object' ? t : {};
    signature = s && s.userId === userId ? s.signature : null;
    recIds = Array.isArray(r) ? r.slice(-20) : [];
  }
  function forget() {
    for (const k of [AKEY, UKEY]) cookie(k, null);
    for (const k of [AKEY, UKEY, TKEY, SKEY, RKEY]) ls.set(k, null);
  }
  function uuid() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    const h = Array.from(b, (x) => (x + 256).toString(16).slice(1)).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // ---- Events ----

  const pageProps = () => ({ path: loc.pathname, referrer: d.referrer, search: loc.search, title: d.title, url: loc.href });
  const size = (s) => new TextEncoder().encode(s).length;

  // Without consent events are dropped, not kept for later.
  function enqueue(type, fields) {
    if (!allowed) return null;
    const ev = {
      type,
      messageId: uuid(),
      anonymousId: anon,
      ...(userId ? { userId } : {}),
      ...fields,
      originalTimestamp: new Date().toISOString(), // skew-corrected by sentAt
      context: {
        library: { name: 'engaged.js', version: VERSION },
        page: pageProps(),
        userAgent: nav.userAgent,
        locale: nav.language,
      },
    };
    if (size(JSON.stringify(ev)) > MAX_EVENT) return warn(`${type} ${fields.event || ''} is over 32 KB`), null;
    if (queue.push(ev) > MAX_QUEUE) queue.shift();
    if (queue.length >= cfg.flushAt) flush();
    else if (!timer) timer = setTimeout(flush, cfg.flushInterval);
    return ev.messageId;
  }
  function take() {
    const batch = [];
    for (let bytes = 100; queue.length && batch.length < cfg.flushAt; batch.push(queue.shift())) {
      bytes += size(JSON.stringify(queue[0])) + 1;
      if (batch.length && bytes > MAX_BODY) break;
    }
    return batch;
  }
  // text/plain with the key inside: no preflight.
  const body = (batch) => JSON.stringify({ batch, sentAt: new Date().toISOString(), writeKey: cfg.writeKey });
  const post = (data) => fetch(`${cfg.host}/v1/b`, { method: 'POST', body: data, keepalive: true, credentials: 'omit' });

  function flush() {
    clearTimeout(timer);
    const wait = retryAt - Date.now();
    timer = wait > 0 ? setTimeout(flush, wait) : 0;
    if (wait <= 0) chain = chain.then(drain);
    return chain;
  }
  async function drain() {
    while (allowed && queue.length && Date.now() >= retryAt) {
      const batch = take();
      const res = await post(body(batch)).catch(() => null);
      const st = res ? res.status : 0;
      if (st > 199 && st < 300) backoff = 0;
      else if (st && st < 500 && st !== 429) warn(`engaged answered ${st}: events dropped`);
      else retry(batch, res ? +res.headers.get('Retry-After') : 0);
    }
    if (allowed && queue.length) flush(); // schedules the retry
  }
  function retry(batch, after) {
    queue.unshift(...batch.filter((e) => (tries.set(e, (tries.get(e) || 0) + 1), tries.get(e) < MAX_TRIES)));
    backoff++;
    retryAt = Date.now() + Math.max(after * 1000 || 0, Math.min(30000, 500 * 2 ** backoff) * (0.5 + Math.random() / 2));
  }
  function beacon() {
    while (allowed && queue.length) {
      const data = new Blob([body(take())], { type: 'text/plain' });
      if (!nav.sendBeacon(`${cfg.host}/v1/b`, data)) post(data).catch(() => {});
    }
  }

  // ---- The API ----

  function load(o) {
    if (cfg) return;
    o = o || {};
    if (!o.writeKey) return warn('load() needs a writeKey');
    const consent = o.consent || 'granted';
    if (consent !== 'granted' && consent !== 'required') warn(`consent "${consent}" taken as "required"`);
    cfg = {
      writeKey: String(o.writeKey),
      host: String(o.host || (script && script.src ? new URL(script.src).origin : loc.origin)).replace(/\/+$/, ''),
      flushAt: Math.min(Math.max(o.flushAt | 0 || 20, 1), 100),
      flushInterval: o.flushInterval >= 0 ? +o.flushInterval : 1000,
      recs: o.recs !== false,
    };
    allowed = consent === 'granted';
    if (allowed) restore();
    addEventListener('pagehide', beacon);
    d.addEventListener('visibilitychange', () => d.visibilityState === 'hidden' && beacon());
    d.addEventListener('click', clicked, true);
    if (o.page !== false) allowed ? page() : (heldPage = true);
    for (const [m, a] of early.splice(0)) api[m](...a);
    const start = () => {
      rerender();
      for (const f of readyFns.splice(0)) f(api);
    };
    d.readyState === 'loading' ? d.addEventListener('DOMContentLoaded', start) : start();
  }

  function consent(yes) {
    if (yes && !allowed) {
      allowed = true;
      restore();
      if (heldPage) page();
      rerender();
    } else if (!yes) {
      allowed = false;
      queue = [];
      anon = userId = signature = null;
      traits = {};
      recIds = [];
      forget();
    }
    heldPage = false;
  }

  const page = (name, props) => enqueue('page', { ...(name ? { name: String(name) } : {}), properties: { ...pageProps(), ...props } });
  const track = (event, props) => enqueue('track', { event: String(event), properties: { ...props } });

  function identify(id, t, o) {
    if (id && typeof id === 'object') [id, t, o] = [null, id, t];
    if (!allowed) return null;
    if (id != null && id !== '') {
      id = String(id);
      if (userId && userId !== id) {
        writeId(AKEY, (anon = uuid())); // another person (as analytics.js)
        traits = {};
        signature = null;
      }
      writeId(UKEY, (userId = id));
    }
    ls.set(TKEY, (traits = { ...traits, ...t }));
    if (o && o.signature && userId) ls.set(SKEY, { userId, signature: (signature = String(o.signature)) });
    const mid = enqueue('identify', { traits: { ...t } });
    rerender();
    return mid;
  }

  function reset() {
    userId = signature = null;
    traits = {};
    recIds = [];
    forget();
    if (allowed) writeId(AKEY, (anon = uuid()));
  }

  // Products from a recommendation carry its id, so orders are attributed.
  function withRec(p) {
    const hit = recIds.find((r) => r[0] === String(p && p.product_id));
    return { ...p, ...(hit && !(p && p.recommendation_id) ? { recommendation_id: hit[1] } : {}) };
  }
  const withRecs = (o) => ({ ...o, ...(Array.isArray(o && o.products) ? { products: o.products.map(withRec) } : {}) });
  const same = (p) => ({ ...p });
  const helper = (event, shape, refresh) => (p) => {
    const mid = track(event, shape(p));
    if (refresh) rerender();
    return mid;
  };

  // ---- The widget ----

  const safeUrl = (u) => safe(() => (/^https?:$/.test(new URL(u, loc.href).protocol) ? String(u) : ''), '');
  const money = (v, cur) =>
    v == null ? '' : safe(() => new Intl.NumberFormat(nav.language, { style: 'currency', currency: cur }).format(v), String(v));
  const fillText = (s, v) => s.replace(/\{\{\s*(\w+)\s*\}\}/g, (m, k) => (k in v ? v[k] : ''));
  // As text: nothing becomes HTML, or a handler.
  function fill(node, v) {
    const walk = d.createTreeWalker(node, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      if (n.nodeType === 3) n.nodeValue = fillText(n.nodeValue, v);
      else
        for (const a of Array.from(n.attributes))
          if (/^on/i.test(a.name)) n.removeAttribute(a.name);
          else if (a.value.includes('{{')) n.setAttribute(a.name, fillText(a.value, v));
    }
  }
  const el = (tag, cls, text) => {
    const e = d.createElement(tag);
    e.className = cls;
    if (text) e.textContent = text;
    return e;
  };
  function plain(v) {
    const li = el('li', 'engaged-rec'), a = el('a', '');
    a.href = v.url || '#';
    if (v.image_url) {
      const img = el('img', '');
      img.src = v.image_url;
      img.alt = '';
      a.append(img);
    }
    a.append(el('span', 'engaged-rec-title', v.title), el('span', 'engaged-rec-price', v.price));
    li.append(a, el('small', 'engaged-rec-reason', v.reason));
    return li;
  }

  function draw(box, ans) {
    const tpl = box.querySelector('template');
    let list = box.querySelector('[data-engaged-list]');
    if (!list) {
      list = el(tpl ? 'div' : 'ul', 'engaged-recs');
      list.setAttribute('data-engaged-list', '');
      box.append(list);
    }
    list.textContent = '';
    const items = Array.isArray(ans.items) ? ans.items : [];
    items.forEach((it, i) => {
      const v = {
        product_id: String(it.product_id),
        title: String(it.title || it.product_id),
        url: safeUrl(it.url),
        image_url: safeUrl(it.image_url),
        price: money(it.sale_price ?? it.price, it.currency),
        reason: String(it.reason || ''),
        brand: String(it.brand || ''),
      };
      let nodes;
      if (tpl) {
        const frag = tpl.content.cloneNode(true);
        fill(frag, v);
        nodes = Array.from(frag.children);
      } else nodes = [plain(v)];
      for (const n of nodes) n.setAttribute('data-engaged-item', i);
      list.append(...nodes);
    });
    answers.set(box, ans);
    box.setAttribute('data-recommendation-id', ans.recommendation_id || '');
    box.dispatchEvent(new CustomEvent('engaged:recs', { detail: ans, bubbles: true }));
    if (items.length)
      track('Product List Viewed', {
        list_id: ans.recommendation_id,
        category: box.getAttribute('data-engaged-recs'),
        products: items.map((it, i) => ({ product_id: it.product_id, name: it.title, price: it.price, position: i + 1 })),
      });
  }

  function render(box) {
    const at = (a) => box.getAttribute(a);
    const q = new URLSearchParams({ context: at('data-engaged-recs') || 'home', limit: at('data-limit') || '4' });
    if (at('data-product-id')) q.set('product_id', at('data-product-id'));
    if (userId && signature) q.set('user_id', userId), q.set('signature', signature);
    else q.set('anonymous_id', anon);
    const n = (renders.get(box) || 0) + 1;
    renders.set(box, n);
    return fetch(`${cfg.host}/v1/recommendations?${q}`, {
      headers: { Authorization: `Basic ${btoa(`${cfg.writeKey}:`)}` },
      credentials: 'omit',
    })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`recommendations: ${r.status}`))))
      .then((ans) => renders.get(box) === n && draw(box, ans)) // a newer render wins
      .catch((e) => warn(e.message));
  }
  // After a flush: the answers see the events before.
  function renderRecs() {
    if (!allowed || !cfg.recs) return Promise.resolve();
    return flush().then(() => Promise.all(Array.from(d.querySelectorAll('[data-engaged-recs]'), render)));
  }
  const rerender = () => pending || (pending = Promise.resolve().then(() => ((pending = null), renderRecs())));

  function clicked(e) {
    const item = e.target.closest && e.target.closest('[data-engaged-item]');
    const box = item && item.closest('[data-engaged-recs]');
    const ans = box && answers.get(box);
    const i = item ? +item.getAttribute('data-engaged-item') : -1;
    const it = ans && ans.items && ans.items[i];
    if (!it) return;
    const rid = ans.recommendation_id, pid = String(it.product_id);
    recIds = recIds.filter((r) => r[0] !== pid).concat([[pid, rid]]).slice(-20);
    if (allowed) ls.set(RKEY, recIds);
    track('Product Clicked', { product_id: pid, name: it.title, price: it.price, position: i + 1, url: it.url, list_id: rid, recommendation_id: rid });
  }

  const impl = {
    load,
    consent,
    page,
    track,
    identify,
    reset,
    flush,
    renderRecs,
    user: () => ({ anonymousId: anon, userId, traits: { ...traits } }),
    productViewed: helper('Product Viewed', same, true),
    productClicked: helper('Product Clicked', withRec),
    productAdded: helper('Product Added', withRec, true),
    productRemoved: helper('Product Removed', same, true),
    cartViewed: helper('Cart Viewed', withRecs),
    checkoutStarted: helper('Checkout Started', withRecs),
    orderCompleted: helper('Order Completed', withRecs, true),
  };
  const api = { VERSION };
  for (const m of Object.keys(impl)) api[m] = (...a) => (cfg || m === 'load' ? impl[m](...a) : void early.push([m, a]));
  api.ready = (f) => (cfg && d.readyState !== 'loading' ? setTimeout(f, 0, api) : readyFns.push(f));
  w.engaged = api;

  // The snippet's stub queue, load first.
  const calls = Array.isArray(stub) ? stub.slice() : [];
  calls.sort((a, b) => (b[0] === 'load') - (a[0] === 'load'));
  for (const [m, ...a] of calls) if (api[m]) api[m](...a);
  // Or <script src=".../engaged.js" data-write-key="wk_...">.
  const ds = script && script.dataset;
  if (!cfg && ds && ds.writeKey) load({ writeKey: ds.writeKey, host: ds.host, consent: ds.consent });
})();
