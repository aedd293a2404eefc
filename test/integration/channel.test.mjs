// The session channel against a real CouchDB, with an OpenPGP.js client (sessionKeys, bare
// SEIPDv2 AES-256-GCM): how the keys are handed over, that each direction has its own key,
// the envelope's bindings and the attacks the signed mode refuses, the tunnel and the
// policies, a restart (stateless: the token carries the keys), and nothing of it in the log.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as openpgp from 'openpgp';
import { CouchDB, couchdbSkip } from './couchdb.mjs';
import {
  Client, newKey, envelope, channelSeal, channelOpen, openChannel, signDoc, seal,
} from './pgp_client.mjs';

const skip = couchdbSkip();
const SECRET_TEXT = 'channel-secret-4711';

describe('session channel', { skip, timeout: 600000 }, () => {
  let db; let alice; let bob; let desc;
  const aliceAuth = { username: 'alice', password: 'alice-pw-ch' };
  const bobAuth = { username: 'bob', password: 'bob-pw-ch' };

  before(async () => {
    db = await CouchDB.start({ ini: { couch_pgp: { signed_dbs: 'signed' } } });
    for (const [name, auth] of [['alice', aliceAuth], ['bob', bobAuth]]) {
      const r = await db.json(`/_users/org.couchdb.user:${name}`, {
        method: 'PUT', body: { name, password: auth.password, roles: [], type: 'user' } });
      assert.equal(r.status, 201, r.text);
    }
    for (const name of ['records', 'signed', 'vault']) {
      await db.json(`/${name}`, { method: 'PUT' });
      await db.json(`/${name}/_security`, { method: 'PUT', body: { members: { names: ['alice', 'bob'] }, admins: {} } });
    }
    // Closed to plaintext once it exists.
    const set = await db.json('/_node/_local/_config/couch_pgp/require_encryption_dbs', { method: 'PUT', body: JSON.stringify('vault') });
    assert.equal(set.status, 200);
    alice = new Client(db, aliceAuth, await newKey('alice'));
    bob = new Client(db, bobAuth, await newKey('bob'));
    await alice.pin();
    await bob.pin();
    desc = await alice.startSession();
    await bob.startSession();
  });

  after(async () => { if (db) await db.stop(); });

  const stored = (dbName, id) => db.json(`/${dbName}/${encodeURIComponent(id)}`);

  test('GET /_pgp offers the channel; the keys come encrypted to the client, signed by the session key', async () => {
    const id = await db.json('/_pgp', { auth: null });
    assert.deepEqual(id.body.modes, ['session', 'channel']);
    assert.equal(typeof desc.channel, 'string');
    assert.match(desc.channel, /^-----BEGIN PGP MESSAGE-----/);
    assert.equal(alice.channel.c2s.length, 32);
    assert.notDeepEqual(alice.channel.c2s, alice.channel.s2c);
    // Only the client can read them, and the identity key did not sign them (the session
    // key did, and the statement signed by the identity vouches for the session key).
    await assert.rejects(openChannel(desc, bob.key, alice.sessionCert));
    await assert.rejects(openChannel(desc, alice.key, alice.identity));
    // Each session has its own keys.
    assert.notDeepEqual(alice.channel.c2s, bob.channel.c2s);
  });

  test('encrypted PUT and GET in the channel; the wire carries no plaintext and no signature', async () => {
    const put = await alice.sendChannel('PUT', '/records/c1', '', JSON.stringify({ note: SECRET_TEXT }));
    assert.equal(put.status, 201);
    assert.equal(put.channel, true);
    assert.equal(put.nonceMatches, true);
    const get = await alice.sendChannel('GET', '/records/c1');
    assert.equal(get.status, 200);
    assert.equal(get.body.note, SECRET_TEXT);
    // What actually travels: a bare SEIPDv2 packet (tag 18, v2, AES-256, GCM).
    const msg = await channelSeal(JSON.stringify(envelope('GET', '/records/c1', '', '')), alice.channel.c2s);
    assert.deepEqual([...msg.slice(0, 1)], [0xd2]);
    const raw = await db.request('/records/c1', { method: 'POST', auth: aliceAuth, body: msg,
      headers: { 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': alice.token, 'X-PGP-Channel': '1' } });
    const text = await raw.text();
    assert.equal(raw.headers.get('x-pgp-channel'), '1');
    assert.doesNotMatch(text, new RegExp(SECRET_TEXT));
    const sealed = Buffer.from(JSON.parse(text).pgp, 'base64');
    assert.equal(sealed[0], 0xd2);
    assert.match(await channelOpen(sealed, alice.channel.s2c), new RegExp(SECRET_TEXT));
    // A raw (non-JSON) resource comes back as the message itself.
    const dts = await alice.sendChannel('GET', '/_pgp/client.d.ts');
    assert.equal(dts.raw, true);
    assert.equal(dts.env.content_type, 'text/plain; charset=utf-8');
  });

  test('Accept: application/pgp-encrypted: JSON answers and refusals come as the binary message itself', async () => {
    const accept = { Accept: 'application/pgp-encrypted, application/json' };
    const put = await alice.sendChannel('PUT', '/records/b1', '', JSON.stringify({ note: SECRET_TEXT }), { headers: accept });
    assert.equal(put.status, 201);
    assert.equal(put.raw, true);
    assert.equal(put.env.content_type, 'application/json');
    assert.equal(put.body.id, 'b1');
    assert.equal(put.nonceMatches, true);
    const get = await alice.sendChannel('GET', '/records/b1', '', '', { headers: accept });
    assert.equal(get.status, 200);
    assert.equal(get.raw, true);
    assert.equal(get.body.note, SECRET_TEXT);
    // On the wire: the sealed message and its length, no JSON, no ETag of the plaintext.
    const msg = await channelSeal(JSON.stringify(envelope('GET', '/records/b1', '', '')), alice.channel.c2s);
    const r = await db.request('/records/b1', { method: 'POST', auth: aliceAuth, body: msg,
      headers: { 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': alice.token, 'X-PGP-Channel': '1',
        Accept: 'application/pgp-encrypted' } });
    const bytes = Buffer.from(await r.arrayBuffer());
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/pgp-encrypted');
    assert.equal(r.headers.get('x-pgp-encrypted'), '1');
    assert.equal(r.headers.get('x-pgp-channel'), '1');
    assert.equal(r.headers.get('etag'), null);
    assert.equal(Number(r.headers.get('content-length')), bytes.length);
    assert.equal(bytes[0], 0xd2);
    assert.doesNotMatch(bytes.toString('latin1'), new RegExp(SECRET_TEXT));
    assert.equal(JSON.parse(JSON.parse(await channelOpen(bytes, alice.channel.s2c)).body).note, SECRET_TEXT);
    // CouchDB's own errors and couch_pgp's refusals after the message opened: the same.
    const missing = await alice.sendChannel('GET', '/records/no-such-doc', '', '', { headers: accept });
    assert.equal(missing.status, 404);
    assert.equal(missing.raw, true);
    assert.equal(missing.body.error, 'not_found');
    const e = envelope('PUT', '/records/b2', '', JSON.stringify({ v: 1 }));
    const sealed = await channelSeal(JSON.stringify(e), alice.channel.c2s);
    assert.equal((await alice.sendChannel('PUT', '/records/b2', '', '', { env: e, msg: sealed, headers: accept })).status, 201);
    const replay = await alice.sendChannel('PUT', '/records/b2', '', '', { env: e, msg: sealed, headers: accept });
    assert.equal(replay.status, 400);
    assert.equal(replay.raw, true);
    assert.equal(replay.body.error, 'pgp_replay');
    assert.equal(replay.nonceMatches, true);
    // The connection stays usable: a keep-alive request after a binary answer.
    const again = await alice.sendChannel('GET', '/records/b1', '', '', { headers: accept });
    assert.equal(again.body.note, SECRET_TEXT);
  });

  test('one key per direction: a response cannot be reflected as a request, nor the reverse', async () => {
    const reply = await channelSeal(JSON.stringify(envelope('PUT', '/records/c2', '', '{"n":1}')), alice.channel.s2c);
    const r = await alice.sendChannel('PUT', '/records/c2', '', '', { msg: reply });
    assert.equal(r.status, 400);
    assert.equal(r.body.error, 'pgp_bad_message');
    assert.equal(r.env.nonce, '', 'refused before the message opened: no nonce to echo');
    assert.equal((await stored('records', 'c2')).status, 404);
    await assert.rejects(channelOpen(await channelSeal('x', alice.channel.c2s), alice.channel.s2c));
  });

  test('the attacks the signed mode refuses are refused in the channel, answered in it, and change nothing', async () => {
    const first = await alice.sendChannel('PUT', '/records/a1', '', JSON.stringify({ v: 1 }));
    assert.equal(first.status, 201);
    const e = envelope('PUT', '/records/a2', '', JSON.stringify({ v: 2 }));
    const m = await channelSeal(JSON.stringify(e), alice.channel.c2s);
    const flipped = Uint8Array.from(m); flipped[flipped.length - 5] ^= 1;
    const cases = [
      ['replay', () => alice.sendChannel('PUT', '/records/a2', '', '', { env: e, msg: m }).then(() => alice.sendChannel('PUT', '/records/a2', '', '', { env: e, msg: m })), 400, 'pgp_replay'],
      ['moved to another path', () => alice.sendChannel('PUT', '/records/a3', '', '', { env: envelope('PUT', '/records/a4', '', '{}') }), 400, 'pgp_envelope_mismatch'],
      ['another method', () => alice.sendChannel('DELETE', '/records/a1', `rev=${first.body.rev}`, '', { env: envelope('PUT', '/records/a1', `rev=${first.body.rev}`, '{}') }), 400, 'pgp_envelope_mismatch'],
      ['stale', () => alice.sendChannel('PUT', '/records/a5', '', '', { env: { ...envelope('PUT', '/records/a5', '', '{}'), ts: Date.now() - 3600e3 } }), 400, 'pgp_stale'],
      ['short nonce', () => alice.sendChannel('PUT', '/records/a6', '', '', { env: { ...envelope('PUT', '/records/a6', '', '{}'), nonce: 'AAAA' } }), 400, 'pgp_bad_envelope'],
      ['tampered', () => alice.sendChannel('PUT', '/records/a7', '', '', { env: e, msg: flipped }), 400, 'pgp_bad_message'],
      ['garbage', () => alice.sendChannel('PUT', '/records/a7', '', '', { env: e, msg: 'not openpgp' }), 400, 'pgp_bad_message'],
      ['not an envelope', async () => alice.sendChannel('PUT', '/records/a7', '', '', { env: e, msg: await channelSeal('{"hello":1}', alice.channel.c2s) }), 400, 'pgp_bad_envelope'],
      ['another session\'s key', async () => alice.sendChannel('PUT', '/records/a7', '', '', { env: e, msg: await channelSeal(JSON.stringify(e), bob.channel.c2s) }), 400, 'pgp_bad_message'],
      ['a signed-mode message sent as channel', async () => alice.sendChannel('PUT', '/records/a7', '', '', { env: e, msg: await seal(e, alice.sessionCert, alice.key.privateKey, { armor: false }) }), 400, 'pgp_bad_message'],
      ['HEAD', () => alice.sendChannel('HEAD', '/records/a1'), 400, 'pgp_bad_envelope'],
      ['a streaming endpoint in place', () => alice.sendChannel('GET', '/records/_all_docs'), 406, 'not_acceptable'],
    ];
    for (const [what, run, status, error] of cases) {
      const r = await run();
      assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error, error, what);
      assert.equal(r.channel, true, `${what}: the refusal is sealed in the channel too`);
    }
    // Another user's token with alice's channel: refused (bob is logged in).
    const theft = await alice.sendChannel('PUT', '/records/a8', '', '{}', { auth: bobAuth });
    assert.equal(theft.status, 403);
    assert.equal(theft.body.error, 'pgp_wrong_user');
    // An unknown channel header value is refused in plaintext.
    const odd = await alice.sendChannel('PUT', '/records/a8', '', '{}', { headers: { 'X-PGP-Channel': 'yes' } });
    assert.equal(odd.status, 400);
    assert.equal(odd.encrypted, false);
    for (const id of ['a3', 'a4', 'a5', 'a6', 'a7', 'a8']) assert.equal((await stored('records', id)).status, 404, id);
    assert.equal((await stored('records', 'a2')).body.v, 2, 'the first copy of the replayed request ran, once');
    assert.equal((await db.json('/_up', { auth: null })).status, 200);
  });

  test('too large: the plaintext limit holds in the channel', async () => {
    await db.json('/_node/_local/_config/couch_pgp/max_request_size', { method: 'PUT', body: JSON.stringify('65536') });
    try {
      const big = JSON.stringify({ blob: 'x'.repeat(200000) });
      const r = await alice.sendChannel('PUT', '/records/big', '', big);
      assert.equal(r.status, 413);
      assert.equal(r.channel, true);
      assert.equal((await stored('records', 'big')).status, 404);
    } finally {
      await db.json('/_node/_local/_config/couch_pgp/max_request_size', { method: 'DELETE' });
    }
  });

  test('tunnel, require_encryption_dbs and a signed-only database work through the channel', async () => {
    const put = await alice.sendChannel('PUT', '/vault/v1', '', JSON.stringify({ note: SECRET_TEXT }));
    assert.equal(put.status, 201);
    assert.equal((await db.json('/vault/v1', { auth: aliceAuth })).status, 403, 'plaintext still refused');
    const t = await alice.sendChannel('POST', '/_pgp/tunnel', '', JSON.stringify({ method: 'GET', path: '/vault/_all_docs', query: 'include_docs=true', headers: {}, body: '' }));
    assert.equal(t.status, 200);
    assert.ok(JSON.parse(t.body.body).rows.some((row) => row.doc.note === SECRET_TEXT));
    const doc = (await db.json('/_users/org.couchdb.user:alice')).body;
    doc.pgp_certs = [alice.key.publicKey.armor()];
    assert.equal((await db.json('/_users/org.couchdb.user:alice', { method: 'PUT', body: doc })).status, 201);
    assert.equal((await alice.sendChannel('PUT', '/signed/s1', '', JSON.stringify({ n: 1 }))).status, 403);
    const signed = await signDoc({ _id: 's1', n: 1 }, alice.key);
    assert.equal((await alice.sendChannel('PUT', '/signed/s1', '', JSON.stringify(signed))).status, 201);
  });

  test('stateless: after a restart the same token opens the same channel; nothing of it is in the log', async () => {
    await db.restart();
    const r = await alice.sendChannel('GET', '/records/c1');
    assert.equal(r.status, 200);
    assert.equal(r.body.note, SECRET_TEXT);
    const log = db.log();
    for (const k of [alice.channel.c2s, alice.channel.s2c, bob.channel.c2s]) {
      assert.equal(log.includes(k.toString('base64')), false, 'a channel key in the log');
      assert.equal(log.includes(k.toString('hex')), false, 'a channel key in the log (hex)');
    }
    assert.equal(log.includes(SECRET_TEXT), false);
  });
});
