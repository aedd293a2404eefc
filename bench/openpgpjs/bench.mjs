// OpenPGP.js peer for the couch_pgp benchmark; run through bench/run.sh.
//
//   node bench.mjs run WORKDIR        every row, appended to WORKDIR/openpgpjs.tsv
//   node --expose-gc bench.mjs mem WORKDIR KIND
//                                     peak extra RSS of one 16 MiB decrypt+verify (fresh process)
//
// Lines have the format of bench/couch_pgp_bench.erl: Row Impl Value PayloadBytes Runs Iterations.
// Profile held equal to couch_pgp's: v4 keys with EdDSA (Ed25519) + ECDH Cv25519
// (type `ecc`, curve `curve25519Legacy`; OpenPGP.js 6's type `curve25519` would give the
// RFC 9580 Ed25519/X25519 algorithms, which GnuPG 2.2 cannot read), SEIPDv1 (aeadProtect false, and the keys must not
// advertise SEIPDv2), AES-256, no compression.
import * as openpgp from 'openpgp';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [mode, work, kind] = process.argv.slice(2);
const QUICK = process.env.QUICK === '1';
const P = QUICK
  ? { runs: 3, budget: 0.04, warmup: 0.02, minIters: 1 }
  : { runs: 5, budget: 0.4, warmup: 0.25, minIters: 1 };
const SIZES = [1024, 65536, 1048576, 16777216];
const BIG = 16777216;
const config = { aeadProtect: false, preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed };
const IMPL = 'openpgpjs';

const log = (msg) => process.stderr.write(`bench: openpgp.js: ${msg}\n`);
const now = () => process.hrtime.bigint();

async function loopFor(fn, budget, minIters) {
  const t0 = now();
  const deadline = t0 + BigInt(Math.round(budget * 1e9));
  let n = 0;
  for (;;) {
    await fn();
    n += 1;
    const t = now();
    if (t >= deadline && n >= minIters) return [Number(t - t0) / 1e9, n];
  }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length;
  return m % 2 ? s[(m - 1) / 2] : (s[m / 2 - 1] + s[m / 2]) / 2;
}

// [median wall s/op, runs, iterations, median CPU s/op of this process (all threads, GC included)]
async function measure(fn) {
  await loopFor(fn, P.warmup, 1);
  const wall = [];
  const cpu = [];
  let iters = 0;
  for (let r = 0; r < P.runs; r++) {
    const c0 = process.cpuUsage();
    const [t, n] = await loopFor(fn, P.budget, P.minIters);
    const c = process.cpuUsage(c0);
    wall.push(t / n);
    cpu.push((c.user + c.system) / 1e6 / n);
    iters += n;
  }
  return [median(wall), P.runs, iters, median(cpu)];
}

function emit(file, row, bytes, [sec, runs, iters, cpu]) {
  appendFileSync(join(work, file),
    [row, IMPL, sec.toExponential(6), bytes, runs, iters, cpu.toExponential(6)].join('\t') + '\n');
}

function assert(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function newKey() {
  return openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name: 'bench', email: 'bench@example.org' }],
    format: 'object',
    config,
  });
}

async function checkKeyProfile(privateKey) {
  assert(privateKey.keyPacket.version === 4, 'v4 key');
  assert(privateKey.keyPacket.algorithm === openpgp.enums.publicKey.eddsaLegacy, 'EdDSA primary');
  assert(privateKey.subkeys[0].keyPacket.algorithm === openpgp.enums.publicKey.ecdh, 'ECDH subkey');
  const { selfCertification } = await privateKey.getPrimaryUser();
  const features = selfCertification.features ? selfCertification.features[0] : 0;
  assert((features & openpgp.enums.features.seipdv2) === 0, 'key does not advertise SEIPDv2');
}

async function checkSeipdV1(msg) {
  const m = typeof msg === 'string'
    ? await openpgp.readMessage({ armoredMessage: msg })
    : await openpgp.readMessage({ binaryMessage: msg });
  const data = m.packets.filter((p) => p.constructor.tag === openpgp.enums.packet.symEncryptedIntegrityProtectedData);
  assert(data.length === 1 && data[0].version === 1, 'SEIPDv1 message');
}

async function encryptSign(data, publicKey, privateKey, armor) {
  const message = await openpgp.createMessage({ binary: data });
  return openpgp.encrypt({
    message, encryptionKeys: publicKey, signingKeys: privateKey,
    format: armor ? 'armored' : 'binary', config,
  });
}

async function decryptVerify(msg, publicKey, privateKey) {
  const message = typeof msg === 'string'
    ? await openpgp.readMessage({ armoredMessage: msg })
    : await openpgp.readMessage({ binaryMessage: msg });
  const { data, signatures } = await openpgp.decrypt({
    message, decryptionKeys: privateKey, verificationKeys: publicKey,
    expectSigned: true, format: 'binary', config,
  });
  // expectSigned already rejects a bad or missing signature; make it explicit.
  await signatures[0].verified;
  return data;
}

const sameBytes = (a, b) => a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

async function run() {
  const out = 'openpgpjs.tsv';
  writeFileSync(join(work, 'openpgpjs_version'), openpgp.config.versionString.replace('OpenPGP.js ', ''));
  const { privateKey, publicKey } = await newKey();
  await checkKeyProfile(privateKey);

  log('keygen');
  emit(out, 'keygen', 0, await measure(() => newKey()));

  for (const n of SIZES) {
    log(`encrypt+sign / decrypt+verify ${n} bytes`);
    const data = new Uint8Array(readFileSync(join(work, `payload_${n}.bin`)));
    for (const armor of [true, false]) {
      const a = armor ? 'arm' : 'bin';
      emit(out, `encsign/${a}/${n}`, n, await measure(() => encryptSign(data, publicKey, privateKey, armor)));
      const msg = await encryptSign(data, publicKey, privateKey, armor);
      await checkSeipdV1(msg);
      assert(sameBytes(await decryptVerify(msg, publicKey, privateKey), data), 'round trip');
      emit(out, `decverify/${a}/${n}`, n, await measure(() => decryptVerify(msg, publicKey, privateKey)));
      if (n === BIG && !armor) {
        writeFileSync(join(work, 'js_mem_msg_bin.pgp'), msg);
      } else if (n === BIG && armor) {
        writeFileSync(join(work, 'js_mem_msg_arm.asc'), msg);
      }
    }
  }
  writeFileSync(join(work, 'js_mem_key.asc'), privateKey.armor());

  log('detached sign / verify 1 KiB');
  const small = new Uint8Array(readFileSync(join(work, 'payload_1024.bin')));
  const sign = async (bytes) => openpgp.sign({
    message: await openpgp.createMessage({ binary: bytes }),
    signingKeys: privateKey, detached: true, format: 'binary', config,
  });
  const verify = async (bytes, sig) => {
    const { signatures } = await openpgp.verify({
      message: await openpgp.createMessage({ binary: bytes }),
      signature: await openpgp.readSignature({ binarySignature: sig }),
      verificationKeys: publicKey, expectSigned: true, config,
    });
    await signatures[0].verified;
  };
  emit(out, 'sign/1024', 1024, await measure(() => sign(small)));
  const sig = await sign(small);
  await verify(small, sig);
  emit(out, 'verify/1024', 1024, await measure(() => verify(small, sig)));

  log('signed JSON document');
  const docText = readFileSync(join(work, 'doc.json'), 'utf8');
  const doc = JSON.parse(docText);
  const docBytes = Buffer.byteLength(docText);
  const signDoc = async (d) => openpgp.sign({
    message: await openpgp.createMessage({ text: JSON.stringify(d) }),
    signingKeys: privateKey, detached: true, format: 'binary', config,
  });
  const verifyDoc = async (d, s) => {
    const { signatures } = await openpgp.verify({
      message: await openpgp.createMessage({ text: JSON.stringify(d) }),
      signature: await openpgp.readSignature({ binarySignature: s }),
      verificationKeys: publicKey, expectSigned: true, config,
    });
    await signatures[0].verified;
  };
  emit(out, 'sign_doc', docBytes, await measure(() => signDoc(doc)));
  const docSig = await signDoc(doc);
  await verifyDoc(doc, docSig);
  emit(out, 'verify_doc', docBytes, await measure(() => verifyDoc(doc, docSig)));
}

function statusKb(field) {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(field + ':'));
  return parseInt(line.split(/\s+/)[1], 10);
}

// Peak extra RSS of one decrypt+verify of the 16 MiB message in this fresh process: the
// same method as couch_pgp_bench:mem/1 (baseline after loading, VmHWM reset by clear_refs).
async function mem() {
  const armor = kind === 'arm';
  const privateKey = await openpgp.readPrivateKey({ armoredKey: readFileSync(join(work, 'js_mem_key.asc'), 'utf8') });
  const publicKey = privateKey.toPublic();
  const warm = await encryptSign(new Uint8Array(16), publicKey, privateKey, armor);
  await decryptVerify(warm, publicKey, privateKey);
  const msg = armor
    ? readFileSync(join(work, 'js_mem_msg_arm.asc'), 'utf8')
    : new Uint8Array(readFileSync(join(work, 'js_mem_msg_bin.pgp')));
  if (global.gc) global.gc();
  await new Promise((r) => setTimeout(r, 100));
  const base = statusKb('VmRSS');
  writeFileSync('/proc/self/clear_refs', '5');
  const plain = await decryptVerify(msg, publicKey, privateKey);
  const hwm = statusKb('VmHWM');
  const extra = (hwm - base) * 1024;
  appendFileSync(join(work, 'openpgpjs_mem.tsv'), [`mem/${kind}`, IMPL, extra, plain.length, 1, 1].join('\t') + '\n');
  log(`mem ${kind}: base ${base} KiB, HWM ${hwm} KiB -> extra ${(extra / plain.length).toFixed(2)} x payload`);
}

if (mode === 'run') await run();
else if (mode === 'mem') await mem();
else throw new Error('usage: node bench.mjs run|mem WORKDIR [KIND]');
