// couch_pgp client: the public API. See client/index.d.ts and the README
// ("Browser client") for the whole picture.
export { Security, verifySignedDoc as verifyDoc } from './security.js';
export { connect, Connection, PGPResponse, CouchError, needsTunnel } from './connection.js';
export { canonicalJSON, canonicalizeText, canonicalBytes } from './canonical.js';
export { signingPayload } from './docs.js';
export { KeyStore } from './keystore.js';
export {
  CouchPGPError, PinMismatchError, BadSignatureError, DecryptError, ProtocolError,
  SessionExpiredError, NotLoggedInError, LoginFailedError, RequestRefusedError,
  CanonicalJSONError, SecurityStateError, KeyError, IdentityRevokedError,
} from './errors.js';
export { pouchFetch, LONGPOLL_TIMEOUT } from './pouch.js';
