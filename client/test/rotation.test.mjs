// Keys over time in the client (src/rotation.js through connect): following an endorsed
// rotation and moving the pin, refusing revoked identity keys at once, and refusing
// endorsements or revocations that do not verify. Revocations here are made by OpenPGP.js
// (the server's by sequoia are checked in test/integration/rotation.test.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as openpgp from 'openpgp';
import { connect, IdentityRevokedError, PinMismatchError, ProtocolError } from '../src/index.js';
import { FakeServer } from './fake_server.mjs';

const BASE = 'http://couch.test:5984';

test('a client pinned to the old key follows an endorsed rotation, moves its pin and says so', async () => {
  const server = await FakeServer.create();
  const old = server.fingerprint;
  await server.rotate();
  const changes = [];
  const conn = await connect(BASE, { pin: old, fetch: server.fetch, onPinChange: (c) => changes.push(c) });
  assert.equal(conn.identityFingerprint, server.fingerprint);
  assert.deepEqual(changes, [{ from: old, to: server.fingerprint, chain: [old, server.fingerprint] }]);
  // The pin moved: logging in works against the new key, and no second change is reported.
  await conn.login('alice', 'pw');
  assert.equal((await conn.request('/db/doc')).status, 200);
  await conn.pin();
  assert.equal(changes.length, 1);
  // Pinned to the new key already: nothing to follow.
  const fresh = [];
  await connect(BASE, { pin: server.fingerprint, fetch: server.fetch, onPinChange: (c) => fresh.push(c) });
  assert.deepEqual(fresh, []);
});

test('two rotations are followed as a chain', async () => {
  const server = await FakeServer.create();
  const first = server.fingerprint;
  await server.rotate();
  const middle = server.fingerprint;
  await server.rotate();
  const changes = [];
  const conn = await connect(BASE, { pin: first, fetch: server.fetch, onPinChange: (c) => changes.push(c) });
  assert.equal(conn.identityFingerprint, server.fingerprint);
  assert.deepEqual(changes[0].chain, [first, middle, server.fingerprint]);
});

test('an endorsement by another key, one whose overlap ended, or a tampered one is refused', async () => {
  const forged = await FakeServer.create();
  const old = forged.fingerprint;
  await forged.rotate(3600, { signer: forged.stranger });
  await assert.rejects(connect(BASE, { pin: old, fetch: forged.fetch }), ProtocolError);

  const ended = await FakeServer.create();
  const old2 = ended.fingerprint;
  await ended.rotate(0, { until: Math.floor(Date.now() / 1000) - 1 });
  await assert.rejects(connect(BASE, { pin: old2, fetch: ended.fetch }), ProtocolError);

  const tampered = await FakeServer.create();
  const old3 = tampered.fingerprint;
  await tampered.rotate();
  tampered.previous[0].endorsement = tampered.previous[0].endorsement.replace('"v":1', '"v":1 ');
  await assert.rejects(connect(BASE, { pin: old3, fetch: tampered.fetch }), ProtocolError);

  // No announcement at all (the overlap is over and the server dropped it): a plain mismatch.
  const gone = await FakeServer.create();
  const old4 = gone.fingerprint;
  await gone.rotate();
  gone.previous = [];
  await assert.rejects(connect(BASE, { pin: old4, fetch: gone.fetch }), PinMismatchError);
});

test('a revoked key is refused at once: the pinned one in its overlap, the current one, one on the way', async () => {
  const server = await FakeServer.create();
  const old = server.fingerprint;
  await server.rotate();
  await server.revoke(old, 'compromised');
  await assert.rejects(connect(BASE, { pin: old, fetch: server.fetch }), (e) => {
    assert.ok(e instanceof IdentityRevokedError);
    assert.equal(e.code, 'identity_revoked');
    assert.equal(e.fingerprint, old);
    assert.equal(e.reason, 'compromised');
    return true;
  });
  // Pinned to the new key: the old key's revocation does not matter.
  await connect(BASE, { pin: server.fingerprint, fetch: server.fetch });
  // The current key revoked: refused whatever the pin (a function pin included).
  await server.revoke(server.fingerprint, 'retired');
  await assert.rejects(connect(BASE, { pin: server.fingerprint, fetch: server.fetch }), IdentityRevokedError);
  await assert.rejects(connect(BASE, { pin: () => true, fetch: server.fetch }), IdentityRevokedError);

  const chain = await FakeServer.create();
  const first = chain.fingerprint;
  await chain.rotate();
  const middle = chain.fingerprint;
  await chain.rotate();
  await chain.revoke(middle);
  await assert.rejects(connect(BASE, { pin: first, fetch: chain.fetch }),
    (e) => e instanceof IdentityRevokedError && e.fingerprint === middle);
});

test('a revocation that does not verify is refused, not ignored', async () => {
  const server = await FakeServer.create();
  const old = server.fingerprint;
  await server.rotate();
  // The old certificate without a revocation signature, announced as a revocation.
  server.revocations.push({ fingerprint: old, reason: 'compromised', message: '', revoked_at: 0,
    revocation: server.previous[0].cert });
  await assert.rejects(connect(BASE, { pin: server.fingerprint, fetch: server.fetch }), ProtocolError);
  // A revocation of another key than the one it names.
  server.revocations = [];
  const { publicKey } = await openpgp.revokeKey({ key: server.stranger, format: 'armored' });
  server.revocations.push({ fingerprint: old, reason: 'compromised', message: '', revoked_at: 0, revocation: publicKey });
  await assert.rejects(connect(BASE, { pin: server.fingerprint, fetch: server.fetch }), ProtocolError);
});

test('a function pin is asked once per key, and a key its accepted key endorsed is followed', async () => {
  const server = await FakeServer.create();
  const asked = [];
  const changes = [];
  const conn = await connect(BASE, { pin: (f) => { asked.push(f); return true; }, fetch: server.fetch,
    onPinChange: (c) => changes.push(c) });
  const first = server.fingerprint;
  await conn.pin();
  assert.deepEqual(asked, [first]);
  await server.rotate();
  await conn.pin();
  assert.deepEqual(asked, [first]);
  assert.deepEqual(changes.map((c) => [c.from, c.to]), [[first, server.fingerprint]]);
  // A new key nobody endorsed goes to the application.
  server.identity = server.stranger;
  await conn.pin();
  assert.deepEqual(asked, [first, server.fingerprint]);
});
