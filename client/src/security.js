// The seed's Security object: one party's side of an encrypted, signed channel.
//
//   const c = new Security();                 // makes a key pair (in the background)
//   send(await c.getPublicKey());
//   await c.setRemotePublicKey(theirs);       // at most once
//   const msg = await c.encode('text');       // encrypted to them, signed by us
//   const text = await c.decode(reply);       // decrypted, their signature required
//   const signed = await c.signDoc(doc);      // pgp_signatures entry, canonical JSON
//
// Key generation is asynchronous in a browser, so every method returns a Promise and waits
// for the key; `ready` resolves to the object once its key exists. The secret key stays in
// this object (a module-private WeakMap): it is never a property, never logged, and only
// leaves through exportPrivateKey(passphrase).
import { SecurityStateError } from './errors.js';
import {
  decryptVerified, encryptSigned, fingerprintOf, generateKey, protectPrivate, readCert, readPrivate,
} from './pgp.js';
import { signDoc, verifyDoc } from './docs.js';

const secrets = new WeakMap();

/** Per-session keys last a day unless the caller says otherwise (as the server's). */
export const DEFAULT_LIFETIME = 24 * 3600;

/** The private key object of a Security (for this package's own modules only). */
export async function privateKeyOf(security) {
  await security.ready;
  return secrets.get(security).key;
}

export class Security {
  /**
   * @param {{key?: import('openpgp').PrivateKey, userID?: string, lifetime?: number}} [opts]
   *   `key`: use this (decrypted) key instead of making one; `lifetime` in seconds, 0 for none.
   */
  constructor({ key, userID = 'couch_pgp client', lifetime = DEFAULT_LIFETIME } = {}) {
    const state = { key: undefined, remote: undefined, remoteClaimed: false };
    secrets.set(this, state);
    /** @type {Promise<Security>} */
    this.ready = (key ? Promise.resolve(key) : generateKey({ userID, lifetime })).then((k) => {
      if (!k.isPrivate() || !k.isDecrypted()) throw new TypeError('Security needs a decrypted secret key');
      state.key = k;
      return this;
    });
    this.ready.catch(() => {}); // reported to whoever awaits a method
    Object.freeze(this);
  }

  /** A Security over an existing armored secret key (decrypted with `passphrase` if protected). */
  static async fromArmored(armored, passphrase) {
    return new Security({ key: await readPrivate(armored, passphrase) }).ready;
  }

  /** Our armored public certificate, to send to the peer. */
  async getPublicKey() {
    return (await privateKeyOf(this)).toPublic().armor();
  }

  /** Our fingerprint (40 uppercase hex digits). */
  async fingerprint() {
    return fingerprintOf(await privateKeyOf(this));
  }

  /** The peer's fingerprint, or undefined before setRemotePublicKey. */
  remoteFingerprint() {
    const { remote } = secrets.get(this);
    return remote && fingerprintOf(remote);
  }

  /** Sets the peer's public key; at most once (SecurityStateError `remote_key_already_set`). */
  async setRemotePublicKey(armored) {
    const state = secrets.get(this);
    if (state.remoteClaimed) throw new SecurityStateError('remote_key_already_set', 'the remote public key is already set');
    state.remoteClaimed = true;
    try {
      state.remote = await readCert(armored);
    } catch (e) {
      state.remoteClaimed = false;
      throw e;
    }
  }

  /** An armored message for the peer, signed by us. */
  async encode(content) {
    const key = await privateKeyOf(this);
    return encryptSigned(content, [this.#remote()], key);
  }

  /** The text of a message from the peer; its signature is required. */
  async decode(message) {
    const key = await privateKeyOf(this);
    return (await decryptVerified(message, key, [this.#remote()])).text;
  }

  /** `doc` with our signature in pgp_signatures (see docs.js). */
  async signDoc(doc, opts) {
    return signDoc(doc, await privateKeyOf(this), opts);
  }

  /** Verifies a document the peer signed; resolves to the good signers' fingerprints. */
  async verifyDoc(doc, opts) {
    return verifyDoc(doc, [this.#remote()], opts);
  }

  /** Our own public certificate as an OpenPGP.js object. */
  async publicCert() {
    return (await privateKeyOf(this)).toPublic();
  }

  /** Our secret key, armored and protected by `passphrase` (required, non-empty). */
  async exportPrivateKey(passphrase) {
    if (typeof passphrase !== 'string' || passphrase.length === 0) {
      throw new TypeError('exportPrivateKey needs a passphrase');
    }
    return protectPrivate(await privateKeyOf(this), passphrase);
  }

  #remote() {
    const { remote } = secrets.get(this);
    if (!remote) throw new SecurityStateError('no_remote_key', 'call setRemotePublicKey first');
    return remote;
  }
}

/**
 * Verifies `doc`'s signatures against `certs` (armored certificates or Security objects,
 * whose own public keys are meant); resolves to the good signers' fingerprints. See docs.js
 * for the rules and the errors.
 */
export async function verifySignedDoc(doc, certs, opts) {
  const read = await Promise.all(certs.map((c) => (c instanceof Security ? c.publicCert() : readCert(c, 'verify'))));
  return verifyDoc(doc, read, opts);
}
