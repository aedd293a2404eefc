// The couch_pgp demo page: sign in with encrypted credentials, save a signed and encrypted
// patient record, read it back with its signature checked, list records through the tunnel,
// and show each exchange as it crossed the wire beside what the app made of it.
// It uses only the public client API, loaded from the plugin like any application would.
import { connect, verifyDoc, KeyStore, Security, PinMismatchError, CouchPGPError } from './client.js';

const DB = new URLSearchParams(location.search).get('db') || 'patients';
const PIN_KEY = 'couch_pgp.demo.pin';
const $ = (id) => document.getElementById(id);

let conn;
let signer; // the user's long-lived signing key (IndexedDB), registered with the server
const exchanges = [];

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
  await refresh();
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
  await conn.putDoc(DB, doc, { signWith: signer });
  const { doc: back, signers } = await conn.getDoc(DB, doc._id, { verifyWith: [signer] });
  $('readback-status').textContent = `✔ Signature verified — signed by ${groups(signers[0])}`;
  const shown = { ...back, pgp_signatures: back.pgp_signatures.map((s) => ({ ...s, sig: `${s.sig.slice(0, 24)}…` })) };
  $('readback-doc').textContent = JSON.stringify(shown, null, 2);
  show($('readback'));
  $('record-form').reset();
  document.body.dataset.saved = doc._id;
  await refresh();
}

async function refresh() {
  const r = await conn.request(`/${encodeURIComponent(DB)}/_all_docs?include_docs=true`);
  const body = await r.checked();
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
    tr.append(td);
    return tr;
  }));
  $('records').tBodies[0].replaceChildren(...rows);
  document.body.dataset.records = String(rows.length);
}

// ---- wiring --------------------------------------------------------------------------

$('login-form').addEventListener('submit', (ev) => { ev.preventDefault(); busy($('login-button'), signIn); });
$('record-form').addEventListener('submit', (ev) => { ev.preventDefault(); busy($('save-button'), save); });
$('refresh-button').addEventListener('click', () => busy($('refresh-button'), refresh));
identity().then(() => { document.body.dataset.state = 'ready'; }, (e) => alertBox(explain(e)));
