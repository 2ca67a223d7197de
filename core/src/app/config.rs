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
    /// Messages in `room-info.recentMessages`, notifications in `pending-notifications`.
    pub recent_limit: usize,
    /// Ops kept per document for transforming late edits.
    pub doc_log_limit: usize,
    /// Largest document, in UTF-16 code units.
    pub max_doc_len: usize,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            auth_keys: Vec::new(),
            auth_leeway_secs: 0,
            typing_timeout_ms: 5_000,
            chat_limit: Limit { capacity: 100, window_ms: 60_000 },
            typing_limit: Limit { capacity: 600, window_ms: 60_000 },
            recent_limit: 50,
            doc_log_limit: 1_000,
            max_doc_len: 1_000_000,
        }
    }
}
