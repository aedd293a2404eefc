// HTTP benchmark: encrypted (couch_pgp) against plain single-document PUT and GET through
// the same CouchDB in the same run (issue 3, item 12).
//
//   make bench-http                                  (after make build)
//   COUCH_PGP_IT_PREBUILT=1 node bench/http/run.mjs  full run (~2.5 min on 2 cores)
//   QUICK=1 COUCH_PGP_IT_PREBUILT=1 node bench/http/run.mjs
//                                                    a tenth of the requests (~40 s)
//   BENCH_SBWT=default ...                           CouchDB's stock scheduler busy wait
//                                                    (default here: +sbwt none, see VM_ARGS)
//
// One throw-away CouchDB (test/integration/couchdb.mjs copies $COUCHDB_HOME, default
// /opt/couchdb, which is never modified) with the plugin installed; one non-admin user with a
// cookie session and a couch_pgp session (test/integration/pgp_client.mjs: pin, startSession).
// For each document size (1 KiB, 64 KiB of EHR-like JSON) x clients (1, 16) x op (PUT a new
// document, GET an existing one) x mode (plain, encrypted), a fixed number of requests
// (300 with 1 client, 1600 with 16; QUICK=1: a tenth) after a short warm-up, in the order
// plain, encrypted, encrypted, plain (half the requests each), so that a change in the
// machine's load during a cell weighs on both modes alike.
//
// What is timed is the server: every request body (the encrypted ones with their own
// envelope, nonce and timestamp) is built before the cell's clock starts, right before the
// cell so that timestamps stay well inside max_clock_skew. Latency is wall clock from sending
// the request to having read the whole response body (node:http, keep-alive, one connection
// per client). After each encrypted cell a sample of responses (20) is opened with
// OpenPGP.js: signed by the session key, status and nonce equal to the request's, the
// expected document or write result inside. Any non-2xx answer (or an encrypted request
// answered in plaintext) counts as an error; the run exits 1 if there are any.
//
// Beside the table: server CPU per request (all threads of the beam process, from
// /proc/<pid>/task/*/schedstat), scheduler utilisation (normal and dirty CPU, from
// erlang:statistics(scheduler_wall_time_all) through erl_call), this process's CPU per
// request, and what OpenPGP.js takes on the client to build (encrypt+sign) a request and to
// open (decrypt+verify) a response at each size. Call counts of the plugin's functions
// (erlang:trace_pattern call_count) show how often the session token was opened. At the end,
// couch_pgp:decrypt/3 and encrypt/3 are timed alone inside the node (one caller) on envelopes
// of the cells' sizes: the "of which crypto" column.
// Progress goes to stderr, the report to stdout.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

// The harness kills its instances after COUCH_PGP_IT_TIMEOUT_MS (default 5 min): read when it
// is imported, so set before the import.
process.env.COUCH_PGP_IT_TIMEOUT_MS ||= String(12 * 60 * 1000);
const { CouchDB, couchdbSkip } = await import('../../test/integration/couchdb.mjs');
const { Client, envelope, seal, open, newKey, channelSeal, channelOpen } = await import('../../test/integration/pgp_client.mjs');
// PGP_MODE=channel (default: the session channel, what the browser client uses) or session
// (the per-message signed mode).
const MODE = process.env.PGP_MODE || 'channel';
if (!['channel', 'session'].includes(MODE)) throw new Error(`PGP_MODE must be channel or session, not ${MODE}`);

const HERE = path.dirname(fileURLToPath(import.meta.url));
const QUICK = process.env.QUICK === '1';
const SIZES = [1024, 65536];
const CLIENTS = [1, 16];
const OPS = ['PUT', 'GET'];
const REQUESTS = { 1: 300, 16: 1600 };
const WARMUP = { 1: 20, 16: 64 };
const SAMPLE = 20; // encrypted responses opened and checked per cell
const GET_DOCS = 64; // existing documents per size that GETs cycle through
const div = QUICK ? 10 : 1;
// Plaintext sizes of the envelopes (body + ~200 bytes of envelope): the small one carries no
// document (GET request, PUT response), the others about one document of each size.
const ENVELOPE_SIZES = [200, 1024 + 250, 65536 + 250];
const envSize = (size, carriesDoc) => (carriesDoc ? ENVELOPE_SIZES[SIZES.indexOf(size) + 1] : ENVELOPE_SIZES[0]);
// Erlang schedulers spin a while before sleeping (+sbwt medium, CouchDB's default): that spin
// is counted as CPU time, and on a small machine it takes a core from the client and from
// the dirty schedulers. BENCH_SBWT=default keeps CouchDB's stock vm.args.
const SBWT = process.env.BENCH_SBWT || 'none';
const VM_ARGS = SBWT === 'default' ? [] : [`+sbwt ${SBWT}`, `+sbwtdcpu ${SBWT}`, `+sbwtdio ${SBWT}`];
// For profiling: BENCH_VM_ARGS='+JPperf true' (symbols for Linux perf), BENCH_CELLS='65536:16:GET,1024:1:PUT'
// (only those cells: size:clients:op), BENCH_CALL_TIME=1 (time inside the plugin's two hooks per
// call, from erlang:trace_pattern call_time; BENCH_CALL_TIME_MODULES=m1,m2 adds every function of
// those modules, exclusive times, top 25; tracing inflates every figure several times over).
if (process.env.BENCH_VM_ARGS) VM_ARGS.push(...process.env.BENCH_VM_ARGS.split(','));
const CELLS = process.env.BENCH_CELLS ? new Set(process.env.BENCH_CELLS.split(',')) : null;

const log = (m) => process.stderr.write(`bench-http: ${m}\n`);
const kib = (n) => `${n / 1024} KiB`;

// ---------------------------------------------------------------- documents

// A deterministic PRNG, so documents are the same from run to run.
function prng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ('patient reports intermittent chest pain radiating left arm since morning denies '
  + 'fever cough dyspnea history hypertension type diabetes mellitus controlled metformin '
  + 'lisinopril examination alert oriented afebrile lungs clear bilaterally heart regular rate '
  + 'rhythm murmur abdomen soft nontender extremities edema plan troponin ecg repeat follow '
  + 'cardiology outpatient advised return symptoms worsen allergy penicillin rash tolerated '
  + 'cephalosporin previously glucose elevated fasting hba1c counselled diet exercise weight').split(' ');

/** An EHR-like patient record whose JSON text is exactly `size` bytes (ASCII). */
function ehrDoc(size, seed) {
  const r = prng(seed);
  const pick = (a) => a[Math.floor(r() * a.length)];
  const text = (n) => Array.from({ length: n }, () => pick(WORDS)).join(' ');
  const doc = {
    type: 'patient_record',
    mrn: `MRN-${String(100000 + Math.floor(r() * 899999))}`,
    name: { given: pick(['Ana', 'Ben', 'Chloe', 'Dev', 'Emil', 'Fatima']), family: pick(['Novak', 'Okafor', 'Silva', 'Tanaka']) },
    birth_date: `19${40 + Math.floor(r() * 60)}-0${1 + Math.floor(r() * 9)}-1${Math.floor(r() * 9)}`,
    sex: pick(['female', 'male']),
    allergies: [{ substance: 'penicillin', reaction: 'rash', severity: 'moderate' }],
    medications: [
      { name: 'metformin', dose_mg: 500, frequency: 'BID', since: '2019-03-02' },
      { name: 'lisinopril', dose_mg: 10, frequency: 'QD', since: '2020-11-17' },
    ],
    vitals: { systolic: 120 + Math.floor(r() * 40), diastolic: 70 + Math.floor(r() * 20), pulse: 60 + Math.floor(r() * 40), temp_c: 36.6, spo2: 0.97 },
    labs: [
      { code: 'HbA1c', value: 6.9, unit: '%', at: '2024-05-01T08:30:00Z' },
      { code: 'troponin_t', value: 0.012, unit: 'ng/mL', at: '2024-05-01T09:10:00Z' },
      { code: 'creatinine', value: 88, unit: 'umol/L', at: '2024-05-01T08:30:00Z' },
    ],
    consent: { research: false, share_with_gp: true, signed_at: '2023-01-09' },
    encounters: [],
    notes: '',
  };
  // Encounters until near the size, then the notes field pads to the exact byte count.
  const base = JSON.stringify(doc).length;
  let len = base;
  for (let i = 0; len + 420 < size; i++) {
    const e = { at: `2024-0${1 + (i % 9)}-${10 + (i % 18)}T1${i % 10}:00:00Z`, clinician: `dr-${1 + (i % 40)}`, kind: pick(['visit', 'phone', 'lab', 'referral']), text: text(40) };
    doc.encounters.push(e);
    len = JSON.stringify(doc).length;
  }
  let pad = size - JSON.stringify(doc).length;
  if (pad < 0) throw new Error(`document template larger than ${size}`);
  let notes = '';
  while (notes.length < pad) notes += `${pick(WORDS)} `;
  doc.notes = notes.slice(0, pad);
  const out = JSON.stringify(doc);
  if (out.length !== size) throw new Error(`document is ${out.length} bytes, not ${size}`);
  return out;
}

/** The same record with another 6-digit request number (same length). */
const withSeq = (json, i) => `{"seq":"${String(i % 1000000).padStart(6, '0')}",${json.slice(1)}`;

// ---------------------------------------------------------------- HTTP

function send(ctx, agent, r, keepBody) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.request({
      host: '127.0.0.1', port: ctx.port, method: r.method, path: r.path, agent,
      headers: { ...r.headers, 'Content-Length': r.body ? r.body.length : 0 },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => { if (keepBody) chunks.push(c); });
      res.on('end', () => resolve({
        status: res.statusCode, encrypted: res.headers['x-pgp-encrypted'] === '1',
        binary: (res.headers['content-type'] || '').startsWith('application/pgp-encrypted'),
        body: keepBody ? Buffer.concat(chunks) : null, ms: performance.now() - t0,
      }));
      res.on('error', (e) => resolve({ status: 0, error: String(e), ms: performance.now() - t0 }));
    });
    req.on('error', (e) => resolve({ status: 0, error: String(e), ms: performance.now() - t0 }));
    req.end(r.body || undefined);
  });
}

/** Sends reqs[from..to) from `clients` concurrent workers; returns results by index. */
async function drive(ctx, agent, reqs, from, to, clients, keep) {
  const out = new Array(to - from);
  let next = from;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= to) return;
      out[i - from] = await send(ctx, agent, reqs[i], keep.has(i));
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, worker));
  return { results: out, wallMs: performance.now() - t0 };
}

// ---------------------------------------------------------------- measurements

function serverCpuNs(pid) {
  let ns = 0;
  const dir = `/proc/${pid}/task`;
  for (const t of fs.readdirSync(dir)) {
    try { ns += Number(fs.readFileSync(`${dir}/${t}/schedstat`, 'utf8').split(' ')[0]); } catch { /* thread gone */ }
  }
  return ns;
}

async function schedSample(db) {
  const out = await db.rpc('lists:sort(erlang:statistics(scheduler_wall_time_all)).');
  return [...out.matchAll(/\{\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\}/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3])]);
}

/** Busy and total scheduler time between two samples, summed per kind of scheduler:
 *  {normal: [active, total], dirty: [active, total]} (dirty = dirty CPU). */
function schedDelta(a, b, nNormal, nDirtyCpu) {
  const d = (lo, hi) => {
    let act = 0; let tot = 0;
    for (const [id, A, T] of b) {
      if (id < lo || id > hi) continue;
      const p = a.find((x) => x[0] === id);
      act += A - p[1]; tot += T - p[2];
    }
    return [act, tot];
  };
  return { normal: d(1, nNormal), dirty: d(nNormal + 1, nNormal + nDirtyCpu) };
}

function pct(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
const median = (xs) => pct([...xs].sort((a, b) => a - b), 50);

// ---------------------------------------------------------------- the run

const LOAD_AT_START = os.loadavg();

async function main() {
  if (couchdbSkip()) return;
  const tStart = performance.now();
  log(`starting CouchDB (${process.env.COUCHDB_HOME || '/opt/couchdb'}, copied)`);
  const db = await CouchDB.start({
    ini: {
      // No cookie refresh (Set-Cookie) during the run; the couch_pgp session follows this.
      chttpd_auth: { timeout: '86400' },
      log: { level: 'warning' },
    },
    vmArgs: VM_ARGS,
  });
  try {
    await bench(db, tStart);
  } finally {
    log('stopping CouchDB');
    await db.stop();
  }
}

async function bench(db, tStart) {
  const user = { username: 'bench', password: 'bench-pw-7Qx2' };
  const must = (r, codes, what) => {
    if (!codes.includes(r.status)) throw new Error(`${what}: ${r.status} ${r.text}`);
    return r;
  };
  must(await db.json(`/_users/org.couchdb.user:${user.username}`, {
    method: 'PUT', body: { name: user.username, password: user.password, roles: [], type: 'user' },
  }), [201], 'create user');
  const dbName = (size) => `bench_${size / 1024}k`;
  for (const size of SIZES) {
    must(await db.json(`/${dbName(size)}`, { method: 'PUT' }), [201], 'create db');
    must(await db.json(`/${dbName(size)}/_security`, {
      method: 'PUT', body: { members: { names: [user.username] }, admins: {} },
    }), [200], 'security');
  }
  // The documents the GETs read.
  const docs = {};
  for (const size of SIZES) {
    docs[size] = ehrDoc(size, size);
    const list = Array.from({ length: GET_DOCS }, (_, i) => JSON.parse(withSeq(docs[size], i)));
    list.forEach((d, i) => { d._id = `existing-${String(i).padStart(3, '0')}`; });
    const r = must(await db.json(`/${dbName(size)}/_bulk_docs`, { method: 'POST', body: { docs: list } }), [201], 'bulk_docs');
    if (r.body.some((x) => !x.ok)) throw new Error(`bulk_docs: ${r.text}`);
  }

  // Cookie session (cheap HMAC check per request; basic auth would hash the password).
  const login = await db.request('/_session', { method: 'POST', auth: null, body: { name: user.username, password: user.password } });
  await login.arrayBuffer();
  if (login.status !== 200) throw new Error(`login ${login.status}`);
  const cookie = login.headers.get('set-cookie').split(';')[0];

  const client = new Client(db, user, await newKey('bench client'));
  const fpr = await client.pin();
  await client.startSession();

  // Versions and the node's schedulers.
  const root = (await db.json('/', { auth: null })).body;
  const pid = Number((await db.rpc('os:getpid().')).replace(/\D/g, ''));
  const sys = (await db.rpc('{erlang:system_info(otp_release), erlang:system_info(schedulers_online), '
    + 'erlang:system_info(dirty_cpu_schedulers_online), erlang:system_info(dirty_io_schedulers)}.'))
    .match(/\{\s*"([^"]+)"\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\}/);
  if (!sys) throw new Error('cannot read the system_info of the node');
  const [otp, nNormal, nDirtyCpu, nDirtyIo] = [sys[1], Number(sys[2]), Number(sys[3]), Number(sys[4])];
  // scheduler_wall_time stays on while the process that enabled it lives: a parked one.
  await db.rpc('case whereis(couch_pgp_bench_swt) of undefined -> '
    + 'P = spawn(fun() -> erlang:system_flag(scheduler_wall_time, true), receive stop -> ok end end), '
    + 'register(couch_pgp_bench_swt, P); _ -> ok end.');
  const TRACED = ['couch_pgp_tokens:open/1', 'couch_pgp_session:open/3', 'couch_pgp:decrypt/3',
    'couch_pgp:encrypt/3', 'couch_pgp:import_cert/1'];
  const mfa = (s) => { const [m, fa] = s.split(':'); const [f, a] = fa.split('/'); return `{${m},${f},${a}}`; };
  await db.rpc(`[begin {M, _, _} = MFA, code:ensure_loaded(M), erlang:trace_pattern(MFA, true, [call_count]) end `
    + `|| MFA <- [${TRACED.map(mfa).join(',')}]].`);
  // BENCH_CALL_TIME=1: the time spent inside the plugin's two hooks (inclusive), per call.
  const HOOKS = ['couch_pgp_chttpd:before_request/1', 'couch_pgp_chttpd:before_response/4'];
  if (process.env.BENCH_CALL_TIME === '1') {
    await db.rpc(`[begin {M, _, _} = MFA, code:ensure_loaded(M), erlang:trace_pattern(MFA, true, [call_time]) end `
      + `|| MFA <- [${HOOKS.map(mfa).join(',')}]].`);
    // BENCH_CALL_TIME_MODULES=m1,m2: every function of those modules too (exclusive of the
    // other traced functions), the top ones printed.
    for (const m of (process.env.BENCH_CALL_TIME_MODULES || '').split(',').filter(Boolean)) {
      await db.rpc(`code:ensure_loaded(${m}), erlang:trace_pattern({${m}, '_', '_'}, true, [call_time, local]).`);
    }
    // call_time counts only in processes traced for calls (no messages are sent: no pattern
    // asks for them); the tracer is a parked process.
    await db.rpc('P = spawn(fun() -> receive stop -> ok end end), register(couch_pgp_bench_tracer, P), '
      + 'erlang:trace(all, true, [call, {tracer, P}]).');
  }
  const opjsVersion = JSON.parse(fs.readFileSync(path.join(HERE, '..', '..', 'test', 'integration',
    'node_modules', 'openpgp', 'package.json'), 'utf8')).version;

  const ctx = { port: db.port };
  const rows = [];
  const clientCost = {}; // size -> {sealPut, sealGet, openPut, openGet} (arrays of ms)
  const cc = (size) => (clientCost[size] ||= { sealPut: [], sealGet: [], openPut: [], openGet: [] });
  let seq = 0;
  let errorsTotal = 0;

  for (const size of SIZES) {
    for (const clients of CLIENTS) {
      for (const op of OPS) {
        if (CELLS && !CELLS.has(`${size}:${clients}:${op}`)) continue;
        const row = { size, clients, op };
        const n = Math.ceil(REQUESTS[clients] / div);
        const warm = Math.ceil(WARMUP[clients] / (QUICK ? 2 : 1));
        const total = warm + n;
        const half = warm + Math.floor(n / 2);
        const cell = {};
        // ---- build every request of the cell (both modes) before its clock starts
        for (const mode of ['plain', 'encrypted']) {
          const enc = mode === 'encrypted';
          const tBuild = performance.now();
          const reqs = new Array(total);
          const expect = new Array(total);
          for (let i = 0; i < total; i++) {
            let p; let body = ''; let meth = op;
            if (op === 'PUT') {
              const id = `${mode}-c${clients}-${String(seq++).padStart(7, '0')}`;
              p = `/${dbName(size)}/${id}`;
              body = withSeq(docs[size], seq);
              expect[i] = { id };
            } else {
              const id = `existing-${String(i % GET_DOCS).padStart(3, '0')}`;
              p = `/${dbName(size)}/${id}`;
              expect[i] = { id };
            }
            if (!enc) {
              reqs[i] = { method: meth, path: p, body: body ? Buffer.from(body) : null,
                headers: { Cookie: cookie, Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}) } };
            } else {
              const env = envelope(op, p, '', body);
              const t0 = performance.now();
              const msg = MODE === 'channel'
                ? await channelSeal(JSON.stringify(env), client.channel.c2s)
                : await seal(env, client.sessionCert, client.key.privateKey);
              (op === 'PUT' ? cc(size).sealPut : cc(size).sealGet).push(performance.now() - t0);
              if (op === 'GET') meth = 'POST';
              reqs[i] = { method: meth, path: p, body: Buffer.from(msg),
                headers: { Cookie: cookie, 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': client.token,
                  ...(MODE === 'channel'
                    ? { 'X-PGP-Channel': '1', Accept: 'application/pgp-encrypted, application/json' }
                    : { Accept: 'application/json' }) } };
              expect[i].nonce = env.nonce;
            }
          }
          const keep = new Set();
          const step = Math.max(1, Math.floor(n / SAMPLE));
          for (let i = 0; i < n && keep.size < SAMPLE; i += step) keep.add(warm + i);
          cell[mode] = { enc, reqs, expect, keep, buildS: (performance.now() - tBuild) / 1000,
            agent: new http.Agent({ keepAlive: true, maxSockets: clients }), parts: [], warmErr: 0 };
        }
        try {
          // ---- plain A, encrypted A, encrypted B, plain B (each mode warmed up before its
          // first part, connections opened there): drift in the machine's load hits both.
          const part = async (mode, from, to) => {
            const c = cell[mode];
            if (from === warm) {
              const w = await drive(ctx, c.agent, c.reqs, 0, warm, clients, new Set());
              c.warmErr = w.results.filter((r) => r.status < 200 || r.status > 299).length;
            }
            const s0 = await schedSample(db);
            if (process.env.BENCH_PART_LOG === '1') log(`part start ${mode} ${from}`);
            const cpu0 = serverCpuNs(pid);
            const me0 = process.cpuUsage();
            const t = await drive(ctx, c.agent, c.reqs, from, to, clients, c.keep);
            const me1 = process.cpuUsage(me0);
            const cpu1 = serverCpuNs(pid);
            if (process.env.BENCH_PART_LOG === '1') log(`part end ${mode} ${from}`);
            const s1 = await schedSample(db);
            c.parts.push({ from, results: t.results, wallMs: t.wallMs, cpuNs: cpu1 - cpu0,
              cliUs: me1.user + me1.system, sched: schedDelta(s0, s1, nNormal, nDirtyCpu) });
          };
          await part('plain', warm, half);
          await part('encrypted', warm, half);
          await part('encrypted', half, total);
          await part('plain', half, total);
        } finally {
          cell.plain.agent.destroy();
          cell.encrypted.agent.destroy();
        }
        for (const mode of ['plain', 'encrypted']) {
          const c = cell[mode];
          const { enc, expect, keep } = c;
          const results = new Array(total);
          for (const pt of c.parts) pt.results.forEach((r, k) => { results[pt.from + k] = r; });
          const timed = results.slice(warm);
          // ---- errors and checks
          let errors = c.warmErr;
          const firstErrors = [];
          timed.forEach((r, k) => {
            const bad = r.status < 200 || r.status > 299 || (enc && !r.encrypted);
            if (bad) { errors++; if (firstErrors.length < 3) firstErrors.push(`#${k}: ${r.status} ${r.error || ''}`); }
          });
          const wantStatus = op === 'PUT' ? 201 : 200;
          let checked = 0;
          for (const i of keep) {
            const r = results[i];
            const e = expect[i];
            if (r.status !== wantStatus) throw new Error(`${mode} ${op} ${kib(size)}: status ${r.status}`);
            let inner;
            if (enc) {
              const t0 = performance.now();
              // Channel answers come as the binary message (the request accepts it).
              if (MODE === 'channel' && !r.binary) throw new Error('channel answer is not the binary message');
              const resp = MODE === 'channel'
                ? JSON.parse(await channelOpen(r.body, client.channel.s2c))
                : await open(JSON.parse(r.body.toString()).pgp, client.key.privateKey, client.sessionCert);
              (op === 'PUT' ? cc(size).openPut : cc(size).openGet).push(performance.now() - t0);
              if (resp.v !== 1 || resp.status !== r.status) throw new Error(`response envelope status ${resp.status} != ${r.status}`);
              if (resp.nonce !== e.nonce) throw new Error('response nonce is not the request\'s');
              inner = JSON.parse(resp.body);
            } else {
              inner = JSON.parse(r.body.toString());
            }
            if (op === 'PUT' && !(inner.ok === true && inner.id === e.id)) throw new Error(`PUT answer ${JSON.stringify(inner)}`);
            if (op === 'GET' && !(inner._id === e.id && inner.type === 'patient_record' && inner.notes.length > 0)) {
              throw new Error(`GET answer for ${e.id} is not the document`);
            }
            checked++;
          }
          const lat = timed.map((r) => r.ms).sort((a, b) => a - b);
          const sum = (f) => c.parts.reduce((a, pt) => a + f(pt), 0);
          const wallMs = sum((pt) => pt.wallMs);
          const cpuNs = sum((pt) => pt.cpuNs);
          const util = (k) => sum((pt) => pt.sched[k][0]) / sum((pt) => pt.sched[k][1]);
          row[mode] = {
            n, rps: n / (wallMs / 1000), p50: pct(lat, 50), p99: pct(lat, 99), errors, checked,
            srvCpuMs: cpuNs / 1e6 / n, srvUtil: cpuNs / 1e6 / wallMs,
            cliCpuMs: sum((pt) => pt.cliUs) / 1000 / n, sched: { normal: util('normal'), dirty: util('dirty') },
            buildS: c.buildS, wallS: wallMs / 1000,
          };
          errorsTotal += errors;
          log(`${kib(size)} c=${clients} ${op} ${mode}: ${n} req in ${(wallMs / 1000).toFixed(2)} s `
            + `(built in ${c.buildS.toFixed(1)} s), ${row[mode].rps.toFixed(0)} req/s, errors ${errors}, `
            + `checked ${checked}${firstErrors.length ? `; ${firstErrors.join('; ')}` : ''}`);
        }
        rows.push(row);
      }
    }
  }

  // Plugin counters and call counts.
  const stats = (await db.json('/_node/_local/_stats/couch_pgp')).body;
  const counts = {};
  for (const s of TRACED) {
    const out = await db.rpc(`erlang:trace_info(${mfa(s)}, call_count).`);
    const m = out.match(/call_count,\s*(\d+|false)/);
    counts[s] = m ? m[1] : out;
  }
  await db.rpc('case whereis(couch_pgp_bench_swt) of undefined -> ok; P -> P ! stop, ok end.');
  if (process.env.BENCH_CALL_TIME === '1') {
    const mods = (process.env.BENCH_CALL_TIME_MODULES || '').split(',').filter(Boolean);
    if (mods.length) {
      const out = await db.rpc(`L = lists:append([[{T, C, {M, F, A}} || {F, A} <- M:module_info(functions), `
        + `{call_time, Ts} <- [erlang:trace_info({M, F, A}, call_time)], is_list(Ts), `
        + `{C, T} <- [lists:foldl(fun({_, C1, S, U}, {C0, T0}) -> {C0 + C1, T0 + S * 1000000 + U} end, {0, 0}, Ts)], C > 0] `
        + `|| M <- [${mods.join(',')}]]), lists:sublist(lists:reverse(lists:sort(L)), 25).`);
      log(`call_time, exclusive, top functions {total_us, calls, MFA}:\n${out}`);
    }
    for (const h of HOOKS) {
      const out = await db.rpc(`{call_time, L} = erlang:trace_info(${mfa(h)}, call_time), `
        + 'lists:foldl(fun({_, C, S, U}, {C0, T0}) -> {C0 + C, T0 + S * 1000000 + U} end, {0, 0}, L).');
      const m = out.match(/\{\s*(\d+)\s*,\s*(\d+)\s*\}/);
      if (m) log(`call_time ${h}: ${m[1]} calls, ${(Number(m[2]) / Math.max(1, Number(m[1]))).toFixed(1)} us per call (inclusive, wall time while scheduled in)`);
    }
  }

  // The plugin's OpenPGP work alone, in the same node, one caller: decrypt+verify of a request
  // envelope and encrypt+sign of a response envelope of about the sizes the cells used.
  log(`timing the node's own ${MODE === 'channel' ? 'couch_pgp_channel:open_request/3 and seal_response/6' : 'couch_pgp:decrypt/3 and encrypt/3'}`);
  const iters = QUICK ? 4 : 20; // x 5 rounds, the fastest round
  // T(F, N): nanoseconds per call of F, the fastest of 5 rounds of N calls after one warm-up.
  const TIMER = `T = fun(F, N) -> F(),
            Rs = [begin T0 = erlang:monotonic_time(nanosecond),
                        lists:foreach(fun(_) -> F() end, lists:seq(1, N)),
                        (erlang:monotonic_time(nanosecond) - T0) div N end || _ <- [1, 2, 3, 4, 5]],
            lists:min(Rs) end,`;
  // Channel mode: the requests timed are sealed by OpenPGP.js, as the cells' requests are (it
  // writes partial body lengths; a message couch_pgp sealed itself would take another path).
  const secret = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
  const sealedBy = {};
  if (MODE === 'channel') {
    for (const sz of ENVELOPE_SIZES) {
      const env = { ...envelope('PUT', '/db/d', '', 'a'.repeat(sz)), ts: 1 };
      sealedBy[sz] = Buffer.from(await channelSeal(JSON.stringify(env), secret.subarray(0, 32))).toString('base64');
    }
  }
  const cryptoOut = await db.rpc(MODE === 'channel' ? `begin
    {ok, K} = couch_pgp_channel:from_secret(base64:decode(<<"${secret.toString('base64')}">>)),
    ${TIMER}
    [begin
       P = binary:copy(<<"a">>, Sz),
       M = base64:decode(B64),
       {Sz, T(fun() -> {ok, _} = couch_pgp_channel:open_request(K, M, 1 bsl 30) end, ${iters} * 20),
            T(fun() -> {ok, _} = couch_pgp_channel:seal_response(K, 200, <<"n">>, <<"application/json">>, P, binary) end, ${iters} * 20)}
     end || {Sz, B64} <- [${ENVELOPE_SIZES.map((z) => `{${z}, <<"${sealedBy[z]}">>}`).join(', ')}]]
  end.` : `begin
    {ok, S} = couch_pgp:generate_key(#{}), {ok, C} = couch_pgp:generate_key(#{}),
    SC = couch_pgp:public_cert(S), CC = couch_pgp:public_cert(C),
    ${TIMER}
    [begin
       P = crypto:strong_rand_bytes(Sz),
       {ok, M} = couch_pgp:encrypt(P, [SC], #{sign_with => C}),
       {Sz, T(fun() -> {ok, _, _} = couch_pgp:decrypt(M, S, #{verify_with => [CC]}) end, ${iters}),
            T(fun() -> {ok, _} = couch_pgp:encrypt(P, [CC], #{sign_with => S}) end, ${iters})}
     end || Sz <- [${ENVELOPE_SIZES.join(', ')}]]
  end.`);
  const crypto = {};
  for (const m of cryptoOut.matchAll(/\{\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\}/g)) {
    crypto[Number(m[1])] = { dec: Number(m[2]) / 1e6, enc: Number(m[3]) / 1e6 };
  }

  report({ rows, clientCost, crypto, root, otp, nNormal, nDirtyCpu, nDirtyIo, opjsVersion, fpr, stats, counts,
    errorsTotal, elapsed: (performance.now() - tStart) / 1000 });
  if (errorsTotal) process.exitCode = 1;
}

// ---------------------------------------------------------------- report

function table(head, body, right) {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => String(r[i]).length)));
  const fmt = (r) => r.map((c, i) => (right[i] ? String(c).padStart(w[i]) : String(c).padEnd(w[i]))).join('  ').trimEnd();
  return [fmt(head), w.map((x) => '-'.repeat(x)).join('  '), ...body.map(fmt)].join('\n');
}

function report(x) {
  const f0 = (v) => (Number.isFinite(v) ? v.toFixed(0) : '-');
  const f2 = (v) => (Number.isFinite(v) ? v.toFixed(2) : '-');
  const pc = (v) => (Number.isFinite(v) ? `${(v * 100).toFixed(0)}%` : '-');
  const cpu = os.cpus();
  // decrypt+verify the request envelope + encrypt+sign the response envelope, one caller.
  const cryptoMs = (r) => {
    const req = x.crypto[envSize(r.size, r.op === 'PUT')];
    const resp = x.crypto[envSize(r.size, r.op === 'GET')];
    return req && resp ? req.dec + resp.enc : NaN;
  };
  const out = [];
  out.push(`couch_pgp HTTP benchmark, mode ${MODE}${QUICK ? " (QUICK=1: a tenth of the requests, rough numbers)" : ""}`);
  out.push(`date:      ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`);
  out.push(`machine:   ${os.availableParallelism ? os.availableParallelism() : cpu.length} CPUs (nproc), ${cpu[0]?.model || '?'}, `
    + `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, load average ${LOAD_AT_START.map((l) => l.toFixed(2)).join(' ')} at start, `
    + `${os.loadavg().map((l) => l.toFixed(2)).join(' ')} at the end`);
  out.push(`software:  CouchDB ${x.root.version} (${x.root.vendor?.name || '?'}), Erlang/OTP ${x.otp}, node ${process.version}, OpenPGP.js ${x.opjsVersion}`);
  out.push(`server:    ${x.nNormal} schedulers, ${x.nDirtyCpu} dirty CPU, ${x.nDirtyIo} dirty IO; `
    + `busy wait: ${VM_ARGS.length ? VM_ARGS.join(' ') : "CouchDB's default"}; client and server share the machine`);
  out.push(`requests:  ${Math.ceil(REQUESTS[1] / div)} per cell with 1 client, ${Math.ceil(REQUESTS[16] / div)} with 16 (after `
    + `${Math.ceil(WARMUP[1] / (QUICK ? 2 : 1))}/${Math.ceil(WARMUP[16] / (QUICK ? 2 : 1))} warm-up); cookie auth, keep-alive; `
    + 'PUT = new document, GET = one of 64 existing ones (encrypted: POST with a GET envelope; channel: Accept: application/pgp-encrypted, binary answers); '
    + 'order per cell: plain, encrypted, encrypted, plain (half the requests each)');
  out.push('');
  out.push('Throughput and latency (latency: send to full response body read, ms; ratio = encrypted/plain throughput)');
  out.push(table(
    ['size', 'clients', 'op', 'plain req/s', 'enc req/s', 'ratio', 'plain p50', 'plain p99', 'enc p50', 'enc p99', 'errors'],
    x.rows.map((r) => [kib(r.size), r.clients, r.op, f0(r.plain.rps), f0(r.encrypted.rps), f2(r.encrypted.rps / r.plain.rps),
      f2(r.plain.p50), f2(r.plain.p99), f2(r.encrypted.p50), f2(r.encrypted.p99), r.plain.errors + r.encrypted.errors]),
    [false, true, false, true, true, true, true, true, true, true, true]));
  out.push('');
  out.push('Where the time goes, server side (CPU = all beam threads per request; util = CPU / wall; sched = scheduler busy share)');
  out.push(table(
    ['size', 'clients', 'op', 'srv CPU ms plain', 'enc', 'extra', 'of which crypto', 'srv util plain', 'enc', 'sched plain', 'sched enc', 'dirty-CPU enc', 'client CPU ms plain', 'enc'],
    x.rows.map((r) => [kib(r.size), r.clients, r.op, f2(r.plain.srvCpuMs), f2(r.encrypted.srvCpuMs),
      f2(r.encrypted.srvCpuMs - r.plain.srvCpuMs), f2(cryptoMs(r)), pc(r.plain.srvUtil), pc(r.encrypted.srvUtil),
      pc(r.plain.sched.normal), pc(r.encrypted.sched.normal), pc(r.encrypted.sched.dirty),
      f2(r.plain.cliCpuMs), f2(r.encrypted.cliCpuMs)]),
    [false, true, false, true, true, true, true, true, true, true, true, true, true, true]));
  out.push(MODE === 'channel'
    ? '(of which crypto = couch_pgp_channel:open_request/3 of the request + seal_response/6 of the response, timed alone in the node, one caller;'
    : '(of which crypto = couch_pgp:decrypt/3 of the request + couch_pgp:encrypt/3 of the response, timed alone in the node, one caller;');
  out.push(' srv util is in cores: 100% = one core busy; client CPU = this Node process, HTTP only: request bodies were built before timing)');
  out.push('');
  out.push('Server OpenPGP work alone (couch_pgp in the node, one caller, ms per call, fastest of 5 rounds; envelope plaintext sizes)');
  out.push(table(['envelope', MODE === 'channel' ? 'open_request' : 'decrypt+verify', MODE === 'channel' ? 'seal_response' : 'encrypt+sign'],
    ENVELOPE_SIZES.map((z) => [`${z} B`, f2(x.crypto[z]?.dec), f2(x.crypto[z]?.enc)]), [false, true, true]));
  out.push('');
  out.push('Client side, OpenPGP.js (median ms per message, not included above)');
  out.push(table(
    ['size', 'build PUT request', 'build GET request', 'open PUT response', 'open GET response'],
    SIZES.filter((s) => x.clientCost[s]).map((s) => [kib(s), f2(median(x.clientCost[s].sealPut)), f2(median(x.clientCost[s].sealGet)),
      f2(median(x.clientCost[s].openPut)), f2(median(x.clientCost[s].openGet))]),
    [false, true, true, true, true]));
  out.push(MODE === 'channel'
    ? '(build = envelope + seal under c2s, binary (OpenPGP.js with a session key); open = open the binary answer under s2c + parse; PUT request and GET response carry the document)'
    : '(build = envelope + encrypt to the session key + sign with the client key, armored; '
      + 'open = decrypt + verify the session key\'s signature + parse; PUT request and GET response carry the document)');
  out.push('');
  const st = (k) => x.stats?.[k]?.value ?? '?';
  out.push(`plugin counters: requests_decrypted ${st('requests_decrypted')}, responses_encrypted ${st('responses_encrypted')}, `
    + `requests_refused ${st('requests_refused')}, sessions_created ${st('sessions_created')}`);
  out.push(`call counts: ${Object.entries(x.counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const checked = x.rows.reduce((a, r) => a + r.encrypted.checked, 0);
  out.push(`verified: ${checked} encrypted responses opened (session-key signature, status, nonce, content); `
    + `errors (non-2xx or plaintext answers): ${x.errorsTotal}`);
  out.push(`elapsed: ${x.elapsed.toFixed(0)} s`);
  process.stdout.write(`\n${out.join('\n')}\n`);
}

await main();
