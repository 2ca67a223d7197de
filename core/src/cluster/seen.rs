//! The broadcasts a node has delivered, per sender, in a bounded window: a broadcast to
//! several rooms arrives once per room channel the node listens to, and is delivered once.
//!
//! Redis hands one subscriber connection every message in the order the server received
//! them, so the copies of one broadcast arrive close together; a window of the last
//! [`WINDOW`] sequence numbers per sender holds them. Memory is bounded by the window and
//! by the live senders (a sender is forgotten when it leaves the registry).

use super::NodeId;
use std::collections::{BTreeSet, HashMap};

/// Sequence numbers remembered per sender.
pub const WINDOW: usize = 1024;

#[derive(Debug, Default)]
pub struct Seen {
    /// By sender: its node id and incarnation.
    by_sender: HashMap<(NodeId, u64), BTreeSet<u64>>,
}

impl Seen {
    /// Whether `(from, seq)` is new, remembering it. A sequence number older than the
    /// sender's window counts as seen: delivering it late could deliver it twice.
    pub fn first_time(&mut self, from: &NodeId, incarnation: u64, seq: u64) -> bool {
        let seqs = self.by_sender.entry((from.clone(), incarnation)).or_default();
        if seqs.len() >= WINDOW && seqs.first().is_some_and(|oldest| seq < *oldest) {
            return false;
        }
        if !seqs.insert(seq) {
            return false;
        }
        while seqs.len() > WINDOW {
            seqs.pop_first();
        }
        true
    }

    /// Forgets every incarnation of a node (it left, expired, or restarted).
    pub fn forget(&mut self, node: &NodeId) {
        self.by_sender.retain(|(n, _), _| n != node);
    }

    /// Sequence numbers held, over all senders.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_sender.values().map(BTreeSet::len).sum()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_broadcast_once_per_sender_in_a_bounded_window() {
        let (a, b) = (NodeId::new("a").unwrap(), NodeId::new("b").unwrap());
        let mut seen = Seen::default();
        assert!(seen.first_time(&a, 7, 1));
        assert!(!seen.first_time(&a, 7, 1), "the copy from a second room channel");
        assert!(seen.first_time(&b, 7, 1), "another sender's 1");
        assert!(seen.first_time(&a, 8, 1), "the same node restarted: a new sender");
        for seq in 2..=5000 {
            assert!(seen.first_time(&a, 7, seq));
            assert!(!seen.first_time(&a, 7, seq));
        }
        assert!(seen.len() <= 3 * WINDOW, "bounded: {}", seen.len());
        assert!(!seen.first_time(&a, 7, 3), "older than the window: treated as seen");
        seen.forget(&a);
        assert!(seen.first_time(&a, 7, 1), "forgotten: starts again");
        assert_eq!(seen.len(), 2, "b's one, and a's new one");
    }
}
