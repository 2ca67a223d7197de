//! What nodes send each other: one envelope per message, postcard after a version byte,
//! with the sender's node id, so that a node can ignore its own messages (Redis echoes a
//! publish to every subscriber, the publisher included) and refuse a format it does not
//! know with a defined error instead of misreading it.

use bytes::Bytes;

/// The format this build writes and reads. A message of another version is refused
/// ([`EnvelopeError::Version`]) and counted by the caller; the version byte comes before
/// anything postcard decodes, so a newer format can change everything after it.
pub const VERSION: u8 = 1;

/// At most this many bytes in a node id (`--node-id`): it travels in every envelope.
pub const MAX_NODE_ID: usize = 64;

/// A node's name in the cluster: given (`--node-id`) or drawn at start.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct NodeId(String);

impl NodeId {
    /// A node id, if it is 1..=[`MAX_NODE_ID`] bytes of printable ASCII without blanks
    /// (it is part of channel and key names, and of logs).
    #[must_use]
    pub fn new(id: &str) -> Option<NodeId> {
        let ok = (1..=MAX_NODE_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| NodeId(id.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One message between nodes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    /// Drawn when the node starts: a node restarted under the same id is a new sender (its
    /// broadcasts count from 0 again), and two running nodes given one id are told apart.
    pub incarnation: u64,
    pub body: Body,
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Body {
    /// A broadcast for the sockets of other nodes.
    Broadcast(Broadcast),
    /// The sender is alive for `ttl_ms` more.
    Heartbeat { ttl_ms: u64 },
    /// The sender stops (a drain or a shutdown): forget it now rather than at expiry.
    Leaving,
    /// Bytes for the application on the receiving node (the room service's shared
    /// presence, say), in the application's own format.
    App(Bytes),
    /// A question for every node's application (see `queries`).
    Ask { query: u64, payload: Bytes },
    /// A node's answer to the sender's question `query`.
    Reply { query: u64, payload: Bytes },
}

/// A broadcast as it crosses: who gets it, by the same rules as on one node (`Target`),
/// and the Socket.IO packets already encoded, so each node sends the same bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Broadcast {
    /// The sender's count of its broadcasts: a broadcast to several rooms is published on
    /// each room's channel, and a node that gets it twice delivers it once.
    pub seq: u64,
    pub nsp: String,
    /// Empty: every socket of the namespace.
    pub rooms: Vec<String>,
    pub except_rooms: Vec<String>,
    pub except_socket: Option<String>,
    /// May be dropped rather than queued for a socket that is not ready.
    pub volatile: bool,
    /// The text packet, then the binary attachments.
    pub text: Bytes,
    pub binary: Vec<Bytes>,
}

/// Why bytes are no envelope for this build.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("empty cluster message")]
    Empty,
    #[error("cluster message of format {0}, this build reads format {VERSION}")]
    Version(u8),
    #[error("malformed cluster message: {0}")]
    Malformed(String),
}

/// `version`, then `value` in postcard: the shape of every message between nodes.
pub(crate) fn versioned<T: serde::Serialize>(version: u8, value: &T) -> Bytes {
    let mut out = vec![version];
    // Serializing into a Vec fails only for shapes postcard cannot express; the messages
    // between nodes have none.
    out.extend_from_slice(&postcard::to_allocvec(value).unwrap_or_default());
    Bytes::from(out)
}

impl Envelope {
    /// The envelope's bytes: the version, then postcard.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        versioned(VERSION, self)
    }

    /// The envelope in `bytes`, or why there is none. Trailing bytes are refused: a
    /// message is one envelope.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let (&version, rest) = bytes.split_first().ok_or(EnvelopeError::Empty)?;
        if version != VERSION {
            return Err(EnvelopeError::Version(version));
        }
        let (envelope, tail) =
            postcard::take_from_bytes::<Envelope>(rest).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if !tail.is_empty() {
            return Err(EnvelopeError::Malformed(format!("{} bytes after the envelope", tail.len())));
        }
        if NodeId::new(envelope.from.as_str()).is_none() {
            return Err(EnvelopeError::Malformed("bad node id".into()));
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeId {
        NodeId::new(id).unwrap()
    }

    fn broadcast() -> Envelope {
        Envelope {
            from: node("node-a"),
            incarnation: 42,
            body: Body::Broadcast(Broadcast {
                seq: 7,
                nsp: "/chat".into(),
                rooms: vec!["chat:lobby".into(), "chat:b".into()],
                except_rooms: vec!["muted".into()],
                except_socket: Some("abc".into()),
                volatile: false,
                text: Bytes::from_static(b"2/chat,[\"m\",{\"_placeholder\":true,\"num\":0}]"),
                binary: vec![Bytes::from_static(&[0, 1, 2, 255])],
            }),
        }
    }

    #[test]
    fn every_body_round_trips() {
        for envelope in [
            broadcast(),
            Envelope { from: node("n"), incarnation: 1, body: Body::Heartbeat { ttl_ms: 10_000 } },
            Envelope { from: node("n"), incarnation: u64::MAX, body: Body::Leaving },
            Envelope { from: node("n"), incarnation: 3, body: Body::App(Bytes::from_static(b"\x01app")) },
            Envelope {
                from: node("n"),
                incarnation: 3,
                body: Body::Ask { query: 9, payload: Bytes::from_static(b"?") },
            },
            Envelope { from: node("n"), incarnation: 3, body: Body::Reply { query: 9, payload: Bytes::new() } },
        ] {
            let bytes = envelope.encode();
            assert_eq!(bytes[0], VERSION);
            assert_eq!(Envelope::decode(&bytes), Ok(envelope));
        }
    }

    #[test]
    fn another_version_empty_truncated_or_trailing_bytes_are_refused() {
        let bytes = broadcast().encode().to_vec();
        let mut newer = bytes.clone();
        newer[0] = VERSION + 1;
        assert_eq!(Envelope::decode(&newer), Err(EnvelopeError::Version(VERSION + 1)));
        assert_eq!(Envelope::decode(&[]), Err(EnvelopeError::Empty));
        for cut in 1..bytes.len() {
            assert!(Envelope::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes;
        trailing.push(0);
        assert!(matches!(Envelope::decode(&trailing), Err(EnvelopeError::Malformed(_))));
    }

    #[test]
    fn node_ids_are_short_printable_and_checked_on_arrival() {
        assert!(NodeId::new("node-1").is_some());
        for bad in ["", "has space", "tab\t", "é", &"x".repeat(MAX_NODE_ID + 1)] {
            assert!(NodeId::new(bad).is_none(), "{bad:?}");
        }
        let forged = Envelope { from: NodeId("bad id".into()), incarnation: 0, body: Body::Leaving };
        assert!(matches!(Envelope::decode(&forged.encode()), Err(EnvelopeError::Malformed(_))));
    }
}
