//! Test helpers: [`host`], the one host model every test, the simulation and the fuzz
//! targets drive a machine through (a virtual clock that jumps straight to the next
//! deadline, the output contract, helpers that speak HTTP-ish and WebSocket-ish to it);
//! [`MemStore`], the in-memory store it answers from; and [`nodes`], several machines on
//! one clock joined by a deterministic bus.

pub mod host;
pub mod nodes;

pub use host::{per_conn, Host, Rng, WALL_MS};

use crate::store::{StoreAnswer, StoreRequest};
use serde_json::Value;
use std::collections::HashMap;

/// The sid of an Engine.IO open packet (`0{"sid":...}`), if that is what `packet` is.
pub fn open_sid(packet: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(packet.strip_prefix(b"0")?).ok()?;
    Some(v.get("sid")?.as_str()?.to_owned())
}

/// The sid of an open packet that must be one.
pub fn sid_of(open: &str) -> String {
    open_sid(open.as_bytes()).unwrap_or_else(|| panic!("not an open packet with a sid: {open:?}"))
}

/// A store in memory with the semantics the host's store has (see `store.rs`).
#[derive(Debug, Default)]
pub struct MemStore {
    messages: Vec<(String, String, Value)>,
    /// (user, notification) in the order stored.
    notifications: Vec<(String, Value)>,
    documents: HashMap<(String, String), (String, u64)>,
    /// Makes every request fail.
    pub failing: bool,
}

impl MemStore {
    /// Every stored chat message, in order.
    pub fn messages_json(&self) -> Vec<Value> {
        self.messages.iter().map(|(_, _, m)| m.clone()).collect()
    }

    pub fn answer(&mut self, request: &StoreRequest) -> StoreAnswer {
        if self.failing {
            return StoreAnswer::Failed("store is down".into());
        }
        match request {
            StoreRequest::AppendMessage { scope, room, message } => {
                self.messages.push((scope.clone(), room.clone(), message.clone()));
                StoreAnswer::Done
            }
            StoreRequest::LoadHistory { scope, room, limit } => {
                let all: Vec<Value> = self
                    .messages
                    .iter()
                    .filter(|(s, r, _)| s == scope && r == room)
                    .map(|(_, _, m)| m.clone())
                    .collect();
                StoreAnswer::Records(all[all.len().saturating_sub(*limit)..].to_vec())
            }
            StoreRequest::PutNotification { user, notification } => {
                self.notifications.push((user.clone(), notification.clone()));
                StoreAnswer::Done
            }
            StoreRequest::LoadNotifications { user, limit } => StoreAnswer::Records(
                self.notifications
                    .iter()
                    .rev()
                    .filter(|(u, _)| u == user)
                    .take(*limit)
                    .map(|(_, n)| n.clone())
                    .collect(),
            ),
            StoreRequest::MarkRead { user, id } => {
                let mut n = 0;
                for (u, notif) in &mut self.notifications {
                    if u == user && notif["id"].as_str() == Some(id) {
                        notif["read"] = Value::Bool(true);
                        n += 1;
                    }
                }
                StoreAnswer::Updated(n)
            }
            StoreRequest::MarkAllRead { user } => {
                let mut n = 0;
                for (u, notif) in &mut self.notifications {
                    if u == user && notif["read"] == Value::Bool(false) {
                        notif["read"] = Value::Bool(true);
                        n += 1;
                    }
                }
                StoreAnswer::Updated(n)
            }
            StoreRequest::SaveDocument { scope, doc, content, version } => {
                self.documents.insert((scope.clone(), doc.clone()), (content.clone(), *version));
                StoreAnswer::Done
            }
            StoreRequest::LoadDocument { scope, doc } => {
                StoreAnswer::Document(self.documents.get(&(scope.clone(), doc.clone())).cloned())
            }
        }
    }
}
