// `[couch_pgp] enable`, as an operator uses it: install (off by default), check that the node
// is plain CouchDB, switch on at run time, use it, switch off, check again; what a switch
// leaves in force (require_encryption, signed-only databases); the audit line at each switch;
// enable = true in local.ini across a restart.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CouchDB, couchdbSkip } from './couchdb.mjs';
import { Client, newKey, signDoc } from './pgp_client.mjs';

const skip = couchdbSkip();

describe('[couch_pgp] enable switches the plugin on and off', { skip, timeout: 600000 }, () => {
  let db; let alice;
  const aliceAuth = { username: 'alice', password: 'alice-pw-switch' };

  before(async () => {
    // enable: null keeps what `make install` put in default.d: off.
    db = await CouchDB.start({ ini: { couch_pgp: { enable: null } } });
    const u = await db.json('/_users/org.couchdb.user:alice', {
      method: 'PUT', body: { name: 'alice', password: aliceAuth.password, roles: [], type: 'user' } });
    assert.equal(u.status, 201, u.text);
    assert.equal((await db.json('/records', { method: 'PUT' })).status, 201);
    const sec = await db.json('/records/_security', {
      method: 'PUT', body: { members: { names: ['alice'] }, admins: {} } });
    assert.equal(sec.status, 200, sec.text);
    alice = new Client(db, aliceAuth, await newKey('alice'));
  });

  after(async () => { if (db) await db.stop(); });

  const keyFile = () => path.join(db.home, 'data', 'couch_pgp', 'server_key.asc');
  const setEnable = (v) => db.json('/_node/_local/_config/couch_pgp/enable', {
    method: 'PUT', body: JSON.stringify(v) });

  // An encrypted request whose body the node must not even try to open while off.
  const encryptedPut = (id) => db.json(`/records/${id}`, {
    method: 'PUT', auth: aliceAuth, body: '-----BEGIN PGP MESSAGE-----\n\nnot opened\n-----END PGP MESSAGE-----\n',
    headers: { 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': 'x' } });

  async function assertOff(what) {
    const id = await db.json('/_pgp', { auth: null });
    assert.equal(id.status, 503, `${what}: ${id.text}`);
    assert.deepEqual(id.body, { error: 'pgp_disabled',
      reason: 'couch_pgp is switched off on this node ([couch_pgp] enable = false).' });
    for (const p of ['/_pgp/session', '/_pgp/client.js', '/_pgp/certs']) {
      const r = await db.json(p, { auth: aliceAuth });
      assert.equal(r.status, 503, `${what}: ${p}`);
      assert.equal(r.body.error, 'pgp_disabled');
    }
    const enc = await encryptedPut('never');
    assert.equal(enc.status, 503, `${what}: ${enc.text}`);
    assert.equal(enc.body.error, 'pgp_disabled');
    assert.equal(enc.headers.get('x-pgp-encrypted'), null);
    assert.equal((await db.json('/records/never')).status, 404, 'an encrypted request is never processed');
    // Plaintext is CouchDB's own.
    const put = await db.json(`/records/plain-${what}`, { method: 'PUT', auth: aliceAuth, body: { n: 1 } });
    assert.equal(put.status, 201, put.text);
    const get = await db.json(`/records/plain-${what}`, { auth: aliceAuth });
    assert.equal(get.status, 200);
    assert.equal(get.body.n, 1);
    assert.equal(get.headers.get('x-pgp-encrypted'), null);
  }

  test('installed, it is off: plain CouchDB, /_pgp says pgp_disabled, no key is created', async () => {
    const cfg = await db.json('/_node/_local/_config/couch_pgp/enable');
    assert.equal(cfg.body, 'false');
    await assertOff('installed');
    assert.equal(fs.existsSync(keyFile()), false, 'no identity key while off');
    assert.match(db.log(), /couch_pgp audit: config_loaded enable=false/);
  });

  let pinned;
  test('switched on at run time: the key is created, sessions and encrypted requests work', async () => {
    const mark = db.log().length;
    assert.equal((await setEnable('true')).status, 200);
    await db.waitFor(async () => (await db.json('/_pgp', { auth: null })).status === 200,
      { what: 'GET /_pgp to answer 200 after enable = true' });
    assert.equal(fs.statSync(keyFile()).mode & 0o777, 0o600);
    pinned = await alice.pin();
    await alice.startSession();
    const w = await alice.send('PUT', '/records/enc1', '', JSON.stringify({ note: 'encrypted' }));
    assert.equal(w.status, 201);
    assert.equal(w.encrypted, true);
    const r = await alice.send('GET', '/records/enc1');
    assert.equal(r.status, 200);
    assert.equal(r.body.note, 'encrypted');
    assert.match(db.log(mark), /couch_pgp audit: config_changed setting=enable value=true was=false/);
  });

  test('switched off again: the same session is refused unread, plaintext is CouchDB\'s own', async () => {
    const mark = db.log().length;
    assert.equal((await setEnable('false')).status, 200);
    await db.waitFor(async () => (await db.json('/_pgp', { auth: null })).status === 503,
      { what: 'GET /_pgp to answer 503 after enable = false' });
    await assertOff('disabled');
    const r = await alice.send('GET', '/records/enc1');
    assert.equal(r.status, 503);
    assert.equal(r.encrypted, false);
    assert.equal(r.body.error, 'pgp_disabled');
    assert.match(db.log(mark), /couch_pgp audit: config_changed setting=enable value=false was=true/);
    // The key file stays; switching on again loads the same identity.
    assert.equal(fs.existsSync(keyFile()), true);
  });

  test('policies stay in force while off, with a warning at the switch', async () => {
    for (const [k, v] of [['signed_dbs', 'records'], ['require_encryption_dbs', 'vault']]) {
      assert.equal((await db.json(`/_node/_local/_config/couch_pgp/${k}`, { method: 'PUT', body: JSON.stringify(v) })).status, 200);
    }
    assert.equal((await db.json('/vault', { method: 'PUT' })).status, 403, 'plaintext to a require_encryption db');
    const unsigned = await db.json('/records/u1', { method: 'PUT', auth: aliceAuth, body: { note: 'x' } });
    assert.equal(unsigned.status, 403, unsigned.text);
    assert.equal((await db.json('/records/u1')).status, 404);
    // A signed write by a registered certificate still passes: verifying needs no server key.
    const doc = (await db.json('/_users/org.couchdb.user:alice')).body;
    doc.pgp_certs = [alice.key.publicKey.armor()];
    assert.equal((await db.json('/_users/org.couchdb.user:alice', { method: 'PUT', body: doc })).status, 201);
    const signed = await db.json('/records/s1', { method: 'PUT', auth: aliceAuth,
      body: await signDoc({ _id: 's1', note: 'signed' }, alice.key) });
    assert.equal(signed.status, 201, signed.text);
    // Each switch off says, loudly, what is still enforced.
    const mark = db.log().length;
    assert.equal((await setEnable('true')).status, 200);
    await db.waitFor(async () => (await db.json('/_pgp', { auth: null })).status === 200, { what: 'on' });
    assert.equal((await db.json('/_pgp', { auth: null })).body.fingerprint, pinned, 'the same identity');
    assert.equal((await setEnable('false')).status, 200);
    await db.waitFor(async () => /config_changed setting=enable value=false/.test(db.log(mark)), { what: 'the audit line' });
    const warning = /\[warning\].*couch_pgp: disabled, but these policies are still enforced.*require_encryption_dbs=vault, signed_dbs=records/;
    await db.waitFor(async () => warning.test(db.log(mark)), { what: 'the warning' });
    assert.match(db.log(mark), warning);
    for (const k of ['signed_dbs', 'require_encryption_dbs']) {
      await db.json(`/_node/_local/_config/couch_pgp/${k}`, { method: 'DELETE' });
    }
  });

  test('enable = true in local.ini: on from the start after a restart', async () => {
    await db.restart({ ini: { couch_pgp: { enable: 'true' } } });
    const r = await db.json('/_pgp', { auth: null });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.fingerprint, pinned);
    assert.match(db.log(), /couch_pgp audit: config_loaded enable=true/);
    // No secret reached the log on the way.
    assert.doesNotMatch(db.log(), new RegExp(db.passphrase));
  });
});
