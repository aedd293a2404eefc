// Keys over time against a real CouchDB (README "Keys over time"): the operator rotates the
// identity, clients pinned to the old key follow the endorsement (the browser client moves
// its pin and says so), sessions from before keep working until they expire; a revoked key
// is refused by the client at once, also during the overlap; rotating the token secret
// refuses every earlier token with pgp_session_revoked; the state survives a restart.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CouchDB, couchdbSkip, sleep, run, REPO } from './couchdb.mjs';
import { Client, envelope, newKey, openpgp, seal } from './pgp_client.mjs';
import {
  connect, IdentityRevokedError, PinMismatchError, ProtocolError, SessionExpiredError, Security,
} from '../../client/src/index.js';

const skip = couchdbSkip();
const LIFETIME = 40;
const ALICE = { username: 'alice', password: 'alice-pw-rot' };

/** A fetch that lets a test rewrite GET /_pgp on its way to the client (a man in the middle). */
function tampering(edit) {
  return async (url, init) => {
    const r = await fetch(url, init);
    if (!String(url).endsWith('/_pgp')) return r;
    const body = edit(await r.json());
    return new Response(JSON.stringify(body), { status: r.status, headers: { 'Content-Type': 'application/json' } });
  };
}

describe('identity rotation, revocation and token secret rotation', { skip, timeout: 600000 }, () => {
  let db; let oldFpr; let newFpr;
  let early;      // the browser client, connected and logged in before the rotation
  let earlyRaw;   // a raw protocol client whose session started before the rotation
  const pinChanges = [];

  before(async () => {
    db = await CouchDB.start({ ini: { couch_pgp: { session_lifetime: String(LIFETIME) } } });
    const u = await db.json(`/_users/org.couchdb.user:${ALICE.username}`, {
      method: 'PUT', body: { name: ALICE.username, password: ALICE.password, roles: [], type: 'user' } });
    assert.equal(u.status, 201, u.text);
    assert.equal((await db.json('/records', { method: 'PUT' })).status, 201);
    await db.json('/records/_security', { method: 'PUT', body: { members: { names: ['alice'] }, admins: {} } });
    oldFpr = (await db.json('/_pgp', { auth: null })).body.fingerprint;
    early = await connect(db.url, { pin: oldFpr, onPinChange: (c) => pinChanges.push(c) });
    await early.login(ALICE.username, ALICE.password);
    assert.equal((await early.request('/records/before', { method: 'PUT', body: { n: 1 } })).status, 201);
    earlyRaw = new Client(db, ALICE, await newKey('alice-raw'));
    await earlyRaw.pin(oldFpr);
    await earlyRaw.startSession();
  });

  after(async () => { if (db) await db.stop(); });

  test('before any rotation GET /_pgp announces no previous keys and no revocations', async () => {
    const r = await db.json('/_pgp', { auth: null });
    assert.deepEqual(r.body.previous, []);
    assert.deepEqual(r.body.revocations, []);
  });

  test('only server admins may rotate, revoke or rotate the token secret', async () => {
    for (const cmd of ['rotate', 'revoke', 'token_secret']) {
      const anon = await db.json(`/_pgp/${cmd}`, { method: 'POST', auth: null, body: {} });
      assert.equal(anon.status, 401, `${cmd}: ${anon.text}`);
      const user = await db.json(`/_pgp/${cmd}`, { method: 'POST', auth: ALICE, body: {} });
      assert.equal(user.status, 401, `${cmd}: ${user.text}`);
      assert.equal((await db.json(`/_pgp/${cmd}`)).status, 405);
    }
    const bad = await db.json('/_pgp/rotate', { method: 'POST', body: { overlap: -1 } });
    assert.equal(bad.status, 400, bad.text);
    assert.equal((await db.json('/_pgp', { auth: null })).body.fingerprint, oldFpr);
  });

  test('rotation: a new key, endorsed by the old one, announced beside it for the overlap', async () => {
    const t0 = Math.floor(Date.now() / 1000);
    const r = await db.json('/_pgp/rotate', { method: 'POST', body: { overlap: 3600 } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.ok, true);
    assert.equal(r.body.previous, oldFpr);
    newFpr = r.body.fingerprint;
    assert.match(newFpr, /^[0-9A-F]{40}$/);
    assert.notEqual(newFpr, oldFpr);
    assert.ok(r.body.until >= t0 + 3600 && r.body.until <= t0 + 3610);
    assert.deepEqual(Object.values(r.body.nodes), ['ok']);
    const id = (await db.json('/_pgp', { auth: null })).body;
    assert.equal(id.fingerprint, newFpr);
    assert.equal(id.previous.length, 1);
    const [prev] = id.previous;
    assert.equal(prev.fingerprint, oldFpr);
    assert.equal(prev.until, r.body.until);
    assert.deepEqual(JSON.parse(prev.endorsement), {
      action: 'rotate', new_fingerprint: newFpr, old_fingerprint: oldFpr,
      rotated_at: JSON.parse(prev.endorsement).rotated_at, until: r.body.until, v: 1 });
    assert.match(prev.endorsement_signature, /^-----BEGIN PGP SIGNATURE-----/);
    await db.waitFor(async () => /couch_pgp audit: identity_rotated from=[0-9A-F]{40} to=[0-9A-F]{40} until=\d+/.test(db.log()), { what: 'the audit line' });
    assert.match(db.log(), /couch_pgp audit: identity_rotated from=[0-9A-F]{40} to=[0-9A-F]{40} until=\d+/);
  });

  test('sessions started before the rotation keep working', async () => {
    const got = await early.request('/records/before');
    assert.equal(got.status, 200);
    assert.equal((await got.json()).n, 1);
    const raw = await earlyRaw.send('GET', '/records/before');
    assert.equal(raw.status, 200);
    assert.equal((await earlyRaw.sendChannel('GET', '/records/before')).status, 200);
    assert.equal(raw.encrypted, true);
    assert.equal(raw.body.n, 1);
  });

  test('a client pinned to the old key connects after the rotation and moves its pin', async () => {
    const changes = [];
    const c = await connect(db.url, { pin: oldFpr, onPinChange: (ch) => changes.push(ch) });
    assert.equal(c.identityFingerprint, newFpr);
    assert.deepEqual(changes, [{ from: oldFpr, to: newFpr, chain: [oldFpr, newFpr] }]);
    await c.login(ALICE.username, ALICE.password);
    assert.equal((await c.request('/records/after', { method: 'PUT', body: { n: 2 } })).status, 201);
    // The connection made before the rotation follows too when it starts its next session.
    await sleep(5200);
    await early.startSession();
    assert.equal(early.identityFingerprint, newFpr);
    assert.deepEqual(pinChanges.map((ch) => [ch.from, ch.to]), [[oldFpr, newFpr]]);
    assert.equal((await (await early.request('/records/after')).json()).n, 2);
  });

  test('an endorsement altered on the way, or a pin the server never had, is refused', async () => {
    const longer = tampering((b) => ({ ...b, previous: b.previous.map((p) => ({
      ...p, endorsement: p.endorsement.replace(/"until":\d+/, '"until":9999999999') })) }));
    await assert.rejects(connect(db.url, { pin: oldFpr, fetch: longer }), ProtocolError);
    const dropped = tampering((b) => ({ ...b, previous: [] }));
    await assert.rejects(connect(db.url, { pin: oldFpr, fetch: dropped }), PinMismatchError);
    await assert.rejects(connect(db.url, { pin: 'AB'.repeat(20) }), PinMismatchError);
  });

  test('a session started before the rotation stays valid until it expires, then is refused as expired', async () => {
    const desc = await db.json('/_pgp/session', { auth: ALICE, headers: { 'X-PGP-Session': earlyRaw.token } });
    assert.equal(desc.status, 200, desc.text);
    const wait = desc.body.expires * 1000 - Date.now() + 1500;
    assert.ok(wait < (LIFETIME + 5) * 1000);
    await sleep(Math.max(0, wait));
    // In the channel: the session certificate has expired with the session, so the client
    // could not even encrypt to it in the per-message mode.
    const r = await earlyRaw.sendChannel('GET', '/records/before');
    assert.equal(r.status, 401);
    assert.equal(r.encrypted, false);
    assert.equal(r.body.error, 'pgp_session_expired');
  });

  test('revocation: the current key cannot be revoked; the old one is, with its reason', async () => {
    const cur = await db.json('/_pgp/revoke', { method: 'POST', body: { fingerprint: newFpr, reason: 'compromised' } });
    assert.equal(cur.status, 400, cur.text);
    const unknown = await db.json('/_pgp/revoke', { method: 'POST', body: { fingerprint: 'AB'.repeat(20) } });
    assert.equal(unknown.status, 400, unknown.text);
    const badReason = await db.json('/_pgp/revoke', { method: 'POST', body: { fingerprint: oldFpr, reason: 'stolen' } });
    assert.equal(badReason.status, 400, badReason.text);
    const r = await db.json('/_pgp/revoke', { method: 'POST',
      body: { fingerprint: oldFpr.toLowerCase(), reason: 'compromised', message: 'key file copied' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.ok, true);
    assert.equal(r.body.fingerprint, oldFpr);
    const id = (await db.json('/_pgp', { auth: null })).body;
    assert.equal(id.revocations.length, 1);
    const [rev] = id.revocations;
    assert.equal(rev.fingerprint, oldFpr);
    assert.equal(rev.reason, 'compromised');
    assert.equal(rev.message, 'key file copied');
    assert.match(rev.revocation, /^-----BEGIN PGP PUBLIC KEY BLOCK-----/);
    // Still in its overlap, and announced there: the client must refuse it anyway.
    assert.equal(id.previous[0].fingerprint, oldFpr);
    await db.waitFor(async () => new RegExp(`couch_pgp audit: identity_revoked fingerprint=${oldFpr} reason=compromised`).test(db.log()), { what: 'the audit line' });
    assert.match(db.log(), new RegExp(`couch_pgp audit: identity_revoked fingerprint=${oldFpr} reason=compromised`));
  });

  test('a client pinned to the revoked key refuses it at once, even in the overlap', async () => {
    await assert.rejects(connect(db.url, { pin: oldFpr }), (e) => {
      assert.ok(e instanceof IdentityRevokedError, String(e));
      assert.equal(e.fingerprint, oldFpr);
      assert.equal(e.reason, 'compromised');
      return true;
    });
    // A forged revocation (the certificate without the revocation signature) is refused.
    const cert = (await db.json('/_pgp', { auth: null })).body.previous[0].cert;
    const forged = tampering((b) => ({ ...b, revocations: b.revocations.map((r) => ({ ...r, revocation: cert })) }));
    await assert.rejects(connect(db.url, { pin: newFpr, fetch: forged }), ProtocolError);
    // Pinned to the new key: unaffected.
    const c = await connect(db.url, { pin: newFpr });
    await c.login(ALICE.username, ALICE.password);
    assert.equal((await c.request('/records/after')).status, 200);
  });

  test('token secret rotation: every earlier token is refused with pgp_session_revoked', async () => {
    const holder = new Client(db, ALICE, await newKey('alice-holder'));
    await holder.pin(newFpr);
    await holder.startSession();
    assert.equal((await holder.send('GET', '/records/after')).status, 200);
    assert.equal((await early.request('/records/after')).status, 200); // cached on the node
    const r = await db.json('/_pgp/token_secret', { method: 'POST', body: {} });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.ok, true);
    const refused = await holder.send('GET', '/records/after');
    assert.equal(refused.status, 401);
    assert.equal(refused.encrypted, false);
    assert.deepEqual(refused.body, { error: 'pgp_session_revoked',
      reason: 'couch_pgp: the operator invalidated sessions started before the token secret was rotated; start a new one.' });
    await assert.rejects(early.request('/records/after'), (e) => {
      assert.ok(e instanceof SessionExpiredError, String(e));
      assert.match(e.message, /token secret rotated/);
      return true;
    });
    // A token that was never ours is still just not valid here.
    const junk = await holder.send('GET', '/records/after', '', '', { token: `${holder.token.slice(0, -8)}AAAAAAAA` });
    assert.equal(junk.status, 401);
    assert.equal(junk.body.error, 'unauthorized');
    // The secret itself is never in the log; a new session works.
    await db.waitFor(async () => /couch_pgp audit: token_secret_rotated node=/.test(db.log()), { what: 'the audit line' });
    assert.match(db.log(), /couch_pgp audit: token_secret_rotated node=/);
    assert.doesNotMatch(db.log(), new RegExp((await db.json('/_node/_local/_config/couch_pgp/secret')).body));
    await holder.startSession();
    assert.equal((await holder.send('GET', '/records/after')).status, 200);
    await early.login(ALICE.username, ALICE.password);
    assert.equal((await early.request('/records/after')).status, 200);
  });

  test('after a restart the node serves the new key, the overlap and the revocation', async () => {
    const beforeRestart = (await db.json('/_pgp', { auth: null })).body;
    await db.restart();
    await db.waitFor(async () => (await db.json('/_pgp', { auth: null })).status === 200, { what: 'identity' });
    const id = (await db.json('/_pgp', { auth: null })).body;
    assert.equal(id.fingerprint, newFpr);
    assert.deepEqual(id.previous, beforeRestart.previous);
    assert.deepEqual(id.revocations, beforeRestart.revocations);
    await assert.rejects(connect(db.url, { pin: oldFpr }), IdentityRevokedError);
  });
});

// Client certificates over time: a user's revocation (DELETE /_pgp/certs/<fpr>) keeps the
// certificate with its revocation time; signatures made before it still count for
// replicated revisions, later ones are refused; interactive writes refuse it at once. An
// expired certificate is refused wherever it would start something new, while signatures
// it made when valid still verify.
describe('client certificates: revocation date and expiry', { skip, timeout: 600000 }, () => {
  let db; let conn;
  const BOB = { username: 'bob', password: 'bob-pw-rot' };
  const SIGNED = 'signed';
  const REPLICA = 'replica';

  const replicate = (dbName, doc) => db.json(`/${dbName}/_bulk_docs`, {
    method: 'POST', body: { docs: [{ ...doc, _rev: '1-abc' }], new_edits: false } });
  const secondsTick = async () => { const s = Math.floor(Date.now() / 1000); while (Math.floor(Date.now() / 1000) === s) await sleep(50); };

  before(async () => {
    db = await CouchDB.start({ ini: { couch_pgp: { signed_dbs: `${SIGNED},${REPLICA}` } } });
    const u = await db.json(`/_users/org.couchdb.user:${BOB.username}`, {
      method: 'PUT', body: { name: BOB.username, password: BOB.password, roles: [], type: 'user' } });
    assert.equal(u.status, 201, u.text);
    for (const name of [SIGNED, REPLICA]) {
      assert.equal((await db.json(`/${name}`, { method: 'PUT' })).status, 201);
      await db.json(`/${name}/_security`, { method: 'PUT', body: { members: { names: ['bob'] }, admins: {} } });
    }
    conn = await connect(db.url, { pin: (await db.json('/_pgp', { auth: null })).body.fingerprint });
    await conn.login(BOB.username, BOB.password);
  });

  after(async () => { if (db) await db.stop(); });

  test('revoked now: earlier signatures still verify, later ones and new writes are refused', async () => {
    const key = await new Security({ userID: 'bob', lifetime: 0 }).ready;
    const fpr = await key.fingerprint();
    await conn.registerCertificate(key);
    const before = await key.signDoc({ _id: 'before', n: 1 });
    assert.equal((await conn.putDoc(SIGNED, before)).ok, true);
    await secondsTick();
    const del = await conn.request(`/_pgp/certs/${fpr}`, { method: 'DELETE' });
    assert.equal(del.status, 200);
    const { revoked_at: revokedAt } = await del.json();
    assert.ok(Math.abs(revokedAt - Date.now() / 1000) < 5);
    await secondsTick();
    // Interactive: refused at once, whatever the signature's date.
    const after = await key.signDoc({ _id: 'after', n: 2 });
    const w = await conn.request(`/${SIGNED}/after`, { method: 'PUT', body: after });
    assert.equal(w.status, 403);
    // (Bob's only certificate: he has none registered now.)
    assert.equal((await w.json()).reason,
      'Signed-only database: the writing user has no registered OpenPGP certificate (pgp_certs on the _users document).');
    // Replicated: the revision signed before the revocation passes, the later one does not.
    const ok = await replicate(REPLICA, before);
    assert.equal(ok.status, 201, ok.text);
    const late = await replicate(REPLICA, after);
    assert.equal(late.status, 403, late.text);
    assert.equal(late.body.reason,
      'Signed-only database: the signing certificate was revoked by its owner before this signature was made.');
    assert.equal((await db.json(`/${REPLICA}/after`)).status, 404);
    // Published: to its owner with the time, to any logged-in user by fingerprint.
    const mine = await (await conn.request('/_pgp/certs')).json();
    assert.deepEqual(mine.revoked, [{ fingerprint: fpr, revoked_at: revokedAt }]);
    assert.deepEqual(await (await conn.request(`/_pgp/certs/${fpr}`)).json(),
      { fingerprint: fpr, status: 'revoked', revoked_at: revokedAt });
    assert.equal((await (await conn.request(`/_pgp/certs/${'AB'.repeat(20)}`)).json()).status, 'unknown');
    // A revocation is final: registering the certificate again is refused.
    await assert.rejects(conn.registerCertificate(key), (e) => e.status === 400 && e.error === 'pgp_bad_cert');
    await db.waitFor(async () => new RegExp(`couch_pgp audit: cert_revoked user=bob cert=${fpr} revoked_at=${revokedAt}`).test(db.log()), { what: 'the audit line' });
    assert.match(db.log(), new RegExp(`couch_pgp audit: cert_revoked user=bob cert=${fpr} revoked_at=${revokedAt}`));
    await db.waitFor(async () => new RegExp(`couch_pgp audit: cert_refused user=bob cert=${fpr} reason=cert_revoked`).test(db.log()), { what: 'the audit line' });
    assert.match(db.log(), new RegExp(`couch_pgp audit: cert_refused user=bob cert=${fpr} reason=cert_revoked`));
  });

  test('revoked from an earlier date (when the key was lost): signatures since then are refused', async () => {
    const key = await new Security({ userID: 'bob', lifetime: 0 }).ready;
    const fpr = await key.fingerprint();
    await conn.registerCertificate(key);
    const stolen = await key.signDoc({ _id: 'stolen', n: 3 });
    assert.equal((await conn.putDoc(SIGNED, stolen)).ok, true);
    const lostAt = Math.floor(Date.now() / 1000) - 60;
    const future = await conn.request(`/_pgp/certs/${fpr}?revoked_at=${lostAt + 3600}`, { method: 'DELETE' });
    assert.equal(future.status, 400);
    const del = await conn.request(`/_pgp/certs/${fpr}?revoked_at=${lostAt}`, { method: 'DELETE' });
    assert.equal(del.status, 200);
    assert.equal((await del.json()).revoked_at, lostAt);
    const r = await replicate(REPLICA, stolen);
    assert.equal(r.status, 403, r.text);
    assert.match(r.body.reason, /revoked by its owner before this signature was made/);
  });

  test('an expired certificate: no new session, no registration, its earlier signatures still count', async () => {
    const key = await new Security({ userID: 'bob', lifetime: 8 }).ready;
    await conn.registerCertificate(key);
    const early = await key.signDoc({ _id: 'while-valid', n: 4 });
    assert.equal((await conn.putDoc(SIGNED, early)).ok, true);
    const publicKey = await key.getPublicKey();
    await sleep(9500);
    const session = await db.json('/_pgp/session', { method: 'POST', auth: BOB, body: { client_cert: publicKey } });
    assert.equal(session.status, 400, session.text);
    assert.equal(session.body.reason, 'The certificate has expired.');
    // (The client will not even sign the proof with an expired key; the server refuses the
    // certificate before it looks at the proof.)
    await assert.rejects(conn.request('/_pgp/certs', { method: 'POST', body: { cert: publicKey, signature: 'x' } }),
      (e) => e.status === 400 && e.error === 'pgp_bad_cert' && e.reason === 'The certificate has expired.');
    // Signed while valid: still verifies after the expiry (judged at the signature's time).
    const r = await replicate(REPLICA, early);
    assert.equal(r.status, 201, r.text);
  });

  test('a session ends when its client certificate expires, in the channel and per-message modes', async () => {
    const { privateKey, publicKey } = await openpgp.generateKey({
      type: 'curve25519', userIDs: [{ name: 'bob' }], keyExpirationTime: 8, format: 'object' });
    const c = new Client(db, BOB, { privateKey, publicKey, fingerprint: publicKey.getFingerprint().toUpperCase() });
    await c.pin();
    const desc = await c.startSession();
    // Capped at the certificate's expiry, not the configured session lifetime.
    assert.equal(desc.expires, Math.floor(publicKey.getCreationTime().getTime() / 1000) + 8);
    const live = await c.sendChannel('GET', `/${SIGNED}`);
    assert.equal(live.status, 200, live.text);
    assert.equal((await c.send('GET', `/${SIGNED}`)).status, 200);
    // Sealed now: OpenPGP.js will not sign with the key once it has expired.
    const env = envelope('GET', `/${SIGNED}`, '', '');
    const msg = await seal(env, c.sessionCert, privateKey);
    await sleep(desc.expires * 1000 - Date.now() + 1500);
    for (const r of [await c.sendChannel('GET', `/${SIGNED}`), await c.send('GET', `/${SIGNED}`, '', '', { env, msg })]) {
      assert.equal(r.status, 401, r.text);
      assert.equal(r.encrypted, false);
      assert.equal(r.body.error, 'pgp_session_expired');
    }
  });
});

// A three-node cluster: the operator's script, run against one node, rotates, revokes and
// rotates the token secret on all three (pushed over Erlang distribution); each node then
// serves the same keys from its own key directory.
describe('keys over time on a three-node cluster', { skip, timeout: 600000 }, () => {
  let nodes;
  const keys = (node, ...args) => run('sh', [path.join(REPO, 'scripts', 'keys.sh'), ...args], {
    env: { ...process.env, COUCH_URL: node.url, COUCH_ADMIN: `${node.admin.username}:${node.admin.password}` } });
  const identities = () => Promise.all(nodes.map(async (n) => (await n.json('/_pgp', { auth: null })).body));

  before(async () => {
    nodes = await CouchDB.startCluster(3);
    const u = await nodes[0].json(`/_users/org.couchdb.user:${ALICE.username}`, {
      method: 'PUT', body: { name: ALICE.username, password: ALICE.password, roles: [], type: 'user' } });
    assert.equal(u.status, 201, u.text);
    assert.equal((await nodes[1].json('/records', { method: 'PUT' })).status, 201);
    await nodes[1].json('/records/_security', { method: 'PUT', body: { members: { names: ['alice'] }, admins: {} } });
  });

  after(async () => { for (const n of (nodes || []).reverse()) await n.stop(); });

  test('rotate on one node: every node serves the new key, clients follow, earlier sessions work on every node', async () => {
    const [oldId] = await identities();
    const raw = new Client(nodes[0], ALICE, await newKey('alice-cluster'));
    await raw.pin(oldId.fingerprint);
    await raw.startSession();
    const r = await keys(nodes[1], 'rotate', '3600');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const answer = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(answer.nodes).sort(), nodes.map((n) => n.nodeName).sort());
    assert.deepEqual(Object.values(answer.nodes), ['ok', 'ok', 'ok']);
    const ids = await identities();
    for (const id of ids) {
      assert.equal(id.fingerprint, answer.fingerprint);
      assert.deepEqual(id.previous, ids[0].previous);
      assert.equal(id.previous[0].fingerprint, oldId.fingerprint);
    }
    for (const n of nodes) {
      assert.ok(fs.existsSync(path.join(n.home, 'data', 'couch_pgp', 'server_key.asc.history.json')));
      assert.match(n.readIni(), new RegExp(`identity_fingerprint = ${answer.fingerprint}`));
    }
    // Pinned to the old key, connecting through the third node: follows the rotation.
    const changes = [];
    const c = await connect(nodes[2].url, { pin: oldId.fingerprint, onPinChange: (ch) => changes.push(ch) });
    assert.equal(changes.length, 1);
    await c.login(ALICE.username, ALICE.password);
    assert.equal((await c.request('/records/c1', { method: 'PUT', body: { n: 1 } })).status, 201);
    // The session started on node 0 before the rotation works on each node.
    for (const n of nodes) {
      const other = Object.assign(new Client(n, ALICE, raw.key), {
        token: raw.token, sessionCert: raw.sessionCert, channel: raw.channel, identity: raw.identity });
      const got = await other.sendChannel('GET', '/records/c1');
      assert.equal(got.status, 200, `${n.nodeName}: ${JSON.stringify(got.body)}`);
    }
  });

  test('a node that was down during a rotation and a revocation catches up by itself when it is back', async () => {
    const c = nodes[2];
    await c.kill();
    const r = await keys(nodes[0], 'rotate', '3600');
    assert.equal(r.code, 1, r.stdout + r.stderr); // not every node applied it
    const answer = JSON.parse(r.stdout);
    assert.equal(answer.ok, false);
    assert.equal(answer.nodes[nodes[1].nodeName], 'ok');
    assert.match(answer.nodes[c.nodeName], /^error: /);
    const missed = answer.previous;
    const rev = await keys(nodes[1], 'revoke', missed, 'superseded');
    assert.equal(rev.code, 1, rev.stdout + rev.stderr);
    await c.start();
    // couch_pgp_key_sync asks its peers 5 s after start, then every 30 s.
    await c.waitFor(async () => {
      const id = (await c.json('/_pgp', { auth: null })).body;
      return id.fingerprint === answer.fingerprint && id.revocations?.some((x) => x.fingerprint === missed);
    }, { timeoutMs: 60000, what: 'the restarted node to catch up' });
    const ids = await identities();
    for (const id of ids) {
      assert.equal(id.fingerprint, answer.fingerprint);
      assert.deepEqual(id.previous, ids[0].previous);
      assert.deepEqual(id.revocations.map((x) => x.fingerprint), ids[0].revocations.map((x) => x.fingerprint));
    }
    assert.match(c.log(), new RegExp(`couch_pgp: identity caught up from \\S+: ${missed} -> ${answer.fingerprint}`));
  });

  test('revoke and token secret rotation reach every node', async () => {
    const [id] = await identities();
    // The first key (the one before the first rotation), not yet revoked.
    const oldFpr = id.previous[id.previous.length - 1].fingerprint;
    const raw = new Client(nodes[1], ALICE, await newKey('alice-cluster-2'));
    await raw.pin(id.fingerprint);
    await raw.startSession();
    const r = await keys(nodes[2], 'revoke', oldFpr, 'compromised', 'backup tape "lost"');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const got of await identities()) {
      assert.equal(got.revocations.length, 2);
      const mine = got.revocations.find((x) => x.fingerprint === oldFpr);
      assert.equal(mine.message, 'backup tape "lost"');
    }
    for (const n of nodes) await assert.rejects(connect(n.url, { pin: oldFpr }), IdentityRevokedError);
    // The third node is down when the token secret is rotated: it takes the new secret from
    // its peers when it is back.
    const c = nodes[2];
    await c.kill();
    const t = await keys(nodes[0], 'token-secret');
    assert.equal(t.code, 1, t.stdout + t.stderr);
    assert.equal(JSON.parse(t.stdout).nodes[nodes[1].nodeName], 'ok');
    await c.start();
    const onC = Object.assign(new Client(c, ALICE, raw.key), {
      token: raw.token, sessionCert: raw.sessionCert, channel: raw.channel, identity: raw.identity });
    await c.waitFor(async () => {
      const got = await onC.sendChannel('GET', '/records/c1').catch(() => ({}));
      return got.status === 401 && got.body?.error === 'pgp_session_revoked';
    }, { timeoutMs: 60000, what: 'the restarted node to take the new token secret' });
    assert.match(c.log(), /couch_pgp audit: token_secret_rotated node=\S+ caught_up=true/);
    for (const n of nodes) {
      const other = Object.assign(new Client(n, ALICE, raw.key), {
        token: raw.token, sessionCert: raw.sessionCert, channel: raw.channel, identity: raw.identity });
      const got = await other.sendChannel('GET', '/records/c1');
      assert.equal(got.status, 401, n.nodeName);
      assert.equal(got.body.error, 'pgp_session_revoked', n.nodeName);
    }
    // A session made now on one node works on the others (they share the new secret).
    await raw.startSession();
    for (const n of nodes) {
      const other = Object.assign(new Client(n, ALICE, raw.key), {
        token: raw.token, sessionCert: raw.sessionCert, channel: raw.channel, identity: raw.identity });
      assert.equal((await other.sendChannel('GET', '/records/c1')).status, 200, n.nodeName);
    }
  });
});
