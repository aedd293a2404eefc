// The seed's Security API and signed documents, in node (no server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as openpgp from 'openpgp';
import {
  Security, verifyDoc, signingPayload, BadSignatureError, SecurityStateError, KeyError, DecryptError,
} from '../src/index.js';

const pair = async () => {
  const C = new Security(); const S = new Security();
  await S.setRemotePublicKey(await C.getPublicKey());
  await C.setRemotePublicKey(await S.getPublicKey());
  return { C, S };
};

test('the seed workflow: exchange keys, encode, decode both ways', async () => {
  const { C, S } = await pair();
  assert.equal(await S.decode(await C.encode('from the client: é ✓')), 'from the client: é ✓');
  assert.equal(await C.decode(await S.encode('from the server')), 'from the server');
  assert.equal(C.remoteFingerprint(), await S.fingerprint());
});

test('keys and messages follow the interop profile: v4, legacy curve 25519, SEIPDv1', async () => {
  const { C, S } = await pair();
  const cert = await openpgp.readKey({ armoredKey: await C.getPublicKey() });
  assert.equal(cert.keyPacket.version, 4);
  assert.equal(cert.getAlgorithmInfo().algorithm, 'eddsaLegacy');
  const armored = await C.encode('x');
  const msg = await openpgp.readMessage({ armoredMessage: armored });
  const tags = msg.packets.map((p) => p.constructor.tag);
  assert.ok(tags.includes(openpgp.enums.packet.symEncryptedIntegrityProtectedData));
  assert.equal(msg.packets.findPacket(openpgp.enums.packet.symEncryptedIntegrityProtectedData).version, 1);
  assert.equal(await S.decode(armored), 'x');
});

test('remote key: at most once, required, and must be a usable public certificate', async () => {
  const { C, S } = await pair();
  await assert.rejects(C.setRemotePublicKey(await S.getPublicKey()), { code: 'remote_key_already_set' });
  const lone = new Security();
  await assert.rejects(lone.encode('x'), (e) => e instanceof SecurityStateError && e.code === 'no_remote_key');
  await assert.rejects(lone.decode('x'), { code: 'no_remote_key' });
  await assert.rejects(lone.setRemotePublicKey('not a key'), KeyError);
  await assert.rejects(lone.setRemotePublicKey(await C.exportPrivateKey('pw')), KeyError);
  await lone.setRemotePublicKey(await C.getPublicKey()); // a failed attempt did not use up the one call
});

test('decode insists on the remote signature and refuses tampering and strangers', async () => {
  const { C, S } = await pair();
  const M = new Security();
  await M.setRemotePublicKey(await S.getPublicKey());
  await assert.rejects(S.decode(await M.encode('forged')), BadSignatureError); // signed by a stranger
  const unsigned = await openpgp.encrypt({
    message: await openpgp.createMessage({ text: 'unsigned' }),
    encryptionKeys: await openpgp.readKey({ armoredKey: await S.getPublicKey() }),
  });
  await assert.rejects(S.decode(unsigned), BadSignatureError);
  const good = await openpgp.readMessage({ armoredMessage: await C.encode('hello') });
  const bytes = good.write();
  bytes[bytes.length - 30] ^= 1;
  await assert.rejects(S.decode(openpgp.armor(openpgp.enums.armor.message, bytes)), (e) => e instanceof DecryptError || e instanceof BadSignatureError);
  await assert.rejects(S.decode('garbage'), DecryptError);
  await assert.rejects(C.decode(await C.encode('to S, not to C')), DecryptError);
});

test('signDoc/verifyDoc: the README example payload, co-signers, replacement, refusals', async () => {
  const doc = { _id: 'a', _rev: '3-x', n: 1, _attachments: { 'f.txt': { content_type: 'text/plain', data: 'aGk=' } } };
  assert.equal(new TextDecoder().decode(await signingPayload(doc)),
    '{"_attachments":{"f.txt":{"content_type":"text/plain","digest":"sha256-j0NDRmSPa5bfid2pAcUXaxCm2Dlh3TwayItZstwyeqQ=","length":2}},"_id":"a","n":1}');
  const { C, S } = await pair();
  const once = await C.signDoc(doc);
  const both = await S.signDoc(await C.signDoc(once)); // C again replaces its own entry
  assert.equal(both.pgp_signatures.length, 2);
  assert.deepEqual(await verifyDoc(both, [C, S], { require: 'all' }), [await C.fingerprint(), await S.fingerprint()]);
  assert.deepEqual(await S.verifyDoc({ ...both, _rev: '9-y' }), [await C.fingerprint()]);
  await assert.rejects(S.verifyDoc({ ...both, n: 2 }), { code: 'bad_signature' });
  await assert.rejects(S.verifyDoc({ ...both, _id: 'b' }), { code: 'bad_signature' });
  await assert.rejects(S.verifyDoc({ _id: 'a' }), { code: 'unsigned' });
  await assert.rejects(verifyDoc(once, [S]), { code: 'unknown_signer' });
  await assert.rejects(verifyDoc(once, [C, S], { require: 'all' }), { code: 'unsigned' });
  const stub = { _id: 's', _attachments: { 'x.bin': { content_type: 'application/octet-stream', stub: true, length: 2 } } };
  await assert.rejects(C.signDoc(stub), { code: 'attachment_content_missing' });
  const withStub = await C.signDoc(stub, { attachments: { 'x.bin': 'hi' } });
  assert.deepEqual(await S.verifyDoc({ ...withStub, _attachments: { 'x.bin': { content_type: 'application/octet-stream', data: 'aGk=' } } }),
    [await C.fingerprint()]);
  await assert.rejects(C.signDoc({ _id: 'n', x: 2 ** 60 }), { code: 'number_out_of_range' });
});

test('the secret key leaves only passphrase-protected, and comes back', async () => {
  const C = await new Security().ready;
  assert.ok(!JSON.stringify(C).includes('PRIVATE'));
  await assert.rejects(C.exportPrivateKey(''), TypeError);
  const armored = await C.exportPrivateKey('pw');
  await assert.rejects(Security.fromArmored(armored), { code: 'bad_key' });
  await assert.rejects(Security.fromArmored(armored, 'wrong'), { code: 'bad_key' });
  assert.equal(await (await Security.fromArmored(armored, 'pw')).fingerprint(), await C.fingerprint());
});
