// RFC 8785 JSON Canonicalization Scheme, with the same refusals as the server's core
// (native/couch_pgp_nif/src/canonical.rs), so that what this client signs is what the server
// verifies byte for byte. The shared vectors in test/vectors/canonical_json.json run here too.
import { CanonicalJSONError } from './errors.js';

/** Deepest container nesting accepted, as on the server. */
export const MAX_DEPTH = 64;
const MAX_SAFE = 2 ** 53;

const wellFormed = typeof String.prototype.isWellFormed === 'function'
  ? (s) => s.isWellFormed()
  : (s) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);

function str(s) {
  if (!wellFormed(s)) throw new CanonicalJSONError('invalid_utf8', 'a string holds a lone surrogate');
  // JSON.stringify escapes exactly what RFC 8785 3.2.2.2 asks for (well-formed input).
  return JSON.stringify(s);
}

function num(n, literalIsFloat = false) {
  if (!Number.isFinite(n)) throw new CanonicalJSONError('number_out_of_range', `${n} is not a JSON number`);
  // An integer printed without an exponent but beyond 2^53 would be read back by the server
  // as an integer it cannot represent exactly; refuse rather than sign a rounded number.
  // (JSON text that wrote it with a fraction or exponent is a double, and fine.)
  if (!literalIsFloat && Number.isInteger(n) && Math.abs(n) > MAX_SAFE && Math.abs(n) < 1e21) {
    throw new CanonicalJSONError('number_out_of_range', 'an integer beyond ±2^53 cannot be signed exactly');
  }
  return JSON.stringify(n); // ECMAScript Number::toString, which RFC 8785 prescribes
}

/**
 * The canonical JSON text of a JavaScript value: the value JSON.stringify would send (toJSON
 * applied, undefined and function members left out), with members sorted by UTF-16 code
 * units and numbers and strings in ECMAScript form. Refused: non-finite numbers, integers
 * beyond ±2^53, strings with lone surrogates, BigInt, cycles, nesting deeper than 64.
 * @param {unknown} value
 * @returns {string}
 */
export function canonicalJSON(value) {
  const out = encode(value, 0, new Set(), '');
  if (out === undefined) throw new CanonicalJSONError('invalid_value', 'undefined has no JSON form');
  return out;
}

function encode(v0, depth, seen, key) {
  const v = v0 !== null && typeof v0 === 'object' && typeof v0.toJSON === 'function' ? v0.toJSON(key) : v0;
  switch (typeof v) {
    case 'string': return str(v);
    case 'number': return num(v);
    case 'boolean': return v ? 'true' : 'false';
    case 'undefined': case 'function': case 'symbol': return undefined;
    case 'bigint': throw new CanonicalJSONError('invalid_value', 'BigInt has no JSON form');
    default: break;
  }
  if (v === null) return 'null';
  if (depth >= MAX_DEPTH) throw new CanonicalJSONError('invalid_value', `nesting deeper than ${MAX_DEPTH}`);
  if (seen.has(v)) throw new CanonicalJSONError('invalid_value', 'the value contains a cycle');
  seen.add(v);
  let out;
  if (Array.isArray(v)) {
    out = `[${v.map((x, i) => encode(x, depth + 1, seen, String(i)) ?? 'null').join(',')}]`;
  } else {
    const members = [];
    for (const k of Object.keys(v).sort()) {
      const e = encode(v[k], depth + 1, seen, k);
      if (e !== undefined) members.push(`${str(k)}:${e}`);
    }
    out = `{${members.join(',')}}`;
  }
  seen.delete(v);
  return out;
}

/** UTF-8 bytes of canonicalJSON(value): what a signature covers. */
export function canonicalBytes(value) {
  return new TextEncoder().encode(canonicalJSON(value));
}

/**
 * Canonicalizes JSON text, refusing what JSON.parse would quietly accept: duplicate member
 * names, integers beyond ±2^53 (rounded by JSON.parse), numbers out of double range, lone
 * surrogates, nesting deeper than 64.
 * @param {string} text
 * @returns {string}
 */
export function canonicalizeText(text) {
  const p = new Parser(text);
  p.ws();
  const out = p.value(0);
  p.ws();
  if (p.i !== text.length) p.fail('trailing characters after the value');
  return out;
}

class Parser {
  constructor(text) { this.s = text; this.i = 0; }

  fail(why) { throw new CanonicalJSONError('syntax', `${why} at offset ${this.i}`); }

  ws() { while (this.i < this.s.length && ' \t\n\r'.includes(this.s[this.i])) this.i += 1; }

  expect(c) { if (this.s[this.i] !== c) this.fail(`expected '${c}'`); this.i += 1; }

  value(depth) {
    const c = this.s[this.i];
    if (c === '{' || c === '[') {
      if (depth >= MAX_DEPTH) throw new CanonicalJSONError('invalid_value', `nesting deeper than ${MAX_DEPTH}`);
      return c === '{' ? this.object(depth + 1) : this.array(depth + 1);
    }
    if (c === '"') return str(this.string());
    for (const [lit, out] of [['true', 'true'], ['false', 'false'], ['null', 'null']]) {
      if (this.s.startsWith(lit, this.i)) { this.i += lit.length; return out; }
    }
    return this.number();
  }

  object(depth) {
    this.expect('{'); this.ws();
    const members = new Map();
    if (this.s[this.i] === '}') { this.i += 1; return '{}'; }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail('expected a member name');
      const k = this.string();
      if (members.has(k)) throw new CanonicalJSONError('duplicate_key', 'an object has a member name twice');
      this.ws(); this.expect(':'); this.ws();
      members.set(k, this.value(depth));
      this.ws();
      if (this.s[this.i] === ',') { this.i += 1; continue; }
      this.expect('}');
      break;
    }
    return `{${[...members.keys()].sort().map((k) => `${str(k)}:${members.get(k)}`).join(',')}}`;
  }

  array(depth) {
    this.expect('['); this.ws();
    const items = [];
    if (this.s[this.i] === ']') { this.i += 1; return '[]'; }
    for (;;) {
      this.ws();
      items.push(this.value(depth));
      this.ws();
      if (this.s[this.i] === ',') { this.i += 1; continue; }
      this.expect(']');
      break;
    }
    return `[${items.join(',')}]`;
  }

  string() {
    const m = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(this.s.slice(this.i));
    if (!m) this.fail('bad string');
    this.i += m[0].length;
    return JSON.parse(m[0]); // lone surrogates survive this; str() refuses them
  }

  number() {
    const m = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(this.s.slice(this.i));
    if (!m) this.fail('unexpected character');
    this.i += m[0].length;
    if (m[1] === undefined && m[2] === undefined) {
      const big = BigInt(m[0]);
      if (big > BigInt(MAX_SAFE) || big < -BigInt(MAX_SAFE)) {
        throw new CanonicalJSONError('number_out_of_range', 'an integer beyond ±2^53');
      }
    }
    return num(Number(m[0]), true);
  }
}
