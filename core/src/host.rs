//! What crosses the boundary between the core and a host: inputs, outputs, connection ids.
//!
//! A host owns the sockets. It gives every HTTP request and every WebSocket its own
//! [`ConnId`], hands what arrives to the core as an [`Input`], and carries out every
//! [`Output`] it drains.

pub use crate::store::{StoreAnswer, StoreId, StoreRequest};
use bytes::Bytes;
use std::net::IpAddr;

/// A host-assigned id for one transport: one HTTP request (a polling GET or POST, or a
/// WebSocket upgrade request that, once accepted, stays the id of that WebSocket).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct ConnId(pub u64);

/// The HTTP method of a request on the Engine.IO path.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    /// Any other method (PUT, DELETE, ...): answered as a bad handshake method.
    Other,
}

/// An HTTP request on the Engine.IO path (CORS preflights are the host's business).
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub conn: ConnId,
    pub method: Method,
    /// The raw query string, without the leading `?`.
    pub query: &'a str,
    /// The POST body. The host stops reading at `max_payload + 1` bytes and sets `too_large`.
    pub body: &'a [u8],
    pub too_large: bool,
    /// The request asks to upgrade to WebSocket (`Upgrade: websocket`).
    pub websocket: bool,
    pub remote: Option<IpAddr>,
}

/// A WebSocket frame as received.
#[derive(Copy, Clone, Debug)]
pub enum Frame<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// A WebSocket frame to send. The bytes are shared: a broadcast hands every target a clone
/// of one encoded buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutFrame {
    Text(Bytes),
    Binary(Bytes),
}

impl OutFrame {
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            OutFrame::Text(b) | OutFrame::Binary(b) => b.len(),
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a transport went away, as the host saw it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TransportEnd {
    /// The peer closed it or the request was aborted.
    Closed,
    /// A read or write failed, a frame broke the WebSocket rules, or a frame was over the
    /// payload limit (the host closes such a WebSocket with code 1009 itself).
    Error,
    /// The host's outbound queue for it went over its limit: the client does not read.
    Backpressure,
}

/// A request on the HTTP API (`/api/...`), answered with `Output::Respond`.
#[derive(Clone, Debug)]
pub struct ApiRequest<'a> {
    pub conn: ConnId,
    pub method: Method,
    /// The path after `/api/`, e.g. `notifications`.
    pub path: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// Everything the world tells the core.
#[derive(Clone, Debug)]
pub enum Input<'a> {
    Request(Request<'a>),
    /// A frame on a WebSocket the core accepted.
    Frame {
        conn: ConnId,
        frame: Frame<'a>,
    },
    /// A transport ended without the core asking for it. Unknown ids are ignored.
    Ended {
        conn: ConnId,
        how: TransportEnd,
    },
    /// Stop: tell every client, then close every transport.
    Shutdown,
    /// The wall clock (milliseconds since the Unix epoch) at this call's `now`. Hosts send
    /// it first and then now and again; between two, the core counts on from `now`.
    WallClock {
        unix_ms: u64,
    },
    /// The store's answer to an [`Output::Store`].
    Stored {
        id: StoreId,
        answer: StoreAnswer,
    },
    /// A request on the HTTP API (`POST /api/notifications`, ...).
    Api(ApiRequest<'a>),
    /// What the cluster link reports (cluster mode only).
    Cluster(ClusterInput<'a>),
}

/// What the cluster link (Redis, or a test's bus) tells the core.
#[derive(Clone, Debug)]
pub enum ClusterInput<'a> {
    /// A message arrived on a channel the core subscribed to.
    Message { channel: &'a str, payload: &'a [u8] },
    /// The link is (again) connected and subscribed to every channel the core holds.
    Up,
    /// The link is lost; it reconnects by itself.
    Down,
}

/// What the core asks of the cluster link. The link keeps the set of subscribed channels
/// and subscribes again after a reconnect on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterOutput {
    Publish {
        channel: String,
        payload: Bytes,
    },
    Subscribe {
        channel: String,
    },
    Unsubscribe {
        channel: String,
    },
    /// Sets a key that expires after `ttl_ms` (the node registry's heartbeat key).
    SetExpiring {
        key: String,
        value: Bytes,
        ttl_ms: u64,
    },
    Delete {
        key: String,
    },
}

/// Everything the core wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Answer an HTTP request; this ends it.
    Respond { conn: ConnId, status: u16, content_type: &'static str, body: Bytes },
    /// Complete the WebSocket upgrade of this request; frames for it follow.
    Accept { conn: ConnId },
    /// Send a frame on a WebSocket.
    Send { conn: ConnId, frame: OutFrame },
    /// Close a WebSocket (after the frames already sent) with this code and reason.
    Close { conn: ConnId, code: u16, reason: &'static str },
    /// Carry out a storage request and answer with [`Input::Stored`], in order.
    Store { id: StoreId, request: StoreRequest },
    /// Hand this to the cluster link (cluster mode only), in order.
    Cluster(ClusterOutput),
}

impl Output {
    /// The transport this output is for (none for a storage request or the cluster).
    #[must_use]
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Output::Respond { conn, .. }
            | Output::Accept { conn }
            | Output::Send { conn, .. }
            | Output::Close { conn, .. } => Some(*conn),
            Output::Store { .. } | Output::Cluster(_) => None,
        }
    }
}

/// The content type of every Engine.IO polling answer.
pub const TEXT_PLAIN: &str = "text/plain; charset=UTF-8";
/// The content type of Engine.IO error answers.
pub const APPLICATION_JSON: &str = "application/json";

/// The token of an `Authorization: Bearer <token>` header. The scheme is matched without
/// regard to case (RFC 9110 §11.1), the token without surrounding blanks; `None` for any
/// other scheme or an empty token.
#[must_use]
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod bearer_tests {
    use super::bearer_token;

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_trimmed() {
        for h in ["Bearer abc", "bearer abc", "BEARER  abc ", " Bearer abc"] {
            assert_eq!(bearer_token(h), Some("abc"), "{h:?}");
        }
        for h in ["Basic abc", "Bearer", "Bearer   ", "Bearerabc", ""] {
            assert_eq!(bearer_token(h), None, "{h:?}");
        }
    }
}
