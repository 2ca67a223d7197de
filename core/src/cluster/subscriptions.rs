//! The channels a node needs, reference-counted: a room's channel is wanted from its first
//! local member to its last, so that a node without members of a room gets none of its
//! traffic. The counts turn into subscribe / unsubscribe effects only at 0 → 1 and 1 → 0.

use std::collections::HashMap;

/// What a change asks of the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Subscribe(String),
    Unsubscribe(String),
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Subscriptions {
    counts: HashMap<String, usize>,
}

impl Subscriptions {
    /// One more local user of `channel`; `Subscribe` if it is the first.
    pub fn hold(&mut self, channel: String) -> Option<Change> {
        let n = self.counts.entry(channel.clone()).or_default();
        *n += 1;
        (*n == 1).then_some(Change::Subscribe(channel))
    }

    /// One less; `Unsubscribe` if it was the last. Releasing a channel not held is a
    /// no-op (the caller's books are wrong, but the link must not unsubscribe a channel
    /// someone else holds).
    pub fn release(&mut self, channel: &str) -> Option<Change> {
        let n = self.counts.get_mut(channel)?;
        *n -= 1;
        if *n > 0 {
            return None;
        }
        self.counts.remove(channel);
        Some(Change::Unsubscribe(channel.to_owned()))
    }

    #[must_use]
    pub fn holds(&self, channel: &str) -> bool {
        self.counts.contains_key(channel)
    }

    /// Every channel held, sorted (to subscribe again after the link came back).
    #[must_use]
    pub fn channels(&self) -> Vec<String> {
        let mut all: Vec<String> = self.counts.keys().cloned().collect();
        all.sort();
        all
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribes_at_the_first_holder_and_unsubscribes_after_the_last() {
        let mut s = Subscriptions::default();
        assert_eq!(s.hold("a".into()), Some(Change::Subscribe("a".into())));
        assert_eq!(s.hold("a".into()), None);
        assert_eq!(s.hold("b".into()), Some(Change::Subscribe("b".into())));
        assert_eq!(s.channels(), ["a", "b"]);
        assert_eq!(s.release("a"), None);
        assert!(s.holds("a"));
        assert_eq!(s.release("a"), Some(Change::Unsubscribe("a".into())));
        assert!(!s.holds("a"));
        assert_eq!(s.release("a"), None, "not held: nothing to undo");
        assert_eq!(s.release("b"), Some(Change::Unsubscribe("b".into())));
        assert!(s.is_empty());
    }
}
