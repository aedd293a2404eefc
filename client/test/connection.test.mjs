// The connection's protocol checks, driven through a fake server that can misbehave
// (test/fake_server.mjs). The real plugin is exercised in test/integration/browser.test.mjs.
// Every exchange test runs twice: in channel mode (the default against a server offering it)
// and in per-message mode (mode: 'session').
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as openpgp from 'openpgp';
import {
  connect, needsTunnel, PinMismatchError, ProtocolError, BadSignatureError, LoginFailedError,
  NotLoggedInError, SessionExpiredError, RequestRefusedError, CouchError, DecryptError,
} from '../src/index.js';
import { FakeServer } from './fake_server.mjs';

const BASE = 'http://couch.test:5984';
const MODES = ['channel', 'session'];
const opt = (mode) => (mode === 'session' ? { mode: 'session' } : {}); // channel: the default

async function loggedIn(tamper = {}, mode = 'channel') {
  const server = await FakeServer.create();
  const conn = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch, ...opt(mode) });
  await conn.login('alice', 'pw');
  assert.equal(conn.session.mode, mode);
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

for (const mode of MODES) {
  test(`[${mode}] a session the pinned identity did not vouch for is refused`, async () => {
    for (const tamper of [{ statementSigner: 'stranger' }, { sessionCert: 'stranger' }, { clientFingerprint: 'AB'.repeat(20) }]) {
      const server = await FakeServer.create();
      for (const [k, v] of Object.entries(tamper)) server.tamper[k] = v === 'stranger' ? server.stranger : v;
      const conn = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch, ...opt(mode) });
      await assert.rejects(conn.login('alice', 'pw'), ProtocolError, JSON.stringify(Object.keys(tamper)));
      await assert.rejects(conn.request('/db/x'), NotLoggedInError);
    }
  });

  test(`[${mode}] requests: envelope as the server checks it; GET goes as POST; answers decrypted`, async () => {
    const { server, conn } = await loggedIn({}, mode);
    const r = await conn.request('/db/doc%2F1?rev=1-a&x=%C3%A9');
    assert.equal(r.status, 200);
    assert.equal(r.encrypted, true);
    const { echo } = await r.json();
    const sent = server.requests.at(-1);
    assert.equal(sent.outerMethod, 'POST');
    assert.equal(sent.url.pathname, '/db/doc%2F1');
    assert.equal(sent.channel === true, mode === 'channel');
    assert.deepEqual([echo.method, echo.path, echo.query, echo.body], ['GET', '/db/doc%2F1', 'rev=1-a&x=%C3%A9', '']);
    const put = await (await conn.request('/db/d', { method: 'PUT', body: { a: 1 } })).json();
    assert.deepEqual([put.echo.method, put.echo.body, put.echo.content_type], ['PUT', '{"a":1}', 'application/json']);
    const missing = await conn.request('/db/missing');
    assert.equal(missing.ok, false);
    await assert.rejects(missing.checked(), (e) => e instanceof CouchError && e.status === 404 && e.error === 'not_found');
    const raw = await conn.request('/raw'); // a raw answer: the message itself is the body
    assert.deepEqual([raw.status, raw.contentType, await raw.text()], [200, 'text/plain', 'raw answer']);
  });

  test(`[${mode}] streaming endpoints and bytes go through the tunnel, with headers inside`, async () => {
    const { server, conn } = await loggedIn({}, mode);
    const r = await conn.request('/db/_changes?since=0', { headers: { 'X-Note': 'inside' } });
    assert.equal(r.tunnelled, true);
    const { inner } = await r.json();
    assert.equal(server.requests.at(-1).url.pathname, '/_pgp/tunnel');
    assert.deepEqual([inner.method, inner.path, inner.query, inner.headers['X-Note']], ['GET', '/db/_changes', 'since=0', 'inside']);
    const bin = await (await conn.request('/db/doc/scan.png', { method: 'PUT', body: new Uint8Array([0, 255, 1]),
      headers: { 'Content-Type': 'image/png' } })).json();
    assert.deepEqual([bin.inner.body, bin.inner.body_base64, bin.inner.headers['Content-Type']], ['AP8B', true, 'image/png']);
    const always = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch, tunnel: 'always', ...opt(mode) });
    await always.login('alice', 'pw');
    assert.equal((await always.request('/db/patient-1')).tunnelled, true);
    for (const [p, t] of [['/db/_all_docs', true], ['/db/_design/d/_view/v', true], ['/db/doc/att', true],
      ['/db/_design/d/att', true], ['/db/_local/x', false], ['/db/doc', false], ['/_session', false],
      ['/db/_design/d', false], ['/db/_find', true], ['/_all_dbs', true], ['/db/_bulk_docs', false]]) {
      assert.equal(needsTunnel(p), t, p);
    }
  });

  test(`[${mode}] an answer for another request, with another status, by another signer or key, or in plaintext is refused`, async () => {
    const cases = [
      [{ nonce: 'AAAAAAAAAAAAAAAAAAAAAA==' }, ProtocolError],
      [{ envelopeStatus: 201 }, ProtocolError],
      [{ plaintext: true }, ProtocolError],
      ...(mode === 'session' ? [[{ responseSigner: 'stranger' }, BadSignatureError]] : [
        [{ responseKey: 'c2s' }, (e) => e instanceof DecryptError && e.reason === 'tampered'], // our own direction's key
        [{ noChannelHeader: true }, ProtocolError],
        [{ channelPlaintext: new Uint8Array([0x7B, 0xFF, 0x7D]) }, ProtocolError], // not UTF-8
        [{ channelPlaintext: new TextEncoder().encode('[1]') }, ProtocolError], // not an envelope
        [{ perMessageAnswer: true }, ProtocolError], // signed by the session key, but not in the channel
        // Armored instead of base64 in JSON (not base64), or instead of binary (not a packet).
        [{ armoredChannel: true }, (e) => e instanceof ProtocolError || (e instanceof DecryptError && e.reason === 'malformed')],
      ]),
    ];
    for (const [tamper, Err] of cases) {
      const { server, conn } = await loggedIn({}, mode);
      for (const [k, v] of Object.entries(tamper)) server.tamper[k] = v === 'stranger' ? server.stranger : v;
      await assert.rejects(conn.request('/db/x'), Err, JSON.stringify(tamper));
      await assert.rejects(conn.request('/raw'), Err, `raw ${JSON.stringify(tamper)}`);
    }
  });

  test(`[${mode}] couch_pgp's refusals are typed errors; an early refusal without a nonce is only ever an error`, async () => {
    const { server, conn } = await loggedIn({}, mode);
    server.tamper.refuse = [400, { error: 'pgp_replay', reason: 'This envelope nonce was already used.' }];
    await assert.rejects(conn.request('/db/x'), (e) => e instanceof RequestRefusedError && e.code === 'pgp_replay' && e.status === 400);
    server.tamper.refuse = [406, { error: 'not_acceptable', reason: 'couch_pgp: this endpoint streams its response' }];
    server.tamper.nonce = '';
    await assert.rejects(conn.request('/db/x'), (e) => e instanceof RequestRefusedError && e.status === 406);
    server.tamper.refuse = [200, { ok: true }]; // a success without our nonce is never accepted
    await assert.rejects(conn.request('/db/x'), ProtocolError);
  });

  test(`[${mode}] sessions are renewed before they expire; if renewal fails, SessionExpiredError`, async () => {
    const { server, conn } = await loggedIn({}, mode);
    server.lifetime = 5; // inside the renewal margin
    await conn.startSession();
    assert.equal(server.sessionsIssued, 2);
    await conn.request('/db/x'); // renews first
    assert.equal(server.sessionsIssued, 3);
    assert.equal(conn.session.mode, mode, 'a renewal brings a new channel');
    if (mode === 'channel') {
      assert.equal(server.requests.at(-1).channel, true);
      assert.notDeepEqual(server.channels.get('token-2').c2s, server.channels.get('token-3').c2s);
    }
    server.loggedIn = false; // the CouchDB login is gone too
    await assert.rejects(conn.request('/db/x'), SessionExpiredError);
    server.lifetime = 600;
    server.loggedIn = true;
    server.token = 'revoked-on-the-server';
    await conn.startSession();
    server.token = 'changed';
    await assert.rejects(conn.request('/db/x'), SessionExpiredError); // the server says it expired
  });

  test(`[${mode}] a session that ends with our key is used until then, not renewed on every request`, async () => {
    const server = await FakeServer.create();
    const { Security } = await import('../src/index.js');
    const security = await new Security({ lifetime: 5 }).ready;
    const conn = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch, security, ...opt(mode) });
    // As the real server does: the session ends when the client certificate does.
    server.lifetime = 5;
    await conn.login('alice', 'pw');
    const issued = server.sessionsIssued;
    await conn.request('/db/x');
    await conn.request('/db/x');
    assert.equal(server.sessionsIssued, issued, 'renewing could not extend it');
    // A session that ends before the key does is still renewed inside the margin.
    server.lifetime = 3;
    await conn.startSession();
    await conn.request('/db/x');
    assert.equal(server.sessionsIssued, issued + 2);
  });

  test(`[${mode}] registerCertificate signs the proof over canonical JSON with the registered key`, async () => {
    const { server, conn } = await loggedIn({}, mode);
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
}

test('channel mode on the wire: a binary SEIPDv2 body, X-PGP-Channel, no plaintext; onExchange sees base64', async () => {
  const server = await FakeServer.create();
  const seen = [];
  const conn = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch, onExchange: (e) => seen.push(e) });
  await conn.login('alice', 'pw');
  assert.equal(seen[0].wire.mode, 'session', 'the login itself is per-message, to the identity key');
  await conn.request('/db/secret-doc', { method: 'PUT', body: { diagnosis: 'confidential' } });
  const sent = server.requests.at(-1);
  assert.equal(sent.headers.get('x-pgp-channel'), '1');
  assert.equal(sent.headers.get('content-type'), 'application/pgp-encrypted');
  assert.equal(sent.headers.get('x-pgp-session'), 'token-1');
  assert.deepEqual([...sent.body.subarray(0, 1)], [0xD2]);
  const wireText = Buffer.from(sent.body).toString('latin1');
  for (const secret of ['confidential', 'secret-doc', 'PUT']) assert.ok(!wireText.includes(secret), secret);
  const x = seen.at(-1);
  assert.equal(x.wire.mode, 'channel');
  assert.deepEqual(Buffer.from(x.wire.request, 'base64'), Buffer.from(sent.body));
  assert.equal(x.request.method, 'PUT');
  const visible = JSON.stringify(conn.session) + JSON.stringify(conn);
  const { c2s, s2c } = server.channels.get('token-1');
  for (const k of [c2s, s2c]) assert.ok(!visible.includes(Buffer.from(k).toString('base64')), 'keys are not exposed');
});

test("mode: 'session' keeps per-message mode against a channel server; a server without channel gets it by default", async () => {
  const server = await FakeServer.create();
  const conn = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch, mode: 'session' });
  await conn.login('alice', 'pw');
  await conn.request('/db/x');
  const sent = server.requests.at(-1);
  assert.equal(sent.headers.get('x-pgp-channel'), null);
  assert.equal(sent.channel, undefined);
  await assert.rejects(connect(BASE, { pin: server.fingerprint, fetch: server.fetch, mode: 'fast' }), TypeError);

  server.offerChannel = false; // an older server: GET /_pgp lists only "session"
  const old = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch });
  await old.login('alice', 'pw');
  assert.equal(old.session.mode, 'session');
  await assert.rejects(connect(BASE, { pin: server.fingerprint, fetch: server.fetch, mode: 'channel' }), ProtocolError);
});

test('a description without channel keys falls back to per-message mode, unless mode is channel', async () => {
  const server = await FakeServer.create();
  server.tamper.noChannel = true;
  const conn = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch });
  await conn.login('alice', 'pw');
  assert.equal(conn.session.mode, 'session');
  assert.equal((await conn.request('/db/x')).status, 200);
  const strict = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch, mode: 'channel' });
  await assert.rejects(strict.login('alice', 'pw'), ProtocolError);
  await assert.rejects(strict.startSession(), ProtocolError);
});

// A hand-written channel description (fingerprints filled in once known), to corrupt below.
const ONES = new Uint8Array(32).fill(1);
const TWOS = new Uint8Array(32).fill(0xFB); // base64 with '+' and '/'
const valid = btoa(String.fromCharCode(...ONES));
const other = btoa(String.fromCharCode(...TWOS));
const text = (o) => JSON.stringify({ c2s: valid, client_fingerprint: '(client)', s2c: other,
  session_fingerprint: '(session)', v: 1, ...o });

test('a hand-written channel description is accepted and its keys used', async () => {
  const server = await FakeServer.create();
  const conn = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch });
  server.tamper.channelText = text({}).replace('(client)', await conn.security.fingerprint())
    .replace('(session)', server.sessionKey.getFingerprint().toUpperCase());
  await conn.login('alice', 'pw');
  assert.equal(conn.session.mode, 'channel');
  server.channels.set('token-1', { c2s: ONES, s2c: TWOS });
  assert.equal((await conn.request('/db/x')).status, 200);
});

test('channel keys signed by another key, for another client or session, or malformed, are refused', async () => {
  const cases = {
    'signed by another key': { channelSigner: 'stranger' },
    'signed by the identity, not the session key': { channelSigner: 'identity' },
    unsigned: { channelSigner: null },
    'encrypted to another key': { channelTo: 'stranger' },
    'for another client': { channelClientFingerprint: 'AB'.repeat(20) },
    'naming another session key': { channelSessionFingerprint: 'stranger-fpr' },
    'version 2': { channelV: 2 },
    'the same key both ways': { channelSameKeys: true },
    'not JSON': { channelText: 'c2s=...' },
    'an array': { channelText: '[1]' },
    'a duplicate member': { channelText: text({}).replace('"v":1', '"v":1,"v":1') },
    'a 16-byte key': { channelText: text({ c2s: btoa('0123456789abcdef') }) },
    'base64 without padding': { channelText: text({ c2s: valid.replace(/=+$/, '') }) },
    'base64url': { channelText: text({ s2c: other.replace(/\+/g, '-').replace(/\//g, '_') }) },
  };
  for (const [name, tamper] of Object.entries(cases)) {
    const server = await FakeServer.create();
    const keyOf = { stranger: server.stranger, identity: server.identity };
    for (const [k, v] of Object.entries(tamper)) server.tamper[k] = keyOf[v] ?? v;
    if (tamper.channelSessionFingerprint) server.tamper.channelSessionFingerprint = server.stranger.getFingerprint().toUpperCase();
    const conn = await connect(BASE, { pin: server.fingerprint, fetch: server.fetch });
    // The fixed texts need the real fingerprints, known once the client has a key.
    if (tamper.channelText?.includes('(client)')) {
      server.tamper.channelText = tamper.channelText.replace('(client)', await conn.security.fingerprint())
        .replace('(session)', server.sessionKey.getFingerprint().toUpperCase());
    }
    await assert.rejects(conn.login('alice', 'pw'), ProtocolError, name);
    await assert.rejects(conn.request('/db/x'), NotLoggedInError, name);
  }
});

