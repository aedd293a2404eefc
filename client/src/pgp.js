// The OpenPGP operations the client needs, on OpenPGP.js, in couch_pgp's interop profile:
// v4 keys (Ed25519/Cv25519 "legacy", which GnuPG 2.2 reads) that advertise SEIPDv1 only,
// SEIPDv1 messages, no compression. Everything that decrypts insists on the expected signer.
import * as openpgp from 'openpgp';
import { BadSignatureError, DecryptError, KeyError } from './errors.js';

const CONFIG = { aeadProtect: false, v6Keys: false };

/** Uppercase hex fingerprint of a key or certificate object. */
export const fingerprintOf = (key) => key.getFingerprint().toUpperCase();

/** Normalizes a fingerprint the way users paste them: spaces and case ignored. */
export const normalizeFingerprint = (fpr) => String(fpr).replace(/\s+/g, '').toUpperCase();

/**
 * A new v4 key pair (Ed25519 signing primary, Cv25519 encryption subkey).
 * @param {{userID?: string, lifetime?: number}} opts lifetime in seconds (0: none)
 */
export async function generateKey({ userID = 'couch_pgp client', lifetime = 0 } = {}) {
  const { privateKey } = await openpgp.generateKey({
    type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: userID }],
    keyExpirationTime: lifetime, format: 'object', config: CONFIG,
  });
  return privateKey;
}

/**
 * Reads an armored public certificate. `purpose` 'encrypt' (default) also requires a valid
 * encryption key on it; 'verify' only reads it (signature checks judge its validity).
 */
export async function readCert(armored, purpose = 'encrypt') {
  let cert;
  try {
    cert = await openpgp.readKey({ armoredKey: armored });
  } catch (e) {
    throw new KeyError(`not an OpenPGP certificate (${e.message})`);
  }
  if (cert.isPrivate()) throw new KeyError('expected a public certificate, got a secret key');
  if (purpose === 'verify') return cert;
  try {
    await cert.getEncryptionKey();
  } catch (e) {
    throw new KeyError(`the certificate cannot be encrypted to (${e.message})`);
  }
  return cert;
}

export async function readPrivate(armored, passphrase) {
  let key;
  try {
    key = await openpgp.readPrivateKey({ armoredKey: armored });
  } catch (e) {
    throw new KeyError(`not an OpenPGP secret key (${e.message})`);
  }
  if (!key.isDecrypted()) {
    if (passphrase === undefined) throw new KeyError('the secret key is passphrase-protected');
    try {
      key = await openpgp.decryptKey({ privateKey: key, passphrase });
    } catch {
      throw new KeyError('wrong passphrase for the secret key');
    }
  }
  return key;
}

/** An armored passphrase-protected copy of a secret key. */
export async function protectPrivate(key, passphrase) {
  return (await openpgp.encryptKey({ privateKey: key, passphrase })).armor();
}

/**
 * Encrypts `data` (string or bytes) to `to` (certificate objects), signed by `signer`.
 * @returns {Promise<string>} armored message
 */
export async function encryptSigned(data, to, signer) {
  const message = typeof data === 'string'
    ? await openpgp.createMessage({ text: data, format: 'utf8' })
    : await openpgp.createMessage({ binary: data });
  return openpgp.encrypt({
    message, encryptionKeys: to, signingKeys: signer, format: 'armored', config: CONFIG,
  });
}

/**
 * Decrypts with `key` and requires a valid signature by one of `signers`.
 * @returns {Promise<{text: string, signer: string}>}
 */
export async function decryptVerified(armoredOrBinary, key, signers) {
  let message;
  try {
    message = typeof armoredOrBinary === 'string'
      ? await openpgp.readMessage({ armoredMessage: armoredOrBinary })
      : await openpgp.readMessage({ binaryMessage: armoredOrBinary });
  } catch (e) {
    throw new DecryptError(`not an OpenPGP message (${e.message})`);
  }
  let result;
  try {
    result = await openpgp.decrypt({ message, decryptionKeys: key, verificationKeys: signers, format: 'utf8' });
  } catch (e) {
    throw new DecryptError(`cannot decrypt (${e.message})`);
  }
  // Decrypted and integrity-checked; now the signature, which is required. Until it holds,
  // the plaintext is not returned.
  if (result.signatures.length === 0) throw new BadSignatureError('the message is not signed');
  const expected = new Set(signers.map((c) => c.getKeyIDs().map((id) => id.toHex())).flat());
  for (const sig of result.signatures) {
    if (!expected.has(sig.keyID.toHex())) continue;
    try {
      await sig.verified;
    } catch (e) {
      throw new BadSignatureError(`message signature does not verify (${e.message})`);
    }
    return { text: result.data, signer: sig.keyID.toHex().toUpperCase() };
  }
  throw new BadSignatureError('the message is not signed by the expected key');
}

/** A binary detached signature over `bytes`. */
export async function signDetached(bytes, key) {
  return openpgp.sign({
    message: await openpgp.createMessage({ binary: bytes }),
    signingKeys: key, detached: true, format: 'binary', config: CONFIG,
  });
}

/** Armored detached signature over UTF-8 text (treated as binary, as the server does). */
export async function signDetachedArmored(text, key) {
  return openpgp.sign({
    message: await openpgp.createMessage({ binary: new TextEncoder().encode(text) }),
    signingKeys: key, detached: true, format: 'armored', config: CONFIG,
  });
}

/**
 * Verifies a detached signature (armored string or bytes) over `bytes` by `cert`.
 * Throws BadSignatureError unless it is valid.
 */
export async function verifyDetached(bytes, signature, cert) {
  let sig;
  try {
    sig = typeof signature === 'string'
      ? await openpgp.readSignature({ armoredSignature: signature })
      : await openpgp.readSignature({ binarySignature: signature });
  } catch (e) {
    throw new BadSignatureError(`not an OpenPGP signature (${e.message})`);
  }
  const v = await openpgp.verify({
    message: await openpgp.createMessage({ binary: bytes }),
    signature: sig, verificationKeys: cert, expectSigned: false,
  });
  if (v.signatures.length === 0) throw new BadSignatureError('no signature');
  try {
    await v.signatures[0].verified;
  } catch (e) {
    throw new BadSignatureError(`signature does not verify (${e.message})`);
  }
}
