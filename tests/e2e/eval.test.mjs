// `engaged eval` on a slice of the Diginetica sessions (../shared/data/diginetica): the newest 40,000
// training sessions, the first 5,000 test cases. The floors sit a little under what the shipped
// learner measured on this slice (HR@20 0.4516, MRR@20 0.1656), so a regression in the
// recommender or the learner fails the build. Full-data numbers: docs/recommendations.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { REPO_ROOT, runCli } from './lib/server.mjs';

const DATA = path.resolve(REPO_ROOT, '../shared/data/diginetica');

test('engaged eval on a Diginetica slice reaches its floors', () => {
  assert.ok(fs.existsSync(path.join(DATA, 'train.txt')), `the evaluation data is missing: ${DATA}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'engaged-eval-'));
  try {
    const train = fs.readFileSync(path.join(DATA, 'train.txt'), 'utf8').trimEnd().split('\n');
    const testLines = fs.readFileSync(path.join(DATA, 'test.txt'), 'utf8').trimEnd().split('\n');
    fs.writeFileSync(path.join(dir, 'train.txt'), train.slice(-40000).join('\n') + '\n');
    fs.writeFileSync(path.join(dir, 'test.txt'), testLines.slice(0, 5000).join('\n') + '\n');
    const r = runCli(['eval', '--train', path.join(dir, 'train.txt'), '--test', path.join(dir, 'test.txt')], {
      timeoutMs: 300000,
    });
    assert.equal(r.code, 0, `engaged eval failed:\n${r.stderr}`);
    const last = r.stdout.trimEnd().split('\n').pop();
    const m = JSON.parse(last);
    assert.equal(m.cases, 5000);
    assert.ok(m['hr@20'] >= 0.43, `HR@20 ${m['hr@20']} below the floor 0.43`);
    assert.ok(m['mrr@20'] >= 0.155, `MRR@20 ${m['mrr@20']} below the floor 0.155`);
    assert.ok(m.train_s > 0 && m.eval_s > 0, 'timings reported');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
