// couch_pgp inside a real CouchDB, over real HTTP, with an OpenPGP.js client that shares no
// code with the server: identity, sessions, encrypted requests and responses, the attacks the
// protocol must refuse, the tunnel, require_encryption, signed-only databases, encrypted
// login, counters and logs. Every refusal is checked to have changed nothing.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import * as openpgp from 'openpgp';
import { CouchDB, couchdbSkip } from './couchdb.mjs';
import { Client, envelope, seal, open, newKey, signDoc, checkSession, jcs, nonce } from './pgp_client.mjs';

const ERRORS = JSON.parse(fs.readFileSync(new URL('../vectors/errors.json', import.meta.url)));
/** {error, reason} of a row of the error table. */
function refusal(reason) {
  const r = ERRORS.rows.find((x) => x.reason === reason);
  assert.ok(r, reason);
  return { status: r.status, body: { error: r.error, reason: r.reason_text } };
}

/** Sends raw HTTP/1.1 requests one after the other on one keep-alive connection and reads
 *  each response by its Content-Length: a response that promises more bytes than it sends
 *  makes this fail (after `timeoutMs`) instead of hanging. */
async function keepAlive(port, requests, timeoutMs = 5000) {
  const sock = net.connect({ host: '127.0.0.1', port });
  await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  let buf = Buffer.alloc(0); let wake = () => {};
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); wake(); });
  const out = [];
  try {
    for (const { method, path: p, headers = {}, body = '' } of requests) {
      const b = Buffer.from(body);
      const head = [`${method} ${p} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: keep-alive',
        `Content-Length: ${b.length}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)].join('\r\n');
      sock.write(Buffer.concat([Buffer.from(`${head}\r\n\r\n`), b]));
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end >= 0) {
          const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
          const hs = Object.fromEntries(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
          const len = Number(hs['content-length']);
          assert.ok(Number.isInteger(len), `no Content-Length: ${lines.join(' | ')}`);
          if (buf.length >= end + 4 + len) {
            out.push({ status: Number(lines[0].split(' ')[1]), headers: hs, body: buf.subarray(end + 4, end + 4 + len).toString('utf8') });
            buf = buf.subarray(end + 4 + len);
            break;
          }
        }
        if (Date.now() > deadline) throw new Error(`${method} ${p}: the response promised more bytes than it sent (${buf.length} buffered)`);
        await new Promise((r) => { wake = r; setTimeout(r, 100); });
      }
    }
  } finally { sock.destroy(); }
  return out;
}

const skip = couchdbSkip();
const SECRET_TEXT = 'penicillin-allergy-7f3a';

describe('couch_pgp plugin in CouchDB', { skip, timeout: 600000 }, () => {
  let db; let alice; let bob; let pinned;
  const aliceAuth = { username: 'alice', password: 'alice-pw-1' };
  const bobAuth = { username: 'bob', password: 'bob-pw-2' };

  before(async () => {
    db = await CouchDB.start({ ini: { couch_pgp: { signed_dbs: 'signed' } } });
    for (const [name, auth] of [['alice', aliceAuth], ['bob', bobAuth]]) {
      const r = await db.json(`/_users/org.couchdb.user:${name}`, {
        method: 'PUT', body: { name, password: auth.password, roles: [], type: 'user' },
      });
      assert.equal(r.status, 201, r.text);
    }
    for (const name of ['records', 'vault', 'signed']) {
      assert.equal((await db.json(`/${name}`, { method: 'PUT' })).status, 201);
      const sec = await db.json(`/${name}/_security`, {
        method: 'PUT', body: { members: { names: ['alice', 'bob'] }, admins: {} },
      });
      assert.equal(sec.status, 200, sec.text);
    }
    // Set at run time, after the databases exist: the policy refuses plaintext to them,
    // admins' database creation included.
    const set = await db.json('/_node/_local/_config/couch_pgp/require_encryption_dbs', { method: 'PUT', body: JSON.stringify('vault') });
    assert.equal(set.status, 200, set.text);
    alice = new Client(db, aliceAuth, await newKey('alice'));
    bob = new Client(db, bobAuth, await newKey('bob'));
    pinned = await alice.pin();
    await bob.pin(pinned);
    await alice.startSession();
    await bob.startSession();
  });

  after(async () => { if (db) await db.stop(); });

  async function stored(dbName, id) {
    return db.json(`/${dbName}/${encodeURIComponent(id)}`);
  }

  async function stillUp() {
    assert.equal((await db.json('/_up', { auth: null })).status, 200);
  }

  test('GET /_pgp gives the identity without authentication; the key file is private and survives a restart', async () => {
    const r = await db.json('/_pgp', { auth: null });
    assert.equal(r.status, 200);
    assert.equal(r.body.fingerprint, pinned);
    assert.match(r.body.cert, /^-----BEGIN PGP PUBLIC KEY BLOCK-----/);
    assert.equal(r.body.profile, 'rfc4880');
    assert.deepEqual(r.body.encryption, ['seipdv1', 'seipdv2']);
    assert.deepEqual(r.body.modes, ['session', 'channel']);
    // CouchDB's own session timeout (600 s) and the default skew, as the README says.
    assert.equal(r.body.session_lifetime, 600);
    assert.equal(r.body.max_clock_skew, 300);
    const keyFile = path.join(db.home, 'data', 'couch_pgp', 'server_key.asc');
    assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.dirname(keyFile)).mode & 0o777, 0o700);
    assert.match(fs.readFileSync(keyFile, 'utf8'), /^-----BEGIN PGP PRIVATE KEY BLOCK-----/);
    await db.restart();
    assert.equal((await db.json('/_pgp', { auth: null })).body.fingerprint, pinned);
    // Sessions are sealed tokens: they survive the restart too.
    const after = await alice.send('GET', '/_pgp/whoami');
    assert.equal(after.status, 200);
  });

  test('a session needs a login; its statement is signed by the identity key', async () => {
    const anon = await db.json('/_pgp/session', { method: 'POST', auth: null, body: { client_cert: alice.key.publicKey.armor() } });
    assert.equal(anon.status, 401);
    const bad = await db.json('/_pgp/session', { method: 'POST', auth: aliceAuth, body: { client_cert: 'junk' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, 'pgp_bad_cert');
    const desc = await db.json('/_pgp/session', {
      method: 'GET', auth: aliceAuth, headers: { 'X-PGP-Session': alice.token },
    });
    assert.equal(desc.status, 200);
    assert.equal(desc.body.user, 'alice');
    await checkSession(desc.body, alice.identity, alice.key.fingerprint);
  });

  test('a substituted server key is detected: pin mismatch, and a session key the identity did not vouch for', async () => {
    const other = await newKey('mallory');
    const c = new Client(db, aliceAuth, alice.key);
    await assert.rejects(c.pin('0'.repeat(40)), /pin mismatch/);
    const r = await db.json('/_pgp/session', { method: 'POST', auth: aliceAuth, body: { client_cert: alice.key.publicKey.armor() } });
    const forged = { ...r.body, session_cert: other.publicKey.armor() };
    await assert.rejects(checkSession(forged, alice.identity, alice.key.fingerprint), /vouched/);
  });

  test('encrypted PUT and GET: CouchDB stores the plaintext, the wire carries none of it', async () => {
    const doc = { name: 'Anna', note: SECRET_TEXT };
    const put = await alice.send('PUT', '/records/p1', '', JSON.stringify(doc));
    assert.equal(put.status, 201);
    assert.equal(put.encrypted, true);
    assert.equal(put.nonceMatches, true);
    assert.equal(put.body.ok, true);
    const get = await alice.send('GET', '/records/p1');
    assert.equal(get.status, 200);
    assert.equal(get.body.note, SECRET_TEXT);
    // The same document read in plaintext: encrypted and plain traffic coexist.
    const plain = await stored('records', 'p1');
    assert.equal(plain.body.note, SECRET_TEXT);
    assert.equal(plain.headers.get('x-pgp-encrypted'), null);
    // Binary OpenPGP works as well as armored.
    const env = envelope('PUT', '/records/p2', '', JSON.stringify({ n: 2 }));
    const bin = await seal(env, alice.sessionCert, alice.key.privateKey, { armor: false });
    const r2 = await alice.send('PUT', '/records/p2', '', '', { env, msg: bin });
    assert.equal(r2.status, 201);
  });

  test('attacks are refused, answered encrypted, and change nothing', async () => {
    const before = await stored('records', 'p1');
    const update = JSON.stringify({ _rev: before.body._rev, name: 'Anna B.', note: SECRET_TEXT });
    const env = envelope('PUT', '/records/p1', '', update);
    const msg = await seal(env, alice.sessionCert, alice.key.privateKey);
    const cases = [];
    // Replay: the first use passes, the second is refused.
    assert.equal((await alice.send('PUT', '/records/p1', '', '', { env, msg })).status, 201);
    const afterFirst = await stored('records', 'p1');
    cases.push(['replay', await alice.send('PUT', '/records/p1', '', '', { env, msg }), 400, 'pgp_replay']);
    // Moved to another path, or another method.
    const moved = envelope('PUT', '/records/p9', '', '{}');
    cases.push(['path swap', await alice.send('PUT', '/records/p8', '', '', { env: moved, msg: await seal(moved, alice.sessionCert, alice.key.privateKey) }), 400, 'pgp_envelope_mismatch']);
    const del = envelope('DELETE', '/records/p1', `rev=${afterFirst.body._rev}`, '');
    cases.push(['method swap', await alice.send('PUT', '/records/p1', `rev=${afterFirst.body._rev}`, '', { env: del, msg: await seal(del, alice.sessionCert, alice.key.privateKey), outerMethod: 'PUT' }), 400, 'pgp_envelope_mismatch']);
    const q = envelope('GET', '/records/p1', 'revs=true', '');
    cases.push(['query swap', await alice.send('GET', '/records/p1', 'conflicts=true', '', { env: q, msg: await seal(q, alice.sessionCert, alice.key.privateKey) }), 400, 'pgp_envelope_mismatch']);
    // Too old.
    const stale = { ...envelope('PUT', '/records/p7', '', '{}'), ts: Date.now() - 3600 * 1000 };
    cases.push(['stale timestamp', await alice.send('PUT', '/records/p7', '', '', { env: stale, msg: await seal(stale, alice.sessionCert, alice.key.privateKey) }), 400, 'pgp_stale']);
    // Unsigned, or signed by a key that is not the session's client key.
    const u = envelope('PUT', '/records/p6', '', '{}');
    cases.push(['unsigned', await alice.send('PUT', '/records/p6', '', '', { env: u, msg: await seal(u, alice.sessionCert, null) }), 403, 'pgp_bad_signature']);
    const s = envelope('PUT', '/records/p6', '', '{}');
    cases.push(['signed by another key', await alice.send('PUT', '/records/p6', '', '', { env: s, msg: await seal(s, alice.sessionCert, bob.key.privateKey) }), 403, 'pgp_bad_signature']);
    // Tampered ciphertext.
    const t = envelope('PUT', '/records/p5', '', '{}');
    const tBin = await seal(t, alice.sessionCert, alice.key.privateKey, { armor: false });
    tBin[tBin.length - 10] ^= 0x01;
    cases.push(['tampered ciphertext', await alice.send('PUT', '/records/p5', '', '', { env: t, msg: tBin }), 400, 'pgp_bad_message']);
    // Garbage body.
    cases.push(['garbage body', await alice.send('PUT', '/records/p5', '', '', { env: t, msg: 'not openpgp at all' }), 400, 'pgp_bad_message']);
    // Not an envelope inside.
    const notEnv = await seal('{"hello": "world"}', alice.sessionCert, alice.key.privateKey);
    cases.push(['not an envelope', await alice.send('PUT', '/records/p5', '', '', { env: t, msg: notEnv }), 400, 'pgp_bad_envelope']);
    for (const [what, r, status, error] of cases) {
      assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error, error, what);
      assert.equal(r.encrypted, true, `${what}: the refusal is encrypted too`);
    }
    // Another user's session: bob logged in, alice's token and key.
    const theft = await alice.send('PUT', '/records/p4', '', '{}', { auth: bobAuth });
    assert.equal(theft.status, 403);
    assert.equal(theft.body.error, 'pgp_wrong_user');
    // Without a session token: refused in plaintext (there is no key to answer with).
    const noTok = await db.json('/records/p4', { method: 'PUT', auth: aliceAuth, body: 'x', headers: { 'Content-Type': 'application/pgp-encrypted' } });
    assert.equal(noTok.status, 401);
    const badTok = await alice.send('PUT', '/records/p4', '', '{}', { token: 'AAAA' });
    assert.equal(badTok.status, 401);
    // Nothing was written by any of them.
    assert.deepEqual((await stored('records', 'p1')).body, afterFirst.body);
    for (const id of ['p4', 'p5', 'p6', 'p7', 'p8', 'p9']) assert.equal((await stored('records', id)).status, 404, id);
    await stillUp();
  });

  test('streaming endpoints: refused in place before they run, served through the tunnel', async () => {
    const inPlace = await alice.send('GET', '/records/_all_docs', 'include_docs=true');
    assert.equal(inPlace.status, 406);
    assert.equal(inPlace.encrypted, true);
    const attPut = await alice.send('PUT', '/records/p1/file.txt', '', 'hello');
    assert.equal(attPut.status, 406);
    const inner = { method: 'GET', path: '/records/_all_docs', query: 'include_docs=true', headers: { Accept: 'application/json' }, body: '' };
    const t = await alice.send('POST', '/_pgp/tunnel', '', JSON.stringify(inner));
    assert.equal(t.status, 200);
    assert.equal(t.encrypted, true);
    assert.equal(t.body.status, 200);
    const rows = JSON.parse(t.body.body).rows;
    assert.ok(rows.some((r) => r.id === 'p1' && r.doc.note === SECRET_TEXT));
    const ch = await alice.send('POST', '/_pgp/tunnel', '', JSON.stringify({ method: 'GET', path: '/records/_changes', query: '', headers: {}, body: '' }));
    assert.equal(ch.body.status, 200);
    assert.ok(JSON.parse(ch.body.body).results.length >= 2);
    // The inner request runs as the caller: bob's session cannot read a database bob may not read.
    await db.json('/private', { method: 'PUT' });
    await db.json('/private/_security', { method: 'PUT', body: { members: { names: ['alice'] }, admins: {} } });
    const denied = await bob.send('POST', '/_pgp/tunnel', '', JSON.stringify({ method: 'GET', path: '/private/_all_docs', query: '', headers: {}, body: '' }));
    assert.equal(denied.body.status, 403);
    const plainTunnel = await db.json('/_pgp/tunnel', { method: 'POST', auth: aliceAuth, body: inner });
    assert.equal(plainTunnel.status, 400);
  });

  test('require_encryption: plaintext to a listed database is refused, encrypted passes; config applies without restart', async () => {
    const plain = await db.json('/vault/v1', { method: 'PUT', auth: aliceAuth, body: { a: 1 } });
    assert.equal(plain.status, 403);
    assert.equal(plain.body.error, 'pgp_encryption_required');
    const read = await db.json('/vault/_all_docs', { auth: aliceAuth });
    assert.equal(read.status, 403);
    assert.equal((await alice.send('PUT', '/vault/v1', '', JSON.stringify({ a: 1 }))).status, 201);
    assert.equal((await db.json('/records/x1', { method: 'PUT', auth: aliceAuth, body: { a: 1 } })).status, 201);
    const set = await db.json('/_node/_local/_config/couch_pgp/require_encryption_dbs', { method: 'PUT', body: JSON.stringify('vault,records') });
    assert.equal(set.status, 200);
    assert.equal((await db.json('/records/x2', { method: 'PUT', auth: aliceAuth, body: { a: 1 } })).status, 403);
    await db.json('/_node/_local/_config/couch_pgp/require_encryption_dbs', { method: 'PUT', body: JSON.stringify('vault') });
    assert.equal((await db.json('/records/x2', { method: 'PUT', auth: aliceAuth, body: { a: 1 } })).status, 201);
    // Globally: everything but what a client needs to set up encryption.
    await db.json('/_node/_local/_config/couch_pgp/require_encryption', { method: 'PUT', body: JSON.stringify('true') });
    assert.equal((await db.json('/records/x3', { method: 'PUT', auth: aliceAuth, body: { a: 1 } })).status, 403);
    assert.equal((await db.json('/_all_dbs', { auth: aliceAuth })).status, 403);
    assert.equal((await db.json('/_pgp', { auth: null })).status, 200);
    assert.equal((await db.json('/_up', { auth: null })).status, 200);
    assert.equal((await alice.send('PUT', '/records/x3', '', JSON.stringify({ a: 1 }))).status, 201);
    // The config API is plaintext too, so now an admin changes it back encrypted.
    const plainOff = await db.json('/_node/_local/_config/couch_pgp/require_encryption', { method: 'PUT', body: JSON.stringify('false') });
    assert.equal(plainOff.status, 403);
    const admin = new Client(db, 'admin', await newKey('admin'));
    await admin.pin(pinned);
    await admin.startSession();
    const off = await admin.send('PUT', '/_node/_local/_config/couch_pgp/require_encryption', '', JSON.stringify('false'));
    assert.equal(off.status, 200);
    assert.equal((await db.json('/records/x4', { method: 'PUT', auth: aliceAuth, body: { a: 1 } })).status, 201);
    // Still refused in plaintext, even to an admin; encrypted it reads back.
    assert.equal((await stored('vault', 'v1')).status, 403);
    assert.equal((await alice.send('GET', '/vault/v1')).body.a, 1);
  });

  test('signed-only database: only documents signed by a key registered to the writer', async () => {
    const doc = (await db.json('/_users/org.couchdb.user:alice')).body;
    doc.pgp_certs = [alice.key.publicKey.armor()];
    assert.equal((await db.json('/_users/org.couchdb.user:alice', { method: 'PUT', body: doc })).status, 201);
    const unsigned = await db.json('/signed/s1', { method: 'PUT', auth: aliceAuth, body: { note: 'x' } });
    assert.equal(unsigned.status, 403);
    const signed = await signDoc({ _id: 's1', note: 'signed', temp: 37.2, tags: ['ü', 'a'] }, alice.key);
    const ok = await db.json('/signed/s1', { method: 'PUT', auth: aliceAuth, body: signed });
    assert.equal(ok.status, 201, ok.text);
    // Encrypted and signed at once.
    const both = await signDoc({ _id: 's2', note: SECRET_TEXT }, alice.key);
    assert.equal((await alice.send('PUT', '/signed/s2', '', JSON.stringify(both))).status, 201);
    const changed = { ...(await signDoc({ _id: 's3', note: 'a' }, alice.key)), note: 'b' };
    assert.equal((await db.json('/signed/s3', { method: 'PUT', auth: aliceAuth, body: changed })).status, 403);
    const moved = { ...signed, _id: 's4' };
    assert.equal((await db.json('/signed/s4', { method: 'PUT', auth: aliceAuth, body: moved })).status, 403);
    // bob has no registered key; alice's signature is not his.
    const byBob = await db.json('/signed/s5', { method: 'PUT', auth: bobAuth, body: { ...signed, _id: 's5' } });
    assert.equal(byBob.status, 403);
    for (const id of ['s3', 's4', 's5']) assert.equal((await stored('signed', id)).status, 404, id);
    // bob registers his own long-lived key, proving he holds it; then his signed write passes.
    const statement = (key, user) => jcs({ action: 'register', fingerprint: key.fingerprint, user });
    const proof = async (key, user, signer = key) => openpgp.sign({
      message: await openpgp.createMessage({ text: statement(key, user) }),
      signingKeys: signer.privateKey, detached: true });
    const stolen = await db.json('/_pgp/certs', { method: 'POST', auth: bobAuth,
      body: { cert: alice.key.publicKey.armor(), signature: await proof(alice.key, 'bob', bob.key) } });
    assert.equal(stolen.status, 403);
    assert.equal(stolen.body.error, 'pgp_bad_signature');
    const anon = await db.json('/_pgp/certs', { method: 'POST', auth: null, body: { cert: 'x', signature: 'y' } });
    assert.equal(anon.status, 401);
    const reg = await db.json('/_pgp/certs', { method: 'POST', auth: bobAuth,
      body: { cert: bob.key.publicKey.armor(), signature: await proof(bob.key, 'bob') } });
    assert.equal(reg.status, 201, reg.text);
    assert.deepEqual(reg.body.fingerprints, [bob.key.fingerprint]);
    assert.deepEqual((await db.json('/_pgp/certs', { auth: bobAuth })).body.fingerprints, [bob.key.fingerprint]);
    const bobSigned = await signDoc({ _id: 's6', by: 'bob' }, bob.key);
    assert.equal((await db.json('/signed/s6', { method: 'PUT', auth: bobAuth, body: bobSigned })).status, 201);
    // A document alice signed, written by bob, is still refused: her key is not his.
    const aliceS7 = await signDoc({ _id: 's7', note: 'by alice' }, alice.key);
    assert.equal((await db.json('/signed/s7', { method: 'PUT', auth: bobAuth, body: aliceS7 })).status, 403);
    assert.equal((await db.json('/signed/s7', { method: 'PUT', auth: aliceAuth, body: aliceS7 })).status, 201);
    // A database can ask for it in its _security object instead of the config.
    await db.json('/marked', { method: 'PUT' });
    await db.json('/marked/_security', { method: 'PUT', body: { members: { names: ['alice'] }, admins: {}, couch_pgp: { signed: true } } });
    assert.equal((await db.json('/marked/m1', { method: 'PUT', auth: aliceAuth, body: { note: 'x' } })).status, 403);
    assert.equal((await db.json('/marked/m1', { method: 'PUT', auth: aliceAuth, body: await signDoc({ _id: 'm1', note: 'x' }, alice.key) })).status, 201);
    // Replicated writes (new_edits=false) are checked too: an unsigned one is refused, a
    // revision signed by a registered certificate is copied as it is.
    const rep = await db.json('/signed/_bulk_docs', { method: 'POST', body: { new_edits: false, docs: [{ _id: 'r1', _rev: '1-abc', note: 'replicated' }] } });
    assert.deepEqual([rep.status, rep.body], [403, { error: 'forbidden', reason: 'Signed-only database: the document has no pgp_signatures.' }]);
    assert.equal((await stored('signed', 'r1')).status, 404);
    const repSigned = await db.json('/signed/_bulk_docs', { method: 'POST', body: { new_edits: false, docs: [{ ...(await signDoc({ _id: 'r1', note: 'replicated' }, bob.key)), _rev: '1-abc' }] } });
    assert.equal(repSigned.status, 201, repSigned.text);
  });

  test('encrypted login to the identity key starts a session in its answer', async () => {
    const key = await newKey('login');
    const env = envelope('POST', '/_session', '', JSON.stringify({ name: 'alice', password: aliceAuth.password }),
      { client_cert: key.publicKey.armor() });
    const r = await db.request('/_session', { method: 'POST', auth: null, body: await seal(env, alice.identity, key.privateKey), headers: { 'Content-Type': 'application/pgp-encrypted' } });
    const c = new Client(db, null, key);
    c.identity = alice.identity;
    const res = await c.read(r, env, alice.identity);
    assert.equal(res.status, 200);
    assert.equal(res.encrypted, true);
    assert.equal(res.nonceMatches, true);
    assert.equal(res.body.name, 'alice');
    c.sessionCert = await checkSession(res.body.pgp_session, alice.identity, key.fingerprint);
    c.token = res.body.pgp_session.token;
    const cookie = r.headers.get('set-cookie').split(';')[0];
    const who = await c.send('GET', '/_pgp/whoami', '', '', { auth: null, token: c.token });
    assert.equal(who.status, 401); // the session still needs the login it was made for
    const r2 = await db.request('/_pgp/whoami', {
      method: 'POST', auth: null,
      body: await seal(envelope('GET', '/_pgp/whoami', '', ''), c.sessionCert, key.privateKey),
      headers: { 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': c.token, Cookie: cookie },
    });
    const me = await c.read(r2, { nonce: null });
    assert.equal(me.status, 200);
    assert.deepEqual(me.body, { user: 'alice', encrypted: true, client_fingerprint: key.fingerprint });
    const wrong = envelope('POST', '/_session', '', JSON.stringify({ name: 'alice', password: 'nope' }), { client_cert: key.publicKey.armor() });
    const r3 = await db.request('/_session', { method: 'POST', auth: null, body: await seal(wrong, alice.identity, key.privateKey), headers: { 'Content-Type': 'application/pgp-encrypted' } });
    const bad = await c.read(r3, wrong, alice.identity);
    assert.equal(bad.status, 401);
    assert.equal(bad.encrypted, true);
  });

  test('counters count, the audit log names who and what, and no secret reaches the log', async () => {
    const stats = await db.json('/_node/_local/_stats/couch_pgp');
    assert.equal(stats.status, 200);
    for (const k of ['requests_decrypted', 'requests_refused', 'responses_encrypted', 'sessions_created', 'docs_verified', 'docs_refused', 'identity_requests']) {
      assert.ok(stats.body[k].value > 0, `${k} = ${stats.body[k].value}`);
    }
    const log = db.log();
    assert.match(log, /couch_pgp audit: (session_created|login) user=alice client=[0-9A-F]{40}/);
    assert.match(log, /couch_pgp audit: signed_doc_accepted user=alice db=signed doc=s1 signers=[0-9A-F]{40}/);
    assert.match(log, /couch_pgp audit: signed_doc_refused user=bob db=signed doc=s5 reason=no_registered_certs/);
    assert.match(log, /couch_pgp audit: cert_registered user=bob cert=[0-9A-F]{40}/);
    assert.match(log, /couch_pgp audit: request_refused reason=replay user=alice client=[0-9A-F]{40}/);
    assert.ok(!log.includes(SECRET_TEXT), 'plaintext in the log');
    assert.ok(!log.includes(db.passphrase), 'passphrase in the log');
    assert.ok(!log.includes(aliceAuth.password), 'password in the log');
    assert.ok(!log.includes('PRIVATE KEY'), 'key material in the log');
    const ini = db.readIni();
    const secret = /\[couch_pgp\][^[]*?secret = ([0-9A-F]+)/.exec(ini);
    if (secret) assert.ok(!log.includes(secret[1]), 'session token secret in the log');
    await stillUp();
  });

  /** A binary computed on the node, through a file (erl_call prints long ones cut short). */
  let rpcFiles = 0;
  async function rpcBinary(expr) {
    const file = path.join(db.dir, `rpc-${rpcFiles += 1}.out`);
    assert.equal(await db.rpc(`file:write_file(${JSON.stringify(file)}, begin ${expr.replace(/\.\s*$/, '')} end).`), 'ok');
    return fs.readFileSync(file, 'utf8');
  }

  test('an encrypted HEAD is refused before it runs, and the answer is framed: the connection goes on', async () => {
    const env = envelope('HEAD', '/records/p1', '', '');
    const msg = await seal(env, alice.sessionCert, alice.key.privateKey);
    const basic = `Basic ${Buffer.from(`${aliceAuth.username}:${aliceAuth.password}`).toString('base64')}`;
    const [head, up] = await keepAlive(db.port, [
      { method: 'POST', path: '/records/p1', body: msg,
        headers: { 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': alice.token, Authorization: basic } },
      { method: 'GET', path: '/_up' },
    ]);
    assert.equal(head.status, 400);
    assert.equal(head.headers['x-pgp-encrypted'], '1');
    const resp = await open(JSON.parse(head.body).pgp, alice.key.privateKey, alice.sessionCert);
    assert.equal(resp.status, 400);
    assert.equal(resp.nonce, env.nonce, 'refused after the envelope was opened: its nonce is echoed');
    assert.deepEqual(JSON.parse(resp.body), refusal('head_not_supported').body);
    assert.equal(up.status, 200);
    // The refused HEAD did not use up its nonce: the same envelope as GET is another message.
    const get = await alice.send('GET', '/records/p1');
    assert.equal(get.status, 200);
  });

  test('a certificate that cannot be encrypted to gets no session, and a request whose answer could not be sealed never runs', async () => {
    const signOnly = await openpgp.generateKey({ type: 'curve25519', userIDs: [{ name: 's' }], subkeys: [], format: 'object' });
    const r = await db.json('/_pgp/session', { method: 'POST', auth: aliceAuth, body: { client_cert: signOnly.publicKey.armor() } });
    assert.deepEqual({ status: r.status, body: r.body }, refusal('no_encryption_key'));
    const none = await db.json('/_pgp/session', { method: 'POST', auth: aliceAuth, body: {} });
    assert.deepEqual({ status: none.status, body: none.body }, refusal('no_cert'));
    // A session made for it anyway (as one made before this check, or by a node without it):
    // couch_pgp_session:new refuses such a certificate too, so one made for a usable
    // certificate gets this one put in its place (record fields: client_cert, its fingerprint).
    const armored = Buffer.from(signOnly.publicKey.armor()).toString('base64');
    const token = await rpcBinary(`
      {ok, Usable} = couch_pgp:generate_key(),
      {ok, S0} = couch_pgp_session:new(<<"alice">>, couch_pgp:public_cert(Usable),
                                       erlang:system_time(second) + 600, <<"unsealable">>),
      Cert = base64:decode(<<"${armored}">>),
      S = setelement(5, setelement(4, S0, Cert), couch_pgp:fingerprint(Cert)),
      {ok, Secret} = couch_pgp_config:token_secret(),
      couch_pgp_session:seal(S, Secret).`);
    const desc = await db.json('/_pgp/session', { auth: aliceAuth, headers: { 'X-PGP-Session': token } });
    assert.equal(desc.status, 200);
    const c = new Client(db, aliceAuth, { privateKey: signOnly.privateKey, publicKey: signOnly.publicKey,
      fingerprint: signOnly.publicKey.getFingerprint().toUpperCase() });
    c.identity = alice.identity;
    c.token = token;
    c.sessionCert = await checkSession(desc.body, alice.identity, c.key.fingerprint);
    const put = await c.send('PUT', '/records/unsealable', '', JSON.stringify({ a: 1 }));
    assert.deepEqual({ status: put.status, body: put.body }, refusal('no_encryption_key'));
    assert.equal(put.encrypted, false, 'there is nobody to encrypt to');
    assert.equal((await stored('records', 'unsealable')).status, 404, 'the request did not run');
    await stillUp();
  });

  test('a raw response carries its real Content-Type in the envelope', async () => {
    const env = envelope('GET', '/_pgp/client.d.ts', '', '');
    const r = await db.request('/_pgp/client.d.ts', {
      method: 'POST', auth: aliceAuth, body: await seal(env, alice.sessionCert, alice.key.privateKey),
      headers: { 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': alice.token },
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/pgp-encrypted');
    const resp = await open(await r.text(), alice.key.privateKey, alice.sessionCert);
    assert.equal(resp.nonce, env.nonce);
    assert.equal(resp.content_type, 'text/plain; charset=utf-8');
    assert.match(resp.body, /export/);
  });

  test('/_pgp/certs: no proof is 403 pgp_bad_signature as documented; no user document and unknown certificates have their rows', async () => {
    const key = await newKey('proofless');
    const noProof = await db.json('/_pgp/certs', { method: 'POST', auth: aliceAuth, body: { cert: key.publicKey.armor() } });
    assert.deepEqual({ status: noProof.status, body: noProof.body }, refusal('no_registration_proof'));
    const noCert = await db.json('/_pgp/certs', { method: 'POST', auth: aliceAuth, body: { signature: 'x' } });
    assert.deepEqual({ status: noCert.status, body: noCert.body }, refusal('no_cert'));
    const proof = await openpgp.sign({
      message: await openpgp.createMessage({ text: jcs({ action: 'register', fingerprint: key.fingerprint, user: 'admin' }) }),
      signingKeys: key.privateKey, detached: true });
    const admin = await db.json('/_pgp/certs', { method: 'POST', body: { cert: key.publicKey.armor(), signature: proof } });
    assert.deepEqual({ status: admin.status, body: admin.body }, refusal('no_user_doc'));
    const gone = await db.json(`/_pgp/certs/${key.fingerprint}`, { method: 'DELETE', auth: aliceAuth });
    assert.deepEqual({ status: gone.status, body: gone.body }, refusal('cert_not_registered'));
  });

  test('tunnel: ill-typed inner headers are a 400, not a crash', async () => {
    for (const headers of ['x', [1, 2], { a: 1 }, { 'X-A': 'b\r\nInjected: 1' }]) {
      const t = await alice.send('POST', '/_pgp/tunnel', '', JSON.stringify({ method: 'GET', path: '/records/p1', query: '', headers, body: '' }));
      assert.deepEqual({ status: t.status, body: t.body }, refusal('tunnel_request'), JSON.stringify(headers));
      assert.equal(t.encrypted, true);
    }
    const b64 = await alice.send('POST', '/_pgp/tunnel', '', JSON.stringify({ method: 'PUT', path: '/records/b64', query: '', headers: {}, body: '%%%', body_base64: true }));
    assert.deepEqual({ status: b64.status, body: b64.body }, refusal('tunnel_base64'));
    await stillUp();
  });

  test('the shared RFC 8785 vectors agree with this client\'s canonical JSON', () => {
    const vectors = JSON.parse(fs.readFileSync(new URL('../vectors/canonical_json.json', import.meta.url)));
    for (const c of vectors.cases) assert.equal(jcs(JSON.parse(c.input)), c.canonical, c.name);
    assert.ok(nonce().length >= 22);
    assert.ok(openpgp);
  });
});
