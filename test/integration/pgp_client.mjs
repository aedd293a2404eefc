// An independent couch_pgp client for the integration tests, written from the README's
// protocol description on OpenPGP.js alone: it shares no code with the server.
import * as openpgp from 'openpgp';
import crypto from 'node:crypto';

/** The OpenPGP.js module this client uses, for scripts outside test/integration. */
export { openpgp };

/** RFC 8785: JSON.stringify's strings and numbers, members sorted by UTF-16 code units. */
export function jcs(v) {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(jcs).join(',')}]`;
  return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${jcs(v[k])}`).join(',')}}`;
}

export async function newKey(name = 'client') {
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: 'curve25519', userIDs: [{ name }], format: 'object',
  });
  return { privateKey, publicKey, fingerprint: publicKey.getFingerprint().toUpperCase() };
}

export const nonce = () => crypto.randomBytes(16).toString('base64');

export function envelope(method, path, query, body, extra = {}) {
  return { v: 1, method, path, query, ts: Date.now(), nonce: nonce(),
    content_type: 'application/json', body, ...extra };
}

/** Encrypts `env` (an object, or raw text) to `to`, signed by `signer` (or unsigned). */
export async function seal(env, to, signer, { armor = true } = {}) {
  const text = typeof env === 'string' ? env : JSON.stringify(env);
  return openpgp.encrypt({
    message: await openpgp.createMessage({ text }),
    encryptionKeys: to,
    signingKeys: signer || undefined,
    format: armor ? 'armored' : 'binary',
    config: { aeadProtect: false },
  });
}

/** Opens a response message: decrypted, signature by `from` required. */
export async function open(armored, key, from) {
  const m = await openpgp.decrypt({
    message: await openpgp.readMessage({ armoredMessage: armored }),
    decryptionKeys: key, verificationKeys: from, expectSigned: true,
  });
  return JSON.parse(m.data);
}

/** Checks a session description against the pinned identity and our own key; throws on a
 *  substituted session key. Returns the session certificate. */
export async function checkSession(desc, identityCert, clientFpr) {
  const verification = await openpgp.verify({
    message: await openpgp.createMessage({ text: desc.statement }),
    signature: await openpgp.readSignature({ armoredSignature: desc.statement_signature }),
    verificationKeys: identityCert, expectSigned: true,
  });
  await verification.signatures[0].verified;
  const statement = JSON.parse(desc.statement);
  const sessionCert = await openpgp.readKey({ armoredKey: desc.session_cert });
  if (statement.session_fingerprint !== sessionCert.getFingerprint().toUpperCase()) {
    throw new Error('session certificate is not the one the identity key vouched for');
  }
  if (statement.client_fingerprint !== clientFpr) throw new Error('session is for another client key');
  if (statement.identity_fingerprint !== identityCert.getFingerprint().toUpperCase()) {
    throw new Error('statement names another identity');
  }
  return sessionCert;
}

/** A signed-document entry over the canonical payload (README "Signed documents"). */
export async function signDoc(doc, key) {
  const skip = new Set(['_rev', '_revisions', '_conflicts', '_deleted_conflicts', '_revs_info',
    '_local_seq', 'pgp_signatures']);
  const payload = Object.fromEntries(Object.entries(doc).filter(([k]) => !skip.has(k)));
  // Inline attachments are covered by content: {content_type, digest: sha256, length}.
  if (payload._attachments) {
    payload._attachments = Object.fromEntries(Object.entries(payload._attachments).map(([name, att]) => {
      const content = Buffer.from(att.data, 'base64');
      return [name, { content_type: att.content_type, digest: `sha256-${crypto.createHash('sha256').update(content).digest('base64')}`, length: content.length }];
    }));
  }
  const sig = await openpgp.sign({
    message: await openpgp.createMessage({ binary: new TextEncoder().encode(jcs(payload)) }),
    signingKeys: key.privateKey, detached: true, format: 'binary',
  });
  return { ...doc, pgp_signatures: [{ signer: key.fingerprint, sig: Buffer.from(sig).toString('base64') }] };
}

/** The channel keys from a session description (README "Session channel"): `channel` is
 *  encrypted to our key and must be signed by the session key; its JSON names both. */
export async function openChannel(desc, key, sessionCert) {
  const m = await openpgp.decrypt({
    message: await openpgp.readMessage({ armoredMessage: desc.channel }),
    decryptionKeys: key.privateKey, verificationKeys: sessionCert, expectSigned: true,
  });
  const c = JSON.parse(m.data);
  if (c.v !== 1) throw new Error('channel: unknown version');
  if (c.client_fingerprint !== key.fingerprint) throw new Error('channel for another client');
  if (c.session_fingerprint !== sessionCert.getFingerprint().toUpperCase()) throw new Error('channel for another session');
  const c2s = Buffer.from(c.c2s, 'base64'); const s2c = Buffer.from(c.s2c, 'base64');
  if (c2s.length !== 32 || s2c.length !== 32) throw new Error('channel keys must be 32 bytes');
  return { c2s, s2c };
}

const channelKey = (data) => ({ data: new Uint8Array(data), algorithm: 'aes256', aeadAlgorithm: 'gcm' });

/** Seals text under a channel key as OpenPGP.js writes it: a bare SEIPDv2 packet. */
export async function channelSeal(text, keyBytes) {
  return openpgp.encrypt({
    message: await openpgp.createMessage({ binary: new TextEncoder().encode(text) }),
    sessionKey: channelKey(keyBytes), format: 'binary',
    config: { aeadProtect: true, preferredAEADAlgorithm: openpgp.enums.aead.gcm },
  });
}

/** Opens a channel message (binary) under a channel key; the text inside. */
export async function channelOpen(bytes, keyBytes) {
  const m = await openpgp.decrypt({
    message: await openpgp.readMessage({ binaryMessage: bytes }),
    sessionKeys: channelKey(keyBytes), format: 'binary',
  });
  return new TextDecoder('utf-8', { fatal: true }).decode(m.data);
}

/** Opens a channel message (binary) under a channel key; the octets inside. */
export async function channelOpenBytes(bytes, keyBytes) {
  const m = await openpgp.decrypt({
    message: await openpgp.readMessage({ binaryMessage: bytes }),
    sessionKeys: channelKey(keyBytes), format: 'binary',
  });
  return Buffer.from(m.data);
}

/** Splits a streamed tunnel answer (README "Streaming through the tunnel") into its sealed
 *  frames: each is a 32-bit big-endian length and that many octets. Throws on a cut frame. */
export function streamFrames(bytes) {
  const frames = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + 4 > bytes.length) throw new Error('stream: cut inside a length');
    const len = bytes.readUInt32BE(at);
    if (at + 4 + len > bytes.length) throw new Error('stream: cut inside a frame');
    frames.push(bytes.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return frames;
}

/** Opens and checks every frame of a streamed answer under s2c, as the README says a client
 *  must: version 1, one stream id, sequence 0, 1, 2 ..., the head echoing `nonce`, exactly one
 *  final frame and it last, its byte count equal to the body's. Returns {head, body, frames,
 *  final}. */
export async function openStreamBytes(bytes, s2c, nonce) {
  const frames = streamFrames(bytes);
  const parts = [];
  let id; let head; let final;
  for (let i = 0; i < frames.length; i += 1) {
    const plain = await channelOpenBytes(frames[i], s2c);
    if (plain[0] !== 1) throw new Error(`frame ${i}: version ${plain[0]}`);
    const frameId = plain.subarray(1, 17).toString('hex');
    const seq = plain.readUInt32BE(17);
    const flags = plain[21];
    const payload = plain.subarray(22);
    if (seq !== i) throw new Error(`frame ${i}: sequence number ${seq}`);
    if (i === 0) id = frameId;
    else if (frameId !== id) throw new Error(`frame ${i}: another stream`);
    if (flags !== 0 && flags !== 1) throw new Error(`frame ${i}: flags ${flags}`);
    if (final) throw new Error(`frame ${i}: after the final frame`);
    if (i === 0) {
      if (flags !== 0) throw new Error('the head is marked final');
      head = JSON.parse(payload.toString('utf8'));
      if (head.nonce !== nonce) throw new Error('the head answers another request');
    } else if (flags === 1) {
      final = JSON.parse(payload.toString('utf8'));
    } else {
      parts.push(payload);
    }
  }
  if (!final) throw new Error('no final frame');
  const body = Buffer.concat(parts);
  if (final.error === undefined && final.bytes !== body.length) throw new Error('final byte count');
  return { head, body, frames, final };
}

/** A client session against one CouchDB node (the harness's CouchDB object). */
export class Client {
  constructor(db, auth, key) {
    this.db = db; this.auth = auth; this.key = key;
  }

  async pin(expectedFpr) {
    const r = await this.db.json('/_pgp', { auth: null });
    if (r.status !== 200) throw new Error(`GET /_pgp ${r.status}`);
    if (expectedFpr && r.body.fingerprint !== expectedFpr) throw new Error('pin mismatch');
    this.identity = await openpgp.readKey({ armoredKey: r.body.cert });
    if (this.identity.getFingerprint().toUpperCase() !== r.body.fingerprint) throw new Error('pin mismatch');
    return r.body.fingerprint;
  }

  async startSession() {
    const r = await this.db.json('/_pgp/session', {
      method: 'POST', auth: this.auth, body: { client_cert: this.key.publicKey.armor() },
    });
    if (r.status !== 201) throw new Error(`POST /_pgp/session ${r.status} ${r.text}`);
    this.token = r.body.token;
    this.sessionCert = await checkSession(r.body, this.identity, this.key.fingerprint);
    this.channel = r.body.channel ? await openChannel(r.body, this.key, this.sessionCert) : undefined;
    return r.body;
  }

  /** Like send(), in the session channel: sealed under c2s, the answer opened under s2c.
   *  opts.msg sends these bytes instead; opts.headers adds headers. */
  async sendChannel(method, path, query = '', body = '', { env, msg, token, auth, headers = {} } = {}) {
    const e = env || envelope(method, path, query, body);
    const m = msg || await channelSeal(JSON.stringify(e), this.channel.c2s);
    const outer = method === 'GET' || method === 'HEAD' ? 'POST' : method;
    const r = await this.db.request(path + (query ? `?${query}` : ''), {
      method: outer, auth: auth === undefined ? this.auth : auth, body: m,
      headers: { 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': token || this.token,
        'X-PGP-Channel': '1', ...headers },
    });
    return this.readChannel(r, e);
  }

  async readChannel(r, e) {
    const bytes = new Uint8Array(await r.arrayBuffer());
    const encrypted = r.headers.get('x-pgp-encrypted') === '1';
    if (!encrypted) {
      const text = new TextDecoder().decode(bytes);
      let parsed = text; try { parsed = JSON.parse(text); } catch { /* not JSON */ }
      return { status: r.status, encrypted, channel: false, body: parsed, text };
    }
    if (r.headers.get('x-pgp-channel') !== '1') throw new Error('encrypted answer outside the channel');
    const raw = (r.headers.get('content-type') || '').startsWith('application/pgp-encrypted');
    const sealed = raw ? bytes : Buffer.from(JSON.parse(new TextDecoder().decode(bytes)).pgp, 'base64');
    const resp = JSON.parse(await channelOpen(sealed, this.channel.s2c));
    if (resp.v !== 1) throw new Error('response envelope version');
    if (resp.status !== r.status) throw new Error('response envelope status differs from HTTP status');
    let parsed = resp.body; try { parsed = JSON.parse(resp.body); } catch { /* not JSON */ }
    return { status: r.status, encrypted, channel: true, raw, env: resp, body: parsed, nonceMatches: resp.nonce === e.nonce };
  }

  /** Sends `env` (already sealed as `msg` if given) for real method/path/query; returns
   *  {status, encrypted, env (the response envelope, checked), body (its parsed body)}. */
  async send(method, path, query = '', body = '', { env, msg, outerMethod, token, auth } = {}) {
    const e = env || envelope(method, path, query, body);
    const m = msg || await seal(e, this.sessionCert, this.key.privateKey);
    const outer = outerMethod || (method === 'GET' || method === 'HEAD' ? 'POST' : method);
    const r = await this.db.request(path + (query ? `?${query}` : ''), {
      method: outer, auth: auth === undefined ? this.auth : auth, body: m,
      headers: { 'Content-Type': 'application/pgp-encrypted', 'X-PGP-Session': token || this.token },
    });
    return this.read(r, e);
  }

  async read(r, e, signer = this.sessionCert) {
    const text = await r.text();
    const encrypted = r.headers.get('x-pgp-encrypted') === '1';
    if (!encrypted) {
      let parsed = text; try { parsed = JSON.parse(text); } catch { /* not JSON */ }
      return { status: r.status, encrypted, body: parsed, text };
    }
    const resp = await open(JSON.parse(text).pgp, this.key.privateKey, signer);
    if (resp.status !== r.status) throw new Error('response envelope status differs from HTTP status');
    let parsed = resp.body; try { parsed = JSON.parse(resp.body); } catch { /* not JSON */ }
    return { status: r.status, encrypted, env: resp, body: parsed, nonceMatches: resp.nonce === e.nonce };
  }
}
