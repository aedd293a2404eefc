// pouchFetch over a stand-in connection: what reaches Connection.request (no Authorization,
// no Cookie, the body's type only, longpoll bounded, HEAD tunnelled), and the Response
// PouchDB gets back (status, resource type, bytes; couch_pgp refusals as CouchDB errors;
// unverifiable answers rejected).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pouchFetch, PGPResponse } from '../src/index.js';
import { ProtocolError, RequestRefusedError, SessionExpiredError } from '../src/errors.js';

function stand(answer) {
  const calls = [];
  const conn = {
    baseURL: 'http://couch.test/base',
    async request(path, init) { calls.push({ path, ...init }); return answer(path, init); },
  };
  return { calls, f: pouchFetch(conn, { longpollTimeout: 3000 }) };
}
const ok = (body, type = 'application/json', status = 200, headers = {}) =>
  new PGPResponse(status, new Headers({ 'content-type': 'application/json', 'content-length': '999',
    'x-pgp-encrypted': '1', ...headers }), type, new TextEncoder().encode(body), false);

test('credentials and other headers stay out; the body type goes in', async () => {
  const { calls, f } = stand(() => ok('{"ok":true}'));
  const r = await f('http://couch.test/base/db/_bulk_docs', { method: 'POST', body: '{"docs":[]}',
    headers: new Headers({ Authorization: 'Basic YTpi', Cookie: 'x=1', 'Content-Type': 'application/json', Accept: 'application/json' }) });
  assert.deepEqual(calls, [{ path: '/db/_bulk_docs', method: 'POST', body: '{"docs":[]}',
    headers: { 'content-type': 'application/json' }, tunnel: undefined, stream: true }]);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.equal(r.headers.get('content-length'), null, 'the wrapper length is not the resource length');
  assert.equal(r.headers.get('x-pgp-encrypted'), null);
  assert.deepEqual(await r.json(), { ok: true });
});

test('longpoll: no heartbeat, timeout at most the cap; continuous refused; HEAD tunnelled', async () => {
  const { calls, f } = stand(() => ok('{"results":[],"last_seq":"1"}'));
  await f('http://couch.test/base/db/_changes?feed=longpoll&heartbeat=10000&since=5');
  await f('http://couch.test/base/db/_changes?feed=longpoll&timeout=1000');
  await f('http://couch.test/base/db/_changes?feed=longpoll&timeout=60000');
  assert.deepEqual(calls.map((c) => c.path), ['/db/_changes?feed=longpoll&since=5&timeout=3000',
    '/db/_changes?feed=longpoll&timeout=1000', '/db/_changes?feed=longpoll&timeout=3000']);
  await assert.rejects(f('http://couch.test/base/db/_changes?feed=continuous'), TypeError);
  await f('http://couch.test/base/db', { method: 'HEAD' });
  assert.equal(calls.at(-1).tunnel, true);
  await assert.rejects(f('http://elsewhere.test/base/db'), TypeError);
});

test('binary bodies and answers, 204 without body', async () => {
  const bytes = new Uint8Array([0, 255, 1, 128]);
  const { calls, f } = stand((path) => (path.startsWith('/empty') ? ok('', '', 204)
    : new PGPResponse(200, new Headers({ etag: '"x"' }), 'image/png', bytes, true)));
  const r = await f('http://couch.test/base/db/doc/a.png?rev=1-a', { method: 'PUT', body: Buffer.from(bytes),
    headers: { 'content-type': 'image/png' } });
  assert.deepEqual([...calls[0].body], [...bytes]);
  assert.equal(r.headers.get('content-type'), 'image/png');
  assert.equal(r.headers.get('etag'), '"x"', 'a tunnelled answer keeps the inner etag');
  assert.deepEqual(new Uint8Array(await r.arrayBuffer()), bytes);
  // PouchDB's node build reads attachments with response.buffer() (a body is read once).
  assert.deepEqual([...await (await f('http://couch.test/base/db/doc/a.png')).buffer()], [...bytes]);
  assert.equal((await f('http://couch.test/base/empty')).status, 204);
});

test('couch_pgp refusals become CouchDB errors; unverifiable answers reject', async () => {
  let err;
  const { f } = stand(() => { throw err; });
  err = new RequestRefusedError(400, 'pgp_stale', 'clock');
  let r = await f('http://couch.test/base/db');
  assert.equal(r.status, 400);
  assert.deepEqual(await r.json(), { error: 'pgp_stale', reason: 'clock' });
  err = new SessionExpiredError();
  r = await f('http://couch.test/base/db');
  assert.equal(r.status, 401);
  assert.equal((await r.json()).error, 'unauthorized');
  err = new ProtocolError('plaintext answer', { status: 200 });
  await assert.rejects(f('http://couch.test/base/db'), ProtocolError);
});

test('an aborted signal rejects at once', async () => {
  const { f } = stand(() => new Promise(() => {}));
  const c = new AbortController();
  const p = f('http://couch.test/base/db/_changes?feed=longpoll', { signal: c.signal });
  c.abort();
  await assert.rejects(p, (e) => e.name === 'AbortError');
});

test('a streamed answer reaches PouchDB as a streaming body, its errors as errors', async () => {
  const enc = new TextEncoder();
  const streamOf = (parts, error) => new ReadableStream({
    pull(c) {
      if (parts.length) c.enqueue(enc.encode(parts.shift()));
      else if (error) c.error(error);
      else c.close();
    },
  });
  const { calls, f } = stand((path) => new PGPResponse(200, new Headers({ 'content-type': 'application/json' }),
    'application/json', undefined, true, path.includes('broken')
      ? streamOf(['{"results":['], new ProtocolError('stream: the answer ended before its final frame (truncated)'))
      : streamOf(['{"results":[', ']', ',"last_seq":"9"}'])));
  const r = await f('http://couch.test/base/db/_changes?since=0');
  assert.equal(calls[0].stream, true);
  assert.deepEqual(await r.json(), { results: [], last_seq: '9' });
  const broken = await f('http://couch.test/base/db/_changes?broken=1');
  await assert.rejects(broken.text(), ProtocolError);
});
