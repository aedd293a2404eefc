// A stand-in for the couch_pgp plugin's HTTP protocol, written on OpenPGP.js from the README,
// as a `fetch` function: it lets the node tests drive the client through the protocol's
// failure cases (a substituted session key, a wrong nonce, a plaintext answer ...) that a
// well-behaved server never produces. The real server is tested in test/integration.
//
// Channel mode is spoken with OpenPGP.js too (session keys given directly, no recipients), so
// every channel exchange in the connection tests is also an interop check of src/channel.js.
import * as openpgp from 'openpgp';

const gen = async (name) => (await openpgp.generateKey({
  type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name }], format: 'object',
})).privateKey;

const fpr = (k) => k.getFingerprint().toUpperCase();
// RFC 8785 for the flat objects used here: members sorted, no whitespace.
const canonical = (o) => `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${JSON.stringify(o[k])}`).join(',')}}`;
const b64 = (bytes) => Buffer.from(bytes).toString('base64');
const channelKey = (data) => ({ data, algorithm: 'aes256', aeadAlgorithm: 'gcm' });

export class FakeServer {
  /** `tamper`: hooks that corrupt what the server sends, by name (see below). */
  tamper = {};
  requests = []; // decrypted request envelopes, in order
  sessionsIssued = 0;
  password = 'pw';
  lifetime = 600;
  /** GET /_pgp lists "channel" and session descriptions carry channel keys. */
  offerChannel = true;
  channels = new Map(); // token -> {c2s, s2c} (raw bytes)
  /** GET /_pgp "previous" and "revocations" (README "Keys over time"). */
  previous = [];
  revocations = [];
  retired = new Map(); // fingerprint -> the earlier identity key

  /** A new identity, endorsed by the current one until now + overlap (as the server does);
   *  `signer` replaces the old key as the endorsement's signer (a forgery). */
  async rotate(overlap = 3600, { signer, until } = {}) {
    const old = this.identity;
    this.identity = await gen('server identity');
    const now = Math.floor(Date.now() / 1000);
    const statement = canonical({ action: 'rotate', new_fingerprint: fpr(this.identity),
      old_fingerprint: fpr(old), rotated_at: now, until: until ?? now + overlap, v: 1 });
    const endorsement_signature = await openpgp.sign({
      message: await openpgp.createMessage({ binary: new TextEncoder().encode(statement) }),
      signingKeys: signer || old, detached: true, format: 'armored' });
    this.previous.unshift({ fingerprint: fpr(old), cert: old.toPublic().armor(), until: until ?? now + overlap,
      endorsement: statement, endorsement_signature });
    this.retired.set(fpr(old), old);
  }

  /** Publishes a revocation of an identity key (current or earlier) made by that key. */
  async revoke(fingerprint, reason = 'compromised') {
    const key = fingerprint === this.fingerprint ? this.identity : this.retired.get(fingerprint);
    const flag = { compromised: openpgp.enums.reasonForRevocation.keyCompromised,
      retired: openpgp.enums.reasonForRevocation.keyRetired }[reason];
    const { publicKey } = await openpgp.revokeKey({ key, reasonForRevocation: { flag, string: 'test' }, format: 'armored' });
    this.revocations.push({ fingerprint, reason, message: 'test', revoked_at: Math.floor(Date.now() / 1000),
      revocation: publicKey });
  }

  static async create() {
    const s = new FakeServer();
    s.identity = await gen('server identity');
    s.sessionKey = await gen('session');
    s.stranger = await gen('stranger');
    return s;
  }

  get fingerprint() { return fpr(this.identity); }

  fetch = async (url, init = {}) => {
    const u = new URL(url);
    const headers = new Headers(init.headers);
    if (u.pathname === '/_pgp') {
      const cert = (this.tamper.identityCert || this.identity).toPublic().armor();
      return json(200, { couch_pgp: '0.1.0', fingerprint: this.fingerprint, cert, encryption: ['seipdv1'],
        modes: this.offerChannel ? ['session', 'channel'] : ['session'],
        previous: this.previous, revocations: this.revocations });
    }
    if (u.pathname === '/_pgp/session' && init.method === 'POST') {
      if (!this.loggedIn) return json(401, { error: 'unauthorized', reason: 'couch_pgp: log in first.' });
      const { client_cert: c } = JSON.parse(init.body);
      this.client = await openpgp.readKey({ armoredKey: c });
      return json(201, await this.describe());
    }
    if (headers.get('content-type') !== 'application/pgp-encrypted') return json(400, { error: 'bad_request' });
    if (headers.get('x-pgp-channel') === '1') return this.channelRequest(u, init, headers);
    const login = u.pathname === '/_session' && !headers.get('x-pgp-session');
    const key = login ? this.identity : this.sessionKey;
    const msg = await openpgp.readMessage({ armoredMessage: init.body });
    const { data } = await openpgp.decrypt({ message: msg, decryptionKeys: key });
    const env = JSON.parse(data);
    if (login) this.client = await openpgp.readKey({ armoredKey: env.client_cert });
    const check = await openpgp.decrypt({
      message: await openpgp.readMessage({ armoredMessage: init.body }), decryptionKeys: key,
      verificationKeys: this.client, expectSigned: true,
    });
    if (check.data !== data) throw new Error('fake server: signature check');
    this.requests.push({ env, outerMethod: init.method, url: u, headers });
    if (!login && headers.get('x-pgp-session') !== this.token) {
      return json(401, { error: 'pgp_session_expired', reason: 'couch_pgp: the session has expired; start a new one.' });
    }
    const [status, body] = await this.route(env, login);
    return this.answer(env, status, body, key);
  };

  async channelRequest(u, init, headers) {
    const channel = this.channels.get(headers.get('x-pgp-session'));
    if (!channel || headers.get('x-pgp-session') !== this.token) {
      return json(401, { error: 'pgp_session_expired', reason: 'couch_pgp: the session has expired; start a new one.' });
    }
    if (!(init.body instanceof Uint8Array)) throw new Error('fake server: a channel body is binary');
    const { data } = await openpgp.decrypt({
      message: await openpgp.readMessage({ binaryMessage: init.body }), sessionKeys: channelKey(channel.c2s), format: 'binary',
    });
    const env = JSON.parse(new TextDecoder().decode(data));
    this.requests.push({ env, outerMethod: init.method, url: u, headers, channel: true, body: init.body });
    const [status, body] = await this.route(env, false);
    const resp = this.responseEnvelope(env, status, body);
    if (this.tamper.plaintext) return json(status, body);
    if (this.tamper.perMessageAnswer) return this.answer(env, status, body, this.sessionKey);
    const sealed = await openpgp.encrypt({
      message: await openpgp.createMessage({
        binary: this.tamper.channelPlaintext ?? new TextEncoder().encode(JSON.stringify(resp)) }),
      sessionKey: channelKey(this.tamper.responseKey === 'c2s' ? channel.c2s : channel.s2c), format: 'binary',
    });
    const h = { 'X-PGP-Encrypted': '1', ...(this.tamper.noChannelHeader ? {} : { 'X-PGP-Channel': '1' }) };
    const armored = this.tamper.armoredChannel && openpgp.armor(openpgp.enums.armor.message, sealed);
    if (env.path === '/raw') {
      return new Response(armored || sealed, { status, headers: { 'Content-Type': 'application/pgp-encrypted', ...h } });
    }
    if (armored) return json(status, { pgp: armored }, h);
    return json(status, { pgp: b64(sealed) }, h);
  }

  responseEnvelope(env, status, body) {
    return { v: 1, status: this.tamper.envelopeStatus || status, nonce: this.tamper.nonce ?? env.nonce,
      content_type: env.path === '/raw' ? 'text/plain' : 'application/json',
      body: env.path === '/raw' ? 'raw answer' : JSON.stringify(body) };
  }

  async route(env, login) {
    if (login) {
      const { name, password } = JSON.parse(env.body);
      if (password !== this.password) return [401, { error: 'unauthorized', reason: 'Name or password is incorrect.' }];
      this.loggedIn = true;
      return [200, { ok: true, name, roles: [], pgp_session: await this.describe() }];
    }
    if (this.tamper.refuse) return this.tamper.refuse;
    if (env.path === '/_pgp/tunnel') {
      const inner = JSON.parse(env.body);
      return [200, { status: 200, headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inner }), body_base64: false }];
    }
    if (env.path === '/db/missing') return [404, { error: 'not_found', reason: 'missing' }];
    return [200, { ok: true, echo: env }];
  }

  async describe() {
    this.sessionsIssued += 1;
    this.token = `token-${this.sessionsIssued}`;
    const sessionCert = this.tamper.sessionCert || this.sessionKey;
    const statement = JSON.stringify({
      client_fingerprint: this.tamper.clientFingerprint || fpr(this.client),
      expires: Math.floor(Date.now() / 1000) + this.lifetime,
      identity_fingerprint: this.fingerprint,
      session_fingerprint: fpr(this.sessionKey),
      user: 'alice', v: 1,
    });
    const statement_signature = await openpgp.sign({
      message: await openpgp.createMessage({ binary: new TextEncoder().encode(statement) }),
      signingKeys: this.tamper.statementSigner || this.identity, detached: true,
    });
    const desc = { ok: true, token: this.token, user: 'alice', session_cert: sessionCert.toPublic().armor(),
      statement, statement_signature };
    if (this.offerChannel && !this.tamper.noChannel) desc.channel = await this.sealChannel();
    return desc;
  }

  /** Fresh c2s/s2c keys for this session, sealed to the client and signed by the session key
   *  (`tamper.channel*` corrupt one part each). */
  async sealChannel() {
    const t = this.tamper;
    const c2s = crypto.getRandomValues(new Uint8Array(32));
    const s2c = t.channelSameKeys ? c2s : crypto.getRandomValues(new Uint8Array(32));
    this.channels.set(this.token, { c2s, s2c });
    const text = t.channelText ?? JSON.stringify({
      c2s: b64(c2s), client_fingerprint: t.channelClientFingerprint || fpr(this.client), s2c: b64(s2c),
      session_fingerprint: t.channelSessionFingerprint || fpr(this.sessionKey), v: t.channelV ?? 1,
    });
    return openpgp.encrypt({
      message: await openpgp.createMessage({ text }),
      encryptionKeys: t.channelTo || this.client, signingKeys: t.channelSigner === null ? [] : (t.channelSigner || this.sessionKey),
    });
  }

  async answer(env, status, body, key) {
    const resp = this.responseEnvelope(env, status, body);
    if (this.tamper.plaintext) return json(status, body);
    const armored = await openpgp.encrypt({
      message: await openpgp.createMessage({ text: JSON.stringify(resp) }),
      encryptionKeys: this.client, signingKeys: this.tamper.responseSigner || key,
    });
    if (env.path === '/raw') {
      return new Response(armored, { status, headers: { 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Encrypted': '1' } });
    }
    return json(status, { pgp: armored }, { 'X-PGP-Encrypted': '1' });
  }
}

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
}
