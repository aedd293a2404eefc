// The streamed tunnel answer's reader (src/stream.js): frames written here as the README
// specifies them (sealed with channel.js under a test key), then every way a stream can be
// altered: a flipped octet, frames swapped, dropped, spliced from another stream, the final
// frame missing, a frame cut in half, data after the final frame, another request's nonce.
// Each must end in a ProtocolError, never in a short body that looks complete.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { importChannelKey, sealData } from '../src/channel.js';
import { openStream, STREAM_TYPE } from '../src/stream.js';
import { ProtocolError, RequestRefusedError } from '../src/errors.js';

const enc = new TextEncoder();
const rand = (n) => globalThis.crypto.getRandomValues(new Uint8Array(n));
const key = await importChannelKey(rand(32));
const otherKey = await importChannelKey(rand(32));
const NONCE = 'bm9uY2Ugb2YgdGhlIHJlcXVlc3Q=';

/** One frame on the wire: length (32-bit BE) || sealed(version || id || seq || flags || payload). */
async function frame(k, id, seq, final, payload) {
  const plain = new Uint8Array(22 + payload.length);
  plain[0] = 1;
  plain.set(id, 1);
  new DataView(plain.buffer).setUint32(17, seq);
  plain[21] = final ? 1 : 0;
  plain.set(payload, 22);
  const sealed = await sealData(k, plain);
  const out = new Uint8Array(4 + sealed.length);
  new DataView(out.buffer).setUint32(0, sealed.length);
  out.set(sealed, 4);
  return out;
}

/** The frames of a whole answer: head, `parts`, final. */
async function frames(parts, { nonce = NONCE, k = key, id = rand(16), status = 200, finalBody } = {}) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = [await frame(k, id, 0, false, enc.encode(JSON.stringify(
    { status, headers: { 'content-type': 'application/json' }, nonce })))];
  for (let i = 0; i < parts.length; i += 1) out.push(await frame(k, id, i + 1, false, parts[i]));
  out.push(await frame(k, id, parts.length + 1, true, enc.encode(JSON.stringify(finalBody ?? { bytes: total }))));
  return out;
}

/** An HTTP body giving `bytes` in chunks of `size` octets (frames and chunks do not line up). */
function body(list, size = 7) {
  const all = Buffer.concat(list.map((b) => Buffer.from(b)));
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= all.length) { c.close(); return; }
      c.enqueue(new Uint8Array(all.subarray(at, at + size)));
      at += size;
    },
  });
}

async function readAll(list, nonce = NONCE, size) {
  const s = await openStream(body(list, size), key, nonce);
  const got = [];
  const reader = s.body.getReader();
  for (let r = await reader.read(); !r.done; r = await reader.read()) got.push(...r.value);
  return { ...s, text: new TextDecoder().decode(new Uint8Array(got)) };
}

const parts = ['{"results":[', '{"seq":"1","id":"a"}', ',{"seq":"2","id":"b"}', '],"last_seq":"2"}']
  .map((t) => enc.encode(t));
const whole = parts.map((p) => new TextDecoder().decode(p)).join('');
const protocol = (pattern) => (e) => e instanceof ProtocolError && pattern.test(e.message);

test('a stream reads back whole, however the HTTP chunks fall', async () => {
  assert.equal(STREAM_TYPE, 'application/x-pgp-stream');
  for (const size of [1, 5, 64, 100000]) {
    const r = await readAll(await frames(parts), NONCE, size);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.text, whole);
  }
  const empty = await readAll(await frames([]));
  assert.equal(empty.text, '');
});

test('an altered octet anywhere in a frame is refused', async () => {
  const list = await frames(parts);
  for (const [i, at] of [[0, 30], [2, 50], [list.length - 1, 40]]) {
    const bad = list.map((b) => b.slice());
    bad[i][at] ^= 1;
    await assert.rejects(readAll(bad), protocol(/does not open|malformed/), `frame ${i}`);
  }
});

test('frames reordered or dropped are refused', async () => {
  const list = await frames(parts);
  const swapped = [list[0], list[2], list[1], ...list.slice(3)];
  await assert.rejects(readAll(swapped), protocol(/reordered or dropped/));
  const dropped = [list[0], list[1], ...list.slice(3)];
  await assert.rejects(readAll(dropped), protocol(/reordered or dropped/));
  const noHead = list.slice(1);
  await assert.rejects(readAll(noHead), protocol(/head|reordered/));
});

test('a stream cut short is refused: no final frame, or cut inside a frame', async () => {
  const list = await frames(parts);
  await assert.rejects(readAll(list.slice(0, -1)), protocol(/before its final frame/));
  const cut = [...list.slice(0, -1), list.at(-1).subarray(0, 30)];
  await assert.rejects(readAll(cut), protocol(/inside a frame/));
  await assert.rejects(openStream(body([]), key, NONCE), protocol(/no head frame/));
});

test('frames spliced from another stream, another key, or after the end are refused', async () => {
  const a = await frames(parts);
  const b = await frames(parts);
  await assert.rejects(readAll([a[0], a[1], b[2], ...a.slice(3)]), protocol(/another stream/));
  const c = await frames(parts, { k: otherKey });
  await assert.rejects(readAll([a[0], c[1], ...a.slice(2)]), protocol(/does not open/));
  await assert.rejects(readAll([...a, a[1]]), protocol(/after the final|reordered/));
});

test('the head must answer this request; the final frame must count the octets', async () => {
  await assert.rejects(readAll(await frames(parts, { nonce: 'another' })), protocol(/another request/));
  await assert.rejects(readAll(await frames(parts, { finalBody: { bytes: 3 } })), protocol(/final frame says 3/));
  const tooLong = new Uint8Array([0x7f, 0xff, 0xff, 0xff]);
  await assert.rejects(openStream(body([tooLong]), key, NONCE), protocol(/a frame of/));
});

test('a stream the server reports broken off rejects with its refusal', async () => {
  const list = await frames(parts.slice(0, 2), { finalBody: { error: 'pgp_tunnel_unreachable', reason: 'gone' } });
  await assert.rejects(readAll(list), (e) => e instanceof RequestRefusedError && e.error === 'pgp_tunnel_unreachable');
});

test("the README's worked example opens to its body (test/vectors/stream_example.json)", async () => {
  const { readFileSync } = await import('node:fs');
  const v = JSON.parse(readFileSync(new URL('../../test/vectors/stream_example.json', import.meta.url)));
  const s2c = await importChannelKey(Uint8Array.from(Buffer.from(v.s2c_hex, 'hex')));
  const wire = v.frames.map((f) => Uint8Array.from(Buffer.from(f.wire_hex, 'hex')));
  const s = await openStream(body(wire, 13), s2c, v.nonce);
  assert.equal(s.status, 200);
  assert.deepEqual(s.headers, { 'content-type': 'text/plain' });
  const reader = s.body.getReader();
  const got = [];
  for (let r = await reader.read(); !r.done; r = await reader.read()) got.push(...r.value);
  assert.equal(new TextDecoder().decode(new Uint8Array(got)), v.body);
  await assert.rejects(openStream(body(wire), s2c, 'another nonce'), protocol(/another request/));
});
