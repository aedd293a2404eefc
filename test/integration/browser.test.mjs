// The browser client end to end: Debian's Chromium, headless, driven by playwright-core
// (executablePath: nothing downloads a browser), against a real CouchDB with the plugin
// installed. The demo page is used as a user would (sign in, save, read back, list), the
// client module directly for what the page does not show (changes through the tunnel, the
// seed's Security API, tampered signatures, the key store), and every byte that crossed the
// network is checked for the record's plaintext and the password.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CouchDB, couchdbSkip, skipUnless, REPO } from './couchdb.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const skip = couchdbSkip()
  || skipUnless(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);
const SCREENSHOT = path.join(REPO, '_build', 'test-artifacts', 'demo-page.png');
fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });

// What the record holds and the password: none of it may appear on the wire.
const PATIENT = { family: 'Okonkwo-Lindqvist', given: 'Marguerite', dob: '1961-04-17', mrn: 'MRN-88421907',
  allergies: 'penicillin (anaphylaxis)', note: 'Suspected pulmonary embolism, CT angiogram ordered' };
const PASSWORD = 'alice-Browser-pw-31';
const SECRETS = [PATIENT.family, PATIENT.given, PATIENT.mrn, 'anaphylaxis', 'pulmonary embolism', PASSWORD];

describe('browser client in Chromium against CouchDB', { skip, timeout: 600000 }, () => {
  let db; let browser; let page; let identity;
  const traffic = []; // {url, method, requestHeaders, requestBody, status, responseHeaders, responseBody}
  const pending = [];
  let closing = false;

  before(async () => {
    const { chromium } = await import('playwright-core');
    db = await CouchDB.start({ ini: { couch_pgp: { signed_dbs: 'patients' } } });
    const u = await db.json('/_users/org.couchdb.user:alice', {
      method: 'PUT', body: { name: 'alice', password: PASSWORD, roles: [], type: 'user' },
    });
    assert.equal(u.status, 201, u.text);
    for (const name of ['patients', 'scans']) {
      assert.equal((await db.json(`/${name}`, { method: 'PUT' })).status, 201);
      const sec = await db.json(`/${name}/_security`, { method: 'PUT', body: { members: { names: ['alice'] }, admins: {} } });
      assert.equal(sec.status, 200, sec.text);
    }
    identity = (await db.json('/_pgp', { auth: null })).body.fingerprint;

    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
        '--no-first-run', '--disable-extensions', '--disable-sync', '--metrics-recording-only'],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') console.log(`# browser console: ${m.text()}`); });
    page.on('response', (r) => {
      // The demo page keeps syncing in the background (PouchDB, live): answers that arrive
      // while the browser closes are not part of any test.
      if (closing) return;
      pending.push((async () => {
        const req = r.request();
        let body = '';
        try { body = (await r.body()).toString('utf8'); } catch { /* no body (redirect, HEAD) */ }
        traffic.push({ url: req.url(), method: req.method(), requestHeaders: await req.allHeaders(),
          requestBody: req.postDataBuffer()?.toString('utf8') || '', status: r.status(),
          responseHeaders: await r.allHeaders(), responseBody: body });
      })().catch((e) => { if (!closing) throw e; }));
    });
  });

  after(async () => {
    closing = true;
    await Promise.allSettled(pending.splice(0));
    if (browser) await browser.close();
    if (db) await db.stop();
  });

  const state = (s) => page.waitForSelector(`body[data-state="${s}"]`, { timeout: 60000 });
  const settle = async () => { await Promise.all(pending.splice(0)); };

  test('GET /_pgp/demo and /_pgp/client.js are served with their types and a strict CSP', async () => {
    const page0 = await db.request('/_pgp/demo', { auth: null });
    assert.equal(page0.status, 200);
    assert.match(page0.headers.get('content-type'), /^text\/html/);
    assert.match(page0.headers.get('content-security-policy'), /script-src 'self'/);
    assert.equal(page0.headers.get('x-content-type-options'), 'nosniff');
    const js = await db.request('/_pgp/client.js', { auth: null });
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type'), /^text\/javascript/);
    assert.match(await js.text(), /OpenPGP\.js v6\.3\.2/); // the bundle carries its licence notice
    assert.equal((await db.request('/_pgp/client.d.ts', { auth: null })).status, 200);
    assert.equal((await db.request('/_pgp/..%2fcouch_pgp_nif.so', { auth: null })).status, 404);
    assert.equal((await db.request('/_pgp/demo', { method: 'DELETE', auth: null })).status, 405);
  });

  test('the demo page shows the server identity before sign-in', async () => {
    await page.goto(`${db.url}/_pgp/demo`);
    await state('ready');
    assert.equal((await page.textContent('#server-fpr')).replace(/\s/g, ''), identity);
  });

  test('a pin that does not match is refused before any credential is sent', async () => {
    const wrong = identity.slice(0, -1) + (identity.endsWith('0') ? '1' : '0');
    await page.fill('#pin', wrong);
    await page.fill('#user', 'alice');
    await page.fill('#password', PASSWORD);
    await page.click('#login-button');
    await page.waitForSelector('body[data-last-error="pin_mismatch"]');
    assert.match(await page.textContent('#alert'), /does not match the pinned fingerprint/);
    await settle();
    assert.ok(!traffic.some((t) => new URL(t.url).pathname === '/_session'), 'no login was attempted');
  });

  test('sign in (trust on first use), save a signed encrypted record, read it back verified, list it through the tunnel', async () => {
    await page.fill('#pin', '');
    await page.fill('#password', PASSWORD);
    await page.click('#login-button');
    await state('signed-in');
    assert.equal((await page.textContent('#session-user')), 'alice');
    assert.equal((await page.inputValue('#pin')), identity, 'first use pinned the identity');
    await page.fill('#family', PATIENT.family);
    await page.fill('#given', PATIENT.given);
    await page.fill('#dob', PATIENT.dob);
    await page.fill('#mrn', PATIENT.mrn);
    await page.fill('#allergies', PATIENT.allergies);
    await page.fill('#note', PATIENT.note);
    await page.click('#save-button');
    await page.waitForSelector('body[data-saved]');
    await page.waitForSelector('body[data-records="1"]');
    assert.match(await page.textContent('#readback-status'), /Signature verified/);
    assert.match(await page.textContent('#records'), new RegExp(PATIENT.family));
    assert.match(await page.textContent('#records'), /verified \(your key\)/);
    const id = await page.getAttribute('body', 'data-saved');

    // On the server: stored as sent (couch_pgp encrypts transport, not storage), signed by a
    // key registered to alice, accepted by a signed-only database (so the server verified the
    // browser's canonical JSON byte for byte).
    const stored = await db.json(`/patients/${id}`);
    assert.equal(stored.status, 200);
    assert.equal(stored.body.mrn, PATIENT.mrn);
    assert.equal(stored.body.pgp_signatures.length, 1);
    const user = await db.json('/_users/org.couchdb.user:alice');
    assert.equal(user.body.pgp_certs.length, 1);
    const verified = await db.rpc(`
      {ok, Doc} = fabric:open_doc(<<"patients">>, <<"${id}">>, [?ADMIN_CTX]),
      case couch_pgp:verify_doc(couch_doc:to_json_obj(Doc, []), [<<${JSON.stringify(user.body.pgp_certs[0])}>>]) of
          {ok, [Signer]} -> binary_to_list(Signer);
          Other -> Other
      end.`
      .replace('?ADMIN_CTX', '{user_ctx, {user_ctx, null, [<<"_admin">>], undefined}}'));
    assert.equal(verified, `"${stored.body.pgp_signatures[0].signer}"`);

    // What the wire carried for it: only POSTs of OpenPGP messages.
    await settle();
    const writes = traffic.filter((t) => t.requestHeaders['content-type'] === 'application/pgp-encrypted');
    assert.ok(writes.length >= 5, `login, certs, put, get, all_docs: ${writes.length}`);
    assert.ok(writes.some((t) => new URL(t.url).pathname === '/_pgp/tunnel'), '_all_docs went through the tunnel');
    for (const t of writes) {
      assert.ok(['POST', 'PUT'].includes(t.method), `${t.method} ${t.url}`);
      assert.equal(t.responseHeaders['x-pgp-encrypted'], '1', t.url);
    }
    // The login is public-key encrypted to the identity (armored); everything after it goes
    // through the session channel by default: binary messages, answered in the channel.
    const login = writes.filter((t) => new URL(t.url).pathname === '/_session');
    assert.equal(login.length, 1);
    assert.match(login[0].requestBody, /^-----BEGIN PGP MESSAGE-----/);
    const channel = writes.filter((t) => t.requestHeaders['x-pgp-channel'] === '1');
    assert.equal(channel.length, writes.length - 1, 'every request after the login in the channel');
    for (const t of channel) {
      assert.equal(t.responseHeaders['x-pgp-channel'], '1', t.url);
      assert.doesNotMatch(t.requestBody, /BEGIN PGP/, 'binary on the wire');
    }
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  test('the client module in the page: _changes, _find and attachments through the tunnel; _changes refused in place', async () => {
    const r = await page.evaluate(async ({ pin, password }) => {
      const { connect, RequestRefusedError } = await import('/_pgp/client.js');
      const c = await connect(location.origin, { pin });
      await c.login('alice', password);
      const ch = await c.request('/patients/_changes?since=0&include_docs=true');
      const body = await ch.json();
      let refused = null;
      try { await c.request('/patients/_changes?since=0', { tunnel: false }); } catch (e) {
        refused = { isRefused: e instanceof RequestRefusedError, status: e.status, code: e.code, message: e.message };
      }
      const whoami = await (await c.request('/_pgp/whoami')).json();
      const found = await (await c.request('/patients/_find', { method: 'POST',
        body: { selector: { type: 'patient' }, fields: ['mrn'] } })).checked();
      // An attachment: bytes up and down through the tunnel, every byte value intact.
      const scan = new Uint8Array(256).map((_, i) => i);
      const doc = await c.putDoc('scans', { _id: 'scan-1', kind: 'xray' });
      const up = await c.request(`/scans/scan-1/chest.bin?rev=${doc.rev}`, { method: 'PUT', body: scan,
        headers: { 'Content-Type': 'application/octet-stream' } });
      const down = await c.request('/scans/scan-1/chest.bin');
      const got = await down.bytes();
      // Logging out ends the CouchDB login (encrypted DELETE /_session) and the session here.
      await c.logout();
      let afterLogout = null;
      try { await c.request('/_pgp/whoami'); } catch (e) { afterLogout = e.code; }
      const cookieGone = (await fetch('/_session', { headers: { Accept: 'application/json' } }).then((x) => x.json())).userCtx.name;
      return { status: ch.status, tunnelled: ch.tunnelled, ids: body.results.map((x) => x.id),
        found: found.docs.map((d) => d.mrn), up: [up.status, up.tunnelled], down: [down.status, down.tunnelled],
        same: got.length === 256 && got.every((b, i) => b === i), afterLogout, cookieGone,
        docs: body.results.map((x) => x.doc?.mrn), refused, whoami, client: await c.security.fingerprint() };
    }, { pin: identity, password: PASSWORD });
    assert.equal(r.status, 200);
    assert.equal(r.tunnelled, true);
    assert.equal(r.ids.length, 1);
    assert.deepEqual(r.docs, [PATIENT.mrn]);
    assert.deepEqual(r.refused, { isRefused: true, status: 406, code: 'not_acceptable', message: r.refused.message },
      r.refused.message);
    assert.match(r.refused.message, /send it through the tunnel/);
    assert.deepEqual(r.whoami, { user: 'alice', encrypted: true, client_fingerprint: r.client });
    assert.deepEqual(r.found, [PATIENT.mrn]);
    assert.deepEqual([r.up, r.down, r.same], [[201, true], [200, true], true]);
    assert.deepEqual([r.afterLogout, r.cookieGone], ['not_logged_in', null]);
    const att = await db.request('/scans/scan-1/chest.bin');
    assert.deepEqual([...new Uint8Array(await att.arrayBuffer())], [...Array(256).keys()], 'stored as sent');
  });

  test('signatures: a changed field or a foreign key fails, the server refuses an unsigned or altered write', async () => {
    const r = await page.evaluate(async ({ pin, password }) => {
      const { connect, verifyDoc, KeyStore, Security, BadSignatureError } = await import('/_pgp/client.js');
      const store = await KeyStore.open('couch_pgp_demo');
      const signer = await store.load('signing:alice');
      store.close();
      const c = await connect(location.origin, { pin });
      await c.login('alice', password);
      const list = await (await c.request('/patients/_all_docs?include_docs=true')).checked();
      const doc = list.rows[0].doc;
      const outcome = async (p) => { try { return await p; } catch (e) { return { code: e.code, bad: e instanceof BadSignatureError }; } };
      const good = await verifyDoc(doc, [signer]);
      const changed = await outcome(verifyDoc({ ...doc, allergies: 'none known' }, [signer]));
      const stranger = await outcome(verifyDoc(doc, [await new Security().ready]));
      const unsigned = await c.request(`/patients/unsigned-${Date.now()}`, { method: 'PUT', body: { type: 'patient' } });
      const altered = await c.request(`/patients/${doc._id}`, { method: 'PUT', body: { ...doc, mrn: 'MRN-0' } });
      return { good, fpr: await signer.fingerprint(), changed, stranger,
        unsigned: [unsigned.status, (await unsigned.json()).error],
        altered: [altered.status, (await altered.json()).error] };
    }, { pin: identity, password: PASSWORD });
    assert.deepEqual(r.good, [r.fpr]);
    assert.deepEqual(r.changed, { code: 'bad_signature', bad: true });
    assert.deepEqual(r.stranger, { code: 'unknown_signer', bad: true });
    assert.deepEqual(r.unsigned, [403, 'forbidden']);
    assert.deepEqual(r.altered, [403, 'forbidden']);
    const stored = await db.json('/patients/_all_docs?include_docs=true');
    assert.equal(stored.body.rows.length, 1);
    assert.equal(stored.body.rows[0].doc.mrn, PATIENT.mrn, 'nothing was overwritten');
  });

  test('a document signed on the server (couch_pgp:sign_doc) verifies in the browser, and fails changed', async () => {
    const out = await db.rpc(`
      {ok, K} = couch_pgp:generate_key(),
      {ok, D} = couch_pgp:sign_doc({[{<<"_id">>, <<"srv-1">>}, {<<"n">>, 1.5}, {<<"big">>, 9007199254740992},
                                     {<<"s">>, <<"caf", 16#e9/utf8, " \\u2028 ", 16#1F600/utf8>>},
                                     {<<"z">>, [null, true, {[{<<"b">>, 1}, {<<"a">>, 2}]}]}]}, K),
      binary_to_list(base64:encode(jiffy:encode({[{<<"doc">>, D}, {<<"cert">>, couch_pgp:public_cert(K)}]}))).`);
    const { doc, cert } = JSON.parse(Buffer.from(JSON.parse(out), 'base64').toString('utf8'));
    const r = await page.evaluate(async ({ doc, cert }) => {
      const { verifyDoc } = await import('/_pgp/client.js');
      const good = await verifyDoc(doc, [cert]);
      let changed = null;
      try { await verifyDoc({ ...doc, n: 1.25 }, [cert]); } catch (e) { changed = e.code; }
      return { good, changed };
    }, { doc, cert });
    assert.deepEqual(r.good, [doc.pgp_signatures[0].signer]);
    assert.equal(r.changed, 'bad_signature');
  });

  test("the seed's Security API and the key store in the browser", async () => {
    const r = await page.evaluate(async () => {
      const { Security, KeyStore } = await import('/_pgp/client.js');
      const C = new Security();
      const S = new Security();
      await S.setRemotePublicKey(await C.getPublicKey());
      await C.setRemotePublicKey(await S.getPublicKey());
      const msg = await C.encode('vitals: BP 128/82');
      const back = await S.decode(msg);
      let twice = null;
      try { await C.setRemotePublicKey(await S.getPublicKey()); } catch (e) { twice = e.code; }
      const signed = await C.signDoc({ _id: 'x', n: 1 });
      const signers = await S.verifyDoc(signed);

      const store = await KeyStore.open('couch_pgp_test');
      await store.save('k', C, { passphrase: 'correct horse' });
      let wrong = null;
      try { await store.load('k', { passphrase: 'nope' }); } catch (e) { wrong = e.code; }
      const loaded = await store.load('k', { passphrase: 'correct horse' });
      store.close();
      // The raw IndexedDB record: wrapped bytes and a non-extractable wrapping key.
      const raw = await new Promise((resolve, reject) => {
        const open = indexedDB.open('couch_pgp_test');
        open.onsuccess = () => {
          const tx = open.result.transaction('keys');
          const s = tx.objectStore('keys');
          const a = s.get('k'); const w = s.get('\u0000wrapping-key');
          tx.oncomplete = () => resolve({ rec: a.result, wk: w.result });
          tx.onerror = () => reject(tx.error);
        };
      });
      return { back, pgp: msg.startsWith('-----BEGIN PGP MESSAGE-----'), twice,
        signers, cFpr: await C.fingerprint(), loadedFpr: await loaded.fingerprint(), wrong,
        extractable: raw.wk.extractable, wrappedHasArmor: new TextDecoder().decode(raw.rec.wrapped).includes('PGP') };
    });
    assert.equal(r.back, 'vitals: BP 128/82');
    assert.equal(r.pgp, true);
    assert.equal(r.twice, 'remote_key_already_set');
    assert.deepEqual(r.signers, [r.cFpr]);
    assert.equal(r.loadedFpr, r.cFpr);
    assert.equal(r.wrong, 'bad_key');
    assert.equal(r.extractable, false);
    assert.equal(r.wrappedHasArmor, false);
  });

  test('nothing of the record or the password crossed the network in plaintext; the screenshot was saved', async () => {
    await settle();
    assert.ok(traffic.length >= 10, `captured ${traffic.length} exchanges`);
    for (const t of traffic) {
      const seen = [t.url, JSON.stringify(t.requestHeaders), t.requestBody, JSON.stringify(t.responseHeaders), t.responseBody]
        .join('\n');
      for (const s of SECRETS) assert.ok(!seen.includes(s), `"${s}" on the wire in ${t.method} ${t.url}`);
    }
    // The check can fail: the same record fetched in plaintext by an admin does show them.
    const plain = await db.request('/patients/_all_docs?include_docs=true');
    assert.ok((await plain.text()).includes(PATIENT.mrn));
    const size = fs.statSync(SCREENSHOT).size;
    assert.ok(size > 20000, `screenshot ${SCREENSHOT} is ${size} bytes`);
    console.log(`# demo page screenshot: ${path.relative(REPO, SCREENSHOT)} (${size} bytes)`);
  });
});
