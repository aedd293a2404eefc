// Channel mode's message format (README "HTTP protocol", channel mode): one OpenPGP SEIPD
// version 2 packet (RFC 9580 §5.13.2), AES-256 + GCM, sealed directly under a 32-byte key both
// sides hold (c2s for requests, s2c for responses; no PKESK/SKESK before it), whose plaintext
// is one Literal Data packet. Everything here is WebCrypto, so it runs the same in browsers
// and Node 20, and the channel keys stay non-extractable HKDF keys.
//
// The reader is deliberately narrow: it opens exactly what the protocol sends and refuses
// everything else with DecryptError `reason` malformed | unsupported | too_large | tampered.
// Tags are never compared here: AES-GCM decryption in WebCrypto checks them.
import { DecryptError } from './errors.js';

const subtle = () => globalThis.crypto.subtle;

const TAG_SEIPD = 18;
const TAG_LITERAL = 11;
const SEIPD_V2 = 2;
const AES256 = 9;
const GCM = 3;
const KEY_BYTES = 32;
const SALT_BYTES = 32;
/** GCM: 12-byte nonce = 4 bytes from HKDF || 8-byte chunk index (RFC 9580 §5.13.2). */
const IV_BYTES = 4;
const TAG_BYTES = 16;
/** RFC 9580: decoders must accept chunk size octets 0..16, senders must not exceed 16. */
const MAX_CHUNK_SIZE_BYTE = 16;
/** What we send: chunks of 4 MiB, so anything up to 4 MiB is one chunk plus the final tag. */
export const CHUNK_SIZE_BYTE = 16;
/** Default ceiling on a message we open (ciphertext octets). The server's own ceiling on
 *  requests is 64 MiB of plaintext; answers are buffered in memory on both sides anyway. */
export const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

const fail = (reason, message) => new DecryptError(`channel message: ${message}`, { reason });

/**
 * Imports a 32-byte channel key as a non-extractable HKDF key (usable only to derive the
 * per-message keys). The caller should zero `bytes` afterwards.
 * @param {Uint8Array} bytes
 * @returns {Promise<CryptoKey>}
 */
export async function importChannelKey(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length !== KEY_BYTES) {
    throw new TypeError('a channel key is 32 bytes');
  }
  return subtle().importKey('raw', bytes, 'HKDF', false, ['deriveBits']);
}

/** The 5 octets that are both the HKDF info and the chunks' associated data. */
function packetInfo(chunkSizeByte) {
  return new Uint8Array([0xC0 | TAG_SEIPD, SEIPD_V2, AES256, GCM, chunkSizeByte]);
}

/** HKDF-SHA256(channel key, salt, info) → the message's AES-256 key and 4-byte IV. */
async function messageKey(channelKey, salt, info, usage) {
  if (!(channelKey instanceof CryptoKey) || channelKey.algorithm.name !== 'HKDF') {
    throw new TypeError('expected a channel key from importChannelKey');
  }
  const bits = new Uint8Array(await subtle().deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt, info }, channelKey, (KEY_BYTES + IV_BYTES) * 8));
  const key = await subtle().importKey('raw', bits.subarray(0, KEY_BYTES), 'AES-GCM', false, [usage]);
  const iv = bits.slice(KEY_BYTES);
  bits.fill(0);
  return { key, iv };
}

function nonce(iv, index) {
  const n = new Uint8Array(IV_BYTES + 8);
  n.set(iv);
  new DataView(n.buffer).setBigUint64(IV_BYTES, BigInt(index));
  return n;
}

/** The final tag's associated data: the 5 info octets || total plaintext octets (64-bit BE). */
function finalData(info, total) {
  const ad = new Uint8Array(info.length + 8);
  ad.set(info);
  new DataView(ad.buffer).setBigUint64(info.length, BigInt(total));
  return ad;
}

// ------------------------------------------------------------------ packet framing

/** A new-format packet header with the shortest definite length (RFC 9580 §4.2.1). */
function header(tag, length) {
  if (length < 192) return new Uint8Array([0xC0 | tag, length]);
  if (length < 8384) {
    const l = length - 192;
    return new Uint8Array([0xC0 | tag, (l >> 8) + 192, l & 0xFF]);
  }
  const h = new Uint8Array(6);
  h[0] = 0xC0 | tag;
  h[1] = 0xFF;
  new DataView(h.buffer).setUint32(2, length);
  return h;
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/**
 * Reads one new-format packet that must fill `bytes` exactly. Definite lengths and partial
 * body lengths (the first part at least 512 octets, as RFC 9580 requires; OpenPGP.js writes
 * them for larger messages) are accepted; an old-format header, another tag, a length that
 * runs past the end or trailing octets are not.
 * @returns {Uint8Array} the packet body
 */
function readPacket(bytes, expectedTag, what) {
  if (bytes.length < 2) throw fail('malformed', `${what}: too short`);
  const first = bytes[0];
  if ((first & 0xC0) !== 0xC0) throw fail('malformed', `${what}: not a new-format packet`);
  if ((first & 0x3F) !== expectedTag) throw fail('malformed', `${what}: packet tag ${first & 0x3F}, expected ${expectedTag}`);
  const parts = [];
  let at = 1;
  let partial = true;
  while (partial) {
    if (at >= bytes.length) throw fail('malformed', `${what}: truncated length`);
    const o1 = bytes[at];
    let length;
    if (o1 < 192) {
      length = o1; at += 1; partial = false;
    } else if (o1 < 224) {
      if (at + 2 > bytes.length) throw fail('malformed', `${what}: truncated length`);
      length = ((o1 - 192) << 8) + bytes[at + 1] + 192; at += 2; partial = false;
    } else if (o1 === 255) {
      if (at + 5 > bytes.length) throw fail('malformed', `${what}: truncated length`);
      length = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0); at += 5; partial = false;
    } else {
      length = 2 ** (o1 & 0x1F); at += 1;
      if (parts.length === 0 && length < 512) throw fail('malformed', `${what}: first partial length under 512`);
    }
    if (at + length > bytes.length) throw fail('malformed', `${what}: truncated`);
    parts.push(bytes.subarray(at, at + length));
    at += length;
  }
  if (at !== bytes.length) throw fail('malformed', `${what}: trailing data after the packet`);
  return parts.length === 1 ? parts[0] : concat(parts);
}

/**
 * A Literal Data packet (format 'b', no filename, date 0) holding `data`.
 * @param {Uint8Array} data
 */
export function literalPacket(data) {
  const body = new Uint8Array(6 + data.length);
  body[0] = 0x62; // 'b'
  body.set(data, 6); // filename length 0, date 0
  return concat([header(TAG_LITERAL, body.length), body]);
}

/**
 * The data of the one Literal Data packet `bytes` must be (any format, filename and date).
 * @param {Uint8Array} bytes
 */
export function readLiteral(bytes) {
  const body = readPacket(bytes, TAG_LITERAL, 'literal data');
  if (body.length < 2 || body.length < 6 + body[1]) throw fail('malformed', 'literal data: truncated header');
  return body.subarray(6 + body[1]);
}

// ------------------------------------------------------------------ seal / open

/**
 * Seals `plaintext` (the octets of the packets inside, here one literal packet) as a binary
 * SEIPDv2 packet under `channelKey`, with a fresh random salt.
 * @param {CryptoKey} channelKey  from importChannelKey
 * @param {Uint8Array} plaintext
 * @param {{chunkSizeByte?: number}} [opts]  for tests; senders use 16
 * @returns {Promise<Uint8Array>}
 */
export async function seal(channelKey, plaintext, { chunkSizeByte = CHUNK_SIZE_BYTE } = {}) {
  if (!Number.isInteger(chunkSizeByte) || chunkSizeByte < 0 || chunkSizeByte > MAX_CHUNK_SIZE_BYTE) {
    throw new TypeError('chunkSizeByte: an integer 0..16');
  }
  const info = packetInfo(chunkSizeByte);
  const salt = globalThis.crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  const { key, iv } = await messageKey(channelKey, salt, info, 'encrypt');
  const size = 2 ** (chunkSizeByte + 6);
  const count = Math.max(1, Math.ceil(plaintext.length / size)); // empty plaintext: one empty chunk
  const pieces = [];
  for (let i = 0; i < count; i += 1) {
    pieces.push(subtle().encrypt({ name: 'AES-GCM', iv: nonce(iv, i), additionalData: info, tagLength: 128 },
      key, plaintext.subarray(i * size, (i + 1) * size)));
  }
  pieces.push(subtle().encrypt({ name: 'AES-GCM', iv: nonce(iv, count),
    additionalData: finalData(info, plaintext.length), tagLength: 128 }, key, new Uint8Array(0)));
  const sealed = (await Promise.all(pieces)).map((b) => new Uint8Array(b));
  const body = concat([info.subarray(1), salt, ...sealed]);
  return concat([header(TAG_SEIPD, body.length), body]);
}

/**
 * Opens a binary message that must be exactly one SEIPDv2 AES-256/GCM packet sealed under
 * `channelKey`. Returns the plaintext only after every chunk's tag and the final tag held.
 * @param {CryptoKey} channelKey
 * @param {Uint8Array} message
 * @param {{maxBytes?: number}} [opts]
 * @returns {Promise<Uint8Array>}
 */
export async function open(channelKey, message, { maxBytes = MAX_MESSAGE_BYTES } = {}) {
  if (!(message instanceof Uint8Array)) throw new TypeError('expected the message as a Uint8Array');
  if (message.length > maxBytes) throw fail('too_large', `${message.length} octets, more than ${maxBytes}`);
  const body = readPacket(message, TAG_SEIPD, 'SEIPD');
  if (body.length < 4 + SALT_BYTES) throw fail('malformed', 'SEIPD: truncated header');
  if (body[0] !== SEIPD_V2) throw fail('unsupported', `SEIPD version ${body[0]}, expected 2`);
  if (body[1] !== AES256) throw fail('unsupported', `symmetric algorithm ${body[1]}, expected AES-256`);
  if (body[2] !== GCM) throw fail('unsupported', `AEAD algorithm ${body[2]}, expected GCM`);
  const chunkSizeByte = body[3];
  if (chunkSizeByte > MAX_CHUNK_SIZE_BYTE) throw fail('unsupported', `chunk size octet ${chunkSizeByte}`);
  const info = packetInfo(chunkSizeByte);
  const salt = body.subarray(4, 4 + SALT_BYTES);
  const encrypted = body.subarray(4 + SALT_BYTES);
  // Chunks are (size + 16) octets, the last one shorter but not empty (unless it is the only
  // one: an empty plaintext), then the 16-octet final tag.
  const size = 2 ** (chunkSizeByte + 6);
  const chunked = encrypted.length - TAG_BYTES;
  if (chunked < TAG_BYTES) throw fail('malformed', 'SEIPD: shorter than one chunk and the final tag');
  const count = Math.ceil(chunked / (size + TAG_BYTES));
  const last = chunked - (count - 1) * (size + TAG_BYTES);
  if (last <= TAG_BYTES && count > 1) throw fail('malformed', 'SEIPD: an empty chunk after full ones');
  const total = chunked - count * TAG_BYTES;

  const { key, iv } = await messageKey(channelKey, salt, info, 'decrypt');
  const aes = (n, ad, data) => subtle().decrypt(
    { name: 'AES-GCM', iv: nonce(iv, n), additionalData: ad, tagLength: 128 }, key, data);
  const out = new Uint8Array(total);
  try {
    // The final tag covers the chunk count and total length, so it is checked alongside the
    // first chunk (truncation and extension fail there); chunks one after another, so that
    // garbage costs one failed chunk, not all of them.
    const final = aes(count, finalData(info, total), encrypted.subarray(chunked));
    final.catch(() => {});
    for (let i = 0; i < count; i += 1) {
      const from = i * (size + TAG_BYTES);
      const chunk = await aes(i, info, encrypted.subarray(from, Math.min(from + size + TAG_BYTES, chunked)));
      out.set(new Uint8Array(chunk), i * size);
    }
    if ((await final).byteLength !== 0) throw new Error('final tag');
  } catch {
    out.fill(0);
    throw fail('tampered', 'authentication failed (altered, truncated, or sealed under another key)');
  }
  return out;
}

/** Seals `data` as a literal packet inside SEIPDv2: the channel's message for a request or
 *  an answer. */
export async function sealData(channelKey, data, opts) {
  return seal(channelKey, literalPacket(data), opts);
}

/** Opens a channel message and returns its literal data. */
export async function openData(channelKey, message, opts) {
  return readLiteral(await open(channelKey, message, opts));
}
