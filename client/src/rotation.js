// Keys over time (README "Keys over time"): GET /_pgp may announce earlier identity keys,
// each endorsing its successor, and revocations. This module decides, from what the server
// sent and the fingerprint the application pinned, whether the current identity is the
// pinned one or its verified successor, and refuses revoked keys.
import { IdentityRevokedError, ProtocolError } from './errors.js';
import { fingerprintOf, normalizeFingerprint, readCert, verifyDetached } from './pgp.js';

/** Longest chain of rotations followed from a pin (the server keeps at most 16 keys). */
const MAX_CHAIN = 16;

/**
 * The identity keys the server says are revoked, each revocation checked: the certificate
 * must be the named key's and carry a valid key revocation signature by that key.
 * @returns {Promise<Map<string, {reason: string, message: string, revokedAt: number}>>}
 */
export async function verifiedRevocations(body) {
  const out = new Map();
  const list = body.revocations ?? [];
  if (!Array.isArray(list)) throw new ProtocolError('GET /_pgp: revocations is not a list');
  for (const r of list) {
    if (!r || typeof r.revocation !== 'string' || typeof r.fingerprint !== 'string') {
      throw new ProtocolError('GET /_pgp: malformed revocation');
    }
    const cert = await readCert(r.revocation, 'verify');
    const fpr = fingerprintOf(cert);
    if (fpr !== normalizeFingerprint(r.fingerprint)) {
      throw new ProtocolError('GET /_pgp: a revocation names another key than its certificate');
    }
    // isRevoked checks the revocation signature against the key itself: nobody without the
    // secret key can make one, so an unverifiable entry is a broken or forged answer.
    if (!(await cert.isRevoked())) throw new ProtocolError(`GET /_pgp: the revocation of ${fpr} does not verify`);
    out.set(fpr, { reason: String(r.reason), message: String(r.message ?? ''), revokedAt: Number(r.revoked_at) });
  }
  return out;
}

/**
 * The chain of endorsements from `pin` to `current`, each verified: the statement is signed
 * by the earlier key (whose certificate must have the fingerprint the entry names), names
 * that key as old and the next one as new, and its `until` has not passed. No key on the
 * way may be revoked. Returns the fingerprints from pin to current, or undefined when the
 * server announces no way from the pin (then the pin simply does not match).
 * @param {object} body  GET /_pgp
 * @param {string} pin  normalized
 * @param {string} current  the fingerprint of body.cert
 * @param {Map<string, object>} revoked  from verifiedRevocations
 * @param {number} [now]  unix seconds
 */
export async function endorsedChain(body, pin, current, revoked, now = Date.now() / 1000) {
  const previous = body.previous ?? [];
  if (!Array.isArray(previous)) throw new ProtocolError('GET /_pgp: previous is not a list');
  const byFpr = new Map(previous.filter((p) => p && typeof p.fingerprint === 'string')
    .map((p) => [normalizeFingerprint(p.fingerprint), p]));
  const chain = [pin];
  let at = pin;
  while (at !== current) {
    if (chain.length > MAX_CHAIN) throw new ProtocolError('GET /_pgp: rotation chain too long');
    const entry = byFpr.get(at);
    if (!entry) return undefined;
    const next = await verifyEndorsement(entry, at, now);
    if (revoked.has(next)) throw new IdentityRevokedError(next, revoked.get(next));
    if (chain.includes(next)) throw new ProtocolError('GET /_pgp: rotation chain loops');
    chain.push(next);
    at = next;
  }
  return chain;
}

async function verifyEndorsement(entry, oldFpr, now) {
  if (typeof entry.cert !== 'string' || typeof entry.endorsement !== 'string' ||
      typeof entry.endorsement_signature !== 'string') {
    throw new ProtocolError('GET /_pgp: malformed previous key');
  }
  const cert = await readCert(entry.cert, 'verify');
  if (fingerprintOf(cert) !== oldFpr) throw new ProtocolError('GET /_pgp: a previous key\'s certificate is another key');
  await verifyDetached(new TextEncoder().encode(entry.endorsement), entry.endorsement_signature, cert)
    .catch((e) => { throw new ProtocolError(`GET /_pgp: the endorsement by ${oldFpr} does not verify (${e.message})`); });
  let st;
  try {
    st = JSON.parse(entry.endorsement);
  } catch {
    throw new ProtocolError('GET /_pgp: the endorsement is not JSON');
  }
  const checks = [
    [st && st.v === 1 && st.action === 'rotate', 'endorsement version or action'],
    [st.old_fingerprint === oldFpr, 'the endorsement names another old key'],
    [typeof st.new_fingerprint === 'string' && /^[0-9A-F]{40}$/.test(st.new_fingerprint), 'endorsement new_fingerprint'],
    [Number.isInteger(st.until) && st.until > now, 'the endorsement\'s overlap has ended'],
  ];
  for (const [ok, why] of checks) if (!ok) throw new ProtocolError(`GET /_pgp: ${why}`);
  return st.new_fingerprint;
}

