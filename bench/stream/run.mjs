// Memory of the CouchDB node while large answers pass: a 50,000-change `_changes` feed
// (include_docs) and a 50 MiB attachment, each fetched three ways in the same run and node:
//
//   plain     straight from CouchDB (admin, plaintext), the body read as it comes
//   buffered  through /_pgp/tunnel as before: the node buffers the whole inner answer,
//             JSON-wraps it and seals it as one message; the client opens it whole
//   streamed  through /_pgp/tunnel with "stream": true: sealed frames of at most 64 KiB,
//             pulled from the loopback listener with backpressure, checked by the client
//             one by one and thrown away as they come
//
//   make bench-stream                                (after make build)
//   COUCH_PGP_IT_PREBUILT=1 node bench/stream/run.mjs
//   STREAM_CHANGES=5000 STREAM_ATT_MIB=5 ...         a smaller run
//
// While each transfer runs, the node's memory is sampled: the beam's resident set
// (VmRSS in /proc/<pid>/status, every 20 ms) and the VM's own erlang:memory(total) (GET
// /_node/_local/_system "memory", every 100 ms). Before each transfer every process is
// garbage collected and the baseline taken; the table gives the peaks above that baseline,
// the time, the octets on the wire and (streamed) the frames. The order is plain, streamed,
// buffered, because the allocator does not give RSS back quickly after the buffered peak.
// This client's own peak RSS is printed too. Not asserted anywhere; progress on stderr.
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createHash, randomBytes } from 'node:crypto';

process.env.COUCH_PGP_IT_TIMEOUT_MS ||= String(30 * 60 * 1000);
const { CouchDB, couchdbSkip, sleep } = await import('../../test/integration/couchdb.mjs');
const { connect } = await import('../../client/src/index.js');

const CHANGES = Number(process.env.STREAM_CHANGES || 50000);
const ATT_MIB = Number(process.env.STREAM_ATT_MIB || 50);
const DB = 'bench_stream';
const USER = { username: 'streamer', password: `pw-${randomBytes(6).toString('hex')}` };
const log = (...a) => console.error('[bench-stream]', ...a);
const MiB = 1024 * 1024;

const skip = couchdbSkip();
if (skip) { console.log(`skipped: ${skip}`); process.exit(0); }

const db = await CouchDB.start({ ini: { chttpd: { max_http_request_size: String(256 * MiB) },
  couchdb: { max_document_size: String(256 * MiB) } } });
try {
  await main();
} finally {
  await db.stop();
}

async function main() {
  const beam = Number(JSON.parse(await db.rpc('os:getpid().')));
  log(`node up, beam pid ${beam}`);
  const u = await db.json(`/_users/org.couchdb.user:${USER.username}`, {
    method: 'PUT', body: { name: USER.username, password: USER.password, roles: [], type: 'user' } });
  if (u.status !== 201) throw new Error(u.text);
  await db.json(`/${DB}`, { method: 'PUT' });
  await db.json(`/${DB}/_security`, { method: 'PUT', body: { members: { names: [USER.username] }, admins: {} } });
  for (let i = 0; i < CHANGES; i += 5000) {
    const docs = [];
    for (let j = i; j < Math.min(CHANGES, i + 5000); j += 1) {
      docs.push({ _id: `pt-${String(j).padStart(6, '0')}-${randomBytes(4).toString('hex')}`,
        mrn: `MRN-${randomBytes(5).toString('hex')}`, note: `Follow-up ${randomBytes(12).toString('hex')}`, n: j });
    }
    const r = await db.request(`/${DB}/_bulk_docs`, { method: 'POST', body: { docs }, timeoutMs: 300000 });
    if (r.status !== 201) throw new Error(`bulk ${r.status}`);
    await r.arrayBuffer();
  }
  log(`${CHANGES} documents written`);
  const att = randomBytes(ATT_MIB * MiB);
  const attSha = createHash('sha256').update(att).digest('hex');
  const put = await db.request(`/${DB}/scan/big.bin`, { method: 'PUT', body: att,
    headers: { 'Content-Type': 'application/octet-stream' }, timeoutMs: 300000 });
  if (put.status !== 201) throw new Error(`attachment ${put.status} ${await put.text()}`);
  log(`${ATT_MIB} MiB attachment written`);

  let wireBytes = 0;
  const counting = async (url, init) => {
    const r = await fetch(url, init);
    if (!r.body) return r;
    const counter = new TransformStream({ transform(chunk, c) { wireBytes += chunk.length; c.enqueue(chunk); } });
    return new Response(r.body.pipeThrough(counter), { status: r.status, headers: r.headers });
  };
  const fingerprint = (await db.json('/_pgp', { auth: null })).body.fingerprint;
  const conn = await connect(db.url, { pin: fingerprint, fetch: counting });
  await conn.login(USER.username, USER.password);
  if (conn.session.mode !== 'channel') throw new Error('expected channel mode');

  const transfers = [
    { what: `_changes (${CHANGES} changes, include_docs)`, path: `/${DB}/_changes?include_docs=true`,
      check: (n, text) => { if (text !== undefined) { const j = JSON.parse(text); if (j.results.length !== CHANGES + 1) throw new Error(`${j.results.length} changes`); } } },
    { what: `attachment (${ATT_MIB} MiB)`, path: `/${DB}/scan/big.bin`, sha: attSha },
  ];
  const rows = [];
  for (const t of transfers) {
    for (const mode of ['plain', 'streamed', 'buffered']) {
      await settle();
      const base = await sample(beam);
      wireBytes = 0;
      const sampler = startSampling(beam);
      const t0 = performance.now();
      const got = await fetchOne(mode, t.path, conn);
      const ms = performance.now() - t0;
      const peaks = await sampler.stop();
      if (t.sha && got.sha !== t.sha) throw new Error(`${mode}: attachment differs`);
      if (t.check) t.check(got.bytes, got.text);
      rows.push({ what: t.what, mode, ms, bytes: got.bytes, wire: mode === 'plain' ? got.bytes : wireBytes,
        rss: peaks.rss - base.rss, vm: peaks.vm - base.vm, rssBase: base.rss, client: peaks.client });
      log(`${t.what} ${mode}: ${Math.round(ms)} ms, node RSS +${mb(peaks.rss - base.rss)}, VM +${mb(peaks.vm - base.vm)}`);
    }
  }
  print(rows);
}

// The body fetched one way, its octets counted (and hashed) as they come.
async function fetchOne(mode, p, conn) {
  const hash = createHash('sha256');
  let bytes = 0;
  const keepText = p.includes('_changes');
  const chunks = [];
  const take = (b) => { bytes += b.length; hash.update(b); if (keepText) chunks.push(Buffer.from(b)); };
  if (mode === 'plain') {
    const r = await db.request(p, { timeoutMs: 600000 });
    if (r.status !== 200) throw new Error(`plain ${r.status}`);
    for await (const b of r.body) take(b);
  } else {
    const r = await conn.request(p, { stream: mode === 'streamed' });
    if (r.status !== 200 || r.streamed !== (mode === 'streamed')) throw new Error(`${mode}: ${r.status} streamed=${r.streamed}`);
    const reader = r.body.getReader();
    for (let x = await reader.read(); !x.done; x = await reader.read()) take(x.value);
  }
  // The _changes text is kept (in this process, not the node) only to check it is whole.
  return { bytes, sha: hash.digest('hex'), text: keepText ? Buffer.concat(chunks).toString('utf8') : undefined };
}

async function settle() {
  await db.rpc('[erlang:garbage_collect(P) || P <- erlang:processes()], ok.');
  globalThis.gc?.();
  await sleep(1500);
}

async function sample(pid) {
  return { rss: rssOf(pid), vm: await vmTotal(), client: process.memoryUsage().rss };
}

function rssOf(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

async function vmTotal() {
  // erlang:memory(total): processes plus system (atom, binary, code, ets, other).
  const { memory: m } = (await db.json('/_node/_local/_system')).body;
  return m.processes + m.atom + m.binary + m.code + m.ets + m.other;
}

function startSampling(pid) {
  const peak = { rss: rssOf(pid), vm: 0, client: process.memoryUsage().rss };
  const rssTimer = setInterval(() => {
    peak.rss = Math.max(peak.rss, rssOf(pid));
    peak.client = Math.max(peak.client, process.memoryUsage().rss);
  }, 20);
  let running = true;
  const vmLoop = (async () => {
    while (running) {
      try { peak.vm = Math.max(peak.vm, await vmTotal()); } catch { /* busy node: next time */ }
      await sleep(100);
    }
  })();
  return {
    async stop() {
      running = false;
      clearInterval(rssTimer);
      await vmLoop;
      peak.rss = Math.max(peak.rss, rssOf(pid));
      peak.vm = Math.max(peak.vm, await vmTotal());
      return peak;
    },
  };
}

function mb(n) { return `${(n / MiB).toFixed(1)} MiB`; }

function print(rows) {
  const head = ['answer', 'mode', 'time', 'body', 'on the wire', 'node RSS peak above baseline',
    'node VM memory peak above baseline', 'client RSS peak'];
  const lines = rows.map((r) => [r.what, r.mode, `${(r.ms / 1000).toFixed(2)} s`, mb(r.bytes), mb(r.wire),
    mb(Math.max(0, r.rss)), mb(Math.max(0, r.vm)), mb(r.client)]);
  console.log(`| ${head.join(' | ')} |`);
  console.log(`|${head.map(() => '---').join('|')}|`);
  for (const l of lines) console.log(`| ${l.join(' | ')} |`);
  console.log(`\nnode RSS baselines: ${rows.map((r) => `${r.mode} ${mb(r.rssBase)}`).join(', ')}`);
}
