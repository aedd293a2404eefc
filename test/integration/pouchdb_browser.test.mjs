// PouchDB in Chromium (IndexedDB adapter) syncing through couch_pgp against a real CouchDB,
// and the demo page's offline editing. Debian's Chromium, headless, driven by playwright-core;
// the page, the client (/_pgp/client.js) and PouchDB (/_pgp/pouchdb.js) all come from the
// plugin, through a recording proxy on 127.0.0.1 that keeps every exchange as it crossed the
// network.
//   - the demo page: a record saved online is pushed and read back verified; offline
//     (context.setOffline), a record is saved to IndexedDB and waits; back online it is
//     synced, and the server holds it as a signed document that verifies;
//   - PouchDB in the page: 1,000 signed EHR-like documents with attachments pushed from
//     IndexedDB and pulled into a fresh IndexedDB database, every signature verified after
//     the round trip; a live sync picks up another client's change (and pushes one of its
//     own); a conflict ends with the same winner and _conflicts in the browser and on the
//     server; the ids, field values and attachments never on the wire; the same sync without
//     couch_pgp (plain PouchDB, plain database, same proxy) timed beside it in the same browser.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CouchDB, couchdbSkip, skipUnless, REPO } from './couchdb.mjs';
import { WireProxy } from './wire_proxy.mjs';
import { connect, Security, verifyDoc } from '../../client/src/index.js';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const skip = couchdbSkip()
  || skipUnless(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);
const ARTIFACTS = path.join(REPO, '_build', 'test-artifacts');
fs.mkdirSync(ARTIFACTS, { recursive: true });

const DB = 'ehr'; // encryption-required and signed-only
const PLAIN = 'ehr_plain';
const DEMO_DB = 'patients'; // signed-only: the demo page's
const N = 1000;
const ALICE = { username: 'alice', password: `alice-Idb-pw-${randomBytes(4).toString('hex')}` };
const hex = (n = 6) => randomBytes(n).toString('hex');

// Everything the documents hold that must never be on the wire: ids, field values, attachments.
const secrets = [];
function record(i) {
  const id = `pt-${hex()}`;
  const scan = randomBytes(48 + (i % 32));
  const doc = {
    _id: id, type: 'encounter', mrn: `MRN-${hex()}`,
    patient: { family: `Family${hex(4)}`, given: `Given${hex(4)}`, dob: `19${10 + (i % 89)}-0${1 + (i % 9)}-1${i % 10}` },
    note: `Diagnosis ${hex(5)}: follow-up in ${i % 12} weeks`,
    _attachments: { 'scan.bin': { content_type: 'application/octet-stream', data: scan.toString('base64') } },
  };
  secrets.push(id, doc.mrn, doc.patient.family, doc.patient.given, doc.note, scan.toString('base64'),
    scan.subarray(0, 24).toString('latin1'));
  return doc;
}

describe('PouchDB in Chromium (IndexedDB) syncs through couch_pgp; the demo page edits offline', { skip, timeout: 600000 }, () => {
  let db; let proxy; let browser; let context; let page; let pin;
  let other; let otherSigner; // "another client": node, its own login and signing key

  before(async () => {
    const { chromium } = await import('playwright-core');
    db = await CouchDB.start({ ini: { couch_pgp: { signed_dbs: `${DB},${DEMO_DB}` } } });
    const u = await db.json(`/_users/org.couchdb.user:${ALICE.username}`, {
      method: 'PUT', body: { name: ALICE.username, password: ALICE.password, roles: [], type: 'user' } });
    assert.equal(u.status, 201, u.text);
    for (const name of [DB, PLAIN, DEMO_DB]) {
      assert.equal((await db.json(`/${name}`, { method: 'PUT' })).status, 201);
      const sec = await db.json(`/${name}/_security`, { method: 'PUT', body: { members: { names: ['alice'] }, admins: {} } });
      assert.equal(sec.status, 200, sec.text);
    }
    const set = await db.json('/_node/_local/_config/couch_pgp/require_encryption_dbs', { method: 'PUT', body: JSON.stringify(DB) });
    assert.equal(set.status, 200, set.text);
    pin = (await db.json('/_pgp', { auth: null })).body.fingerprint;
    proxy = await WireProxy.start(db.url);

    other = await connect(proxy.url, { pin, tunnel: 'always' }); // ids in paths: the tunnel hides them
    await other.login(ALICE.username, ALICE.password);
    otherSigner = await new Security({ userID: 'alice (other device)', lifetime: 0 }).ready;
    // /_pgp/certs is couch_pgp's own endpoint, not CouchDB's: it is not run through the tunnel.
    const registrar = await connect(proxy.url, { pin });
    await registrar.login(ALICE.username, ALICE.password);
    await registrar.registerCertificate(otherSigner);

    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-dev-shm-usage',
        '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-extensions'],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    page = await context.newPage();
    // A 404 answer to a fetch is logged by Chromium as an error: PouchDB looks for checkpoints
    // that do not exist yet (the tunnel carries the inner status). Not worth a line each.
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 404/.test(m.text())) console.log(`# browser console: ${m.text()}`);
    });
    page.on('pageerror', (e) => console.log(`# page error: ${e.message}`));
  });

  after(async () => {
    if (browser) await browser.close();
    if (proxy) await proxy.stop();
    if (db) await db.stop();
  });

  /** A document as stored on the server (read inside the node: an encryption-required
   *  database refuses even the admin's plaintext requests), and the signers couch_pgp's own
   *  verify_doc finds for it with alice's registered certificates. */
  async function serverVerified(dbName, id) {
    const certs = (await db.json('/_users/org.couchdb.user:alice')).body.pgp_certs;
    const out = await db.rpc(`
      {ok, Doc} = fabric:open_doc(<<"${dbName}">>, <<"${id}">>, [{user_ctx, {user_ctx, null, [<<"_admin">>], undefined}}]),
      Certs = [${certs.map((c) => `<<${JSON.stringify(c)}>>`).join(', ')}],
      Json = couch_doc:to_json_obj(Doc, [attachments]),
      case couch_pgp:verify_doc(Json, Certs) of
          {ok, Signers} -> binary_to_list(base64:encode(jiffy:encode({[{doc, Json}, {signers, Signers}]})));
          Other -> Other
      end.`);
    assert.match(out, /^"/, `verify_doc on the server: ${out}`);
    return JSON.parse(Buffer.from(JSON.parse(out), 'base64').toString('utf8'));
  }

  test('GET /_pgp/pouchdb.js: PouchDB as one ES module, with its licence notice', async () => {
    const r = await db.request('/_pgp/pouchdb.js', { auth: null });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/javascript/);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    const text = await r.text();
    assert.match(text, /^\/\*! PouchDB 9\.0\.0 .*Apache-2\.0/);
    assert.match(text, /export\s*\{[^}]*as default/);
  });

  const secretsOfDemo = [];

  test('the demo page: saved online it is pushed and verified; offline it waits on the device; back online it syncs, signed', async () => {
    const sync = (s) => page.waitForSelector(`body[data-sync="${s}"]`, { timeout: 60000 });
    await page.goto(`${proxy.url}/_pgp/demo?db=${DEMO_DB}`);
    await page.waitForSelector('body[data-state="ready"]');
    await page.fill('#pin', pin);
    await page.fill('#user', ALICE.username);
    await page.fill('#password', ALICE.password);
    await page.click('#login-button');
    await page.waitForSelector('body[data-state="signed-in"]');
    await sync('synced');

    const fill = async (r) => {
      for (const [k, v] of Object.entries(r)) await page.fill(`#${k}`, v);
      secretsOfDemo.push(r.family, r.given, r.mrn, r.note);
    };
    await fill({ family: `Online${hex(3)}`, given: 'Ines-Marguerite', dob: '1970-02-03', mrn: `MRN-ON-${hex(3)}`, note: `Asthma ${hex(3)}` });
    await page.click('#save-button');
    await page.waitForSelector('body[data-saved]');
    await page.waitForSelector('body[data-records="1"]');
    assert.match(await page.textContent('#readback-status'), /Signature verified/);
    const onlineId = await page.getAttribute('body', 'data-saved');
    secretsOfDemo.push(onlineId);

    await context.setOffline(true);
    await sync('offline');
    const offlineRecord = { family: `Offline${hex(3)}`, given: 'Tomas-Bartholomew', dob: '1955-11-30', mrn: `MRN-OFF-${hex(3)}`, note: `Gouty arthritis ${hex(3)}` };
    await fill(offlineRecord);
    await page.click('#save-button');
    await page.waitForFunction((prev) => document.body.dataset.saved !== prev, onlineId);
    await page.waitForSelector('body[data-records="2"][data-pending="1"]');
    const offlineId = await page.getAttribute('body', 'data-saved');
    assert.notEqual(offlineId, onlineId);
    secretsOfDemo.push(offlineId);
    assert.match(await page.textContent('#sync-status'), /Offline: 1 record waiting on this device/);
    assert.match(await page.textContent('#records'), /on this device only/);
    assert.equal((await db.json(`/${DEMO_DB}/${offlineId}`)).status, 404, 'not on the server while offline');
    assert.match(await page.textContent('#readback-status'), /Saved on this device, signed\. Offline/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'demo-offline.png'), fullPage: true });

    await context.setOffline(false);
    await page.waitForSelector('body[data-sync="synced"][data-pending="0"]', { timeout: 60000 });
    assert.doesNotMatch(await page.textContent('#records'), /on this device only/);
    assert.match(await page.textContent('#readback-status'), /Synced: sent encrypted/);
    const { doc, signers } = await serverVerified(DEMO_DB, offlineId);
    assert.equal(doc.mrn, offlineRecord.mrn);
    assert.equal(doc.name.family, offlineRecord.family);
    assert.equal(doc.pgp_signatures.length, 1);
    assert.deepEqual(signers, [doc.pgp_signatures[0].signer], 'the server verifies the offline record');
    assert.equal((await serverVerified(DEMO_DB, onlineId)).signers.length, 1);
    await page.screenshot({ path: path.join(ARTIFACTS, 'demo-synced.png'), fullPage: true });

    // Another device's record reaches the page through the live sync.
    const fromElsewhere = await otherSigner.signDoc({ _id: `patient-${hex()}`, type: 'patient',
      name: { family: `Remote${hex(3)}`, given: 'Ada' }, birthDate: '1988-08-08', mrn: `MRN-RM-${hex(3)}` });
    secretsOfDemo.push(fromElsewhere._id, fromElsewhere.name.family, fromElsewhere.mrn);
    await other.putDoc(DEMO_DB, fromElsewhere);
    await page.waitForSelector('body[data-records="3"]', { timeout: 30000 });
    assert.match(await page.textContent('#records'), /signed by another key/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'demo-offline-synced.png'), fullPage: true });
    await page.evaluate(() => document.getElementById('refresh-button').click()); // Sync now: restarts cleanly
    await sync('synced');
  });

  const timing = {};
  let docs;

  test(`PouchDB in the page: ${N} signed documents with attachments pushed from IndexedDB and pulled into a fresh one, all verified`, async () => {
    docs = Array.from({ length: N }, (_, i) => record(i));
    const r = await page.evaluate(async ({ pin, alice, docs, dbName }) => {
      const { connect, pouchFetch, Security, verifyDoc } = await import('/_pgp/client.js');
      const { default: PouchDB } = await import('/_pgp/pouchdb.js');
      const conn = await connect(location.origin, { pin });
      await conn.login(alice.username, alice.password);
      const signer = await new Security({ userID: 'alice (browser)', lifetime: 0 }).ready;
      await conn.registerCertificate(signer);
      const t0 = performance.now();
      const signed = [];
      for (const d of docs) signed.push(await signer.signDoc(d));
      const signMs = performance.now() - t0;
      const remote = new PouchDB(`${location.origin}/${dbName}`, { fetch: pouchFetch(conn, { longpollTimeout: 2000 }), skip_setup: true });
      const source = new PouchDB(`src-${Date.now()}`);
      await source.bulkDocs(signed);
      const t1 = performance.now();
      const push = await source.replicate.to(remote);
      const pulled = new PouchDB(`pulled-${Date.now()}`);
      const pull = await pulled.replicate.from(remote);
      const syncMs = performance.now() - t1;
      const all = await pulled.allDocs({ include_docs: true, attachments: true });
      const byId = new Map(signed.map((d) => [d._id, d]));
      let verified = 0; let same = 0;
      const fpr = await signer.fingerprint();
      for (const { doc } of all.rows) {
        const sent = byId.get(doc._id);
        if (sent && doc.note === sent.note && doc._attachments['scan.bin'].data === sent._attachments['scan.bin'].data) same++;
        const by = await verifyDoc(doc, [signer]);
        if (by.length === 1 && by[0] === fpr) verified++;
      }
      // An attachment read as PouchDB reads a stub: a Blob from the tunnel.
      const blob = await remote.getAttachment(signed[7]._id, 'scan.bin');
      const bytes = new Uint8Array(await blob.arrayBuffer());
      const att = btoa(String.fromCharCode(...bytes));
      const adapter = pulled.adapter;
      Object.assign(window, { conn, signer, remote, pulled, PouchDB });
      return { push: [push.ok, push.docs_written, push.doc_write_failures], pull: [pull.docs_written, pull.doc_write_failures],
        rows: all.rows.length, verified, same, signMs, syncMs, att, attWas: signed[7]._attachments['scan.bin'].data,
        adapter, cert: await signer.getPublicKey(), info: await remote.info() };
    }, { pin, alice: ALICE, docs, dbName: DB });
    assert.deepEqual(r.push, [true, N, 0]);
    assert.deepEqual(r.pull, [N, 0]);
    assert.equal(r.adapter, 'idb');
    assert.equal(r.rows, N);
    assert.equal(r.same, N, 'fields and attachments came back as sent');
    assert.equal(r.verified, N, 'every signature verified after the round trip');
    assert.equal(r.att, r.attWas);
    assert.equal(r.info.doc_count, N);
    timing.pgp = r.syncMs;
    console.log(`# Chromium: signing ${N} documents ${r.signMs.toFixed(0)} ms; push+pull through couch_pgp ${r.syncMs.toFixed(0)} ms`);
    // The server checked each revision against alice's certificates (signed-only), and they verify there too.
    const one = await serverVerified(DB, docs[11]._id);
    assert.equal(one.signers.length, 1);
    // The browser's signatures verify in node with its certificate.
    const back = await other.getDoc(DB, docs[12]._id, { query: 'attachments=true' });
    assert.equal((await verifyDoc(back.doc, [r.cert])).length, 1);
  });

  test('a live sync in the page picks up another client\'s change and pushes its own', async () => {
    await page.evaluate(() => {
      window.seen = [];
      window.live = window.pulled.sync(window.remote, { live: true, retry: false, heartbeat: false, timeout: 2000 });
      window.live.on('change', (c) => { if (c.direction === 'pull') window.seen.push(...c.change.docs.map((d) => d._id)); });
      window.live.on('error', (e) => { window.liveError = String(e.message || e); });
      return new Promise((resolve) => window.live.once('paused', resolve));
    });
    const fresh = await otherSigner.signDoc(record(N));
    await other.putDoc(DB, fresh);
    await page.waitForFunction((id) => window.seen.includes(id), fresh._id, { timeout: 30000 });
    const mine = record(N + 1);
    const r = await page.evaluate(async ({ id, cert, mine }) => {
      const { verifyDoc } = await import('/_pgp/client.js');
      const got = await window.pulled.get(id, { attachments: true });
      const signers = await verifyDoc(got, [cert]);
      await window.pulled.put(await window.signer.signDoc(mine));
      return { signers, error: window.liveError ?? null };
    }, { id: fresh._id, cert: await otherSigner.getPublicKey(), mine });
    assert.deepEqual(r.signers, [await otherSigner.fingerprint()]);
    assert.equal(r.error, null);
    const deadline = Date.now() + 30000;
    let there;
    while (Date.now() < deadline) {
      there = await other.request(`/${DB}/${mine._id}`);
      if (there.status === 200) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.equal(there.status, 200, 'the live sync pushed the page\'s new document');
    assert.equal((await there.json()).note, mine.note);
    await page.evaluate(() => window.live.cancel());
  });

  test('a conflict made in the browser and on the server ends with the same winner and _conflicts on both', async () => {
    const id = docs[3]._id;
    const notes = [`local edit ${hex()}`, `remote edit ${hex()}`];
    secrets.push(...notes);
    const base = await page.evaluate(async ({ id, note }) => {
      const base = await window.pulled.get(id, { attachments: true });
      const { _rev, ...content } = base;
      await window.pulled.put(await window.signer.signDoc({ ...content, _rev, note }));
      return base;
    }, { id, note: notes[0] });
    // The other device signs its own edit; the browser's signature (over the old note) goes.
    const { _rev: rev, pgp_signatures: _mine, ...content } = base;
    const theirs = await otherSigner.signDoc({ ...content, _rev: rev, note: notes[1] });
    const w = await other.request(`/${DB}/${id}`, { method: 'PUT', body: theirs });
    assert.equal(w.status, 201, await w.text());
    const here = await page.evaluate(async (id) => {
      const s = await window.pulled.sync(window.remote);
      const doc = await window.pulled.get(id, { conflicts: true });
      return { failures: [s.push.doc_write_failures, s.pull.doc_write_failures], rev: doc._rev, note: doc.note, conflicts: doc._conflicts };
    }, id);
    const there = await (await other.request(`/${DB}/${id}?conflicts=true`)).checked();
    assert.deepEqual(here.failures, [0, 0]);
    assert.equal(here.rev, there._rev);
    assert.equal(here.note, there.note);
    assert.deepEqual(here.conflicts, there._conflicts);
    assert.equal(here.conflicts.length, 1);
    assert.ok(notes.includes(here.note));
  });

  test('nothing on the wire names a document, a field value or an attachment, nor the password', async () => {
    const wire = proxy.exchanges;
    const bytes = wire.reduce((n, w) => n + w.reqBody.length + w.resBody.length, 0);
    console.log(`# wire: ${wire.length} exchanges, ${(bytes / 1048576).toFixed(1)} MiB of bodies, ${secrets.length + secretsOfDemo.length} secrets searched`);
    assert.ok(wire.length > 50, `${wire.length} exchanges`);
    const basic = Buffer.from(`${ALICE.username}:${ALICE.password}`).toString('base64');
    const leak = proxy.leak([...secrets, ...secretsOfDemo, ALICE.password, basic]);
    assert.equal(leak, null, leak && `on the wire: ${JSON.stringify(leak.secret.slice(0, 40))} in ${leak.where}`);
    assert.ok(!wire.some((w) => 'authorization' in w.reqHeaders), 'no Authorization header');
    assert.ok(wire.some((w) => w.url === '/_pgp/tunnel'));
    // Channel mode (the default): PouchDB in the browser read its tunnelled answers as sealed
    // streams, checked frame by frame (client/src/stream.js).
    assert.ok(wire.some((w) => w.resHeaders['x-pgp-stream'] === '1'), 'a streamed tunnel answer');
  });

  test('the same push and pull without couch_pgp in the same browser, timed', async () => {
    proxy.recording = false; // plain PouchDB sends the password and the records in the clear
    const r = await page.evaluate(async ({ alice, docs, plain }) => {
      const { default: PouchDB } = await import('/_pgp/pouchdb.js');
      // Logged in as a plain CouchDB application is: POST /_session, then the browser's
      // AuthSession cookie (as couch_pgp's connection; Basic auth would cost CouchDB a
      // password hash on every request).
      const login = await fetch('/_session', { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: alice.username, password: alice.password }) });
      if (login.status !== 200) throw new Error(`plain login: ${login.status}`);
      const remote = new PouchDB(`${location.origin}/${plain}`, { skip_setup: true });
      const source = new PouchDB(`plain-src-${Date.now()}`);
      await source.bulkDocs(docs);
      const t0 = performance.now();
      const push = await source.replicate.to(remote);
      const pull = await new PouchDB(`plain-pulled-${Date.now()}`).replicate.from(remote);
      return { ms: performance.now() - t0, push: push.docs_written, pull: pull.docs_written };
    }, { alice: ALICE, docs: docs.slice(0, N), plain: PLAIN });
    assert.equal(r.push, N);
    assert.equal(r.pull, N);
    timing.plain = r.ms;
    console.log(`# Chromium (IndexedDB) push+pull of ${N} documents: couch_pgp ${timing.pgp.toFixed(0)} ms, plain ${timing.plain.toFixed(0)} ms, ratio ${(timing.pgp / timing.plain).toFixed(2)}`);
  });
});
