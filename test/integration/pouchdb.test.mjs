// PouchDB (node, memory adapter) replicating through couch_pgp with the client's pouchFetch,
// against a real CouchDB: a database that is both encryption-required and signed-only.
// 1,000 signed EHR-like documents with small attachments pushed, pulled into a fresh PouchDB
// and verified; a live (longpoll) pull; a conflict resolved the same way on both sides; an
// unsigned document refused; every byte on the wire (recorded by a proxy on 127.0.0.1 between
// PouchDB and CouchDB) checked for ids, field values and attachment contents; plaintext
// access refused. The same push and pull without couch_pgp (plain PouchDB, plain database,
// same node, same proxy) is timed beside it and the ratio printed.
// The same in Chromium with IndexedDB: pouchdb_browser.test.mjs.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import PouchDB from 'pouchdb-core';
import HttpAdapter from 'pouchdb-adapter-http';
import MemoryAdapter from 'pouchdb-adapter-memory';
import Replication from 'pouchdb-replication';
import TransformPouch from 'transform-pouch';
import { CouchDB, couchdbSkip, sleep } from './couchdb.mjs';
import { WireProxy } from './wire_proxy.mjs';
import { connect, pouchFetch, Security, verifyDoc } from '../../client/src/index.js';

PouchDB.plugin(HttpAdapter).plugin(MemoryAdapter).plugin(Replication).plugin(TransformPouch);

const skip = couchdbSkip();
const DB = 'ehr';
const PLAIN = 'ehr_plain';
const BULK = 'signed_bulk'; // signed-only, not encryption-required
const N = 1000;
const ALICE = { username: 'alice', password: `alice-Pouch-pw-${randomBytes(4).toString('hex')}` };
const hex = (n = 6) => randomBytes(n).toString('hex');
let memN = 0;
const local = () => new PouchDB(`mem-${memN++}-${hex(3)}`, { adapter: 'memory' });

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

describe('PouchDB syncs through couch_pgp', { skip, timeout: 600000 }, () => {
  let db; let conn; let other; let signer; let remote; let pulled;
  let proxy; // every request and response between the clients and CouchDB, as on the network

  // tunnel 'always' for the other client: it reads and writes by document id, and an id in a
  // path sent in place would be on the wire. PouchDB's own requests name no document.
  async function login(tunnel = 'auto') {
    const c = await connect(proxy.url, { pin: (await db.json('/_pgp', { auth: null })).body.fingerprint, tunnel });
    await c.login(ALICE.username, ALICE.password);
    return c;
  }

  before(async () => {
    db = await CouchDB.start({ ini: { couch_pgp: { signed_dbs: `${DB},${BULK}` } } });
    const u = await db.json(`/_users/org.couchdb.user:${ALICE.username}`, {
      method: 'PUT', body: { name: ALICE.username, password: ALICE.password, roles: [], type: 'user' } });
    assert.equal(u.status, 201, u.text);
    for (const name of [DB, PLAIN, BULK]) {
      assert.equal((await db.json(`/${name}`, { method: 'PUT' })).status, 201);
      const sec = await db.json(`/${name}/_security`, { method: 'PUT', body: { members: { names: ['alice'] }, admins: {} } });
      assert.equal(sec.status, 200, sec.text);
    }
    const set = await db.json('/_node/_local/_config/couch_pgp/require_encryption_dbs',
      { method: 'PUT', body: JSON.stringify(DB) });
    assert.equal(set.status, 200, set.text);
    proxy = await WireProxy.start(db.url);
    conn = await login();
    other = await login('always'); // "another client": its own session
    signer = await new Security({ userID: 'alice', lifetime: 0 }).ready;
    await conn.registerCertificate(signer);
    // PouchDB is given the password too, to show it never leaves: its Authorization header is dropped.
    remote = new PouchDB(`${proxy.url}/${DB}`, { fetch: pouchFetch(conn, { longpollTimeout: 2000 }), auth: ALICE });
  });

  after(async () => {
    if (proxy) await proxy.stop();
    if (db) await db.stop();
  });

  const docs = [];
  const timing = {};

  // A server bug found here: the certificate index scanned _users inside its gen_server, and
  // fabric's receive loop dropped the calls of writers on other shards that missed meanwhile
  // (they waited 60 s, then 403 "registry cannot be consulted"). The index is still empty here.
  test('replicated writes on several shards right after a registration all pass at once', async () => {
    const batch = [];
    for (let i = 0; i < 20; i++) batch.push({ ...(await signer.signDoc({ _id: `b${i}`, n: i })), _rev: '1-abc' });
    const t0 = Date.now();
    const r = await db.json(`/${BULK}/_bulk_docs`, { method: 'POST', body: { new_edits: false, docs: batch }, timeoutMs: 90000 });
    assert.equal(r.status, 201, r.text);
    assert.ok(Date.now() - t0 < 20000, `took ${Date.now() - t0} ms`);
    assert.equal((await db.json(`/${BULK}`)).body.doc_count, 20);
  });

  test(`push ${N} signed documents with attachments, pull them into a fresh PouchDB, signatures verified`, async () => {
    for (let i = 0; i < N; i++) docs.push(await signer.signDoc(record(i)));
    const source = local();
    await source.bulkDocs(docs);
    const t0 = performance.now();
    const push = await source.replicate.to(remote);
    pulled = local();
    const pull = await pulled.replicate.from(remote);
    timing.pgp = performance.now() - t0;
    assert.equal(push.ok, true);
    assert.equal(push.docs_written, N);
    assert.equal(pull.docs_written, N);
    assert.equal(pull.doc_write_failures, 0);

    const info = await remote.info();
    assert.equal(info.doc_count, N);
    const all = await pulled.allDocs({ include_docs: true, attachments: true });
    assert.equal(all.rows.length, N);
    const byId = new Map(docs.map((d) => [d._id, d]));
    const fpr = await signer.fingerprint();
    for (const { doc } of all.rows) {
      const sent = byId.get(doc._id);
      assert.equal(doc.note, sent.note);
      assert.equal(doc._attachments['scan.bin'].data, sent._attachments['scan.bin'].data);
      assert.deepEqual(await verifyDoc(doc, [signer]), [fpr]);
    }
    // Binary attachment read through the tunnel, as PouchDB reads a stub.
    const one = docs[7];
    const att = await remote.getAttachment(one._id, 'scan.bin');
    assert.equal(Buffer.from(att).toString('base64'), one._attachments['scan.bin'].data);
    // And the server verified each: a checkpoint was written, _local through couch_pgp.
    assert.ok(proxy.exchanges.some((w) => w.url === '/_pgp/tunnel'));
    // In channel mode the tunnelled answers (_changes, the attachment) came as sealed streams.
    assert.ok(proxy.exchanges.some((w) => w.resHeaders['x-pgp-stream'] === '1'), 'a streamed tunnel answer');
  });

  test('a live (longpoll) pull picks up a change written by another client', async () => {
    const seen = [];
    const rep = pulled.replicate.from(remote, { live: true, retry: false, heartbeat: false, timeout: 2000 });
    rep.on('change', (c) => seen.push(...c.docs.map((d) => d._id)));
    const paused = new Promise((resolve) => rep.once('paused', resolve));
    rep.on('error', (e) => console.log(`# live replication error: ${e.message}`));
    await paused;
    const fresh = await signer.signDoc(record(N));
    await other.putDoc(DB, fresh);
    const deadline = Date.now() + 30000;
    while (!seen.includes(fresh._id) && Date.now() < deadline) await sleep(100);
    rep.cancel();
    assert.ok(seen.includes(fresh._id), 'the live pull saw the new document');
    const got = await pulled.get(fresh._id, { attachments: true });
    assert.deepEqual(await verifyDoc(got, [signer]), [await signer.fingerprint()]);
    docs.push(fresh);
  });

  test('a conflict made on both sides ends with the same winner on both', async () => {
    const base = await pulled.get(docs[3]._id, { attachments: true });
    const { _rev: rev, ...content } = base;
    const mine = await signer.signDoc({ ...content, _rev: rev, note: `local edit ${hex()}` });
    const theirs = await signer.signDoc({ ...content, _rev: rev, note: `remote edit ${hex()}` });
    secrets.push(mine.note, theirs.note);
    await pulled.put(mine);
    const w = await other.request(`/${DB}/${encodeURIComponent(base._id)}`, { method: 'PUT', body: theirs });
    assert.equal(w.status, 201, await w.text());
    const sync = await pulled.sync(remote);
    assert.equal(sync.push.doc_write_failures, 0);
    assert.equal(sync.pull.doc_write_failures, 0);
    const here = await pulled.get(base._id, { conflicts: true });
    const there = await (await other.request(`/${DB}/${encodeURIComponent(base._id)}?conflicts=true`)).checked();
    assert.equal(here._rev, there._rev);
    assert.equal(here.note, there.note);
    assert.deepEqual(here._conflicts, there._conflicts);
    assert.equal(here._conflicts.length, 1);
    assert.ok([mine.note, theirs.note].includes(here.note));
  });

  // Encryption at rest of the local database, one way to do it: transform-pouch with an
  // application key (AES-256-GCM, WebCrypto, not extractable). What PouchDB stores is
  // ciphertext; what replication reads and writes is the document as signed.
  test('at rest: a local database whose bodies transform-pouch encrypts still pushes and pulls signed documents', async () => {
    const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    const atRest = (name) => {
      const p = new PouchDB(name, { adapter: 'memory' });
      p.transform({
        // Every field but CouchDB's own (_id, _rev, _revisions, _attachments, ...) is sealed.
        incoming: async (doc) => {
          const kept = {}; const body = {};
          for (const [k, v] of Object.entries(doc)) (k.startsWith('_') ? kept : body)[k] = v;
          const iv = crypto.getRandomValues(new Uint8Array(12));
          const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: new TextEncoder().encode(doc._id) },
            key, new TextEncoder().encode(JSON.stringify(body)));
          return { ...kept, at_rest: { iv: Buffer.from(iv).toString('base64'), ct: Buffer.from(ct).toString('base64') } };
        },
        outgoing: async (doc) => {
          if (!doc.at_rest) return doc;
          const { at_rest: { iv, ct }, ...kept } = doc;
          const pt = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: Buffer.from(iv, 'base64'), additionalData: new TextEncoder().encode(doc._id) },
            key, Buffer.from(ct, 'base64'));
          return { ...kept, ...JSON.parse(new TextDecoder().decode(pt)) };
        },
      });
      return p;
    };
    const name = `mem-at-rest-${hex(3)}`;
    const src = atRest(name);
    const batch = [];
    for (let i = 0; i < 20; i++) batch.push(await signer.signDoc(record(N + 10 + i)));
    await src.bulkDocs(batch);
    // The same store opened without the transform: what is on the device.
    const raw = await new PouchDB(name, { adapter: 'memory' }).get(batch[0]._id, { attachments: true });
    assert.equal(raw.note, undefined);
    assert.equal(raw.mrn, undefined);
    assert.equal(raw.pgp_signatures, undefined);
    assert.ok(!JSON.stringify(raw.at_rest).includes(batch[0].mrn));
    // transform-pouch does not touch attachments: they stay in plaintext on the device.
    assert.equal(raw._attachments['scan.bin'].data, batch[0]._attachments['scan.bin'].data);

    const push = await src.replicate.to(remote);
    assert.equal(push.docs_written, 20);
    assert.equal(push.doc_write_failures, 0);
    const onServer = await other.getDoc(DB, batch[0]._id, { verifyWith: [signer], query: 'attachments=true' });
    assert.equal(onServer.doc.note, batch[0].note, 'the server got the plaintext document, as signed');

    const dstName = `mem-at-rest-${hex(3)}`;
    const dst = atRest(dstName);
    const pull = await dst.replicate.from(remote, { doc_ids: batch.map((d) => d._id) });
    assert.equal(pull.docs_written, 20);
    for (const d of batch) {
      const got = await dst.get(d._id, { attachments: true });
      assert.equal(got.note, d.note);
      assert.deepEqual(await verifyDoc(got, [signer]), [await signer.fingerprint()]);
    }
    const rawPulled = await new PouchDB(dstName, { adapter: 'memory' }).get(batch[1]._id);
    assert.deepEqual(Object.keys(rawPulled).filter((k) => !k.startsWith('_')), ['at_rest']);
  });

  test('an unsigned document pushed is refused by the server, and the replication reports it', async () => {
    const id = `pt-${hex()}`;
    secrets.push(id);
    const src = local();
    await src.put({ _id: id, type: 'encounter', mrn: 'unsigned' });
    let result; let error;
    try { result = await src.replicate.to(remote); } catch (e) { error = e; }
    // The server refuses the whole _bulk_docs (403); PouchDB ends the replication with it.
    assert.equal(result, undefined, `replication reported success: ${JSON.stringify(result)}`);
    assert.equal(error.status, 403);
    assert.equal(error.name, 'forbidden');
    assert.match(error.message, /Signed-only database: the document has no pgp_signatures/);
    const r = await other.request(`/${DB}/${id}`);
    assert.equal(r.status, 404);
  });

  test('plaintext access to the database is refused (403), with or without PouchDB', async () => {
    const r = await db.json(`/${DB}/_all_docs`, { auth: ALICE });
    assert.equal(r.status, 403);
    assert.equal(r.body.error, 'pgp_encryption_required');
    const plain = new PouchDB(`${db.url}/${DB}`, { auth: ALICE, skip_setup: true });
    await assert.rejects(plain.allDocs(), (e) => e.status === 403);
  });

  test('nothing on the wire names a document, a field value or an attachment, nor the password', async () => {
    const wire = proxy.exchanges;
    assert.ok(wire.length > 20, `${wire.length} exchanges recorded`);
    const bytes = wire.reduce((n, w) => n + w.reqBody.length + w.resBody.length, 0);
    console.log(`# wire: ${wire.length} exchanges, ${(bytes / 1048576).toFixed(1)} MiB of bodies, ${secrets.length} secrets searched`);
    const basic = Buffer.from(`${ALICE.username}:${ALICE.password}`).toString('base64');
    const leak = proxy.leak([...secrets, ALICE.password, basic]);
    assert.equal(leak, null, leak && `on the wire: ${JSON.stringify(leak.secret.slice(0, 40))} in ${leak.where}`);
    assert.ok(!wire.some((w) => 'authorization' in w.reqHeaders), 'no Authorization header');
    const paths = new Set(wire.map((w) => new URL(w.url, proxy.url).pathname));
    console.log(`# paths on the wire: ${[...paths].sort().join(' ')}`);
  });

  test(`the same push and pull without couch_pgp, timed`, async () => {
    // Logged in as a plain CouchDB application is: one POST /_session, then the AuthSession
    // cookie (couch_pgp's connection does the same; Basic auth would cost CouchDB a password
    // hash on every request and make plain look slower than it is).
    const from = proxy.exchanges.length;
    const login = await fetch(`${proxy.url}/_session`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: ALICE.username, password: ALICE.password }) });
    assert.equal(login.status, 200);
    const cookie = login.headers.get('set-cookie').split(';')[0];
    const plainRemote = new PouchDB(`${proxy.url}/${PLAIN}`, {
      fetch: async (url, opts = {}) => {
        const headers = new Headers(opts.headers);
        headers.set('cookie', cookie);
        const r = await fetch(url, { ...opts, headers });
        // As pouchFetch does: PouchDB's Node build reads attachments with response.buffer().
        Object.defineProperty(r, 'buffer', { value: async () => Buffer.from(await r.arrayBuffer()) });
        return r;
      },
    });
    const source = local();
    await source.bulkDocs(docs.slice(0, N).map(({ _rev, ...d }) => d));
    const t0 = performance.now();
    const push = await source.replicate.to(plainRemote);
    const pull = await local().replicate.from(plainRemote);
    timing.plain = performance.now() - t0;
    assert.equal(push.docs_written, N);
    assert.equal(pull.docs_written, N);
    // The same check finds the plaintext when it is there: the proxy sees plain PouchDB's.
    const plainWire = proxy.texts().slice(from).join('\n');
    assert.ok(plainWire.includes(docs[0]._id) && plainWire.includes(docs[0].note), 'plain sync is visible');
    console.log(`# push+pull of ${N} documents: couch_pgp ${timing.pgp.toFixed(0)} ms, plain ${timing.plain.toFixed(0)} ms, ratio ${(timing.pgp / timing.plain).toFixed(2)}`);
  });
});
