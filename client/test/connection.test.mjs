// The connection's protocol checks, driven through a fake server that can misbehave
// (test/fake_server.mjs). The real plugin is exercised in test/integration/browser.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as openpgp from 'openpgp';
import {
  connect, needsTunnel, PinMismatchError, ProtocolError, BadSignatureError, LoginFailedError,
  NotLoggedInError, SessionExpiredError, RequestRefusedError, CouchError,
} from '../src/index.js';
import { FakeServer } from './fake_server.mjs';

const BASE = 'http://couch.test:5984';

async function loggedIn(tamper = {}) {
  const server = await FakeServer.create();
  const conn = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch });
  await conn.login('alice', 'pw');
  Object.assign(server.tamper, tamper);
  return { server, conn };
}

test('connect refuses a wrong pin, a refusing pin function, and a fingerprint that is not the certificate', async () => {
  const server = await FakeServer.create();
  await assert.rejects(connect(BASE, { fetch: server.fetch }), TypeError);
  const wrong = `${server.fingerprint.slice(0, -1)}${server.fingerprint.endsWith('A') ? 'B' : 'A'}`;
  await assert.rejects(connect(BASE, { pin: wrong, fetch: server.fetch }),
    (e) => e instanceof PinMismatchError && e.code === 'pin_mismatch' && e.actual === server.fingerprint);
  await assert.rejects(connect(BASE, { pin: () => false, fetch: server.fetch }), PinMismatchError);
  const spaced = server.fingerprint.toLowerCase().replace(/(.{4})/g, '$1 ');
  assert.equal((await connect(BASE, { pin: spaced, fetch: server.fetch })).identityFingerprint, server.fingerprint);
  server.tamper.identityCert = server.stranger; // /_pgp names one key and serves another
  await assert.rejects(connect(BASE, { pin: server.fingerprint, fetch: server.fetch }), ProtocolError);
});

test('login travels encrypted to the identity key and yields a checked session', async () => {
  const server = await FakeServer.create();
  const seen = [];
  const conn = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch, onExchange: (e) => seen.push(e) });
  await conn.login('alice', 'pw');
  assert.deepEqual(JSON.parse(seen[0].request.body), { name: 'alice', password: '(hidden)' }, 'onExchange never sees the password');
  assert.ok(seen[0].wire.request.startsWith('-----BEGIN PGP MESSAGE-----'));
  const [login] = server.requests;
  assert.equal(login.outerMethod, 'POST');
  assert.equal(login.env.path, '/_session');
  assert.deepEqual(JSON.parse(login.env.body), { name: 'alice', password: 'pw' });
  assert.equal(conn.session.user, 'alice');
  assert.ok(atob(login.env.nonce).length >= 16);
  assert.ok(Math.abs(login.env.ts - Date.now()) < 5000);
});

test('a wrong password is a LoginFailedError; requests before login are NotLoggedInError', async () => {
  const server = await FakeServer.create();
  const conn = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch });
  await assert.rejects(conn.request('/db/x'), NotLoggedInError);
  await assert.rejects(conn.login('alice', 'nope'), (e) => e instanceof LoginFailedError && /incorrect/.test(e.reason));
});

test('a session the pinned identity did not vouch for is refused', async () => {
  for (const tamper of [{ statementSigner: 'stranger' }, { sessionCert: 'stranger' }, { clientFingerprint: 'AB'.repeat(20) }]) {
    const server = await FakeServer.create();
    for (const [k, v] of Object.entries(tamper)) server.tamper[k] = v === 'stranger' ? server.stranger : v;
    const conn = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch });
    await assert.rejects(conn.login('alice', 'pw'), ProtocolError, JSON.stringify(Object.keys(tamper)));
    await assert.rejects(conn.request('/db/x'), NotLoggedInError);
  }
});

test('requests: envelope as the server checks it; GET goes as POST; answers decrypted', async () => {
  const { server, conn } = await loggedIn();
  const r = await conn.request('/db/doc%2F1?rev=1-a&x=%C3%A9');
  assert.equal(r.status, 200);
  assert.equal(r.encrypted, true);
  const { echo } = await r.json();
  const sent = server.requests.at(-1);
  assert.equal(sent.outerMethod, 'POST');
  assert.equal(sent.url.pathname, '/db/doc%2F1');
  assert.deepEqual([echo.method, echo.path, echo.query, echo.body], ['GET', '/db/doc%2F1', 'rev=1-a&x=%C3%A9', '']);
  const put = await (await conn.request('/db/d', { method: 'PUT', body: { a: 1 } })).json();
  assert.deepEqual([put.echo.method, put.echo.body, put.echo.content_type], ['PUT', '{"a":1}', 'application/json']);
  const missing = await conn.request('/db/missing');
  assert.equal(missing.ok, false);
  await assert.rejects(missing.checked(), (e) => e instanceof CouchError && e.status === 404 && e.error === 'not_found');
});

test('streaming endpoints and bytes go through the tunnel, with headers inside', async () => {
  const { server, conn } = await loggedIn();
  const r = await conn.request('/db/_changes?since=0', { headers: { 'X-Note': 'inside' } });
  assert.equal(r.tunnelled, true);
  const { inner } = await r.json();
  assert.equal(server.requests.at(-1).url.pathname, '/_pgp/tunnel');
  assert.deepEqual([inner.method, inner.path, inner.query, inner.headers['X-Note']], ['GET', '/db/_changes', 'since=0', 'inside']);
  const bin = await (await conn.request('/db/doc/scan.png', { method: 'PUT', body: new Uint8Array([0, 255, 1]),
    headers: { 'Content-Type': 'image/png' } })).json();
  assert.deepEqual([bin.inner.body, bin.inner.body_base64, bin.inner.headers['Content-Type']], ['AP8B', true, 'image/png']);
  const always = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch, tunnel: 'always' });
  await always.login('alice', 'pw');
  assert.equal((await always.request('/db/patient-1')).tunnelled, true);
  for (const [p, t] of [['/db/_all_docs', true], ['/db/_design/d/_view/v', true], ['/db/doc/att', true],
    ['/db/_design/d/att', true], ['/db/_local/x', false], ['/db/doc', false], ['/_session', false],
    ['/db/_design/d', false], ['/db/_find', true], ['/_all_dbs', true], ['/db/_bulk_docs', false]]) {
    assert.equal(needsTunnel(p), t, p);
  }
});

test('an answer for another request, with another status, by another signer, or in plaintext is refused', async () => {
  const cases = [
    [{ nonce: 'AAAAAAAAAAAAAAAAAAAAAA==' }, ProtocolError],
    [{ envelopeStatus: 201 }, ProtocolError],
    [{ responseSigner: 'stranger' }, BadSignatureError],
    [{ plaintext: true }, ProtocolError],
  ];
  for (const [tamper, Err] of cases) {
    const { server, conn } = await loggedIn();
    for (const [k, v] of Object.entries(tamper)) server.tamper[k] = v === 'stranger' ? server.stranger : v;
    await assert.rejects(conn.request('/db/x'), Err, JSON.stringify(tamper));
  }
});

test("couch_pgp's refusals are typed errors; an early refusal without a nonce is only ever an error", async () => {
  const { server, conn } = await loggedIn();
  server.tamper.refuse = [400, { error: 'pgp_replay', reason: 'This envelope nonce was already used.' }];
  await assert.rejects(conn.request('/db/x'), (e) => e instanceof RequestRefusedError && e.code === 'pgp_replay' && e.status === 400);
  server.tamper.refuse = [406, { error: 'not_acceptable', reason: 'couch_pgp: this endpoint streams its response' }];
  server.tamper.nonce = '';
  await assert.rejects(conn.request('/db/x'), (e) => e instanceof RequestRefusedError && e.status === 406);
  server.tamper.refuse = [200, { ok: true }]; // a success without our nonce is never accepted
  await assert.rejects(conn.request('/db/x'), ProtocolError);
});

test('sessions are renewed before they expire; if renewal fails, SessionExpiredError', async () => {
  const { server, conn } = await loggedIn();
  server.lifetime = 5; // inside the renewal margin
  await conn.startSession();
  assert.equal(server.sessionsIssued, 2);
  await conn.request('/db/x'); // renews first
  assert.equal(server.sessionsIssued, 3);
  server.loggedIn = false; // the CouchDB login is gone too
  await assert.rejects(conn.request('/db/x'), SessionExpiredError);
  server.lifetime = 600;
  server.loggedIn = true;
  server.token = 'revoked-on-the-server';
  await conn.startSession();
  server.token = 'changed';
  await assert.rejects(conn.request('/db/x'), SessionExpiredError); // the server says it expired
});

test('registerCertificate signs the proof over canonical JSON with the registered key', async () => {
  const { server, conn } = await loggedIn();
  const { Security } = await import('../src/index.js');
  const longLived = await new Security({ lifetime: 0 }).ready;
  await conn.registerCertificate(longLived);
  const body = JSON.parse(server.requests.at(-1).env.body);
  const proof = `{"action":"register","fingerprint":"${await longLived.fingerprint()}","user":"alice"}`;
  const v = await openpgp.verify({
    message: await openpgp.createMessage({ binary: new TextEncoder().encode(proof) }),
    signature: await openpgp.readSignature({ armoredSignature: body.signature }),
    verificationKeys: await openpgp.readKey({ armoredKey: body.cert }), expectSigned: true,
  });
  assert.equal(v.data.length, proof.length);
});
