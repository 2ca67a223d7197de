//! Signed tokens: JWTs in compact form with `alg: EdDSA` (Ed25519, RFC 8037), verified
//! against the configured public keys, `exp`/`nbf` checked against the input clock.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;
use thiserror::Error;

/// Longer tokens are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8192;

/// A public key that may sign tokens, with its `kid` for rotation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthKey {
    pub kid: Option<String>,
    pub key: [u8; 32],
}

/// What a verified token says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub name: String,
    pub admin: bool,
    pub exp: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("not a compact JWT")]
    Malformed,
    #[error("algorithm is not EdDSA")]
    Algorithm,
    #[error("no key for this token")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("claim {0} missing or of the wrong type")]
    Claim(&'static str),
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
}

/// Verifies `token` at unix time `now_secs`, allowing `leeway_secs` on `exp` and `nbf`.
pub fn verify(token: &str, keys: &[AuthKey], now_secs: u64, leeway_secs: u64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let json = |part: &str| -> Result<Value, TokenError> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed)?;
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
    };
    let header = json(h64)?;
    // RFC 8037 names the algorithm EdDSA; newer JOSE registrations also say Ed25519.
    if !matches!(header.get("alg").and_then(Value::as_str), Some("EdDSA" | "Ed25519")) {
        return Err(TokenError::Algorithm);
    }
    let key = match header.get("kid") {
        Some(Value::String(kid)) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
        Some(_) => return Err(TokenError::Malformed),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
    .ok_or(TokenError::UnknownKey)?;
    let sig = URL_SAFE_NO_PAD.decode(s64).map_err(|_| TokenError::Malformed)?;
    let sig = Signature::from_slice(&sig).map_err(|_| TokenError::Signature)?;
    let vk = VerifyingKey::from_bytes(&key.key).map_err(|_| TokenError::UnknownKey)?;
    let signed = &token.as_bytes()[..h64.len() + 1 + p64.len()];
    vk.verify_strict(signed, &sig).map_err(|_| TokenError::Signature)?;

    let claims = json(p64)?;
    // A user id is never empty: `""` would be one user shared by every such token.
    let sub = claims.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(TokenError::Claim("sub"))?;
    let exp = claims.get("exp").and_then(Value::as_u64).ok_or(TokenError::Claim("exp"))?;
    if now_secs >= exp.saturating_add(leeway_secs) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_u64().ok_or(TokenError::Claim("nbf"))?;
        if now_secs.saturating_add(leeway_secs) < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    let name = match claims.get("name") {
        None => sub.to_owned(),
        Some(Value::String(n)) => n.clone(),
        Some(_) => return Err(TokenError::Claim("name")),
    };
    let admin = match claims.get("admin") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(TokenError::Claim("admin")),
    };
    Ok(Claims { sub: sub.to_owned(), name, admin, exp })
}

/// Signs claims into a token (for `parlor token` and tests; nodes only verify).
#[must_use]
pub fn sign(signing_key: &ed25519_dalek::SigningKey, kid: Option<&str>, claims: &Value) -> String {
    use ed25519_dalek::Signer;
    let mut header = serde_json::json!({"alg": "EdDSA", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = Value::String(kid.to_owned());
    }
    let mut token =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = signing_key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    fn key(seed: u8, kid: Option<&str>) -> (SigningKey, AuthKey) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let ak = AuthKey { kid: kid.map(str::to_owned), key: sk.verifying_key().to_bytes() };
        (sk, ak)
    }

    #[test]
    fn verifies_a_good_token_and_reads_its_claims() {
        let (sk, ak) = key(1, None);
        let t = sign(&sk, None, &json!({"sub": "alice", "name": "Alice", "exp": 2000, "admin": true}));
        let c = verify(&t, &[ak], 1000, 0).unwrap();
        assert_eq!(c, Claims { sub: "alice".into(), name: "Alice".into(), admin: true, exp: 2000 });
    }

    #[test]
    fn checks_expiry_and_not_before_against_the_given_clock() {
        let (sk, ak) = key(1, None);
        let t = sign(&sk, None, &json!({"sub": "a", "exp": 2000, "nbf": 1500}));
        let keys = [ak];
        assert_eq!(verify(&t, &keys, 2000, 0), Err(TokenError::Expired));
        assert!(verify(&t, &keys, 2005, 10).is_ok(), "leeway");
        assert_eq!(verify(&t, &keys, 1499, 0), Err(TokenError::NotYetValid));
        assert!(verify(&t, &keys, 1500, 0).is_ok());
    }

    #[test]
    fn picks_the_key_by_kid() {
        let (sk1, ak1) = key(1, Some("k1"));
        let (sk2, ak2) = key(2, Some("k2"));
        let keys = [ak1, ak2];
        let claims = json!({"sub": "a", "exp": 10});
        assert!(verify(&sign(&sk2, Some("k2"), &claims), &keys, 0, 0).is_ok());
        assert_eq!(verify(&sign(&sk1, Some("k2"), &claims), &keys, 0, 0), Err(TokenError::Signature));
        assert_eq!(verify(&sign(&sk1, None, &claims), &keys, 0, 0), Err(TokenError::UnknownKey));
        assert_eq!(verify(&sign(&sk1, Some("k9"), &claims), &keys, 0, 0), Err(TokenError::UnknownKey));
    }

    #[test]
    fn refuses_tampered_and_malformed_tokens() {
        let (sk, ak) = key(1, None);
        let keys = [ak];
        let t = sign(&sk, None, &json!({"sub": "a", "exp": 10}));
        let forged = format!(
            "{}.{}.{}",
            t.split('.').next().unwrap(),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"root","exp":10}"#),
            t.split('.').nth(2).unwrap()
        );
        assert_eq!(verify(&forged, &keys, 0, 0), Err(TokenError::Signature));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(verify(bad, &keys, 0, 0).is_err(), "{bad:.20}");
        }
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"a","exp":10}"#)
        );
        assert_eq!(verify(&none, &keys, 0, 0), Err(TokenError::Algorithm));
        let no_exp = sign(&sk, None, &json!({"sub": "a"}));
        assert_eq!(verify(&no_exp, &keys, 0, 0), Err(TokenError::Claim("exp")));
        let empty_sub = sign(&sk, None, &json!({"sub": "", "exp": 10}));
        assert_eq!(verify(&empty_sub, &keys, 0, 0), Err(TokenError::Claim("sub")), "no user is called \"\"");
    }
}
