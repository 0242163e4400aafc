// Child process: sends a planned mix of calls with @rudderstack/rudder-sdk-node (gzip on, its default)
// and prints, as one JSON line on stdout, every batch it put on the wire (inflated) and every error.
// Runs in its own process so that a skewed client clock (SKEW_MS) cannot disturb the test runner.
//   node rudder-client.mjs '{"url":"http://127.0.0.1:PORT","writeKey":"...","tag":"rs","n":300,"skewMs":0}'
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { planCalls } from './plan.mjs';

const require = createRequire(import.meta.url);
const Analytics = require('@rudderstack/rudder-sdk-node');

const cfg = JSON.parse(process.argv[2]);
const RealDate = Date;
const realStart = RealDate.now();
if (cfg.skewMs) {
  const skew = cfg.skewMs;
  globalThis.Date = class SkewedDate extends RealDate {
    constructor(...a) {
      if (a.length === 0) super(RealDate.now() + skew);
      else super(...a);
    }
    static now() {
      return RealDate.now() + skew;
    }
  };
}

const batches = [];
const errors = [];
const statuses = [];

const analytics = new Analytics(cfg.writeKey, {
  dataPlaneUrl: cfg.url,
  path: '/v1/batch',
  flushAt: cfg.flushAt ?? 20,
  flushInterval: 200,
  retryCount: 2,
  logLevel: 'error',
});
analytics.axiosInstance.interceptors.request.use((req) => {
  const enc = req.headers?.get?.('Content-Encoding') ?? req.headers?.['Content-Encoding'];
  let body = req.data;
  try {
    if (Buffer.isBuffer(body) || body instanceof Uint8Array) {
      body = JSON.parse((enc === 'gzip' ? zlib.gunzipSync(body) : Buffer.from(body)).toString('utf8'));
    } else if (typeof body === 'string') body = JSON.parse(body);
  } catch (e) {
    errors.push(`could not decode outgoing body: ${e.message}`);
  }
  const { batch, ...envelope } = body ?? {};
  batches.push({ envelope, events: batch ?? [], encoding: enc ?? null });
  return req;
});
analytics.axiosInstance.interceptors.response.use(
  (res) => {
    statuses.push(res.status);
    return res;
  },
  (err) => {
    statuses.push(err.response ? `${err.response.status} ${JSON.stringify(err.response.data)}` : String(err.code ?? err.message));
    throw err;
  },
);

const calls = planCalls(cfg.tag, cfg.n);
for (const { method, params } of calls) {
  analytics[method](params, (err) => {
    if (err) errors.push(`${method} ${params.messageId}: ${err.message ?? err}`);
  });
}
for (let i = 0; i < 1000 && analytics.queue.length > 0; i++) {
  try {
    await analytics.flush();
  } catch (e) {
    errors.push(`flush: ${e.message}`);
  }
}
try {
  if (analytics.pendingFlush) await analytics.pendingFlush;
} catch (e) {
  errors.push(`final flush: ${e.message}`);
}
// Let the callbacks (setImmediate) run.
await new Promise((r) => setTimeout(r, 50));
process.stdout.write(
  JSON.stringify({ batches, errors, statuses, realStart, realEnd: RealDate.now(), left: analytics.queue.length }) + '\n',
);
process.exit(0);
