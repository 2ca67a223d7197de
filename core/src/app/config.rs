//! The room service's settings: keys, timings, limits. Every one is settable from the CLI.

use super::auth::AuthKey;
use super::ratelimit::Limit;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AppConfig {
    /// Public keys that may sign tokens. Empty = dev mode: anyone may connect, the user is
    /// the socket, and `/admin` and the HTTP producer API are refused.
    pub auth_keys: Vec<AuthKey>,
    /// Seconds of slack on `exp` and `nbf`.
    pub auth_leeway_secs: u64,
    /// A typing state ends by itself after this long without a new `typing-start`.
    pub typing_timeout_ms: u64,
    /// `send-message`, `private-message`, `message` and `text-change` share this bucket.
    pub chat_limit: Limit,
    /// `typing-*`, `cursor-move` and `selection-change` share this one.
    pub typing_limit: Limit,
    /// Every event of one socket, whatever its name, known or not, before the buckets above.
    pub event_limit: Limit,
    /// Messages in `room-info.recentMessages`, notifications in `pending-notifications`.
    pub recent_limit: usize,
    /// Ops kept per document for transforming late edits.
    pub doc_log_limit: usize,
    /// Largest document, in UTF-16 code units. Its state (sent once on join) encodes to at
    /// most 6 JSON bytes per unit, which the host's outbound limit must hold.
    pub max_doc_len: usize,
    /// Bytes one document's op log may hold.
    pub doc_log_bytes: usize,
    /// Bytes the op logs of all open documents may hold together; past it, the log of the
    /// document being edited gives way (a late edit to it is then stale).
    pub doc_log_total_bytes: usize,
    /// Op steps that transforming one late edit to the head may cost; past it the edit is
    /// `STALE_VERSION` (the client re-joins) instead of stalling everyone else.
    pub doc_transform_work: usize,
}

impl AppConfig {
    /// What each open document may hold and cost.
    #[must_use]
    pub fn doc_limits(&self) -> super::document::DocLimits {
        super::document::DocLimits {
            log_ops: self.doc_log_limit,
            log_bytes: self.doc_log_bytes,
            max_len: self.max_doc_len,
            transform_work: self.doc_transform_work,
        }
    }
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            auth_keys: Vec::new(),
            auth_leeway_secs: 0,
            typing_timeout_ms: 5_000,
            chat_limit: Limit { capacity: 100, window_ms: 60_000 },
            typing_limit: Limit { capacity: 600, window_ms: 60_000 },
            event_limit: Limit { capacity: 2_000, window_ms: 10_000 },
            recent_limit: 50,
            doc_log_limit: 1_000,
            max_doc_len: 100_000,
            doc_log_bytes: 1 << 20,
            doc_log_total_bytes: 64 << 20,
            doc_transform_work: 100_000,
        }
    }
}
