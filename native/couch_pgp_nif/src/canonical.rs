//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! The input model is deliberately small so that both Erlang terms (EJSON, maps) and JSON
//! text can be brought to it: `nif.rs` converts terms, `from_text` parses text. Numbers are
//! IEEE 754 doubles as RFC 8785 requires; integers outside ±2^53 are refused rather than
//! rounded, because a signature over a rounded number would also cover a different one.

use crate::error::JsonError;

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// An integer known to be exactly representable (|n| <= 2^53).
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    /// Members in input order; duplicates are refused at construction.
    Object(Vec<(String, Json)>),
}

pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_992; // 2^53

/// Deepest nesting accepted; deeper input is refused. The conversions recurse, and NIFs run
/// on dirty scheduler threads whose stacks are small (320 KB by default): measured at about
/// 1.2 KB of stack per level, 300 levels overflowed it and took the VM down. 64 levels keep
/// every path under a third of that stack; CouchDB documents are far flatter.
pub const MAX_DEPTH: usize = 64;

impl Json {
    pub fn int(n: i128) -> Result<Json, JsonError> {
        if n.unsigned_abs() > MAX_SAFE_INTEGER as u128 {
            return Err(JsonError::NumberOutOfRange);
        }
        Ok(Json::Int(n as i64))
    }

    pub fn float(f: f64) -> Result<Json, JsonError> {
        if !f.is_finite() {
            return Err(JsonError::NumberOutOfRange);
        }
        Ok(Json::Float(f))
    }

    /// Builds an object, refusing duplicate member names.
    pub fn object(members: Vec<(String, Json)>) -> Result<Json, JsonError> {
        if members.len() > 1 {
            let mut names: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
            names.sort_unstable();
            if names.windows(2).any(|w| w[0] == w[1]) {
                return Err(JsonError::DuplicateKey);
            }
        }
        Ok(Json::Object(members))
    }
}

/// Canonical UTF-8 bytes of `value`.
pub fn canonicalize(value: &Json) -> Result<Vec<u8>, JsonError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out, 0)?;
    Ok(out)
}

fn write_value(value: &Json, out: &mut Vec<u8>, depth: usize) -> Result<(), JsonError> {
    if depth > MAX_DEPTH {
        return Err(JsonError::InvalidValue);
    }
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Json::Float(f) => out.extend_from_slice(format_number(*f)?.as_bytes()),
        Json::Str(s) => write_string(s, out),
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out, depth + 1)?;
            }
            out.push(b']');
        }
        Json::Object(members) => {
            let mut sorted: Vec<&(String, Json)> = members.iter().collect();
            // RFC 8785 3.2.3: member names sorted by their UTF-16 code units.
            sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (name, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_value(v, out, depth + 1)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// RFC 8785 3.2.2.2: the escapes of ECMAScript's JSON.stringify, everything else verbatim.
pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    // Two passes: the exact output length first (a sum the compiler vectorises), then every
    // byte written in place. Bodies of JSON documents carried as strings escape a quote every
    // few bytes, where copying the runs between escapes cost four times as much (callgrind:
    // 1.2 M instructions for a 64 KiB envelope body, against 0.3 M this way).
    let extra: usize = bytes.iter().map(|&b| usize::from(ESCAPE_EXTRA[usize::from(b)])).sum();
    if extra == 0 {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let at = out.len();
    out.resize(at + bytes.len() + extra + 2, 0);
    let dst = &mut out[at..];
    dst[0] = b'"';
    let mut j = 1;
    for &b in bytes {
        match ESCAPE[usize::from(b)] {
            0 => {
                dst[j] = b;
                j += 1;
            }
            b'u' => {
                dst[j..j + 6].copy_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
                j += 6;
            }
            e => {
                dst[j] = b'\\';
                dst[j + 1] = e;
                j += 2;
            }
        }
    }
    dst[j] = b'"';
    debug_assert_eq!(j + 1, dst.len());
}

/// For each byte: 0 when it stands for itself, else the letter after the backslash (`u` for
/// the six-byte `\u00XX` form). RFC 8785 3.2.2.2: JSON.stringify's escapes.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// How many bytes each byte's escape adds: 0, 1 (`\n`, `\"`), or 5 (`\u00XX`).
const ESCAPE_EXTRA: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match ESCAPE[b] {
            0 => 0,
            b'u' => 5,
            _ => 1,
        };
        b += 1;
    }
    t
};

/// ECMAScript Number::toString (ECMA-262 7.1.12.1) for a finite double, which is what
/// RFC 8785 3.2.2.3 prescribes: the fewest digits that round-trip and, among those, the
/// ones closest to the exact value, ties to even. Rust's `{:e}` finds the fewest digits but
/// may pick a different candidate on a tie (0x43143ff3c1cb0959 is exactly
/// 1424953923781206.25: Rust's shortest says ...06.3, ECMAScript ...06.2), so the digits are
/// re-derived by exact rounding at that length, kept only if they still round-trip.
pub fn format_number(f: f64) -> Result<String, JsonError> {
    if !f.is_finite() {
        return Err(JsonError::NumberOutOfRange);
    }
    if f == 0.0 {
        return Ok("0".to_string()); // also -0
    }
    let shortest = format!("{:e}", f.abs());
    let k = shortest.split_once('e').map_or(0, |(m, _)| m.chars().filter(|c| *c != '.').count());
    let exact = format!("{:.*e}", k.saturating_sub(1), f.abs());
    let sci = if exact.parse::<f64>() == Ok(f.abs()) { exact } else { shortest };
    let (mantissa, exp) = sci.split_once('e').ok_or(JsonError::InvalidValue)?;
    let exp: i32 = exp.parse().map_err(|_| JsonError::InvalidValue)?;
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exp + 1; // value = 0.digits * 10^n
    let mut s = String::with_capacity(32);
    if f < 0.0 {
        s.push('-');
    }
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        s.push_str(&digits[..n as usize]);
        s.push('.');
        s.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-n) as usize));
        s.push_str(&digits);
    } else {
        s.push_str(&digits[..1]);
        if k > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if n > 0 { '+' } else { '-' });
        s.push_str(&(n - 1).abs().to_string());
    }
    Ok(s)
}

/// Parses JSON text (as a client sends it) into the model, with the same refusals as the
/// term path: duplicate names, integers beyond ±2^53.
pub fn from_text(text: &[u8]) -> Result<Json, JsonError> {
    if nesting_exceeds(text, MAX_DEPTH) {
        return Err(JsonError::InvalidValue);
    }
    let mut de = serde_json::Deserializer::from_slice(text);
    let v = <Json as serde::Deserialize>::deserialize(&mut de).map_err(|e| {
        // Our own refusals travel through serde as custom messages; serde_json's own
        // messages are matched for the two refusals it makes before we see a value.
        let msg = e.to_string();
        if msg.starts_with(JsonError::DuplicateKey.atom_name()) {
            JsonError::DuplicateKey
        } else if msg.starts_with(JsonError::NumberOutOfRange.atom_name())
            || msg.starts_with("number out of range")
        {
            JsonError::NumberOutOfRange
        } else if msg.contains("surrogate") || msg.contains("end of hex escape") {
            JsonError::InvalidUtf8
        } else {
            JsonError::Syntax
        }
    })?;
    de.end().map_err(|_| JsonError::Syntax)?;
    Ok(v)
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

fn refuse<E: serde::de::Error>(e: JsonError) -> E {
    E::custom(e.atom_name())
}

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Json, E> {
        Json::int(n as i128).map_err(refuse)
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Json, E> {
        Json::int(n as i128).map_err(refuse)
    }
    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Json, E> {
        Json::float(f).map_err(refuse)
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Json, E> {
        Ok(Json::Str(s.to_owned()))
    }
    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Json, E> {
        Ok(Json::Str(s))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Json>()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            members.push((k, v));
        }
        Json::object(members).map_err(refuse)
    }
}

/// Whether JSON text nests arrays/objects deeper than `max`, found without recursion so that
/// the recursive parser only ever sees input it can finish.
fn nesting_exceeds(text: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => {
                // A string, skipped to its closing quote in memchr's strides: a document
                // carried as an envelope's body is one long string.
                i += 1;
                loop {
                    let Some(rest) = text.get(i..) else { return false };
                    match memchr::memchr2(b'"', b'\\', rest) {
                        // Unterminated: the parser refuses it.
                        None => return false,
                        Some(k) if rest[k] == b'\\' => i += k + 2,
                        Some(k) => {
                            i += k + 1;
                            break;
                        }
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time scan the strided one replaced.
    fn nesting_exceeds_bytewise(text: &[u8], max: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &b in text {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max {
                        return true;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        false
    }

    #[test]
    fn nesting_scan_agrees_with_bytewise_scan() {
        // Deterministic pseudo-random texts over the bytes that matter, of every length
        // up to 40, plus strings that end in a backslash.
        let alphabet = b"[]{}\\\"a,:";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..40 {
            for _ in 0..400 {
                let text: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect();
                for max in [0, 1, 2, 3, 64] {
                    assert_eq!(nesting_exceeds(&text, max), nesting_exceeds_bytewise(&text, max), "{text:?} {max}");
                }
            }
        }
        for text in [&b"\"\\"[..], b"[\"\\", b"[[\"\\\"]]\"[[", b"\"\\\\\"[[["] {
            assert_eq!(nesting_exceeds(text, 1), nesting_exceeds_bytewise(text, 1), "{text:?}");
        }
    }

    /// serde_json escapes exactly what JSON.stringify does for a Rust string (no lone
    /// surrogates can occur): the same bytes, for every character and for mixed runs.
    #[test]
    fn strings_escape_as_json_stringify() -> serde_json::Result<()> {
        let mut cases: Vec<String> = (0u32..0x300).filter_map(char::from_u32).map(String::from).collect();
        cases.push(String::new());
        cases.push("plain ascii, no escapes at all".into());
        cases.push("{\"a\":\"b\\\\c\"}\n\t\u{1}\u{1f}\u{7f}é😀\r\u{8}\u{c}".repeat(50));
        cases.push("x".repeat(70_000) + "\"");
        for s in cases {
            let mut out = b"[".to_vec();
            write_string(&s, &mut out);
            assert_eq!(out[1..], *serde_json::to_string(&s)?.as_bytes(), "{s:?}");
        }
        Ok(())
    }
}
