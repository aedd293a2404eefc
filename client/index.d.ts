// TypeScript declarations for the couch_pgp client (client/src/index.js, served by the plugin
// as /_pgp/client.js). Every Promise rejects with a CouchPGPError subclass on purpose.
import type { PrivateKey, PublicKey } from 'openpgp';

export type JSONValue = null | boolean | number | string | JSONValue[] | { [k: string]: JSONValue };
export type CouchDoc = { _id?: string; _rev?: string; [k: string]: unknown };
export interface SignatureEntry { signer: string; sig: string }

export interface DocOptions {
  /** Content of attachments present as stubs (inline `data` is read from the document). */
  attachments?: Record<string, Uint8Array | string>;
}
export interface VerifyOptions extends DocOptions {
  /** 'any' (default): at least one given certificate signed; 'all': every one did. */
  require?: 'any' | 'all';
}

/** The seed's Security object: one party's side of an encrypted, signed channel. */
export class Security {
  /** Makes a fresh v4 key pair in the background (default lifetime one day), or uses `key`. */
  constructor(opts?: { key?: PrivateKey; userID?: string; lifetime?: number });
  /** Resolves to this object once its key exists. */
  readonly ready: Promise<Security>;
  static fromArmored(armored: string, passphrase?: string): Promise<Security>;
  getPublicKey(): Promise<string>;
  fingerprint(): Promise<string>;
  remoteFingerprint(): string | undefined;
  /** At most once: a second call rejects with SecurityStateError `remote_key_already_set`. */
  setRemotePublicKey(armored: string): Promise<void>;
  /** Encrypted to the remote key, signed by ours; armored. */
  encode(content: string | Uint8Array): Promise<string>;
  /** Decrypted with our key; the remote key's signature is required. */
  decode(message: string | Uint8Array): Promise<string>;
  signDoc<T extends CouchDoc>(doc: T, opts?: DocOptions): Promise<T & { pgp_signatures: SignatureEntry[] }>;
  /** Verifies a document the remote party signed; resolves to the good signers' fingerprints. */
  verifyDoc(doc: CouchDoc, opts?: VerifyOptions): Promise<string[]>;
  /** The secret key, armored and protected by `passphrase`. */
  exportPrivateKey(passphrase: string): Promise<string>;
  /** Our own public certificate as an OpenPGP.js object. */
  publicCert(): Promise<PublicKey>;
}

export interface ConnectOptions {
  /** The server identity fingerprint (spaces and case ignored), or a function that decides. */
  pin: string | ((fingerprint: string) => boolean | Promise<boolean>);
  /** Our key pair; default a fresh per-session key. */
  security?: Security;
  /** 'auto' (default): streaming endpoints and attachments through /_pgp/tunnel;
   *  'always': every request, so paths stay off the wire too; 'never'. */
  tunnel?: 'auto' | 'always' | 'never';
  /** 'auto' (default): channel mode (requests and answers sealed with AES-256-GCM under two
   *  per-session keys held only in memory) when GET /_pgp lists "channel" and the session
   *  carries channel keys, per-message mode otherwise; 'session': always per-message
   *  (encrypted to the session key and signed by ours); 'channel': refuse without it. */
  mode?: 'auto' | 'channel' | 'session';
  fetch?: typeof fetch;
  /** Default 'include', so the AuthSession cookie is sent. */
  credentials?: RequestCredentials;
  /** Sent on every request, in the clear (e.g. Authorization for basic auth). */
  headers?: Record<string, string>;
  /** Called after every encrypted exchange with what crossed the wire and what it meant. */
  onExchange?: (e: Exchange) => void;
  /** Called when the server rotated its identity and the pinned key endorsed the new one:
   *  the connection now pins `to`; persist it (README "Keys over time"). */
  onPinChange?: (change: { from: string; to: string; chain: string[] }) => void | Promise<void>;
}

export interface Exchange {
  /** In channel mode `request` is the binary message as base64, and `response` the body as
   *  received (`{"pgp": "<base64>"}`, or base64 of a raw binary answer). */
  wire: { method: string; url: string; status: number; headers: Headers; mode: SessionMode;
    request: string; response: string };
  request: RequestEnvelope;
  response: ResponseEnvelope;
}
export interface RequestEnvelope {
  v: 1; method: string; path: string; query: string; ts: number; nonce: string;
  content_type: string; body: string; client_cert?: string;
}
export interface ResponseEnvelope { v: 1; status: number; nonce: string; content_type: string; body: string }

export interface RequestInit {
  method?: string;
  /** A string is sent as is, bytes through the tunnel, anything else as JSON. */
  body?: unknown;
  /** Inside the envelope through the tunnel; on the outer request (in the clear) otherwise. */
  headers?: Record<string, string>;
  /** Force or forbid the tunnel for this request. */
  tunnel?: boolean;
  /** A tunnelled answer comes as sealed frames, checked as they arrive (channel mode only;
   *  a per-message session gets the buffered answer). Read it from `body`. */
  stream?: boolean;
}

export function connect(url: string | URL, opts: ConnectOptions): Promise<Connection>;

/** How this session's requests travel: sealed in the channel, or per message. */
export type SessionMode = 'channel' | 'session';
export interface SessionInfo { user: string; expires: number; fingerprint: string; mode: SessionMode }

export class Connection {
  /** The CouchDB root (no trailing slash). */
  readonly baseURL: string;
  readonly identityFingerprint: string;
  readonly security: Security;
  readonly session: SessionInfo | undefined;
  pin(): Promise<string>;
  login(name: string, password: string): Promise<{ name: string; roles: string[] }>;
  startSession(): Promise<SessionInfo>;
  request(path: string, init?: RequestInit): Promise<PGPResponse>;
  putDoc(db: string, doc: CouchDoc, opts?: { signWith?: Security }): Promise<{ ok: true; id: string; rev: string }>;
  getDoc<T extends CouchDoc = CouchDoc>(db: string, id: string,
    opts?: { verifyWith?: (string | Security)[]; query?: string }): Promise<{ doc: T; signers?: string[] }>;
  registerCertificate(security: Security): Promise<{ ok: true; fingerprint: string; fingerprints: string[] }>;
  registeredCertificates(): Promise<string[]>;
  /** Resolves to the remaining fingerprints; rejects with CouchError `not_found`. */
  unregisterCertificate(fingerprint: string): Promise<string[]>;
  logout(): Promise<void>;
}

export class PGPResponse {
  readonly status: number;
  readonly ok: boolean;
  readonly headers: Headers;
  readonly contentType: string;
  /** Whether it came through /_pgp/tunnel. */
  readonly tunnelled: boolean;
  readonly encrypted: true;
  /** Whether it arrived as a sealed stream of frames. */
  readonly streamed: boolean;
  /** The checked octets as they arrive; errors (ProtocolError) if the stream is cut short,
   *  reordered or altered. A streamed answer is read once. */
  readonly body: ReadableStream<Uint8Array>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
  json<T = any>(): Promise<T>;
  /** The JSON body when ok; otherwise rejects with CouchError. */
  checked<T = any>(): Promise<T>;
}

/** Verifies `doc` against certificates (armored, or a Security's own key); resolves to the
 *  good signers' fingerprints. Rejects with BadSignatureError (`unsigned`, `unknown_signer`,
 *  `bad_signature`). */
export function verifyDoc(doc: CouchDoc, certs: (string | Security)[], opts?: VerifyOptions): Promise<string[]>;
export function needsTunnel(pathname: string): boolean;

/** Longest a `_changes?feed=longpoll` waits through pouchFetch (ms) unless told otherwise. */
export const LONGPOLL_TIMEOUT: number;
/**
 * A `fetch` for PouchDB's HTTP adapter, `new PouchDB(url, { fetch: pouchFetch(conn) })`: every
 * request goes through the (logged-in) connection and resolves to a standard Response.
 * Authorization and Cookie headers given to it are dropped; couch_pgp's refusals become
 * CouchDB-shaped error responses; an answer that cannot be verified rejects. A longpoll
 * `_changes` loses its heartbeat and waits at most `longpollTimeout` ms; other live feeds reject.
 */
export function pouchFetch(connection: Connection, opts?: { longpollTimeout?: number }):
  (input: string | URL | Request, init?: globalThis.RequestInit) => Promise<Response>;
export function canonicalJSON(value: unknown): string;
export function canonicalBytes(value: unknown): Uint8Array;
export function canonicalizeText(text: string): string;
export function signingPayload(doc: CouchDoc, opts?: DocOptions): Promise<Uint8Array>;

/** A long-lived key in IndexedDB, wrapped by a non-extractable WebCrypto key. */
export class KeyStore {
  static open(name?: string): Promise<KeyStore>;
  save(name: string, security: Security, opts?: { passphrase?: string }): Promise<string>;
  load(name: string, opts?: { passphrase?: string }): Promise<Security | null>;
  info(name: string): Promise<{ fingerprint: string; protected: boolean; saved: number } | null>;
  delete(name: string): Promise<void>;
  close(): void;
}

export class CouchPGPError extends Error { readonly code: string }
export class PinMismatchError extends CouchPGPError { readonly code: 'pin_mismatch'; readonly expected: string; readonly actual: string }
/** The server's identity (current, pinned, or on the way between) is revoked. */
export class IdentityRevokedError extends CouchPGPError {
  readonly code: 'identity_revoked'; readonly fingerprint: string;
  readonly reason: 'unspecified' | 'superseded' | 'compromised' | 'retired' | string;
  readonly revocationMessage: string; readonly revokedAt?: number;
}
export class BadSignatureError extends CouchPGPError { readonly code: 'bad_signature' | 'unsigned' | 'unknown_signer' }
export class DecryptError extends CouchPGPError {
  readonly code: 'decrypt_failed';
  /** Set for a channel message: why it was refused. */
  readonly reason?: 'malformed' | 'unsupported' | 'too_large' | 'tampered';
}
export class ProtocolError extends CouchPGPError { readonly code: 'protocol' }
export class SessionExpiredError extends CouchPGPError { readonly code: 'session_expired' }
export class NotLoggedInError extends CouchPGPError { readonly code: 'not_logged_in' }
export class LoginFailedError extends CouchPGPError { readonly code: 'login_failed'; readonly reason: string }
export class RequestRefusedError extends CouchPGPError { readonly status: number; readonly error: string; readonly reason: string }
export class CouchError extends CouchPGPError { readonly status: number; readonly error: string; readonly reason: string }
export class CanonicalJSONError extends CouchPGPError {
  readonly reason: 'duplicate_key' | 'number_out_of_range' | 'invalid_utf8' | 'invalid_value' | 'syntax';
}
export class SecurityStateError extends CouchPGPError { readonly code: 'remote_key_already_set' | 'no_remote_key' }
export class KeyError extends CouchPGPError { readonly code: 'bad_key' }
export type { PrivateKey, PublicKey };
