//! The `parlor` binary end to end: `keygen` and `token` interoperate with the core's
//! verifier, `serve` checks its key files and data directory at startup, and the HTTP API
//! routing (`/api/...`: CORS preflight, 413, 404 without an API mount).

mod common;

use common::{Server, PARLOR};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use parlor_core::app::auth::{verify, AuthKey};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let path = std::env::temp_dir().join(format!("parlor-cli-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn parlor(args: &[&str]) -> Output {
    Command::new(PARLOR).args(args).env_remove("PARLOR_CONFIG").output().unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn keygen_and_token_interoperate_with_the_verifier() {
    let dir = TempDir::new("keys");
    let out_dir = dir.0.join("keys");
    let out = parlor(&["keygen", "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let private = out_dir.join("parlor.key");
    let public = out_dir.join("parlor.pub");

    // The PEM files parse back as the standard formats.
    let sk = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&private).unwrap()).unwrap();
    let vk = VerifyingKey::from_public_key_pem(&std::fs::read_to_string(&public).unwrap()).unwrap();
    assert_eq!(sk.verifying_key(), vk);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // Refuses to overwrite.
    let again = parlor(&["keygen", "--out", out_dir.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("--force"), "{}", text(&again.stderr));
    assert_eq!(SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&private).unwrap()).unwrap(), sk);

    // A token with kid and admin.
    let out = parlor(&[
        "token",
        "--key",
        private.to_str().unwrap(),
        "--sub",
        "alice",
        "--name",
        "Alice",
        "--ttl",
        "1h",
        "--admin",
        "--kid",
        "k1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "compact JWT: {token}");
    let keys = [AuthKey { kid: Some("k1".into()), key: vk.to_bytes() }];
    let now = now_secs();
    let claims = verify(&token, &keys, now, 0).unwrap();
    assert_eq!((claims.sub.as_str(), claims.name.as_str(), claims.admin), ("alice", "Alice", true));
    assert!((now + 3595..=now + 3605).contains(&claims.exp), "exp {} vs now {now}", claims.exp);
    assert!(verify(&token, &keys, claims.exp, 0).is_err(), "expires at exp");

    // Without kid and admin: accepted by a server with one key, not admin.
    let out = parlor(&["token", "--key", private.to_str().unwrap(), "--sub", "bob", "--ttl", "90s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let claims = verify(text(&out.stdout).trim(), &keys, now_secs(), 0).unwrap();
    assert_eq!((claims.sub.as_str(), claims.name.as_str(), claims.admin), ("bob", "bob", false));

    // Bad input is a clear error.
    let out = parlor(&["token", "--key", public.to_str().unwrap(), "--sub", "x", "--ttl", "1h"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("PKCS#8"), "{}", text(&out.stderr));
    let out = parlor(&["token", "--key", private.to_str().unwrap(), "--sub", "x", "--ttl", "1 fortnight"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("duration"), "{}", text(&out.stderr));
}

#[test]
fn serve_refuses_a_bad_key_file_at_startup() {
    let dir = TempDir::new("badkey");
    let junk = dir.0.join("junk.pub");
    std::fs::write(&junk, "not a key").unwrap();
    let data = dir.0.join("data");
    for key in [junk.to_str().unwrap(), "/nonexistent/parlor.pub"] {
        let out = Command::new(PARLOR)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap(), "--auth-key", key])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains(key), "names the file: {err}");
        assert!(text(&out.stdout).is_empty(), "never started listening");
    }
}

/// Requests to a running server.
impl Server {
    /// One HTTP/1.1 request; returns (status, headers, body).
    fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n", self.addr);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        s.write_all(req.as_bytes()).unwrap();
        let _ = s.write_all(body);
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let resp = text(&resp);
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, head.to_ascii_lowercase(), body.to_owned())
    }
}

fn wait_for(path: &Path) -> bool {
    for _ in 0..100 {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn serve_creates_its_store_and_routes_the_api() {
    let dir = TempDir::new("serve");
    let data = dir.0.join("nested/data");
    let server = Server::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--max-payload",
        "1000",
        "--cors-origin",
        "https://app.example",
    ]);
    assert!(wait_for(&data.join("parlor.db")), "parlor.db created on first start");

    // Preflight: CORS like the Engine.IO paths.
    let (status, head, _) = server.http(
        "OPTIONS",
        "/api/notifications",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization, content-type"),
        ],
        b"",
    );
    assert_eq!(status, 204, "{head}");
    assert!(head.contains("access-control-allow-origin: https://app.example"), "{head}");
    assert!(head.contains("access-control-allow-headers: authorization, content-type"), "{head}");

    // Over max-payload: 413 from the host.
    let (status, head, body) = server.http("POST", "/api/notifications", &[], &[b'x'; 1001]);
    assert_eq!(status, 413, "{head}");
    assert!(body.contains("PAYLOAD_TOO_LARGE"), "{body}");

    // Anything else reaches the room service, which answers (dev mode refuses producers).
    let (status, head, body) = server.http(
        "POST",
        "/api/notifications",
        &[("origin", "https://app.example"), ("content-type", "application/json")],
        br#"{"userId":"u","title":"t","message":"m"}"#,
    );
    assert!((400..500).contains(&status), "{status} {head} {body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("access-control-allow-origin: https://app.example"), "{head}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok(), "{body}");

    assert!(server.terminate().success(), "clean exit on SIGTERM");
}

#[test]
fn conformance_has_no_api() {
    let server = Server::start(&["conformance", "--listen", "127.0.0.1:0"]);
    let (status, _, _) = server.http("POST", "/api/notifications", &[], b"{}");
    assert_eq!(status, 404);
    assert!(server.terminate().success());
}
