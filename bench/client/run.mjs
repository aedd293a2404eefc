// The browser client's per-message cost, channel mode against per-message mode, in one run:
//
//   node bench/client/run.mjs            (QUICK=1 for rough numbers in a few seconds)
//
// For each payload (the request or response body: 1 KiB and 64 KiB of JSON text) it measures
// what the client does for one exchange, with the client's own modules:
//   build request  envelope (random nonce) → JSON → channel: seal under c2s (src/channel.js)
//                  | per-message: encrypt to the session cert and sign (src/pgp.js, OpenPGP.js)
//   open response  body as received ({"pgp": ...}) → channel: base64 → open under s2c → JSON
//                  | per-message: decrypt with our key, verify the session key's signature → JSON
// Each operation is timed one call at a time, the two modes in alternating rounds; the table
// shows the median (and p90) of many calls after a warm-up. Network, fetch and the server are not included. Progress goes to
// stderr, the table to stdout. Never asserted in CI.
import os from 'node:os';
import { importChannelKey, openData, sealData } from '../../client/src/channel.js';
import { decryptVerified, encryptSigned, generateKey } from '../../client/src/pgp.js';
import { fromBase64Strict, randomBase64, toBase64 } from '../../client/src/bytes.js';

const QUICK = process.env.QUICK === '1';
const BUDGET_S = QUICK ? 0.6 : 4; // per row, both modes
const WARMUP_S = QUICK ? 0.05 : 0.3;
const MAX_ITERS = 20000;
const SIZES = [1024, 65536];
const log = (m) => process.stderr.write(`bench client: ${m}\n`);

// Channel and per-message samples are taken in alternating rounds, so that both see the same
// load on a shared machine.
const ROUNDS = QUICK ? 2 : 6;
async function timePair(fns) {
  const until = (sec) => process.hrtime.bigint() + BigInt(Math.round(sec * 1e9));
  const samples = fns.map(() => []);
  for (const fn of fns) for (const end = until(WARMUP_S); process.hrtime.bigint() < end;) await fn();
  for (let r = 0; r < ROUNDS; r += 1) {
    for (const [i, fn] of fns.entries()) {
      const end = until(BUDGET_S / ROUNDS / fns.length);
      let n = 0;
      while (n < MAX_ITERS / ROUNDS && (process.hrtime.bigint() < end || n < 5)) {
        const t0 = process.hrtime.bigint();
        await fn();
        samples[i].push(Number(process.hrtime.bigint() - t0) / 1e6);
        n += 1;
      }
    }
  }
  return samples.map((xs) => {
    xs.sort((a, b) => a - b);
    const at = (q) => xs[Math.min(xs.length - 1, Math.floor(q * xs.length))];
    return { median: at(0.5), p90: at(0.9), n: xs.length };
  });
}

/** A JSON body of exactly `n` characters, not compressible into anything trivial. */
function body(n) {
  const filler = randomBase64(Math.ceil(n * 0.75) + 3).slice(0, n - 12);
  return `{"data":"${filler}"}`.padEnd(n, ' ');
}

const envelope = (text) => ({ v: 1, method: 'PUT', path: '/patients/p-1', query: '', ts: Date.now(),
  nonce: randomBase64(16), content_type: 'application/json', body: text });
const response = (text, nonce) => ({ v: 1, status: 200, nonce, content_type: 'application/json', body: text });

log('keys');
const clientKey = await generateKey({ userID: 'bench client' });
const sessionKey = await generateKey({ userID: 'bench session' });
const clientCert = clientKey.toPublic();
const sessionCert = sessionKey.toPublic();
const c2s = await importChannelKey(globalThis.crypto.getRandomValues(new Uint8Array(32)));
const s2c = await importChannelKey(globalThis.crypto.getRandomValues(new Uint8Array(32)));
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

const rows = [];
for (const size of SIZES) {
  const text = body(size);
  const nonce = randomBase64(16);
  // What the server would send: channel answers as {"pgp": base64}, per-message ones armored.
  const channelWire = JSON.stringify({ pgp: toBase64(await sealData(s2c, enc.encode(JSON.stringify(response(text, nonce))))) });
  const sessionWire = JSON.stringify({ pgp: await encryptSigned(JSON.stringify(response(text, nonce)), [clientCert], sessionKey) });
  const ops = {
    'build request': {
      channel: async () => sealData(c2s, enc.encode(JSON.stringify(envelope(text)))),
      session: async () => encryptSigned(JSON.stringify(envelope(text)), [sessionCert], clientKey),
    },
    'open response': {
      channel: async () => JSON.parse(dec.decode(await openData(s2c, fromBase64Strict(JSON.parse(channelWire).pgp)))),
      session: async () => JSON.parse((await decryptVerified(JSON.parse(sessionWire).pgp, clientKey, [sessionCert])).text),
    },
  };
  for (const [op, impls] of Object.entries(ops)) {
    log(`${op} ${size} B`);
    const [channel, session] = await timePair([impls.channel, impls.session]);
    rows.push({ op, size, channel, session });
  }
}

const ms = (x) => x.toFixed(3);
const kib = (n) => `${n / 1024} KiB`;
console.log(`\nclient per-message cost, node ${process.version}, ${os.cpus()[0]?.model || 'cpu'} ×${os.cpus().length}`
  + `${QUICK ? ' (QUICK: rough)' : ''}\n`);
console.log('| operation | payload | channel ms (median / p90) | per-message ms (median / p90) | per-message ÷ channel | runs (channel / per-message) |');
console.log('|---|---|---|---|---|---|');
for (const { op, size, channel, session } of rows) {
  console.log(`| ${op} | ${kib(size)} | ${ms(channel.median)} / ${ms(channel.p90)} | ${ms(session.median)} / ${ms(session.p90)} `
    + `| ${(session.median / channel.median).toFixed(1)}× | ${channel.n} / ${session.n} |`);
}
const exchange = (size, mode) => rows.filter((r) => r.size === size).reduce((t, r) => t + r[mode].median, 0);
console.log('');
for (const size of SIZES) {
  console.log(`one exchange at ${kib(size)} (build + open, medians): channel ${ms(exchange(size, 'channel'))} ms, `
    + `per-message ${ms(exchange(size, 'session'))} ms`);
}
