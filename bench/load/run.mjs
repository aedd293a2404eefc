// Load: encrypted writes through a three-node couch_pgp cluster, every acknowledged write
// read back through another node and compared byte for byte (issue 13, item 2).
//
//   make load                                          (after make build)
//   LOAD_WRITES=2000 COUCH_PGP_IT_PREBUILT=1 node bench/load/run.mjs
//
// LOAD_WRITES (default 10000) writes by LOAD_CLIENTS (default 64) concurrent clients, each
// with its own OpenPGP key and couch_pgp session (test/integration/loadgen.mjs, on
// OpenPGP.js), write i to node i % 3, LOAD_DOC_BYTES (default 512) of payload each. Then
// every write acknowledged (201/202) is read back, encrypted, through a node other than the
// one that acknowledged it, and compared byte for byte with what was sent. The cluster runs
// with [couch_pgp] max_clock_skew = LOAD_SKEW (default 30 s), so that nonces (kept 2 x skew)
// start expiring within the run and the nonce store's bound shows: at most the cluster's
// request rate x 2 x max_clock_skew entries on every node (each nonce is claimed on every
// node). Every LOAD_SAMPLE_S (default 15) seconds each node's erlang:memory(total) and the
// sizes of couch_pgp_nonces and couch_pgp_sessions are sampled (rpc). Exits 1 on any error,
// lost or altered write. Progress to stderr, the report to stdout.
import os from 'node:os';
import { performance } from 'node:perf_hooks';

process.env.COUCH_PGP_IT_TIMEOUT_MS ||= String(60 * 60 * 1000);
const { CouchDB, couchdbSkip, sleep } = await import('../../test/integration/couchdb.mjs');
const { loadUsers, startClients, writeLoad, readBack, nodeMemory, pct } = await import('../../test/integration/loadgen.mjs');

const WRITES = Number(process.env.LOAD_WRITES || 10000);
const CLIENTS = Number(process.env.LOAD_CLIENTS || 64);
const DOC_BYTES = Number(process.env.LOAD_DOC_BYTES || 512);
const SKEW = Number(process.env.LOAD_SKEW || 30);
const SAMPLE_S = Number(process.env.LOAD_SAMPLE_S || 15);
const log = (m) => process.stderr.write(`load: ${m}\n`);
const mib = (b) => (b / 2 ** 20).toFixed(1);
const la = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

async function main() {
  const skip = couchdbSkip();
  if (skip) return;
  const tStart = performance.now();
  log(`starting a 3-node cluster (load average ${la()})`);
  const nodes = await CouchDB.startCluster(3, { ini: { couch_pgp: { max_clock_skew: String(SKEW) } } });
  const samples = []; // {t, phase, load, mem: [per node]}
  let sampling = true; let phase = 'before';
  const sample = async () => {
    const mem = [];
    for (const n of nodes) mem.push(await nodeMemory(n));
    samples.push({ t: (performance.now() - tStart) / 1000, phase, load: os.loadavg()[0], mem });
  };
  try {
    const pin = (await nodes[0].json('/_pgp', { auth: null })).body.fingerprint;
    const users = await loadUsers(nodes[0], 'loaddb', 4);
    log(`${CLIENTS} clients: keys and sessions`);
    const clients = await startClients(nodes, users, CLIENTS, pin);
    await sample();
    phase = 'writes';
    const sampler = (async () => {
      while (sampling) {
        for (let s = 0; s < SAMPLE_S * 10 && sampling; s++) await sleep(100);
        if (sampling) await sample();
      }
    })();
    const loadAtWrites = os.loadavg()[0];
    log(`${WRITES} encrypted writes`);
    const w = await writeLoad(nodes, clients, { db: 'loaddb', writes: WRITES, docBytes: DOC_BYTES });
    log(`writes: ${w.acked.length} acknowledged in ${(w.wallMs / 1000).toFixed(1)} s, ${w.errors.length} errors`);
    phase = 'reads';
    const r = await readBack(nodes, clients, w.acked, { db: 'loaddb', ambiguous: w.ambiguous });
    log(`read back ${r.read} in ${(r.wallMs / 1000).toFixed(1)} s: lost ${r.lost.length}, altered ${r.altered.length}, errors ${r.errors.length}`);
    sampling = false;
    await sampler;
    phase = 'after';
    await sample();
    const counts = [];
    for (const n of nodes) counts.push((await n.json('/loaddb')).body.doc_count);
    report({ w, r, samples, pin, loadAtWrites, counts, nodes, elapsed: (performance.now() - tStart) / 1000 });
    if (w.errors.length || r.lost.length || r.altered.length || r.errors.length) {
      for (const e of [...w.errors, ...r.errors, ...r.lost, ...r.altered].slice(0, 10)) log(`problem: ${JSON.stringify(e)}`);
      process.exitCode = 1;
    }
  } finally {
    sampling = false;
    for (const n of nodes.reverse()) await n.stop();
  }
}

function table(head, body) {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => String(r[i]).length)));
  const fmt = (r) => r.map((c, i) => (i ? String(c).padStart(w[i]) : String(c).padEnd(w[i]))).join('  ');
  return [fmt(head), w.map((x) => '-'.repeat(x)).join('  '), ...body.map(fmt)].join('\n');
}

function report({ w, r, samples, pin, loadAtWrites, counts, nodes, elapsed }) {
  const wl = [...w.latencies].sort((a, b) => a - b);
  const rl = [...r.latencies].sort((a, b) => a - b);
  const out = [];
  out.push(`couch_pgp load: ${WRITES} encrypted writes, ${CLIENTS} clients (own key and session each), 3 nodes (n=3, q=2), ${DOC_BYTES} B payload`);
  out.push(`date ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; machine ${os.availableParallelism()} CPUs, shared; clients and nodes on it; `
    + `load average ${loadAtWrites.toFixed(2)} when the writes started, ${la()} at the end; identity ${pin}`);
  out.push(`max_clock_skew ${SKEW} s (nonces kept ${2 * SKEW} s); elapsed ${elapsed.toFixed(0)} s`);
  out.push('');
  out.push(table(['phase', 'requests', 'seconds', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'lost', 'altered'], [
    ['encrypted PUT', w.attempts, (w.wallMs / 1000).toFixed(1), (w.acked.length / (w.wallMs / 1000)).toFixed(0),
      pct(wl, 50).toFixed(1), pct(wl, 99).toFixed(1), w.errors.length, '-', '-'],
    ['encrypted GET (other node)', r.read, (r.wallMs / 1000).toFixed(1), (r.read / (r.wallMs / 1000)).toFixed(0),
      pct(rl, 50).toFixed(1), pct(rl, 99).toFixed(1), r.errors.length, r.lost.length, r.altered.length],
  ]));
  out.push(`acknowledged ${w.acked.length} (201: ${w.acked.filter((a) => a.status === 201).length}, 202: ${w.acked.filter((a) => a.status === 202).length}); `
    + `retried ${w.retries}; ambiguous (409 after a failed attempt) ${w.ambiguous.length}; by node ${Object.values(w.byNode).join(' / ')}; `
    + `doc_count per node ${counts.join(' / ')}`);
  out.push('');
  out.push('Per node, sampled: erlang:memory(total) MiB | couch_pgp_nonces entries (KiB) | couch_pgp_sessions entries');
  out.push(table(['t s', 'phase', 'load1', ...nodes.map((_, i) => `node${i + 1}`)],
    samples.map((s) => [s.t.toFixed(0), s.phase, s.load.toFixed(2),
      ...s.mem.map((m) => `${mib(m.total)} | ${m.nonces} (${(m.nonceBytes / 1024).toFixed(0)}) | ${m.sessions}`)])));
  process.stdout.write(`\n${out.join('\n')}\n`);
}

await main();
