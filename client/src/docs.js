// Signed documents, in the same format and over the same bytes as the server's
// couch_pgp_doc (README "Signed documents"): a detached OpenPGP signature over the RFC 8785
// canonical JSON of the document without CouchDB's bookkeeping fields, attachments replaced
// by SHA-256 digests of their content; entries in the `pgp_signatures` field.
import { canonicalBytes } from './canonical.js';
import { CouchPGPError, BadSignatureError } from './errors.js';
import { fingerprintOf, signDetached, verifyDetached } from './pgp.js';
import { fromBase64, toBase64, toBytes, sha256 } from './bytes.js';

export const SIGNATURES_FIELD = 'pgp_signatures';
const UNSIGNED_FIELDS = new Set(['_rev', '_revisions', '_conflicts', '_deleted_conflicts',
  '_revs_info', '_local_seq', SIGNATURES_FIELD]);

function plainObject(doc) {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new TypeError('a document is a JSON object');
  }
}

/**
 * The exact bytes every signature on `doc` covers.
 * @param {object} doc
 * @param {{attachments?: Record<string, Uint8Array|string>}} [opts] content of attachment stubs
 */
export async function signingPayload(doc, { attachments = {} } = {}) {
  plainObject(doc);
  const kept = {};
  for (const [k, v] of Object.entries(doc)) if (!UNSIGNED_FIELDS.has(k)) kept[k] = v;
  if (kept._attachments !== undefined) {
    const covered = {};
    for (const [name, att] of Object.entries(kept._attachments)) {
      let content;
      if (typeof att.data === 'string') content = fromBase64(att.data);
      else if (attachments[name] !== undefined) content = toBytes(attachments[name]);
      else {
        throw new CouchPGPError('attachment_content_missing',
          `attachment ${JSON.stringify(name)} is a stub: pass its content in opts.attachments`, { attachment: name });
      }
      covered[name] = {
        content_type: att.content_type,
        digest: `sha256-${toBase64(await sha256(content))}`,
        length: content.length,
      };
    }
    kept._attachments = covered;
  }
  return canonicalBytes(kept);
}

/**
 * A copy of `doc` with our signature added to `pgp_signatures` (replacing an earlier one by
 * the same key; others' signatures are kept).
 * @param {object} doc @param {import('openpgp').PrivateKey} key
 */
export async function signDoc(doc, key, opts = {}) {
  const payload = await signingPayload(doc, opts);
  const sig = await signDetached(payload, key);
  const signer = fingerprintOf(key);
  const others = (Array.isArray(doc[SIGNATURES_FIELD]) ? doc[SIGNATURES_FIELD] : [])
    .filter((e) => e && e.signer !== signer);
  return { ...doc, [SIGNATURES_FIELD]: [...others, { signer, sig: toBase64(sig) }] };
}

/**
 * Verifies `doc` against `certs`; returns the fingerprints among them whose signatures hold.
 * A signature by one of `certs` that fails fails the whole check; signatures by others are
 * skipped, never trusted. Errors (BadSignatureError, `code`): `unsigned` (no signature, or
 * with `require: 'all'` one missing), `unknown_signer` (none by `certs`), `bad_signature`.
 * @param {object} doc @param {import('openpgp').PublicKey[]} certs
 * @param {{require?: 'any'|'all', attachments?: Record<string, Uint8Array|string>}} [opts]
 */
export async function verifyDoc(doc, certs, opts = {}) {
  plainObject(doc);
  const entries = doc[SIGNATURES_FIELD];
  if (entries === undefined || (Array.isArray(entries) && entries.length === 0)) {
    throw Object.assign(new BadSignatureError('the document is not signed'), { code: 'unsigned' });
  }
  if (!Array.isArray(entries) || !entries.every((e) => e && typeof e.signer === 'string' && typeof e.sig === 'string')) {
    throw new BadSignatureError(`${SIGNATURES_FIELD} is not a list of {signer, sig}`);
  }
  const known = new Map(certs.map((c) => [fingerprintOf(c), c]));
  const payload = await signingPayload(doc, opts);
  const good = [];
  for (const { signer, sig } of entries) {
    const cert = known.get(signer.toUpperCase());
    if (!cert) continue;
    let bytes;
    try { bytes = fromBase64(sig); } catch { throw new BadSignatureError(`signature by ${signer} is not base64`); }
    await verifyDetached(payload, bytes, cert);
    good.push(fingerprintOf(cert));
  }
  if (good.length === 0) {
    throw Object.assign(new BadSignatureError('no signature by any of the given certificates'), { code: 'unknown_signer' });
  }
  if (opts.require === 'all' && [...known.keys()].some((f) => !good.includes(f))) {
    throw Object.assign(new BadSignatureError('a required signer has not signed'), { code: 'unsigned' });
  }
  return good;
}
