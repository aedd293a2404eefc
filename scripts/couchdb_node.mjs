#!/usr/bin/env node
// Starts ONE temporary CouchDB node through the integration harness
// (test/integration/couchdb.mjs), prints one JSON line on stdout, and keeps the node up until
// its stdin is closed (clean stop: the node's process groups are killed and its temp dir is
// removed) or it gets SIGTERM/SIGINT/SIGHUP (the harness's own emergency cleanup: same, at once).
//
//   node scripts/couchdb_node.mjs --mode plain|off|on [--ini section.key=value ...]
//        [--set section.key=value ...] [--save-log FILE]
//
//   plain  the release copy without the plugin (no [couch_pgp] section in local.ini at all)
//   off    plugin installed, [couch_pgp] enable = false
//   on     plugin installed, [couch_pgp] enable = true, no policies configured
//
// The line: {"mode","url","username","password","home","dir","couch_pgp"} where couch_pgp is
// the installed lib/couch_pgp-<vsn> directory name (null for plain). --save-log copies the
// node's log (CouchDB's stdout/stderr) to FILE on a clean stop. --ini goes into local.ini
// before the first start; --set is applied once the node is up, through the config API
// (PUT /_node/_local/_config/...), e.g. a policy that would refuse the harness's own
// plaintext start-up requests. Everything else (the
// harness's output, errors) goes to stderr. Exit status 1 if the node could not be started.
//
// Environment: COUCHDB_HOME (the release; only ever copied), COUCH_PGP_IT_PREBUILT (default 1
// here: install the already-built plugin with scripts/install.sh, no make), and
// COUCH_PGP_IT_TIMEOUT_MS (the harness's safety timeout; default here 3 hours).
// The node listens on 127.0.0.1 only (the harness binds chttpd, httpd and its private epmd
// to the loopback address).

import fs from 'node:fs';
import path from 'node:path';

process.env.COUCH_PGP_IT_PREBUILT ??= '1';
process.env.COUCH_PGP_IT_TIMEOUT_MS ??= String(3 * 60 * 60 * 1000);

function usage(msg) {
  if (msg) process.stderr.write(`couchdb_node: ${msg}\n`);
  process.stderr.write('usage: node scripts/couchdb_node.mjs --mode plain|off|on [--ini section.key=value ...] [--set section.key=value ...] [--save-log FILE]\n');
  process.exit(2);
}

let mode = null;
let saveLog = null;
const runtime = [];
const extra = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--mode') mode = argv[++i];
  else if (a === '--save-log') saveLog = argv[++i] || usage('--save-log needs a file');
  else if (a === '--ini' || a === '--set') {
    const m = /^([^.=]+)\.([^=]+)=(.*)$/s.exec(argv[++i] || '');
    if (!m) usage(`bad ${a} ${argv[i]}`);
    if (a === '--ini') (extra[m[1]] ??= {})[m[2]] = m[3];
    else runtime.push(m.slice(1, 4));
  } else usage(`unknown argument ${a}`);
}
if (!['plain', 'off', 'on'].includes(mode)) usage('--mode must be plain, off or on');

// Import after the environment is set: the harness reads its timeout at load time.
const { CouchDB, couchdbHome, mergeIni } = await import('../test/integration/couchdb.mjs');

const home = couchdbHome();
if (!fs.existsSync(path.join(home, 'bin', 'couchdb'))) {
  process.stderr.write(`couchdb_node: no CouchDB release at ${home} (set COUCHDB_HOME)\n`);
  process.exit(1);
}

const base = {
  // plain: drop what the harness would write into [couch_pgp] (null removes the key).
  plain: { couch_pgp: { enable: null, passphrase: null } },
  off: { couch_pgp: { enable: 'false' } },
  on: { couch_pgp: { enable: 'true' } },
}[mode];

let db;
try {
  db = await CouchDB.start({ install: mode !== 'plain', ini: mergeIni(base, extra) });
} catch (e) {
  process.stderr.write(`couchdb_node: could not start a ${mode} node: ${e.stack || e}\n`);
  process.exit(1);
}
if (db.installOutput) process.stderr.write(db.installOutput);

const lib = fs.readdirSync(path.join(db.home, 'lib')).find((d) => d.startsWith('couch_pgp-')) || null;
if ((mode === 'plain') !== (lib === null)) {
  process.stderr.write(`couchdb_node: ${mode} node has lib/${lib}: not what was asked for\n`);
  await db.stop();
  process.exit(1);
}

for (const [section, key, value] of runtime) {
  const r = await db.json(`/_node/_local/_config/${encodeURIComponent(section)}/${encodeURIComponent(key)}`,
    { method: 'PUT', body: JSON.stringify(value), headers: { 'Content-Type': 'application/json' } });
  if (r.status !== 200) {
    process.stderr.write(`couchdb_node: --set ${section}.${key}: ${r.status} ${r.text}\n`);
    await db.stop();
    process.exit(1);
  }
}

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  if (saveLog) {
    try { fs.copyFileSync(db.logFile, saveLog); } catch (e) { process.stderr.write(`couchdb_node: --save-log: ${e}\n`); }
  }
  try { await db.stop(); } catch (e) { process.stderr.write(`couchdb_node: stop: ${e}\n`); }
  process.exit(0);
}
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.on('error', stop);
process.stdin.resume(); // read (and discard) until EOF

process.stdout.write(`${JSON.stringify({
  mode, url: db.url, username: db.admin.username, password: db.admin.password,
  home: db.home, dir: db.dir, couch_pgp: lib,
})}\n`);
