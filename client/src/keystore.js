// A long-lived client key kept in the browser's IndexedDB.
//
// OpenPGP.js keys are JavaScript objects, so WebCrypto cannot hold them as non-extractable
// keys. Instead the armored secret key is encrypted (AES-256-GCM) under a wrapping key that
// *is* a non-extractable WebCrypto key, made once per origin and stored in the same database:
// the stored bytes are useless copied elsewhere (another browser, a disk image, a backup),
// and no script can read the wrapping key out, though script on this origin can use it. A
// passphrase adds OpenPGP's own protection on top (S2K), for keys that must not open without
// the user.
import { Security, privateKeyOf } from './security.js';
import { KeyError } from './errors.js';
import { readPrivate } from './pgp.js';
import * as openpgp from 'openpgp';

const STORE = 'keys';
const WRAPPING = '\u0000wrapping-key';

function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

export class KeyStore {
  #db;

  constructor(db) { this.#db = db; }

  /** Opens (creating if needed) the IndexedDB database `name`. */
  static async open(name = 'couch_pgp') {
    if (!globalThis.indexedDB) throw new KeyError('IndexedDB is not available here');
    const open = globalThis.indexedDB.open(name, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    return new KeyStore(await req(open));
  }

  async #tx(mode, fn) {
    const tx = this.#db.transaction(STORE, mode);
    const result = await fn(tx.objectStore(STORE));
    await new Promise((resolve, reject) => { tx.oncomplete = resolve; tx.onerror = () => reject(tx.error); });
    return result;
  }

  async #wrappingKey() {
    const existing = await this.#tx('readonly', (s) => req(s.get(WRAPPING)));
    if (existing) return existing;
    const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    // add() fails if another tab stored one first; then use theirs.
    try {
      await this.#tx('readwrite', (s) => req(s.add(key, WRAPPING)));
      return key;
    } catch {
      return this.#tx('readonly', (s) => req(s.get(WRAPPING)));
    }
  }

  /** Stores `security`'s secret key under `name` (optionally passphrase-protected too). */
  async save(name, security, { passphrase } = {}) {
    const armored = passphrase
      ? await security.exportPrivateKey(passphrase)
      : (await exportUnprotected(security));
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const wrapped = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, await this.#wrappingKey(),
      new TextEncoder().encode(armored));
    const record = { iv, wrapped: new Uint8Array(wrapped), fingerprint: await security.fingerprint(),
      protected: Boolean(passphrase), saved: Date.now() };
    await this.#tx('readwrite', (s) => req(s.put(record, name)));
    return record.fingerprint;
  }

  /** The Security stored under `name`, or null. */
  async load(name, { passphrase } = {}) {
    const record = await this.#tx('readonly', (s) => req(s.get(name)));
    if (!record) return null;
    let plain;
    try {
      plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: record.iv }, await this.#wrappingKey(), record.wrapped);
    } catch {
      throw new KeyError('the stored key cannot be unwrapped (damaged, or from another browser profile)');
    }
    const key = await readPrivate(new TextDecoder().decode(plain), passphrase);
    return new Security({ key }).ready;
  }

  /** Metadata of the key stored under `name` (no secret), or null. */
  async info(name) {
    const record = await this.#tx('readonly', (s) => req(s.get(name)));
    return record ? { fingerprint: record.fingerprint, protected: record.protected, saved: record.saved } : null;
  }

  async delete(name) { await this.#tx('readwrite', (s) => req(s.delete(name))); }

  close() { this.#db.close(); }
}

// The armored secret key without S2K protection, for wrapping only: it exists as a string
// just long enough to be encrypted.
async function exportUnprotected(security) {
  const key = await privateKeyOf(security);
  return openpgp.armor(openpgp.enums.armor.privateKey, key.write());
}
