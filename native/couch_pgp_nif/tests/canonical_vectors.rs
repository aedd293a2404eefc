//! The shared RFC 8785 vectors in test/vectors/, also run by EUnit and the JS client.

use couch_pgp_nif::canonical::{canonicalize, format_number, from_text};
use couch_pgp_nif::error::JsonError;
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test/vectors/canonical_json.json");
    let text = std::fs::read(path).expect("vector file");
    serde_json::from_slice(&text).expect("vector file is JSON")
}

fn str_field<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name].as_str().unwrap_or_else(|| panic!("field {name} in {v}"))
}

#[test]
fn canonical_cases() {
    let v = vectors();
    let cases = v["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    for case in cases {
        let json = from_text(str_field(case, "input").as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", str_field(case, "name")));
        let out = canonicalize(&json).expect("canonicalize");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            str_field(case, "canonical"),
            "case {}",
            str_field(case, "name")
        );
    }
}

#[test]
fn number_vectors() {
    let v = vectors();
    let numbers = v["numbers"].as_array().expect("numbers");
    assert!(numbers.len() >= 25);
    for n in numbers {
        let bits = u64::from_str_radix(str_field(n, "bits"), 16).expect("hex");
        let f = f64::from_bits(bits);
        match n["canonical"].as_str() {
            Some(expected) => assert_eq!(format_number(f).as_deref(), Ok(expected), "bits {bits:016x}"),
            None => assert_eq!(format_number(f), Err(JsonError::NumberOutOfRange), "bits {bits:016x}"),
        }
    }
}

#[test]
fn invalid_inputs_are_refused_with_the_stated_reason() {
    let v = vectors();
    for case in v["invalid"].as_array().expect("invalid") {
        let got = from_text(str_field(case, "input").as_bytes()).map(|_| ());
        let want = str_field(case, "error");
        match got {
            Ok(()) => panic!("{} accepted", str_field(case, "name")),
            Err(e) => assert_eq!(e.atom_name(), want, "case {}", str_field(case, "name")),
        }
    }
}

/// 20,000 random doubles (fixed seed) formatted here and by ECMAScript (node) itself.
#[test]
fn random_doubles_match_ecmascript() {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    use std::process::{Command, Stdio};

    let mut rng = rand::rngs::StdRng::seed_from_u64(8785);
    let mut values = Vec::new();
    while values.len() < 20_000 {
        let f = f64::from_bits(rng.random::<u64>());
        if f.is_finite() {
            values.push(f);
        }
    }
    // Also values with few significant digits, where the layout rules (not the digits) matter.
    for e in -30..30 {
        values.push(1.5 * 10f64.powi(e));
        values.push(-(rng.random_range(1..1000) as f64) * 10f64.powi(e));
    }
    let script = "let s='';process.stdin.on('data',d=>s+=d);process.stdin.on('end',()=>{\
        const out=s.trim().split('\\n').map(h=>{const v=new DataView(new ArrayBuffer(8));\
        v.setBigUint64(0,BigInt('0x'+h));return JSON.stringify(v.getFloat64(0));});\
        process.stdout.write(out.join('\\n'));});";
    let mut child = Command::new("node")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is installed by scripts/setup.sh");
    let input: String = values.iter().map(|f| format!("{:016x}\n", f.to_bits())).collect();
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("node output");
    assert!(out.status.success());
    let theirs: Vec<&str> = std::str::from_utf8(&out.stdout).expect("utf8").split('\n').collect();
    assert_eq!(theirs.len(), values.len());
    for (f, js) in values.iter().zip(theirs) {
        assert_eq!(format_number(*f).as_deref(), Ok(js), "bits {:016x}", f.to_bits());
    }
}

/// Found by the `json` fuzz target (notes/README-fuzz.md, finding 1): a double written with a
/// fraction or an exponent is accepted whatever its size (as the JS client does), but when it
/// is an integer beyond 2^53 below 1e21, ECMAScript lays it out as a bare integer, which the
/// same parser then refuses. Pinned here so a change of that rule is a deliberate one.
#[test]
fn big_integral_double_canonicalizes_to_an_integer_the_parser_refuses() {
    use couch_pgp_nif::canonical::{canonicalize, from_text};
    use couch_pgp_nif::error::JsonError;
    for (text, canonical) in [
        (&b"90199254747199254.40993"[..], &b"90199254747199250"[..]),
        (b"1e17", b"100000000000000000"),
    ] {
        let v = from_text(text).expect("a double is accepted");
        assert_eq!(canonicalize(&v).expect("canonical"), canonical);
        assert_eq!(from_text(canonical).map(|_| ()), Err(JsonError::NumberOutOfRange));
    }
    // Written as a double, 2^53 + 1 is rounded to 2^53 (the integer spelling is refused).
    let v = from_text(b"9007199254740993.0").expect("double");
    assert_eq!(canonicalize(&v).expect("canonical"), b"9007199254740992");
}
