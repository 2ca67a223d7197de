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
    by_sender: HashMap<NodeId, BTreeSet<u64>>,
}

impl Seen {
    /// Whether `(from, seq)` is new, remembering it. A sequence number older than the
    /// sender's window counts as seen: delivering it late could deliver it twice.
    pub fn first_time(&mut self, from: &NodeId, seq: u64) -> bool {
        let seqs = self.by_sender.entry(from.clone()).or_default();
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

    /// Forgets a sender that left (its restart starts a new sequence).
    pub fn forget(&mut self, node: &NodeId) {
        self.by_sender.remove(node);
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
        assert!(seen.first_time(&a, 1));
        assert!(!seen.first_time(&a, 1), "the copy from a second room channel");
        assert!(seen.first_time(&b, 1), "another sender's 1");
        for seq in 2..=5000 {
            assert!(seen.first_time(&a, seq));
            assert!(!seen.first_time(&a, seq));
        }
        assert!(seen.len() <= 2 * WINDOW, "bounded: {}", seen.len());
        assert!(!seen.first_time(&a, 3), "older than the window: treated as seen");
        seen.forget(&a);
        assert!(seen.first_time(&a, 1), "a restarted sender starts again");
    }
}
