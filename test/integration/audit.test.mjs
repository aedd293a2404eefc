// The node's audit trail in a real CouchDB: real security events (identity created, session,
// encrypted login and a refused one, refused requests, certificate registered / refused /
// revoked, signed documents accepted and refused, configuration changes) land in the
// node's chained file; only server admins read it over HTTP; scripts/audit_verify passes the
// trail as written and names the seq of an entry edited in a copy; the chain survives a
// restart; and no password, passphrase, token, key or document content is in the trail.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as openpgp from 'openpgp';
import { CouchDB, couchdbSkip, run, REPO } from './couchdb.mjs';
import { Client, envelope, seal, newKey, signDoc, jcs } from './pgp_client.mjs';

const skip = couchdbSkip();
const SECRET_TEXT = 'audit-plaintext-9c1e';
const VERIFY = path.join(REPO, 'scripts', 'audit_verify');

describe('couch_pgp audit trail in CouchDB', { skip, timeout: 600000 }, () => {
  let db; let alice; let tmp;
  const aliceAuth = { username: 'alice', password: 'alice-secret-pw-41' };
  const secrets = [];

  before(async () => {
    // A checkpoint every 5 entries, so that the trail has several.
    db = await CouchDB.start({ ini: { couch_pgp: { signed_dbs: 'signed', audit_checkpoint_every: '5' } } });
    tmp = fs.mkdtempSync(path.join(db.dir, 'audit-'));
    const u = await db.json('/_users/org.couchdb.user:alice', {
      method: 'PUT', body: { name: 'alice', password: aliceAuth.password, roles: [], type: 'user' },
    });
    assert.equal(u.status, 201, u.text);
    for (const name of ['records', 'signed', 'vault']) {
      assert.equal((await db.json(`/${name}`, { method: 'PUT' })).status, 201);
      assert.equal((await db.json(`/${name}/_security`, {
        method: 'PUT', body: { members: { names: ['alice'] }, admins: {} },
      })).status, 200);
    }
    alice = new Client(db, aliceAuth, await newKey('alice'));
    await alice.pin();
    await alice.startSession();
    secrets.push(aliceAuth.password, db.passphrase, db.admin.password, alice.token, SECRET_TEXT,
      db.authSecret);
  });

  after(async () => { if (db) await db.stop(); });

  async function trail(query = '') {
    const r = await db.json(`/_pgp/audit${query}`);
    assert.equal(r.status, 200, r.text);
    return r.body;
  }

  async function download(name) {
    const r = await db.request('/_pgp/audit/file');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^application\/x-ndjson/);
    const f = path.join(tmp, name);
    fs.writeFileSync(f, Buffer.from(await r.arrayBuffer()));
    return f;
  }

  async function identityFile() {
    const r = await db.json('/_pgp', { auth: null });
    const f = path.join(tmp, 'identity.json');
    fs.writeFileSync(f, r.text);
    return f;
  }

  const verify = (...args) => run(VERIFY, args, { timeoutMs: 60000 });

  test('real security events are recorded, with names and reasons', async () => {
    // Encrypted login, right and wrong password.
    const key = await newKey('login');
    for (const password of [aliceAuth.password, 'wrong-password-77']) {
      const env = envelope('POST', '/_session', '', JSON.stringify({ name: 'alice', password }),
        { client_cert: key.publicKey.armor() });
      const r = await db.request('/_session', { method: 'POST', auth: null,
        body: await seal(env, alice.identity, key.privateKey), headers: { 'Content-Type': 'application/pgp-encrypted' } });
      const c = new Client(db, null, key);
      const res = await c.read(r, env, alice.identity);
      assert.equal(res.status, password === aliceAuth.password ? 200 : 401);
      if (res.status === 200) secrets.push(res.body.pgp_session.token);
    }
    secrets.push('wrong-password-77');
    // An encrypted write (content must not reach the trail), then its replay, refused.
    const env = envelope('PUT', '/records/r1', '', JSON.stringify({ note: SECRET_TEXT }));
    const msg = await seal(env, alice.sessionCert, alice.key.privateKey);
    assert.equal((await alice.send('PUT', '/records/r1', '', '', { env, msg })).status, 201);
    assert.equal((await alice.send('PUT', '/records/r1', '', '', { env, msg })).status, 400);
    // A configuration change, and the plaintext request it makes refused.
    const set = await db.json('/_node/_local/_config/couch_pgp/require_encryption_dbs', { method: 'PUT', body: JSON.stringify('vault') });
    assert.equal(set.status, 200, set.text);
    assert.equal((await db.json('/vault/v1', { method: 'PUT', auth: aliceAuth, body: { note: SECRET_TEXT } })).status, 403);
    // A secret setting: recorded as changed, its value not (the same passphrase, so the
    // loaded key is unaffected).
    const pass = await db.json('/_node/_local/_config/couch_pgp/passphrase', { method: 'PUT', body: JSON.stringify(db.passphrase) });
    assert.equal(pass.status, 200, pass.text);
    // Certificates: a proof signed by the wrong key is refused; a good one registers.
    const statement = (k) => jcs({ action: 'register', fingerprint: k.fingerprint, user: 'alice' });
    const proof = async (k, signer = k) => openpgp.sign({
      message: await openpgp.createMessage({ text: statement(k) }), signingKeys: signer.privateKey, detached: true });
    const other = await newKey('other');
    assert.equal((await db.json('/_pgp/certs', { method: 'POST', auth: aliceAuth,
      body: { cert: alice.key.publicKey.armor(), signature: await proof(alice.key, other) } })).status, 403);
    const reg = await db.json('/_pgp/certs', { method: 'POST', auth: aliceAuth,
      body: { cert: alice.key.publicKey.armor(), signature: await proof(alice.key) } });
    assert.equal(reg.status, 201, reg.text);
    // Signed documents: one accepted, one unsigned refused.
    assert.equal((await db.json('/signed/s1', { method: 'PUT', auth: aliceAuth,
      body: await signDoc({ _id: 's1', note: SECRET_TEXT }, alice.key) })).status, 201);
    assert.equal((await db.json('/signed/s2', { method: 'PUT', auth: aliceAuth, body: { note: SECRET_TEXT } })).status, 403);
    // The certificate revoked.
    const del = await db.json(`/_pgp/certs/${alice.key.fingerprint}`, { method: 'DELETE', auth: aliceAuth });
    assert.equal(del.status, 200, del.text);
    const revokedAt = del.body.revoked_at;

    const body = await trail();
    assert.equal(body.node, db.nodeName);
    assert.equal(body.state, 'ok');
    assert.equal(body.unwritten, 0);
    const fpr = alice.key.fingerprint;
    const has = (type, fields) => body.entries.some((e) => e.type === type
      && Object.entries(fields).every(([k, v]) => JSON.stringify(e.fields[k]) === JSON.stringify(v)));
    const expected = [
      ['identity_created', { fingerprint: alice.identity.getFingerprint().toUpperCase() }],
      ['config_loaded', { enable: true }],
      ['session_created', { user: 'alice', client: fpr }],
      ['login', { user: 'alice', client: key.fingerprint, session: 'created' }],
      ['login_refused', { status: 401, client: key.fingerprint }],
      ['request_refused', { reason: 'replay', user: 'alice', client: fpr }],
      ['config_changed', { setting: 'require_encryption_dbs', value: 'vault', persist: true }],
      ['request_refused', { reason: 'encryption_required' }],
      ['config_changed', { setting: 'passphrase', value: 'not_recorded', persist: true }],
      ['cert_refused', { user: 'alice', cert: fpr, reason: 'unknown_signer' }],
      ['cert_registered', { user: 'alice', cert: fpr }],
      ['signed_doc_accepted', { user: 'alice', db: 'signed', doc: 's1', signers: [fpr], mode: 'interactive' }],
      ['signed_doc_refused', { user: 'alice', db: 'signed', doc: 's2', reason: 'unsigned', mode: 'interactive' }],
      ['cert_revoked', { user: 'alice', cert: fpr, revoked_at: revokedAt }],
    ];
    for (const [type, fields] of expected) {
      assert.ok(has(type, fields), `${type} ${JSON.stringify(fields)} not in ${JSON.stringify(body.entries.filter((e) => e.type === type))}`);
    }
    // Chained: seq 1, 2, ... and each prev the hash before it; checkpoints signed by the node.
    body.entries.forEach((e, i) => {
      assert.equal(e.seq, i + 1);
      if (i > 0) assert.equal(e.prev, body.entries[i - 1].hash);
    });
    const cps = body.entries.filter((e) => e.type === 'checkpoint');
    assert.ok(cps.length >= 2, `${cps.length} checkpoints`);
    for (const cp of cps) assert.equal(cp.fields.signer, alice.identity.getFingerprint().toUpperCase());
    // The same events are in CouchDB's log, in the same words.
    assert.match(db.log(), new RegExp(`couch_pgp audit: cert_revoked user=alice cert=${fpr} revoked_at=${revokedAt}`));
    // ?since and ?limit page through it.
    const page = await trail(`?since=3&limit=2`);
    assert.deepEqual(page.entries.map((e) => e.seq), [4, 5]);
  });

  test('only server admins read the trail', async () => {
    assert.equal((await db.json('/_pgp/audit', { auth: null })).status, 401);
    const asAlice = await db.json('/_pgp/audit', { auth: aliceAuth });
    assert.equal(asAlice.status, 403);
    assert.equal(asAlice.body.error, 'forbidden');
    assert.equal((await db.json('/_pgp/audit/file', { auth: aliceAuth })).status, 403);
    assert.equal((await db.json('/_pgp/audit/rotate', { method: 'POST', auth: null })).status, 401);
    assert.equal((await db.json('/_pgp/audit/checkpoint', { method: 'GET' })).status, 405);
    assert.equal((await db.json('/_pgp/audit?since=x')).status, 400);
  });

  test('the file on disk is private; audit_verify passes it and finds an edited entry', async () => {
    const status = await trail('?limit=1');
    const onDisk = path.resolve(db.home, status.file);
    assert.equal(fs.statSync(onDisk).mode & 0o777, 0o600);
    const cp = await db.json('/_pgp/audit/checkpoint', { method: 'POST' });
    assert.equal(cp.status, 200, cp.text);
    const file = await download('audit.log');
    assert.deepEqual(fs.readFileSync(file), fs.readFileSync(onDisk));
    const ident = await identityFile();
    const ok = await verify('--cert', ident, file);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    assert.match(ok.stdout, new RegExp(`^ok: ${lines.length} entries, seq 1\\.\\.${lines.length}, node ${db.nodeName}$`, 'm'));
    assert.match(ok.stdout, new RegExp(`^signed through seq ${lines.length} by [0-9A-F]{40}$`, 'm'));
    // Edit one entry in a copy: the user of the cert_registered entry.
    const at = lines.findIndex((l) => JSON.parse(l).type === 'cert_registered');
    const seq = JSON.parse(lines[at]).seq;
    const edited = [...lines];
    edited[at] = edited[at].replace('"user":"alice"', '"user":"mallory"');
    assert.notEqual(edited[at], lines[at]);
    const copy = path.join(tmp, 'edited.log');
    fs.writeFileSync(copy, `${edited.join('\n')}\n`);
    const bad = await verify('--cert', ident, copy);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.equal(bad.stdout.trim(), `broken at seq ${seq}: its content does not match its hash (edited)`);
    // A deleted entry, and a wrong certificate.
    const deleted = path.join(tmp, 'deleted.log');
    fs.writeFileSync(deleted, `${lines.filter((_, i) => i !== 4).join('\n')}\n`);
    const del = await verify('--cert', ident, deleted);
    assert.equal(del.code, 1);
    assert.match(del.stdout, /^broken at seq 5: found seq 6 here/);
    const otherCert = path.join(tmp, 'other.asc');
    fs.writeFileSync(otherCert, (await newKey('other')).publicKey.armor());
    const wrongKey = await verify('--cert', otherCert, file);
    assert.equal(wrongKey.code, 1);
    assert.match(wrongKey.stdout, /^broken at seq \d+: checkpoint signature not good/);
  });

  test('no secret or content in the trail', async () => {
    const text = fs.readFileSync(await download('secrets.log'), 'utf8');
    for (const s of secrets) {
      assert.ok(s && s.length >= 8, 'a real secret to look for');
      assert.ok(!text.includes(s), `the trail holds a secret (${s.slice(0, 3)}...)`);
    }
    assert.doesNotMatch(text, /PRIVATE KEY|BEGIN PGP MESSAGE/);
  });

  test('the chain continues over a restart and a rotation', async () => {
    const before = await trail();
    const last = before.seq;
    await db.restart();
    const after = await trail(`?since=${last}`);
    assert.equal(after.entries[0].type, 'audit_started');
    assert.equal(after.entries[0].seq, last + 1);
    assert.equal(after.entries[0].prev, before.head);
    assert.equal(after.entries[0].fields.resumed_at, last);
    const rot = await db.json('/_pgp/audit/rotate', { method: 'POST' });
    assert.equal(rot.status, 200, rot.text);
    const old = path.resolve(db.home, rot.body.previous_file);
    assert.ok(fs.existsSync(old));
    await db.json('/_node/_local/_config/couch_pgp/max_clock_skew', { method: 'PUT', body: JSON.stringify('301') });
    assert.equal((await db.json('/_pgp/audit/checkpoint', { method: 'POST' })).status, 200);
    const current = await download('current.log');
    const ident = await identityFile();
    const both = await verify('--cert', ident, old, current);
    assert.equal(both.code, 0, both.stdout + both.stderr);
    assert.match(both.stdout, /^ok: \d+ entries, seq 1\.\.\d+/m);
    // The newest part alone starts after seq 1: refused, unless retention is said.
    assert.equal((await verify('--cert', ident, current)).code, 1);
    const kept = await verify('--cert', ident, '--from-any-seq', current);
    assert.equal(kept.code, 0, kept.stdout);
    assert.match(kept.stdout, /^note: starts at seq \d+/m);
    // A cut below a seq seen before is found.
    const cut = await verify('--cert', ident, '--min-seq', String(last + 100), old, current);
    assert.equal(cut.code, 1);
    assert.match(cut.stdout, new RegExp(`the trail ends before seq ${last + 100}`));
  });

  test('after an identity rotation the trail verifies with the certificates GET /_pgp announces', async () => {
    const oldFpr = alice.identity.getFingerprint().toUpperCase();
    assert.equal((await db.json('/_pgp/audit/checkpoint', { method: 'POST' })).status, 200);
    const beforeRotation = fs.readFileSync(await identityFile());
    const oldOnly = path.join(tmp, 'identity-before.json');
    fs.writeFileSync(oldOnly, beforeRotation);
    const rot = await db.json('/_pgp/rotate', { method: 'POST', body: { overlap: 3600 } });
    assert.equal(rot.status, 200, rot.text);
    const newFpr = rot.body.fingerprint;
    assert.notEqual(newFpr, oldFpr);
    assert.equal((await db.json('/_pgp/audit/checkpoint', { method: 'POST' })).status, 200);
    const body = await trail();
    assert.ok(body.entries.some((e) => e.type === 'identity_rotated' && e.fields.from === oldFpr
      && e.fields.to === newFpr && e.fields.until === rot.body.until), 'identity_rotated in the trail');
    const signers = new Set(body.entries.filter((e) => e.type === 'checkpoint').map((e) => e.fields.signer));
    assert.deepEqual([...signers].sort(), [oldFpr, newFpr].sort());
    assert.match(db.log(), new RegExp(`couch_pgp audit: identity_rotated from=${oldFpr} to=${newFpr} until=${rot.body.until}`));
    // The current file holds checkpoints by both keys (it starts after seq 1: the part
    // before it was rotated away by the test before).
    const current = await download('rotated-identity.log');
    const ident = await identityFile();
    assert.equal(JSON.parse(fs.readFileSync(ident)).previous[0].fingerprint, oldFpr);
    const ok = await verify('--cert', ident, '--from-any-seq', current);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^signed through seq \d+ by ([0-9A-F]{40}), ([0-9A-F]{40})$/m);
    assert.deepEqual(ok.stdout.match(/by (\S+), (\S+)$/m).slice(1).sort(), [oldFpr, newFpr].sort());
    // Either key alone is not enough: the other one's checkpoint breaks the chain.
    const newOnly = path.join(tmp, 'identity-new.asc');
    fs.writeFileSync(newOnly, JSON.parse(fs.readFileSync(ident)).cert);
    for (const certs of [oldOnly, newOnly]) {
      const bad = await verify('--cert', certs, '--from-any-seq', current);
      assert.equal(bad.code, 1, bad.stdout + bad.stderr);
      assert.match(bad.stdout, /checkpoint signature not good for the given certificates/);
    }
    // The same two certificates given one by one pass too.
    const oldCert = path.join(tmp, 'identity-old.asc');
    fs.writeFileSync(oldCert, JSON.parse(beforeRotation).cert);
    const both = await verify('--cert', oldCert, '--cert', newOnly, '--from-any-seq', current);
    assert.equal(both.code, 0, both.stdout + both.stderr);
  });
});
