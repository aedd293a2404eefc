// The tunnel's streamed answers against a real CouchDB (README "Streaming through the
// tunnel"): `_changes`, `_all_docs`, a view and a multi-MiB attachment arrive as sealed
// frames and read back exactly what plain CouchDB serves; the stream is decoded both by the
// client library and by an independent OpenPGP.js decoder written from the README; a frame
// altered, frames reordered, dropped, spliced from another stream, or the final frame cut off
// are each refused with a ProtocolError; a longpoll picks up a change made while it waits;
// the wire carries no document id or field value; per-message mode is refused with
// pgp_stream_needs_channel and the buffered tunnel still answers as before.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { CouchDB, couchdbSkip, sleep } from './couchdb.mjs';
import { Client, newKey, envelope, openStreamBytes, streamFrames } from './pgp_client.mjs';
import { connect } from '../../client/src/index.js';
import { ProtocolError } from '../../client/src/errors.js';

const skip = couchdbSkip();
const DB = 'stream';
const N = 400;
const ALICE = { username: 'alice', password: `alice-stream-${randomBytes(4).toString('hex')}` };
const hex = (n = 6) => randomBytes(n).toString('hex');
const STREAM_TYPE = 'application/x-pgp-stream';
const sha = (b) => createHash('sha256').update(b).digest('hex');

describe('streaming through the tunnel', { skip, timeout: 600000 }, () => {
  let db; let conn; let fingerprint;
  const secrets = [];
  const ATT = randomBytes(3 * 1024 * 1024 + 17);
  const wire = [];
  /** When set, rewrites the frames of the next streamed answer (array in, array out). */
  let mutate = null;

  // The real fetch; records every answer's bytes, and lets a test rewrite a stream's frames.
  async function wired(url, init = {}) {
    const r = await fetch(url, init);
    const isStream = (r.headers.get('content-type') || '').startsWith(STREAM_TYPE);
    const bytes = Buffer.from(await r.arrayBuffer());
    wire.push({ url: String(url), headers: JSON.stringify([...r.headers]), body: bytes,
      request: Buffer.from(init.body ?? '') });
    let out = bytes;
    if (isStream && mutate) {
      const f = mutate;
      mutate = null;
      out = Buffer.concat(f(streamFrames(bytes)).map((fr) => {
        const len = Buffer.alloc(4);
        len.writeUInt32BE(fr.length);
        return Buffer.concat([len, fr]);
      }));
    }
    return new Response(out, { status: r.status, headers: r.headers });
  }

  before(async () => {
    db = await CouchDB.start();
    const u = await db.json(`/_users/org.couchdb.user:${ALICE.username}`, {
      method: 'PUT', body: { name: ALICE.username, password: ALICE.password, roles: [], type: 'user' } });
    assert.equal(u.status, 201, u.text);
    await db.json(`/${DB}`, { method: 'PUT' });
    await db.json(`/${DB}/_security`, { method: 'PUT', body: { members: { names: ['alice'] }, admins: {} } });
    const docs = [];
    for (let i = 0; i < N; i += 1) {
      const doc = { _id: `pt-${hex()}`, mrn: `MRN-${hex()}`, note: `Diagnosis-${hex(5)}`, n: i };
      secrets.push(doc._id, doc.mrn, doc.note);
      docs.push(doc);
    }
    const bulk = await db.json(`/${DB}/_bulk_docs`, { method: 'POST', body: { docs } });
    assert.equal(bulk.status, 201, bulk.text);
    const ddoc = await db.json(`/${DB}/_design/v`, { method: 'PUT',
      body: { views: { by_n: { map: 'function (d) { if (d.mrn) emit(d.n, d.mrn); }' } } } });
    assert.equal(ddoc.status, 201, ddoc.text);
    const attDoc = `scan-${hex()}`;
    secrets.push(attDoc);
    const put = await db.request(`/${DB}/${attDoc}/scan.bin`, { method: 'PUT', body: ATT,
      headers: { 'Content-Type': 'application/octet-stream' } });
    assert.equal(put.status, 201);
    ATT.docId = attDoc;
    fingerprint = (await db.json('/_pgp', { auth: null })).body.fingerprint;
    conn = await connect(db.url, { pin: fingerprint, fetch: wired });
    await conn.login(ALICE.username, ALICE.password);
    assert.equal(conn.session.mode, 'channel');
  });

  after(async () => { if (db) await db.stop(); });

  const plain = async (p) => (await db.json(p)).body;

  test('_changes streams in sealed frames and reads back as plain CouchDB serves it', async () => {
    const before = wire.length;
    const r = await conn.request(`/${DB}/_changes?include_docs=true`, { stream: true });
    assert.equal(r.streamed, true);
    assert.equal(r.status, 200);
    assert.match(r.contentType, /application\/json/);
    const got = await r.json();
    const want = await plain(`/${DB}/_changes?include_docs=true`);
    assert.equal(got.results.length, N + 2);
    assert.deepEqual(got.results.map((c) => [c.id, c.doc._rev]).sort(), want.results.map((c) => [c.id, c.doc._rev]).sort());
    const w = wire.at(-1);
    assert.equal(wire.length, before + 1);
    assert.match(w.headers, /"x-pgp-stream","1"/);
    assert.match(w.headers, /"transfer-encoding","chunked"/);
    assert.ok(streamFrames(w.body).length >= 3, 'head, data, final');
  });

  test('_all_docs and a view stream too', async () => {
    const all = await (await conn.request(`/${DB}/_all_docs?include_docs=true`, { stream: true })).json();
    const wantAll = await plain(`/${DB}/_all_docs?include_docs=true`);
    assert.deepEqual(all.rows.map((x) => x.id), wantAll.rows.map((x) => x.id));
    assert.equal(all.total_rows, N + 2);
    const view = await (await conn.request(`/${DB}/_design/v/_view/by_n?limit=50&skip=10`, { stream: true })).json();
    const wantView = await plain(`/${DB}/_design/v/_view/by_n?limit=50&skip=10`);
    assert.deepEqual(view, wantView);
    // CouchDB's own errors stream as they are: the inner status is in the head.
    const missing = await conn.request(`/${DB}/no-such-doc`, { stream: true, tunnel: true });
    assert.equal(missing.streamed, true);
    assert.equal(missing.status, 404);
    await assert.rejects(missing.checked(), (e) => e.status === 404 && e.error === 'not_found');
  });

  test('a 3 MiB attachment arrives in many frames, byte for byte', async () => {
    const r = await conn.request(`/${DB}/${ATT.docId}/scan.bin`, { stream: true });
    assert.equal(r.status, 200);
    assert.equal(r.contentType, 'application/octet-stream');
    // Read incrementally from the body, as PouchDB or an application would.
    const reader = r.body.getReader();
    let pieces = 0; const parts = [];
    for (let x = await reader.read(); !x.done; x = await reader.read()) { pieces += 1; parts.push(x.value); }
    const got = Buffer.concat(parts);
    assert.equal(got.length, ATT.length);
    assert.equal(sha(got), sha(ATT));
    assert.ok(pieces >= Math.floor(ATT.length / 65536), `${pieces} pieces`);
    const frames = streamFrames(wire.at(-1).body);
    assert.ok(frames.every((f) => f.length <= 65536 + 128), 'each frame at most 64 KiB of plaintext');
  });

  test('an independent decoder (OpenPGP.js, from the README) reads the same stream', async () => {
    const alice = new Client(db, ALICE, await newKey('alice-indep'));
    await alice.pin(fingerprint);
    await alice.startSession();
    const inner = { method: 'GET', path: `/${DB}/${ATT.docId}/scan.bin`, query: '', headers: {}, body: '', stream: true };
    const e = envelope('POST', '/_pgp/tunnel', '', JSON.stringify(inner));
    const { channelSeal } = await import('./pgp_client.mjs');
    const r = await db.request('/_pgp/tunnel', { method: 'POST', auth: ALICE,
      body: await channelSeal(JSON.stringify(e), alice.channel.c2s),
      headers: { 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': alice.token, 'X-PGP-Channel': '1' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), STREAM_TYPE);
    assert.equal(r.headers.get('x-pgp-encrypted'), '1');
    const s = await openStreamBytes(Buffer.from(await r.arrayBuffer()), alice.channel.s2c, e.nonce);
    assert.equal(s.head.status, 200);
    assert.equal(s.head.headers['content-type'], 'application/octet-stream');
    assert.equal(sha(s.body), sha(ATT));
    assert.deepEqual(s.final, { bytes: ATT.length });
  });

  // Each rewrite must end in a ProtocolError, and never in an answer.
  async function refusedWith(rewrite, pattern) {
    mutate = rewrite;
    await assert.rejects(async () => {
      const r = await conn.request(`/${DB}/_all_docs?include_docs=true`, { stream: true });
      await r.bytes();
    }, (e) => e instanceof ProtocolError && pattern.test(e.message));
    assert.equal(mutate, null, 'the rewrite ran');
  }

  test('a tampered frame is refused', async () => {
    await refusedWith((fs) => fs.map((f, i) => {
      if (i !== 1) return f;
      const g = Buffer.from(f);
      g[g.length - 20] ^= 0x40;
      return g;
    }), /frame 1 does not open/);
  });

  test('reordered and dropped frames are refused', async () => {
    await refusedWith((fs) => {
      assert.ok(fs.length >= 4, `${fs.length} frames`);
      return [fs[0], fs[2], fs[1], ...fs.slice(3)];
    }, /reordered or dropped/);
    await refusedWith((fs) => [fs[0], ...fs.slice(2)], /reordered or dropped/);
  });

  test('a truncated stream (the final frame dropped, or cut inside a frame) is refused', async () => {
    await refusedWith((fs) => fs.slice(0, -1), /before its final frame/);
    await refusedWith((fs) => [...fs.slice(0, -1), fs.at(-1).subarray(0, 40)], /does not open|inside a frame/);
  });

  test('frames from another stream of the same session are refused', async () => {
    const other = await conn.request(`/${DB}/_all_docs?include_docs=true`, { stream: true });
    await other.bytes();
    const foreign = streamFrames(wire.at(-1).body);
    await refusedWith((fs) => [fs[0], foreign[1], ...fs.slice(2)], /another stream/);
    // A whole old stream replayed as the answer to a new request: the head names its nonce.
    await refusedWith(() => foreign, /another request/);
  });

  test('longpoll: the stream answers when a change is made during the wait', async () => {
    const since = (await plain(`/${DB}/_changes?since=now&limit=0`)).last_seq;
    const id = `late-${hex()}`;
    const started = Date.now();
    const poll = conn.request(`/${DB}/_changes?feed=longpoll&since=${since}&timeout=30000&include_docs=true`, { stream: true });
    await sleep(1500);
    const put = await db.json(`/${DB}/${id}`, { method: 'PUT', body: { v: 'late' } });
    assert.equal(put.status, 201);
    const r = await poll;
    const body = await r.json();
    const waited = Date.now() - started;
    assert.deepEqual(body.results.map((c) => c.id), [id]);
    assert.equal(body.results[0].doc.v, 'late');
    assert.ok(waited >= 1400 && waited < 25000, `answered after ${waited} ms`);
  });

  test('the buffered tunnel still answers as before; per-message mode cannot stream', async () => {
    const buffered = await conn.request(`/${DB}/_all_docs?limit=3`);
    assert.equal(buffered.streamed, false);
    assert.equal((await buffered.json()).rows.length, 3);
    // A per-message session: the client asks for the buffered answer ...
    const session = await connect(db.url, { pin: fingerprint, mode: 'session' });
    await session.login(ALICE.username, ALICE.password);
    const r = await session.request(`/${DB}/_all_docs?limit=2`, { stream: true });
    assert.equal(r.streamed, false);
    assert.equal((await r.json()).rows.length, 2);
    // ... and a request for a stream outside the channel is refused, encrypted.
    const alice = new Client(db, ALICE, await newKey('alice-pm'));
    await alice.pin(fingerprint);
    await alice.startSession();
    const inner = { method: 'GET', path: `/${DB}/_all_docs`, query: '', headers: {}, body: '', stream: true };
    const refused = await alice.send('POST', '/_pgp/tunnel', '', JSON.stringify(inner));
    assert.equal(refused.status, 400);
    assert.equal(refused.encrypted, true);
    assert.equal(refused.body.error, 'pgp_stream_needs_channel');
    const bad = await alice.send('POST', '/_pgp/tunnel', '', JSON.stringify({ ...inner, stream: 'yes' }));
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, 'pgp_tunnel_request');
  });

  // The ibrowse connections a request process opened (the streamed tunnel's own; the
  // buffered tunnel's pooled ones belong to ibrowse's load balancer, not to chttpd).
  const ibrowseWorkers = async () => Number(await db.rpc(
    "length([P || P <- erlang:processes(), {dictionary, D} <- [erlang:process_info(P, dictionary)], "
    + "proplists:get_value('$initial_call', D) =:= {ibrowse_http_client, init, 1}, "
    + "lists:member(chttpd, proplists:get_value('$ancestors', D, []))])."));

  test('a client that goes away mid-stream: the node stops the inner request and its connection', async () => {
    const big = randomBytes(24 * 1024 * 1024);
    const put = await db.request(`/${DB}/bigscan/big.bin`, { method: 'PUT', body: big,
      headers: { 'Content-Type': 'application/octet-stream' }, timeoutMs: 120000 });
    assert.equal(put.status, 201);
    // A connection on the real fetch: this suite's recording one reads every answer whole.
    const direct = await connect(db.url, { pin: fingerprint });
    await direct.login(ALICE.username, ALICE.password);
    const before = await ibrowseWorkers();
    const logAt = db.log().length;
    const r = await direct.request(`/${DB}/bigscan/big.bin`, { stream: true });
    const reader = r.body.getReader();
    const first = await reader.read();
    assert.ok(first.value.length > 0);
    assert.equal(await ibrowseWorkers(), before + 1, 'one connection of its own while it streams');
    await reader.cancel();
    await db.waitFor(async () => (await ibrowseWorkers()) === before,
      { timeoutMs: 20000, what: 'the streamed answer\'s ibrowse connection to end' });
    // What the node logs about it: never a frame's contents.
    const errors = db.logErrors(logAt).join('\n');
    console.log(`# node log errors after the cut: ${JSON.stringify(errors.slice(0, 400))}`);
    assert.equal(errors.indexOf(big.subarray(0, 16).toString('latin1')), -1);
  });

  test('the wire carries no document id, field value or attachment content', () => {
    assert.ok(wire.length > 10);
    const attSample = ATT.subarray(1000, 1032);
    for (const w of wire) {
      const text = `${w.url}\n${w.headers}\n${w.body.toString('latin1')}\n${w.request.toString('latin1')}`;
      for (const s of secrets) assert.ok(!text.includes(s), `${s} on the wire (${w.url})`);
      assert.equal(w.body.indexOf(attSample), -1, 'attachment bytes on the wire');
      assert.ok(!text.includes('late'), 'the longpoll document on the wire');
    }
    // Nor the node's log, after streams cut off and refused (ids are in its request log, as
    // for every request CouchDB runs; field values never).
    const nodeLog = db.log();
    for (const s of secrets.filter((x) => /^(MRN|Diagnosis)-/.test(x))) assert.ok(!nodeLog.includes(s), `${s} in the log`);
  });
});
