// Runs every case in tests/api/cases/*.json against one real engaged server.
// ENGAGED_CASES=regex limits the run to cases whose "file: name" matches.
import { after, before, describe, test } from 'node:test';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCaseFiles, runCase } from './lib/cases.mjs';
import { logOnFail, startServer } from './lib/server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CASES_DIR = path.resolve(here, '../api/cases');
const filter = process.env.ENGAGED_CASES ? new RegExp(process.env.ENGAGED_CASES) : null;

let srv;

before(async () => {
  srv = await startServer({ tag: 'cases' });
});

after(async () => {
  if (srv) await srv.close();
});

for (const { file, cases } of loadCaseFiles(CASES_DIR)) {
  describe(file, () => {
    for (const c of cases) {
      const id = `${file}: ${c.name}`;
      if (filter && !filter.test(id)) continue;
      test(c.name, { skip: c.skip ?? false }, logOnFail(() => srv, () => runCase(srv, c)));
    }
  });
}

test('server is still healthy after all cases', logOnFail(() => srv, async () => {
  const r = await srv.get('/healthz', { auth: 'none' });
  if (r.status !== 200) throw new Error(`/healthz → ${r.status} ${r.text}`);
}));
