//! The `parlor` binary end to end: `keygen` and `token` interoperate with the core's
//! verifier, `serve` checks its key files and data directory at startup, and the HTTP API
//! routing (`/api/...`: CORS preflight, 413, 404 without an API mount), and `--static`
//! (the folder served at `/`, and every way out of it refused on the wire).

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

/// `parlor serve` on a free loopback port with its store in `data` and `extra` flags.
fn serve(data: &Path, extra: &[&str]) -> Server {
    let data = data.to_str().unwrap();
    let args = ["serve", "--listen", "127.0.0.1:0", "--data-dir", data];
    Server::start(&args.iter().chain(extra).copied().collect::<Vec<_>>())
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
    let server = serve(&data, &["--max-payload", "1000", "--cors-origin", "https://app.example"]);
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

/// `serve --static DIR` on the wire: the index, types, caching, HEAD, 405, and every
/// traversal a client can write (raw `..`, encoded dots and separators, backslashes, NUL,
/// symlinks out) refused, with the routes keeping their paths.
#[test]
fn serve_static_serves_the_folder_and_nothing_outside_it() {
    let dir = TempDir::new("static");
    let www = dir.0.join("www");
    std::fs::create_dir_all(www.join("assets")).unwrap();
    std::fs::write(www.join("index.html"), "<!doctype html><title>parlor</title>").unwrap();
    std::fs::write(www.join("assets/index-abc123.js"), "export {}").unwrap();
    std::fs::write(www.join("healthz"), "shadow").unwrap();
    std::fs::write(dir.0.join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(dir.0.join("secret.txt"), www.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(&dir.0, www.join("parent")).unwrap();
    let data = dir.0.join("data");
    let server = serve(&data, &["--static", www.to_str().unwrap()]);

    let (status, head, body) = server.http("GET", "/", &[], b"");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/html; charset=utf-8"), "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(body.contains("<title>parlor</title>"), "{body}");
    let etag = head.lines().find_map(|l| l.strip_prefix("etag: ")).expect("an etag").to_owned();

    let (status, head, body) = server.http("GET", "/index.html", &[("if-none-match", &etag)], b"");
    assert_eq!((status, body.as_str()), (304, ""), "{head}");

    let (status, head, body) = server.http("HEAD", "/assets/index-abc123.js", &[], b"");
    assert_eq!((status, body.as_str()), (200, ""), "{head}");
    assert!(head.contains("content-type: text/javascript; charset=utf-8"), "{head}");
    assert!(head.contains("content-length: 9"), "{head}");
    assert!(head.contains("cache-control: public, max-age=31536000, immutable"), "{head}");

    let (status, head, _) = server.http("DELETE", "/index.html", &[], b"");
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("allow: get, head"), "{head}");
    assert_eq!(server.http("GET", "/missing.css", &[], b"").0, 404);

    for path in [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/..%5csecret.txt",
        "/..\\secret.txt",
        "/secret.txt%00",
        "/leak.txt",
        "/parent/secret.txt",
        "/parent/data/parlor.db",
    ] {
        let (status, head, body) = server.http("GET", path, &[], b"");
        assert!(status == 400 || status == 404, "{path}: {status} {head}");
        assert!(!body.contains("top secret"), "{path}: {body}");
    }
    // The absolute form names a path on this server, never a file system path.
    let (status, _, body) = server.http("GET", &format!("http://{}/{}", server.addr, dir.0.display()), &[], b"");
    assert!(status == 400 || status == 404, "{status}");
    assert!(!body.contains("top secret"));

    // The routes keep their paths, whatever DIR holds.
    let (status, _, body) = server.http("GET", "/healthz", &[], b"");
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(server.http("GET", "/socket.io/", &[], b"").0, 400, "Engine.IO answers its own path");
    assert_eq!(server.http("GET", "/api/nothing", &[], b"").0, 404);
    assert_eq!(server.http("GET", "/admin/reload", &[], b"").0, 404);
    assert!(server.terminate().success());
}

#[test]
fn serve_refuses_a_missing_static_folder_at_startup() {
    let dir = TempDir::new("static-missing");
    let missing = dir.0.join("no-such-dist");
    let out = parlor(&["serve", "--listen", "127.0.0.1:0", "--static", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no-such-dist"), "{}", text(&out.stderr));
}
