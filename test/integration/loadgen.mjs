// Encrypted write load against a couch_pgp cluster, and the check that every acknowledged
// write is there: used by bench/load/run.mjs (make load) and by faults.test.mjs (a node
// killed in the middle of a load). Written on pgp_client.mjs's OpenPGP.js primitives, from
// the README's protocol alone.
//
//   const users = await loadUsers(nodes[0], 'loaddb', 1);
//   const clients = await startClients(nodes, users, 64, pin);  // one session each
//   const r = await writeLoad(nodes, clients, { db: 'loaddb', writes: 10000 });
//   const c = await readBack(nodes, clients, r.acked, { db: 'loaddb' });
//
// Writes go to the nodes round-robin (write i to nodes[i % n]). A write that fails on a node
// (connection refused or reset, timeout, 5xx) is sent again, as a new request (new nonce and
// timestamp), to the next node whose `isUp(node)` says it is up; a 409 on such a retry means
// an earlier attempt was stored without the client hearing of it, and readBack checks it
// like an acknowledged one. Acknowledged = 201 or 202 (CouchDB's "stored, not yet on a
// quorum of copies").
import crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { envelope, seal, open, newKey, checkSession, openpgp } from './pgp_client.mjs';

const TIMEOUT_MS = 30000;

export const pct = (sorted, p) => (sorted.length
  ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] : NaN);

/** Creates `count` users (load0, load1, ...) and the database (q=2, n = cluster size) they
 *  are members of. Returns [{username, password}]. */
export async function loadUsers(node, db, count = 1) {
  const users = [];
  for (let i = 0; i < count; i++) {
    const u = { username: `load${i}`, password: crypto.randomBytes(12).toString('hex') };
    const r = await node.json(`/_users/org.couchdb.user:${u.username}`, {
      method: 'PUT', body: { name: u.username, password: u.password, roles: [], type: 'user' } });
    if (r.status !== 201 && r.status !== 202) throw new Error(`creating ${u.username}: ${r.status} ${r.text}`);
    users.push(u);
  }
  const c = await node.json(`/${db}?q=2`, { method: 'PUT' });
  if (c.status !== 201 && c.status !== 202) throw new Error(`creating ${db}: ${c.status} ${c.text}`);
  const s = await node.json(`/${db}/_security`, {
    method: 'PUT', body: { members: { names: users.map((u) => u.username) }, admins: {} } });
  if (s.status !== 200) throw new Error(`${db}/_security: ${s.status} ${s.text}`);
  return users;
}

/** A CouchDB cookie (AuthSession): one password check per user, valid on every node. */
async function cookieFor(node, user) {
  const r = await fetch(`${node.url}/_session`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: user.username, password: user.password }),
    signal: AbortSignal.timeout(TIMEOUT_MS) });
  await r.arrayBuffer();
  const set = r.headers.get('set-cookie') || '';
  const m = /AuthSession=[^;]*/.exec(set);
  if (r.status !== 200 || !m) throw new Error(`login ${user.username}: ${r.status}`);
  return m[0];
}

/** One client: its own key and couch_pgp session (started on `home`), a user's cookie. */
export class LoadClient {
  constructor(id, user, cookie) { this.id = id; this.user = user; this.cookie = cookie; }

  async init(home, pinFpr) {
    this.key = await newKey(`load-client-${this.id}`);
    const g = await home.json('/_pgp', { auth: null });
    if (g.status !== 200 || g.body.fingerprint !== pinFpr) throw new Error(`pin: ${g.status} ${g.body?.fingerprint}`);
    this.identity = await openpgp.readKey({ armoredKey: g.body.cert });
    const r = await home.json('/_pgp/session', {
      method: 'POST', auth: null, headers: { Cookie: this.cookie }, body: { client_cert: this.key.publicKey.armor() } });
    if (r.status !== 201) throw new Error(`session on ${home.nodeName}: ${r.status} ${r.text}`);
    this.token = r.body.token;
    this.sessionCert = await checkSession(r.body, this.identity, this.key.fingerprint);
    return this;
  }

  /** One encrypted request to `node`. Resolves {status, encrypted, body (the response
   *  envelope's body text, checked: signature, status, nonce), ms} or {status: 0, error}
   *  when the node could not be reached. */
  async send(node, method, path, body = '', { token = this.token } = {}) {
    const env = envelope(method, path, '', body);
    const msg = await seal(env, this.sessionCert, this.key.privateKey);
    const t0 = performance.now();
    let r; let text;
    try {
      r = await fetch(node.url + path, {
        method: method === 'GET' ? 'POST' : method, body: msg,
        headers: { Cookie: this.cookie, 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': token },
        signal: AbortSignal.timeout(TIMEOUT_MS) });
      text = await r.text();
    } catch (e) {
      return { status: 0, error: e.cause?.code || e.name || String(e), ms: performance.now() - t0 };
    }
    const ms = performance.now() - t0;
    if (r.headers.get('x-pgp-encrypted') !== '1') {
      let parsed = text; try { parsed = JSON.parse(text); } catch { /* not JSON */ }
      return { status: r.status, encrypted: false, body: parsed, ms };
    }
    const resp = await open(JSON.parse(text).pgp, this.key.privateKey, this.sessionCert);
    if (resp.v !== 1 || resp.status !== r.status) throw new Error(`response envelope status ${resp.status} != ${r.status}`);
    if (resp.nonce !== env.nonce && resp.nonce !== '') throw new Error('response nonce is not the request\'s');
    return { status: r.status, encrypted: true, body: resp.body, nonceOk: resp.nonce === env.nonce, ms };
  }
}

/** `count` clients spread over `users`, sessions started on the nodes in turn. */
export async function startClients(nodes, users, count, pinFpr) {
  const cookies = await Promise.all(users.map((u) => cookieFor(nodes[0], u)));
  const clients = [];
  for (let i = 0; i < count; i += 8) { // 8 at a time: key generation is the client's CPU
    clients.push(...await Promise.all(Array.from({ length: Math.min(8, count - i) }, (_, k) => {
      const id = i + k;
      return new LoadClient(id, users[id % users.length], cookies[id % users.length]).init(nodes[id % nodes.length], pinFpr);
    })));
  }
  return clients;
}

/** The document text of write `seq`: ASCII strings and integers only, so CouchDB stores and
 *  returns exactly these bytes after its own `_id` and `_rev`. */
export function docText(client, seq, bytes) {
  const payload = crypto.randomBytes(Math.ceil((bytes * 3) / 4)).toString('base64').slice(0, bytes);
  return JSON.stringify({ client, seq, payload });
}

/**
 * Runs `writes` encrypted PUTs of new documents through `clients` concurrently, write i to
 * nodes[i % n] (then the next up node on failure). opts: db, writes, docBytes (default 512),
 * isUp(node) (default: always), maxAttempts (default 6), onWrite(i) (called as each write
 * starts: a test kills a node at some i), idPrefix. Resolves {acked: [{id, rev, text, node}],
 * ambiguous: [{id, text}], errors: [{id, status, error}], attempts, latencies (ms of the
 * acknowledged attempts), wallMs, byNode}.
 */
export async function writeLoad(nodes, clients, opts) {
  const { db, writes, docBytes = 512, isUp = () => true, maxAttempts = 6, onWrite = () => {}, idPrefix = 'w' } = opts;
  const acked = []; const ambiguous = []; const errors = []; const latencies = [];
  const byNode = Object.fromEntries(nodes.map((n) => [n.nodeName, 0]));
  let next = 0; let attempts = 0; let retries = 0;
  const t0 = performance.now();
  async function worker(client) {
    for (;;) {
      const i = next++;
      if (i >= writes) return;
      await onWrite(i);
      const id = `${idPrefix}${String(i).padStart(6, '0')}`;
      const text = docText(client.id, i, docBytes);
      let k = i % nodes.length; let tried = 0; let failedBefore = false; let last = null;
      for (;;) {
        const node = nodes[k];
        k = (k + 1) % nodes.length;
        if (!isUp(node)) {
          if (nodes.every((n) => !isUp(n))) await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        tried++; attempts++;
        if (tried > 1) retries++;
        const r = await client.send(node, 'PUT', `/${db}/${id}`, text);
        last = r;
        if ((r.status === 201 || r.status === 202) && r.encrypted && r.nonceOk) {
          const b = JSON.parse(r.body);
          acked.push({ id, rev: b.rev, text, node: node.nodeName, status: r.status });
          latencies.push(r.ms); byNode[node.nodeName]++;
          break;
        }
        if (r.status === 409 && failedBefore) { ambiguous.push({ id, text }); break; }
        const transient = r.status === 0 || r.status >= 500;
        if (!transient || tried >= maxAttempts) {
          errors.push({ id, status: r.status, error: r.error || (typeof r.body === 'string' ? r.body.slice(0, 200) : JSON.stringify(r.body)) });
          break;
        }
        failedBefore = true;
        await new Promise((res) => setTimeout(res, 50 * tried));
      }
      void last;
    }
  }
  await Promise.all(clients.map(worker));
  return { acked, ambiguous, errors, attempts, retries, latencies, wallMs: performance.now() - t0, byNode };
}

/** Expected GET body for an acknowledged write: CouchDB's `_id` and `_rev`, then our bytes. */
const expectedBody = (w, rev) => `{"_id":"${w.id}","_rev":"${rev}",${w.text.slice(1)}`;

/**
 * Reads every write back, encrypted, through `via(w, j)` (default: a node other than the one
 * that acknowledged it) and compares the document byte for byte. Ambiguous writes (409 on a
 * retry) must hold exactly the bytes sent, at revision 1. Resolves {read, lost: [...],
 * altered: [...], errors: [...], latencies, wallMs}.
 */
export async function readBack(nodes, clients, writes, { db, via, ambiguous = [] } = {}) {
  const pick = via || ((w, j) => {
    const others = nodes.filter((n) => n.nodeName !== w.node);
    return others[j % others.length];
  });
  const all = [...writes, ...ambiguous.map((a) => ({ ...a, node: null, ambiguous: true }))];
  const lost = []; const altered = []; const errors = []; const latencies = [];
  let next = 0;
  const t0 = performance.now();
  async function worker(client) {
    for (;;) {
      const j = next++;
      if (j >= all.length) return;
      const w = all[j];
      const node = pick(w, j);
      const r = await client.send(node, 'GET', `/${db}/${w.id}`);
      latencies.push(r.ms);
      if (r.status === 404) { lost.push({ id: w.id, node: node.nodeName }); continue; }
      if (r.status !== 200 || !r.encrypted || !r.nonceOk) {
        errors.push({ id: w.id, node: node.nodeName, status: r.status, error: r.error || String(r.body).slice(0, 200) });
        continue;
      }
      const body = r.body.replace(/\n$/, '');
      const rev = w.ambiguous ? (/^\{"_id":"[^"]*","_rev":"(1-[0-9a-f]+)"/.exec(body) || [])[1] : w.rev;
      if (body !== expectedBody(w, rev)) altered.push({ id: w.id, node: node.nodeName, got: body.slice(0, 120) });
    }
  }
  await Promise.all(clients.map(worker));
  return { read: all.length, lost, altered, errors, latencies, wallMs: performance.now() - t0 };
}

/** Memory and couch_pgp cache sizes of a node (rpc): {total, nonces, sessions, nonceBytes,
 *  sessionBytes} in bytes / entries. */
export async function nodeMemory(node) {
  const out = await node.rpc(`begin W = erlang:system_info(wordsize),
    M = fun(T) -> case ets:info(T, memory) of undefined -> -1; X -> X * W end end,
    S = fun(T) -> case ets:info(T, size) of undefined -> -1; X -> X end end,
    {erlang:memory(total), S(couch_pgp_nonces), S(couch_pgp_sessions), M(couch_pgp_nonces), M(couch_pgp_sessions)} end.`);
  const m = /\{\s*(\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*\}/.exec(out);
  if (!m) throw new Error(`nodeMemory: ${out}`);
  const [total, nonces, sessions, nonceBytes, sessionBytes] = m.slice(1).map(Number);
  return { total, nonces, sessions, nonceBytes, sessionBytes };
}
