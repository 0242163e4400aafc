// Headless Chromium for the browser tests (browser.test.mjs, storefront.test.mjs): Debian's
// chromium driven by playwright-core, pages served from loopback ports of their own (so CORS is
// real), and page contexts that may reach nothing but those servers and engaged.
//
//   const browser = await launchBrowser();
//   const pages = await startPageServer({ '/shop.html': html, '/app.js': { body: js, type: 'text/javascript' } });
//   const { context, page, log } = await openPage(browser, { hosts: [pages.origin, srv.url], engaged: srv.url });
//   ... log.toEngaged (requests to engaged), log.elsewhere (blocked), log.errors (page errors)
//   await context.close(); await pages.close(); await browser.close();
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CHROMIUM = process.env.ENGAGED_CHROMIUM ?? '/usr/bin/chromium';

/** Launches headless Chromium (bounded: 30 s). */
export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: scripts/deps.sh test installs Debian's chromium (or set ENGAGED_CHROMIUM)`);
  }
  const { chromium } = await import('playwright-core');
  // --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], timeout: 30000 });
}

/**
 * A page server on a loopback port of its own. routes maps a path to the page's HTML (a string), to
 * { body, type, headers } or { file, type } (a file under tests/e2e, streamed). Anything else is 404.
 * Resolves to { origin, close }.
 */
export function startPageServer(routes) {
  const server = http.createServer((req, res) => {
    const r = routes[new URL(req.url, 'http://page').pathname];
    if (r === undefined) return res.writeHead(404).end();
    const o = typeof r === 'string' ? { body: r } : r;
    res.writeHead(200, { 'Content-Type': o.type ?? 'text/html; charset=utf-8', ...(o.headers ?? {}) });
    if (o.file) fs.createReadStream(path.join(E2E_DIR, o.file)).pipe(res);
    else res.end(o.body);
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const origin = `http://127.0.0.1:${server.address().port}`;
      resolve({ origin, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

/**
 * A fresh browser context whose page may reach only `hosts` (origins or URLs): anything else (an
 * SDK's CDN, its own API) is aborted and recorded, so a test shows engaged needs nothing else.
 * Requests to `engaged` are logged with their method, path, headers, body and resource type
 * (sendBeacon's are "ping").
 */
export async function openPage(browser, { hosts, engaged }) {
  const context = await browser.newContext();
  context.setDefaultTimeout(15000);
  const log = { toEngaged: [], elsewhere: [], errors: [] };
  const local = new Set(hosts.map((h) => new URL(h).host));
  await context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (local.has(u.host)) return route.continue();
    log.elsewhere.push(route.request().url());
    return route.abort();
  });
  const page = await context.newPage();
  page.on('request', (r) => {
    if (!engaged || !r.url().startsWith(engaged)) return;
    const u = new URL(r.url());
    log.toEngaged.push({ method: r.method(), path: u.pathname, search: u.search, headers: r.headers(), body: r.postData(), type: r.resourceType() });
  });
  page.on('pageerror', (e) => log.errors.push(String(e)));
  return { context, page, log };
}
