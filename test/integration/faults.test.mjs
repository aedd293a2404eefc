// Faults on a three-node couch_pgp cluster (n=3), and what clients see:
// - a node killed with SIGKILL in the middle of an encrypted write load: clients retry on the
//   other nodes and see no error; the node restarts, its shard copies catch up, it keeps its
//   identity and accepts the session tokens issued before; every acknowledged write is then
//   readable, encrypted and byte for byte, through every node;
// - a node restarted with a wrong passphrase, a missing key file, a truncated key file, a key
//   file it cannot read, a key file or directory others may access: the node stays up,
//   GET /_pgp answers 503 pgp_unavailable, the log says why, plaintext CouchDB keeps working
//   through it, and the key file is left exactly as it was (a missing one is not replaced by
//   a new identity);
// - the token secret ([couch_pgp] secret) differing on one node: tokens sealed elsewhere are
//   refused there with 401 (and its own elsewhere), never a 500 or a crash.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CouchDB, couchdbSkip } from './couchdb.mjs';
import { loadUsers, startClients, writeLoad, readBack } from './loadgen.mjs';

const skip = couchdbSkip();
const WRITES = Number(process.env.FAULTS_WRITES || 600);

describe('couch_pgp on a three-node cluster: faults', { skip, timeout: 1200000 }, () => {
  let nodes; let pin; let clients;
  const keyFile = (n) => path.join(n.home, 'data', 'couch_pgp', 'server_key.asc');
  const sha = (f) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

  before(async () => {
    nodes = await CouchDB.startCluster(3);
    pin = (await nodes[0].json('/_pgp', { auth: null })).body.fingerprint;
    const users = await loadUsers(nodes[0], 'faultdb', 2);
    clients = await startClients(nodes, users, 24, pin); // sessions made on each node in turn
    assert.equal((await nodes[0].json('/plain', { method: 'PUT' })).status, 201);
  });

  after(async () => {
    for (const n of (nodes || []).reverse()) await n.stop();
  });

  /** Sum of doc_count over the node's own shard copies of `db` (no quorum, no other node). */
  async function localDocCount(n, db) {
    const out = await n.rpc(`lists:sum([begin {ok, Db} = couch_db:open_int(mem3:name(S), []),
        {ok, Info} = couch_db:get_db_info(Db), couch_db:close(Db), couch_util:get_value(doc_count, Info) end
      || S <- mem3:local_shards(<<"${db}">>)]).`);
    return Number(out);
  }

  test('a node killed with SIGKILL mid-load: no client error, no acknowledged write lost, the node comes back as itself', async () => {
    const victim = nodes[2];
    const keyBefore = sha(keyFile(victim));
    const down = new Set();
    let killedAt = null; let restarted = null;
    const r = await writeLoad(nodes, clients, {
      db: 'faultdb', writes: WRITES, isUp: (n) => !down.has(n.nodeName),
      onWrite: async (i) => {
        if (i === Math.floor(WRITES / 4)) {
          killedAt = i;
          // No down.add() before the kill: requests in flight to it, and those sent until the
          // clients notice, fail as they would in production and are retried.
          await victim.kill('SIGKILL');
          down.add(victim.nodeName);
        }
        if (i === Math.floor((3 * WRITES) / 4)) {
          restarted = victim.start().then(() => down.delete(victim.nodeName));
        }
      },
    });
    await restarted;
    console.log(`# SIGKILL at write ${killedAt}: acknowledged ${r.acked.length} (202: ${r.acked.filter((a) => a.status === 202).length}), `
      + `retried ${r.retries}, ambiguous ${r.ambiguous.length}, errors ${r.errors.length}, by node ${Object.values(r.byNode).join('/')}`);
    assert.equal(killedAt, Math.floor(WRITES / 4));
    assert.deepEqual(r.errors, [], 'clients saw no error that a retry on another node did not fix');
    assert.equal(r.acked.length + r.ambiguous.length, WRITES);
    assert.ok(r.retries > 0 || r.byNode[victim.nodeName] < WRITES / 3, 'the kill was noticed by clients');
    // Back: the same identity from the same, untouched key file.
    assert.equal(victim.running, true);
    const id = await victim.json('/_pgp', { auth: null });
    assert.equal(id.status, 200);
    assert.equal(id.body.fingerprint, pin);
    assert.equal(sha(keyFile(victim)), keyBefore);
    // Its own shard copies catch up (internal replication), without any read going through it.
    await victim.waitFor(async () => (await localDocCount(victim, 'faultdb')) === WRITES,
      { timeoutMs: 120000, what: 'the restarted node\'s shard copies to hold every write' });
    // Session tokens issued before the kill (by the victim, and by the others) still open on it.
    for (const c of clients.slice(0, 6)) {
      const w = await c.send(victim, 'GET', '/_pgp/whoami');
      assert.equal(w.status, 200, `client ${c.id}: ${JSON.stringify(w.body)}`);
      assert.equal(JSON.parse(w.body).client_fingerprint, c.key.fingerprint);
    }
    // Every acknowledged write, through every node, byte for byte.
    for (const n of nodes) {
      const c = await readBack(nodes, clients, r.acked, { db: 'faultdb', ambiguous: r.ambiguous, via: () => n });
      assert.deepEqual({ lost: c.lost, altered: c.altered, errors: c.errors }, { lost: [], altered: [], errors: [] }, `through ${n.nodeName}`);
      assert.equal(c.read, WRITES);
    }
    // No error of couch_pgp's in any log (CouchDB's own around the kill are expected).
    for (const n of nodes) {
      assert.deepEqual(n.log().split(/\n(?=\[)/).filter((e) => /^\[(error|critical)\]/.test(e) && /couch_pgp/.test(e)), [], n.nodeName);
    }
  });

  // ---- the key file

  const victim = () => nodes[2];

  /** Restarts the victim after `prepare()`, then checks what a degraded node must do. */
  async function degraded(what, reason, prepare, { env } = {}) {
    const n = victim();
    await n.kill('SIGTERM');
    const before = await prepare(n);
    const mark = n.log().length;
    await n.start({ env });
    const id = await n.json('/_pgp', { auth: null });
    assert.equal(id.status, 503, `${what}: ${id.text}`);
    assert.deepEqual(id.body, { error: 'pgp_unavailable', reason: 'The server\'s OpenPGP key is not loaded.' }, what);
    const line = await n.waitFor(async () => n.log(mark).split('\n').find((l) => l.includes('couch_pgp: server identity key unavailable: ')),
      { what: `${what}: the reason in the log` });
    assert.match(line, new RegExp(`^\\[error\\] .*couch_pgp: server identity key unavailable: ${reason}(: | \\(key_file)`), what);
    // Plaintext CouchDB keeps working through it, reads and writes on the cluster.
    const doc = `${what.replace(/\W+/g, '-')}-${Date.now()}`;
    assert.equal((await n.json(`/plain/${doc}`, { method: 'PUT', body: { what } })).status, 201, what);
    assert.equal((await nodes[0].json(`/plain/${doc}`)).body.what, what);
    assert.equal((await n.json('/faultdb')).body.doc_count, WRITES);
    // An encrypted request through it is refused plainly; the others still serve it.
    const c = clients[0];
    const enc = await c.send(n, 'GET', '/_pgp/whoami');
    assert.equal(enc.status, 503, what);
    assert.equal(enc.encrypted, false);
    assert.equal((await c.send(nodes[0], 'GET', '/_pgp/whoami')).status, 200);
    assert.equal((await n.json('/_up', { auth: null })).status, 200);
    return { n, before, mark };
  }

  async function restore(n, fix) {
    await n.kill('SIGTERM');
    await fix();
    await n.start({ env: { COUCH_PGP_PASSPHRASE: null } });
    const id = await n.json('/_pgp', { auth: null });
    assert.equal(id.status, 200, id.text);
    assert.equal(id.body.fingerprint, pin);
  }

  test('a wrong passphrase: 503, the reason logged, the key file untouched', async () => {
    const { n, before } = await degraded('wrong passphrase', 'bad_passphrase', async (v) => sha(keyFile(v)),
      { env: { COUCH_PGP_PASSPHRASE: 'not-the-passphrase' } });
    assert.equal(sha(keyFile(n)), before);
    await restore(n, async () => {});
  });

  test('a missing key file on a node that had an identity: 503, no new identity is created', async () => {
    const saved = fs.readFileSync(keyFile(victim()));
    const { n } = await degraded('missing key file', 'key_file_missing', async (v) => fs.rmSync(keyFile(v)));
    assert.equal(fs.existsSync(keyFile(n)), false, 'no new key file');
    assert.match(n.readIni(), new RegExp(`identity_fingerprint = ${pin}`));
    await restore(n, async () => fs.writeFileSync(keyFile(n), saved, { mode: 0o600 }));
  });

  test('a truncated key file: 503, left as it is', async () => {
    const saved = fs.readFileSync(keyFile(victim()));
    const cut = saved.subarray(0, saved.length >> 1);
    const { n } = await degraded('truncated key file', '[a-z_]+', async (v) => fs.writeFileSync(keyFile(v), cut));
    assert.deepEqual(fs.readFileSync(keyFile(n)), cut);
    await restore(n, async () => fs.writeFileSync(keyFile(n), saved));
  });

  test('a key file that cannot be read (a directory in its place): 503, nothing created', async () => {
    // The suite may run as root, for whom a mode-000 file is readable: a directory is not.
    const saved = fs.readFileSync(keyFile(victim()));
    const { n } = await degraded('unreadable key file', '(not_regular_file|eisdir)', async (v) => {
      fs.rmSync(keyFile(v));
      fs.mkdirSync(keyFile(v));
    });
    assert.equal(fs.statSync(keyFile(n)).isDirectory(), true);
    assert.deepEqual(fs.readdirSync(keyFile(n)), []);
    await restore(n, async () => { fs.rmdirSync(keyFile(n)); fs.writeFileSync(keyFile(n), saved, { mode: 0o600 }); });
  });

  test('a key file others may read, a key directory others may write: refused, modes and bytes left as they are', async () => {
    const dir = path.dirname(keyFile(victim()));
    const before = sha(keyFile(victim()));
    let r = await degraded('key file mode 0644', 'key_file_mode', async (v) => fs.chmodSync(keyFile(v), 0o644));
    assert.equal(fs.statSync(keyFile(r.n)).mode & 0o777, 0o644);
    await r.n.kill('SIGTERM');
    fs.chmodSync(keyFile(r.n), 0o600);
    r = await degraded('key directory mode 0777', 'key_dir_mode', async () => fs.chmodSync(dir, 0o777));
    assert.equal(fs.statSync(dir).mode & 0o777, 0o777);
    assert.equal(sha(keyFile(r.n)), before);
    await restore(r.n, async () => fs.chmodSync(dir, 0o700));
  });

  test('the token secret differing on one node: its tokens and the others\' are refused across with 401, never a 500', async () => {
    const n = victim();
    const mark = nodes.map((x) => x.log().length);
    await n.restart({ ini: { couch_pgp: { secret: crypto.randomBytes(16).toString('hex') } } });
    try {
      assert.equal((await n.json('/_pgp', { auth: null })).status, 200);
      const refused = { error: 'unauthorized', reason: 'couch_pgp: the session token is not valid here.' };
      // Sessions made before (sealed under the shared secret) are refused by the odd node.
      for (const c of clients.slice(0, 3)) {
        const r = await c.send(n, 'GET', '/_pgp/whoami');
        assert.equal(r.status, 401, JSON.stringify(r.body));
        assert.equal(r.encrypted, false);
        assert.deepEqual(r.body, refused);
        assert.equal((await c.send(nodes[0], 'GET', '/_pgp/whoami')).status, 200);
      }
      // A session the odd node issues works there and is refused by the others.
      const [odd] = await startClients([n], [{ username: 'load0', password: clients[0].user.password }], 1, pin);
      assert.equal((await odd.send(n, 'GET', '/_pgp/whoami')).status, 200);
      for (const other of nodes.slice(0, 2)) {
        const r = await odd.send(other, 'PUT', '/faultdb/never-written', '{"n":1}');
        assert.equal(r.status, 401);
        assert.deepEqual(r.body, refused);
      }
      assert.equal((await nodes[0].json('/faultdb/never-written')).status, 404);
      // Nothing of couch_pgp's crashed and no request got a 5xx. (CouchDB itself logs errors
      // around a restart, e.g. mem3_rep's rexi_DOWN from a peer going away: not ours.)
      for (const [i, x] of nodes.entries()) {
        const entries = x.log(mark[i]).split(/\n(?=\[)/);
        assert.deepEqual(entries.filter((e) => /^\[(error|critical)\]/.test(e) && /couch_pgp/.test(e)), [], x.nodeName);
        assert.deepEqual(entries.filter((e) => /^\[notice\].* (GET|HEAD|POST|PUT|DELETE|COPY) \S+ 5\d\d /.test(e)), [], x.nodeName);
      }
    } finally {
      await n.restart({ ini: { couch_pgp: { secret: null } } });
    }
    assert.equal((await clients[0].send(n, 'GET', '/_pgp/whoami')).status, 200);
  });
});
