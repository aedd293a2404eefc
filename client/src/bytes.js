// Small byte helpers that work the same in browsers and Node (no Buffer).

export function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

export function fromBase64(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i += 1) out[i] = s.charCodeAt(i);
  return out;
}

/** Standard base64 (RFC 4648 §4) with padding and nothing else. atob alone also takes ASCII
 *  whitespace and missing padding (but refuses any other character, and '=' before the end):
 *  the length checks refuse those. (A regular expression over the whole text would cost more
 *  than opening a 64 KiB channel message.) */
export function fromBase64Strict(b64) {
  if (typeof b64 !== 'string' || b64.length % 4 !== 0) throw new TypeError('not standard base64');
  const padding = b64.endsWith('==') ? 2 : b64.endsWith('=') ? 1 : 0;
  let out;
  try {
    out = fromBase64(b64);
  } catch {
    throw new TypeError('not standard base64');
  }
  // Every stripped whitespace character shortens the output below what the length implies.
  if (out.length !== (b64.length / 4) * 3 - padding) throw new TypeError('not standard base64');
  return out;
}

export function toBytes(data) {
  if (typeof data === 'string') return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('expected a string, Uint8Array or ArrayBuffer');
}

export async function sha256(bytes) {
  return new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes));
}

/** base64 of `n` random bytes. */
export function randomBase64(n) {
  return toBase64(globalThis.crypto.getRandomValues(new Uint8Array(n)));
}
