//! Channel and key names. Every name starts with the cluster prefix (`--cluster-prefix`,
//! one per cluster, one per test run), and names that embed client-chosen strings (rooms,
//! namespaces) carry the namespace's length, so that no two (namespace, room) pairs share a
//! channel whatever characters they hold.

use super::NodeId;

/// The names of one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channels {
    prefix: String,
}

impl Channels {
    #[must_use]
    pub fn new(prefix: &str) -> Channels {
        Channels { prefix: prefix.to_owned() }
    }

    /// Broadcasts to every socket of a namespace: every node with a socket there listens.
    #[must_use]
    pub fn namespace(&self, nsp: &str) -> String {
        format!("{}:nsp:{}:{nsp}", self.prefix, nsp.len())
    }

    /// Broadcasts to a room: only nodes with a member of the room listen.
    #[must_use]
    pub fn room(&self, nsp: &str, room: &str) -> String {
        format!("{}:room:{}:{nsp}:{room}", self.prefix, nsp.len())
    }

    /// Requests and replies for one node.
    #[must_use]
    pub fn node(&self, node: &NodeId) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// Heartbeats and departures of every node.
    #[must_use]
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// The registry key of a node: present, with an expiry, while the node is alive.
    #[must_use]
    pub fn node_key(&self, node: &NodeId) -> String {
        format!("{}:alive:{node}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn no_two_namespace_room_pairs_share_a_channel() {
        let c = Channels::new("p");
        let pairs = [("/", "a:b"), ("/:a", "b"), ("/a", ":b"), ("/a:", "b"), ("/", ""), ("", "/")];
        let names: HashSet<String> = pairs.iter().map(|(n, r)| c.room(n, r)).collect();
        assert_eq!(names.len(), pairs.len(), "{names:?}");
        assert_ne!(c.namespace("/"), c.room("/", ""));
    }

    #[test]
    fn every_name_is_under_the_prefix() {
        let (a, b) = (Channels::new("run1"), Channels::new("run2"));
        let node = NodeId::new("n1").unwrap();
        for (x, y) in [
            (a.namespace("/"), b.namespace("/")),
            (a.room("/", "r"), b.room("/", "r")),
            (a.node(&node), b.node(&node)),
            (a.nodes(), b.nodes()),
            (a.node_key(&node), b.node_key(&node)),
        ] {
            assert!(x.starts_with("run1:") && y.starts_with("run2:"), "{x} {y}");
        }
    }
}
