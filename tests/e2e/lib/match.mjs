// Subset matching for JSON responses and stored events.
//
// expected is matched against actual:
//   - objects: every key of expected must match (extra keys in actual are fine);
//     a value "$absent" means the key must not exist
//   - arrays: same length, element-wise match
//   - "$any" / "$present": any value (key must exist)
//   - "$string", "$number", "$integer", "$boolean", "$object", "$array", "$null": type checks
//   - "$nonempty": non-empty string
//   - "$rfc3339ms": string like 2024-05-01T10:00:00.000Z (UTC, milliseconds)
//   - "$rfc3339": any RFC 3339 date-time string
//   - {"$oneOf": [a, b]}: matches if any alternative matches
//   - {"$regex": "..."}: string matching the regular expression
//   - {"$approx": n, "tol": t}: number within t of n
//   - anything else: strict equality (numbers compare as numbers: 19.99 === 19.99)
// Returns a list of mismatch descriptions (empty when it matches).

export const RFC3339_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
export const RFC3339 = /^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$/;

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

export function match(expected, actual, path = '$') {
  const errs = [];
  const fail = (msg) => errs.push(`${path}: ${msg} (got ${short(actual)})`);
  if (typeof expected === 'string' && expected.startsWith('$')) {
    switch (expected) {
      case '$any':
      case '$present':
        if (actual === undefined) fail('expected a value');
        return errs;
      case '$absent':
        if (actual !== undefined) fail('expected no value');
        return errs;
      case '$string':
      case '$number':
      case '$boolean':
      case '$object':
      case '$array':
      case '$null':
        if (typeOf(actual) !== expected.slice(1)) fail(`expected ${expected.slice(1)}`);
        return errs;
      case '$integer':
        if (!Number.isInteger(actual)) fail('expected integer');
        return errs;
      case '$nonempty':
        if (typeof actual !== 'string' || actual.length === 0) fail('expected non-empty string');
        return errs;
      case '$rfc3339ms':
        if (typeof actual !== 'string' || !RFC3339_MS.test(actual)) fail('expected RFC 3339 UTC ms timestamp');
        return errs;
      case '$rfc3339':
        if (typeof actual !== 'string' || !RFC3339.test(actual)) fail('expected RFC 3339 timestamp');
        return errs;
      default:
        if (expected.startsWith('$$')) expected = expected.slice(1); // escaped literal "$..."
        break;
    }
  }
  if (expected && typeof expected === 'object' && !Array.isArray(expected)) {
    if ('$oneOf' in expected) {
      for (const alt of expected.$oneOf) if (match(alt, actual, path).length === 0) return errs;
      fail(`expected one of ${JSON.stringify(expected.$oneOf)}`);
      return errs;
    }
    if ('$regex' in expected) {
      if (typeof actual !== 'string' || !new RegExp(expected.$regex).test(actual)) fail(`expected /${expected.$regex}/`);
      return errs;
    }
    if ('$approx' in expected) {
      const tol = expected.tol ?? 1e-9;
      if (typeof actual !== 'number' || Math.abs(actual - expected.$approx) > tol) {
        fail(`expected ${expected.$approx} ± ${tol}`);
      }
      return errs;
    }
    if (typeOf(actual) !== 'object') {
      fail('expected object');
      return errs;
    }
    for (const [k, v] of Object.entries(expected)) {
      errs.push(...match(v, actual[k], `${path}.${k}`));
    }
    return errs;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) {
      fail('expected array');
      return errs;
    }
    if (actual.length !== expected.length) {
      fail(`expected array of length ${expected.length}`);
      return errs;
    }
    expected.forEach((e, i) => errs.push(...match(e, actual[i], `${path}[${i}]`)));
    return errs;
  }
  if (expected !== actual) fail(`expected ${JSON.stringify(expected)}`);
  return errs;
}

/** Deep equality for JSON values (key order ignored). */
export function deepEqual(a, b) {
  if (a === b) return true;
  if (typeOf(a) !== typeOf(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (a && typeof a === 'object') {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

export function short(v, n = 300) {
  let s;
  try {
    s = JSON.stringify(v);
  } catch {
    s = String(v);
  }
  if (s === undefined) return 'undefined';
  return s.length > n ? s.slice(0, n) + '…' : s;
}
