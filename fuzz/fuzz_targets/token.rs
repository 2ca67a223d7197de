//! Signed tokens (EdDSA JWTs), three ways, against fixed keys:
//!
//! - input starting with `0`: the rest, as text, is a token. Nobody without the key can
//!   make one, so anything but the known valid token must be refused.
//! - `1`: a valid token, then `Arbitrary` edits (flip, insert, remove, truncate, swap or
//!   replace a segment). A token that is not byte-for-byte the original must be refused.
//! - `2`: `Arbitrary` header and claims JSON, really signed. Accepted claims must be what
//!   the token says (`sub` and `exp` as given, `exp`/`nbf` honoured at the given clock).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::Signer;
use libfuzzer_sys::fuzz_target;
use parlor_core::app::auth::{sign, verify, AuthKey};
use parlor_fuzz::{other_key, signing_key, J};
use serde_json::{json, Value};
use std::sync::OnceLock;

const NOW: u64 = 1_000_000;

fn keys() -> &'static [Vec<AuthKey>; 2] {
    static KEYS: OnceLock<[Vec<AuthKey>; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let k = signing_key().verifying_key().to_bytes();
        let o = other_key().verifying_key().to_bytes();
        [
            vec![AuthKey { kid: None, key: k }],
            vec![AuthKey { kid: Some("old".into()), key: o }, AuthKey { kid: Some("new".into()), key: k }],
        ]
    })
}

/// Valid tokens: one without kid (for the single-key set), one with `kid: new`.
fn valid() -> &'static [String; 2] {
    static VALID: OnceLock<[String; 2]> = OnceLock::new();
    VALID.get_or_init(|| {
        let claims = json!({"sub": "alice", "name": "Alice", "exp": NOW + 60, "nbf": NOW - 60, "admin": false});
        [sign(&signing_key(), None, &claims), sign(&signing_key(), Some("new"), &claims)]
    })
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Flip { at: u16, bit: u8 },
    Insert { at: u16, byte: u8 },
    Remove { at: u16 },
    Truncate { len: u16 },
    Swap { a: u8, b: u8 },
    Replace { seg: u8, with: String },
    ReplaceJson { seg: u8, with: J },
}

#[derive(Arbitrary, Debug)]
struct Tamper {
    which: bool,
    edits: Vec<Edit>,
}

#[derive(Arbitrary, Debug)]
struct Signed {
    kid: Option<bool>,
    alg: Option<J>,
    header_extra: Vec<(String, J)>,
    claims: J,
    sub: Option<J>,
    exp: Option<Num>,
    nbf: Option<Num>,
    name: Option<J>,
    admin: Option<J>,
    leeway: u8,
}

#[derive(Arbitrary, Debug)]
enum Num {
    Near(i8),
    Any(u64),
    Json(J),
}

impl Num {
    fn value(&self) -> Value {
        match self {
            Num::Near(d) => json!(NOW.saturating_add_signed(i64::from(*d))),
            Num::Any(n) => json!(n),
            Num::Json(j) => j.render(&[]),
        }
    }
}

fn check(token: &str) {
    for (i, keys) in keys().iter().enumerate() {
        let r = verify(token, keys, NOW, 0);
        if token != valid()[i] {
            assert!(r.is_err(), "forged token accepted: {token:?} → {r:?}");
        } else {
            assert_eq!(r.map(|c| c.sub), Ok("alice".to_owned()));
        }
    }
}

fn tamper(t: &Tamper) {
    let original = &valid()[usize::from(t.which)];
    let mut bytes = original.as_bytes().to_vec();
    for e in &t.edits {
        let at = |n: u16, len: usize| usize::from(n) % len.max(1);
        match e {
            Edit::Flip { at: n, bit } => {
                if !bytes.is_empty() {
                    let i = at(*n, bytes.len());
                    bytes[i] ^= 1 << (bit % 8);
                }
            }
            Edit::Insert { at: n, byte } => {
                let i = at(*n, bytes.len() + 1);
                bytes.insert(i, *byte);
            }
            Edit::Remove { at: n } => {
                if !bytes.is_empty() {
                    let i = at(*n, bytes.len());
                    bytes.remove(i);
                }
            }
            Edit::Truncate { len } => bytes.truncate(usize::from(*len)),
            Edit::Swap { a, .. } | Edit::Replace { seg: a, .. } | Edit::ReplaceJson { seg: a, .. } => {
                let Ok(s) = String::from_utf8(bytes.clone()) else { continue };
                let mut parts: Vec<String> = s.split('.').map(str::to_owned).collect();
                let n = parts.len();
                let i = usize::from(*a) % n;
                match e {
                    Edit::Swap { b, .. } => parts.swap(i, usize::from(*b) % n),
                    Edit::Replace { with, .. } => parts[i] = with.clone(),
                    Edit::ReplaceJson { with, .. } => parts[i] = URL_SAFE_NO_PAD.encode(with.render(&[]).to_string()),
                    _ => unreachable!(),
                }
                bytes = parts.join(".").into_bytes();
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(&bytes) {
        check(s);
    }
}

fn signed(s: &Signed) {
    let mut header = json!({"alg": "EdDSA", "typ": "JWT"});
    if let Some(alg) = &s.alg {
        header["alg"] = alg.render(&[]);
    }
    match s.kid {
        Some(true) => header["kid"] = json!("new"),
        Some(false) => header["kid"] = json!("old"),
        None => {}
    }
    for (k, v) in &s.header_extra {
        if k != "alg" && k != "kid" {
            header[k.as_str()] = v.render(&[]);
        }
    }
    let mut claims = match s.claims.render(&[]) {
        Value::Object(m) => Value::Object(m),
        other => json!({"x": other}),
    };
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            claims[k] = v;
        }
    };
    set("sub", s.sub.as_ref().map(|j| j.render(&["alice".to_owned()])));
    set("exp", s.exp.as_ref().map(Num::value));
    set("nbf", s.nbf.as_ref().map(Num::value));
    set("name", s.name.as_ref().map(|j| j.render(&[])));
    set("admin", s.admin.as_ref().map(|j| j.render(&[])));
    let text = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = signing_key().sign(text.as_bytes());
    let token = format!("{text}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
    let leeway = u64::from(s.leeway);
    for keys in keys() {
        let Ok(c) = verify(&token, keys, NOW, leeway) else { continue };
        assert!(matches!(header["alg"].as_str(), Some("EdDSA" | "Ed25519")), "alg {header}");
        assert_eq!(Some(c.sub.as_str()), claims["sub"].as_str());
        assert_eq!(Some(c.exp), claims["exp"].as_u64());
        assert!(NOW < c.exp.saturating_add(leeway), "expired token accepted: {claims}");
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_u64().expect("accepted nbf is a number");
            assert!(NOW.saturating_add(leeway) >= nbf, "early token accepted: {claims}");
        }
        match claims.get("name") {
            Some(n) => assert_eq!(Some(c.name.as_str()), n.as_str()),
            None => assert_eq!(c.name, c.sub),
        }
        assert_eq!(c.admin, claims.get("admin") == Some(&Value::Bool(true)));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                check(s);
            }
        }
        1 => {
            if let Ok(t) = Tamper::arbitrary_take_rest(Unstructured::new(rest)) {
                tamper(&t);
            }
        }
        _ => {
            if let Ok(s) = Signed::arbitrary_take_rest(Unstructured::new(rest)) {
                signed(&s);
            }
        }
    }
});
