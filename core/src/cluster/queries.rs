//! Questions to the other nodes: a question goes to every node on the nodes' channel, each
//! live node answers on the asker's node channel, and the question is done when every node
//! that was alive when it was asked has answered, has gone, or the timeout has passed. The
//! asker learns which nodes did not answer: an answer is never silently partial (Node's
//! Redis adapter counts responders with `PUBSUB NUMSUB`, which counts subscriptions, not
//! live nodes, so its `fetchSockets` waits out its timeout or misses nodes without saying).

use super::envelope::NodeId;
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};

/// A question's number on the node that asked it.
pub type QueryId = u64;

/// At most this many questions wait for answers at once; a question past it is done at
/// once, every node named missing (the bound holds whatever the application asks).
pub const MAX_QUERIES: usize = 4096;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Query {
    waiting: BTreeSet<NodeId>,
    deadline: Instant,
}

/// What a change to the questions in flight finished: each question done, with the nodes
/// that did not answer.
pub type Done = Vec<(QueryId, Vec<NodeId>)>;

/// The questions this node asked that still wait for answers.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Queries {
    pending: BTreeMap<QueryId, Query>,
    next: QueryId,
}

impl Queries {
    /// A new question to `nodes`, due by `deadline`: its number, and `Some(missing)` if it
    /// is done at once (nobody to ask: none missing; past the bound: all of them).
    pub fn ask(&mut self, nodes: BTreeSet<NodeId>, deadline: Instant) -> (QueryId, Option<Vec<NodeId>>) {
        let id = self.next;
        self.next += 1;
        if nodes.is_empty() {
            return (id, Some(Vec::new()));
        }
        if self.pending.len() >= MAX_QUERIES {
            return (id, Some(nodes.into_iter().collect()));
        }
        self.pending.insert(id, Query { waiting: nodes, deadline });
        (id, None)
    }

    /// `from` answered question `id`: whether the answer is one it waited for, and whether
    /// the question is done with it.
    pub fn answered(&mut self, id: QueryId, from: &NodeId) -> (bool, bool) {
        let Some(q) = self.pending.get_mut(&id) else { return (false, false) };
        if !q.waiting.remove(from) {
            return (false, false);
        }
        let done = q.waiting.is_empty();
        if done {
            self.pending.remove(&id);
        }
        (true, done)
    }

    /// A node is gone: no question waits for it any more.
    pub fn gone(&mut self, node: &NodeId) -> Done {
        let mut done = Vec::new();
        self.pending.retain(|id, q| {
            q.waiting.remove(node);
            if q.waiting.is_empty() {
                done.push((*id, Vec::new()));
            }
            !q.waiting.is_empty()
        });
        done
    }

    /// The questions past their deadline, with the nodes that did not answer.
    pub fn expire(&mut self, now: Instant) -> Done {
        let due: Vec<QueryId> = self.pending.iter().filter(|(_, q)| q.deadline <= now).map(|(id, _)| *id).collect();
        due.into_iter()
            .filter_map(|id| self.pending.remove(&id).map(|q| (id, q.waiting.into_iter().collect())))
            .collect()
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|q| q.deadline).min()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: &[&str]) -> BTreeSet<NodeId> {
        ids.iter().map(|i| NodeId::new(i).unwrap()).collect()
    }

    #[test]
    fn a_question_is_done_when_every_node_answered_or_went() {
        let mut q = Queries::default();
        let (id, done) = q.ask(nodes(&["a", "b", "c"]), Instant(100));
        assert_eq!(done, None);
        let [a, b, c] = ["a", "b", "c"].map(|n| NodeId::new(n).unwrap());
        assert_eq!(q.answered(id, &a), (true, false));
        assert_eq!(q.answered(id, &a), (false, false), "a second answer from a is not waited for");
        assert_eq!(q.answered(id + 1, &b), (false, false), "nor one to another question");
        assert!(q.gone(&c).is_empty());
        assert_eq!(q.answered(id, &b), (true, true));
        assert!(q.is_empty());
        let (other, _) = q.ask(nodes(&["a"]), Instant(100));
        assert_eq!(q.gone(&a), vec![(other, vec![])]);
    }

    #[test]
    fn at_the_deadline_the_silent_nodes_are_named_and_nobody_to_ask_is_done_at_once() {
        let mut q = Queries::default();
        let (id, _) = q.ask(nodes(&["a", "b"]), Instant(100));
        q.answered(id, &NodeId::new("a").unwrap());
        assert!(q.expire(Instant(99)).is_empty());
        assert_eq!(q.poll_timeout(), Some(Instant(100)));
        assert_eq!(q.expire(Instant(100)), vec![(id, vec![NodeId::new("b").unwrap()])]);
        assert_eq!(q.ask(BTreeSet::new(), Instant(5)).1, Some(vec![]));
        for _ in 0..MAX_QUERIES {
            q.ask(nodes(&["a"]), Instant(500));
        }
        assert_eq!(q.ask(nodes(&["a"]), Instant(500)).1, Some(vec![NodeId::new("a").unwrap()]), "past the bound");
        assert_eq!(q.len(), MAX_QUERIES);
    }
}
