// One encrypted request and its response, byte for byte, against a real CouchDB: the worked
// example in the README's protocol section is this script's output.
//
//   COUCHDB_HOME=<a CouchDB 3.x release> node examples/protocol_example.mjs
//   (or: sh scripts/with_couchdb.sh node examples/protocol_example.mjs, after make build)
//
// It uses only test/integration/pgp_client.mjs (OpenPGP.js, written from the README) and
// prints, in order: the identity, the session, then one PUT sent as an encrypted request (the
// envelope's exact bytes, the HTTP request as sent, the HTTP response as received, the
// response envelope's exact bytes). Every step is checked; the script exits 1 if one is not as
// the README says. Armored blocks are printed whole, except certificates and the token.
process.env.COUCH_PGP_IT_PREBUILT ??= '1';
const { CouchDB } = await import('../test/integration/couchdb.mjs');
const { newKey, seal, open, checkSession, jcs, openpgp } = await import('../test/integration/pgp_client.mjs');

const out = (s = '') => process.stdout.write(`${s}\n`);
const fail = (what) => { throw new Error(`protocol example: ${what}`); };
const shortBlock = (armored) => {
  const lines = armored.trim().split('\n');
  return lines.length <= 6 ? armored.trim() : [...lines.slice(0, 3), '...', ...lines.slice(-2)].join('\n');
};
const short = (s, n = 40) => {
  if (s.startsWith('-----BEGIN ')) return `${s.split('\n')[0]}...`;
  return s.length > 2 * n ? `${s.slice(0, n)}...${s.slice(-8)}` : s;
};

const db = await CouchDB.start();
try {
  const auth = { username: 'alice', password: 'alice-example-pw' };
  const u = await db.json('/_users/org.couchdb.user:alice', {
    method: 'PUT', body: { name: 'alice', password: auth.password, roles: [], type: 'user' } });
  if (u.status !== 201) fail(`user: ${u.status}`);
  await db.json('/records', { method: 'PUT' });
  await db.json('/records/_security', { method: 'PUT', body: { members: { names: ['alice'] }, admins: {} } });

  out('## 1. GET /_pgp (no authentication)');
  const id = await db.json('/_pgp', { auth: null });
  if (id.status !== 200) fail(`GET /_pgp ${id.status}`);
  out(JSON.stringify({ ...id.body, cert: short(id.body.cert) }, null, 1));
  const identity = await openpgp.readKey({ armoredKey: id.body.cert });
  if (identity.getFingerprint().toUpperCase() !== id.body.fingerprint) fail('fingerprint of cert');

  out('\n## 2. POST /_pgp/session (basic auth as alice), answer 201');
  const key = await newKey('alice');
  const s = await db.json('/_pgp/session', { method: 'POST', auth, body: { client_cert: key.publicKey.armor() } });
  if (s.status !== 201) fail(`session ${s.status} ${s.text}`);
  const sessionCert = await checkSession(s.body, identity, key.fingerprint);
  out(JSON.stringify({ ...s.body, token: short(s.body.token), session_cert: short(s.body.session_cert),
    statement_signature: short(s.body.statement_signature) }, null, 1));
  out('statement, exact bytes:');
  out(s.body.statement);

  out('\n## 3. PUT /records/doc1, encrypted');
  const env = { v: 1, method: 'PUT', path: '/records/doc1', query: '', ts: Date.now(),
    nonce: Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64'),
    content_type: 'application/json', body: '{"note":"hello"}' };
  const envText = jcs(env);
  out('request envelope (the signed plaintext), exact bytes:');
  out(envText);
  const msg = await seal(envText, sessionCert, key.privateKey);
  const headers = { 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': s.body.token };
  out('HTTP request as sent:');
  out(`PUT /records/doc1 HTTP/1.1\nAuthorization: Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`);
  out(`Content-Type: ${headers['Content-Type']}\nX-PGP-Session: ${short(s.body.token)}\n`);
  out(msg.trim());
  const r = await db.request('/records/doc1', { method: 'PUT', auth, body: msg, headers });
  const text = await r.text();
  out('\nHTTP response as received (headers that matter):');
  out(`HTTP/1.1 ${r.status}`);
  for (const h of ['content-type', 'x-pgp-encrypted', 'location', 'etag']) {
    if (r.headers.get(h) !== null) out(`${h}: ${r.headers.get(h)}`);
  }
  out('');
  const outer = JSON.parse(text);
  out(`{"pgp": ${JSON.stringify(shortBlock(outer.pgp))}}`);
  if (r.headers.get('x-pgp-encrypted') !== '1') fail('response not encrypted');
  const respText = (await openpgp.decrypt({
    message: await openpgp.readMessage({ armoredMessage: outer.pgp }),
    decryptionKeys: key.privateKey, verificationKeys: sessionCert, expectSigned: true })).data;
  out('\nresponse envelope (decrypted, signature by the session key checked), exact bytes:');
  out(respText);
  const resp = await open(outer.pgp, key.privateKey, sessionCert);
  if (resp.status !== r.status || resp.nonce !== env.nonce) fail('status or nonce');
  if (jcs(resp) !== respText) fail('the response envelope is not canonical JSON');
  const stored = await db.json('/records/doc1');
  if (stored.body.note !== 'hello') fail('stored document');
  out('\n(as stored by CouchDB: ' + JSON.stringify(stored.body) + ')');
} finally {
  await db.stop();
}
