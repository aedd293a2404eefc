// The plugin installs into a CouchDB release, idempotently, uninstalls without a trace, and
// a node with it registered boots cleanly. Runs against a temporary copy of $COUCHDB_HOME.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  CouchDB, REPO, COUCHDB_SRC, EPI_MODULE, couchdbHome, couchdbSkip, copyRelease, installPlugin,
  uninstallPlugin, treeDigest, digestDiff, run,
} from './couchdb.mjs';

const skip = couchdbSkip();
const VSN = /\{vsn,\s*"([^"]+)"\}/.exec(
  fs.readFileSync(path.join(REPO, 'erlang_src', 'couch_pgp.app.src'), 'utf8'))[1];
const APP_DIR = `lib/couch_pgp-${VSN}`;

async function scratch() {
  return fsp.mkdtemp(path.join(os.tmpdir(), 'couch_pgp-it-inst-'));
}

/** Evaluates an Erlang expression with the local erl and returns what it prints. */
async function erlEval(expr) {
  const r = await run('erl', ['-noshell', '-eval', `${expr}, halt().`], { timeoutMs: 60000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

function builtinPlugins(release) {
  const epi = fs.readdirSync(path.join(release, 'lib')).find((d) => d.startsWith('couch_epi-'));
  return erlEval(`{ok,[{application,_,P}]} = file:consult("${release}/lib/${epi}/ebin/couch_epi.app"),
    io:format("~w", [proplists:get_value(plugins, proplists:get_value(env, P))])`);
}

function sysConfigPlugins(release) {
  return erlEval(`{ok,[T]} = file:consult("${release}/releases/sys.config"),
    io:format("~w", [proplists:get_value(plugins, proplists:get_value(couch_epi, T, []), none)])`);
}

// An Erlang string term holding a path ("/x/bin/../lib/..."), normalised.
function erlPath(term) {
  assert.match(term, /^"[^"]*"$/, term);
  return path.normalize(term.slice(1, -1));
}

function iniKeys(text) {
  const out = {};
  let section = null;
  for (const raw of text.split('\n')) {
    const l = raw.trim();
    if (!l || l.startsWith(';')) continue;
    const s = /^\[([^\]]+)\]$/.exec(l);
    if (s) { section = s[1]; out[section] ??= {}; continue; }
    const kv = /^([^=]+?)\s*=\s*(.*)$/.exec(l);
    if (kv && section) out[section][kv[1]] = kv[2];
  }
  return out;
}

describe('install / uninstall (no node started)', () => {
  let dir;
  before(async () => { if (!skip) dir = await scratch(); });
  after(async () => { if (dir) await fsp.rm(dir, { recursive: true, force: true }); });

  test('refuses a directory that is not a CouchDB release', { skip }, async () => {
    const fake = path.join(dir, 'fake');
    await fsp.mkdir(path.join(fake, 'lib'), { recursive: true });
    await fsp.mkdir(path.join(fake, 'releases'));
    const before = await treeDigest(fake);
    const r = await run('sh', [path.join(REPO, 'scripts', 'install.sh'), fake]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /couch_db\.hrl/);
    assert.deepEqual(digestDiff(before, await treeDigest(fake)), []);

    // Headers present but no couch_epi.
    const inc = path.join(fake, 'lib', 'couch-9.9.9', 'include');
    await fsp.mkdir(inc, { recursive: true });
    await fsp.writeFile(path.join(inc, 'couch_db.hrl'), '');
    const r2 = await run('sh', [path.join(REPO, 'scripts', 'install.sh'), fake]);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /couch_epi/);
  });

  test('refuses to register a plugin without couch_pgp_epi, leaving the release alone', { skip }, async () => {
    const rel = await copyRelease(dir, 'nosrc');
    const empty = path.join(dir, 'empty-src');
    await fsp.mkdir(empty);
    const before = await treeDigest(rel);
    const r = await installPlugin(rel, { check: false, env: { COUCH_PGP_COUCHDB_SRC: empty } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /couch_pgp_epi\.erl missing/);
    assert.deepEqual(digestDiff(before, await treeDigest(rel)), []);
  });

  test('install puts everything in place, is idempotent and replaces an older version', { skip }, async () => {
    const rel = await copyRelease(dir, 'idem');
    const origSys = await fsp.readFile(path.join(rel, 'releases', 'sys.config'));
    await fsp.mkdir(path.join(rel, 'lib', 'couch_pgp-0.0.0-old', 'ebin'), { recursive: true });
    await fsp.writeFile(path.join(rel, 'lib', 'couch_pgp-0.0.0-old', 'ebin', 'stale.beam'), 'x');

    await installPlugin(rel);
    assert.deepEqual(fs.readdirSync(path.join(rel, 'lib')).filter((d) => d.startsWith('couch_pgp-')),
      [`couch_pgp-${VSN}`]);
    const ebin = path.join(rel, APP_DIR, 'ebin');
    for (const f of ['couch_pgp.app', `${EPI_MODULE}.beam`]) assert.ok(fs.existsSync(path.join(ebin, f)), f);
    for (const f of fs.readdirSync(COUCHDB_SRC).filter((n) => n.endsWith('.erl'))) {
      assert.ok(fs.existsSync(path.join(ebin, f.replace(/\.erl$/, '.beam'))), `${f} compiled`);
    }
    assert.ok(fs.existsSync(path.join(rel, APP_DIR, 'priv', 'couch_pgp_nif.so')));
    if (fs.existsSync(path.join(COUCHDB_SRC, 'priv'))) {
      for (const f of fs.readdirSync(path.join(COUCHDB_SRC, 'priv'))) {
        assert.ok(fs.existsSync(path.join(rel, APP_DIR, 'priv', f)), `priv/${f}`);
      }
    }
    assert.equal(await fsp.readFile(path.join(rel, 'etc', 'default.d', 'couch_pgp.ini'), 'utf8'),
      await fsp.readFile(path.join(COUCHDB_SRC, 'couch_pgp.ini'), 'utf8'));
    assert.deepEqual(await fsp.readFile(path.join(rel, 'releases', 'sys.config.couch_pgp-backup')), origSys);
    const builtin = await builtinPlugins(rel);
    assert.equal(await sysConfigPlugins(rel), `${builtin.slice(0, -1)},${EPI_MODULE}]`);

    const first = await treeDigest(rel);
    const again = await installPlugin(rel);
    assert.match(again.stdout, /nothing changed/);
    assert.deepEqual(digestDiff(first, await treeDigest(rel)), [], 'second install changed the tree');
  });

  test('uninstall restores the release byte for byte', { skip }, async () => {
    const rel = await copyRelease(dir, 'undo');
    const pristine = await treeDigest(rel);
    await installPlugin(rel);
    assert.notDeepEqual(digestDiff(pristine, await treeDigest(rel)), []);
    await uninstallPlugin(rel);
    assert.deepEqual(digestDiff(pristine, await treeDigest(rel)), [], 'uninstall left differences');
    await uninstallPlugin(rel); // again: still a no-op
    assert.deepEqual(digestDiff(pristine, await treeDigest(rel)), []);
    // And against the original release itself (copyRelease leaves out data/).
    const r = await run('diff', ['-r', '--exclude=data', rel, couchdbHome()]);
    assert.equal(r.code, 0, r.stdout);
  });
});

describe('a node with the plugin registered', () => {
  let db;
  before(async () => { if (!skip) db = await CouchDB.start(); });
  after(async () => { if (db) await db.stop(); });

  test('boots and answers /_node/_local/_system', { skip }, async () => {
    const up = await db.json('/_up', { auth: null });
    assert.equal(up.status, 200);
    const sys = await db.json('/_node/_local/_system');
    assert.equal(sys.status, 200, sys.text);
    assert.equal(typeof sys.body.uptime, 'number');
    const anon = await db.json('/_node/_local/_system', { auth: null });
    assert.equal(anon.status, 401, 'the admin party is over');
  });

  test('couch_epi has couch_pgp_epi and its providers loaded from our lib dir', { skip }, async () => {
    const plugins = await db.rpc('application:get_env(couch_epi, plugins).');
    assert.match(plugins, new RegExp(`\\b${EPI_MODULE}\\b`));
    const which = erlPath(await db.rpc(`code:which(${EPI_MODULE}).`));
    assert.equal(which, path.join(db.home, APP_DIR, 'ebin', `${EPI_MODULE}.beam`));
    const providers = await db.rpc(
      `[{S, M, code:ensure_loaded(M), code:which(M)} || {S, M} <- ${EPI_MODULE}:providers()].`);
    assert.doesNotMatch(providers, /error|non_existing/, providers);
    assert.equal(erlPath(await db.rpc('code:priv_dir(couch_pgp).')), path.join(db.home, APP_DIR, 'priv'));
  });

  test('the default.d ini is loaded', { skip }, async () => {
    const ini = iniKeys(await fsp.readFile(path.join(COUCHDB_SRC, 'couch_pgp.ini'), 'utf8'));
    for (const [section, kv] of Object.entries(ini)) {
      const r = await db.json(`/_node/_local/_config/${encodeURIComponent(section)}`);
      assert.equal(r.status, 200, r.text);
      for (const [key, value] of Object.entries(kv)) {
        if (value === '') continue; // "key =" leaves the key unset in CouchDB
        if (db.iniOverrides[section]?.[key] !== undefined) continue;
        assert.equal(r.body[key], value, `[${section}] ${key}: ${r.text}`);
      }
    }
  });

  test('the log has no couch_epi / plugin errors, also after a restart', { skip }, async () => {
    const bad = /couch_epi|couch_pgp|undef|application_start_failure/;
    assert.deepEqual(db.logErrors().filter((l) => bad.test(l)), [], db.logTail());
    const mark = db.log().length;
    await db.restart();
    assert.equal((await db.json('/_node/_local/_system')).status, 200);
    assert.match(await db.rpc('application:get_env(couch_epi, plugins).'), new RegExp(EPI_MODULE));
    assert.deepEqual(db.logErrors(mark).filter((l) => bad.test(l)), [], db.logTail());
  });
});
