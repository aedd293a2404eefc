// couch_pgp on a three-node CouchDB cluster (n=3: every node holds a copy of every shard),
// from the release the suite uses, loopback only, one private epmd. Behind a round-robin
// "load balancer" the browser client's module (client/src, run in node) logs in on one node
// and its requests land on all three; a session made on any node works on every node; a
// request captured on its way to one node is refused as a replay by every other; a
// certificate registered through one node signs writes accepted on the others; a signed-only
// database refuses an unsigned write through each node and no copy stores it, while valid
// signed documents reach every copy, by the cluster's own shard copies and by POST
// /_replicate between nodes; require_encryption(_dbs) hold on every node; and each node
// keeps its own audit chain, which verifies with the cluster's one identity.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CouchDB, couchdbSkip, run, REPO } from './couchdb.mjs';
import * as openpgp from 'openpgp';
import { connect, Security } from '../../client/src/index.js';
import { Client, newKey, signDoc, jcs, envelope, channelSeal } from './pgp_client.mjs';

const skip = couchdbSkip();
const PASSWORD = 'alice-cluster-pw-5';

describe('couch_pgp on a three-node CouchDB cluster', { skip, timeout: 600000 }, () => {
  let nodes; let identity;
  const basic = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`;

  before(async () => {
    nodes = await CouchDB.startCluster(3, { ini: { couch_pgp: { signed_dbs: 'signed,signed2,signed3' } } });
    const [a, b] = nodes;
    const u = await a.json('/_users/org.couchdb.user:alice', {
      method: 'PUT', body: { name: 'alice', password: PASSWORD, roles: [], type: 'user' },
    });
    assert.equal(u.status, 201, u.text);
    for (const name of ['records', 'signed', 'signed2', 'plainsrc', 'sealed']) {
      assert.equal((await b.json(`/${name}`, { method: 'PUT' })).status, 201);
      const sec = await b.json(`/${name}/_security`, { method: 'PUT', body: { members: { names: ['alice'] }, admins: {} } });
      assert.equal(sec.status, 200, sec.text);
    }
    identity = (await a.json('/_pgp', { auth: null })).body.fingerprint;
  });

  after(async () => {
    for (const n of (nodes || []).reverse()) await n.stop();
  });

  /** A fetch that sends each request to the next node in turn, recording where it went. */
  function roundRobin() {
    let i = 0;
    const sent = [];
    const f = async (url, init) => {
      const u = new URL(url);
      const node = nodes[i++ % nodes.length];
      sent.push({ node: node.nodeName, path: u.pathname, init });
      return fetch(node.url + u.pathname + u.search, init);
    };
    return { fetch: f, sent };
  }

  test('all three nodes are members and serve the same identity', async () => {
    for (const n of nodes) {
      const m = await n.json('/_membership');
      assert.equal(m.body.cluster_nodes.length, 3);
      assert.equal((await n.json('/_pgp', { auth: null })).body.fingerprint, identity);
    }
  });

  test('a session started on one node serves requests on all, in place and through the tunnel', async () => {
    const lb = roundRobin();
    const couch = await connect(nodes[0].url, { pin: identity, fetch: lb.fetch, headers: { Authorization: basic } });
    await couch.login('alice', PASSWORD);
    const seenBy = new Set();
    for (let k = 0; k < 6; k++) {
      const who = await (await couch.request('/_pgp/whoami')).json();
      assert.deepEqual(who, { user: 'alice', encrypted: true, client_fingerprint: await couch.security.fingerprint() });
    }
    const put = await (await couch.request('/records/r1', { method: 'PUT', body: { note: 'cluster' } })).checked();
    const got = await (await couch.request('/records/r1')).checked();
    assert.equal(got._rev, put.rev);
    const all = await couch.request('/records/_all_docs?include_docs=true');
    assert.equal(all.tunnelled, true);
    assert.deepEqual((await all.json()).rows.map((r) => r.doc.note), ['cluster']);
    for (const s of lb.sent) seenBy.add(s.node);
    assert.equal(seenBy.size, 3, 'requests reached every node');
    for (const n of nodes) assert.equal((await n.json('/records/r1')).body.note, 'cluster');
  });

  test('a certificate registered through one node signs writes the other node accepts, until it is removed', async () => {
    const lb = roundRobin();
    const couch = await connect(nodes[1].url, { pin: identity, fetch: lb.fetch, headers: { Authorization: basic } });
    await couch.login('alice', PASSWORD);
    const signer = await new Security({ lifetime: 0 }).ready;
    await couch.registerCertificate(signer);
    const results = [];
    for (let k = 0; k < 3; k++) { // with 2 requests per write, the 3 writes land on 3 different nodes
      const doc = await signer.signDoc({ _id: `s${k}`, n: k });
      results.push((await couch.request(`/signed/s${k}`, { method: 'PUT', body: doc })).status);
      const forged = { ...doc, _id: `f${k}` };
      results.push((await couch.request(`/signed/f${k}`, { method: 'PUT', body: forged })).status);
    }
    assert.deepEqual(results, [201, 403, 201, 403, 201, 403]);
    for (const n of nodes) assert.equal((await n.json('/signed/_all_docs')).body.rows.length, 3);

    // Removed again (a lost key): new writes signed by it are refused on every node.
    const fpr = await signer.fingerprint();
    assert.deepEqual(await couch.unregisterCertificate(fpr.toLowerCase()), []);
    await assert.rejects(couch.unregisterCertificate(fpr), (e) => e.status === 404 && e.error === 'not_found');
    const after = [];
    for (let k = 3; k < 6; k++) {
      const doc = await signer.signDoc({ _id: `s${k}`, n: k });
      after.push((await couch.request(`/signed/s${k}`, { method: 'PUT', body: doc })).status);
    }
    assert.deepEqual(after, [403, 403, 403]);
    assert.match(nodes.map((n) => n.log()).join('\n'), new RegExp(`couch_pgp audit: cert_revoked user=alice cert=${fpr} revoked_at=\\d+`));
  });

  test('a request captured on its way to one node is refused as a replay by every other', async () => {
    const lb = roundRobin();
    const me = await new Security().ready;
    // The per-message mode here (the answer is readable with the client key); the channel
    // below.
    const couch = await connect(nodes[0].url, { pin: identity, fetch: lb.fetch, headers: { Authorization: basic }, security: me, mode: 'session' });
    await couch.login('alice', PASSWORD);
    const r = await couch.request('/records/replayed', { method: 'PUT', body: { n: 1 } });
    assert.equal(r.status, 201);
    const captured = lb.sent.at(-1);
    const key = await openpgp.decryptKey({
      privateKey: await openpgp.readPrivateKey({ armoredKey: await me.exportPrivateKey('x') }), passphrase: 'x' });
    const targets = [...nodes.filter((n) => n.nodeName !== captured.node), nodes.find((n) => n.nodeName === captured.node)];
    assert.equal(targets.length, 3);
    for (const target of targets) {
      const again = await fetch(target.url + captured.path, captured.init);
      assert.equal(again.status, 400, target.nodeName);
      assert.equal(again.headers.get('x-pgp-encrypted'), '1');
      const { data } = await openpgp.decrypt({
        message: await openpgp.readMessage({ armoredMessage: (await again.json()).pgp }), decryptionKeys: key });
      assert.equal(JSON.parse(JSON.parse(data).body).error, 'pgp_replay', target.nodeName);
    }
    for (const n of nodes) {
      const doc = await n.json('/records/replayed');
      assert.equal(doc.body._rev.split('-')[0], '1', `the document was written once (${n.nodeName})`);
    }
  });

  // ---- pgp_client.mjs (OpenPGP.js, independent of the server and of client/src)

  test('in the session channel too: a session from one node opens on every node, and a captured message is a replay everywhere', async () => {
    const first = new Client(nodes[0], { username: 'alice', password: PASSWORD }, await newKey('alice-channel'));
    await first.pin(identity);
    await first.startSession();
    assert.ok(first.channel, 'the session has channel keys');
    // The same session (token and keys) through each node.
    const via = nodes.map((n) => Object.assign(new Client(n, first.auth, first.key),
      { identity: first.identity, token: first.token, sessionCert: first.sessionCert, channel: first.channel }));
    for (const [i, c] of via.entries()) {
      const w = await c.sendChannel('PUT', `/records/ch-${i}`, '', JSON.stringify({ i }));
      assert.equal(w.status, 201, nodes[i].nodeName);
      assert.equal(w.channel, true);
    }
    const env = envelope('PUT', '/records/ch-replayed', '', JSON.stringify({ n: 1 }));
    const msg = await channelSeal(JSON.stringify(env), first.channel.c2s);
    assert.equal((await via[1].sendChannel('PUT', '/records/ch-replayed', '', '', { env, msg })).status, 201);
    for (const c of [via[0], via[2], via[1]]) {
      const again = await c.sendChannel('PUT', '/records/ch-replayed', '', '', { env, msg });
      assert.equal(again.status, 400, c.db.nodeName);
      assert.equal(again.channel, true);
      assert.equal(again.body.error, 'pgp_replay', c.db.nodeName);
    }
    for (const n of nodes) {
      const doc = await n.json('/records/ch-replayed');
      assert.equal(doc.body._rev.split('-')[0], '1', `the document was written once (${n.nodeName})`);
    }
  });

  const aliceAuth = { username: 'alice', password: PASSWORD };

  test('a session made on any node works on every node', async () => {
    for (const [i, home] of nodes.entries()) {
      const c = new Client(home, aliceAuth, await newKey(`alice-${i}`));
      assert.equal(await c.pin(identity), identity);
      await c.startSession();
      for (const n of nodes) {
        c.db = n;
        const r = await c.send('GET', '/_pgp/whoami');
        assert.equal(r.status, 200, `session from ${home.nodeName} on ${n.nodeName}`);
        assert.equal(r.encrypted, true);
        assert.equal(r.nonceMatches, true);
        assert.deepEqual(r.body, { user: 'alice', encrypted: true, client_fingerprint: c.key.fingerprint });
      }
    }
  });

  /** Per copy, on every node: whether the shard copies of `db` hold `id` (rpc, below
   *  fabric: each copy is read on its own node, without quorum or read repair). */
  async function copiesHolding(db, id) {
    const out = [];
    for (const n of nodes) {
      const r = await n.rpc(`[case couch_db:open_int(mem3:name(S), [?ADMIN_CTX]) of
          {ok, Db} -> try couch_db:get_doc_info(Db, <<"${id}">>) of {ok, _} -> has; _ -> none after couch_db:close(Db) end;
          _ -> error end || S <- mem3:local_shards(<<"${db}">>)].`.replace('?ADMIN_CTX', '{user_ctx, {user_ctx, null, [<<"_admin">>], undefined}}'));
      out.push(r.replace(/\s/g, ''));
    }
    return out;
  }

  test('valid signed documents reach every copy: the cluster\'s own shard copies, and POST /_replicate between nodes', async () => {
    const key = await newKey('alice-replication');
    const statement = jcs({ action: 'register', fingerprint: key.fingerprint, user: 'alice' });
    const signature = await openpgp.sign({ message: await openpgp.createMessage({ text: statement }), signingKeys: key.privateKey, detached: true });
    const reg = await nodes[2].json('/_pgp/certs', { method: 'POST', auth: aliceAuth, body: { cert: key.publicKey.armor(), signature } });
    assert.equal(reg.status, 201, reg.text);
    // Written through node 1: every node's copy gets it (the write goes to all three copies,
    // internal replication fills any that missed it).
    const v1 = await signDoc({ _id: 'v1', n: 1 }, key);
    const w = await nodes[0].json('/signed/v1', { method: 'PUT', auth: aliceAuth, body: v1 });
    assert.equal(w.status, 201, w.text);
    await nodes[0].waitFor(async () => (await copiesHolding('signed', 'v1')).every((h) => /^\[(none,)*has(,none)*\]$/.test(h)),
      { what: 'every node\'s shard copy to hold v1' });
    for (const n of nodes) assert.deepEqual((await n.json('/signed/v1')).body.pgp_signatures, v1.pgp_signatures, n.nodeName);

    // CouchDB to CouchDB: a source database reached through node 3, the target through node
    // 2, the job run by node 1.
    const url = (n, db) => `http://${n.admin.username}:${n.admin.password}@127.0.0.1:${n.port}/${db}`;
    for (const k of [1, 2]) {
      const d = await signDoc({ _id: `r${k}`, n: k }, key);
      assert.equal((await nodes[2].json(`/plainsrc/r${k}`, { method: 'PUT', body: d })).status, 201);
    }
    const rep = await nodes[0].json('/_replicate', { method: 'POST', body: { source: url(nodes[2], 'plainsrc'), target: url(nodes[1], 'signed2') } });
    assert.equal(rep.status, 200, rep.text);
    assert.equal(rep.body.history[0].docs_written, 2);
    assert.equal(rep.body.history[0].doc_write_failures, 0);
    for (const n of nodes) {
      for (const k of [1, 2]) {
        const got = await n.json(`/signed2/r${k}`);
        assert.equal(got.status, 200, `r${k} via ${n.nodeName}`);
        assert.equal(got.body.n, k);
      }
    }
    for (const k of [1, 2]) {
      await nodes[0].waitFor(async () => (await copiesHolding('signed2', `r${k}`)).every((h) => /^\[(none,)*has(,none)*\]$/.test(h)),
        { what: `every node's shard copy to hold r${k}` });
    }
    // An unsigned document at the source is not replicated in: the job fails, no copy has it.
    assert.equal((await nodes[2].json('/plainsrc/bad', { method: 'PUT', body: { n: 3 } })).status, 201);
    const rep2 = await nodes[1].json('/_replicate', { method: 'POST', body: { source: url(nodes[2], 'plainsrc'), target: url(nodes[0], 'signed2') } });
    assert.notEqual(rep2.status, 200, rep2.text);
    for (const held of await copiesHolding('signed2', 'bad')) assert.match(held, /^\[(none,)*none\]$/);
    for (const n of nodes) assert.equal((await n.json('/signed2/bad')).status, 404);
  });

  test('replicated writes to every shard at once, signed by a certificate registered a moment ago, are accepted', async () => {
    // Each shard copy checks its revision in its own process, so a burst of replicated
    // writes makes every node look the new certificate up several times at once, while the
    // node's certificate index is being rebuilt. (Lookups that arrived during a rebuild used
    // to be swallowed by the rebuild's fabric call: such writes hung until a timeout.)
    assert.equal((await nodes[0].json('/signed3?q=8', { method: 'PUT' })).status, 201);
    const key = await newKey('alice-burst');
    const statement = jcs({ action: 'register', fingerprint: key.fingerprint, user: 'alice' });
    const signature = await openpgp.sign({ message: await openpgp.createMessage({ text: statement }), signingKeys: key.privateKey, detached: true });
    const reg = await nodes[1].json('/_pgp/certs', { method: 'POST', auth: aliceAuth, body: { cert: key.publicKey.armor(), signature } });
    assert.equal(reg.status, 201, reg.text);
    const docs = [];
    for (let k = 0; k < 24; k++) {
      docs.push({ ...(await signDoc({ _id: `b${k}`, n: k }, key)), _rev: `1-${String(k).padStart(32, '0')}` });
    }
    const r = await nodes[0].json('/signed3/_bulk_docs', { method: 'POST', body: { new_edits: false, docs }, timeoutMs: 120000 });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.body, []);
    // Acknowledged by two copies of each range; the third may still be checking. Every
    // node's own copies (each node holds all ranges) end up with all 24, none refused.
    for (const n of nodes) {
      await n.waitFor(async () => Number(await n.rpc(`lists:sum([begin {ok, Db} = couch_db:open_int(mem3:name(S), []),
          {ok, Info} = couch_db:get_db_info(Db), couch_db:close(Db), couch_util:get_value(doc_count, Info) end
        || S <- mem3:local_shards(<<"signed3">>)]).`)) === 24, { what: `${n.nodeName}'s shard copies to hold all 24` });
    }
    // Only once every copy holds them: a clustered read through one node may be answered by
    // another node's copy of a range (a CI run read 19 of 24 from a copy still catching up).
    for (const n of nodes) {
      assert.equal((await n.json('/signed3/_all_docs')).body.rows.length, 24, n.nodeName);
    }
    assert.deepEqual(nodes.flatMap((n) => n.log().split('\n').filter((l) => /signed_doc_refused .*db=signed3/.test(l))), []);
  });

  test('a signed-only database refuses an unsigned write through every node, and no copy stores it', async () => {
    const reason = 'Signed-only database: the document has no pgp_signatures.';
    for (const [i, n] of nodes.entries()) {
      for (const [what, write] of [
        ['PUT', () => n.json(`/signed/u${i}`, { method: 'PUT', auth: aliceAuth, body: { n: i } })],
        ['_bulk_docs new_edits=false (admin)', () => n.json('/signed/_bulk_docs', { method: 'POST',
          body: { new_edits: false, docs: [{ _id: `u${i}`, _rev: '1-0123456789abcdef0123456789abcdef', n: i }] } })],
      ]) {
        const r = await write();
        assert.equal(r.status, 403, `${what} via ${n.nodeName}: ${r.text}`);
        assert.deepEqual(r.body, { error: 'forbidden', reason }, `${what} via ${n.nodeName}`);
      }
    }
    for (let i = 0; i < nodes.length; i++) {
      // One atom per shard copy the node holds (q ranges): none of them has the document.
      for (const held of await copiesHolding('signed', `u${i}`)) assert.match(held, /^\[(none,)*none\]$/, `u${i}: ${held}`);
      for (const n of nodes) assert.equal((await n.json(`/signed/u${i}`)).status, 404);
    }
  });

  test('require_encryption_dbs and require_encryption hold on every node', async () => {
    const refused = { error: 'pgp_encryption_required', reason: 'This resource accepts only encrypted requests.' };
    const c = new Client(nodes[0], aliceAuth, await newKey('alice-sealed'));
    await c.pin(identity);
    await c.startSession();
    // Each node's own [couch_pgp] (rpc: once on, the config API is refused in plaintext).
    for (const n of nodes) assert.equal(await n.rpc('config:set("couch_pgp", "require_encryption_dbs", "sealed", false).'), 'ok');
    for (const [i, n] of nodes.entries()) {
      const put = await n.json(`/sealed/p${i}`, { method: 'PUT', auth: aliceAuth, body: { n: i } });
      assert.equal(put.status, 403, `${n.nodeName}: ${put.text}`);
      assert.deepEqual(put.body, refused);
      c.db = n;
      const enc = await c.send('PUT', `/sealed/e${i}`, '', JSON.stringify({ n: i }));
      assert.equal(enc.status, 201, `${n.nodeName}: ${JSON.stringify(enc.body)}`);
    }
    for (const n of nodes) {
      assert.deepEqual((await n.json('/sealed/e0', { auth: aliceAuth })).body, refused);
      c.db = n;
      assert.equal((await c.send('GET', '/sealed/e2')).body.n, 2);
      for (const held of await copiesHolding('sealed', 'p0')) assert.match(held, /^\[(none,)*none\]$/);
    }
    // The whole server, on every node (set through rpc: the config API itself is refused in
    // plaintext once it is on).
    try {
      for (const n of nodes) assert.equal(await n.rpc('config:set("couch_pgp", "require_encryption", "true", false).'), 'ok');
      for (const n of nodes) {
        const r = await n.json('/records/_all_docs', { auth: aliceAuth });
        assert.equal(r.status, 403, n.nodeName);
        assert.deepEqual(r.body, refused);
        assert.equal((await n.json('/_up', { auth: null })).status, 200);
        c.db = n;
        assert.equal((await c.send('GET', '/records/r1')).body.note, 'cluster');
      }
    } finally {
      for (const n of nodes) await n.rpc('config:set("couch_pgp", "require_encryption", "false", false).');
    }
    assert.equal((await nodes[1].json('/records/r1', { auth: aliceAuth })).status, 200);
  });

  test('each node keeps its own audit chain, verified with the shared identity', async () => {
    const ident = path.join(nodes[0].dir, 'identity.json');
    fs.writeFileSync(ident, (await nodes[0].json('/_pgp', { auth: null })).text);
    const heads = new Set();
    for (const n of nodes) {
      assert.equal((await n.json('/_pgp/audit/checkpoint', { method: 'POST' })).status, 200);
      const r = await n.request('/_pgp/audit/file');
      assert.equal(r.status, 200);
      const text = await r.text();
      const entries = text.trimEnd().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual([...new Set(entries.map((e) => e.node))], [n.nodeName]);
      // Every node holds a copy of every shard (n=3): each recorded the signed writes.
      assert.ok(entries.some((e) => e.type === 'signed_doc_accepted' && e.fields.db === 'signed'), n.nodeName);
      heads.add(entries[entries.length - 1].hash);
      const f = path.join(n.dir, 'audit-copy.log');
      fs.writeFileSync(f, text);
      const v = await run(path.join(REPO, 'scripts', 'audit_verify'), ['--cert', ident, f]);
      assert.equal(v.code, 0, v.stdout + v.stderr);
      assert.match(v.stdout, new RegExp(`node ${n.nodeName}$`, 'm'));
    }
    assert.equal(heads.size, nodes.length);
  });
});
