// Integration harness: a throw-away CouchDB with couch_pgp installed.
//
//   import { CouchDB, couchdbSkip } from './couchdb.mjs';
//   const skip = couchdbSkip();            // false, or a reason (after printing
//                                          // "SKIPPED: no CouchDB at <home>")
//   let db;
//   before(async () => { if (!skip) db = await CouchDB.start({ ini: { couch_pgp: { signed_dbs: 'x' } } }); });
//   after(async () => { if (db) await db.stop(); });   // always
//   test('...', { skip }, async () => { const r = await db.json('/_node/_local/_system'); });
//
// start(opts) copies $COUCHDB_HOME (default /opt/couchdb; never modified) to a fresh temp dir,
// runs `make install COUCHDB_HOME=<copy>` (or scripts/install.sh directly when the Makefile
// has already built the app: COUCH_PGP_IT_PREBUILT=1; COUCH_PGP_COUCHDB_SRC is passed on),
// edits the copy's etc/local.ini (admin with a random password, 127.0.0.1:<free port>,
// single_node + [cluster] n=1, random [chttpd_auth] secret and [couch_pgp] passphrase,
// [couch_pgp] enable = true, then opts.ini), writes a vm.args copy with a unique -name and -setcookie (COUCHDB_ARGS_FILE),
// starts a private epmd on a free loopback port (ERL_EPMD_PORT; the machine's shared epmd is
// neither started nor touched) and bin/couchdb in its own process group
// (ERL_EPMD_ADDRESS=127.0.0.1), and waits for GET /_up and for _users (60 s, then throws
// with the tail of the log).
//
// An instance: url, port, home (the release copy), dir (temp root), admin {username,
// password}, authHeader, passphrase, iniOverrides, nodeName, cookie; request(path, opts) /
// json(path, opts) (admin basic auth unless opts.auth is null or {username, password});
// log(since) / logTail() / logErrors(since); setIni({section: {key: value|null}}) then
// restart({ini, env}); kill(signal) then start({ini, env}) (the same node, its data kept); rpc('erlang:expression.') via erl_call; waitFor(fn); stop(), which kills both
// process groups and deletes the temp dir (COUCH_PGP_IT_KEEP=1 keeps it). Instances still
// alive when the process exits, gets SIGINT/SIGTERM/SIGHUP, or hits the safety timeout
// (COUCH_PGP_IT_TIMEOUT_MS, default 5 min) are killed and their temp dirs removed.

import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const COUCHDB_SRC = path.resolve(REPO, process.env.COUCH_PGP_COUCHDB_SRC || 'couchdb_src');
export const EPI_MODULE = 'couch_pgp_epi';
const SAFETY_MS = Number(process.env.COUCH_PGP_IT_TIMEOUT_MS || 5 * 60 * 1000);
const UP_TIMEOUT_MS = 60 * 1000;

export function couchdbHome() {
  return path.resolve(process.env.COUCHDB_HOME || '/opt/couchdb');
}

/** True under CI (CI=true, as CI systems set it): there, a suite that would skip fails. */
export const IN_CI = !['', 'false', '0'].includes(process.env.CI || '');

const skipsPrinted = new Set();
/** Outside CI: false when what the suite needs is there; else prints a SKIPPED line once
 *  per reason and returns the reason, for `test(name, { skip }, ...)`. Under CI it throws
 *  instead, so that a green CI run means the suite ran. */
export function skipUnless(available, reason) {
  if (available) return false;
  if (IN_CI) throw new Error(`FAILED: the integration suite would skip in CI: ${reason}`);
  if (!skipsPrinted.has(reason)) {
    console.log(`SKIPPED: ${reason}`);
    skipsPrinted.add(reason);
  }
  return reason;
}

/** skipUnless() for a CouchDB release at couchdbHome(). */
export function couchdbSkip() {
  const home = couchdbHome();
  return skipUnless(fs.existsSync(path.join(home, 'bin', 'couchdb')),
    `no CouchDB at ${home} (set COUCHDB_HOME, or run through make test, which also finds ../shared/couchdb)`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rand = (n = 8) => randomBytes(n).toString('hex');

/** Runs a command; resolves {code, stdout, stderr}; never rejects except on spawn failure. */
export function run(cmd, args, { env, cwd, timeoutMs = 5 * 60 * 1000, input } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, {
      env: { ...process.env, ...env }, cwd, timeout: timeoutMs, killSignal: 'SIGKILL',
      maxBuffer: 64 * 1024 * 1024,
    }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number' && !err.killed) return reject(err);
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
    if (input !== undefined) child.stdin.end(input);
  });
}

async function runOk(cmd, args, opts) {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  }
  return r;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.setTimeout(1000);
    s.on('connect', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
    s.on('timeout', () => { s.destroy(); resolve(false); });
  });
}

/** Copies a release (cp -a) to <dir>/<name>; drops data/ so the copy starts empty. */
export async function copyRelease(dir, name = 'couchdb', home = couchdbHome()) {
  const dest = path.join(dir, name);
  await runOk('cp', ['-a', home, dest]);
  await fsp.rm(path.join(dest, 'data'), { recursive: true, force: true });
  return dest;
}

// Serialises `make install` (rebar3 compile) across concurrently running test files.
async function withRepoLock(fn) {
  const lock = path.join(os.tmpdir(), `couch_pgp-it-${Buffer.from(REPO).toString('hex').slice(-24)}.lock`);
  const deadline = Date.now() + 5 * 60 * 1000;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, 'pid'), String(process.pid));
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      let owner = 0;
      try { owner = Number(fs.readFileSync(path.join(lock, 'pid'), 'utf8')); } catch { /* racing */ }
      let alive = true;
      if (owner) { try { process.kill(owner, 0); } catch { alive = false; } }
      if (!alive) fs.rmSync(lock, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`);
      else await sleep(200);
    }
  }
  try { return await fn(); } finally { fs.rmSync(lock, { recursive: true, force: true }); }
}

/** Installs the plugin into a release copy. Resolves {code, stdout, stderr}; use
 *  {check:false} to inspect failures yourself. */
export async function installPlugin(release, { check = true, env = {} } = {}) {
  const e = { COUCH_PGP_COUCHDB_SRC: COUCHDB_SRC, ...env };
  const r = process.env.COUCH_PGP_IT_PREBUILT === '1'
    ? await run('sh', [path.join(REPO, 'scripts', 'install.sh'), release], { env: e })
    : await withRepoLock(() => run('make', ['-s', '--no-print-directory', '-C', REPO, 'install',
      `COUCHDB_HOME=${release}`], { env: e }));
  if (check && r.code !== 0) throw new Error(`install into ${release} failed (${r.code})\n${r.stdout}\n${r.stderr}`);
  return r;
}

export async function uninstallPlugin(release, { check = true } = {}) {
  const r = await run('make', ['-s', '--no-print-directory', '-C', REPO, 'uninstall',
    `COUCHDB_HOME=${release}`]);
  if (check && r.code !== 0) throw new Error(`uninstall from ${release} failed (${r.code})\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** Map relpath -> "type mode size sha256|target" of everything under root (lstat, no follow). */
export async function treeDigest(root, { ignore = [] } = {}) {
  const { createHash } = await import('node:crypto');
  const out = new Map();
  async function walk(rel) {
    const abs = path.join(root, rel);
    for (const ent of await fsp.readdir(abs, { withFileTypes: true })) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (ignore.some((p) => r === p || r.startsWith(`${p}/`))) continue;
      const st = await fsp.lstat(path.join(root, r));
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) { out.set(r, `dir ${mode}`); await walk(r); }
      else if (st.isSymbolicLink()) out.set(r, `link ${await fsp.readlink(path.join(root, r))}`);
      else {
        const h = createHash('sha256').update(await fsp.readFile(path.join(root, r))).digest('hex');
        out.set(r, `file ${mode} ${st.size} ${h}`);
      }
    }
  }
  await walk('');
  return out;
}

/** Differences between two treeDigest maps, as readable lines (empty when identical). */
export function digestDiff(a, b) {
  const lines = [];
  for (const [k, v] of a) if (!b.has(k)) lines.push(`- ${k}`); else if (b.get(k) !== v) lines.push(`~ ${k}: ${v} -> ${b.get(k)}`);
  for (const k of b.keys()) if (!a.has(k)) lines.push(`+ ${k}`);
  return lines;
}

// ---- ini editing -----------------------------------------------------------------------

/** Sets section/key values in ini text, keeping everything else (including what CouchDB
 *  itself persisted). sections: { section: { key: value|null } } (null removes the key). */
export function editIni(text, sections) {
  const lines = text.split('\n');
  for (const [section, kv] of Object.entries(sections)) {
    for (const [key, value] of Object.entries(kv)) {
      let start = lines.findIndex((l) => l.trim() === `[${section}]`);
      if (start < 0) {
        if (value === null) continue;
        if (lines.length && lines[lines.length - 1] !== '') lines.push('');
        lines.push(`[${section}]`);
        start = lines.length - 1;
      }
      let end = lines.findIndex((l, i) => i > start && /^\s*\[/.test(l));
      if (end < 0) end = lines.length;
      const re = new RegExp(`^\\s*${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*=`);
      const at = lines.findIndex((l, i) => i > start && i < end && re.test(l));
      if (value === null) { if (at >= 0) lines.splice(at, 1); }
      else if (at >= 0) lines[at] = `${key} = ${value}`;
      else lines.splice(start + 1, 0, `${key} = ${value}`);
    }
  }
  return lines.join('\n').replace(/\n*$/, '\n');
}

/** Merges ini objects ({section: {key: value}}); later wins. */
export function mergeIni(...parts) {
  const out = {};
  for (const p of parts) for (const [sec, kv] of Object.entries(p)) out[sec] = { ...(out[sec] || {}), ...kv };
  return out;
}

// ---- live instances & safety net ----------------------------------------------------------

const live = new Set();
let safetyTimer = null;

function killGroup(pid, signal) {
  if (!pid) return false;
  try { process.kill(-pid, signal); return true; } catch { return false; }
}

function emergencyCleanup(why) {
  for (const db of live) {
    if (why) process.stderr.write(`couchdb harness: ${why}; killing ${db.dir}\n`);
    db.killNow();
  }
}

function armSafetyNet() {
  if (safetyTimer) return;
  safetyTimer = setTimeout(() => {
    emergencyCleanup(`safety timeout of ${SAFETY_MS} ms reached`);
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 100).unref();
  }, SAFETY_MS);
  safetyTimer.unref();
  process.on('exit', () => emergencyCleanup());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => { emergencyCleanup(`got ${sig}`); process.exit(130); });
  }
}

// ---- CouchDB ------------------------------------------------------------------------------

export class CouchDB {
  /**
   * opts.ini      extra local.ini settings { section: { key: value } } (merged over ours)
   * opts.install  install the plugin (default true)
   * opts.vmArgs   extra lines for vm.args
   * opts.env      extra environment for bin/couchdb
   * opts.prepare  async (db) => {} run after install, before the first start
   */
  static async start(opts = {}) {
    const db = new CouchDB();
    try {
      await db.#create(opts);
      await db.#launch();
      return db;
    } catch (e) {
      await db.stop();
      throw e;
    }
  }

  /**
   * A cluster of `size` nodes from copies of the release, sharing one private epmd, the
   * Erlang cookie, the admin, `[chttpd_auth] secret` (so couch_pgp's session tokens open on
   * every node) and the server identity key (copied from the first node, as an operator
   * would), joined through `/_node/_local/_nodes` with `[cluster] n = size`. opts as start().
   */
  static async startCluster(size, opts = {}) {
    const nodes = [];
    try {
      nodes.push(await CouchDB.start({ ...opts, cluster: { size } }));
      const [first] = nodes;
      await first.waitFor(async () => (await first.json('/_pgp', { auth: null })).status === 200,
        { what: 'the first node to have its identity key' });
      const keyFile = path.join(first.home, 'data', 'couch_pgp', 'server_key.asc');
      for (let i = 1; i < size; i++) {
        nodes.push(await CouchDB.start({ ...opts, cluster: { size, first },
          prepare: async (db) => {
            const dir = path.join(db.home, 'data', 'couch_pgp');
            await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
            await fsp.copyFile(keyFile, path.join(dir, 'server_key.asc'));
            await fsp.chmod(path.join(dir, 'server_key.asc'), 0o600);
          } }));
      }
      for (const node of nodes.slice(1)) {
        const r = await first.json(`/_node/_local/_nodes/${node.nodeName}`, { method: 'PUT', body: {} });
        if (r.status !== 201 && r.status !== 202) throw new Error(`joining ${node.nodeName}: ${r.status} ${r.text}`);
      }
      const names = nodes.map((n) => n.nodeName).sort();
      for (const node of nodes) {
        await node.waitFor(async () => {
          const m = await node.json('/_membership');
          return JSON.stringify([...(m.body.cluster_nodes || [])].sort()) === JSON.stringify(names);
        }, { timeoutMs: 60000, what: `${node.nodeName} to see the whole cluster` });
      }
      for (const db of ['_users', '_replicator']) {
        const r = await first.json(`/${db}`, { method: 'PUT' });
        if (r.status !== 201 && r.status !== 202 && r.status !== 412) throw new Error(`creating ${db}: ${r.status} ${r.text}`);
      }
      return nodes;
    } catch (e) {
      for (const n of nodes.reverse()) await n.stop();
      throw e;
    }
  }

  dir; home; port; url; nodeName; cookie; epmdPort; logFile;
  admin = { username: 'admin', password: rand(12) };
  /** [couch_pgp] passphrase written to local.ini (unless opts.ini overrides it). */
  passphrase = rand(16);
  /** What start() wrote to local.ini on top of the harness basics: ours + opts.ini. */
  iniOverrides = {};
  installOutput = '';
  #proc = null; #epmd = null; #exited = null; #opts = {};

  get authHeader() {
    return `Basic ${Buffer.from(`${this.admin.username}:${this.admin.password}`).toString('base64')}`;
  }

  async #create(opts) {
    armSafetyNet();
    live.add(this);
    this.#opts = opts;
    this.dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'couch_pgp-it-'));
    this.home = await copyRelease(this.dir);
    if (opts.install !== false) {
      const r = await installPlugin(this.home);
      this.installOutput = r.stdout + r.stderr;
    }
    this.port = await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    this.nodeName = `couchdb-${rand(4)}@127.0.0.1`;
    const first = opts.cluster?.first;
    this.cookie = first ? first.cookie : rand(16);
    this.authSecret = first ? first.authSecret : rand(16);
    this.uuid = first ? first.uuid : rand(16);
    if (first) {
      this.admin = first.admin;
      this.passphrase = first.passphrase;
      this.epmdPort = first.epmdPort; // one epmd for the cluster, the first node's
    }
    this.logFile = path.join(this.dir, 'couchdb.log');
    // Switched on, as an operator does after `make install` (opts.ini can say enable: null
    // to keep the installed default, off).
    this.iniOverrides = mergeIni({ couch_pgp: { enable: 'true', passphrase: this.passphrase } }, opts.ini || {});
    this.passphrase = this.iniOverrides.couch_pgp.passphrase ?? null;
    this.setIni({
      couchdb: { single_node: opts.cluster ? 'false' : 'true', uuid: this.uuid },
      cluster: { n: String(opts.cluster?.size ?? 1) },
      chttpd: { bind_address: '127.0.0.1', port: String(this.port) },
      httpd: { bind_address: '127.0.0.1', port: String(await freePort()) },
      admins: { [this.admin.username]: this.admin.password },
      chttpd_auth: { secret: this.authSecret },
      log: { writer: 'stderr', level: 'info' },
    });
    this.setIni(this.iniOverrides);
    const vmArgs = (await fsp.readFile(path.join(this.home, 'etc', 'vm.args'), 'utf8'))
      .split('\n')
      .filter((l) => !/^\s*-(name|sname|setcookie)\b/.test(l))
      .concat([`-name ${this.nodeName}`, `-setcookie ${this.cookie}`, ...(opts.vmArgs || [])]);
    await fsp.writeFile(path.join(this.dir, 'vm.args'), `${vmArgs.join('\n')}\n`);
    if (opts.prepare) await opts.prepare(this);
  }

  /** Edits the copy's etc/local.ini (takes effect at the next start/restart). */
  setIni(sections) {
    const f = path.join(this.home, 'etc', 'local.ini');
    fs.writeFileSync(f, editIni(fs.readFileSync(f, 'utf8'), sections));
  }

  readIni() {
    return fs.readFileSync(path.join(this.home, 'etc', 'local.ini'), 'utf8');
  }

  async #startEpmd() {
    const erts = fs.readdirSync(this.home).find((d) => d.startsWith('erts-'));
    this.epmdPort = await freePort();
    this.#epmd = spawn(path.join(this.home, erts, 'bin', 'epmd'),
      ['-address', '127.0.0.1', '-port', String(this.epmdPort)],
      { detached: true, stdio: ['ignore', 'ignore', fs.openSync(path.join(this.dir, 'epmd.log'), 'a')] });
    for (let i = 0; i < 100; i++) {
      if (await canConnect(this.epmdPort)) return;
      if (this.#epmd.exitCode !== null) break;
      await sleep(50);
    }
    throw new Error(`private epmd did not start on 127.0.0.1:${this.epmdPort}`);
  }

  async #launch() {
    if (!this.#epmd && !this.#opts.cluster?.first) await this.#startEpmd();
    const out = fs.openSync(this.logFile, 'a');
    fs.writeSync(out, `\n==== harness: starting ${this.nodeName} at ${new Date().toISOString()} ====\n`);
    this.#proc = spawn(path.join(this.home, 'bin', 'couchdb'), [], {
      cwd: this.home,
      detached: true, // own process group (setsid): stop() kills -pid
      stdio: ['ignore', out, out],
      env: {
        ...process.env,
        ...(this.#opts.env || {}),
        COUCHDB_ARGS_FILE: path.join(this.dir, 'vm.args'),
        ERL_EPMD_ADDRESS: '127.0.0.1',
        ERL_EPMD_PORT: String(this.epmdPort),
        ERL_CRASH_DUMP: path.join(this.dir, 'erl_crash.dump'),
      },
    });
    fs.closeSync(out);
    this.#exited = new Promise((resolve) => {
      this.#proc.on('exit', (code, sig) => resolve({ code, sig }));
      this.#proc.on('error', (err) => resolve({ error: String(err) }));
    });
    const deadline = Date.now() + UP_TIMEOUT_MS;
    let exit = null;
    this.#exited.then((e) => { exit = e; });
    while (Date.now() < deadline) {
      if (exit) throw new Error(`CouchDB exited during boot (${JSON.stringify(exit)})\n${this.logTail()}`);
      try {
        const r = await fetch(`${this.url}/_up`, { signal: AbortSignal.timeout(2000) });
        await r.arrayBuffer();
        if (r.status === 200) break;
      } catch { /* not listening yet */ }
      await sleep(250);
    }
    if (Date.now() >= deadline) throw new Error(`CouchDB not up after ${UP_TIMEOUT_MS / 1000} s\n${this.logTail()}`);
    // A cluster node waits for startCluster() to join it and create the system databases.
    if (this.#opts.cluster) return;
    // single_node = true makes the node create _users and _replicator right after /_up.
    for (;;) {
      if (exit) throw new Error(`CouchDB exited during boot (${JSON.stringify(exit)})\n${this.logTail()}`);
      try {
        const r = await this.request('/_users', { timeoutMs: 2000 });
        await r.arrayBuffer();
        if (r.status === 200) return;
      } catch { /* retry */ }
      if (Date.now() >= deadline) throw new Error(`_users not created after ${UP_TIMEOUT_MS / 1000} s\n${this.logTail()}`);
      await sleep(250);
    }
  }

  /** Polls fn() until it returns a truthy value (returned) or timeoutMs passes (throws). */
  async waitFor(fn, { timeoutMs = 30000, intervalMs = 200, what = 'condition' } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() >= deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(intervalMs);
    }
  }

  /** Whole log (stdout+stderr of every start), or only what follows `since` (a length). */
  log(since = 0) {
    try { return fs.readFileSync(this.logFile, 'utf8').slice(since); } catch { return ''; }
  }

  logTail(lines = 60) {
    return `---- tail of ${this.logFile} ----\n${this.log().split('\n').slice(-lines).join('\n')}`;
  }

  /** Log lines at level error or worse (CouchDB's "[error] ..." format, plus crash reports). */
  logErrors(since = 0) {
    return this.log(since).split('\n')
      .filter((l) => /^\[(error|critical|alert|emergency)\]/.test(l) || /application_start_failure|CRASH REPORT|crash_report/.test(l));
  }

  /** fetch() against the node. opts.auth: 'admin' (default), null (anonymous), or
   *  {username, password}. Plain objects as body are sent as JSON. */
  async request(p, { method = 'GET', body, headers = {}, auth = 'admin', timeoutMs = 30000 } = {}) {
    const h = { ...headers };
    if (auth === 'admin') h.Authorization = this.authHeader;
    else if (auth && auth.username) h.Authorization = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
    let b = body;
    if (b !== undefined && b !== null && typeof b === 'object' && !(b instanceof Uint8Array) && !(b instanceof ArrayBuffer)) {
      b = JSON.stringify(b);
      if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json';
    }
    return fetch(this.url + p, { method, headers: h, body: b, signal: AbortSignal.timeout(timeoutMs) });
  }

  /** request() then {status, headers, body (parsed JSON when possible), text}. */
  async json(p, opts) {
    const r = await this.request(p, opts);
    const text = await r.text();
    let body = text;
    try { body = JSON.parse(text); } catch { /* not JSON */ }
    return { status: r.status, headers: r.headers, body, text };
  }

  /** Evaluates Erlang expressions (a string ending in '.') on the node via erl_call and
   *  returns the printed result. */
  async rpc(expr) {
    const erts = fs.readdirSync(this.home).find((d) => d.startsWith('erts-'));
    const r = await run(path.join(this.home, erts, 'bin', 'erl_call'),
      ['-name', this.nodeName, '-c', this.cookie, '-e'],
      { input: `${expr.trim().replace(/\.$/, '')}.\n`, timeoutMs: 30000,
        env: { ERL_EPMD_PORT: String(this.epmdPort), ERL_EPMD_ADDRESS: '127.0.0.1' } });
    if (r.code !== 0) throw new Error(`erl_call failed (${r.code}): ${r.stdout}${r.stderr}`);
    const m = /^\{ok,\s*([\s\S]*)\}\s*$/.exec(r.stdout.trim());
    if (!m) throw new Error(`erl_call: ${r.stdout}${r.stderr}`);
    return m[1].trim();
  }

  async #stopCouch() {
    const proc = this.#proc;
    this.#proc = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
      killGroup(proc?.pid, 'SIGKILL'); // stray children (couchjs) of an exited node
      return;
    }
    killGroup(proc.pid, 'SIGTERM');
    const done = await Promise.race([this.#exited.then(() => true), sleep(15000).then(() => false)]);
    killGroup(proc.pid, 'SIGKILL');
    if (!done) await Promise.race([this.#exited, sleep(5000)]);
  }

  /** Stops and starts the node. ini: local.ini changes (as setIni); env: environment
   *  changes for bin/couchdb from now on ({NAME: value|null}, null removes a variable). */
  async restart({ ini, env } = {}) {
    await this.#stopCouch();
    if (ini) this.setIni(ini);
    if (env) this.#setEnv(env);
    await this.#launch();
  }

  #setEnv(env) {
    const e = { ...(this.#opts.env || {}) };
    for (const [k, v] of Object.entries(env)) { if (v === null) delete e[k]; else e[k] = v; }
    this.#opts = { ...this.#opts, env: e };
  }

  /** Sends `signal` (default SIGKILL, no chance to clean up) to the node's process group and
   *  waits until it has exited; the temp dir and the private epmd stay, so start() (or
   *  restart()) brings the same node back with its data. */
  async kill(signal = 'SIGKILL') {
    const proc = this.#proc;
    this.#proc = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    killGroup(proc.pid, signal);
    await Promise.race([this.#exited, sleep(15000)]);
    killGroup(proc.pid, 'SIGKILL'); // stray children (couchjs)
  }

  /** Starts a node that kill() stopped. Options as restart(). */
  async start({ ini, env } = {}) {
    if (this.#proc) throw new Error(`${this.nodeName} is running`);
    await this.restart({ ini, env });
  }

  /** Whether the node's process is running (false after kill(), or if it died). */
  get running() {
    return !!this.#proc && this.#proc.exitCode === null && this.#proc.signalCode === null;
  }

  /** Kills the node's process group and the private epmd, deletes the temp dir. */
  async stop() {
    await this.#stopCouch();
    if (this.#epmd) {
      killGroup(this.#epmd.pid, 'SIGKILL');
      this.#epmd = null;
    }
    if (this.dir && !process.env.COUCH_PGP_IT_KEEP) await fsp.rm(this.dir, { recursive: true, force: true });
    else if (this.dir) console.log(`# kept ${this.dir}`);
    live.delete(this);
  }

  /** Synchronous last-resort cleanup (exit handlers, safety timeout). */
  killNow() {
    killGroup(this.#proc?.pid, 'SIGKILL');
    killGroup(this.#epmd?.pid, 'SIGKILL');
    this.#proc = null;
    this.#epmd = null;
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}
