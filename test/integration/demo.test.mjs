// examples/couchdb_demo.mjs, run as `make demo` runs it: a child process that starts its own
// CouchDB (a copy of $COUCHDB_HOME) and walks through the seed's workflow over HTTP. Checked
// here: every step ran and said what it found, the refusals carry their exact errors, and
// nothing secret crossed the wire in the clear (the password, the record's contents). Then the
// two ways the demo ends when it keeps the node up for the demo page: Ctrl-C, time limit.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { couchdbSkip, REPO } from './couchdb.mjs';

const skip = couchdbSkip();
const DEMO = path.join(REPO, 'examples', 'couchdb_demo.mjs');
// '-' never occurs in base64 armor or hex, so a hit is a leak, never chance.
const PASSWORD = `demo-pw-${randomBytes(6).toString('hex')}-x`;
// What the record holds: none of it may be in a wire line.
const RECORD_SECRETS = ['Müller', 'Anna Müller', 'penicillin', 'MRN-0001', '1984-03-12', 'temperature'];
const RUN_MS = 4 * 60 * 1000;

/** Runs the demo; resolves {code, signal, stdout, stderr}. onStdout(all, child) sees the
 *  output as it grows. A demo that outlives RUN_MS gets SIGTERM (the harness in it then
 *  removes its CouchDB) and the test fails on the exit status. */
function runDemo(args, { env = {}, onStdout } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEMO, ...args], {
      cwd: REPO,
      env: { ...process.env, COUCH_PGP_DEMO_PASSWORD: PASSWORD, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => { stdout += d; if (onStdout) onStdout(stdout, child); });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGTERM'), RUN_MS);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

const wireLines = (out) => out.split('\n').filter((l) => /^ {3}wire [<>] /.test(l));
const appLines = (out) => out.split('\n').filter((l) => /^ {3}app {2}[<> ] /.test(l));

function hasLine(out, line) {
  assert.ok(out.split('\n').includes(line), `no line ${JSON.stringify(line)} in the output:\n${out}`);
}

function match(out, re) {
  const m = re.exec(out);
  assert.ok(m, `no match for ${re} in the output:\n${out}`);
  return m;
}

/** The demo's own temp dir, from its start line; asserts it is gone once the demo ended. */
function assertCleanedUp(out) {
  const [, url, dir] = match(out, /^CouchDB 3\.\d+\.\d+ at (http:\/\/127\.0\.0\.1:\d+) \(copy in (\S+)\), local\.ini: \[couch_pgp\] enable = true, signed_dbs = patients$/m);
  hasLine(out, `CouchDB stopped; removed ${dir}`);
  assert.equal(fs.existsSync(dir), false, `${dir} is still there`);
  return { url, dir };
}

describe('examples/couchdb_demo.mjs against CouchDB', { skip, timeout: 900000 }, () => {
  test('--no-wait: every step of the workflow, checked, and nothing secret on the wire', async () => {
    const r = await runDemo(['--no-wait']);
    const out = r.stdout;
    assert.equal(r.code, 0, `exit ${r.code} ${r.signal ?? ''}\n${r.stderr}\n${out}`);
    assert.doesNotMatch(r.stderr, /FAILED/);

    // The steps, all of them, in order.
    const titles = [
      '1. client: C = new Security() — a fresh key pair (pgp_client.mjs newKey, OpenPGP.js)',
      '2. client: GET /_pgp (no authentication) — the server identity, pinned',
      '3. client: encrypted login — POST /_session encrypted to the pinned identity, signed by the client key',
      '4. client: the session statement, verified (checkSession)',
      '5. client: registers its certificate, with proof of possession — POST /_pgp/certs',
      '6. admin: creates the database "patients", signed-only; an unsigned write is refused',
      '7. client: signed and encrypted write — PUT /patients/patient%3A0001',
      '8. client: reads it back encrypted and verifies the document signature',
      '9. attacker: a tampered request and a replayed one are refused; the record is unchanged',
      '10. admin: what CouchDB stores, read in plaintext (couch_pgp protects the traffic, not the disk)',
    ];
    assert.deepEqual(out.split('\n').filter((l) => l.startsWith('== ')), titles.map((t) => `== ${t}`));
    hasLine(out, 'couch_pgp demo: all 10 steps behaved as expected');

    // 1-2: the client key, the pinned identity, and the certificate checked against it.
    const [, client] = match(out, /^ {3}app {4}client key ([0-9A-F]{40}) \(v4, Ed25519 signing, Cv25519 encryption; the secret stays here\)$/m);
    const [, identity] = match(out, /^ {3}✔ pinned server identity ([0-9A-F]{40}) \(the certificate's own fingerprint equals the announced one\)$/m);
    assert.notEqual(client, identity);
    hasLine(out, '   wire > GET /_pgp');
    hasLine(out, `   wire <   "fingerprint": "${identity}",`);
    hasLine(out, `   app  < identity ${identity}, profile rfc4880, certificate ${identity}`);

    // 3-4: encrypted login, the session statement.
    hasLine(out, '   app  > {"name": "demo", "password": "****"}');
    match(out, /^ {3}wire > \(\d+ bytes: name and password \(encrypted\), client_cert, timestamp and nonce, encrypted to the identity key\)$/m);
    hasLine(out, '   wire < Set-Cookie: AuthSession=… (the CouchDB login cookie)');
    hasLine(out, '   ✔ logged in as demo: answer encrypted to the client key and signed by the identity key, for our nonce');
    hasLine(out, `   app  <   "client_fingerprint": "${client}",`);
    hasLine(out, `   app  <   "identity_fingerprint": "${identity}",`);
    hasLine(out, `   ✔ statement signed by the pinned identity ${identity}`);
    match(out, new RegExp(`^ {3}✔ it names our key ${client} and the session key [0-9A-F]{40}, the one in session_cert$`, 'm'));

    // 5-6: registration with proof, the signed-only database refusing an unsigned write.
    hasLine(out, `     proof: a detached signature by the key itself over {"action":"register","fingerprint":"${client}","user":"demo"}`);
    hasLine(out, `   ✔ certificate ${client} registered to demo: signed-only databases accept documents it signs`);
    hasLine(out, '   ✔ patients is signed-only twice over: [couch_pgp] signed_dbs = patients, and _security couch_pgp.signed = true');
    hasLine(out, '   ✔ unsigned write refused: 403 {"error":"forbidden","reason":"Signed-only database: the document has no pgp_signatures."}; nothing stored');

    // 7-8: the signed, encrypted write and the verified read.
    const [, rev] = match(out, /^ {3}✔ stored as patient:0001, rev (1-[0-9a-f]{32}): the server checked the signature against demo's registered certificate$/m);
    hasLine(out, '   wire > PUT /patients/patient%3A0001');
    hasLine(out, '   wire > POST /patients/patient%3A0001'); // the read: GET travels as POST
    hasLine(out, `   ✔ document signature verified: signed by ${client} (the client's certificate)`);
    hasLine(out, '   ✔ a copy with temperature 38.5 fails verification: Error verifying signed message: Signed digest did not match');
    // Every encrypted exchange's answer was opened and checked: registration, refused unsigned
    // write, write, read, read again after the attacks.
    assert.equal(out.split('\n').filter((l) => /^ {3}✔ answer signed by the session key, for this request's nonce, status \d{3} as on the wire$/.test(l)).length, 5);

    // 9: the attacks, with their exact errors, and the record unchanged.
    match(out, /^ {3}wire > \(\d+ bytes: binary OpenPGP, byte \d+ flipped: 0x[0-9a-f]{2} -> 0x[0-9a-f]{2}\)$/m);
    hasLine(out, '   app  < 400 {"error":"pgp_bad_message","reason":"The encrypted body could not be opened (tampered)."}');
    hasLine(out, '   ✔ tampered request refused: 400 {"error":"pgp_bad_message","reason":"The encrypted body could not be opened (tampered)."}');
    match(out, /^ {3}wire > \(\d+ bytes: the same bytes as step 7\)$/m);
    hasLine(out, '   app  < 400 {"error":"pgp_replay","reason":"This envelope nonce was already used."}');
    hasLine(out, '   ✔ replayed request refused: 400 {"error":"pgp_replay","reason":"This envelope nonce was already used."}');
    hasLine(out, `   ✔ the stored record is unchanged: rev ${rev}, temperature 37.2, signature still verifies`);

    // 10: what is stored is the signed document.
    hasLine(out, '   stored      "family": "Müller",');
    hasLine(out, `   stored        "signer": "${client}",`);
    hasLine(out, `   ✔ stored is exactly the signed document the client wrote (rev ${rev}); anyone with demo's certificate can verify it later`);

    // The wire: ciphertext and the headers that matter, never the password or the record.
    const wire = wireLines(out);
    assert.ok(wire.length > 100, `only ${wire.length} wire lines`);
    for (const expected of ['-----BEGIN PGP MESSAGE-----', '-----END PGP MESSAGE-----', 'Content-Type: application/pgp-encrypted',
      'X-PGP-Session: ', 'X-PGP-Encrypted: 1', '{"pgp": the armored message below, as a JSON string}']) {
      assert.ok(wire.some((l) => l.includes(expected)), `no wire line with ${expected}`);
    }
    for (const l of wire) {
      assert.ok(!l.includes(PASSWORD), `the password on the wire: ${l}`);
      for (const s of RECORD_SECRETS) assert.ok(!l.includes(s), `${s} on the wire: ${l}`);
    }
    // ... while the app saw them: the check above is not vacuous.
    const seen = appLines(out).join('\n');
    for (const s of ['"family": "Müller"', '"penicillin"', '"temperature": 37.2', '"password": "****"']) {
      assert.ok(seen.includes(s), `the app view lacks ${s}`);
    }
    // With --no-wait the password is never printed at all, nor the demo page.
    assert.ok(!out.includes(PASSWORD) && !r.stderr.includes(PASSWORD), 'the password is in the output');
    assert.doesNotMatch(out, /demo page/);
    assertCleanedUp(out);
  });

  test('without --no-wait: the demo page is up with the printed login until Ctrl-C, then the node is stopped', async () => {
    let page = null;
    const r = await runDemo([], {
      env: { COUCH_PGP_DEMO_MINUTES: '10' },
      onStdout: (all, child) => {
        if (page || !all.includes('   Ctrl-C stops it;')) return;
        page = (async () => {
          const [, url] = match(all, /^ {3}demo page: {2}(http:\/\/127\.0\.0\.1:\d+)\/_pgp\/demo$/m);
          const html = await fetch(`${url}/_pgp/demo`);
          assert.equal(html.status, 200);
          assert.match(html.headers.get('content-type'), /^text\/html/);
          await html.arrayBuffer();
          // The printed credentials are the ones the page needs.
          const [, user] = match(all, /^ {3}user: {7}(\S+)$/m);
          const [, password] = match(all, /^ {3}password: {3}(\S+)$/m);
          assert.equal(password, PASSWORD);
          const login = await fetch(`${url}/_session`, {
            method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: user, password }),
          });
          assert.equal(login.status, 200, await login.text());
          const [, pin] = match(all, /^ {3}pin: {8}((?:[0-9A-F]{4} ){9}[0-9A-F]{4})$/m);
          const id = await (await fetch(`${url}/_pgp`)).json();
          assert.equal(pin.replace(/ /g, ''), id.fingerprint);
          return url;
        })().finally(() => child.kill('SIGINT'));
        // Awaited once the demo has ended; until then a failed check must not count as unhandled.
        page.catch(() => {});
      },
    });
    assert.ok(page, `the demo never said it was waiting:\n${r.stderr}\n${r.stdout}`);
    const url = await page;
    assert.equal(r.code, 0, `exit ${r.code} ${r.signal ?? ''}\n${r.stderr}\n${r.stdout}`);
    hasLine(r.stdout, 'couch_pgp demo: all 10 steps behaved as expected');
    hasLine(r.stdout, 'got SIGINT: stopping CouchDB …');
    assert.equal(assertCleanedUp(r.stdout).url, url);
    await assert.rejects(fetch(`${url}/_up`, { signal: AbortSignal.timeout(5000) }), 'CouchDB still answers after the demo ended');
  });

  test('without --no-wait: the node is stopped when COUCH_PGP_DEMO_MINUTES have passed', async () => {
    const r = await runDemo([], { env: { COUCH_PGP_DEMO_MINUTES: '0.05' } });
    assert.equal(r.code, 0, `exit ${r.code} ${r.signal ?? ''}\n${r.stderr}\n${r.stdout}`);
    hasLine(r.stdout, '   Ctrl-C stops it; it stops by itself in 0.05 minutes (COUCH_PGP_DEMO_MINUTES).');
    hasLine(r.stdout, 'time limit of 0.05 minutes reached: stopping CouchDB …');
    assertCleanedUp(r.stdout);
  });
});

test('examples/couchdb_demo.mjs refuses unknown arguments and a bad time limit before starting anything', async () => {
  const bad = await runDemo(['--bogus']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^couchdb_demo: unknown argument "--bogus"\nusage: node examples\/couchdb_demo\.mjs \[--no-wait\]\n$/);
  const minutes = await runDemo([], { env: { COUCH_PGP_DEMO_MINUTES: 'soon' } });
  assert.equal(minutes.code, 2);
  assert.match(minutes.stderr, /COUCH_PGP_DEMO_MINUTES must be a number of minutes/);
  assert.equal(bad.stdout + minutes.stdout, '');
});

// The README's worked example is this script's output: it must keep running as printed.
test('examples/protocol_example.mjs: one encrypted exchange, byte for byte, checked', { skip, timeout: 300000 }, async () => {
  const r = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO, 'examples', 'protocol_example.mjs')],
      { cwd: REPO, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = ''; let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  assert.equal(r.code, 0, r.stderr);
  const env = match(r.stdout, /^request envelope \(the signed plaintext\), exact bytes:\n(\{.*\})$/m)[1];
  const nonce = JSON.parse(env).nonce;
  const resp = match(r.stdout, /^response envelope \(decrypted, signature by the session key checked\), exact bytes:\n(\{.*\})$/m)[1];
  assert.deepEqual(Object.keys(JSON.parse(resp)), ['body', 'content_type', 'nonce', 'status', 'v']);
  assert.equal(JSON.parse(resp).nonce, nonce);
  assert.equal(JSON.parse(resp).status, 201);
  hasLine(r.stdout, 'x-pgp-encrypted: 1');
  assert.doesNotMatch(r.stdout.split('HTTP request as sent:')[1].split('response envelope')[0], /hello/,
    'the wire part of the example carries no plaintext');
});
