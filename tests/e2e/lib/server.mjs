// Starts, stops, kills and restarts the real `engaged` binary for black-box tests.
//
//   const srv = await startServer();            // fresh temp data dir, fresh keys, free port
//   await srv.post('/v1/track', {...});          // write key, JSON
//   const evs = await srv.allEvents();           // admin key, pages through cursors
//   await srv.stop();                            // SIGTERM, asserts exit 0
//   await srv.restart();                         // same data dir, same keys, new port
//
// The binary is $ENGAGED_BIN or ../../../build/engaged relative to this file (repo root build/).
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { basic, bearer, gzip, request, sleep } from './http.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '../../..');
export const BIN = process.env.ENGAGED_BIN
  ? path.resolve(process.env.ENGAGED_BIN)
  : path.resolve(here, '../../../build/engaged');

const STDERR_KEEP = 1 << 20; // keep the last 1 MiB of a server's stderr
const live = new Set(); // child processes to SIGKILL if the test process exits early
const tmpDirs = new Set(); // tmpDataDir()s, removed when the test process exits

process.on('exit', () => {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  // A test that stops its server (rather than closing it), or fails half-way, still leaves no
  // directory behind; ENGAGED_KEEP_DATA=1 keeps them for a look.
  if (process.env.ENGAGED_KEEP_DATA) return;
  for (const dir of tmpDirs) fs.rmSync(dir, { recursive: true, force: true });
});

export function assertBinary() {
  if (!fs.existsSync(BIN)) {
    throw new Error(`engaged binary not found at ${BIN} (build it with make, or set ENGAGED_BIN)`);
  }
}

/** A port that was free a moment ago on 127.0.0.1 (bind port 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function newKey(prefix) {
  return `${prefix}_${crypto.randomBytes(16).toString('hex')}`;
}

/** A fresh directory under the system's temp dir, removed when the test process exits. */
export function tmpDataDir(tag = 'e2e') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `engaged-${tag}-`));
  tmpDirs.add(dir);
  return dir;
}

/** Runs a CLI subcommand of the binary synchronously (import, keys create). */
export function runCli(args, { env = {}, timeoutMs = 60000, input } = {}) {
  const r = spawnSync(BIN, args, {
    env: cleanEnv(env),
    encoding: 'utf8',
    timeout: timeoutMs,
    input,
    maxBuffer: 64 << 20,
  });
  if (r.error) throw r.error;
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function cleanEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ENGAGED_')) env[k] = v;
  return { ...env, ...extra };
}

/** Resolves to p's value, or null after ms; never leaves a timer behind. */
export function waitOrNull(p, ms) {
  let timer;
  return Promise.race([p, new Promise((r) => (timer = setTimeout(() => r(null), ms)))]).finally(() => clearTimeout(timer));
}

export class Server {
  constructor(opts = {}) {
    this.opts = opts;
    this.dataDir = opts.dataDir ?? tmpDataDir(opts.tag);
    this.ownsDataDir = !opts.dataDir;
    this.writeKey = opts.writeKey ?? newKey('wk');
    this.adminKey = opts.adminKey ?? newKey('ak');
    this.proc = null;
    this.port = 0;
    this.stderr = '';
    this.history = []; // stderr of earlier runs of this server (restarts)
    this.exit = null; // {code, signal} of the current process once it ended
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  env() {
    const e = {
      ENGAGED_WRITE_KEY: this.writeKey,
      ENGAGED_ADMIN_KEY: this.adminKey,
      ENGAGED_ACCESS_LOG: this.opts.accessLog ?? 'off',
      ENGAGED_RATE_LIMIT: String(this.opts.rateLimit ?? 0),
      ...(this.opts.env ?? {}),
    };
    if (this.opts.accessLog === null) delete e.ENGAGED_ACCESS_LOG; // the binary's default
    return cleanEnv(e);
  }

  async start({ readyTimeoutMs = 15000 } = {}) {
    assertBinary();
    if (this.proc && this.exit === null) throw new Error('server already running');
    if (this.stderr) this.history.push(this.stderr);
    this.stderr = '';
    this.exit = null;
    this.port = this.opts.port ?? (await freePort());
    const args = [this.opts.command ?? 'serve', '--listen', `127.0.0.1:${this.port}`, '--data', this.dataDir];
    const proc = spawn(BIN, args, { env: this.env(), stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    live.add(proc);
    const onData = (chunk) => {
      this.stderr += chunk.toString('utf8');
      if (this.stderr.length > STDERR_KEEP) this.stderr = this.stderr.slice(-STDERR_KEEP);
    };
    proc.stderr.on('data', onData);
    proc.stdout.on('data', onData);
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        live.delete(proc);
        if (this.proc === proc) this.exit = { code, signal };
        resolve({ code, signal });
      });
    });
    proc.on('error', (e) => {
      this.stderr += `\n[spawn error] ${e.message}\n`;
    });

    // Bounded wait for /healthz.
    const deadline = Date.now() + readyTimeoutMs;
    let last = 'no attempt';
    for (let i = 0; i < 2000 && Date.now() < deadline; i++) {
      if (this.exit) {
        throw new Error(
          `engaged exited during startup (code ${this.exit.code}, signal ${this.exit.signal})\n${this.stderrTail()}`,
        );
      }
      try {
        const r = await request({ url: `${this.url}/healthz`, timeoutMs: 1000 });
        if (r.status === 200) return this;
        last = `status ${r.status}: ${r.text.slice(0, 200)}`;
      } catch (e) {
        last = e.code || e.message;
      }
      await sleep(i < 20 ? 25 : 100);
    }
    await this.kill();
    throw new Error(`engaged not ready after ${readyTimeoutMs} ms (last: ${last})\n${this.stderrTail()}`);
  }

  /** SIGTERM and wait; by default asserts exit code 0. */
  async stop({ timeoutMs = 20000, expectZero = true } = {}) {
    if (!this.proc || this.exit) return this.exit;
    this.proc.kill('SIGTERM');
    const res = await waitOrNull(this.exited, timeoutMs);
    if (res === null) {
      this.proc.kill('SIGKILL');
      await this.exited;
      throw new Error(`engaged did not exit within ${timeoutMs} ms of SIGTERM\n${this.stderrTail()}`);
    }
    if (expectZero && (res.code !== 0 || res.signal)) {
      throw new Error(
        `engaged exited with code ${res.code} signal ${res.signal} after SIGTERM (expected 0)\n${this.stderrTail()}`,
      );
    }
    return res;
  }

  /** SIGKILL and wait. */
  async kill() {
    if (!this.proc || this.exit) return this.exit;
    this.proc.kill('SIGKILL');
    return await this.exited;
  }

  /** Start again on the same data dir and keys (a new port unless one was fixed). */
  async restart(opts) {
    if (this.proc && !this.exit) await this.stop();
    return this.start(opts);
  }

  /** Stop (SIGTERM, exit 0 asserted) and remove the temp data dir. */
  async close({ expectZero = true } = {}) {
    try {
      await this.stop({ expectZero });
    } finally {
      if (this.ownsDataDir && !process.env.ENGAGED_KEEP_DATA) {
        fs.rmSync(this.dataDir, { recursive: true, force: true });
      }
    }
  }

  alive() {
    return this.proc !== null && this.exit === null;
  }

  stderrTail(n = 8000) {
    const s = this.stderr;
    return `--- engaged stderr (pid ${this.proc?.pid}, data ${this.dataDir}) ---\n${
      s.length > n ? '...' + s.slice(-n) : s
    }\n--- end stderr ---`;
  }

  authHeader(auth) {
    if (auth === undefined || auth === 'write') return { Authorization: basic(this.writeKey) };
    if (auth === 'admin') return { Authorization: bearer(this.adminKey) };
    if (auth === 'admin-basic') return { Authorization: basic(this.adminKey) };
    if (auth === 'write-bearer') return { Authorization: bearer(this.writeKey) };
    if (auth === 'none' || auth === null) return {};
    if (typeof auth === 'object') return auth; // explicit header map
    return { Authorization: auth };
  }

  /** POST a JSON value (or raw string/Buffer) with the write key by default. */
  async post(p, body, { auth, gzip: gz = false, headers = {}, timeoutMs } = {}) {
    let buf = typeof body === 'string' || Buffer.isBuffer(body) ? Buffer.from(body) : Buffer.from(JSON.stringify(body));
    const h = { 'Content-Type': 'application/json', ...this.authHeader(auth), ...headers };
    if (gz) {
      buf = gzip(buf);
      h['Content-Encoding'] = 'gzip';
    }
    return request({ url: this.url + p, method: 'POST', headers: h, body: buf, timeoutMs });
  }

  async get(p, { auth = 'admin', headers = {}, timeoutMs } = {}) {
    return request({ url: this.url + p, method: 'GET', headers: { ...this.authHeader(auth), ...headers }, timeoutMs });
  }

  /**
   * Every stored event matching `query` (object of GET /v1/events params), following `next` cursors.
   * Bounded: at most maxPages pages; throws if a cursor repeats or a page fails.
   */
  async allEvents(query = {}, { limit = 1000, maxPages = 500 } = {}) {
    const out = [];
    let cursor = null;
    const seen = new Set();
    for (let page = 0; page < maxPages; page++) {
      const q = new URLSearchParams({ ...query, limit: String(limit) });
      if (cursor !== null) q.set('cursor', cursor);
      const r = await this.get(`/v1/events?${q}`);
      if (r.status !== 200 || !r.json || !Array.isArray(r.json.events)) {
        throw new Error(`GET /v1/events?${q} → ${r.status} ${r.text.slice(0, 500)}`);
      }
      out.push(...r.json.events);
      if (!('next' in r.json)) throw new Error(`GET /v1/events: response has no "next" member: ${r.text.slice(0, 300)}`);
      const next = r.json.next;
      if (next === null) return out;
      if (typeof next !== 'string' || next === '') throw new Error(`GET /v1/events: bad next ${JSON.stringify(next)}`);
      if (seen.has(next)) throw new Error(`GET /v1/events: cursor ${next} repeated (no progress)`);
      seen.add(next);
      if (r.json.events.length === 0) throw new Error(`GET /v1/events: empty page with non-null next ${next}`);
      cursor = next;
    }
    throw new Error(`GET /v1/events: more than ${maxPages} pages`);
  }

  async countEvents(query = {}) {
    return (await this.allEvents(query)).length;
  }
}

export async function startServer(opts = {}) {
  const s = new Server(opts);
  await s.start(opts);
  return s;
}

/**
 * Wraps a test body so that, when it fails, the stderr of the given servers is printed.
 *   test('x', logOnFail(() => [srv], async (t) => { ... }))
 */
export function logOnFail(getServers, fn) {
  return async (t) => {
    try {
      return await fn(t);
    } catch (e) {
      let servers = [];
      try {
        servers = [getServers()].flat().filter(Boolean);
      } catch {
        /* ignore */
      }
      for (const s of servers) {
        const hist = s.history.length ? `\n(${s.history.length} earlier run(s) of this server)` : '';
        process.stderr.write(`\n[${t?.name ?? 'test'} failed]${hist}\n${s.stderrTail()}\n`);
      }
      throw e;
    }
  };
}
