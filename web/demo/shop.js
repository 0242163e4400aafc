/* shop.js: the demo shop's own script, doing what a shop's pages do with engaged.js: page views,
 * the e-commerce events, login with a signed user id, and recommendation widgets. Its data comes
 * from `engaged demo`'s endpoints (/demo/api/...), standing in for the shop's own backend; the cart
 * is the shop's, in localStorage. The pages' CSP allows no inline script, so the loading snippet's
 * stub is here, in a file of the shop's origin. */
(() => {
  'use strict';

  // ---- engaged.js's loading snippet (docs/browser.md): a stub that queues calls until it loads ----
  const stub = (window.engaged = window.engaged || []);
  if (!stub.load)
    for (const m of ['load', 'ready', 'page', 'track', 'identify', 'reset', 'consent', 'flush', 'renderRecs',
      'productViewed', 'productClicked', 'productAdded', 'productRemoved', 'cartViewed', 'checkoutStarted',
      'orderCompleted'])
      stub[m] = (...a) => (stub.push([m, ...a]), stub);
  const engaged = () => window.engaged; // the stub, then the real thing

  // ---- Small helpers ----

  const $ = (sel) => document.querySelector(sel);
  const params = new URLSearchParams(location.search);
  // An element: h('a', {href: 'x', class: 'y'}, 'text', child, ...). Text is always text.
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v == null) continue;
      if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids.flat(Infinity)) if (k != null && k !== false) e.append(k);
    return e;
  }
  const eur = (v) => new Intl.NumberFormat('en-IE', { style: 'currency', currency: 'EUR' }).format(v);
  async function api(path, opts) {
    const r = await fetch(`/demo/api/${path}`, opts);
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw Object.assign(new Error((body.error && body.error.message) || r.status), { status: r.status });
    return body;
  }

  // ---- The catalogue and the cart ----

  let products = [];
  const byId = (id) => products.find((p) => p.id === id);
  const stockOf = (p) => Object.values(p.stock || {}).reduce((a, b) => a + b, 0);
  const category = (p) => (p.categories || ['Other'])[0];
  // A product as the e-commerce spec's events carry it.
  const line = (p, quantity = 1) => ({
    product_id: p.id,
    sku: p.id,
    name: p.title,
    brand: p.brand,
    category: category(p),
    price: p.price,
    currency: p.currency,
    quantity,
    url: new URL(p.url, location.href).href,
    image_url: new URL(p.image_url, location.href).href,
  });
  const cart = {
    lines: () => JSON.parse(localStorage.getItem('demo_cart') || '[]'),
    save: (lines) => localStorage.setItem('demo_cart', JSON.stringify(lines)),
    id() {
      let id = localStorage.getItem('demo_cart_id');
      if (!id) localStorage.setItem('demo_cart_id', (id = `cart-${Date.now().toString(36)}`));
      return id;
    },
    products: () => cart.lines().filter((l) => byId(l.id)).map((l) => line(byId(l.id), l.qty)),
    total: () => cart.products().reduce((s, l) => s + l.price * l.quantity, 0),
  };
  const me = () => JSON.parse(localStorage.getItem('demo_customer') || 'null');

  // ---- Layout ----

  function header() {
    const count = cart.lines().reduce((s, l) => s + l.qty, 0);
    const who = me();
    const cats = [...new Set(products.map(category))];
    $('#top').replaceChildren(
      h('a', { class: 'logo', href: './' }, 'Trailhead'),
      h('nav', {}, cats.map((c) => h('a', { href: `category.html?c=${encodeURIComponent(c)}` }, c))),
      h('form', { class: 'search', action: 'search.html', role: 'search' },
        h('input', { name: 'q', type: 'search', placeholder: 'Search', value: params.get('q') || '', 'aria-label': 'Search' })),
      h('nav', { class: 'side' },
        who
          ? [h('span', { class: 'who' }, `Hi, ${who.user_id}`), h('a', { href: '#', id: 'logout', on: { click: logout } }, 'Log out')]
          : h('a', { href: 'login.html', id: 'login-link' }, 'Log in'),
        h('a', { href: 'profile.html' }, 'Your profile'),
        h('a', { href: 'admin.html' }, 'Shop admin'),
        h('a', { href: 'cart.html', id: 'cart-link' }, `Cart (${count})`)),
    );
  }
  function logout(ev) {
    ev.preventDefault();
    localStorage.removeItem('demo_customer');
    engaged().reset();
    location.href = './';
  }

  function card(p) {
    const out = stockOf(p) === 0 && p.stock;
    return h('a', { class: `card${out ? ' sold-out' : ''}`, href: `product.html?id=${encodeURIComponent(p.id)}`, 'data-product-id': p.id },
      h('img', { src: p.image_url, alt: '' }),
      h('span', { class: 'title' }, p.title),
      h('span', { class: 'price' }, out ? 'Sold out' : eur(p.price)));
  }
  const grid = (list) => $('#grid').replaceChildren(...(list.length ? list.map(card) : [h('p', {}, 'Nothing found.')]));

  // ---- Pages: each builds its DOM, then its events go to engaged.js ----

  const pages = {
    home() {
      const cats = [...new Set(products.map(category))];
      $('#categories').replaceChildren(...cats.map((c) => h('a', { class: 'cat', href: `category.html?c=${encodeURIComponent(c)}` }, c)));
      grid(products);
    },
    category() {
      const c = params.get('c') || '';
      $('#title').textContent = c;
      const list = products.filter((p) => (p.categories || []).includes(c));
      grid(list);
      engaged().track('Product List Viewed', { list_id: `category-${c}`, category: c, products: list.map((p, i) => ({ ...line(p), position: i + 1 })) });
    },
    search() {
      const q = (params.get('q') || '').trim().toLowerCase();
      $('#title').textContent = `Search: ${params.get('q') || ''}`;
      const hit = (p) => [p.title, p.brand, category(p)].some((s) => (s || '').toLowerCase().includes(q));
      grid(q ? products.filter(hit) : []);
      if (q) engaged().track('Products Searched', { query: params.get('q') });
    },
    product() {
      const p = byId(params.get('id'));
      if (!p) return $('#product').replaceChildren(h('p', {}, 'No such product.'));
      document.title = `${p.title} · Trailhead (engaged demo)`;
      const left = stockOf(p), tracked = !!p.stock;
      $('#product').replaceChildren(
        h('img', { src: p.image_url, alt: '' }),
        h('div', { class: 'info' },
          h('p', { class: 'brand' }, p.brand),
          h('h1', {}, p.title),
          h('p', { class: 'price' }, eur(p.price)),
          h('p', { class: 'stock' }, !tracked ? '' : left ? `${left} in stock` : 'Sold out'),
          h('button', { id: 'add', disabled: tracked && !left, on: { click: () => add(p) } }, 'Add to cart'),
          h('p', { id: 'added', class: 'note' })));
      $('[data-engaged-recs]').setAttribute('data-product-id', p.id);
      engaged().productViewed(line(p));
    },
    cart() {
      const lines = cart.products();
      $('#cart').replaceChildren(
        lines.length
          ? h('div', { class: 'panel' },
            h('table', {}, lines.map((l) => h('tr', { 'data-product-id': l.product_id },
              h('td', {}, h('a', { href: `product.html?id=${encodeURIComponent(l.product_id)}` }, l.name)),
              h('td', {}, `× ${l.quantity}`),
              h('td', {}, eur(l.price * l.quantity)),
              h('td', {}, h('button', { class: 'link', on: { click: () => remove(l.product_id) } }, 'Remove'))))),
            h('p', { class: 'total' }, `Total ${eur(cart.total())}`),
            h('a', { class: 'button', href: 'checkout.html', id: 'to-checkout' }, 'Checkout'))
          : h('p', {}, 'Your cart is empty.'));
      engaged().cartViewed({ cart_id: cart.id(), products: lines });
    },
    checkout() {
      const lines = cart.products();
      if (!lines.length) return $('#checkout').replaceChildren(h('p', {}, 'Your cart is empty.'));
      const who = me();
      const order = `order-${Date.now().toString(36)}`;
      const total = Math.round((cart.total() + 4.95) * 100) / 100;
      engaged().checkoutStarted({ checkout_id: cart.id(), order_id: order, value: cart.total(), currency: 'EUR', products: lines });
      $('#checkout').replaceChildren(h('form', { class: 'panel', id: 'pay', on: { submit: (ev) => {
        ev.preventDefault();
        engaged().orderCompleted({ checkout_id: cart.id(), order_id: order, total, revenue: cart.total(), shipping: 4.95, currency: 'EUR', products: lines });
        cart.save([]);
        localStorage.removeItem('demo_cart_id');
        header();
        $('#checkout').replaceChildren(h('p', { id: 'thanks' }, `Thank you! Order ${order} is placed (${eur(total)}).`));
      } } },
      h('p', {}, `${lines.length} item(s), ${eur(cart.total())} + shipping ${eur(4.95)} = ${eur(total)}`),
      h('label', {}, 'Email ', h('input', { name: 'email', type: 'email', required: true, value: (who && who.email) || '' })),
      h('button', { type: 'submit', id: 'place-order' }, 'Place order')));
    },
    login() {
      $('#login').addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const f = new FormData(ev.target);
        const user = String(f.get('user_id')).trim(), email = String(f.get('email')).trim();
        try {
          // In a real shop the server renders this signature into the page after login.
          const { signature } = await api(`sign?user_id=${encodeURIComponent(user)}`);
          engaged().identify(user, { email }, { signature });
          await engaged().flush();
          localStorage.setItem('demo_customer', JSON.stringify({ user_id: user, email }));
          header();
          $('#status').replaceChildren(h('p', { id: 'logged-in' }, `Logged in as ${user}. `, h('a', { href: 'profile.html' }, 'See your profile')));
        } catch (e) {
          $('#status').replaceChildren(h('p', { class: 'error' }, e.message));
        }
      });
    },
    profile() {
      engaged().ready(() => {
        const show = () => showProfile().finally(() => setTimeout(show, 2000));
        show();
      });
    },
    admin() {
      const port = location.port ? `:${location.port}` : '';
      $('#curl').textContent = `curl -X PATCH -H 'Authorization: Bearer ADMIN_KEY' -d '{"stock":0}' \\\n     ${location.protocol}//${location.hostname}${port}/v1/catalog/products/p-1001`;
      const rows = () => products.map((p) => h('tr', { 'data-product-id': p.id },
        h('td', {}, h('a', { href: `product.html?id=${encodeURIComponent(p.id)}` }, p.title)),
        h('td', { class: 'num' }, String(stockOf(p))),
        h('td', {}, h('button', { class: 'stock-zero', on: { click: () => setStock(p, 0) } }, 'Sell out'),
          ' ', h('button', { class: 'stock-fill', on: { click: () => setStock(p, 20) } }, 'Restock'))));
      const draw = () => $('#admin').replaceChildren(h('table', { class: 'panel' }, h('tr', {}, h('th', {}, 'Product'), h('th', {}, 'Stock'), h('th', {})), rows()));
      async function setStock(p, stock) {
        const r = await api(`products/${encodeURIComponent(p.id)}`, { method: 'PATCH', body: JSON.stringify({ stock }) });
        Object.assign(p, r.product || r);
        draw();
      }
      draw();
    },
  };

  function add(p) {
    const lines = cart.lines();
    const l = lines.find((x) => x.id === p.id);
    if (l) l.qty++;
    else lines.push({ id: p.id, qty: 1 });
    cart.save(lines);
    engaged().productAdded({ cart_id: cart.id(), ...line(p) });
    header();
    $('#added').textContent = 'Added. ';
    $('#added').append(h('a', { href: 'cart.html' }, 'View cart'));
  }
  function remove(id) {
    const p = byId(id);
    cart.save(cart.lines().filter((l) => l.id !== id));
    engaged().productRemoved({ cart_id: cart.id(), ...line(p) });
    header();
    pages.cart();
  }

  // The profile an admin would see, with the latest events of its timeline.
  async function showProfile() {
    const anon = engaged().user().anonymousId;
    let prof;
    try {
      prof = await api(`profile?anonymous_id=${encodeURIComponent(anon)}`);
    } catch (e) {
      $('#profile').replaceChildren(h('p', {}, e.status === 404 ? 'engaged has no profile for you yet: browse a little.' : e.message));
      return;
    }
    const { events } = await api(`profiles/${encodeURIComponent(prof.id)}/events?limit=1000`);
    const c = prof.computed || {};
    const kv = (o) => h('dl', {}, Object.entries(o || {}).map(([k, v]) => [h('dt', {}, k), h('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))]));
    $('#profile').replaceChildren(
      h('div', { class: 'panel' }, h('h2', {}, `Profile ${prof.id}`),
        h('h3', {}, 'Identities'),
        h('ul', { id: 'identities' }, (prof.identities || []).map((i) => h('li', { 'data-type': i.type }, `${i.type}: ${i.value}`))),
        h('h3', {}, 'Traits'), kv(prof.traits),
        h('h3', {}, 'Computed'), kv(c)),
      h('div', { class: 'panel' }, h('h2', {}, `Latest events (${events.length})`),
        h('ol', { id: 'timeline' }, events.slice(-15).reverse().map((e) => h('li', {},
          h('code', {}, e.type), ' ', e.event || e.name || '', ' ', h('small', {}, e.timestamp))))),
      h('details', {}, h('summary', {}, 'Raw JSON'), h('pre', {}, JSON.stringify(prof, null, 2))));
  }

  // ---- Start: the catalogue and the key first, then engaged.js, then the page's events ----

  Promise.all([api('config'), api('products?limit=1000')])
    .then(([config, list]) => {
      products = list.products || [];
      header();
      const page = document.body.dataset.page;
      // load() renders the widgets once the page's first events are sent.
      engaged().load({ writeKey: config.writeKey, host: location.origin });
      if (pages[page]) pages[page]();
    })
    .catch((e) => document.body.prepend(h('p', { class: 'error' }, `The demo shop could not start: ${e.message}`)));
})();
