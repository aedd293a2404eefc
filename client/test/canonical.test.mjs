// The shared RFC 8785 vectors (also run by cargo test and EUnit) and the JS-value rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { canonicalJSON, canonicalizeText, CanonicalJSONError } from '../src/index.js';

const vectors = JSON.parse(readFileSync(new URL('../../test/vectors/canonical_json.json', import.meta.url)));

test('shared vectors: cases', () => {
  assert.ok(vectors.cases.length >= 10);
  for (const c of vectors.cases) assert.equal(canonicalizeText(c.input), c.canonical, c.name);
});

test('shared vectors: cases through JSON.parse and canonicalJSON agree', () => {
  for (const c of vectors.cases) {
    if (c.name === 'number-forms') {
      // 1e20 is a double in JSON text, but as a JS value JSON.stringify writes it as the
      // integer 100000000000000000000, which the server would read back as an integer beyond
      // 2^53 and refuse: so the value is refused here, before anything is signed.
      assert.throws(() => canonicalJSON(JSON.parse(c.input)), { reason: 'number_out_of_range' });
      continue;
    }
    assert.equal(canonicalJSON(JSON.parse(c.input)), c.canonical, c.name);
  }
});

test('shared vectors: numbers by bit pattern', () => {
  const view = new DataView(new ArrayBuffer(8));
  for (const { bits, canonical, error } of vectors.numbers) {
    view.setBigUint64(0, BigInt(`0x${bits}`));
    const f = view.getFloat64(0);
    if (error) {
      assert.throws(() => canonicalJSON(f), { reason: error }, bits);
    } else if (Number.isInteger(f) && Math.abs(f) > 2 ** 53 && Math.abs(f) < 1e21) {
      // As a JS value this integer is refused (the server would read it back as an integer);
      // as a double written with an exponent it is fine.
      assert.throws(() => canonicalJSON(f), { reason: 'number_out_of_range' }, bits);
      assert.equal(canonicalizeText(f.toExponential()), canonical, bits);
    } else {
      assert.equal(canonicalJSON(f), canonical, bits);
    }
  }
});

test('shared vectors: every invalid input is refused with the same reason as the server', () => {
  for (const c of vectors.invalid) {
    assert.throws(() => canonicalizeText(c.input), (e) => e instanceof CanonicalJSONError && e.reason === c.error,
      c.name);
  }
});

test('JS values: the value JSON.stringify would send', () => {
  const d = new Date(Date.UTC(2026, 10, 28));
  assert.equal(canonicalJSON({ b: undefined, a: d, f() {}, c: [undefined] }),
    '{"a":"2026-11-28T00:00:00.000Z","c":[null]}');
  assert.equal(canonicalJSON({ z: 1, Z: 2, é: 3, '😀': 4, '\uffff': 5 }),
    '{"Z":2,"z":1,"é":3,"😀":4,"\uffff":5}');
  assert.equal(canonicalJSON(-0), '0');
  assert.equal(canonicalJSON(2 ** 53), '9007199254740992');
  assert.equal(canonicalJSON(1e21), '1e+21');
});

test('JS values: refusals', () => {
  const refuse = (v, reason) => assert.throws(() => canonicalJSON(v), { reason });
  refuse(NaN, 'number_out_of_range');
  refuse({ x: Infinity }, 'number_out_of_range');
  refuse(2 ** 53 + 2, 'number_out_of_range');
  refuse('\ud800', 'invalid_utf8');
  refuse({ '\udc00': 1 }, 'invalid_utf8');
  refuse(10n, 'invalid_value');
  refuse(undefined, 'invalid_value');
  const cyc = {}; cyc.self = cyc;
  refuse(cyc, 'invalid_value');
  let deep = 1; for (let i = 0; i < 65; i += 1) deep = [deep];
  refuse(deep, 'invalid_value');
  let ok = 1; for (let i = 0; i < 64; i += 1) ok = [ok];
  assert.equal(canonicalJSON(ok).length, 64 * 2 + 1);
  assert.throws(() => canonicalizeText(`${'['.repeat(65)}${']'.repeat(65)}`), { reason: 'invalid_value' });
});
