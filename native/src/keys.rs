//! Signing keys and tokens: `parlor keygen`, `parlor token`, and the public keys that
//! `serve --auth-key` loads.
//!
//! Files are the formats openssl and JOSE libraries read and write: the private key as
//! PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, the same bytes `openssl genpkey -algorithm
//! ed25519` writes), the public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).

use anyhow::{bail, Context};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes};
use ed25519_dalek::{SigningKey, VerifyingKey};
use parlor_core::app::auth::AuthKey;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The files `parlor keygen` writes.
pub const PRIVATE_KEY_FILE: &str = "parlor.key";
pub const PUBLIC_KEY_FILE: &str = "parlor.pub";

/// A new key from the OS random number generator.
pub fn generate() -> anyhow::Result<SigningKey> {
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
    let key = SigningKey::from_bytes(&secret);
    secret.fill(0);
    Ok(key)
}

/// The private key as PKCS#8 v1 PEM: the seed only, as openssl writes it (some readers
/// refuse the v2 form that also carries the public key).
pub fn private_pem(key: &SigningKey) -> anyhow::Result<String> {
    let bytes = KeypairBytes { secret_key: key.to_bytes(), public_key: None };
    let pem = bytes.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("cannot encode the private key: {e}"))?;
    Ok(pem.to_string())
}

/// The public key as SPKI PEM.
pub fn public_pem(key: &VerifyingKey) -> anyhow::Result<String> {
    key.to_public_key_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("cannot encode the public key: {e}"))
}

/// Writes `parlor.key` (mode 0600) and `parlor.pub` into `dir` (created if needed).
/// Refuses to replace either file unless `force`. Returns both paths.
pub fn keygen(dir: &Path, force: bool) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let private = dir.join(PRIVATE_KEY_FILE);
    let public = dir.join(PUBLIC_KEY_FILE);
    if !force {
        for path in [&private, &public] {
            if path.exists() {
                bail!("{} exists; pass --force to replace it", path.display());
            }
        }
    }
    let key = generate()?;
    write_file(&private, private_pem(&key)?.as_bytes(), 0o600, force)?;
    write_file(&public, public_pem(&key.verifying_key())?.as_bytes(), 0o644, force)?;
    Ok((private, public))
}

/// Creates `path` with `mode` (Unix), or replaces it when `replace`. A replaced private
/// key file gets `mode` again even if it was wider before.
fn write_file(path: &Path, contents: &[u8], mode: u32, replace: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(contents).and_then(|()| file.sync_all()).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a PKCS#8 PEM private key (`parlor.key`, or one openssl made).
pub fn load_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = read_pem(path)?;
    SigningKey::from_pkcs8_pem(&text)
        .map_err(|e| anyhow::anyhow!("{}: not an Ed25519 PKCS#8 PEM private key ({e})", path.display()))
}

/// Reads an SPKI PEM public key (`parlor.pub`, or one openssl made).
pub fn load_public_key(path: &Path) -> anyhow::Result<VerifyingKey> {
    let text = read_pem(path)?;
    if text.contains("PRIVATE KEY-----") {
        bail!("{}: this is a private key; --auth-key takes the public key (parlor.pub)", path.display());
    }
    VerifyingKey::from_public_key_pem(&text)
        .map_err(|e| anyhow::anyhow!("{}: not an Ed25519 SPKI PEM public key ({e})", path.display()))
}

fn read_pem(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))
}

/// One `--auth-key` value: `FILE`, or `KID=FILE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// The `kid` tokens name this key by: given, else the file's stem (`keys/2025.pub` →
    /// `2025`).
    pub kid: String,
    pub path: PathBuf,
}

impl KeySpec {
    pub fn parse(spec: &str) -> anyhow::Result<KeySpec> {
        let spec = spec.trim();
        if spec.is_empty() {
            bail!("--auth-key needs a file");
        }
        // `KID=FILE`: a kid has no path separator, so `./a=b/c.pub` stays a path.
        if let Some((kid, path)) = spec.split_once('=') {
            if !kid.is_empty() && !kid.contains(['/', '\\']) {
                if path.is_empty() {
                    bail!("--auth-key {spec}: no file after {kid}=");
                }
                return Ok(KeySpec { kid: kid.to_owned(), path: PathBuf::from(path) });
            }
        }
        let path = PathBuf::from(spec);
        let kid = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .with_context(|| format!("--auth-key {spec}: cannot take a kid from the file name; use KID=FILE"))?
            .to_owned();
        Ok(KeySpec { kid, path })
    }

    pub fn load(&self) -> anyhow::Result<AuthKey> {
        let key = load_public_key(&self.path)?;
        Ok(AuthKey { kid: Some(self.kid.clone()), key: key.to_bytes() })
    }
}

/// Loads every key; two keys with the same kid are an error.
pub fn load_auth_keys(specs: &[KeySpec]) -> anyhow::Result<Vec<AuthKey>> {
    let mut keys: Vec<AuthKey> = Vec::with_capacity(specs.len());
    for spec in specs {
        if keys.iter().any(|k| k.kid.as_deref() == Some(spec.kid.as_str())) {
            bail!("two --auth-key files have the kid {:?}; name them with KID=FILE", spec.kid);
        }
        keys.push(spec.load()?);
    }
    Ok(keys)
}

/// A duration in seconds: `90s`, `30m`, `1h`, `7d`, or plain seconds (`3600`).
pub fn parse_duration(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 =
        digits.parse().map_err(|_| anyhow::anyhow!("bad duration {text:?}: expected e.g. 90s, 30m, 1h, 7d"))?;
    let scale = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => bail!("bad duration {text:?}: unknown unit {other:?} (s, m, h, d)"),
    };
    let secs = n.checked_mul(scale).with_context(|| format!("duration {text:?} is too long"))?;
    if secs == 0 {
        bail!("duration {text:?} must be greater than 0");
    }
    Ok(secs)
}

/// What goes into a token.
#[derive(Clone, Debug)]
pub struct TokenSpec<'a> {
    pub sub: &'a str,
    pub name: Option<&'a str>,
    pub ttl_secs: u64,
    pub admin: bool,
    pub kid: Option<&'a str>,
}

/// The claims of a token issued at `now_secs`: `sub`, `name` (when given), `iat`, `exp`
/// and `admin` (only when set).
#[must_use]
pub fn claims(spec: &TokenSpec<'_>, now_secs: u64) -> Value {
    let mut claims = json!({"sub": spec.sub, "iat": now_secs, "exp": now_secs.saturating_add(spec.ttl_secs)});
    if let Some(name) = spec.name {
        claims["name"] = Value::String(name.to_owned());
    }
    if spec.admin {
        claims["admin"] = Value::Bool(true);
    }
    claims
}

/// A compact JWT (alg EdDSA) for `spec`, issued now.
pub fn mint(key: &SigningKey, spec: &TokenSpec<'_>) -> anyhow::Result<String> {
    if spec.sub.is_empty() {
        bail!("--sub must not be empty");
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).context("the clock is before 1970")?;
    Ok(parlor_core::app::auth::sign(key, spec.kid, &claims(spec, now.as_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_dir::TestDir;
    use parlor_core::app::auth::verify;

    #[test]
    fn durations() {
        for (text, secs) in [("90s", 90), ("30m", 1800), ("1h", 3600), ("7d", 604_800), ("3600", 3600), (" 2h ", 7200)]
        {
            assert_eq!(parse_duration(text).unwrap(), secs, "{text}");
        }
        for bad in ["", "h", "1y", "-5", "1.5h", "0", "0s", "99999999999999999999", "18446744073709551615d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_specs_take_an_explicit_kid_or_the_file_stem() {
        assert_eq!(
            KeySpec::parse("keys/2025.pub").unwrap(),
            KeySpec { kid: "2025".into(), path: "keys/2025.pub".into() }
        );
        assert_eq!(
            KeySpec::parse("main=keys/a.pub").unwrap(),
            KeySpec { kid: "main".into(), path: "keys/a.pub".into() }
        );
        assert_eq!(KeySpec::parse("./x=y/k.pub").unwrap(), KeySpec { kid: "k".into(), path: "./x=y/k.pub".into() });
        assert!(KeySpec::parse("").is_err());
        assert!(KeySpec::parse("kid=").is_err());
    }

    #[test]
    fn keygen_writes_pem_files_that_load_back() {
        let dir = TestDir::new("keygen");
        let (private, public) = keygen(dir.path(), false).unwrap();
        let text = std::fs::read_to_string(&private).unwrap();
        assert!(
            text.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"),
            "openssl's PKCS#8 v1 form: {text}"
        );
        let pub_text = std::fs::read_to_string(&public).unwrap();
        assert!(pub_text.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"), "{pub_text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let sk = load_signing_key(&private).unwrap();
        let vk = load_public_key(&public).unwrap();
        assert_eq!(sk.verifying_key(), vk);

        let spec = TokenSpec { sub: "alice", name: Some("Alice"), ttl_secs: 3600, admin: true, kid: None };
        let token = mint(&sk, &spec).unwrap();
        let keys = load_auth_keys(&[KeySpec::parse(public.to_str().unwrap()).unwrap()]).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let claims = verify(&token, &keys, now, 0).unwrap();
        assert_eq!((claims.sub.as_str(), claims.name.as_str(), claims.admin), ("alice", "Alice", true));
        assert!(claims.exp >= now + 3599 && claims.exp <= now + 3601);
    }

    #[test]
    fn keygen_refuses_to_overwrite_unless_forced() {
        let dir = TestDir::new("keygen-force");
        keygen(dir.path(), false).unwrap();
        let before = std::fs::read(dir.path().join(PRIVATE_KEY_FILE)).unwrap();
        let err = keygen(dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read(dir.path().join(PRIVATE_KEY_FILE)).unwrap(), before);
        keygen(dir.path(), true).unwrap();
        assert_ne!(std::fs::read(dir.path().join(PRIVATE_KEY_FILE)).unwrap(), before);
    }

    #[test]
    fn bad_key_files_are_clear_errors() {
        let dir = TestDir::new("keys-bad");
        let (private, _) = keygen(dir.path(), false).unwrap();
        let err = load_public_key(&private).unwrap_err().to_string();
        assert!(err.contains("private key"), "{err}");
        let junk = dir.path().join("junk.pub");
        std::fs::write(&junk, "hello").unwrap();
        assert!(load_public_key(&junk).unwrap_err().to_string().contains("SPKI"));
        assert!(load_public_key(&dir.path().join("missing.pub")).unwrap_err().to_string().contains("cannot read"));
        let spec = KeySpec::parse(dir.path().join("parlor.pub").to_str().unwrap()).unwrap();
        let err = load_auth_keys(&[spec.clone(), spec]).unwrap_err().to_string();
        assert!(err.contains("same kid") || err.contains("kid"), "{err}");
    }

    #[test]
    fn claims_carry_admin_only_when_set_and_name_when_given() {
        let spec = TokenSpec { sub: "u", name: None, ttl_secs: 60, admin: false, kid: None };
        assert_eq!(claims(&spec, 1000), json!({"sub": "u", "iat": 1000, "exp": 1060}));
        let spec = TokenSpec { name: Some("U"), admin: true, ..spec };
        assert_eq!(claims(&spec, 1000), json!({"sub": "u", "iat": 1000, "exp": 1060, "name": "U", "admin": true}));
    }
}
