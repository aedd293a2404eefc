// Channel mode's message format (src/channel.js): SEIPDv2 AES-256-GCM under a shared key,
// checked against OpenPGP.js 6.3.2 in both directions and against every way a message can be
// altered, cut or misdirected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as openpgp from 'openpgp';
import {
  importChannelKey, seal, open, sealData, openData, literalPacket, readLiteral,
} from '../src/channel.js';
import { DecryptError } from '../src/errors.js';

const random = (n) => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) globalThis.crypto.getRandomValues(b.subarray(i, i + 65536));
  return b;
};
const keyPair = async () => {
  const raw = random(32);
  return { raw, key: await importChannelKey(raw.slice()) };
};
const sessionKey = (raw) => ({ data: raw, algorithm: 'aes256', aeadAlgorithm: 'gcm' });
const refused = (reason) => (e) => e instanceof DecryptError && e.code === 'decrypt_failed'
  && (reason === undefined || e.reason === reason);

async function openpgpOpen(raw, binaryMessage) {
  const { data } = await openpgp.decrypt({
    message: await openpgp.readMessage({ binaryMessage }), sessionKeys: sessionKey(raw), format: 'binary',
  });
  return data;
}

// OpenPGP.js 6 writes a bare SEIPDv2 packet (no PKESK/SKESK) when given only a session key
// with an AEAD algorithm: nothing needs stripping.
async function openpgpSeal(raw, binary, opts = {}) {
  return openpgp.encrypt({
    message: await openpgp.createMessage({ binary, ...opts.literal }),
    sessionKey: { ...sessionKey(raw), ...opts.sessionKey }, format: 'binary',
    config: { aeadProtect: true, preferredAEADAlgorithm: openpgp.enums.aead.gcm, ...opts.config },
    ...opts.encrypt,
  });
}

const SIZES = [0, 1, 1024, 65536, 70000, 5 * 1024 * 1024];

test('seal → open round trips, every size and chunk size', async () => {
  const { key } = await keyPair();
  for (const n of SIZES) {
    const data = random(n);
    for (const chunkSizeByte of [0, 4, 12, 16]) {
      if (chunkSizeByte === 0 && n > 70000) continue; // 80 000 chunks: slow, nothing new
      const msg = await sealData(key, data, { chunkSizeByte });
      assert.deepEqual(await openData(key, msg), data, `${n} bytes, c=${chunkSizeByte}`);
    }
  }
});

test('the wire format: one SEIPDv2 packet, AES-256, GCM, c=16, fresh salt, literal b/""/0', async () => {
  const { key } = await keyPair();
  const data = new TextEncoder().encode('{"v":1}');
  const a = await sealData(key, data);
  const b = await sealData(key, data);
  assert.equal(a[0], 0xD2, 'new-format tag 18');
  assert.equal(a[1], a.length - 2, 'one-octet length');
  assert.deepEqual([...a.subarray(2, 6)], [2, 9, 3, 16]);
  assert.notDeepEqual(a.subarray(6, 38), b.subarray(6, 38), 'salt differs per message');
  // version, algorithms, chunk octet, salt, one chunk (literal + tag), final tag
  assert.equal(a.length, 2 + 4 + 32 + (2 + 6 + data.length + 16) + 16);
  assert.deepEqual([...await open(key, a)], [0xCB, 6 + data.length, 0x62, 0, 0, 0, 0, 0, ...data]);
  assert.deepEqual(literalPacket(data), await open(key, a));
});

test('what we seal, OpenPGP.js opens with the key as session key', async () => {
  const { raw, key } = await keyPair();
  for (const n of SIZES) {
    const data = random(n);
    for (const chunkSizeByte of [4, 16]) {
      assert.deepEqual(await openpgpOpen(raw, await sealData(key, data, { chunkSizeByte })), data, `${n}/${chunkSizeByte}`);
    }
  }
  // Larger lengths take the two- and five-octet length forms.
  for (const n of [200, 9000]) assert.deepEqual(await openpgpOpen(raw, await sealData(key, random(n).fill(7))), new Uint8Array(n).fill(7));
});

test('what OpenPGP.js seals with the key as session key, we open (partial lengths included)', async () => {
  const { raw, key } = await keyPair();
  for (const n of SIZES) {
    const data = random(n);
    const msg = await openpgpSeal(raw, data);
    assert.equal(msg[0], 0xD2, 'a bare SEIPD packet, no ESK before it');
    assert.deepEqual(await openData(key, msg), data, `${n} bytes`);
    if (n > 70000) continue;
    const small = await openpgpSeal(raw, data, { config: { aeadChunkSizeByte: 2 } });
    assert.deepEqual(await openData(key, small), data, `${n} bytes in 256-byte chunks`);
  }
  // Any literal format, filename and date is accepted when reading.
  const text = await openpgp.encrypt({
    message: await openpgp.createMessage({ text: 'héllo', filename: 'note.txt', date: new Date(1e12), format: 'utf8' }),
    sessionKey: sessionKey(raw), format: 'binary',
  });
  assert.equal(new TextDecoder().decode(await openData(key, text)), 'héllo');
});

test('any flipped byte is refused, and no plaintext comes out', async () => {
  const { key } = await keyPair();
  const msg = await sealData(key, new TextEncoder().encode('{"body":"secret","v":1}'), { chunkSizeByte: 0 });
  const reasons = new Set();
  for (let i = 0; i < msg.length; i += 1) {
    for (const bit of [0x01, 0x80]) {
      const bad = msg.slice();
      bad[i] ^= bit;
      await assert.rejects(openData(key, bad), (e) => { reasons.add(e.reason); return refused()(e); }, `byte ${i} ^ ${bit}`);
    }
  }
  assert.deepEqual([...reasons].sort(), ['malformed', 'tampered', 'unsupported']);
});

test('truncation at every length, and extension, are refused', async () => {
  const { key } = await keyPair();
  const msg = await sealData(key, random(300), { chunkSizeByte: 0 });
  for (let n = 0; n < msg.length; n += 1) await assert.rejects(openData(key, msg.subarray(0, n)), refused(), `${n} octets`);
  // A shorter packet whose length octet agrees: the final tag (or the last chunk) gives it away.
  const body = msg.subarray(2, msg.length - 16 - 20);
  const relength = new Uint8Array([0xD2, 192 + ((body.length - 192) >> 8), (body.length - 192) & 0xFF, ...body]);
  await assert.rejects(openData(key, relength), refused());
  await assert.rejects(openData(key, new Uint8Array([...msg, 0])), refused('malformed'), 'trailing octet');
});

test('chunks reordered, dropped or repeated are refused', async () => {
  const { key } = await keyPair();
  const msg = await seal(key, random(64 * 4), { chunkSizeByte: 0 }); // 4 chunks of 64 + 16
  const head = msg.subarray(0, 3 + 4 + 32); // two-octet length
  assert.equal(msg[1] >= 192 && msg[1] < 224, true);
  const chunks = [0, 1, 2, 3].map((i) => msg.subarray(head.length + i * 80, head.length + (i + 1) * 80));
  const final = msg.subarray(msg.length - 16);
  const build = (parts) => {
    const body = new Uint8Array([...head.subarray(3), ...parts.flatMap((p) => [...p])]);
    const l = body.length - 192;
    return new Uint8Array([0xD2, 192 + (l >> 8), l & 0xFF, ...body]);
  };
  assert.equal((await open(key, build([...chunks, final]))).length, 256, 'the rebuilt original opens');
  for (const [name, parts] of [
    ['swapped', [chunks[1], chunks[0], chunks[2], chunks[3], final]],
    ['dropped', [chunks[0], chunks[1], chunks[3], final]],
    ['repeated', [chunks[0], chunks[1], chunks[2], chunks[3], chunks[3], final]],
    ['last dropped', [chunks[0], chunks[1], chunks[2], final]],
    ['no final tag', [...chunks]],
  ]) await assert.rejects(open(key, build(parts)), refused(), name);
});

test('the other direction\'s key never opens it', async () => {
  const c2s = await keyPair();
  const s2c = await keyPair();
  const msg = await sealData(c2s.key, new TextEncoder().encode('{"v":1}'));
  await assert.rejects(openData(s2c.key, msg), refused('tampered'));
  assert.equal(new TextDecoder().decode(await openData(c2s.key, msg)), '{"v":1}');
});

test('too large, garbage, and other OpenPGP messages are refused with a reason', async () => {
  const { raw, key } = await keyPair();
  const msg = await sealData(key, random(2048));
  await assert.rejects(openData(key, msg, { maxBytes: 2000 }), refused('too_large'));
  await assert.rejects(openData(key, random(100)), refused());
  await assert.rejects(openData(key, new Uint8Array(0)), refused('malformed'));
  await assert.rejects(openData(key, new Uint8Array([0xD2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])), refused('malformed'));
  const other = [
    ['SEIPDv1', await openpgp.encrypt({ message: await openpgp.createMessage({ binary: random(10) }),
      sessionKey: { data: raw, algorithm: 'aes256' }, format: 'binary' }), 'unsupported'],
    ['AES-128', await openpgpSeal(raw.subarray(0, 16), random(10), { sessionKey: { algorithm: 'aes128' } }), 'unsupported'],
    ['OCB', await openpgpSeal(raw, random(10), { sessionKey: { aeadAlgorithm: 'ocb' } }), 'unsupported'],
    ['with a PKESK', await openpgp.encrypt({ message: await openpgp.createMessage({ binary: random(10) }),
      passwords: 'pw', sessionKey: sessionKey(raw), format: 'binary', config: { aeadProtect: true } }), 'malformed'],
    ['armored', new TextEncoder().encode(await openpgpSeal(raw, random(10), { encrypt: { format: 'armored' } })), 'malformed'],
  ];
  for (const [name, m, reason] of other) await assert.rejects(openData(key, m), refused(reason), name);
  const c17 = msg.slice();
  c17[(msg[1] < 192 ? 2 : 3) + 3] = 17; // header, then version, cipher, AEAD, chunk octet
  await assert.rejects(open(key, c17), refused('unsupported'), 'chunk size octet 17');
  // A first partial length under 512 octets (RFC 9580 forbids it).
  const small = await sealData(key, random(10));
  const b = small.subarray(2);
  const partial = new Uint8Array([0xD2, 0xE0 + 5, ...b.subarray(0, 32), b.length - 32, ...b.subarray(32)]);
  await assert.rejects(open(key, partial), refused('malformed'), 'first partial of 32 octets');
});

test('inside, exactly one literal packet', async () => {
  const { raw, key } = await keyPair();
  const signer = (await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 's' }], format: 'object' })).privateKey;
  const signed = await openpgp.encrypt({ message: await openpgp.createMessage({ binary: random(10) }),
    sessionKey: sessionKey(raw), signingKeys: signer, format: 'binary' });
  await assert.rejects(openData(key, signed), refused('malformed'), 'one-pass signature, literal, signature');
  await assert.rejects(openData(key, await seal(key, new Uint8Array([...literalPacket(random(3)), ...literalPacket(random(3))]))),
    refused('malformed'), 'two literal packets');
  await assert.rejects(openData(key, await seal(key, new Uint8Array([0xCB, 3, 0x62, 5, 0]))), refused('malformed'), 'filename past the end');
  await assert.rejects(openData(key, await seal(key, new Uint8Array([0xAC, 6, 0x62, 0, 0, 0, 0, 0]))), refused('malformed'), 'old format');
  assert.deepEqual(readLiteral(new Uint8Array([0xCB, 9, 0x75, 2, 0x61, 0x62, 1, 2, 3, 4, 0x7A])), new Uint8Array([0x7A]));
});

test('channel keys are 32 bytes and stay inside WebCrypto', async () => {
  const { key } = await keyPair();
  assert.equal(key.extractable, false);
  assert.deepEqual(key.usages, ['deriveBits']);
  await assert.rejects(globalThis.crypto.subtle.exportKey('raw', key));
  await assert.rejects(importChannelKey(random(16)), TypeError);
  await assert.rejects(seal({}, random(1)), TypeError);
});
