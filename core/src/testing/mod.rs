//! Test helpers: [`host`], the one host model every test, the simulation and the fuzz
//! targets drive a machine through (a virtual clock that jumps straight to the next
//! deadline, the output contract, helpers that speak HTTP-ish and WebSocket-ish to it);
//! [`MemStore`], the in-memory store it answers from; and [`nodes`], several machines on
//! one clock joined by a deterministic bus.

pub mod cluster;
pub mod host;
pub mod nodes;

pub use host::{per_conn, Host, Rng, WALL_MS};

use crate::app::records::{RoomAnswer, RoomRequest};
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

/// A store in memory with the semantics the host's store has for the room service's
/// records (see `app/records.rs`): it decodes each request, as the SQLite store does.
#[derive(Debug, Default)]
pub struct MemStore {
    /// (scope, room, message JSON) in the order stored.
    messages: Vec<(String, String, String)>,
    /// (user, id, notification JSON, read) in the order first stored.
    notifications: Vec<(String, String, String, bool)>,
    documents: HashMap<(String, String), (String, u64)>,
    /// Makes every request fail.
    pub failing: bool,
}

impl MemStore {
    /// Every stored chat message, in order.
    pub fn messages_json(&self) -> Vec<Value> {
        self.messages.iter().map(|(_, _, m)| serde_json::from_str(m).expect("stored JSON")).collect()
    }

    pub fn answer(&mut self, request: &StoreRequest) -> StoreAnswer {
        if self.failing {
            return StoreAnswer::Failed("store is down".into());
        }
        match RoomRequest::from_store(request) {
            Ok(request) => self.run(request).into(),
            Err(why) => StoreAnswer::Failed(why),
        }
    }

    fn run(&mut self, request: RoomRequest) -> RoomAnswer {
        let limit = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        match request {
            RoomRequest::AppendMessage { scope, room, message } => {
                self.messages.push((scope, room, message));
                RoomAnswer::Done
            }
            RoomRequest::LoadHistory { scope, room, limit: n } => {
                let all: Vec<String> = self
                    .messages
                    .iter()
                    .filter(|(s, r, _)| *s == scope && *r == room)
                    .map(|(_, _, m)| m.clone())
                    .collect();
                RoomAnswer::Messages(all[all.len().saturating_sub(limit(n))..].to_vec())
            }
            RoomRequest::PutNotification { user, id, notification } => {
                match self.notifications.iter_mut().find(|(u, i, _, _)| *u == user && *i == id) {
                    Some(kept) => kept.2 = notification,
                    None => self.notifications.push((user, id, notification, false)),
                }
                RoomAnswer::Done
            }
            RoomRequest::LoadNotifications { user, limit: n } => RoomAnswer::Notifications(
                self.notifications
                    .iter()
                    .rev()
                    .filter(|(u, ..)| *u == user)
                    .take(limit(n))
                    .map(|(_, _, json, read)| (json.clone(), *read))
                    .collect(),
            ),
            RoomRequest::MarkRead { user, id } => {
                let mut n = 0;
                for (u, i, _, read) in &mut self.notifications {
                    if *u == user && *i == id {
                        *read = true;
                        n += 1;
                    }
                }
                RoomAnswer::Updated(n)
            }
            RoomRequest::MarkAllRead { user } => {
                let mut n = 0;
                for (u, _, _, read) in &mut self.notifications {
                    if *u == user && !*read {
                        *read = true;
                        n += 1;
                    }
                }
                RoomAnswer::Updated(n)
            }
            RoomRequest::SaveDocument { scope, doc, content, version } => {
                self.documents.insert((scope, doc), (content, version));
                RoomAnswer::Done
            }
            RoomRequest::LoadDocument { scope, doc } => {
                RoomAnswer::Document(self.documents.get(&(scope, doc)).cloned())
            }
        }
    }
}
