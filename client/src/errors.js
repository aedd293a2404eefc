// Typed errors. Every error the client raises on purpose is a CouchPGPError with a stable
// `code` an application can switch on; the message says what went wrong in words, and never
// carries plaintext, keys or tokens.

export class CouchPGPError extends Error {
  /** @param {string} code  @param {string} message  @param {object} [details] */
  constructor(code, message, details = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    Object.assign(this, details);
  }
}

/** The server's identity fingerprint is not the one the application pinned. */
export class PinMismatchError extends CouchPGPError {
  constructor(expected, actual) {
    super('pin_mismatch', `server identity ${actual} does not match the pinned fingerprint ${expected}`,
      { expected, actual });
  }
}

/** The server's identity key (the pinned one, the current one, or one on the way from the
 *  pin to the current one) is revoked: refused at once. The application must get a new
 *  fingerprint out of band. */
export class IdentityRevokedError extends CouchPGPError {
  constructor(fingerprint, { reason = 'unspecified', message = '', revokedAt } = {}) {
    super('identity_revoked', `server identity ${fingerprint} is revoked (${reason}${message ? `: ${message}` : ''})`,
      { fingerprint, reason, revocationMessage: message, revokedAt });
  }
}

/** A message or document signature is missing, by the wrong key, or does not verify. */
export class BadSignatureError extends CouchPGPError {
  constructor(message, details) { super('bad_signature', message, details); }
}

/** A message could not be decrypted (not for our key, tampered, not OpenPGP). For a channel
 *  message, `reason` says why: malformed, unsupported, too_large or tampered. */
export class DecryptError extends CouchPGPError {
  constructor(message, details) { super('decrypt_failed', message, details); }
}

/** The server broke the protocol: a plaintext answer to an encrypted request, a response
 *  envelope for another request, a session statement that does not check out. */
export class ProtocolError extends CouchPGPError {
  constructor(message, details) { super('protocol', message, details); }
}

/** The couch_pgp session has expired and could not be renewed. */
export class SessionExpiredError extends CouchPGPError {
  constructor(message = 'the couch_pgp session has expired; log in again') {
    super('session_expired', message);
  }
}

/** No usable session or login: log in (or start a session) first. */
export class NotLoggedInError extends CouchPGPError {
  constructor(message = 'not logged in: call login() first') { super('not_logged_in', message); }
}

/** Wrong user name or password. */
export class LoginFailedError extends CouchPGPError {
  constructor(reason) { super('login_failed', `login refused: ${reason}`, { reason }); }
}

/** The server refused an encrypted request at the couch_pgp layer (pgp_stale, pgp_replay,
 *  pgp_bad_signature, pgp_envelope_mismatch, ...). `error` and `reason` are CouchDB's. */
export class RequestRefusedError extends CouchPGPError {
  constructor(status, error, reason) {
    super(error, `couch_pgp refused the request (${status} ${error}): ${reason}`, { status, error, reason });
  }
}

/** A value that has no canonical JSON form (see canonicalJSON). `reason` mirrors the server's
 *  atoms: duplicate_key, number_out_of_range, invalid_utf8, invalid_value, syntax. */
export class CanonicalJSONError extends CouchPGPError {
  constructor(reason, message) { super(reason, `canonical JSON: ${message}`, { reason }); }
}

/** Misuse of the Security object (no remote key yet, remote key set twice, ...). */
export class SecurityStateError extends CouchPGPError {}

/** A key or certificate that cannot be used (expired, revoked, no encryption subkey, ...). */
export class KeyError extends CouchPGPError {
  constructor(message) { super('bad_key', message); }
}
