// The seed's workflow over real HTTP, in a real CouchDB with couch_pgp installed: for every
// step, what travels on the wire beside what the application sees. A demo and a smoke test:
// every answer is checked, and the script exits 1 at the first one that is not as expected.
//
//   COUCHDB_HOME=<a CouchDB 3.x release> node examples/couchdb_demo.mjs [--no-wait]
//
// The release is copied by test/integration/couchdb.mjs (never modified), the plugin installed
// into the copy from this repository's build (COUCH_PGP_IT_PREBUILT=1 unless set: run
// `make build` first), and the node started on 127.0.0.1 with `[couch_pgp] enable = true` and
// the demo database `patients` in `signed_dbs`. The client is test/integration/pgp_client.mjs,
// written from the README on OpenPGP.js alone, sharing no code with the server.
//
// Afterwards the node stays up for the demo page (/_pgp/demo, whose default database is
// `patients`) and the script prints how to sign in, until Ctrl-C / SIGTERM or
// COUCH_PGP_DEMO_MINUTES (default 60) have passed; then it stops the node and removes the copy.
// --no-wait stops right after the workflow.
//
// Output: numbered steps. Lines starting `   wire >` (client to server) and `   wire <`
// (server to client) are what crosses the network; `   app  >` / `   app  <` what the
// application sent and read; `   ✔` a check that passed. COUCH_PGP_DEMO_PASSWORD sets the
// demo user's password (default: random), so that a test can look for it in the output.
//
// Exit status: 0 when every step behaved as expected; 1 when one did not (the reason and the
// tail of CouchDB's log on stderr); 2 for a usage error.
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const IT = path.join(HERE, '..', 'test', 'integration');

function usage(message) {
  process.stderr.write(`couchdb_demo: ${message}\nusage: node examples/couchdb_demo.mjs [--no-wait]\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
for (const a of args) if (a !== '--no-wait') usage(`unknown argument ${JSON.stringify(a)}`);
const NO_WAIT = args.includes('--no-wait');
const MINUTES = Number(process.env.COUCH_PGP_DEMO_MINUTES || 60);
// A week at most: beyond 2^31 ms setTimeout would fire at once.
if (!Number.isFinite(MINUTES) || MINUTES <= 0 || MINUTES > 7 * 24 * 60) {
  usage(`COUCH_PGP_DEMO_MINUTES must be a number of minutes in (0, 10080], not ${JSON.stringify(process.env.COUCH_PGP_DEMO_MINUTES)}`);
}

// The harness installs what `make build` left in _build and priv/, as `make test-integration`
// has it do, instead of running make itself.
process.env.COUCH_PGP_IT_PREBUILT ??= '1';
// The harness reads its safety timeout (which kills every instance) when it is imported: it
// must outlive our own time limit, plus the boot and the workflow on a slow machine.
const MARGIN_MIN = 10;
process.env.COUCH_PGP_IT_TIMEOUT_MS = String(Math.ceil(((NO_WAIT ? 0 : MINUTES) + MARGIN_MIN) * 60 * 1000));
let harness;
let client;
let openpgp;
try {
  harness = await import('../test/integration/couchdb.mjs');
  client = await import('../test/integration/pgp_client.mjs');
  openpgp = await importOpenpgpAsPgpClientDoes();
} catch (e) {
  process.stderr.write(`couchdb_demo: cannot load the integration harness and OpenPGP.js from ${IT}`
    + ` (its node_modules: \`cd test/integration && npm ci\`, as make test-integration does): ${e.message}\n`);
  process.exit(1);
}
const { CouchDB, couchdbHome } = harness;
const { envelope, seal, open, newKey, signDoc, checkSession, jcs } = client;

/** OpenPGP.js as pgp_client.mjs resolves it (test/integration/node_modules), by the same URL,
 *  so that its key objects are instances of the classes we verify with. */
async function importOpenpgpAsPgpClientDoes() {
  const cjsEntry = createRequire(path.join(IT, 'pgp_client.mjs')).resolve('openpgp');
  let dir = path.dirname(cjsEntry);
  for (;;) {
    const pkgFile = path.join(dir, 'package.json');
    if (fs.existsSync(pkgFile)) {
      const pkg = JSON.parse(fs.readFileSync(pkgFile, 'utf8'));
      if (pkg.name === 'openpgp') {
        const entry = pkg.exports?.['.']?.import;
        if (typeof entry !== 'string') throw new Error(`${pkgFile} has no exports["."].import`);
        return import(pathToFileURL(path.join(dir, entry)).href);
      }
    }
    if (path.dirname(dir) === dir) throw new Error(`no openpgp package.json above ${cjsEntry}`);
    dir = path.dirname(dir);
  }
}

const DB = 'patients'; // the demo page's default database
const USER = 'demo';
const PASSWORD = process.env.COUCH_PGP_DEMO_PASSWORD || randomBytes(12).toString('base64url');
const RECORD_ID = 'patient:0001';
const RECORD_PATH = `/${DB}/${encodeURIComponent(RECORD_ID)}`;
// Shaped like the demo page's records, so that the page lists it ("signed by another key").
const RECORD = {
  _id: RECORD_ID, type: 'patient', name: { family: 'Müller', given: 'Anna' }, birthDate: '1984-03-12',
  mrn: 'MRN-0001', allergies: ['penicillin'], temperature: 37.2, recordedBy: USER,
};
const INI = { couch_pgp: { enable: 'true', signed_dbs: DB } };

// ---- output ------------------------------------------------------------------------------

const out = (line = '') => process.stdout.write(`${line}\n`);
const wire = (dir, ...lines) => { for (const l of lines) out(`   wire ${dir} ${l}`); };
const app = (dir, ...lines) => { for (const l of lines) out(`   app  ${dir} ${l}`); };
const ok = (text) => out(`   ✔ ${text}`);
const note = (text) => out(`     ${text}`);
const groups = (fpr) => fpr.replace(/(.{4})(?=.)/g, '$1 ');
const bytes = (x) => (typeof x === 'string' ? Buffer.byteLength(x) : x.length);

class DemoFailure extends Error {}
let current = { n: 0, title: 'starting CouchDB' };
function expect(condition, what) {
  if (!condition) throw new DemoFailure(what);
}

function step(n, title) {
  current = { n, title };
  out();
  out(`== ${n}. ${title}`);
}

/** A long string shortened to its ends: ciphertext, keys and tokens are shown, not dumped.
 *  Text with spaces (an error's reason) is left whole. */
function shorten(s, max = 72) {
  if (s.length <= max) return s;
  if (s.startsWith('-----BEGIN ')) {
    const lines = s.replace(/\n+$/, '').split('\n');
    return `${lines[0]} … ${lines[lines.length - 1]} (${s.length} chars)`;
  }
  if (/\s/.test(s)) return s;
  return `${s.slice(0, max - 24)}…${s.slice(-12)} (${s.length} chars)`;
}

/** An armored block: its first and last lines, the middle counted. */
function armorLines(text) {
  const lines = text.replace(/\n+$/, '').split('\n');
  const body = lines.slice(1, -1).filter((l) => l !== '');
  if (body.length <= 4) return lines.filter((l) => l !== '');
  return [lines[0], body[0], `… ${body.length - 3} more lines …`, ...body.slice(-2), lines[lines.length - 1]];
}

const hex = (b) => Buffer.from(b).toString('hex').replace(/(..)(?=.)/g, '$1 ');

/** JSON for the app view, pretty, with signatures and certificates shortened. */
function appJSON(value) {
  return JSON.stringify(value, (k, v) => (typeof v === 'string' ? shorten(v) : v), 2).split('\n');
}

/** Plaintext JSON for the wire view: one line when short, else pretty; long strings shortened. */
function wireJSON(text) {
  let value;
  try { value = JSON.parse(text); } catch { return [shorten(text, 160)]; }
  const short = (k, v) => (typeof v === 'string' ? shorten(v, 56) : v);
  const line = JSON.stringify(value, short);
  return line.length <= 110 ? [line] : JSON.stringify(value, short, 2).split('\n');
}

function headerView(name, value) {
  if (name === 'X-PGP-Session') return `${value.slice(0, 12)}…${value.slice(-6)} (${value.length} chars, sealed session token)`;
  if (name === 'Cookie') return `AuthSession=… (the CouchDB login cookie, ${value.length} chars)`;
  if (name === 'Authorization') return 'Basic … (admin)';
  return value;
}

function showRequest(method, urlPath, headers, body, what) {
  wire('>', `${method} ${urlPath}`);
  for (const [k, v] of Object.entries(headers)) wire('>', `${k}: ${headerView(k, v)}`);
  if (body === undefined) return;
  if (typeof body !== 'string') {
    wire('>', `${hex(body.subarray(0, 16))} … ${hex(body.subarray(-8))}`);
  } else if (body.startsWith('-----BEGIN ')) {
    wire('>', ...armorLines(body));
  } else {
    wire('>', ...wireJSON(body));
  }
  wire('>', `(${bytes(body)} bytes${what ? `: ${what}` : ''})`);
}

function showResponse(res, text) {
  wire('<', `${res.status} ${res.statusText}`);
  wire('<', `Content-Type: ${res.headers.get('content-type')}`);
  const enc = res.headers.get('x-pgp-encrypted');
  if (enc !== null) wire('<', `X-PGP-Encrypted: ${enc}`);
  if (res.headers.get('set-cookie')) wire('<', 'Set-Cookie: AuthSession=… (the CouchDB login cookie)');
  let parsed = null;
  try { parsed = JSON.parse(text); } catch { /* not JSON: shown as it is */ }
  if (parsed && typeof parsed.pgp === 'string' && Object.keys(parsed).length === 1) {
    wire('<', '{"pgp": the armored message below, as a JSON string}');
    wire('<', ...armorLines(parsed.pgp));
  } else {
    wire('<', ...wireJSON(text));
  }
  wire('<', `(${bytes(text)} bytes)`);
}

// ---- the protocol, checked -----------------------------------------------------------------

let db = null;
const S = { key: null, identity: null, identityFpr: null, sessionCert: null, token: null, cookie: null };

function sessionHeaders() {
  return { 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': S.token, Cookie: S.cookie };
}

/** Sends a sealed message and shows it on the wire; resolves {res, text}. */
async function sendSealed(outerMethod, urlPath, headers, msg, what) {
  showRequest(outerMethod, urlPath, headers, msg, what);
  const res = await db.request(urlPath, { method: outerMethod, auth: null, body: msg, headers });
  const text = await res.text();
  showResponse(res, text);
  return { res, text };
}

/** Opens an encrypted answer: encrypted to our key, signed by `from`, its status the HTTP
 *  status, its nonce our request's (or '' for a refusal made before the body was read, which
 *  counts only as an error). Resolves {status, body (parsed when JSON), nonce}. */
async function openAnswer({ res, text }, env, from) {
  expect(res.headers.get('x-pgp-encrypted') === '1',
    `${env.method} ${env.path}: answered without X-PGP-Encrypted: 1 (${res.status} ${shorten(text, 200)})`);
  let pgp;
  try { pgp = JSON.parse(text).pgp; } catch (e) { throw new DemoFailure(`${env.method} ${env.path}: the answer is not {"pgp": ...}: ${e.message}`); }
  expect(typeof pgp === 'string', `${env.method} ${env.path}: the answer has no "pgp" member`);
  let answer;
  try {
    answer = await open(pgp, S.key.privateKey, from);
  } catch (e) {
    throw new DemoFailure(`${env.method} ${env.path}: the answer does not open with our key or is not signed by ${from.getFingerprint().toUpperCase()}: ${e.message}`);
  }
  expect(answer.status === res.status, `${env.method} ${env.path}: the signed status ${answer.status} differs from the HTTP status ${res.status}`);
  const refusedUnread = answer.nonce === '' && answer.status >= 400;
  expect(answer.nonce === env.nonce || refusedUnread, `${env.method} ${env.path}: the answer is for another request (nonce ${answer.nonce})`);
  let body = answer.body;
  try { body = JSON.parse(answer.body); } catch { /* not JSON: kept as text */ }
  return { status: answer.status, body, nonce: answer.nonce, contentType: answer.content_type };
}

/** An encrypted request in the session: envelope signed by our key, encrypted to the session
 *  key; the answer opened and checked. GET is sent as POST, the envelope names the method. */
async function request(method, urlPath, body = '') {
  const [p, query = ''] = urlPath.split('?');
  const env = envelope(method, p, query, body);
  const msg = await seal(env, S.sessionCert, S.key.privateKey);
  app('>', `${method} ${urlPath}`, ...(body ? appJSON(JSON.parse(body)) : []));
  const outer = method === 'GET' || method === 'HEAD' ? 'POST' : method;
  const sent = await sendSealed(outer, urlPath, sessionHeaders(), msg,
    `method ${method}, body, timestamp and nonce inside, encrypted to the session key, signed by the client key`);
  const answer = await openAnswer(sent, env, S.sessionCert);
  app('<', `${answer.status} ${typeof answer.body === 'string' ? answer.body : ''}`.trimEnd(),
    ...(typeof answer.body === 'string' ? [] : appJSON(answer.body)));
  ok(`answer signed by the session key, ${answer.nonce === '' ? 'a refusal made before the body was read (no nonce)' : 'for this request\'s nonce'}, status ${answer.status} as on the wire`);
  return { ...answer, env, msg, outer };
}

/** A plaintext admin request (setup), shown as such. */
async function adminRequest(method, urlPath, body) {
  const headers = { Authorization: db.authHeader };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const text = body === undefined ? undefined : JSON.stringify(body);
  showRequest(method, urlPath, headers, text, 'plaintext, admin setup');
  const res = await db.request(urlPath, { method, body: text, headers: body === undefined ? {} : { 'Content-Type': 'application/json' } });
  const answer = await res.text();
  showResponse(res, answer);
  let parsed = answer;
  try { parsed = JSON.parse(answer); } catch { /* not JSON */ }
  return { status: res.status, body: parsed, text: answer };
}

const UNSIGNED_FIELDS = new Set(['_rev', '_revisions', '_conflicts', '_deleted_conflicts', '_revs_info',
  '_local_seq', 'pgp_signatures']);

/** README "Signed documents": the entry by `cert` must verify over the canonical JSON of the
 *  document without the fields CouchDB changes. Throws otherwise. */
async function verifyDocSignature(doc, cert) {
  const fpr = cert.getFingerprint().toUpperCase();
  const entries = (Array.isArray(doc.pgp_signatures) ? doc.pgp_signatures : []).filter((e) => e.signer === fpr);
  if (entries.length !== 1) throw new Error(`expected one signature by ${fpr}, found ${entries.length}`);
  // Attachments are signed over their SHA-256 digests, which this record has no need of.
  if (doc._attachments) throw new Error('documents with attachments are not verified here');
  const payload = Object.fromEntries(Object.entries(doc).filter(([k]) => !UNSIGNED_FIELDS.has(k)));
  const result = await openpgp.verify({
    message: await openpgp.createMessage({ binary: new TextEncoder().encode(jcs(payload)) }),
    signature: await openpgp.readSignature({ binarySignature: Buffer.from(entries[0].sig, 'base64') }),
    verificationKeys: cert, expectSigned: true, format: 'binary',
  });
  await result.signatures[0].verified;
  return fpr;
}

const withoutRev = ({ _rev, ...rest }) => rest;

// ---- the workflow --------------------------------------------------------------------------

async function workflow() {
  out('couch_pgp demo: the seed\'s workflow over real HTTP, in a real CouchDB');
  out(`starting a throw-away copy of ${couchdbHome()} with couch_pgp installed …`);
  db = await CouchDB.start({ ini: INI });
  const welcome = await db.json('/');
  expect(welcome.status === 200 && typeof welcome.body.version === 'string', `GET / answered ${welcome.status} ${welcome.text}`);
  out(`CouchDB ${welcome.body.version} at ${db.url} (copy in ${db.dir}), local.ini: [couch_pgp] ${Object.entries(INI.couch_pgp).map(([k, v]) => `${k} = ${v}`).join(', ')}`);
  // Setup an admin does out of band; the password is not part of what the demo shows.
  const user = await db.json(`/_users/org.couchdb.user:${USER}`, {
    method: 'PUT', body: { name: USER, password: PASSWORD, roles: [], type: 'user' },
  });
  expect(user.status === 201, `creating the user ${USER}: ${user.status} ${user.text}`);
  out(`admin (setup): created the user "${USER}" in _users, password: ****`);

  step(1, 'client: C = new Security() — a fresh key pair (pgp_client.mjs newKey, OpenPGP.js)');
  S.key = await newKey('couch_pgp demo client');
  expect(/^[0-9A-F]{40}$/.test(S.key.fingerprint), `client key fingerprint ${S.key.fingerprint}`);
  expect(S.key.privateKey instanceof openpgp.PrivateKey, 'pgp_client.mjs and this script load two different OpenPGP.js modules');
  app(' ', `client key ${S.key.fingerprint} (v4, Ed25519 signing, Cv25519 encryption; the secret stays here)`);

  step(2, 'client: GET /_pgp (no authentication) — the server identity, pinned');
  showRequest('GET', '/_pgp', {});
  const idRes = await db.request('/_pgp', { auth: null });
  const idText = await idRes.text();
  showResponse(idRes, idText);
  expect(idRes.status === 200, `GET /_pgp answered ${idRes.status} ${idText}`);
  const id = JSON.parse(idText);
  expect(/^[0-9A-F]{40}$/.test(id.fingerprint), `GET /_pgp: fingerprint ${id.fingerprint}`);
  S.identity = await openpgp.readKey({ armoredKey: id.cert });
  const certFpr = S.identity.getFingerprint().toUpperCase();
  app('<', `identity ${id.fingerprint}, profile ${id.profile}, certificate ${certFpr}`);
  expect(certFpr === id.fingerprint, `the certificate's fingerprint ${certFpr} is not the announced ${id.fingerprint}`);
  S.identityFpr = id.fingerprint;
  ok(`pinned server identity ${S.identityFpr} (the certificate's own fingerprint equals the announced one)`);

  step(3, 'client: encrypted login — POST /_session encrypted to the pinned identity, signed by the client key');
  const loginEnv = envelope('POST', '/_session', '', JSON.stringify({ name: USER, password: PASSWORD }),
    { client_cert: S.key.publicKey.armor() });
  const loginMsg = await seal(loginEnv, S.identity, S.key.privateKey);
  app('>', 'POST /_session', `{"name": "${USER}", "password": "****"}`, `client_cert: the client's public key ${S.key.fingerprint}`);
  const login = await sendSealed('POST', '/_session', { 'Content-Type': 'application/pgp-encrypted' }, loginMsg,
    'name and password (encrypted), client_cert, timestamp and nonce, encrypted to the identity key');
  const loginAnswer = await openAnswer(login, loginEnv, S.identity);
  expect(loginAnswer.status === 200, `encrypted login: ${loginAnswer.status} ${JSON.stringify(loginAnswer.body)}`);
  const { pgp_session: desc, ...couchLogin } = loginAnswer.body;
  app('<', `${loginAnswer.status}`, ...appJSON({ ...couchLogin, pgp_session: desc && { token: desc.token, session_cert: desc.session_cert, '…': 'statement: step 4' } }));
  expect(couchLogin.ok === true && couchLogin.name === USER, `encrypted login answered ${JSON.stringify(couchLogin)}`);
  expect(desc && typeof desc.token === 'string', 'the login answer carries no pgp_session');
  const setCookie = login.res.headers.get('set-cookie') || '';
  expect(/^AuthSession=[^;]+/.test(setCookie), 'the login answer sets no AuthSession cookie');
  S.cookie = setCookie.split(';')[0];
  S.token = desc.token;
  ok(`logged in as ${USER}: answer encrypted to the client key and signed by the identity key, for our nonce`);

  step(4, 'client: the session statement, verified (checkSession)');
  note('(nothing new on the wire: the statement came inside step 3\'s encrypted answer)');
  app('<', ...appJSON(JSON.parse(desc.statement)));
  S.sessionCert = await checkSession(desc, S.identity, S.key.fingerprint);
  const statement = JSON.parse(desc.statement);
  expect(statement.user === USER, `the statement names the user ${statement.user}`);
  expect(statement.expires * 1000 > Date.now(), `the session expired at ${statement.expires}`);
  ok(`statement signed by the pinned identity ${S.identityFpr}`);
  ok(`it names our key ${S.key.fingerprint} and the session key ${statement.session_fingerprint}, the one in session_cert`);

  step(5, 'client: registers its certificate, with proof of possession — POST /_pgp/certs');
  const proofText = jcs({ action: 'register', fingerprint: S.key.fingerprint, user: USER });
  const proof = await openpgp.sign({
    message: await openpgp.createMessage({ text: proofText }), signingKeys: S.key.privateKey, detached: true,
  });
  note(`proof: a detached signature by the key itself over ${proofText}`);
  const reg = await request('POST', '/_pgp/certs', JSON.stringify({ cert: S.key.publicKey.armor(), signature: proof }));
  expect(reg.status === 201 && reg.body.ok === true, `POST /_pgp/certs: ${reg.status} ${JSON.stringify(reg.body)}`);
  expect(Array.isArray(reg.body.fingerprints) && reg.body.fingerprints.includes(S.key.fingerprint),
    `POST /_pgp/certs: ${S.key.fingerprint} is not among ${JSON.stringify(reg.body.fingerprints)}`);
  ok(`certificate ${S.key.fingerprint} registered to ${USER}: signed-only databases accept documents it signs`);

  step(6, `admin: creates the database "${DB}", signed-only; an unsigned write is refused`);
  const created = await adminRequest('PUT', `/${DB}`);
  expect(created.status === 201, `PUT /${DB}: ${created.status} ${created.text}`);
  const security = await adminRequest('PUT', `/${DB}/_security`, {
    members: { names: [USER], roles: [] }, admins: { names: [], roles: [] }, couch_pgp: { signed: true },
  });
  expect(security.status === 200 && security.body.ok === true, `PUT /${DB}/_security: ${security.status} ${security.text}`);
  const signedDbs = await db.json('/_node/_local/_config/couch_pgp/signed_dbs');
  expect(signedDbs.status === 200 && signedDbs.body === DB, `[couch_pgp] signed_dbs is ${signedDbs.text}`);
  ok(`${DB} is signed-only twice over: [couch_pgp] signed_dbs = ${signedDbs.body}, and _security couch_pgp.signed = true`);
  const unsigned = await request('PUT', `/${DB}/${encodeURIComponent('note:unsigned')}`, JSON.stringify({ _id: 'note:unsigned', text: 'no signature' }));
  expect(unsigned.status === 403 && unsigned.body.error === 'forbidden',
    `an unsigned write answered ${unsigned.status} ${JSON.stringify(unsigned.body)}`);
  const notStored = await db.json(`/${DB}/${encodeURIComponent('note:unsigned')}`);
  expect(notStored.status === 404, `the refused unsigned document is stored: ${notStored.status} ${notStored.text}`);
  ok(`unsigned write refused: ${unsigned.status} ${JSON.stringify(unsigned.body)}; nothing stored`);

  step(7, `client: signed and encrypted write — PUT ${RECORD_PATH}`);
  const signed = await signDoc(RECORD, S.key);
  note('the client signs the record over its RFC 8785 canonical JSON (C.signDoc), then encrypts the request');
  const write = await request('PUT', RECORD_PATH, JSON.stringify(signed));
  expect(write.status === 201 && write.body.ok === true && write.body.id === RECORD_ID && /^1-/.test(write.body.rev),
    `the signed write answered ${write.status} ${JSON.stringify(write.body)}`);
  ok(`stored as ${write.body.id}, rev ${write.body.rev}: the server checked the signature against ${USER}'s registered certificate`);

  step(8, 'client: reads it back encrypted and verifies the document signature');
  const read = await request('GET', RECORD_PATH);
  expect(read.status === 200, `reading ${RECORD_ID}: ${read.status} ${JSON.stringify(read.body)}`);
  expect(read.body._rev === write.body.rev, `read rev ${read.body._rev}, written ${write.body.rev}`);
  expect(jcs(withoutRev(read.body)) === jcs(signed), 'the record read back differs from the one written');
  const signer = await verifyDocSignature(read.body, S.key.publicKey);
  ok(`document signature verified: signed by ${signer} (the client's certificate)`);
  const altered = { ...read.body, temperature: 38.5 };
  let alteredError = null;
  await verifyDocSignature(altered, S.key.publicKey).catch((e) => { alteredError = e; });
  expect(alteredError !== null, 'a copy with a changed temperature still verifies');
  ok(`a copy with temperature 38.5 fails verification: ${alteredError.message}`);

  step(9, 'attacker: a tampered request and a replayed one are refused; the record is unchanged');
  note('the client sends an update (temperature 38.1); on the way, one byte of the ciphertext is flipped');
  const update = await signDoc({ ...withoutRev(signed), temperature: 38.1, _rev: read.body._rev }, S.key);
  const tamperEnv = envelope('PUT', RECORD_PATH, '', JSON.stringify(update));
  const tampered = await seal(tamperEnv, S.sessionCert, S.key.privateKey, { armor: false });
  // Inside the encrypted integrity-protected data, near its end: the server must see the
  // change however small, and must not run the update.
  const at = tampered.length - 10;
  const was = tampered[at];
  tampered[at] ^= 0x01;
  app('>', `PUT ${RECORD_PATH}`, ...appJSON(update));
  const tamperSent = await sendSealed('PUT', RECORD_PATH, sessionHeaders(), tampered,
    `binary OpenPGP, byte ${at} flipped: 0x${was.toString(16).padStart(2, '0')} -> 0x${tampered[at].toString(16).padStart(2, '0')}`);
  const tamperAnswer = await openAnswer(tamperSent, tamperEnv, S.sessionCert);
  app('<', `${tamperAnswer.status} ${JSON.stringify(tamperAnswer.body)}`);
  expect(tamperAnswer.status === 400 && tamperAnswer.body.error === 'pgp_bad_message',
    `the tampered request answered ${tamperAnswer.status} ${JSON.stringify(tamperAnswer.body)}`);
  ok(`tampered request refused: ${tamperAnswer.status} {"error":"${tamperAnswer.body.error}","reason":"${tamperAnswer.body.reason}"}`);

  note(`an attacker who captured step 7's request sends the very same bytes again`);
  const replaySent = await sendSealed(write.outer, RECORD_PATH, sessionHeaders(), write.msg, 'the same bytes as step 7');
  const replayAnswer = await openAnswer(replaySent, write.env, S.sessionCert);
  app('<', `${replayAnswer.status} ${JSON.stringify(replayAnswer.body)}`);
  expect(replayAnswer.status === 400 && replayAnswer.body.error === 'pgp_replay',
    `the replayed request answered ${replayAnswer.status} ${JSON.stringify(replayAnswer.body)}`);
  ok(`replayed request refused: ${replayAnswer.status} {"error":"${replayAnswer.body.error}","reason":"${replayAnswer.body.reason}"}`);

  note('the client reads the record again');
  const again = await request('GET', RECORD_PATH);
  expect(again.status === 200 && again.body._rev === read.body._rev && jcs(again.body) === jcs(read.body),
    `after the refused requests the record is ${again.status} ${JSON.stringify(again.body)}`);
  await verifyDocSignature(again.body, S.key.publicKey);
  ok(`the stored record is unchanged: rev ${again.body._rev}, temperature ${again.body.temperature}, signature still verifies`);

  step(10, 'admin: what CouchDB stores, read in plaintext (couch_pgp protects the traffic, not the disk)');
  const stored = await db.json(RECORD_PATH);
  expect(stored.status === 200, `the admin's read: ${stored.status} ${stored.text}`);
  for (const l of appJSON(stored.body)) out(`   stored  ${l}`);
  expect(jcs(stored.body) === jcs(read.body), 'what CouchDB stores differs from what the client read');
  await verifyDocSignature(stored.body, S.key.publicKey);
  ok(`stored is exactly the signed document the client wrote (rev ${stored.body._rev}); anyone with ${USER}'s certificate can verify it later`);

  out();
  out('couch_pgp demo: all 10 steps behaved as expected');
}

// ---- afterwards: stop, or keep the node up for the demo page --------------------------------

async function stopNode() {
  if (!db) return;
  const dir = db.dir;
  const instance = db;
  db = null;
  await instance.stop();
  expect(!fs.existsSync(dir) || process.env.COUCH_PGP_IT_KEEP, `${dir} is still there after stop()`);
  out(`CouchDB stopped; ${process.env.COUCH_PGP_IT_KEEP ? 'kept' : 'removed'} ${dir}`);
}

/** The page and the client module it loads are served: the URL printed next must work. */
async function checkDemoPage() {
  current = { n: 0, title: 'checking the demo page' };
  for (const [p, type] of [['/_pgp/demo', /^text\/html/], ['/_pgp/client.js', /^text\/javascript/]]) {
    const r = await db.request(p, { auth: null });
    const body = await r.text();
    expect(r.status === 200 && type.test(r.headers.get('content-type') || '') && body.length > 0,
      `GET ${p} answered ${r.status} ${r.headers.get('content-type')} (${body.length} bytes)`);
  }
}

function serve() {
  return new Promise((resolve) => {
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    // The harness's own handlers kill the node at once and exit 130; here a signal is the
    // normal way to end the demo, so the node gets a clean stop first. They stay as the
    // answer to a second signal, should the clean stop hang.
    const harness = Object.fromEntries(signals.map((s) => [s, process.listeners(s)]));
    let stopping = null;
    let failures = 0;
    const finish = (why, code) => {
      if (stopping) return;
      stopping = why;
      clearTimeout(limit);
      clearInterval(health);
      out();
      out(`${why}: stopping CouchDB …`);
      resolve(code);
    };
    for (const s of signals) {
      for (const l of harness[s]) process.removeListener(s, l);
      process.on(s, () => {
        if (!stopping) return finish(`got ${s}`, 0);
        for (const l of harness[s]) l(s);
        return undefined;
      });
    }
    const limit = setTimeout(() => finish(`time limit of ${MINUTES} minutes reached`, 0), MINUTES * 60 * 1000);
    // The page is useless on a dead node: say so instead of waiting out the hour.
    const health = setInterval(async () => {
      try {
        const r = await db.request('/_up', { auth: null, timeoutMs: 10000 });
        await r.arrayBuffer();
        failures = r.status === 200 ? 0 : failures + 1;
      } catch {
        failures += 1;
      }
      if (failures >= 2 && !stopping) {
        process.stderr.write(`couchdb_demo: CouchDB at ${db.url} stopped answering /_up\n${db.logTail(40)}\n`);
        finish('CouchDB stopped answering', 1);
      }
    }, 15000);

    out();
    out('== The node stays up for the demo page');
    out(`   demo page:  ${db.url}/_pgp/demo`);
    out(`   user:       ${USER}`);
    out(`   password:   ${PASSWORD}`);
    out(`   pin:        ${groups(S.identityFpr)}`);
    out('               (the page pins the server on first use; compare it with this)');
    out(`   database:   ${DB} (signed-only; the page makes and registers its own signing key,`);
    out(`               and lists ${RECORD_ID} as "signed by another key": this script's)`);
    out(`   Ctrl-C stops it; it stops by itself in ${MINUTES} minutes (COUCH_PGP_DEMO_MINUTES).`);
  });
}

let code = 0;
try {
  if (!fs.existsSync(path.join(couchdbHome(), 'bin', 'couchdb'))) {
    throw new DemoFailure(`no CouchDB release at ${couchdbHome()}: set COUCHDB_HOME to a CouchDB 3.x release`);
  }
  await workflow();
  if (!NO_WAIT) {
    await checkDemoPage();
    code = await serve();
  }
  await stopNode();
} catch (e) {
  code = 1;
  const where = current.n ? `step ${current.n} (${current.title})` : current.title;
  process.stderr.write(`\ncouchdb_demo: FAILED at ${where}: ${e instanceof DemoFailure ? e.message : e.stack}\n`);
  if (db) {
    process.stderr.write(`${db.logTail(40)}\n`);
    try {
      await stopNode();
    } catch (stopError) {
      process.stderr.write(`couchdb_demo: stopping CouchDB failed too: ${stopError.stack}\n`);
    }
  }
}
process.exit(code);
