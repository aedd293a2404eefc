// What anyone can send before logging in: the identity, the encrypted login, session tokens
// and encrypted bodies without a login behind them. Each attack is checked for its exact
// status and error JSON, for having changed nothing, for costing the node no more memory
// than the plaintext request would, and for leaving the node up. The error table
// (test/vectors/errors.json) is checked here too, on the live node, through chttpd's own
// rendering.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import * as openpgp from 'openpgp';
import { CouchDB, couchdbSkip, sleep } from './couchdb.mjs';
import { Client, envelope, seal, newKey } from './pgp_client.mjs';

const skip = couchdbSkip();
const TABLE = JSON.parse(fs.readFileSync(new URL('../vectors/errors.json', import.meta.url)));
const row = (reason) => {
  const r = TABLE.rows.find((x) => x.reason === reason);
  assert.ok(r, `no row ${reason} in errors.json`);
  return r;
};
const MiB = 1024 * 1024;
const PGP = 'application/pgp-encrypted';

/** Encrypts `text` to `to`, signed by `signer`, zlib-compressed (a small message that
 *  inflates to all of `text`). */
async function sealCompressed(text, to, signer) {
  // Compressed whatever the recipient's preferences say (openpgp.encrypt honours them, and
  // the server's certificates prefer none): what an attacker would send.
  const signed = await (await openpgp.createMessage({ text })).sign([signer]);
  const compressed = signed.compress(openpgp.enums.compression.zlib);
  const encrypted = await compressed.encrypt([to], undefined, undefined, undefined, undefined, undefined,
    { ...openpgp.config, aeadProtect: false });
  return encrypted.armor();
}



describe('before authentication', { skip, timeout: 600000 }, () => {
  let db; let alice; let identity;
  const aliceAuth = { username: 'alice', password: 'alice-pw-pre' };

  before(async () => {
    db = await CouchDB.start();
    const r = await db.json('/_users/org.couchdb.user:alice', {
      method: 'PUT', body: { name: 'alice', password: aliceAuth.password, roles: [], type: 'user' },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal((await db.json('/records', { method: 'PUT' })).status, 201);
    assert.equal((await db.json('/records/_security', { method: 'PUT', body: { members: { names: ['alice'] }, admins: {} } })).status, 200);
    alice = new Client(db, aliceAuth, await newKey('alice'));
    await alice.pin();
    await alice.startSession();
    identity = alice.identity;
  });

  after(async () => { if (db) await db.stop(); });

  /** A binary computed on the node (erl_call prints long ones cut short): written to a file
   *  in the test's temporary directory and read back. */
  let rpcFiles = 0;
  async function rpcBinary(expr) {
    const file = path.join(db.dir, `rpc-${rpcFiles += 1}.out`);
    assert.equal(await db.rpc(`file:write_file(${JSON.stringify(file)}, begin ${expr.replace(/\.\s*$/, '')} end).`), 'ok');
    return fs.readFileSync(file, 'utf8');
  }

  /** Asserts the exact refusal of errors.json's row, and whether it came encrypted. */
  function assertRefusal(res, reason, { encrypted = false, what = reason } = {}) {
    const r = row(reason);
    assert.equal(res.status, r.status, `${what}: ${JSON.stringify(res.body)}`);
    assert.equal(res.encrypted, encrypted, `${what}: encrypted`);
    assert.deepEqual(res.body, { error: r.error, reason: r.reason_text }, what);
  }

  async function plain(p, opts) {
    const r = await db.request(p, opts);
    const text = await r.text();
    let body = text; try { body = JSON.parse(text); } catch { /* not JSON */ }
    return { status: r.status, encrypted: r.headers.get('x-pgp-encrypted') === '1', body, headers: r.headers };
  }

  const login = (body, headers = {}) => plain('/_session', {
    method: 'POST', auth: null, body, headers: { 'Content-Type': PGP, ...headers },
  });

  async function loginEnvelope(key, password = aliceAuth.password, extra = {}) {
    return envelope('POST', '/_session', '', JSON.stringify({ name: 'alice', password }),
      { client_cert: key.publicKey.armor(), ...extra });
  }

  /** The node's memory as /_node/_local/_system reports it (processes, binaries, ETS ...). */
  async function memoryTotal() {
    const { memory } = (await db.json('/_node/_local/_system')).body;
    const total = Object.entries(memory).filter(([k]) => !k.endsWith('_used')).reduce((a, [, v]) => a + v, 0);
    assert.ok(total > 0);
    return total;
  }

  /** The node's peak memory.total while `fn` runs, above what it was before. */
  async function peakGrowth(fn) {
    await db.rpc('[erlang:garbage_collect(P) || P <- erlang:processes()], ok.');
    const base = Math.max(await memoryTotal(), await memoryTotal());
    let peak = base; let done = false;
    const poll = (async () => {
      while (!done) { peak = Math.max(peak, await memoryTotal()); await sleep(20); }
    })();
    try { return { result: await fn(), growth: () => peak - base }; } finally {
      await sleep(100); done = true; await poll; peak = Math.max(peak, await memoryTotal());
    }
  }

  async function sessionsCreated() {
    return (await db.json('/_node/_local/_stats/couch_pgp')).body.sessions_created.value || 0;
  }

  async function stillUp() {
    assert.equal((await db.json('/_up', { auth: null })).status, 200);
    assert.equal((await db.json('/_pgp', { auth: null })).status, 200);
  }

  test('the error table is exactly what chttpd renders for every reason, and nothing else is a reason', async () => {
    const rendered = JSON.parse(await rpcBinary(`jiffy:encode([[atom_to_binary(R), C, E, T]
      || R <- couch_pgp_http_errors:reasons(),
         {C, E, T} <- [chttpd:error_info(couch_pgp_http_errors:to_chttpd(R))]]).`));
    assert.deepEqual(rendered.map(([reason, status, error, text]) => ({ reason, status, error, reason_text: text })),
      TABLE.rows.map(({ reason, status, error, reason_text }) => ({ reason, status, error, reason_text })));
    // Closed: a reason outside the list is a programming error, not a generic 400.
    assert.match(await db.rpc('try couch_pgp_http_errors:to_chttpd(expired) catch error:function_clause -> closed end.'), /^closed$/);
    assert.match(await db.rpc('try couch_pgp_http_errors:to_chttpd(pgp_error) catch error:function_clause -> closed end.'), /^closed$/);
  });

  test('GET /_pgp needs nothing and gives only the public identity', async () => {
    const r = await plain('/_pgp', { auth: null });
    assert.equal(r.status, 200);
    assert.deepEqual(Object.keys(r.body).sort(), ['cert', 'couch_pgp', 'encryption', 'fingerprint', 'max_clock_skew', 'modes',
      'previous', 'profile', 'revocations', 'session_lifetime']);
    // Keys over time: nothing to announce on a node that never rotated.
    assert.deepEqual([r.body.previous, r.body.revocations], [[], []]);
    assert.doesNotMatch(JSON.stringify(r.body), /PRIVATE/);
    assert.equal((await plain('/_pgp', { method: 'DELETE', auth: null })).status, 405);
  });

  test('session tokens: garbage, truncated, another node\'s, expired; refused in plaintext, nothing runs', async () => {
    const put = (token) => alice.send('PUT', '/records/t1', '', '{"a":1}', { token, auth: null });
    const foreign = await rpcBinary(`
      {ok, S} = couch_pgp_session:new(<<"alice">>, base64:decode(<<"${Buffer.from(alice.key.publicKey.armor()).toString('base64')}">>),
                                      erlang:system_time(second) + 600, <<"other node">>),
      couch_pgp_session:seal(S, couch_pgp_session:derive_secret("another cluster's secret")).`);
    const expired = await rpcBinary(`
      {ok, S} = couch_pgp_session:new(<<"alice">>, base64:decode(<<"${Buffer.from(alice.key.publicKey.armor()).toString('base64')}">>),
                                      erlang:system_time(second) - 5, <<"old">>),
      {ok, Secret} = couch_pgp_config:token_secret(),
      couch_pgp_session:seal(S, Secret).`);
    const cases = [
      ['garbage', 'AAAA'], ['binary junk', '%%%%!!!!'], ['long', 'A'.repeat(6000)],
      ['truncated', alice.token.slice(0, alice.token.length - 5)],
      ['flipped', alice.token.slice(0, 40) + (alice.token[40] === 'A' ? 'B' : 'A') + alice.token.slice(41)],
      ["another cluster's", foreign],
    ];
    for (const [what, token] of cases) assert.ok(token, what);
    for (const [what, token] of cases) assertRefusal(await put(token), 'bad_token', { what });
    assertRefusal(await put(expired), 'session_expired');
    // The session header missing altogether (and not a login).
    assertRefusal(await plain('/records/t1', { method: 'PUT', auth: null, body: 'x', headers: { 'Content-Type': PGP } }), 'no_session');
    // A valid token without the login it belongs to: opened, answered encrypted, not run.
    const noLogin = await alice.send('PUT', '/records/t1', '', '{"a":1}', { auth: null });
    assertRefusal(noLogin, 'no_user', { encrypted: true });
    assert.equal((await db.json('/records/t1')).status, 404);
    await stillUp();
  });

  test('garbage and deep nesting: exact refusals, plaintext before the message is opened', async () => {
    const key = await newKey('garbage');
    assertRefusal(await login('not openpgp at all'), 'malformed');
    assertRefusal(await login(''), 'malformed', { what: 'empty login' });
    // Random bytes after a first octet without the packet-header bit (0x80): never OpenPGP.
    // (Fully random bytes can start a packet header, and what that packet then declares can
    // make the refusal policy_rejected instead: this line failed so once in a suite run.)
    assertRefusal(await login(Buffer.concat([Buffer.from([0]), randomBytes(4095)])), 'malformed', { what: 'random bytes' });
    // Encrypted to another key than the identity.
    const other = await newKey('other');
    assertRefusal(await login(await seal(await loginEnvelope(key), other.publicKey, key.privateKey)), 'no_matching_key');
    // Deeply nested JSON inside, where the envelope should be: to the identity key, and in a session.
    assertRefusal(await login(await seal('['.repeat(40000), identity, key.privateKey)), 'bad_envelope', { what: 'nested login' });
    const nested = await seal(`{"v":1,"x":${'['.repeat(200000)}${']'.repeat(200000)}}`, alice.sessionCert, alice.key.privateKey);
    const r = await alice.send('PUT', '/records/n1', '', '', { msg: nested, auth: null });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error, 'pgp_bad_envelope');
    assert.equal(r.encrypted, true);
    assert.equal(r.env.nonce, '', 'refused before an envelope, so no nonce to echo');
    // A login envelope without its client certificate.
    const noCert = envelope('POST', '/_session', '', JSON.stringify({ name: 'alice', password: 'x' }));
    assertRefusal(await login(await seal(noCert, identity, key.privateKey)), 'bad_envelope', { what: 'no client_cert' });
    await stillUp();
  });

  test('a login compression bomb is refused at max_login_size while inflating, at no memory cost', async () => {
    const key = await newKey('bomb');
    const env = await loginEnvelope(key, '0'.repeat(8 * MiB));
    const bomb = await sealCompressed(JSON.stringify(env), identity, key.privateKey);
    assert.ok(bomb.length < 64 * 1024, `the bomb is ${bomb.length} bytes on the wire`);
    const sessions = await sessionsCreated();
    const { result, growth } = await peakGrowth(() => login(bomb));
    assertRefusal(result, 'too_large');
    assert.ok(growth() < 4 * MiB, `memory grew by ${(growth() / MiB).toFixed(1)} MiB`);
    // Over the limit as received: refused before it is read.
    assertRefusal(await login(randomBytes(100 * 1024)), 'too_large', { what: 'oversize login body' });
    assert.equal(await sessionsCreated(), sessions);
    // A normal login still works, and gets its session.
    const ok = await login(await seal(await loginEnvelope(key), identity, key.privateKey));
    assert.equal(ok.status, 200);
    assert.equal(ok.encrypted, true);
    assert.equal(await sessionsCreated(), sessions + 1);
    await stillUp();
  });

  test('max_request_size bounds what a session request inflates to, and never exceeds max_http_request_size', async () => {
    const set = (k, v, section = 'couch_pgp') => db.json(`/_node/_local/_config/${section}/${k}`, { method: 'PUT', body: JSON.stringify(v) });
    assert.equal((await set('max_request_size', String(MiB))).status, 200);
    try {
      const body = JSON.stringify({ pad: '0'.repeat(8 * MiB) });
      const env = envelope('PUT', '/records/big', '', body);
      const msg = await sealCompressed(JSON.stringify(env), alice.sessionCert, alice.key.privateKey);
      const { result, growth } = await peakGrowth(() => alice.send('PUT', '/records/big', '', '', { env, msg }));
      assertRefusal(result, 'too_large', { encrypted: true });
      assert.equal(result.env.nonce, '', 'refused before the envelope was read');
      assert.ok(growth() < 6 * MiB, `memory grew by ${(growth() / MiB).toFixed(1)} MiB`);
      assert.equal((await db.json('/records/big')).status, 404);
      // Under the limit, the same path works.
      assert.equal((await alice.send('PUT', '/records/small', '', '{"a":1}')).status, 201);
      assert.equal(await db.rpc('couch_pgp_config:max_request_size().'), String(MiB));
      assert.equal((await set('max_http_request_size', '65536', 'chttpd')).status, 200);
      assert.equal(await db.rpc('couch_pgp_config:max_request_size().'), '65536');
      assert.equal(await db.rpc('couch_pgp_config:max_login_size().'), '65536');
    } finally {
      await set('max_http_request_size', '4294967296', 'chttpd');
      await db.json('/_node/_local/_config/couch_pgp/max_request_size', { method: 'DELETE' });
    }
    assert.equal(await db.rpc('couch_pgp_config:max_request_size().'), String(64 * MiB));
    assert.equal(await db.rpc('couch_pgp_config:max_login_size().'), String(64 * 1024));
    await stillUp();
  });

  test('a login with a certificate that cannot be encrypted to is refused before it runs, with its own error', async () => {
    const sessions = await sessionsCreated();
    // Signing only: no encryption subkey.
    const signOnly = await openpgp.generateKey({ type: 'curve25519', userIDs: [{ name: 's' }], subkeys: [], format: 'object' });
    const env1 = envelope('POST', '/_session', '', JSON.stringify({ name: 'alice', password: aliceAuth.password }),
      { client_cert: signOnly.publicKey.armor() });
    assertRefusal(await login(await seal(env1, identity, signOnly.privateKey)), 'no_encryption_key');
    // Expired: made an hour ago, valid for a minute. Not "the session has expired".
    const past = new Date(Date.now() - 3600 * 1000);
    const old = await openpgp.generateKey({ type: 'curve25519', userIDs: [{ name: 'o' }], date: past, keyExpirationTime: 60, format: 'object' });
    const env2 = envelope('POST', '/_session', '', JSON.stringify({ name: 'alice', password: aliceAuth.password }),
      { client_cert: old.publicKey.armor() });
    // OpenPGP.js will not sign with an expired key; the certificate is refused before any
    // signature is checked, so another key signs.
    const r2 = await login(await seal(env2, identity, (await newKey('signer')).privateKey));
    assertRefusal(r2, 'cert_expired');
    assert.notEqual(r2.body.error, row('session_expired').error);
    assert.equal(await sessionsCreated(), sessions);
    await stillUp();
  });
});
