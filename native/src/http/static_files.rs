//! Static files (`serve --static DIR`): a folder served at `/`, for the demo web app.
//!
//! Only files under DIR are ever read. A request path is decoded one segment at a time and
//! refused (400) when a segment is `.` or `..`, holds a separator, a backslash or NUL once
//! percent-decoded, or is not valid percent-encoded UTF-8; what is left is joined onto the
//! canonical DIR, canonicalized again (symlinks resolved) and refused (404) unless it is
//! still inside DIR. The checks are pure functions ([`segments`], [`inside`]) so every
//! refusal is unit-tested without a server.
//!
//! Answers: `index.html` for a directory, the Content-Type by extension, an `ETag` from the
//! file's size and modification time (`If-None-Match` → 304), `Cache-Control` (Vite's
//! content-hashed `/assets/` for a year, everything else `no-cache`, so a new build is
//! picked up at once), HEAD without a body, 405 for other methods. A file is read whole,
//! so files over [`MAX_FILE_BYTES`] are refused rather than held in memory, and the bytes
//! of all files read and not yet sent stay within [`BODY_BUDGET`] (a response holds its
//! share until hyper has written and dropped it; past the budget the answer is 503).

use crate::http::Body;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::{Method, Response, StatusCode};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest file served: a demo bundle's chunks are far smaller, and each request holds its
/// file in memory until it is sent.
pub(crate) const MAX_FILE_BYTES: u64 = 16 << 20;

/// Bytes of static files read and not yet sent, over the node: many slow clients fetching
/// big files cannot hold more memory than this.
pub(crate) const BODY_BUDGET: usize = 64 << 20;

/// Where Vite puts content-hashed chunks: their name changes with their content.
const IMMUTABLE_PREFIX: &str = "/assets/";

/// Why a request path cannot name a file under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A bad escape, a traversal or a forbidden byte: the path is malformed (400).
    BadPath,
    /// Nothing servable there (404), including a file that resolves outside the root.
    NotFound,
    /// The node's budget for file bodies in flight is spent (503).
    Busy,
}

/// The folder served at `/`.
#[derive(Debug)]
pub(crate) struct StaticFiles {
    /// Canonical: every file served must canonicalize to a path under it.
    root: PathBuf,
    /// One permit per byte of file bodies read and not yet sent.
    budget: Arc<Semaphore>,
}

impl StaticFiles {
    /// The folder `dir`, which must exist and be a directory.
    pub(crate) fn new(dir: &Path) -> anyhow::Result<StaticFiles> {
        StaticFiles::with_budget(dir, BODY_BUDGET)
    }

    /// [`StaticFiles::new`] with a body budget of `budget` bytes.
    pub(crate) fn with_budget(dir: &Path, budget: usize) -> anyhow::Result<StaticFiles> {
        let root =
            dir.canonicalize().map_err(|e| anyhow::anyhow!("static folder {} cannot be opened: {e}", dir.display()))?;
        if !root.is_dir() {
            anyhow::bail!("static folder {} is not a directory", dir.display());
        }
        Ok(StaticFiles { root, budget: Arc::new(Semaphore::new(budget.min(Semaphore::MAX_PERMITS))) })
    }

    /// Answers a GET or HEAD for `path` (the request URI's path, still percent-encoded).
    pub(crate) async fn serve(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response<Body> {
        let head = match *method {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                resp.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                return resp;
            }
        };
        let parts = match segments(path) {
            Ok(parts) => parts,
            Err(refused) => return refusal(refused),
        };
        let (root, budget) = (self.root.clone(), self.budget.clone());
        let if_none_match = headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // Reading a file blocks; the runtime's blocking pool keeps connection tasks moving.
        let found =
            tokio::task::spawn_blocking(move || read(&root, &parts, head, if_none_match.as_deref(), &budget)).await;
        let file = match found {
            Ok(Ok(file)) => file,
            Ok(Err(refused)) => return refusal(refused),
            Err(e) => {
                tracing::warn!(error = %e, "reading a static file failed");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        };
        let immutable = path.starts_with(IMMUTABLE_PREFIX);
        respond(file, head, immutable)
    }
}

/// What [`read`] found: the file's tag, type, length and (unless not needed) its bytes.
struct Found {
    etag: String,
    content_type: &'static str,
    len: u64,
    /// `None` for HEAD and for a 304; holds its share of the budget until dropped.
    body: Option<Bytes>,
    not_modified: bool,
}

fn respond(file: Found, head: bool, immutable: bool) -> Response<Body> {
    let status = if file.not_modified { StatusCode::NOT_MODIFIED } else { StatusCode::OK };
    let mut resp = Response::new(Full::new(file.body.unwrap_or_default()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&file.etag) {
        h.insert(ETAG, tag);
    }
    let cache = if immutable { "public, max-age=31536000, immutable" } else { "no-cache" };
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if !file.not_modified {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(file.content_type));
        if head {
            // The length the GET would have; hyper sends no body for HEAD.
            h.insert(CONTENT_LENGTH, HeaderValue::from(file.len));
        }
    }
    resp
}

fn refusal(refused: Refused) -> Response<Body> {
    match refused {
        Refused::BadPath => text(StatusCode::BAD_REQUEST, "bad path"),
        Refused::NotFound => text(StatusCode::NOT_FOUND, "not found"),
        Refused::Busy => text(StatusCode::SERVICE_UNAVAILABLE, "too many files in flight"),
    }
}

/// A file's bytes with their share of the body budget, given back when hyper drops them.
struct Held {
    bytes: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The decoded segments of a request path, each a plain file or folder name; an empty
/// list or a trailing `/` means the folder's `index.html` (added here). Empty segments
/// (`//`) are skipped.
pub(crate) fn segments(path: &str) -> Result<Vec<String>, Refused> {
    let Some(rest) = path.strip_prefix('/') else { return Err(Refused::BadPath) };
    let mut out = Vec::new();
    for raw in rest.split('/') {
        if raw.is_empty() {
            continue;
        }
        let name = percent_decode(raw).ok_or(Refused::BadPath)?;
        if name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(Refused::BadPath);
        }
        out.push(name);
    }
    if out.is_empty() || path.ends_with('/') {
        out.push("index.html".to_owned());
    }
    Ok(out)
}

/// `%XX` escapes decoded; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `candidate` canonicalized, if it exists and lies under `root` (itself canonical): a
/// symlink that points out of the folder is not followed out.
pub(crate) fn inside(root: &Path, candidate: &Path) -> Option<PathBuf> {
    let real = candidate.canonicalize().ok()?;
    real.starts_with(root).then_some(real)
}

/// Finds and reads the file `parts` names under `root` (a folder means its `index.html`).
fn read(
    root: &Path,
    parts: &[String],
    head: bool,
    if_none_match: Option<&str>,
    budget: &Arc<Semaphore>,
) -> Result<Found, Refused> {
    let mut path = root.to_path_buf();
    path.extend(parts);
    let mut real = inside(root, &path).ok_or(Refused::NotFound)?;
    if real.is_dir() {
        real = inside(root, &real.join("index.html")).ok_or(Refused::NotFound)?;
    }
    let meta = std::fs::metadata(&real).map_err(|_| Refused::NotFound)?;
    if !meta.is_file() {
        return Err(Refused::NotFound);
    }
    if meta.len() > MAX_FILE_BYTES {
        tracing::warn!(path = %real.display(), len = meta.len(), "static file over the size cap, not served");
        return Err(Refused::NotFound);
    }
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
    let etag = format!("\"{:x}-{:x}.{:x}\"", meta.len(), mtime.as_secs(), mtime.subsec_nanos());
    let content_type = content_type(&real);
    let not_modified = if_none_match.is_some_and(|given| etag_matches(given, &etag));
    let body = if head || not_modified {
        None
    } else {
        // At most the cap is read, whatever the file grew to since its metadata was read.
        let mut bytes = Vec::new();
        let file = std::fs::File::open(&real).map_err(|_| Refused::NotFound)?;
        file.take(MAX_FILE_BYTES).read_to_end(&mut bytes).map_err(|_| Refused::NotFound)?;
        let share = u32::try_from(bytes.len()).map_err(|_| Refused::Busy)?;
        let permit = budget.clone().try_acquire_many_owned(share).map_err(|_| Refused::Busy)?;
        Some(Bytes::from_owner(Held { bytes, _permit: permit }))
    };
    let len = body.as_ref().map_or(meta.len(), |b| b.len() as u64);
    Ok(Found { etag, content_type, len, body, not_modified })
}

/// `If-None-Match`: `*` or a list of tags, weak ones compared by their opaque part.
fn etag_matches(given: &str, etag: &str) -> bool {
    given.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The Content-Type for a file, by its extension (case-insensitive).
pub(crate) fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("parlor-static-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A root `www/` with an index, an asset and a link out of it, next to a `secret.txt`.
    fn site(name: &str) -> (TempDir, StaticFiles) {
        let tmp = TempDir::new(name);
        let www = tmp.0.join("www");
        std::fs::create_dir_all(www.join("assets")).unwrap();
        std::fs::create_dir_all(www.join("sub")).unwrap();
        std::fs::write(www.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(www.join("sub/index.html"), "sub").unwrap();
        std::fs::write(www.join("assets/app-1234.js"), "console.log(1)").unwrap();
        std::fs::write(tmp.0.join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(tmp.0.join("secret.txt"), www.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(&tmp.0, www.join("up")).unwrap();
        std::os::unix::fs::symlink(www.join("index.html"), www.join("alias.html")).unwrap();
        let files = StaticFiles::new(&www).unwrap();
        (tmp, files)
    }

    async fn get(files: &StaticFiles, method: Method, path: &str, headers: &HeaderMap) -> Response<Body> {
        files.serve(&method, path, headers).await
    }

    async fn body_of(resp: Response<Body>) -> Vec<u8> {
        use http_body_util::BodyExt;
        resp.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default()
    }

    #[test]
    fn traversal_and_forbidden_bytes_are_refused_before_any_file_is_touched() {
        for path in [
            "/../secret.txt",
            "/a/../../secret.txt",
            "/./index.html",
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/%2e./secret.txt",
            "/..%2fsecret.txt",
            "/%2fetc%2fpasswd",
            "/..%5csecret.txt",
            "/a\\..\\secret.txt",
            "/index.html%00.js",
            "/%zz",
            "/%2",
            "/%ff",
            "relative.html",
        ] {
            assert_eq!(segments(path), Err(Refused::BadPath), "{path}");
        }
    }

    #[test]
    fn plain_paths_decode_to_segments_and_folders_to_their_index() {
        assert_eq!(segments("/").unwrap(), ["index.html"]);
        assert_eq!(segments("").unwrap_err(), Refused::BadPath);
        assert_eq!(segments("/assets/app.js").unwrap(), ["assets", "app.js"]);
        assert_eq!(segments("/sub/").unwrap(), ["sub", "index.html"]);
        assert_eq!(segments("//etc/passwd").unwrap(), ["etc", "passwd"], "empty segments stay under the root");
        assert_eq!(segments("/a%20b.txt").unwrap(), ["a b.txt"]);
        assert_eq!(segments("/%252e%252e").unwrap(), ["%2e%2e"], "decoded once: a literal name");
        assert_eq!(segments("/...").unwrap(), ["..."], "three dots are a name");
    }

    #[test]
    fn content_types_follow_the_extension() {
        for (name, ty) in [
            ("a.html", "text/html; charset=utf-8"),
            ("a.JS", "text/javascript; charset=utf-8"),
            ("a.mjs", "text/javascript; charset=utf-8"),
            ("a.css", "text/css; charset=utf-8"),
            ("a.svg", "image/svg+xml"),
            ("a.png", "image/png"),
            ("a.jpg", "image/jpeg"),
            ("a.ico", "image/x-icon"),
            ("a.json", "application/json"),
            ("a.js.map", "application/json"),
            ("a.woff2", "font/woff2"),
            ("a.txt", "text/plain; charset=utf-8"),
            ("a.wasm", "application/wasm"),
            ("Makefile", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), ty, "{name}");
        }
    }

    #[test]
    fn etags_match_exactly_weakly_or_by_star() {
        assert!(etag_matches("\"1-2.3\"", "\"1-2.3\""));
        assert!(etag_matches("W/\"1-2.3\"", "\"1-2.3\""));
        assert!(etag_matches("\"x\", \"1-2.3\"", "\"1-2.3\""));
        assert!(etag_matches("*", "\"1-2.3\""));
        assert!(!etag_matches("\"1-2.4\"", "\"1-2.3\""));
    }

    #[tokio::test]
    async fn symlinks_out_of_the_folder_are_not_followed_out() {
        let (_tmp, files) = site("symlink");
        let none = HeaderMap::new();
        for path in ["/leak.txt", "/up/secret.txt", "/up/www/../secret.txt"] {
            let resp = get(&files, Method::GET, path, &none).await;
            assert!(matches!(resp.status(), StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST), "{path}");
        }
        let inner = get(&files, Method::GET, "/alias.html", &none).await;
        assert_eq!(inner.status(), StatusCode::OK, "a link that stays inside is served");
        assert_eq!(inside(&files.root, &files.root.join("up/secret.txt")), None, "canonicalized outside the root");
    }

    #[tokio::test]
    async fn the_index_assets_and_conditional_requests() {
        let (_tmp, files) = site("serve");
        let none = HeaderMap::new();
        let index = get(&files, Method::GET, "/", &none).await;
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(index.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(index.headers()[CACHE_CONTROL], "no-cache");
        let etag = index.headers()[ETAG].clone();
        assert_eq!(body_of(index).await, b"<h1>hi</h1>");

        let sub = get(&files, Method::GET, "/sub", &none).await;
        assert_eq!(body_of(sub).await, b"sub", "a folder without the slash serves its index too");

        let asset = get(&files, Method::GET, "/assets/app-1234.js", &none).await;
        assert_eq!(asset.headers()[CACHE_CONTROL], "public, max-age=31536000, immutable");
        assert_eq!(asset.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");

        let mut conditional = HeaderMap::new();
        conditional.insert(IF_NONE_MATCH, etag.clone());
        let cached = get(&files, Method::GET, "/index.html", &conditional).await;
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(cached.headers()[ETAG], etag);
        assert!(body_of(cached).await.is_empty());

        let head = get(&files, Method::HEAD, "/index.html", &none).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers()[CONTENT_LENGTH], "11");
        assert!(body_of(head).await.is_empty());

        let post = get(&files, Method::POST, "/index.html", &none).await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[ALLOW], "GET, HEAD");

        assert_eq!(get(&files, Method::GET, "/missing.js", &none).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(get(&files, Method::GET, "/index.html/x", &none).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(get(&files, Method::GET, "/%2e%2e/secret.txt", &none).await.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn files_over_the_cap_are_not_read() {
        let (tmp, files) = site("cap");
        let big = std::fs::File::create(tmp.0.join("www/big.bin")).unwrap();
        big.set_len(MAX_FILE_BYTES + 1).unwrap();
        let resp = get(&files, Method::GET, "/big.bin", &HeaderMap::new()).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn bodies_in_flight_stay_within_the_budget() {
        let (tmp, _) = site("budget");
        // Room for one copy of the 11-byte index, not two.
        let files = StaticFiles::with_budget(&tmp.0.join("www"), 16).unwrap();
        let none = HeaderMap::new();
        let first = get(&files, Method::GET, "/index.html", &none).await;
        assert_eq!(first.status(), StatusCode::OK);
        let second = get(&files, Method::GET, "/index.html", &none).await;
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE, "the first body is still held");
        assert_eq!(
            get(&files, Method::HEAD, "/index.html", &none).await.status(),
            StatusCode::OK,
            "HEAD reads nothing"
        );
        drop(first);
        assert_eq!(get(&files, Method::GET, "/index.html", &none).await.status(), StatusCode::OK, "given back");
    }

    #[test]
    fn a_missing_or_plain_file_root_is_an_error_naming_it() {
        let tmp = TempDir::new("root");
        std::fs::write(tmp.0.join("file"), "x").unwrap();
        let err = StaticFiles::new(&tmp.0.join("file")).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        let err = StaticFiles::new(&tmp.0.join("nope")).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
