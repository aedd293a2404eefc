// The couch_pgp demo page: sign in with encrypted credentials, save a signed patient record
// to the browser's own PouchDB (IndexedDB), which syncs both ways with CouchDB through
// couch_pgp (pouchFetch: every request encrypted, the tunnel for the streaming ones); read
// it back from the server with its signature checked; keep editing offline, the records
// waiting on the device until the page is back online; show each exchange as it crossed the
// wire beside what the app made of it.
// It uses only the public client API and PouchDB, loaded from the plugin like any application would.
import { connect, verifyDoc, pouchFetch, KeyStore, Security, PinMismatchError, CouchPGPError } from './client.js';
import PouchDB from './pouchdb.js';

const DB = new URLSearchParams(location.search).get('db') || 'patients';
const PIN_KEY = 'couch_pgp.demo.pin';
const $ = (id) => document.getElementById(id);

let conn;
let signer; // the user's long-lived signing key (IndexedDB), registered with the server
const exchanges = [];
let local; // this browser's PouchDB (IndexedDB): every record, readable offline
let remote; // the CouchDB database, reached through couch_pgp
let sync = null; // the live two-way replication while online
let pending; // ids saved on this device and not yet pushed (kept across reloads)
let savedOffline = null; // the id the read-back panel says is waiting

function show(el, on = true) { el.hidden = !on; }

function alertBox(message, kind = 'error') {
  const a = $('alert');
  a.textContent = message;
  a.className = `alert ${kind}`;
  show(a, Boolean(message));
}

const groups = (fpr) => fpr.replace(/(.{4})/g, '$1 ').trim();

function explain(e) {
  if (e instanceof PinMismatchError) {
    return `Refused: the server's identity ${groups(e.actual)} does not match the pinned fingerprint. `
      + 'Someone may be impersonating the server. Nothing was sent.';
  }
  if (e instanceof CouchPGPError) return `${e.message} (${e.code})`;
  return `Unexpected error: ${e.message}`;
}

async function busy(button, fn) {
  button.disabled = true;
  try {
    alertBox('');
    await fn();
  } catch (e) {
    alertBox(explain(e));
    document.body.dataset.lastError = e.code || 'error';
  } finally {
    button.disabled = false;
  }
}

// ---- the wire panel ------------------------------------------------------------------

function excerpt(text, lines = 9) {
  const all = text.split('\n');
  return all.length > lines ? `${all.slice(0, lines).join('\n')}\n… (${text.length} bytes)` : text;
}

function pretty(body, type) {
  if (!/json/.test(type || 'application/json')) return body;
  try { return JSON.stringify(JSON.parse(body), null, 2); } catch { return body; }
}

function appView(x) {
  if (x.request.path.endsWith('/_pgp/tunnel')) {
    // Show the inner request and answer the tunnel carried.
    try {
      const inner = JSON.parse(x.request.body);
      const out = JSON.parse(x.response.body);
      return `${inner.method} ${inner.path}${inner.query ? `?${inner.query}` : ''}   (inside the tunnel)\n`
        + `${inner.body ? pretty(inner.body) : ''}\n\n→ ${out.status}\n`
        + `${excerpt(out.body_base64 ? `(${out.body.length} bytes, base64)` : pretty(out.body), 18)}`;
    } catch { /* fall through to the plain view */ }
  }
  const { request, response } = x;
  const req = { ...request };
  if (req.body) req.body = pretty(req.body, req.content_type);
  if (req.client_cert) req.client_cert = '(your public key)';
  const inner = pretty(response.body, response.content_type);
  return `${request.method} ${request.path}${request.query ? `?${request.query}` : ''}\n`
    + `${typeof req.body === 'string' ? req.body : ''}\n\n→ ${response.status}\n${excerpt(inner, 18)}`;
}

function addExchange(e) {
  exchanges.unshift(e);
  exchanges.length = Math.min(exchanges.length, 6);
  const box = $('exchanges');
  box.replaceChildren(...exchanges.map((x) => {
    const row = document.createElement('article');
    row.className = 'exchange';
    const wire = document.createElement('div');
    wire.className = 'wire';
    const path = new URL(x.wire.url).pathname;
    wire.innerHTML = '<h4>On the wire</h4>';
    const pre = document.createElement('pre');
    // Channel mode sends binary; the wire panel shows it as base64.
    const channel = x.wire.mode === 'channel' ? 'X-PGP-Channel: 1\n' : '';
    const shown = (t) => (channel ? t.replace(/(.{64})/g, '$1\n') : t);
    pre.textContent = `${x.wire.method} ${path}\nContent-Type: application/pgp-encrypted\n${channel}\n`
      + `${excerpt(shown(x.wire.request))}\n\n← ${x.wire.status}  X-PGP-Encrypted: 1 ${channel}\n`
      + `${excerpt(shown(x.wire.response), 5)}`;
    wire.append(pre);
    const app = document.createElement('div');
    app.className = 'app';
    app.innerHTML = '<h4>What the app sees</h4>';
    const pre2 = document.createElement('pre');
    pre2.textContent = appView(x);
    app.append(pre2);
    row.append(wire, app);
    return row;
  }));
}

// ---- sign in -------------------------------------------------------------------------

async function identity() {
  // Shown before sign-in: the fingerprint the user is about to pin (or has pinned).
  const r = await fetch('/_pgp', { headers: { Accept: 'application/json' } });
  const body = await r.json();
  $('server-fpr').textContent = body.fingerprint ? groups(body.fingerprint) : 'unavailable';
  $('pin').value = localStorage.getItem(PIN_KEY) || '';
}

async function signIn() {
  const typed = $('pin').value.trim();
  let firstUse = false;
  const pin = typed || (() => { firstUse = true; return true; });
  conn = await connect(location.origin, { pin, onExchange: addExchange });
  if (firstUse) localStorage.setItem(PIN_KEY, conn.identityFingerprint);
  const user = $('user').value;
  await conn.login(user, $('password').value);
  $('password').value = '';
  signer = await signingKey(user);
  $('session-user').textContent = user;
  $('session-fpr').textContent = groups(await conn.security.fingerprint());
  $('signing-fpr').textContent = groups(await signer.fingerprint());
  $('session-expires').textContent = new Date(conn.session.expires * 1000).toLocaleTimeString();
  $('pin').value = conn.identityFingerprint;
  show($('login-form'), false);
  show($('session-facts'));
  show($('record-card'));
  show($('list-card'));
  document.body.dataset.state = 'signed-in';
  if (firstUse) alertBox(`First visit: the server fingerprint ${groups(conn.identityFingerprint)} is now pinned.`, 'info');
  await openLocal(user);
}

/** The user's long-lived signing key: kept in IndexedDB, registered once with the server. */
async function signingKey(user) {
  const store = await KeyStore.open('couch_pgp_demo');
  const name = `signing:${user}`;
  let key = await store.load(name);
  if (!key) {
    key = await new Security({ userID: `${user} (couch_pgp demo)`, lifetime: 0 }).ready;
    await store.save(name, key);
  }
  store.close();
  const fpr = await key.fingerprint();
  if (!(await conn.registeredCertificates()).includes(fpr)) {
    await conn.registerCertificate(key);
    $('signing-state').textContent = 'newly registered';
  } else {
    $('signing-state').textContent = 'registered';
  }
  return key;
}

// ---- records -------------------------------------------------------------------------

function randomId() {
  const b = crypto.getRandomValues(new Uint8Array(12));
  return `patient-${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
}

async function save() {
  const doc = {
    _id: randomId(),
    type: 'patient',
    name: { family: $('family').value.trim(), given: $('given').value.trim() },
    birthDate: $('dob').value,
    mrn: $('mrn').value.trim(),
    allergies: $('allergies').value.trim() || 'none known',
    note: $('note').value,
    recordedBy: conn.session.user,
    recordedAt: new Date().toISOString(),
  };
  // Signed before it is stored: the signature travels with the document through sync, and the
  // signed-only database checks it when the record is pushed, whenever that is.
  await local.put(await signer.signDoc(doc));
  pending.add(doc._id);
  keepPending();
  $('record-form').reset();
  if (!navigator.onLine) {
    idleStatus();
    savedOffline = doc._id;
    $('readback-status').textContent = 'Saved on this device, signed. Offline: it is sent (encrypted) when the page is back online.';
    show($('readback-doc'), false);
    show($('readback'));
    document.body.dataset.saved = doc._id;
    await refresh();
    return;
  }
  // Online: push it now, then read it back from CouchDB and check the signature there.
  savedOffline = null;
  await local.replicate.to(remote, { doc_ids: [doc._id] });
  pushed([doc._id]);
  // Through the tunnel, so that the record's id is not in a path on the wire either.
  const r = await conn.request(`/${encodeURIComponent(DB)}/${encodeURIComponent(doc._id)}`, { tunnel: true });
  const back = await r.checked();
  const signers = await verifyDoc(back, [signer]);
  $('readback-status').textContent = `✔ Signature verified — signed by ${groups(signers[0])}`;
  const shown = { ...back, pgp_signatures: back.pgp_signatures.map((s) => ({ ...s, sig: `${s.sig.slice(0, 24)}…` })) };
  $('readback-doc').textContent = JSON.stringify(shown, null, 2);
  show($('readback-doc'));
  show($('readback'));
  document.body.dataset.saved = doc._id;
  await refresh();
}

/** The records in this browser's database, each with its signature checked and whether it
 *  has reached the server yet. */
async function refresh() {
  const body = await local.allDocs({ include_docs: true });
  const rows = await Promise.all(body.rows.filter((row) => row.doc && row.doc.type === 'patient').map(async ({ doc }) => {
    let sig;
    try {
      await verifyDoc(doc, [signer]);
      sig = ['ok', 'verified (your key)'];
    } catch (e) {
      sig = e.code === 'unknown_signer' ? ['other', 'signed by another key'] : ['bad', `invalid (${e.code})`];
    }
    const tr = document.createElement('tr');
    for (const text of [`${doc.name?.family}, ${doc.name?.given}`, doc.birthDate, doc.mrn]) {
      const td = document.createElement('td');
      td.textContent = text ?? '';
      tr.append(td);
    }
    const td = document.createElement('td');
    const tag = document.createElement('span');
    tag.className = `tag ${sig[0]}`;
    tag.textContent = sig[1];
    td.append(tag);
    if (pending.has(doc._id)) {
      const wait = document.createElement('span');
      wait.className = 'tag other';
      wait.textContent = 'on this device only';
      td.append(' ', wait);
    }
    tr.append(td);
    return tr;
  }));
  $('records').tBodies[0].replaceChildren(...rows);
  document.body.dataset.records = String(rows.length);
  document.body.dataset.pending = String(pending.size);
}

// ---- sync ----------------------------------------------------------------------------

const pendingKey = () => `couch_pgp.demo.pending.${conn.session.user}.${DB}`;
function keepPending() { localStorage.setItem(pendingKey(), JSON.stringify([...pending])); }
function pushed(ids) {
  for (const id of ids) pending.delete(id);
  keepPending();
  if (savedOffline && ids.includes(savedOffline)) {
    $('readback-status').textContent = '✔ Synced: sent encrypted, and accepted by CouchDB as a signed document.';
    savedOffline = null;
  }
}

/** What the sync is doing, on the page and as body[data-sync] (offline, syncing, synced, error). */
function syncStatus(state, text) {
  const el = $('sync-status');
  el.textContent = text;
  el.className = `tag sync ${state}`;
  document.body.dataset.sync = state;
}

function idleStatus() {
  const n = pending.size;
  if (!navigator.onLine) {
    syncStatus('offline', `Offline: ${n} record${n === 1 ? '' : 's'} waiting on this device`);
  } else {
    syncStatus(n ? 'syncing' : 'synced', n ? `${n} waiting to sync` : `Synced, ${new Date().toLocaleTimeString()}`);
  }
}

async function openLocal(user) {
  // One local database per user and remote database: what this browser keeps (in plaintext,
  // in IndexedDB: see the README on encryption at rest).
  local = new PouchDB(`couch_pgp_demo.${user}.${DB}`);
  remote = new PouchDB(`${location.origin}/${encodeURIComponent(DB)}`, { fetch: pouchFetch(conn), skip_setup: true });
  pending = new Set(JSON.parse(localStorage.getItem(pendingKey()) || '[]'));
  window.addEventListener('offline', stopSync);
  window.addEventListener('online', startSync);
  await refresh();
  startSync();
}

/** Live two-way sync while online. No retry of PouchDB's own (its back-off grows to minutes):
 *  the browser's online event restarts it, and so does the Sync button. */
function startSync() {
  if (sync || !local) return;
  if (!navigator.onLine) { idleStatus(); return; }
  syncStatus('syncing', 'Syncing…');
  const s = local.sync(remote, { live: true, retry: false, heartbeat: false, timeout: 10000 });
  sync = s;
  const current = () => sync === s;
  s.on('change', (info) => {
    if (info.direction === 'push') pushed(info.change.docs.map((d) => d._id));
    refresh().catch((e) => alertBox(explain(e)));
  });
  s.on('active', () => { if (current()) syncStatus('syncing', 'Syncing…'); });
  s.on('paused', (err) => { if (current() && !err) idleStatus(); });
  s.on('error', (e) => {
    if (!current()) return;
    sync = null;
    if (!navigator.onLine) { idleStatus(); return; }
    syncStatus('error', `Sync stopped: ${e.reason || e.message}`);
  });
  s.on('complete', () => { if (current()) { sync = null; idleStatus(); } });
}

function stopSync() {
  const s = sync;
  sync = null;
  if (s) s.cancel();
  idleStatus();
}

async function syncNow() {
  stopSync();
  startSync();
  await refresh();
}

// ---- wiring --------------------------------------------------------------------------

$('login-form').addEventListener('submit', (ev) => { ev.preventDefault(); busy($('login-button'), signIn); });
$('record-form').addEventListener('submit', (ev) => { ev.preventDefault(); busy($('save-button'), save); });
$('refresh-button').addEventListener('click', () => busy($('refresh-button'), syncNow));
identity().then(() => { document.body.dataset.state = 'ready'; }, (e) => alertBox(explain(e)));
