// couch_pgp on a two-node CouchDB cluster, behind a round-robin "load balancer": the
// browser client's module (client/src, run in node) logs in on one node and its requests
// land on either; a session opens on any node sharing the secret; a certificate registered
// through one node signs writes accepted on the other; and a request captured on its way to
// one node is refused as a replay by the other.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CouchDB, couchdbSkip } from './couchdb.mjs';
import * as openpgp from 'openpgp';
import { connect, Security } from '../../client/src/index.js';

const skip = couchdbSkip();
const PASSWORD = 'alice-cluster-pw-5';

describe('couch_pgp on a two-node CouchDB cluster', { skip, timeout: 600000 }, () => {
  let nodes; let identity;
  const basic = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`;

  before(async () => {
    nodes = await CouchDB.startCluster(2, { ini: { couch_pgp: { signed_dbs: 'signed' } } });
    const [a, b] = nodes;
    const u = await a.json('/_users/org.couchdb.user:alice', {
      method: 'PUT', body: { name: 'alice', password: PASSWORD, roles: [], type: 'user' },
    });
    assert.equal(u.status, 201, u.text);
    for (const name of ['records', 'signed']) {
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

  test('both nodes are members and serve the same identity', async () => {
    for (const n of nodes) {
      const m = await n.json('/_membership');
      assert.equal(m.body.cluster_nodes.length, 2);
      assert.equal((await n.json('/_pgp', { auth: null })).body.fingerprint, identity);
    }
  });

  test('a session started on one node serves requests on both, in place and through the tunnel', async () => {
    const lb = roundRobin();
    const couch = await connect(nodes[0].url, { pin: identity, fetch: lb.fetch, headers: { Authorization: basic } });
    await couch.login('alice', PASSWORD);
    const seenBy = new Set();
    for (let k = 0; k < 4; k++) {
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
    assert.equal(seenBy.size, 2, 'requests reached both nodes');
    for (const n of nodes) assert.equal((await n.json('/records/r1')).body.note, 'cluster');
  });

  test('a certificate registered through one node signs writes the other node accepts, until it is removed', async () => {
    const lb = roundRobin();
    const couch = await connect(nodes[1].url, { pin: identity, fetch: lb.fetch, headers: { Authorization: basic } });
    await couch.login('alice', PASSWORD);
    const signer = await new Security({ lifetime: 0 }).ready;
    await couch.registerCertificate(signer);
    const results = [];
    for (let k = 0; k < 2; k++) { // one write lands on each node
      const doc = await signer.signDoc({ _id: `s${k}`, n: k });
      results.push((await couch.request(`/signed/s${k}`, { method: 'PUT', body: doc })).status);
      const forged = { ...doc, _id: `f${k}` };
      results.push((await couch.request(`/signed/f${k}`, { method: 'PUT', body: forged })).status);
    }
    assert.deepEqual(results, [201, 403, 201, 403]);
    assert.equal((await nodes[0].json('/signed/_all_docs')).body.rows.length, 2);

    // Removed again (a lost key): new writes signed by it are refused on every node.
    const fpr = await signer.fingerprint();
    assert.deepEqual(await couch.unregisterCertificate(fpr.toLowerCase()), []);
    await assert.rejects(couch.unregisterCertificate(fpr), (e) => e.status === 404 && e.error === 'not_found');
    const after = [];
    for (let k = 2; k < 4; k++) {
      const doc = await signer.signDoc({ _id: `s${k}`, n: k });
      after.push((await couch.request(`/signed/s${k}`, { method: 'PUT', body: doc })).status);
    }
    assert.deepEqual(after, [403, 403]);
    assert.match(nodes.map((n) => n.log()).join('\n'), new RegExp(`couch_pgp audit: cert removed user=alice cert=${fpr}`));
  });

  test('a request captured on its way to one node is refused as a replay by the other', async () => {
    const lb = roundRobin();
    const me = await new Security().ready;
    const couch = await connect(nodes[0].url, { pin: identity, fetch: lb.fetch, headers: { Authorization: basic }, security: me });
    await couch.login('alice', PASSWORD);
    const r = await couch.request('/records/replayed', { method: 'PUT', body: { n: 1 } });
    assert.equal(r.status, 201);
    const captured = lb.sent.at(-1);
    const key = await openpgp.decryptKey({
      privateKey: await openpgp.readPrivateKey({ armoredKey: await me.exportPrivateKey('x') }), passphrase: 'x' });
    for (const target of [nodes.find((n) => n.nodeName !== captured.node), nodes.find((n) => n.nodeName === captured.node)]) {
      const again = await fetch(target.url + captured.path, captured.init);
      assert.equal(again.status, 400, target.nodeName);
      assert.equal(again.headers.get('x-pgp-encrypted'), '1');
      const { data } = await openpgp.decrypt({
        message: await openpgp.readMessage({ armoredMessage: (await again.json()).pgp }), decryptionKeys: key });
      assert.equal(JSON.parse(JSON.parse(data).body).error, 'pgp_replay', target.nodeName);
    }
    const doc = await nodes[1].json('/records/replayed');
    assert.equal(doc.body._rev.split('-')[0], '1', 'the document was written once');
  });
});
