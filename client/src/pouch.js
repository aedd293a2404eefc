// A `fetch` for PouchDB's HTTP adapter (`new PouchDB(url, { fetch: pouchFetch(connection) })`):
// every request PouchDB makes goes through the couch_pgp connection (in place, or through
// /_pgp/tunnel for streaming endpoints and attachments, as Connection.request decides) and
// comes back as a standard Response built from the decrypted, checked answer. In channel
// mode a tunnelled answer is streamed: the Response's body gives each sealed frame's octets
// once the frame is checked, and errors if the stream is cut short or altered.
//
// Credentials are the connection's: log in with connection.login() first. PouchDB's own
// Authorization header (from `auth` or user:password in the URL) and any Cookie header are
// dropped here, so the password never crosses the wire in plaintext.
import { NotLoggedInError, RequestRefusedError, SessionExpiredError } from './errors.js';

/** Longest a `_changes?feed=longpoll` may wait (ms): a poll holds one request (and, in
 *  per-message mode where the tunnel buffers, its whole answer) open until it returns. */
export const LONGPOLL_TIMEOUT = 10000;

// Response headers that describe the real resource; the outer ones (content-length of the
// encrypted wrapper, x-pgp-*) do not.
const OUTER_ONLY = /^(content-length|content-type|content-encoding|transfer-encoding|x-pgp-.*|set-cookie|etag)$/i;

/**
 * @param {import('./connection.js').Connection} connection  connected and logged in
 * @param {{longpollTimeout?: number}} [opts]
 * @returns {(input: string|URL|Request, init?: RequestInit) => Promise<Response>}
 */
export function pouchFetch(connection, { longpollTimeout = LONGPOLL_TIMEOUT } = {}) {
  const base = new URL(connection.baseURL);
  const basePath = base.pathname.replace(/\/+$/, '');
  return async function fetch(input, init = {}) {
    const url = new URL(typeof input === 'string' ? input : input.url ?? String(input), base);
    if (url.origin !== base.origin || !(url.pathname === basePath || url.pathname.startsWith(`${basePath}/`))) {
      throw new TypeError(`pouchFetch: ${url.origin}${url.pathname} is not under ${base.href}`);
    }
    const signal = init.signal;
    if (signal?.aborted) throw abortError(signal);
    const method = (init.method || 'GET').toUpperCase();
    // Only the body's type is carried (in the envelope). Headers given to a request sent in
    // place would travel in the clear, and PouchDB needs none of the others: Authorization
    // and Cookie are the connection's business, Accept is JSON anyway.
    const given = new Headers(init.headers || {});
    const headers = given.has('content-type') ? { 'content-type': given.get('content-type') } : {};
    let body = init.body;
    if (body !== undefined && body !== null && typeof body !== 'string') body = await bytesOf(body);
    if (typeof body === 'string' && !headers['content-type']) headers['content-type'] = 'application/json';
    const path = (url.pathname.slice(basePath.length) || '/') + query(url, longpollTimeout);
    // HEAD cannot be encrypted in place (no body to carry the answer): the tunnel runs it.
    const sent = connection.request(path, { method, body, headers, tunnel: method === 'HEAD' ? true : undefined,
      stream: true })
      .then(toResponse, refusalResponse);
    if (!signal) return sent;
    // The request runs to its end on the server either way; PouchDB only stops waiting.
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      sent.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  };
}

// A longpoll answers when a change comes or at `timeout`; a heartbeat (newlines while it
// waits) would make CouchDB ignore the timeout, and cannot reach us through the buffered
// tunnel anyway. So: no heartbeat, and a timeout of at most `cap`.
function query(url, cap) {
  const q = url.searchParams;
  const feed = q.get('feed');
  if (url.pathname.endsWith('/_changes') && feed && feed !== 'normal') {
    if (feed !== 'longpoll') throw new TypeError(`pouchFetch: feed=${feed} cannot be buffered; use longpoll`);
    q.delete('heartbeat');
    const t = Number(q.get('timeout'));
    q.set('timeout', String(Number.isFinite(t) && t > 0 ? Math.min(t, cap) : cap));
  }
  return url.search;
}

async function bytesOf(body) {
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  if (typeof body.arrayBuffer === 'function') return new Uint8Array(await body.arrayBuffer()); // Blob
  if (body instanceof URLSearchParams) return new TextEncoder().encode(String(body));
  throw new TypeError('pouchFetch: unsupported body type');
}

async function toResponse(r) {
  const headers = new Headers();
  for (const [k, v] of r.headers) if (!OUTER_ONLY.test(k)) headers.set(k, v);
  if (r.tunnelled && r.headers.get('etag')) headers.set('etag', r.headers.get('etag'));
  if (r.contentType) headers.set('content-type', r.contentType);
  if (r.streamed && !empty(r.status)) return respond(r.status, headers, r.body);
  const bytes = await r.bytes();
  return respond(r.status, headers, bytes);
}

const empty = (status) => status === 204 || status === 205 || status === 304;

// couch_pgp's own refusals (pgp_*, 406, 413, not logged in) become CouchDB-shaped error
// responses, so PouchDB reports them as it reports CouchDB's; anything that could not be
// verified (ProtocolError, DecryptError) stays an exception: never data.
function refusalResponse(e) {
  let status; let body;
  if (e instanceof RequestRefusedError) {
    status = e.status; body = { error: e.error, reason: e.reason };
  } else if (e instanceof NotLoggedInError || e instanceof SessionExpiredError) {
    status = 401; body = { error: 'unauthorized', reason: e.message };
  } else {
    throw e;
  }
  return respond(status, new Headers({ 'content-type': 'application/json' }),
    new TextEncoder().encode(JSON.stringify(body)));
}

/** @param {Uint8Array|ReadableStream<Uint8Array>} body */
function respond(status, headers, body) {
  const res = new Response(empty(status) ? null : body, { status, headers });
  // PouchDB's node build reads attachments with response.buffer() when it exists.
  if (typeof globalThis.Buffer === 'function') {
    Object.defineProperty(res, 'buffer', { value: async () => globalThis.Buffer.from(await res.arrayBuffer()) });
  }
  return res;
}

function abortError(signal) {
  return signal.reason instanceof Error ? signal.reason : new DOMException('The operation was aborted.', 'AbortError');
}
