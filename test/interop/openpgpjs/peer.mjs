#!/usr/bin/env node
// OpenPGP.js as a command-line peer for test/couch_pgp_interop_tests.erl.
//
// Every input and output is a file, so that the Erlang side never has to pass binary data
// through argv or a port. Exit status 0 means the operation fully succeeded (for decrypt
// and verify: a good signature by the given certificate); anything else exits 1 with a
// one-line reason on stderr.
//
//   generate --name N --email E --key-out F --cert-out F [--passphrase-file F]
//            prints the primary fingerprint
//   encrypt  --in F --out F --cert F [--sign-key F [--passphrase-file F]] [--binary]
//   decrypt  --in F --out F --key F [--passphrase-file F] [--verify-cert F]
//            with --verify-cert prints "VERIFIED <primary fingerprint>"
//   sign     --in F --out F --key F [--passphrase-file F] [--binary]
//   verify   --in F --sig F --cert F
//            prints "VERIFIED <primary fingerprint>"
import { readFileSync, writeFileSync } from 'node:fs';
import * as openpgp from 'openpgp';

const FLAGS = new Set(['binary']);

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const name = a.slice(2);
    if (FLAGS.has(name)) {
      opts[name] = true;
    } else {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      opts[name] = argv[++i];
    }
  }
  return opts;
}

function need(opts, name) {
  if (opts[name] === undefined) throw new Error(`--${name} is required`);
  return opts[name];
}

// Armored or binary: callers hand us either, and we must not guess from the file name.
function isArmored(bytes) {
  const head = Buffer.from(bytes.subarray(0, 64)).toString('latin1').trimStart();
  return head.startsWith('-----BEGIN PGP');
}

function readBytes(path) {
  return new Uint8Array(readFileSync(path));
}

function readPassphrase(opts) {
  // The file holds the passphrase exactly; a trailing newline would be part of it.
  return opts['passphrase-file'] === undefined ? undefined
    : readFileSync(opts['passphrase-file'], 'utf8');
}

async function readCert(path) {
  const bytes = readBytes(path);
  return isArmored(bytes)
    ? openpgp.readKey({ armoredKey: Buffer.from(bytes).toString('utf8') })
    : openpgp.readKey({ binaryKey: bytes });
}

async function readSecret(path, opts) {
  const bytes = readBytes(path);
  const key = isArmored(bytes)
    ? await openpgp.readPrivateKey({ armoredKey: Buffer.from(bytes).toString('utf8') })
    : await openpgp.readPrivateKey({ binaryKey: bytes });
  const passphrase = readPassphrase(opts);
  return passphrase === undefined || key.isDecrypted()
    ? key
    : openpgp.decryptKey({ privateKey: key, passphrase });
}

async function readMessage(path) {
  const bytes = readBytes(path);
  return isArmored(bytes)
    ? openpgp.readMessage({ armoredMessage: Buffer.from(bytes).toString('utf8') })
    : openpgp.readMessage({ binaryMessage: bytes });
}

async function readSignature(path) {
  const bytes = readBytes(path);
  return isArmored(bytes)
    ? openpgp.readSignature({ armoredSignature: Buffer.from(bytes).toString('utf8') })
    : openpgp.readSignature({ binarySignature: bytes });
}

function fpr(key) {
  return key.getFingerprint().toUpperCase();
}

// OpenPGP.js reports the signing (sub)key id; map it back to the certificate that owns it
// so that the caller sees which certificate verified, not just "some key".
async function verifiedBy(signatures, cert) {
  if (signatures.length === 0) throw new Error('no signatures');
  for (const s of signatures) {
    await s.verified; // throws on a bad signature
    if (cert.getKeys(s.keyID).length > 0) return fpr(cert);
  }
  throw new Error('no signature by the given certificate');
}

function writeOut(path, data) {
  writeFileSync(path, typeof data === 'string' ? data : Buffer.from(data));
}

const commands = {
  async generate(opts) {
    const passphrase = readPassphrase(opts);
    const { privateKey, publicKey } = await openpgp.generateKey({
      type: 'ecc',
      curve: 'curve25519Legacy',
      userIDs: [{ name: need(opts, 'name'), email: need(opts, 'email') }],
      ...(passphrase === undefined ? {} : { passphrase }),
      format: 'armored',
    });
    writeOut(need(opts, 'key-out'), privateKey);
    writeOut(need(opts, 'cert-out'), publicKey);
    console.log(fpr(await openpgp.readKey({ armoredKey: publicKey })));
  },

  async encrypt(opts) {
    const message = await openpgp.createMessage({ binary: readBytes(need(opts, 'in')) });
    const encryptionKeys = await readCert(need(opts, 'cert'));
    const signingKeys = opts['sign-key'] === undefined ? undefined
      : await readSecret(opts['sign-key'], opts);
    const out = await openpgp.encrypt({
      message,
      encryptionKeys,
      ...(signingKeys === undefined ? {} : { signingKeys }),
      format: opts.binary ? 'binary' : 'armored',
    });
    writeOut(need(opts, 'out'), out);
  },

  async decrypt(opts) {
    const message = await readMessage(need(opts, 'in'));
    const decryptionKeys = await readSecret(need(opts, 'key'), opts);
    const cert = opts['verify-cert'] === undefined ? undefined
      : await readCert(opts['verify-cert']);
    const { data, signatures } = await openpgp.decrypt({
      message,
      decryptionKeys,
      ...(cert === undefined ? {} : { verificationKeys: cert, expectSigned: true }),
      format: 'binary',
    });
    const signer = cert === undefined ? undefined : await verifiedBy(signatures, cert);
    writeOut(need(opts, 'out'), data);
    if (signer !== undefined) console.log(`VERIFIED ${signer}`);
  },

  async sign(opts) {
    const message = await openpgp.createMessage({ binary: readBytes(need(opts, 'in')) });
    const signingKeys = await readSecret(need(opts, 'key'), opts);
    const sig = await openpgp.sign({
      message,
      signingKeys,
      detached: true,
      format: opts.binary ? 'binary' : 'armored',
    });
    writeOut(need(opts, 'out'), sig);
  },

  async verify(opts) {
    const message = await openpgp.createMessage({ binary: readBytes(need(opts, 'in')) });
    const signature = await readSignature(need(opts, 'sig'));
    const cert = await readCert(need(opts, 'cert'));
    const { signatures } = await openpgp.verify({
      message,
      signature,
      verificationKeys: cert,
      expectSigned: true,
    });
    console.log(`VERIFIED ${await verifiedBy(signatures, cert)}`);
  },
};

async function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  if (!Object.hasOwn(commands, cmd)) throw new Error(`unknown command ${cmd}`);
  await commands[cmd](parseArgs(rest));
}

main().catch((e) => {
  console.error(`peer.mjs: ${e && e.message ? e.message : e}`);
  process.exit(1);
});
