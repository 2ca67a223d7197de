//! Shared pieces of the fuzz targets: structured JSON and strings biased towards what the
//! room service looks at, the signing key and tokens, and the room service's small limits.
//! The host the service targets drive it through (with its in-memory store and the output
//! contract) is parlor-core's own `testing::Host`, exported under `cfg(fuzzing)`.
//!
//! Everything here goes through parlor-core's public API only.

use arbitrary::{Arbitrary, Result, Unstructured};
use ed25519_dalek::SigningKey;
use parlor_core::app::auth::{sign, AuthKey};
use parlor_core::app::ratelimit::Limit;
use parlor_core::app::AppConfig;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// The wall clock the service targets start from (parlor-core's test host's).
pub use parlor_core::testing::WALL_MS;

/// Strings the room service cares about: room names, doc ids, user names, edge lengths.
pub const KNOWN_STRINGS: &[&str] = &[
    "general",
    "random",
    "a",
    "",
    "   ",
    "doc1",
    "doc2",
    "alice",
    "bob",
    "root",
    "hello",
    "😀",
    "é",
    "message",
    "chat:general",
    "user:alice",
    "doc:doc1",
    "/",
    "/chat",
];

/// Object keys the room service reads.
pub const KNOWN_KEYS: &[&str] = &[
    "room",
    "rooms",
    "username",
    "content",
    "docId",
    "version",
    "delta",
    "position",
    "selection",
    "to",
    "id",
    "userId",
    "socketId",
    "title",
    "message",
    "event",
    "data",
    "token",
    "pid",
    "offset",
    "ops",
    "insert",
    "retain",
    "delete",
    "_placeholder",
    "num",
];

/// A string: a known one, a long one, one of the ids the run has seen, or anything.
#[derive(Arbitrary, Debug, Clone)]
pub enum Str {
    Known(u8),
    /// `n` copies of `x`: lengths around the validators' limits (64, 128, 200, 1000).
    Long(u8, LongLen),
    /// The k-th socket id (or user id) the run has seen so far.
    Seen(u8),
    Any(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum LongLen {
    L64,
    L65,
    L128,
    L129,
    L200,
    L201,
    L1000,
    L1001,
}

impl LongLen {
    fn len(self) -> usize {
        match self {
            LongLen::L64 => 64,
            LongLen::L65 => 65,
            LongLen::L128 => 128,
            LongLen::L129 => 129,
            LongLen::L200 => 200,
            LongLen::L201 => 201,
            LongLen::L1000 => 1000,
            LongLen::L1001 => 1001,
        }
    }
}

impl Str {
    pub fn render(&self, seen: &[String]) -> String {
        match self {
            Str::Known(i) => KNOWN_STRINGS[*i as usize % KNOWN_STRINGS.len()].to_owned(),
            Str::Long(c, n) => {
                let ch = if c % 4 == 0 { "😀" } else { "x" };
                ch.repeat(n.len())
            }
            Str::Seen(i) if !seen.is_empty() => seen[*i as usize % seen.len()].clone(),
            Str::Seen(i) => format!("nobody{i}"),
            Str::Any(s) => s.clone(),
        }
    }
}

/// One delta op, bounded.
#[derive(Arbitrary, Debug, Clone)]
pub enum DeltaOp {
    Retain(u8),
    Delete(u8),
    Insert(Str),
    /// Counts a client could send that no document is that long: near the integer limits.
    Huge(HugeOp),
    /// Not an op at all.
    Bad(J),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum HugeOp {
    RetainMax,
    DeleteMax,
    RetainHalf,
    Retain2e53,
    RetainU32,
}

impl DeltaOp {
    pub fn render(&self, seen: &[String]) -> Value {
        match self {
            DeltaOp::Retain(n) => json!({"retain": n}),
            DeltaOp::Delete(n) => json!({"delete": n}),
            DeltaOp::Insert(s) => json!({"insert": s.render(seen)}),
            DeltaOp::Huge(h) => match h {
                HugeOp::RetainMax => json!({"retain": u64::MAX}),
                HugeOp::DeleteMax => json!({"delete": u64::MAX}),
                HugeOp::RetainHalf => json!({"retain": u64::MAX / 2 + 1}),
                HugeOp::Retain2e53 => json!({"retain": (1u64 << 53) - 1}),
                HugeOp::RetainU32 => json!({"retain": u64::from(u32::MAX)}),
            },
            DeltaOp::Bad(j) => j.render(seen),
        }
    }
}

/// A JSON value, depth-limited, biased towards the keys and strings the service reads.
#[derive(Debug, Clone)]
pub enum J {
    Null,
    Bool(bool),
    Int(i64),
    Small(u8),
    Float(f64),
    Str(Str),
    Arr(Vec<J>),
    Obj(Vec<(Str, J)>),
    /// An object with only known keys.
    Known(Vec<(u8, J)>),
    Delta(Vec<DeltaOp>),
}

const MAX_DEPTH: usize = 4;

impl J {
    fn gen(u: &mut Unstructured<'_>, depth: usize) -> Result<J> {
        let leaf = depth >= MAX_DEPTH;
        let kinds = if leaf { 6 } else { 10 };
        Ok(match u.int_in_range(0..=kinds - 1)? {
            0 => J::Null,
            1 => J::Bool(u.arbitrary()?),
            2 => J::Int(u.arbitrary()?),
            3 => J::Small(u.arbitrary()?),
            4 => J::Float(u.arbitrary()?),
            5 => J::Str(u.arbitrary()?),
            6 => {
                let n = u.int_in_range(0..=4)?;
                J::Arr((0..n).map(|_| J::gen(u, depth + 1)).collect::<Result<_>>()?)
            }
            7 => {
                let n = u.int_in_range(0..=4)?;
                J::Obj((0..n).map(|_| Ok((u.arbitrary()?, J::gen(u, depth + 1)?))).collect::<Result<_>>()?)
            }
            8 => {
                let n = u.int_in_range(0..=5)?;
                J::Known((0..n).map(|_| Ok((u.arbitrary()?, J::gen(u, depth + 1)?))).collect::<Result<_>>()?)
            }
            _ => {
                let n = u.int_in_range(0..=6)?;
                J::Delta((0..n).map(|_| u.arbitrary()).collect::<Result<_>>()?)
            }
        })
    }

    pub fn render(&self, seen: &[String]) -> Value {
        match self {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Int(i) => json!(i),
            J::Small(i) => json!(i),
            J::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            J::Str(s) => Value::String(s.render(seen)),
            J::Arr(items) => Value::Array(items.iter().map(|x| x.render(seen)).collect()),
            J::Obj(kv) => {
                Value::Object(kv.iter().map(|(k, v)| (k.render(seen), v.render(seen))).collect::<Map<_, _>>())
            }
            J::Known(kv) => Value::Object(
                kv.iter()
                    .map(|(k, v)| (KNOWN_KEYS[*k as usize % KNOWN_KEYS.len()].to_owned(), v.render(seen)))
                    .collect::<Map<_, _>>(),
            ),
            J::Delta(ops) => Value::Array(ops.iter().map(|o| o.render(seen)).collect()),
        }
    }
}

impl<'a> Arbitrary<'a> for J {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        J::gen(u, 0)
    }
}

/// The room service with limits a short run reaches: rate limits, history, and document
/// logs small enough that they give way and late edits run out of work budget.
#[must_use]
pub fn small_app() -> AppConfig {
    let limit = |capacity, window_ms| Limit { capacity, window_ms };
    AppConfig {
        typing_timeout_ms: 700,
        chat_limit: limit(4, 2_000),
        typing_limit: limit(6, 1_000),
        event_limit: limit(12, 1_000),
        recent_limit: 3,
        doc_log_limit: 3,
        max_doc_len: 64,
        doc_log_bytes: 600,
        doc_log_total_bytes: 1_000,
        doc_transform_work: 40,
        ..AppConfig::default()
    }
}

/// The key every fuzz target signs with.
#[must_use]
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

/// A key nobody configured.
#[must_use]
pub fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[10; 32])
}

#[must_use]
pub fn auth_key() -> AuthKey {
    AuthKey { kid: None, key: signing_key().verifying_key().to_bytes() }
}

/// Tokens for the service targets, signed once: users, an admin, expired, not yet valid,
/// signed by the wrong key, with a kid nobody has.
pub fn tokens() -> &'static [String] {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let k = signing_key();
        let exp = WALL_MS / 1000 + 3600;
        vec![
            sign(&k, None, &json!({"sub": "alice", "name": "Alice", "exp": exp})),
            sign(&k, None, &json!({"sub": "bob", "exp": exp})),
            sign(&k, None, &json!({"sub": "root", "name": "Root", "exp": exp, "admin": true})),
            sign(&k, None, &json!({"sub": "alice", "exp": WALL_MS / 1000 - 10})),
            sign(&k, None, &json!({"sub": "bob", "exp": exp, "nbf": exp - 10})),
            sign(&other_key(), None, &json!({"sub": "root", "exp": exp, "admin": true})),
            sign(&k, Some("k9"), &json!({"sub": "alice", "exp": exp})),
            sign(&k, None, &json!({"sub": "carol", "name": 5, "exp": exp})),
        ]
    })
}

/// The in-memory store of parlor-core's own test harness (exported under `cfg(fuzzing)`).
pub use parlor_core::testing::MemStore;
