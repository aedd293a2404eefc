// A streamed tunnel answer (README "Streaming through the tunnel"): the HTTP body is a run of
// frames, each a 32-bit big-endian length and a channel message sealed under s2c whose
// plaintext is version (1) || stream id (16) || sequence number (32-bit BE) || flags (bit 0:
// final) || payload. Frame 0 is the head (inner status, headers and the request's nonce),
// the last one is marked final and says how many body octets came before it.
//
// Each frame is opened and checked before its payload is handed on, so the reader sees only
// authenticated bytes in their place; and the body only ends well after the final frame, so
// a stream cut short, reordered, spliced from another one or altered ends in a ProtocolError
// (or the server's refusal), never in a short answer that looks complete.
import { openData } from './channel.js';
import { DecryptError, ProtocolError, RequestRefusedError } from './errors.js';

/** The Content-Type of a streamed tunnel answer. */
export const STREAM_TYPE = 'application/x-pgp-stream';
const VERSION = 1;
const ID_BYTES = 16;
const HEADER_BYTES = 1 + ID_BYTES + 4 + 1;
const FINAL = 1;
/** A frame longer than this is refused before it is read (the server's are at most 64 KiB of
 *  plaintext plus the sealing's overhead). */
export const MAX_FRAME_BYTES = 1024 * 1024;

/**
 * Opens a streamed answer: reads and checks the head, then gives the body as a ReadableStream
 * of checked payloads that errors (ProtocolError, or RequestRefusedError when the server says
 * the inner response broke off) instead of ending early.
 * @param {ReadableStream<Uint8Array>} body  the HTTP body
 * @param {CryptoKey} s2c  the session's server-to-client channel key
 * @param {string} nonce  the request's nonce, which the head must echo
 * @returns {Promise<{status: number, headers: Record<string,string>, body: ReadableStream<Uint8Array>}>}
 */
export async function openStream(body, s2c, nonce) {
  if (!body) throw new ProtocolError('stream: the answer has no body');
  const frames = sealedFrames(body);
  const opened = openFrames(frames, s2c);
  const first = await opened.next();
  if (first.done) throw new ProtocolError('stream: no head frame');
  const head = parseJSONText(first.value.payload, 'head');
  if (first.value.final) throw new ProtocolError('stream: the head frame is marked final');
  if (head.nonce !== nonce) {
    await opened.return();
    throw new ProtocolError('stream: the answer is for another request (nonce)');
  }
  if (!Number.isInteger(head.status) || !head.headers || typeof head.headers !== 'object') {
    throw new ProtocolError('stream: malformed head');
  }
  return { status: head.status, headers: head.headers, body: readable(payloads(opened)) };
}

/** The body's payloads; ends only after a final frame whose count matches, and nothing after it. */
async function* payloads(opened) {
  let total = 0;
  for await (const frame of opened) {
    if (!frame.final) {
      total += frame.payload.length;
      if (frame.payload.length > 0) yield frame.payload;
      continue;
    }
    const end = parseJSONText(frame.payload, 'final');
    if (typeof end.error === 'string') {
      throw new RequestRefusedError(503, end.error, typeof end.reason === 'string' ? end.reason : '');
    }
    if (end.bytes !== total) throw new ProtocolError(`stream: ${total} octets received, the final frame says ${end.bytes}`);
    const more = await opened.next();
    if (!more.done) throw new ProtocolError('stream: a frame after the final one');
    return;
  }
  throw new ProtocolError('stream: the answer ended before its final frame (truncated)');
}

/** Opens each sealed frame and checks the version, the stream id (the head's) and the
 *  sequence number (0, 1, 2, ...). */
async function* openFrames(frames, s2c) {
  let id; let seq = 0;
  for await (const sealed of frames) {
    let plain;
    try {
      plain = await openData(s2c, sealed);
    } catch (e) {
      if (e instanceof DecryptError) {
        throw new ProtocolError(`stream: frame ${seq} does not open under the session key (${e.reason})`, { reason: e.reason });
      }
      throw e;
    }
    if (plain.length < HEADER_BYTES || plain[0] !== VERSION) throw new ProtocolError(`stream: frame ${seq} is malformed`);
    const view = new DataView(plain.buffer, plain.byteOffset, plain.length);
    const frameId = plain.subarray(1, 1 + ID_BYTES);
    const n = view.getUint32(1 + ID_BYTES);
    const flags = plain[1 + ID_BYTES + 4];
    if (flags & ~FINAL) throw new ProtocolError(`stream: frame ${seq} has unknown flags`);
    if (id === undefined) id = frameId.slice();
    else if (!equal(id, frameId)) throw new ProtocolError(`stream: frame ${seq} belongs to another stream`);
    if (n !== seq) throw new ProtocolError(`stream: frame ${n} where frame ${seq} was expected (reordered or dropped)`);
    seq += 1;
    yield { final: (flags & FINAL) === FINAL, payload: plain.subarray(HEADER_BYTES) };
  }
}

/** The sealed frames of an HTTP body, however its chunks fall. */
async function* sealedFrames(body) {
  const reader = body.getReader();
  let buf = new Uint8Array(0);
  let done = false;
  try {
    for (;;) {
      while (buf.length >= 4) {
        const len = new DataView(buf.buffer, buf.byteOffset, 4).getUint32(0);
        if (len === 0 || len > MAX_FRAME_BYTES) throw new ProtocolError(`stream: a frame of ${len} octets`);
        if (buf.length < 4 + len) break;
        const frame = buf.slice(4, 4 + len);
        buf = buf.subarray(4 + len);
        yield frame;
      }
      const r = await reader.read();
      if (r.done) {
        done = true;
        if (buf.length > 0) throw new ProtocolError('stream: the answer ended inside a frame (truncated)');
        return;
      }
      const chunk = r.value instanceof Uint8Array ? r.value : new Uint8Array(r.value);
      buf = buf.length === 0 ? chunk : concat(buf, chunk);
    }
  } finally {
    // Stopped early (an error, or the reader was cancelled): drop the connection.
    if (!done) reader.cancel().catch(() => {});
    else reader.releaseLock();
  }
}

/** A ReadableStream pulling from an async generator; cancelling it stops the generator. */
function readable(gen) {
  return new ReadableStream({
    async pull(controller) {
      try {
        const { value, done } = await gen.next();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (e) {
        controller.error(e);
      }
    },
    async cancel() {
      await gen.return();
    },
  }, { highWaterMark: 0 });
}

function parseJSONText(bytes, what) {
  try {
    const v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v;
  } catch { /* below */ }
  throw new ProtocolError(`stream: the ${what} frame is not a JSON object`);
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return false;
  return true;
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
