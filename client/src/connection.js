// A connection to one CouchDB with the couch_pgp plugin: pin the server's identity, log in
// with encrypted credentials, then send requests whose bodies are encrypted to the session
// key and signed by ours, and read responses only after decrypting them and checking the
// session key's signature, the nonce and the status (README "HTTP protocol").
//
// Channel mode (the default when the server offers it): the session description carries two
// 32-byte keys, sealed to our key and signed by the session key; requests are then sealed
// under c2s and answers opened under s2c (src/channel.js) instead of public-key encrypted and
// signed per message. The envelopes and every check on them are the same in both modes.
import { canonicalJSON, canonicalizeText } from './canonical.js';
import { importChannelKey, openData, sealData } from './channel.js';
import { endorsedChain, verifiedRevocations } from './rotation.js';
import {
  CouchPGPError, IdentityRevokedError, LoginFailedError, NotLoggedInError, PinMismatchError, ProtocolError,
  RequestRefusedError, SessionExpiredError,
} from './errors.js';
import {
  decryptVerified, encryptSigned, fingerprintOf, normalizeFingerprint, readCert, signDetachedArmored,
  verifyDetached,
} from './pgp.js';
import { Security, privateKeyOf, verifySignedDoc } from './security.js';
import { STREAM_TYPE, openStream } from './stream.js';
import { fromBase64, fromBase64Strict, randomBase64, toBase64, toBytes } from './bytes.js';

const PGP_TYPE = 'application/pgp-encrypted';
const MODES = ['auto', 'channel', 'session'];
/** Sessions are renewed this many seconds before they expire. */
const RENEW_MARGIN = 10;
/** A new session re-reads GET /_pgp when the identity was read longer ago than this. */
const REPIN_AFTER_MS = 5000;

// Path segments after which CouchDB streams its response; the server refuses these in place
// (406) and they go through the tunnel (couch_pgp_chttpd:streams/1 has the same list).
const STREAMING = new Set(['_all_docs', '_changes', '_find', '_view', '_design_docs', '_local_docs',
  '_bulk_get', '_all_dbs', '_show', '_list', '_update', '_rewrite', '_search', '_nouveau',
  '_db_updates', '_scheduler']);

function segments(pathname) {
  return pathname.split('/').filter((s) => s !== '').map((s) => {
    try { return decodeURIComponent(s); } catch { return s; }
  });
}

/** Whether CouchDB would read this path's body or write its answer as a stream, or the path
 *  names an attachment (couch_pgp_chttpd:attachment_path/1). */
export function needsTunnel(pathname) {
  const p = segments(pathname);
  if (p.some((s) => STREAMING.has(s))) return true;
  if (p.length < 3 || p[0].startsWith('_')) return false;
  if (p[1] === '_design') return p.length >= 4 && !p[3].startsWith('_');
  return !p[1].startsWith('_');
}

/**
 * Connects to the CouchDB at `url`: fetches `GET /_pgp` and checks the identity against `pin`.
 * @param {string|URL} url  the CouchDB root, e.g. `https://ehr.example/couchdb` or `location.origin`
 * @param {object} opts
 * @param {string|((fingerprint: string) => boolean|Promise<boolean>)} opts.pin  the server's
 *   fingerprint, or a function deciding (e.g. trust on first use); required
 * @param {Security} [opts.security]  our key pair (default: a fresh per-session key)
 * @param {'auto'|'always'|'never'} [opts.tunnel]  'auto' (default): streaming endpoints and
 *   attachments go through /_pgp/tunnel; 'always': every request does, so that not even
 *   paths are on the wire
 * @param {'auto'|'channel'|'session'} [opts.mode]  'auto' (default): channel mode when the
 *   server lists it and the session carries channel keys, per-message mode otherwise;
 *   'session': always per-message (public-key encrypted and signed); 'channel': refuse a
 *   server or session without it
 * @param {typeof fetch} [opts.fetch]
 * @param {RequestCredentials} [opts.credentials]  default 'include' (the AuthSession cookie)
 * @param {Record<string,string>} [opts.headers]  sent on every request (e.g. Authorization)
 * @param {(e: object) => void} [opts.onExchange]  called with what went over the wire and what
 *   it meant, for each encrypted exchange (the demo shows these)
 * @param {(change: {from: string, to: string, chain: string[]}) => void|Promise<void>}
 *   [opts.onPinChange]  called when the server rotated its identity and the pinned key
 *   endorsed the new one (README "Keys over time"): the connection has moved its pin to
 *   `to`; persist it so that the next visit pins the new key
 */
export async function connect(url, opts = {}) {
  if (opts.pin === undefined || opts.pin === null || opts.pin === '') {
    throw new TypeError('connect needs a pin: the server fingerprint, or a function that decides');
  }
  const base = new URL(String(url), globalThis.location?.href);
  const conn = new Connection(base, opts);
  await conn.pin();
  return conn;
}

export class Connection {
  #base; #fetch; #opts; #identity; #security; #session; #renewing; #modes = []; #pinnedAt = 0;
  /** The AuthSession cookie, kept by hand where fetch has no cookie jar (Node); a browser
   *  never shows Set-Cookie to scripts, so there this stays empty and the browser keeps it. */
  #cookie;

  constructor(base, opts) {
    this.#base = base.href.replace(/\/+$/, '');
    this.#fetch = opts.fetch || globalThis.fetch.bind(globalThis);
    this.#opts = { tunnel: 'auto', credentials: 'include', headers: {}, ...opts };
    this.#opts = { mode: 'auto', ...this.#opts };
    if (!['auto', 'always', 'never'].includes(this.#opts.tunnel)) throw new TypeError('tunnel: auto, always or never');
    if (!MODES.includes(this.#opts.mode)) throw new TypeError('mode: auto, channel or session');
    this.#security = opts.security || new Security();
    /** The pinned server identity fingerprint. */
    this.identityFingerprint = undefined;
  }

  /** The CouchDB root this connection talks to (no trailing slash). */
  get baseURL() { return this.#base; }

  /** Our Security (its key signs our requests and is the one responses are encrypted to). */
  get security() { return this.#security; }

  /** The logged-in user, session expiry (unix seconds), session key fingerprint and the mode
   *  requests travel in ('channel' or 'session'), or undefined. */
  get session() {
    return this.#session && { user: this.#session.user, expires: this.#session.expires,
      fingerprint: this.#session.fingerprint, mode: this.#session.channel ? 'channel' : 'session' };
  }

  /** Fetches the server identity and checks it against the pin. Called by connect(). */
  async pin() {
    const r = await this.#send(`${this.#base}/_pgp`, {
      headers: { Accept: 'application/json', ...this.#opts.headers }, credentials: this.#opts.credentials,
    });
    const body = await readJSON(r);
    if (r.status === 503) throw new CouchPGPError('unavailable', 'the server has no OpenPGP key loaded');
    if (r.status !== 200 || typeof body.cert !== 'string') {
      throw new ProtocolError(`GET /_pgp answered ${r.status}: is couch_pgp installed?`);
    }
    const identity = await readCert(body.cert);
    const actual = fingerprintOf(identity);
    if (normalizeFingerprint(body.fingerprint) !== actual) {
      throw new ProtocolError('GET /_pgp: the fingerprint does not match the certificate');
    }
    // A revoked key is refused at once: the current one, the pinned one, or one on the way.
    const revoked = await verifiedRevocations(body);
    if (revoked.has(actual)) throw new IdentityRevokedError(actual, revoked.get(actual));
    const { pin } = this.#opts;
    if (typeof pin === 'function') {
      // Asked once per key: a re-read before a new session does not ask again, and a key
      // the one it accepted endorsed is followed as for a fingerprint pin.
      const known = this.identityFingerprint;
      if (actual !== known) {
        const chain = known && await endorsedChain(body, known, actual, revoked);
        if (chain) {
          await this.#opts.onPinChange?.({ from: known, to: actual, chain });
        } else if (await pin(actual) !== true) {
          throw new PinMismatchError('(refused by the application)', actual);
        }
      }
    } else if (normalizeFingerprint(pin) !== actual) {
      const pinned = normalizeFingerprint(pin);
      if (revoked.has(pinned)) throw new IdentityRevokedError(pinned, revoked.get(pinned));
      const chain = await endorsedChain(body, pinned, actual, revoked);
      if (!chain) throw new PinMismatchError(pinned, actual);
      // The pinned key vouched for its successor: follow it without asking anyone, and
      // tell the application so that it keeps the new pin.
      this.#opts = { ...this.#opts, pin: actual };
      await this.#opts.onPinChange?.({ from: pinned, to: actual, chain });
    }
    const modes = Array.isArray(body.modes) ? body.modes : [];
    if (this.#opts.mode === 'channel' && !modes.includes('channel')) {
      throw new ProtocolError('the server does not offer channel mode (GET /_pgp modes)');
    }
    this.#modes = modes;
    this.#identity = identity;
    this.identityFingerprint = actual;
    this.#pinnedAt = Date.now();
    return actual;
  }

  /**
   * Logs in with credentials encrypted to the pinned identity key and signed by our key; the
   * answer is a couch_pgp session for our key. Sets the AuthSession cookie as CouchDB does.
   * @returns {Promise<{name: string, roles: string[]}>}
   */
  async login(name, password) {
    await this.#freshIdentity();
    const key = await privateKeyOf(this.#security);
    const env = envelope('POST', this.#path('/_session'), '', 'application/json',
      JSON.stringify({ name, password }));
    env.client_cert = await this.#security.getPublicKey();
    const { env: resp } = await this.#exchange(`${this.#base}/_session`, env, { cert: this.#identity }, key,
      {}, { ...env, body: JSON.stringify({ name, password: '(hidden)' }) });
    const body = parseJSON(resp.body);
    if (resp.status === 401) throw new LoginFailedError(body.reason || 'unauthorized');
    refuseErrors(resp.status, body);
    if (resp.status !== 200 || !body.pgp_session) throw new ProtocolError(`login answered ${resp.status} without a session`);
    await this.#adoptSession(body.pgp_session);
    return { name: body.name, roles: body.roles };
  }

  /** Starts a couch_pgp session for our key when already logged in some other way (cookie,
   *  or an Authorization header in opts.headers). */
  async startSession() {
    await this.#freshIdentity();
    const r = await this.#send(`${this.#base}/_pgp/session`, {
      method: 'POST', credentials: this.#opts.credentials,
      headers: { ...this.#opts.headers, 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ client_cert: await this.#security.getPublicKey() }),
    });
    const body = await readJSON(r);
    if (r.status === 401) throw new NotLoggedInError(`cannot start a session: ${body.reason || 'not logged in'}`);
    refuseErrors(r.status, body);
    if (r.status !== 201) throw new ProtocolError(`POST /_pgp/session answered ${r.status}`);
    await this.#adoptSession(body);
    return this.session;
  }

  /**
   * A fetch-like encrypted request. `body`: a string, a JSON value (sent as JSON), or bytes.
   * Resolves to a PGPResponse for any HTTP status CouchDB gives; throws the typed errors when
   * couch_pgp itself refuses or something about the answer does not check out.
   * @param {string} path  absolute path with optional query, e.g. `/db/doc?rev=1-x`
   * @param {{method?: string, body?: unknown, headers?: Record<string,string>,
   *          tunnel?: boolean, stream?: boolean}} [init]  `stream`: a tunnelled answer comes
   *   as sealed frames, checked one by one as they arrive (`response.body` is a ReadableStream
   *   that errors if the stream is cut short or altered); channel mode only, a per-message
   *   session gets the buffered answer
   */
  async request(path, init = {}) {
    if (typeof path !== 'string' || !path.startsWith('/')) throw new TypeError('path must start with /');
    const method = (init.method || 'GET').toUpperCase();
    const u = new URL(this.#base + path);
    const pathname = u.pathname;
    const query = u.search.replace(/^\?/, '');
    const { contentType, text, bytes } = encodeBody(init.body, init.headers);
    const useTunnel = init.tunnel ?? (this.#opts.tunnel === 'always' ||
      (this.#opts.tunnel === 'auto' && (needsTunnel(pathname) || bytes !== undefined ||
        /^multipart\//i.test(contentType))));
    await this.#ensureSession();
    // This request's session, kept even if a renewal replaces it while the request runs.
    const session = this.#session;
    const key = await privateKeyOf(this.#security);
    const headers = { 'X-PGP-Session': session.token };
    if (!useTunnel) {
      if (bytes !== undefined) throw new TypeError('binary bodies go through the tunnel (tunnel: true)');
      const env = envelope(method, pathname, query, contentType, text);
      const { env: resp, wire } = await this.#exchange(u.href, env, session, key,
        { ...init.headers, ...headers });
      refuseErrors(resp.status, parseJSONMaybe(resp.body, resp.content_type));
      return new PGPResponse(resp.status, wire.headers, resp.content_type, toBytes(resp.body), false);
    }
    const innerHeaders = { Accept: 'application/json', ...init.headers, 'Content-Type': contentType };
    const inner = {
      method, path: pathname, query, headers: innerHeaders,
      body: bytes !== undefined ? toBase64(bytes) : text, body_base64: bytes !== undefined,
    };
    const stream = init.stream === true && session.channel !== undefined;
    if (stream) inner.stream = true;
    const tunnelPath = this.#path('/_pgp/tunnel');
    const env = envelope('POST', tunnelPath, '', 'application/json', JSON.stringify(inner));
    const { env: resp, streamed } = await this.#exchange(`${this.#base}/_pgp/tunnel`, env, session, key, headers,
      env, { stream });
    if (streamed) {
      const opened = await openStream(streamed.body, session.channel.s2c, env.nonce);
      const h = new Headers(opened.headers);
      return new PGPResponse(opened.status, h, h.get('content-type') || '', undefined, true, opened.body);
    }
    const body = parseJSON(resp.body);
    refuseErrors(resp.status, body);
    if (resp.status !== 200 || typeof body.status !== 'number') {
      throw new ProtocolError(`the tunnel answered ${resp.status}`);
    }
    const content = body.body_base64 ? fromBase64(body.body) : toBytes(body.body);
    const h = new Headers(body.headers || {});
    return new PGPResponse(body.status, h, h.get('content-type') || '', content, true);
  }

  /**
   * Saves a document, signed by `signWith` (a Security, e.g. a registered long-lived key) if
   * given. Resolves to CouchDB's answer ({ok, id, rev}); throws CouchError otherwise.
   */
  async putDoc(db, doc, { signWith } = {}) {
    if (typeof doc._id !== 'string') throw new TypeError('putDoc needs doc._id');
    const body = signWith ? await signWith.signDoc(doc) : doc;
    const r = await this.request(`/${encodeURIComponent(db)}/${encodeURIComponent(doc._id)}`,
      { method: 'PUT', body });
    return r.checked();
  }

  /**
   * Reads a document; with `verifyWith` (certificates, armored or Security objects) its
   * signatures are checked (BadSignatureError otherwise) and the signers are returned.
   * @returns {Promise<{doc: object, signers?: string[]}>}
   */
  async getDoc(db, id, { verifyWith, query = '' } = {}) {
    const r = await this.request(`/${encodeURIComponent(db)}/${encodeURIComponent(id)}${query ? `?${query}` : ''}`);
    const doc = await r.checked();
    if (!verifyWith) return { doc };
    return { doc, signers: await verifySignedDoc(doc, verifyWith) };
  }

  /** Registers `security`'s certificate as one of the user's long-lived keys
   *  (POST /_pgp/certs with proof of possession), so signed-only databases accept its
   *  signatures. */
  async registerCertificate(security) {
    await this.#ensureSession();
    const fingerprint = await security.fingerprint();
    const proof = canonicalJSON({ action: 'register', fingerprint, user: this.#session.user });
    const signature = await signDetachedArmored(proof, await privateKeyOf(security));
    const r = await this.request('/_pgp/certs', {
      method: 'POST', body: { cert: await security.getPublicKey(), signature },
    });
    return r.checked();
  }

  /** Removes one of the user's registered certificates (a lost or compromised key):
   *  signed-only databases refuse new writes signed by it. Resolves to the remaining
   *  fingerprints; CouchError `not_found` if it was not registered. */
  async unregisterCertificate(fingerprint) {
    const fpr = normalizeFingerprint(fingerprint);
    const r = await this.request(`/_pgp/certs/${encodeURIComponent(fpr)}`, { method: 'DELETE' });
    return (await r.checked()).fingerprints;
  }

  /** The fingerprints of the user's registered certificates. */
  async registeredCertificates() {
    return (await (await this.request('/_pgp/certs')).checked()).fingerprints;
  }

  /** Ends the CouchDB login (DELETE /_session, encrypted) and forgets the session. */
  async logout() {
    if (this.#session) {
      try {
        await this.request('/_session', { method: 'DELETE' });
      } finally {
        this.#session = undefined;
        this.#cookie = undefined;
      }
    }
  }

  // ---------------------------------------------------------------- internals

  /** fetch, plus the AuthSession cookie where the runtime does not keep it (Node's fetch). */
  async #send(url, init) {
    const headers = this.#cookie ? { ...init.headers, Cookie: this.#cookie } : init.headers;
    const r = await this.#fetch(url, { ...init, headers });
    for (const c of r.headers.getSetCookie?.() ?? []) {
      const m = /^AuthSession=([^;]*)/.exec(c);
      if (m) this.#cookie = m[1] ? `AuthSession=${m[1]}` : undefined;
    }
    return r;
  }

  /** Fetches GET /_pgp again before a new session unless it was just fetched: the server may
   *  have rotated its identity (followed when endorsed) or published a revocation (refused)
   *  since. One small GET per session. */
  async #freshIdentity() {
    if (Date.now() - this.#pinnedAt > REPIN_AFTER_MS) await this.pin();
  }

  /** The path as the server sees it on the request line (base path included). */
  #path(p) { return new URL(this.#base + p).pathname; }

  /** Seals `env` for `peer` (a session: its channel if it has one, else its certificate; or
   *  {cert: identity} for a login), sends it, and opens the answer (checked signer or channel
   *  key, nonce and status). onExchange sees `shown` (the envelope, a login's password hidden). */
  async #exchange(url, env, peer, key, headers, shown = env, { stream = false } = {}) {
    const { channel } = peer;
    const message = channel
      ? await sealData(channel.c2s, new TextEncoder().encode(JSON.stringify(env)))
      : await encryptSigned(JSON.stringify(env), [peer.cert], key);
    const outer = { ...headers };
    for (const k of Object.keys(outer)) if (/^(content-type|x-pgp-channel)$/i.test(k)) delete outer[k];
    if (channel) outer['X-PGP-Channel'] = '1';
    const r = await this.#send(url, {
      method: 'POST', credentials: this.#opts.credentials, body: message,
      // In the channel every answer may come as the binary message itself (no base64 in JSON).
      headers: { ...this.#opts.headers, ...outer, 'Content-Type': PGP_TYPE,
        Accept: channel ? `${PGP_TYPE}, application/json` : 'application/json' },
    });
    // A streamed answer is read frame by frame by the caller (openStream checks it); only
    // asked for in channel mode, and only ever accepted when asked for.
    if (stream && channel && r.status === 200 && r.headers.get('x-pgp-encrypted') === '1'
        && r.headers.get('x-pgp-channel') === '1'
        && (r.headers.get('content-type') || '').toLowerCase().startsWith(STREAM_TYPE)) {
      if (this.#opts.onExchange) {
        const wire = { method: 'POST', url, status: r.status, headers: r.headers, mode: 'channel',
          request: toBase64(message), response: '(sealed stream)' };
        this.#opts.onExchange({ wire, request: shown, response: { status: r.status, streamed: true,
          content_type: 'text/plain', body: '(a sealed stream: its frames are opened as they arrive)' } });
      }
      return { streamed: r };
    }
    const wireBytes = new Uint8Array(await r.arrayBuffer());
    const wireText = new TextDecoder().decode(wireBytes);
    const contentType = r.headers.get('content-type') || '';
    const raw = contentType.toLowerCase().startsWith(PGP_TYPE);
    if (r.headers.get('x-pgp-encrypted') !== '1') {
      // Never data: a plaintext answer is at most the reason the server could not encrypt
      // (it did not know our session yet).
      throw plaintextRefusal(r.status, parseJSONMaybe(wireText, contentType));
    }
    let plaintext;
    if (channel) {
      // Sealed under s2c, the server's direction, and nothing else: not armored, not per
      // message, never tried under c2s.
      if (r.headers.get('x-pgp-channel') !== '1') {
        throw new ProtocolError('the answer to a channel request is not a channel message');
      }
      let sealed = wireBytes;
      if (!raw) {
        try {
          sealed = fromBase64Strict(parseJSON(wireText).pgp);
        } catch (e) {
          throw e instanceof ProtocolError ? e : new ProtocolError('the channel answer has no base64 message');
        }
      }
      const opened = await openData(channel.s2c, sealed);
      try {
        plaintext = new TextDecoder('utf-8', { fatal: true }).decode(opened);
      } catch {
        throw new ProtocolError('the channel answer is not UTF-8 text');
      }
    } else {
      const armored = raw ? wireText : parseJSON(wireText).pgp;
      if (typeof armored !== 'string') throw new ProtocolError('the encrypted response has no message');
      plaintext = (await decryptVerified(armored, key, [peer.cert])).text;
    }
    const resp = parseJSON(plaintext);
    if (!resp || resp.v !== 1 || typeof resp.body !== 'string') throw new ProtocolError('not a response envelope');
    if (resp.status !== r.status) throw new ProtocolError('the response envelope status differs from the HTTP status');
    if (resp.nonce !== env.nonce) {
      // A refusal made before the server read the body (a streaming endpoint sent in place)
      // has no nonce to echo. It is signed by the session key, but it could be an old one
      // replayed, so it only ever becomes an error, never an answer.
      if (resp.nonce === '' && resp.status >= 400) {
        throw plaintextRefusal(resp.status, parseJSONMaybe(resp.body, resp.content_type));
      }
      throw new ProtocolError('the response answers another request (nonce)');
    }
    if (this.#opts.onExchange) {
      const wire = { method: 'POST', url, status: r.status, headers: r.headers, mode: channel ? 'channel' : 'session',
        request: channel ? toBase64(message) : message, response: channel && raw ? toBase64(wireBytes) : wireText };
      this.#opts.onExchange({ wire, request: shown, response: resp });
    }
    return { env: resp, wire: { headers: r.headers } };
  }

  /** Checks a session description against the pinned identity and our key, then keeps it. */
  async #adoptSession(desc) {
    if (!desc || typeof desc.statement !== 'string' || typeof desc.token !== 'string') {
      throw new ProtocolError('malformed session description');
    }
    await verifyDetached(new TextEncoder().encode(desc.statement), desc.statement_signature, this.#identity)
      .catch((e) => { throw new ProtocolError(`the session statement is not signed by the pinned identity (${e.message})`); });
    const st = parseJSON(desc.statement);
    const cert = await readCert(desc.session_cert);
    const checks = [
      [st.v === 1, 'statement version'],
      [st.identity_fingerprint === this.identityFingerprint, 'statement names another identity'],
      [st.session_fingerprint === fingerprintOf(cert), 'session certificate is not the one the identity vouched for'],
      [st.client_fingerprint === await this.#security.fingerprint(), 'session is for another client key'],
      [Number.isInteger(st.expires) && st.expires * 1000 > Date.now(), 'session already expired'],
    ];
    for (const [ok, why] of checks) if (!ok) throw new ProtocolError(why);
    const channel = await this.#openChannel(desc.channel, cert, st);
    // The server ends a session when our certificate expires; a session that already ends
    // there cannot be extended by renewing it, so it is used until it expires.
    const keyExpires = await (await privateKeyOf(this.#security)).getExpirationTime();
    const endsWithKey = keyExpires instanceof Date && st.expires * 1000 >= keyExpires.getTime() - 1000;
    this.#session = { token: desc.token, cert, user: st.user, expires: st.expires,
      fingerprint: st.session_fingerprint, channel, endsWithKey };
  }

  /**
   * The session's channel keys, when this connection uses channel mode: `sealed` must be a
   * message to our key signed by the session key (the one the identity vouched for), naming
   * our key and the session key. The keys become non-extractable WebCrypto keys; the bytes
   * are zeroed (the decrypted JSON text itself cannot be, and is dropped).
   * @returns {Promise<{c2s: CryptoKey, s2c: CryptoKey} | undefined>}
   */
  async #openChannel(sealed, cert, statement) {
    const { mode } = this.#opts;
    if (mode === 'session' || !this.#modes.includes('channel')) return undefined;
    if (sealed === undefined && mode === 'auto') return undefined;
    if (typeof sealed !== 'string') throw new ProtocolError('the session carries no channel keys');
    let text;
    try {
      text = (await decryptVerified(sealed, await privateKeyOf(this.#security), [cert])).text;
    } catch (e) {
      throw new ProtocolError(`the channel keys are not sealed to us by the session key (${e.message})`);
    }
    let ch;
    try {
      ch = JSON.parse(canonicalizeText(text)); // canonicalizeText refuses duplicate members
    } catch {
      throw new ProtocolError('the channel description is not JSON');
    }
    if (!ch || typeof ch !== 'object' || Array.isArray(ch)) throw new ProtocolError('the channel description is not an object');
    const checks = [
      [ch.v === 1, 'channel description version'],
      [ch.client_fingerprint === await this.#security.fingerprint(), 'the channel is for another client key'],
      [ch.session_fingerprint === fingerprintOf(cert) && ch.session_fingerprint === statement.session_fingerprint,
        'the channel names another session key'],
      [typeof ch.c2s === 'string' && typeof ch.s2c === 'string' && ch.c2s !== ch.s2c, 'channel keys'],
    ];
    for (const [ok, why] of checks) if (!ok) throw new ProtocolError(why);
    const keys = {};
    for (const dir of ['c2s', 's2c']) {
      let bytes;
      try {
        bytes = fromBase64Strict(ch[dir]);
      } catch {
        throw new ProtocolError(`channel key ${dir} is not base64`);
      }
      if (bytes.length !== 32) throw new ProtocolError(`channel key ${dir} is not 32 bytes`);
      keys[dir] = await importChannelKey(bytes);
      bytes.fill(0);
    }
    return Object.freeze(keys);
  }

  async #ensureSession() {
    if (!this.#session) throw new NotLoggedInError();
    const now = Date.now() / 1000;
    const { expires, endsWithKey } = this.#session;
    if (now < expires - RENEW_MARGIN || (endsWithKey && now < expires)) return;
    this.#renewing ||= this.startSession().finally(() => { this.#renewing = undefined; });
    try {
      await this.#renewing;
    } catch (e) {
      this.#session = undefined;
      throw e instanceof NotLoggedInError ? new SessionExpiredError() : e;
    }
  }
}

/** A decrypted, verified answer, shaped like fetch's Response. A streamed one (`streamed`)
 *  is read once, from `body` or with bytes()/text()/json(), which wait for the final frame. */
export class PGPResponse {
  #bytes; #stream;

  constructor(status, headers, contentType, bytes, tunnelled, stream) {
    this.status = status;
    this.ok = status >= 200 && status < 300;
    this.headers = headers;
    this.contentType = contentType;
    this.tunnelled = tunnelled;
    this.encrypted = true;
    this.streamed = stream !== undefined;
    this.#bytes = bytes;
    this.#stream = stream;
  }

  /** The body as a ReadableStream of checked octets. */
  get body() {
    if (this.#stream) return this.#stream;
    const bytes = this.#bytes;
    return new ReadableStream({ start(c) { if (bytes.length) c.enqueue(bytes); c.close(); } });
  }

  async bytes() {
    if (this.#bytes === undefined) {
      const parts = [];
      let n = 0;
      // getReader, not for-await: not every browser iterates a ReadableStream.
      const reader = this.#stream.getReader();
      for (let r = await reader.read(); !r.done; r = await reader.read()) { parts.push(r.value); n += r.value.length; }
      const all = new Uint8Array(n);
      let at = 0;
      for (const p of parts) { all.set(p, at); at += p.length; }
      this.#bytes = all;
    }
    return this.#bytes;
  }
  async text() { return new TextDecoder().decode(await this.bytes()); }
  async json() { return JSON.parse(await this.text()); }

  /** The JSON body when ok; otherwise throws CouchError with CouchDB's error and reason. */
  async checked() {
    const body = await this.json();
    if (!this.ok) throw new CouchError(this.status, body);
    return body;
  }
}

/** CouchDB answered an error of its own (not found, conflict, forbidden ...). */
export class CouchError extends CouchPGPError {
  constructor(status, body) {
    super(body?.error || 'http_error', `CouchDB ${status} ${body?.error}: ${body?.reason}`,
      { status, error: body?.error, reason: body?.reason });
  }
}

function envelope(method, path, query, contentType, body) {
  return { v: 1, method, path, query, ts: Date.now(), nonce: randomBase64(16), content_type: contentType, body };
}

function encodeBody(body, headers = {}) {
  const given = Object.entries(headers).find(([k]) => /^content-type$/i.test(k))?.[1];
  if (body === undefined || body === null) return { contentType: given || 'application/json', text: '' };
  if (typeof body === 'string') return { contentType: given || 'application/json', text: body };
  if (body instanceof Uint8Array || body instanceof ArrayBuffer || ArrayBuffer.isView(body)) {
    return { contentType: given || 'application/octet-stream', bytes: toBytes(body) };
  }
  return { contentType: given || 'application/json', text: JSON.stringify(body) };
}

/**
 * The error class for a refusal the server answered with `status` and CouchDB-style `error`,
 * or undefined for CouchDB's own answers (404, 409, forbidden ...), which reach the
 * application as responses. Matches on the `error` field, never on the reason's wording;
 * test/vectors/errors.json lists every refusal and its class.
 * @param {number} status  @param {unknown} error
 */
export function refusalClass(status, error) {
  if (status < 400 || typeof error !== 'string') return undefined;
  if (error === 'pgp_session_expired' || error === 'pgp_session_revoked') return SessionExpiredError;
  // Every encrypted request in a session is checked against the login by couch_pgp first,
  // so a 401 to one is couch_pgp's (a login's own 401 is handled by login()).
  if (status === 401 && (error === 'unauthorized' || error.startsWith('pgp_'))) return NotLoggedInError;
  if (error.startsWith('pgp_')) return RequestRefusedError;
  if ((status === 406 && error === 'not_acceptable') || (status === 413 && error === 'too_large')) {
    return RequestRefusedError;
  }
  return undefined;
}

// couch_pgp's own refusals are errors; CouchDB's (404, 409, forbidden by validation or a
// signed-only database) are answers the application reads from the response.
function refuseErrors(status, body) {
  if (!body || typeof body !== 'object') return;
  const { error, reason = '' } = body;
  const Refusal = refusalClass(status, error);
  if (error === 'pgp_session_revoked') {
    throw new SessionExpiredError('the operator invalidated the couch_pgp session (token secret rotated); log in again');
  }
  if (Refusal === SessionExpiredError) throw new SessionExpiredError();
  if (Refusal === NotLoggedInError) throw new NotLoggedInError(reason || 'unauthorized');
  if (Refusal) throw new RequestRefusedError(status, error, reason);
}

// An answer that is not data: plaintext, or encrypted without our nonce. At most it says
// why the request was refused.
function plaintextRefusal(status, body) {
  if (body && typeof body === 'object' && status >= 400) {
    try { refuseErrors(status, body); } catch (e) { return e; }
    if (status === 401) return new NotLoggedInError(body.reason || 'unauthorized');
  }
  return new ProtocolError(`unverifiable answer (${status}) to an encrypted request`, { status });
}

async function readJSON(r) {
  const text = await r.text();
  return parseJSONMaybe(text, 'application/json') ?? {};
}

function parseJSON(text) {
  try {
    return JSON.parse(text);
  } catch {
    throw new ProtocolError('expected JSON in the answer');
  }
}

function parseJSONMaybe(text, contentType) {
  if (!/json|text\/plain/.test(contentType)) return undefined;
  try { return JSON.parse(text); } catch { return undefined; }
}
