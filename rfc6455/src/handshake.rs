//! The opening handshake (RFC 6455 §4): the accept key both sides compute, and the client's
//! request and its check of the server's answer. The server's side of the HTTP exchange is
//! hyper's (see `native/src/http/engineio.rs`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest as _, Sha1};

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for the request's `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
#[must_use]
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    STANDARD.encode(sha1.finalize())
}

/// A client's `Sec-WebSocket-Key` from 16 bytes of nonce: their base64.
#[must_use]
pub fn request_key(nonce: [u8; 16]) -> String {
    STANDARD.encode(nonce)
}

/// The client's opening request for `path_and_query` on `host` (`host:port`).
#[must_use]
pub fn request(host: &str, path_and_query: &str, key: &str) -> String {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Where a response head ends: the index just past `\r\n\r\n`.
#[must_use]
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Checks the server's answer (the bytes up to and including the blank line): status 101
/// and the `Sec-WebSocket-Accept` that `key` calls for.
pub fn check_response(head: &[u8], key: &str) -> Result<(), String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    if code != "101" {
        return Err(format!("expected 101 Switching Protocols, got {status:?}"));
    }
    let expected = accept_key(key.as_bytes());
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("sec-websocket-accept") {
                return if value.trim() == expected {
                    Ok(())
                } else {
                    Err(format!("bad Sec-WebSocket-Accept {:?} (expected {expected:?})", value.trim()))
                };
            }
        }
    }
    Err("no Sec-WebSocket-Accept header".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of RFC 6455 §1.3.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    #[test]
    fn accept_key_matches_rfc_6455() {
        assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn request_key_is_the_nonce_in_base64() {
        assert_eq!(request_key(*b"the sample nonce"), KEY);
    }

    #[test]
    fn the_response_is_checked() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(head_end(ok), Some(ok.len()));
        assert_eq!(check_response(ok, KEY), Ok(()));
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(check_response(wrong, KEY).unwrap_err().contains("bad Sec-WebSocket-Accept"));
        let missing = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert_eq!(check_response(missing, KEY).unwrap_err(), "no Sec-WebSocket-Accept header");
        let refused = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert!(check_response(refused, KEY).unwrap_err().contains("400"));
        assert_eq!(head_end(b"HTTP/1.1 101 OK\r\n"), None);
    }

    #[test]
    fn the_request_asks_for_version_13() {
        let req = request("127.0.0.1:3000", "/socket.io/?EIO=4&transport=websocket", KEY);
        assert!(req.starts_with("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"));
        assert!(req.contains(&format!("\r\nSec-WebSocket-Key: {KEY}\r\n")));
        assert!(req.ends_with("Sec-WebSocket-Version: 13\r\n\r\n"));
    }
}
