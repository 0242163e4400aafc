// Loads and runs the data-driven API cases in tests/api/cases/*.json against one running server.
//
// A case file is {"cases": [CASE, ...]}; a CASE is
//   {
//     "name": "...",                      unique within the file
//     "skip": "reason",                   optional
//     "setup": [REQUEST, ...],            optional; each must answer 2xx (or its own "expectStatus")
//     "request": REQUEST,
//     "repeat": N,                        optional: send the same request N times (same body, same ids)
//     "expect": EXPECT | {"$oneOf": [EXPECT, ...]}   alternatives where the contract allows either
//   }
//   REQUEST = {
//     "method": "POST",                   default POST
//     "path": "/v1/track",
//     "auth": "write" | "admin" | "admin-basic" | "write-bearer" | "none" | {"Authorization": "..."},
//             default: "write" for POST, "admin" for GET
//     "headers": {...},                   added to Content-Type: application/json (override it here)
//     "body": JSON,                       serialized with JSON.stringify after expansion (see below)
//     "raw": STRING | GENERATOR,          sent verbatim instead of "body"
//     "rawBase64": "...",                 bytes sent verbatim
//     "gzip": true,                       gzip the body and send Content-Encoding: gzip
//     "chunked": true,                    Transfer-Encoding: chunked instead of Content-Length
//     "expectStatus": 200                 (setup requests only)
//   }
//   EXPECT = {
//     "status": 400,
//     "error": {...},                     subset match on the response's "error" object; for any status
//                                         >= 400, error.code and error.message must be non-empty strings
//     "body": {...},                      subset match on the whole JSON response (lib/match.mjs syntax)
//     "headers": {"retry-after": "$present"},  subset match on lower-cased response headers
//     "text": MATCHER,                    match on the raw response text
//     "contentType": {"$regex": "..."},   match on Content-Type
//     "stored": N,                        events added to the store by the request(s) (after setup);
//                                         defaults to 0 when status >= 400
//     "events": [MATCH, ...],             subset match of exactly the new events, in arrival order;
//                                         a key "$timestampOffsetMs": N asserts timestamp == receivedAt + N
//     "maxMs": N                          the (last) response must come within N ms
//   }
// Expansion of "body" / "raw" values (done before sending):
//   strings: {{writeKey}} {{adminKey}} {{writeKeyBasic}} (base64 of key:) {{run}} (random per run) {{uuid}} (fresh each time)
//            {{i}} (index inside $array) {{hourAgo}} {{hourAhead}} (RFC 3339)
//   {"$repeat": "x", "times": N}  → "xxx…"
//   {"$array": ITEM, "count": N}  → [ITEM, …] with {{i}} = 0..N-1
//   {"$concat": [A, B, …]}        → string concatenation of the expanded parts
//   {"$json": VALUE}              → JSON.stringify(expanded VALUE)   (inside "raw")
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { gzip, request } from './http.mjs';
import { match, short } from './match.mjs';

export function loadCaseFiles(dir) {
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort();
  return files.map((f) => {
    const full = path.join(dir, f);
    let doc;
    try {
      doc = JSON.parse(fs.readFileSync(full, 'utf8'));
    } catch (e) {
      throw new Error(`${full}: ${e.message}`);
    }
    if (!doc || !Array.isArray(doc.cases)) throw new Error(`${full}: expected {"cases": [...]}`);
    const names = new Set();
    for (const c of doc.cases) {
      if (!c.name || !c.request || !c.expect) throw new Error(`${full}: case without name/request/expect: ${short(c)}`);
      if (names.has(c.name)) throw new Error(`${full}: duplicate case name ${c.name}`);
      names.add(c.name);
    }
    return { file: f, cases: doc.cases };
  });
}

function expandString(s, vars, i) {
  return s.replace(/\{\{(\w+)\}\}/g, (m, name) => {
    if (name === 'uuid') return crypto.randomUUID();
    if (name === 'i') return i === undefined ? m : String(i);
    if (name in vars) return String(vars[name]);
    throw new Error(`unknown template variable ${m}`);
  });
}

export function expand(v, vars, i) {
  if (typeof v === 'string') return v.includes('{{') ? expandString(v, vars, i) : v;
  if (Array.isArray(v)) return v.map((x) => expand(x, vars, i));
  if (v && typeof v === 'object') {
    if ('$repeat' in v) return expand(v.$repeat, vars, i).repeat(v.times);
    if ('$array' in v) {
      const out = new Array(v.count);
      for (let k = 0; k < v.count; k++) out[k] = expand(v.$array, vars, k);
      return out;
    }
    if ('$concat' in v) return v.$concat.map((p) => expand(p, vars, i)).join('');
    if ('$json' in v) return JSON.stringify(expand(v.$json, vars, i));
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = expand(x, vars, i);
    return o;
  }
  return v;
}

/** Builds {method, url, headers, body} for a REQUEST against srv. */
export function buildRequest(srv, req, vars) {
  const method = req.method ?? 'POST';
  const auth = req.auth ?? (method === 'GET' ? 'admin' : 'write');
  const headers = { ...srv.authHeader(auth) };
  let body;
  if (req.rawBase64 !== undefined) body = Buffer.from(req.rawBase64, 'base64');
  else if (req.raw !== undefined) body = Buffer.from(expand(req.raw, vars));
  else if (req.body !== undefined) body = Buffer.from(JSON.stringify(expand(req.body, vars)));
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (req.gzip) {
    body = gzip(body ?? Buffer.alloc(0));
    headers['Content-Encoding'] = 'gzip';
  }
  for (const [k, v] of Object.entries(req.headers ?? {})) {
    // Replace case-insensitively so a case can override Content-Type.
    for (const h of Object.keys(headers)) if (h.toLowerCase() === k.toLowerCase()) delete headers[h];
    if (v !== null) headers[k] = expand(v, vars);
  }
  const p = expand(req.path, vars);
  return { method, url: srv.url + p, headers, body, chunked: Boolean(req.chunked), desc: `${method} ${p}${req.chunked ? ' (chunked)' : ''}` };
}

function describeReq(r) {
  const b = r.body === undefined ? '' : r.body.length > 400 ? `${r.body.length} bytes` : JSON.stringify(r.body.toString('latin1'));
  return `${r.desc} ${JSON.stringify(r.headers)} ${b}`;
}

function describeRes(r) {
  return `${r.status} ${JSON.stringify(pickHeaders(r.headers))} ${r.text.length > 1500 ? r.text.slice(0, 1500) + '…' : r.text}`;
}

function pickHeaders(h) {
  const out = {};
  for (const k of ['content-type', 'retry-after', 'allow', 'content-length']) if (h[k] !== undefined) out[k] = h[k];
  return out;
}

function checkExpect(exp, res, newEvents) {
  const errs = [];
  if (exp.status !== undefined && res.status !== exp.status) errs.push(`status: expected ${exp.status}, got ${res.status}`);
  const ct = String(res.headers['content-type'] ?? '');
  if (res.status >= 400) {
    const e = res.json?.error;
    if (!/json/i.test(ct)) errs.push(`error response Content-Type is ${JSON.stringify(ct)}, expected JSON`);
    if (!e || typeof e !== 'object') errs.push('error response has no "error" object');
    else {
      if (typeof e.code !== 'string' || !e.code) errs.push('error.code missing');
      if (typeof e.message !== 'string' || !e.message) errs.push('error.message missing or empty');
    }
  }
  // "field" names the one field at fault; when no single field is, it is left out (never "").
  if (res.json?.error && 'field' in res.json.error && (typeof res.json.error.field !== 'string' || !res.json.error.field)) {
    errs.push(`$.error.field: present but not a non-empty string (${short(res.json.error.field)})`);
  }
  const rej = res.json?.rejected ?? res.json?.error?.rejected;
  if (Array.isArray(rej)) {
    rej.forEach((r, k) => {
      if (!Number.isInteger(r?.index) || typeof r?.code !== 'string' || !r.code || typeof r?.message !== 'string' || !r.message) {
        errs.push(`rejected[${k}]: needs integer index, code and message: ${short(r)}`);
      }
      if (r && 'field' in r && (typeof r.field !== 'string' || !r.field)) {
        errs.push(`rejected[${k}].field: present but not a non-empty string (${short(r.field)})`);
      }
    });
  }
  if (exp.error !== undefined) errs.push(...match(exp.error, res.json?.error, '$.error'));
  if (exp.body !== undefined) errs.push(...match(exp.body, res.json, '$'));
  if (exp.text !== undefined) errs.push(...match(exp.text, res.text, 'text'));
  if (exp.contentType !== undefined) errs.push(...match(exp.contentType, ct, 'content-type'));
  if (exp.headers !== undefined) errs.push(...match(exp.headers, res.headers, 'headers'));
  if (exp.maxMs !== undefined && res.ms > exp.maxMs) errs.push(`took ${res.ms} ms, expected at most ${exp.maxMs} ms`);
  const stored = exp.stored ?? (res.status >= 400 || exp.status >= 400 ? 0 : undefined);
  if (stored !== undefined && newEvents.length !== stored) {
    errs.push(`stored: expected ${stored} new event(s), found ${newEvents.length}: ${short(newEvents, 600)}`);
  }
  if (exp.events !== undefined) {
    if (newEvents.length !== exp.events.length) {
      errs.push(`events: expected ${exp.events.length} new event(s), found ${newEvents.length}`);
    }
    exp.events.forEach((m, k) => {
      const ev = newEvents[k];
      if (!ev) return;
      const { $timestampOffsetMs: off, ...rest } = m;
      errs.push(...match(rest, ev, `events[${k}]`));
      if (off !== undefined) {
        const got = Date.parse(ev.timestamp) - Date.parse(ev.receivedAt);
        if (!(Math.abs(got - off) <= 1)) {
          errs.push(`events[${k}]: timestamp - receivedAt = ${got} ms, expected ${off} ms (${ev.timestamp} vs ${ev.receivedAt})`);
        }
      }
      const s = JSON.stringify(ev);
      if (/"writeKey"/.test(s)) errs.push(`events[${k}]: stored event contains writeKey: ${short(ev)}`);
    });
  }
  return errs;
}

/** Runs one case; throws an Error listing every mismatch with the request and response. */
export async function runCase(srv, c) {
  const vars = {
    writeKey: srv.writeKey,
    adminKey: srv.adminKey,
    writeKeyBasic: Buffer.from(`${srv.writeKey}:`).toString('base64'),
    run: crypto.randomBytes(4).toString('hex'),
    hourAgo: new Date(Date.now() - 3600e3).toISOString(),
    hourAhead: new Date(Date.now() + 3600e3).toISOString(),
  };
  for (const [k, s] of (c.setup ?? []).entries()) {
    const rq = buildRequest(srv, s, vars);
    const res = await request({ ...rq, timeoutMs: 30000 });
    const want = s.expectStatus;
    if (want !== undefined ? res.status !== want : res.status < 200 || res.status > 299) {
      throw new Error(`setup[${k}] failed\n  request:  ${describeReq(rq)}\n  response: ${describeRes(res)}`);
    }
  }
  const before = await srv.allEvents();
  const rq = buildRequest(srv, c.request, vars);
  const n = c.repeat ?? 1;
  let res;
  const all = [];
  for (let k = 0; k < n; k++) {
    res = await request({ ...rq, timeoutMs: 60000 });
    all.push(res);
  }
  if (!srv.alive()) {
    throw new Error(`server died handling the request\n  request: ${describeReq(rq)}\n${srv.stderrTail()}`);
  }
  const after = await srv.allEvents();
  // New events are those beyond the earlier prefix (arrival order); check the prefix is unchanged.
  const errs = [];
  const beforeIds = before.map((e) => e.messageId).join('\n');
  const prefixIds = after
    .slice(0, before.length)
    .map((e) => e.messageId)
    .join('\n');
  if (after.length < before.length || beforeIds !== prefixIds) {
    errs.push(`event log changed order or shrank: ${before.length} before, ${after.length} after`);
  }
  const newEvents = after.slice(before.length);
  const expect = expand(c.expect, vars);
  const alts = expect.$oneOf ?? [expect];
  const results = alts.map((e) => checkExpect(e, res, newEvents));
  if (!results.some((r) => r.length === 0)) {
    results.forEach((r, k) => {
      if (alts.length > 1) errs.push(`alternative ${k + 1}:`);
      errs.push(...r.map((x) => (alts.length > 1 ? '  ' : '') + x));
    });
  }
  if (n > 1) {
    // Every repeat must be acknowledged the same way (status) as the expectation says.
    const want = alts.map((a) => a.status).filter((s) => s !== undefined);
    all.forEach((r, k) => {
      if (want.length && !want.includes(r.status)) errs.push(`repeat ${k + 1}/${n}: status ${r.status}: ${r.text.slice(0, 300)}`);
    });
  }
  if (errs.length) {
    throw new Error(
      `${errs.join('\n')}\n  request:  ${describeReq(rq)}${n > 1 ? ` (×${n})` : ''}\n  response: ${describeRes(res)}`,
    );
  }
}
