// The shared error table (test/vectors/errors.json): every refusal the server makes, mapped by
// this client to the error class the table names, from (status, error) alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { refusalClass } from '../src/connection.js';
import * as errors from '../src/errors.js';
import { CouchError } from '../src/connection.js';

const table = JSON.parse(fs.readFileSync(new URL('../../test/vectors/errors.json', import.meta.url)));

test('the error table has rows, each with a known class', () => {
  assert.ok(table.rows.length >= 40, `${table.rows.length} rows`);
  const known = new Set([...Object.keys(errors), 'CouchError']);
  for (const row of table.rows) assert.ok(known.has(row.js_class), `${row.reason}: ${row.js_class}`);
  assert.equal(new Set(table.rows.map((r) => r.reason)).size, table.rows.length, 'reasons are unique');
});

for (const row of table.rows) {
  test(`${row.reason}: ${row.status} ${row.error} is ${row.js_class}`, () => {
    const Cls = refusalClass(row.status, row.error);
    if (row.js_class === 'CouchError') {
      assert.equal(Cls, undefined, 'an answer, not a refusal');
      assert.ok(CouchError);
    } else {
      assert.equal(Cls?.name, row.js_class);
      assert.equal(Cls, errors[row.js_class]);
    }
  });
}

test('the reason text is never what decides: a session-expired sentence under another error is not SessionExpiredError', () => {
  assert.equal(refusalClass(401, 'unauthorized'), errors.NotLoggedInError);
  assert.equal(refusalClass(400, 'pgp_bad_cert'), errors.RequestRefusedError);
  assert.equal(refusalClass(404, 'not_found'), undefined);
  assert.equal(refusalClass(409, 'conflict'), undefined);
  assert.equal(refusalClass(403, 'forbidden'), undefined);
  assert.equal(refusalClass(200, 'pgp_stale'), undefined);
});

// The README's Errors section is this table: every row, exactly, and no other reason.
test('the README\'s error table is the shared table, row for row', () => {
  const readme = fs.readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const rows = readme.split('\n').filter((l) => /^\| `[a-z0-9_]+` \| \d{3} \|/.test(l));
  const want = table.rows.map((r) => `| \`${r.reason}\` | ${r.status} | \`${r.error}\` | ${r.reason_text} | \`${r.js_class}\` |`);
  assert.deepEqual(rows, want);
});
