// Every way to write into a signed-only database, against a real CouchDB: each must refuse an
// unsigned or badly signed revision and leave the stored data exactly as it was (winning
// revision and body, _conflicts, open_revs=all), while valid signed documents still replicate
// (POST /_replicate and a _replicator document). And the certificate registry itself:
// pgp_certs on _users changes only through /_pgp/certs or by an admin.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as openpgp from 'openpgp';
import { CouchDB, couchdbSkip } from './couchdb.mjs';
import { newKey, signDoc, jcs } from './pgp_client.mjs';

const skip = couchdbSkip();

// The server's fixed texts (couch_pgp_couch_db:reason_text/2, couch_pgp_users_db).
const R = {
  unsigned: 'Signed-only database: the document has no pgp_signatures.',
  badSig: 'Signed-only database: a signature does not verify (the document differs from what was signed).',
  notWriters: 'Signed-only database: the document needs a valid signature by a certificate registered to the writing user.',
  notRegistered: 'Signed-only database: a replicated revision needs a valid signature by a certificate registered to a user of this server.',
  noCerts: 'Signed-only database: the writing user has no registered OpenPGP certificate (pgp_certs on the _users document).',
  attachments: 'Signed-only database: an attachment\'s content is not at hand to check the signature against (send it inline, or as a stub of an attachment stored in the document\'s previous revision; at most max_document_size).',
  certs: 'pgp_certs can only be changed through /_pgp/certs (which checks that you hold the certificate\'s key) or by an admin.',
};
const forbidden = (reason) => ({ error: 'forbidden', reason });

describe('signed-only databases: every write path', { skip, timeout: 600000 }, () => {
  let db; let alice; let bob; let stranger;
  const aliceAuth = { username: 'alice', password: 'alice-pw-1' };
  const bobAuth = { username: 'bob', password: 'bob-pw-2' };
  const malloryAuth = { username: 'mallory', password: 'mallory-pw-3' };
  const url = (name) => `http://${db.admin.username}:${db.admin.password}@127.0.0.1:${db.port}/${name}`;

  async function register(auth, key) {
    const statement = jcs({ action: 'register', fingerprint: key.fingerprint, user: auth.username });
    const signature = await openpgp.sign({
      message: await openpgp.createMessage({ text: statement }), signingKeys: key.privateKey, detached: true });
    return db.json('/_pgp/certs', { method: 'POST', auth, body: { cert: key.publicKey.armor(), signature } });
  }

  before(async () => {
    db = await CouchDB.start({ ini: { couch_pgp: { signed_dbs: 'signed,copy1,copy2' } } });
    for (const auth of [aliceAuth, bobAuth, malloryAuth]) {
      const r = await db.json(`/_users/org.couchdb.user:${auth.username}`, {
        method: 'PUT', body: { name: auth.username, password: auth.password, roles: [], type: 'user' } });
      assert.equal(r.status, 201, r.text);
    }
    for (const name of ['signed', 'copy1', 'copy2', 'plain']) {
      assert.equal((await db.json(`/${name}`, { method: 'PUT' })).status, 201);
      const sec = await db.json(`/${name}/_security`, {
        method: 'PUT', body: { members: { names: ['alice', 'bob', 'mallory'] }, admins: {} } });
      assert.equal(sec.status, 200, sec.text);
    }
    alice = await newKey('alice');
    bob = await newKey('bob');
    stranger = await newKey('stranger'); // registered to nobody
    for (const [auth, key] of [[aliceAuth, alice], [bobAuth, bob]]) {
      const r = await register(auth, key);
      assert.equal(r.status, 201, r.text);
    }
    // The documents the refusals below try to change.
    const seeds = [
      await signDoc({ _id: 'd1', n: 1 }, alice),
      await signDoc({ _id: 'd2', n: 2, _attachments: { 'f.txt': { content_type: 'text/plain', data: 'aGk=' } } }, alice),
      await signDoc({ _id: 'd3', n: 3 }, bob),
    ];
    for (const doc of seeds) {
      const auth = doc._id === 'd3' ? bobAuth : aliceAuth;
      const r = await db.json(`/signed/${doc._id}`, { method: 'PUT', auth, body: doc });
      assert.equal(r.status, 201, r.text);
    }
  });

  after(async () => { if (db) await db.stop(); });

  /** Everything a reader can see of a document: winner (with conflicts), every leaf. */
  async function snapshot(dbName, id) {
    const w = await db.json(`/${dbName}/${encodeURIComponent(id)}?conflicts=true&deleted_conflicts=true&revs=true&attachments=true`, { headers: { Accept: 'application/json' } });
    const all = await db.json(`/${dbName}/${encodeURIComponent(id)}?open_revs=all&revs=true`, { headers: { Accept: 'application/json' } });
    const leaves = Array.isArray(all.body) ? all.body.map((x) => x.ok || x.missing || x).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))) : all.body;
    return { winner: [w.status, w.body], leaves: [all.status, leaves] };
  }

  async function dbCounts(name) {
    const info = (await db.json(`/${name}`)).body;
    return { doc_count: info.doc_count, doc_del_count: info.doc_del_count };
  }

  /** Runs `write`, expects `status` and the exact error JSON, and that `ids` did not change. */
  async function refused(what, ids, write, status, body, dbName = 'signed') {
    const before = await Promise.all(ids.map((id) => snapshot(dbName, id)));
    const counts = await dbCounts(dbName);
    const r = await write();
    assert.equal(r.status, status, `${what}: ${r.text}`);
    assert.deepEqual(r.body, body, what);
    assert.deepEqual(await Promise.all(ids.map((id) => snapshot(dbName, id))), before, `${what}: stored data changed`);
    assert.deepEqual(await dbCounts(dbName), counts, `${what}: document counts changed`);
  }

  const rev = async (id, dbName = 'signed') => (await db.json(`/${dbName}/${id}`)).body._rev;

  test('interactive writes: PUT, POST with a generated id, _bulk_docs, DELETE, _deleted, COPY', async () => {
    const r1 = await rev('d1');
    await refused('PUT unsigned', ['d1'], () => db.json('/signed/d1', { method: 'PUT', auth: aliceAuth, body: { _rev: r1, n: 9 } }), 403, forbidden(R.unsigned));
    const changed = { ...(await signDoc({ _id: 'd1', n: 1 }, alice)), _rev: r1, n: 9 };
    await refused('PUT changed after signing', ['d1'], () => db.json('/signed/d1', { method: 'PUT', auth: aliceAuth, body: changed }), 403, forbidden(R.badSig));
    const byBob = await signDoc({ _id: 'd1', _rev: r1, n: 4 }, bob);
    await refused('PUT signed by another user\'s key', ['d1'], () => db.json('/signed/d1', { method: 'PUT', auth: aliceAuth, body: byBob }), 403, forbidden(R.notWriters));
    await refused('PUT by a user with no certificate', ['d1'], () => db.json('/signed/d1', { method: 'PUT', auth: malloryAuth, body: { ...byBob } }), 403, forbidden(R.noCerts));
    await refused('POST /db (generated id)', [], () => db.json('/signed', { method: 'POST', auth: aliceAuth, body: { n: 5 } }), 403, forbidden(R.unsigned));
    await refused('_bulk_docs', ['d1', 'b1'], () => db.json('/signed/_bulk_docs', { method: 'POST', auth: aliceAuth, body: { docs: [{ _id: 'b1', n: 1 }, { _id: 'd1', _rev: r1, n: 7 }] } }), 403, forbidden(R.unsigned));
    await refused('DELETE', ['d1'], () => db.json(`/signed/d1?rev=${r1}`, { method: 'DELETE', auth: aliceAuth }), 403, forbidden(R.unsigned));
    await refused('_deleted: true', ['d1'], () => db.json('/signed/d1', { method: 'PUT', auth: aliceAuth, body: { _rev: r1, _deleted: true } }), 403, forbidden(R.unsigned));
    // A signed document deleted without a signature over the deletion: the old signature
    // does not cover `_deleted`.
    await refused('_deleted: true keeping the old signature', ['d1'], async () => db.json('/signed/d1', { method: 'PUT', auth: aliceAuth, body: { ...(await db.json('/signed/d1')).body, _deleted: true } }), 403, forbidden(R.badSig));
    await refused('_bulk_docs _deleted', ['d1'], () => db.json('/signed/_bulk_docs', { method: 'POST', auth: aliceAuth, body: { docs: [{ _id: 'd1', _rev: r1, _deleted: true }] } }), 403, forbidden(R.unsigned));
    // COPY keeps the body, so the signature names the source id.
    await refused('COPY', ['d1', 'c1'], () => db.json('/signed/d1', { method: 'COPY', auth: aliceAuth, headers: { Destination: 'c1' } }), 403, forbidden(R.badSig));
    // What passes: a signed update, a signed tombstone.
    const ok = await db.json('/signed/d1', { method: 'PUT', auth: aliceAuth, body: await signDoc({ _id: 'd1', _rev: r1, n: 10 }, alice) });
    assert.equal(ok.status, 201, ok.text);
    const tomb = await db.json('/signed/d3', { method: 'PUT', auth: bobAuth, body: await signDoc({ _id: 'd3', _rev: await rev('d3'), _deleted: true }, bob) });
    assert.equal(tomb.status, 200, tomb.text);
    assert.equal((await db.json('/signed/d3')).status, 404);
  });

  test('attachments: inline and stubs of stored ones are checked by content; standalone PUT/DELETE and changed data are refused', async () => {
    const r2 = await rev('d2');
    // The old signature does not cover the new attachment.
    await refused('attachment PUT', ['d2'], () => db.json(`/signed/d2/g.txt?rev=${r2}`, { method: 'PUT', auth: aliceAuth, body: 'bye', headers: { 'Content-Type': 'text/plain' } }), 403, forbidden(R.badSig));
    await refused('attachment DELETE', ['d2'], () => db.json(`/signed/d2/f.txt?rev=${r2}`, { method: 'DELETE', auth: aliceAuth }), 403, forbidden(R.badSig));
    const signed = await signDoc({ _id: 'd2', n: 2, _attachments: { 'f.txt': { content_type: 'text/plain', data: 'aGk=' } } }, alice);
    const swapped = { ...signed, _rev: r2, _attachments: { 'f.txt': { content_type: 'text/plain', data: 'aG8=' } } };
    await refused('inline attachment changed after signing', ['d2'], () => db.json('/signed/d2', { method: 'PUT', auth: aliceAuth, body: swapped }), 403, forbidden(R.badSig));
    const noSuchStub = { ...signed, _rev: r2, _attachments: { ...signed._attachments, 'g.txt': { stub: true } } };
    await refused('stub of an attachment that is not stored', ['d2'], () => db.json('/signed/d2', { method: 'PUT', auth: aliceAuth, body: noSuchStub }), 403, forbidden(R.attachments));
    // A stub of the stored attachment is checked against its stored content: it passes.
    const stub = { ...signed, _rev: r2, _attachments: { 'f.txt': { stub: true } } };
    const viaStub = await db.json('/signed/d2', { method: 'PUT', auth: aliceAuth, body: stub });
    assert.equal(viaStub.status, 201, viaStub.text);
    // Re-sent inline, the same signed content passes.
    const again = await db.json('/signed/d2', { method: 'PUT', auth: aliceAuth, body: { ...signed, _rev: viaStub.body.rev } });
    assert.equal(again.status, 201, again.text);
  });

  test('replicated writes: new_edits=false is checked too, conflicts and non-winning revisions included', async () => {
    const before = await snapshot('signed', 'd1');
    const forged = { _id: 'd1', _rev: '99-0123456789abcdef0123456789abcdef', n: 666 };
    await refused('PUT ?new_edits=false, unsigned, high _rev', ['d1'], () => db.json('/signed/d1?new_edits=false', { method: 'PUT', auth: aliceAuth, body: forged }), 403, forbidden(R.unsigned));
    await refused('_bulk_docs new_edits=false, unsigned', ['d1', 'n1'], () => db.json('/signed/_bulk_docs', { method: 'POST', auth: aliceAuth, body: { new_edits: false, docs: [forged, { _id: 'n1', _rev: '1-abc', n: 1 }] } }), 403, forbidden(R.unsigned));
    // Even an admin's replicated write is checked: the writer is not the author.
    await refused('_bulk_docs new_edits=false by an admin', ['d1'], () => db.json('/signed/_bulk_docs', { method: 'POST', body: { new_edits: false, docs: [forged] } }), 403, forbidden(R.unsigned));
    // A low, losing revision is checked like a winning one: a conflict branch could win later.
    await refused('unsigned conflict branch', ['d1'], () => db.json('/signed/_bulk_docs', { method: 'POST', auth: aliceAuth, body: { new_edits: false, docs: [{ _id: 'd1', _rev: '1-00000000000000000000000000000000', n: 0 }] } }), 403, forbidden(R.unsigned));
    const byStranger = await signDoc({ _id: 'd1', _rev: '99-0123456789abcdef0123456789abcdef', n: 666 }, stranger);
    await refused('signed by a certificate registered to nobody', ['d1'], () => db.json('/signed/d1?new_edits=false', { method: 'PUT', auth: aliceAuth, body: byStranger }), 403, forbidden(R.notRegistered));
    const tampered = { ...(await signDoc({ _id: 'd1', n: 666 }, alice)), _rev: '99-0123456789abcdef0123456789abcdef', n: 667 };
    await refused('signed by a registered key, then changed', ['d1'], () => db.json('/signed/d1?new_edits=false', { method: 'PUT', auth: aliceAuth, body: tampered }), 403, forbidden(R.badSig));
    await refused('unsigned tombstone', ['d1'], () => db.json('/signed/_bulk_docs', { method: 'POST', auth: aliceAuth, body: { new_edits: false, docs: [{ _id: 'd1', _rev: '99-0123456789abcdef0123456789abcdef', _deleted: true }] } }), 403, forbidden(R.unsigned));
    assert.deepEqual(await snapshot('signed', 'd1'), before);
    // A signed conflict branch is accepted, whoever writes it (mallory has no certificate:
    // a replicated revision needs a signature by someone registered here, not by the writer).
    const branch = await signDoc({ _id: 'd1', _rev: '1-11111111111111111111111111111111', n: 'branch' }, bob);
    const r = await db.json('/signed/_bulk_docs', { method: 'POST', auth: malloryAuth, body: { new_edits: false, docs: [branch] } });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual((await db.json('/signed/d1?conflicts=true')).body._conflicts, ['1-11111111111111111111111111111111']);
  });

  test('design documents stay exempt but only admins write them; _local is not replicated data; _purge adds nothing', async () => {
    const ddoc = { _id: '_design/x', views: { v: { map: 'function (d) { emit(d._id, null); }' } } };
    const notAdmin = { error: 'forbidden', reason: 'You are not a db or server admin.' };
    await refused('design doc by a member', ['_design/x'], () => db.json('/signed/_design/x', { method: 'PUT', auth: aliceAuth, body: ddoc }), 403, notAdmin);
    // In _bulk_docs with new_edits=false CouchDB reports it per document.
    await refused('design doc by a member, new_edits=false', ['_design/x'], () => db.json('/signed/_bulk_docs', { method: 'POST', auth: aliceAuth, body: { new_edits: false, docs: [{ ...ddoc, _rev: '1-abc' }] } }), 201, [{ id: '_design/x', rev: '1-abc', ...notAdmin }]);
    assert.equal((await db.json('/signed/_design/x', { method: 'PUT', body: ddoc })).status, 201);
    // _local documents never reach the hook: not in _all_docs, _changes or replication.
    assert.equal((await db.json('/signed/_local/note', { method: 'PUT', auth: aliceAuth, body: { n: 1 } })).status, 201);
    const all = await db.json('/signed/_all_docs');
    assert.ok(!all.body.rows.some((row) => row.id.startsWith('_local/')));
    // _purge removes revisions; it cannot create one.
    await refused('_purge of a revision that does not exist', ['p1'], () => db.json('/signed/_purge', { method: 'POST', body: { p1: ['1-abc'] } }), 201, { purge_seq: null, purged: { p1: [] } });
  });

  test('valid signed documents replicate, by POST /_replicate and by a _replicator document', async () => {
    const rep = await db.json('/_replicate', { method: 'POST', body: { source: url('signed'), target: url('copy1') } });
    assert.equal(rep.status, 200, rep.text);
    assert.equal(rep.body.ok, true);
    assert.equal(rep.body.history[0].doc_write_failures, 0);
    for (const id of ['d1', 'd2', 'd3']) {
      const a = await snapshot('signed', id);
      const b = await snapshot('copy1', id);
      assert.deepEqual(b, a, id);
    }
    const job = await db.json('/_replicator/job1', { method: 'PUT', body: { source: url('signed'), target: url('copy2') } });
    assert.equal(job.status, 201, job.text);
    const done = await db.waitFor(async () => {
      const s = await db.json('/_scheduler/docs/_replicator/job1');
      return s.body.state === 'completed' ? s.body : null;
    }, { timeoutMs: 60000, what: 'the _replicator job to complete' });
    assert.equal(done.info.doc_write_failures, 0);
    assert.ok(done.info.docs_written >= 3, JSON.stringify(done.info));
    for (const id of ['d1', 'd2', 'd3']) assert.deepEqual(await snapshot('copy2', id), await snapshot('signed', id), id);
  });

  test('a source holding an unsigned document cannot replicate it in', async () => {
    assert.equal((await db.json('/plain/u1', { method: 'PUT', body: { n: 'unsigned' } })).status, 201);
    const before = await snapshot('copy1', 'u1');
    const rep = await db.json('/_replicate', { method: 'POST', body: { source: url('plain'), target: url('copy1') } });
    assert.notEqual(rep.status, 200, rep.text);
    assert.deepEqual(await snapshot('copy1', 'u1'), before);
    assert.equal(before.winner[0], 404);
    const job = await db.json('/_replicator/job2', { method: 'PUT', body: { source: url('plain'), target: url('copy2') } });
    assert.equal(job.status, 201);
    await db.waitFor(async () => {
      const s = await db.json('/_scheduler/docs/_replicator/job2');
      return ['crashing', 'failed'].includes(s.body.state) ? s.body : null;
    }, { timeoutMs: 60000, what: 'the _replicator job to fail' });
    assert.equal((await db.json('/copy2/u1')).status, 404);
    const jobRev = (await db.json('/_replicator/job2')).body._rev;
    assert.equal((await db.json(`/_replicator/job2?rev=${jobRev}`, { method: 'DELETE' })).status, 200);
  });
});

describe('_users: pgp_certs changes only through /_pgp/certs or an admin', { skip, timeout: 600000 }, () => {
  let db; let alice; let bob;
  const aliceAuth = { username: 'alice', password: 'alice-pw-1' };
  const bobAuth = { username: 'bob', password: 'bob-pw-2' };

  before(async () => {
    // CouchDB 3 keeps _users to admins; an operator may open it so that users edit their
    // own documents (as CouchDB 2 did). The rule must hold whatever _users allows.
    db = await CouchDB.start({ ini: { couch_pgp: { signed_dbs: 'signed' }, couchdb: { users_db_security_editable: 'true' } } });
    const open = await db.json('/_users/_security', { method: 'PUT', body: { admins: { names: [], roles: ['_admin'] }, members: { names: [], roles: [] } } });
    assert.equal(open.status, 200, open.text);
    for (const auth of [aliceAuth, bobAuth]) {
      const r = await db.json(`/_users/org.couchdb.user:${auth.username}`, {
        method: 'PUT', body: { name: auth.username, password: auth.password, roles: [], type: 'user' } });
      assert.equal(r.status, 201, r.text);
    }
    assert.equal((await db.json('/signed', { method: 'PUT' })).status, 201);
    await db.json('/signed/_security', { method: 'PUT', body: { members: { names: ['alice', 'bob'] }, admins: {} } });
    alice = await newKey('alice');
    bob = await newKey('bob');
  });

  after(async () => { if (db) await db.stop(); });

  const userDoc = async (name, auth) => (await db.json(`/_users/org.couchdb.user:${name}`, { auth })).body;

  test('a user cannot add a certificate to their own _users document, nor remove one; other fields stay editable', async () => {
    const own = await userDoc('bob', bobAuth);
    assert.equal(own.name, 'bob');
    const steal = { ...own, pgp_certs: [alice.publicKey.armor()] };
    const r = await db.json('/_users/org.couchdb.user:bob', { method: 'PUT', auth: bobAuth, body: steal });
    assert.equal(r.status, 403, r.text);
    assert.deepEqual(r.body, { error: 'forbidden', reason: R.certs });
    const viaReplication = await db.json('/_users/_bulk_docs', { method: 'POST', auth: bobAuth,
      body: { new_edits: false, docs: [{ ...steal, _rev: '99-0123456789abcdef0123456789abcdef' }] } });
    assert.equal(viaReplication.status, 403, viaReplication.text);
    assert.deepEqual(viaReplication.body, { error: 'forbidden', reason: R.certs });
    const after = await userDoc('bob', bobAuth);
    assert.deepEqual(after, own);
    assert.equal((await db.json('/_pgp/certs', { auth: bobAuth })).body.fingerprints.length, 0);
    // So alice's signed document is still not bob's to write.
    const aliceDoc = await signDoc({ _id: 's1', n: 1 }, alice);
    const w = await db.json('/signed/s1', { method: 'PUT', auth: bobAuth, body: aliceDoc });
    assert.deepEqual([w.status, w.body], [403, { error: 'forbidden', reason: R.noCerts }]);
    // Signing up with a certificate is changing it too.
    const signup = await db.json('/_users/org.couchdb.user:eve', { method: 'PUT', auth: null,
      body: { name: 'eve', password: 'eve-pw-4', roles: [], type: 'user', pgp_certs: [alice.publicKey.armor()] } });
    assert.deepEqual([signup.status, signup.body], [403, { error: 'forbidden', reason: R.certs }]);
    assert.equal((await db.json('/_users/org.couchdb.user:eve')).status, 404);
    // Other fields of one's own document: still the user's.
    const edit = await db.json('/_users/org.couchdb.user:bob', { method: 'PUT', auth: bobAuth, body: { ...own, nickname: 'bobby' } });
    assert.equal(edit.status, 201, edit.text);
  });

  test('/_pgp/certs still registers and removes, and the user cannot then drop the field by hand', async () => {
    const statement = jcs({ action: 'register', fingerprint: bob.fingerprint, user: 'bob' });
    const signature = await openpgp.sign({ message: await openpgp.createMessage({ text: statement }), signingKeys: bob.privateKey, detached: true });
    const reg = await db.json('/_pgp/certs', { method: 'POST', auth: bobAuth, body: { cert: bob.publicKey.armor(), signature } });
    assert.equal(reg.status, 201, reg.text);
    assert.deepEqual(reg.body.fingerprints, [bob.fingerprint]);
    const own = await userDoc('bob', bobAuth);
    const { pgp_certs: _dropped, ...without } = own;
    const r = await db.json('/_users/org.couchdb.user:bob', { method: 'PUT', auth: bobAuth, body: without });
    assert.deepEqual([r.status, r.body], [403, { error: 'forbidden', reason: R.certs }]);
    const w = await db.json('/signed/s2', { method: 'PUT', auth: bobAuth, body: await signDoc({ _id: 's2', n: 2 }, bob) });
    assert.equal(w.status, 201, w.text);
    const del = await db.json(`/_pgp/certs/${bob.fingerprint}`, { method: 'DELETE', auth: bobAuth });
    assert.equal(del.status, 200, del.text);
    assert.match(db.log(), /couch_pgp audit: pgp_certs_change outcome=allowed by=_internal doc=org.couchdb.user:bob/);
  });

  test('an admin may set pgp_certs directly, and it is audited', async () => {
    const doc = await userDoc('alice');
    const r = await db.json('/_users/org.couchdb.user:alice', { method: 'PUT', body: { ...doc, pgp_certs: [alice.publicKey.armor()] } });
    assert.equal(r.status, 201, r.text);
    assert.match(db.log(), new RegExp(`couch_pgp audit: pgp_certs_change outcome=allowed by=${db.admin.username} doc=org.couchdb.user:alice`));
    assert.match(db.log(), /couch_pgp audit: pgp_certs_change outcome=refused by=bob doc=org.couchdb.user:bob/);
    const w = await db.json('/signed/s3', { method: 'PUT', auth: aliceAuth, body: await signDoc({ _id: 's3', n: 3 }, alice) });
    assert.equal(w.status, 201, w.text);
  });
});
