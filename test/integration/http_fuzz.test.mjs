// HTTP fuzzing against a real node with the plugin: mutated envelopes (both modes), tokens,
// headers, tunnel inner requests and JSON bodies, from a seeded generator so that a failure
// can be replayed (HTTP_FUZZ_SEED). Every answer must be a well-formed HTTP response with a
// status below 500 (or exactly the documented 503s), the node must stay up with bounded
// memory, and nothing may be stored that a refused request carried. HTTP_FUZZ_REQUESTS sets
// the count (default 1500 here; `make fuzz-http` runs 20,000).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CouchDB, couchdbSkip } from './couchdb.mjs';
import { Client, newKey, envelope, seal, channelSeal, nonce } from './pgp_client.mjs';

const skip = couchdbSkip();
const N = Number(process.env.HTTP_FUZZ_REQUESTS || 1500);
const SEED = Number(process.env.HTTP_FUZZ_SEED || Date.now() % 1e9);

/** A small deterministic generator (mulberry32): the same seed, the same requests. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('HTTP fuzzing against CouchDB with couch_pgp', { skip, timeout: 900000 }, () => {
  let db; let alice;
  const auth = { username: 'alice', password: 'alice-fuzz-pw' };
  const rand = rng(SEED);
  const pick = (xs) => xs[Math.floor(rand() * xs.length)];
  const int = (n) => Math.floor(rand() * n);
  const bytes = (n) => Uint8Array.from({ length: n }, () => int(256));

  function mutate(buf) {
    const b = Uint8Array.from(buf);
    const kind = int(5);
    if (b.length === 0 || kind === 0) return bytes(int(300));
    if (kind === 1) { for (let i = 0; i < 1 + int(4); i++) b[int(b.length)] ^= 1 << int(8); return b; }
    if (kind === 2) return b.slice(0, int(b.length));
    if (kind === 3) { const at = int(b.length); return Uint8Array.from([...b.slice(0, at), ...bytes(1 + int(40)), ...b.slice(at)]); }
    return Uint8Array.from([...b, ...b.slice(0, int(b.length))]);
  }

  const weirdStrings = ['', ' ', '\u0000', '😀', 'a'.repeat(5000), '../../_users', '%00', '\r\nX: y',
    '{"$ref":1}', '-1', '1e400', 'null', '[]', '{}', '/_pgp/tunnel', '/%5Fpgp/tunnel', '/_users/_all_docs'];

  function mutateJson(v, depth = 0) {
    if (depth > 3) return v;
    const r = int(9);
    if (r === 0) return pick(weirdStrings);
    if (r === 1) return int(1e9) * (rand() < 0.5 ? -1 : 1);
    if (r === 2) return null;
    if (r === 3) return [v];
    if (r === 4) return { x: v };
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const out = { ...v };
      const k = pick(Object.keys(out).concat(['v', 'extra']));
      if (rand() < 0.3) delete out[k]; else out[k] = mutateJson(out[k], depth + 1);
      return out;
    }
    return v;
  }

  before(async () => {
    db = await CouchDB.start({ ini: { couch_pgp: { signed_dbs: 'signed' } } });
    const u = await db.json('/_users/org.couchdb.user:alice', {
      method: 'PUT', body: { name: 'alice', password: auth.password, roles: [], type: 'user' } });
    assert.equal(u.status, 201, u.text);
    for (const name of ['records', 'signed']) {
      await db.json(`/${name}`, { method: 'PUT' });
      await db.json(`/${name}/_security`, { method: 'PUT', body: { members: { names: ['alice'] }, admins: {} } });
    }
    alice = new Client(db, auth, await newKey('alice'));
    await alice.pin();
    await alice.startSession();
  });

  after(async () => { if (db) await db.stop(); });

  test(`${N} mutated requests: no 5xx but the documented 503s, nothing stored, node up, memory bounded (seed ${SEED})`, async () => {
    const paths = ['/records/f1', '/records', '/records/_bulk_docs', '/signed/s1', '/_session', '/_pgp/tunnel',
      '/_pgp/session', '/_pgp/certs', '/records/f1/att.txt', '/records/_all_docs', '/_pgp'];
    const memory = async () => Object.values((await db.json('/_node/_local/_system')).body.memory).reduce((a, b) => a + b, 0);
    const mem0 = await memory();
    const statuses = new Map();
    let sent = 0;
    let couchdbOwn = 0;
    for (let i = 0; i < N; i++) {
      const path = pick(paths);
      const env = rand() < 0.5 ? envelope(pick(['PUT', 'POST', 'GET', 'DELETE', 'HEAD', 'COPY']), path, '',
        JSON.stringify(mutateJson({ note: 'fuzz', n: i }))) : mutateJson(envelope('PUT', path, '', '{"n":1}'));
      const channel = rand() < 0.5;
      let body;
      const valid = rand() < 0.3;
      const text = typeof env === 'string' ? env : JSON.stringify(env);
      if (path === '/_pgp/tunnel' && rand() < 0.5) {
        const inner = mutateJson({ method: 'GET', path: '/records/f1', query: '', headers: { accept: 'application/json' }, body: '' });
        const e = envelope('POST', '/_pgp/tunnel', '', JSON.stringify(inner));
        body = channel ? await channelSeal(JSON.stringify(e), alice.channel.c2s) : await seal(e, alice.sessionCert, alice.key.privateKey, { armor: false });
      } else {
        const sealed = channel ? await channelSeal(text, alice.channel.c2s) : await seal(text, alice.sessionCert, alice.key.privateKey, { armor: false });
        body = valid ? sealed : mutate(sealed);
      }
      const headers = { 'Content-Type': rand() < 0.9 ? 'application/pgp-encrypted' : pick(['application/json', 'multipart/related; boundary=x', 'text/plain']) };
      if (rand() < 0.85) headers['X-PGP-Session'] = rand() < 0.8 ? alice.token : Buffer.from(mutate(Buffer.from(alice.token))).toString('latin1').replace(/[^\x21-\x7e]/g, 'A');
      if (channel) headers['X-PGP-Channel'] = rand() < 0.9 ? '1' : pick(['0', '2', 'yes', '']);
      if (rand() < 0.1) headers['X-PGP-Tunnel-Mark'] = Buffer.from(bytes(16)).toString('hex');
      const method = rand() < 0.8 ? 'POST' : pick(['PUT', 'DELETE', 'GET', 'HEAD', 'COPY']);
      let r;
      try {
        r = await db.request(path, { method, auth: rand() < 0.8 ? auth : null, headers,
          body: method === 'GET' || method === 'HEAD' ? undefined : body, timeoutMs: 20000 });
        await r.arrayBuffer();
      } catch (e) {
        throw new Error(`request ${i} (seed ${SEED}): no well-formed answer: ${e.message}`);
      }
      sent++;
      statuses.set(r.status, (statuses.get(r.status) || 0) + 1);
      if (r.status >= 500 && valid && env && typeof env === 'object' && typeof env.body === 'string'
          && typeof env.method === 'string' && env.path === path) {
        // The same request in plaintext (it passes the plugin untouched): if CouchDB itself
        // answers 5xx to it, the answer is CouchDB's own (3.5.0 answers a login body without
        // a name with 500 badarg, for one), not the plugin's.
        const plain = await db.request(path, { method: env.method === 'GET' ? 'GET' : env.method, auth,
          headers: { 'Content-Type': env.content_type || 'application/json' },
          body: env.method === 'GET' || env.method === 'HEAD' ? undefined : env.body });
        await plain.arrayBuffer();
        if (plain.status >= 500) { couchdbOwn++; continue; }
      }
      // A request that does not say it is encrypted is CouchDB's to parse (the plugin only
      // checks the policies on it): e.g. 3.5.0 answers garbage sent as multipart/related with
      // a 500 of its own.
      if (r.status >= 500 && headers['Content-Type'] !== 'application/pgp-encrypted') { couchdbOwn++; continue; }
      if (r.status >= 500) {
        const allowed = r.status === 503 && path === '/_pgp/tunnel';
        assert.ok(allowed, `request ${i} (seed ${SEED}): ${method} ${path} answered ${r.status}; channel ${channel}, valid ${valid}, envelope ${text.slice(0, 400)}; headers ${JSON.stringify(headers).slice(0, 300)}\n${db.logErrors().slice(-6).join('\n')}`);
      }
    }
    // Nothing a refused or mutated request carried reached the signed-only database, and the
    // node is up with its memory within bounds.
    const all = await db.json('/signed/_all_docs');
    assert.equal(all.body.total_rows, 0, 'an unsigned document reached the signed-only database');
    assert.equal((await db.json('/_up', { auth: null })).status, 200);
    const mem1 = await memory();
    assert.ok(mem1 < mem0 + 64 * 1024 * 1024, `memory grew from ${mem0} to ${mem1}`);
    const errors = db.logErrors().filter((l) => /couch_pgp/.test(l) && !/response not encrypted/.test(l));
    console.log(`# http fuzz: ${sent} requests, seed ${SEED}, ${couchdbOwn} 5xx that are CouchDB's own (the same request in plaintext, or not marked encrypted), statuses ${JSON.stringify(Object.fromEntries(statuses))}, memory ${Math.round(mem0 / 1048576)} -> ${Math.round(mem1 / 1048576)} MiB`);
    assert.deepEqual(errors.slice(0, 5), [], 'couch_pgp errors in the log');
  });
});
