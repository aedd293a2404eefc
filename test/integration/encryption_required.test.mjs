// An encryption-required database (require_encryption_dbs) on every path CouchDB offers into
// and out of it: each plaintext request is refused with 403 pgp_encryption_required and
// changes nothing; the same writes sent encrypted (in place, or through the tunnel for
// attachments and streaming reads) work. Replication over plaintext HTTP cannot read or write
// it either: the replicator is an HTTP client like any other.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CouchDB, couchdbSkip } from './couchdb.mjs';
import { Client, newKey } from './pgp_client.mjs';

const skip = couchdbSkip();
const DB = 'vault';

describe('require_encryption_dbs on every path into and out of the database', { skip, timeout: 600000 }, () => {
  let db; let alice; let snapshot;
  const aliceAuth = { username: 'alice', password: 'alice-pw-vault' };

  before(async () => {
    db = await CouchDB.start();
    const u = await db.json('/_users/org.couchdb.user:alice', {
      method: 'PUT', body: { name: 'alice', password: aliceAuth.password, roles: [], type: 'user' } });
    assert.equal(u.status, 201, u.text);
    for (const name of [DB, 'plain']) assert.equal((await db.json(`/${name}`, { method: 'PUT' })).status, 201);
    await db.json(`/${DB}/_security`, { method: 'PUT', body: { members: { names: ['alice'] }, admins: { names: ['alice'] } } });
    // Seed documents while it is still open, then close it to plaintext at run time.
    assert.equal((await db.json(`/${DB}/d1`, { method: 'PUT', body: { n: 1 } })).status, 201);
    assert.equal((await db.json(`/${DB}/_local/l1`, { method: 'PUT', body: { n: 1 } })).status, 201);
    const set = await db.json('/_node/_local/_config/couch_pgp/require_encryption_dbs',
      { method: 'PUT', body: JSON.stringify(DB) });
    assert.equal(set.status, 200, set.text);
    alice = new Client(db, aliceAuth, await newKey('alice'));
    await alice.pin();
    await alice.startSession();
    snapshot = await state();
  });

  after(async () => { if (db) await db.stop(); });

  // What the database holds, read through the tunnel (the only way in now).
  async function state() {
    const read = async (path, query = '') => {
      const t = await alice.send('POST', '/_pgp/tunnel', '', JSON.stringify({ method: 'GET', path, query, headers: {}, body: '' }));
      assert.equal(t.status, 200);
      return { status: t.body.status, body: JSON.parse(t.body.body) };
    };
    const all = await read(`/${DB}/_all_docs`, 'include_docs=true&conflicts=true');
    const local = await read(`/${DB}/_local/l1`);
    return JSON.stringify({ rows: all.body.rows, local: local.body });
  }

  const plaintext = [
    ['PUT a document', 'PUT', `/${DB}/p1`, { n: 2 }],
    ['POST a document (generated id)', 'POST', `/${DB}`, { n: 2 }],
    ['PUT new_edits=false', 'PUT', `/${DB}/p2?new_edits=false`, { _id: 'p2', _rev: '9-abc', n: 2 }],
    ['_bulk_docs', 'POST', `/${DB}/_bulk_docs`, { docs: [{ _id: 'p3', n: 2 }] }],
    ['_bulk_docs new_edits=false', 'POST', `/${DB}/_bulk_docs`, { new_edits: false, docs: [{ _id: 'p4', _rev: '9-abc', n: 2 }] }],
    ['PUT an attachment', 'PUT', `/${DB}/d1/f.txt?rev=x`, 'bytes'],
    ['DELETE a document', 'DELETE', `/${DB}/d1?rev=x`, undefined],
    ['COPY a document', 'COPY', `/${DB}/d1`, undefined, { Destination: 'p5' }],
    ['PUT a design document', 'PUT', `/${DB}/_design/x`, { views: {} }],
    ['PUT a _local document', 'PUT', `/${DB}/_local/l2`, { n: 2 }],
    ['_purge', 'POST', `/${DB}/_purge`, { d1: ['1-x'] }],
    ['PUT _security', 'PUT', `/${DB}/_security`, { members: { names: [] }, admins: { names: [] } }],
    ['GET a document', 'GET', `/${DB}/d1`, undefined],
    ['_all_docs', 'GET', `/${DB}/_all_docs`, undefined],
    ['_changes', 'GET', `/${DB}/_changes`, undefined],
    ['_find', 'POST', `/${DB}/_find`, { selector: {} }],
    ['DELETE the database', 'DELETE', `/${DB}`, undefined],
  ];

  test('every plaintext request is refused, by a member and by a server admin, and nothing changes', async () => {
    for (const [what, method, path, body, headers = {}] of plaintext) {
      for (const auth of [aliceAuth, 'admin']) {
        const r = await db.json(path, { method, auth, body: typeof body === 'string' ? body : body, headers });
        assert.equal(r.status, 403, `${what} as ${auth === 'admin' ? 'admin' : 'alice'}: ${r.text}`);
        assert.deepEqual(r.body, { error: 'pgp_encryption_required', reason: 'This resource accepts only encrypted requests.' }, what);
      }
    }
    assert.equal(await state(), snapshot, 'the database is unchanged');
  });

  test('replication in plaintext can neither read nor write it', async () => {
    const url = (name) => `http://${db.admin.username}:${db.admin.password}@127.0.0.1:${db.port}/${name}`;
    assert.equal((await db.json('/plain/x1', { method: 'PUT', body: { n: 3 } })).status, 201);
    const into = await db.json('/_replicate', { method: 'POST', body: { source: url('plain'), target: url(DB) }, timeoutMs: 60000 });
    assert.notEqual(into.status, 200, `replication into ${DB}: ${into.text}`);
    const out = await db.json('/_replicate', { method: 'POST', body: { source: url(DB), target: url('plain') }, timeoutMs: 60000 });
    assert.notEqual(out.status, 200, `replication out of ${DB}: ${out.text}`);
    assert.equal((await db.json('/plain/d1')).status, 404, 'nothing of the vault reached the plain database');
    assert.equal(await state(), snapshot, 'the database is unchanged');
  });

  test('the same writes sent encrypted work (in place, or through the tunnel)', async () => {
    const put = await alice.send('PUT', `/${DB}/e1`, '', JSON.stringify({ n: 4 }));
    assert.equal(put.status, 201);
    const post = await alice.send('POST', `/${DB}`, '', JSON.stringify({ n: 5 }));
    assert.equal(post.status, 201);
    const bulk = await alice.send('POST', `/${DB}/_bulk_docs`, '', JSON.stringify({ docs: [{ _id: 'e2', n: 6 }] }));
    assert.equal(bulk.status, 201);
    const rev = put.body.rev;
    const att = await alice.send('POST', '/_pgp/tunnel', '', JSON.stringify({ method: 'PUT', path: `/${DB}/e1/f.txt`,
      query: `rev=${rev}`, headers: { 'content-type': 'text/plain' }, body: 'aGVsbG8=', body_base64: true }));
    assert.equal(att.body.status, 201, att.body.body);
    const got = await alice.send('POST', '/_pgp/tunnel', '', JSON.stringify({ method: 'GET', path: `/${DB}/e1/f.txt`, query: '', headers: {}, body: '' }));
    assert.equal(got.body.status, 200);
    assert.equal(got.body.body, 'hello');
    const del = await alice.send('DELETE', `/${DB}/e2`, `rev=${bulk.body[0].rev}`);
    assert.equal(del.status, 200);
    assert.equal((await alice.send('GET', `/${DB}/e2`)).status, 404);
  });
});
