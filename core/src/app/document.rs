//! Collaborative documents: the text, its version, a bounded log of recent ops for
//! transforming late edits, and the cursors that shift with every edit.

use super::ot::{self, Delta, DeltaError};
use crate::socketio::SocketId;
use std::collections::{BTreeMap, VecDeque};
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EditError {
    #[error("{0}")]
    Delta(#[from] DeltaError),
    #[error("version {0} is newer than the document")]
    FutureVersion(u64),
    #[error("version {0} is older than the document's op log; re-join the document")]
    Stale(u64),
    #[error("the document would exceed {0} characters")]
    TooLarge(usize),
}

/// What one document may hold and cost, from [`super::AppConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DocLimits {
    /// Ops kept in the log for transforming late edits.
    pub log_ops: usize,
    /// Bytes the log may hold (see [`Delta::weight`]).
    pub log_bytes: usize,
    /// The longest text, in UTF-16 code units.
    pub max_len: usize,
    /// Op steps one edit may cost to transform to the head; past it the edit is stale.
    pub transform_work: usize,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Logged {
    delta: Delta,
    /// What it counts against the log's byte budget.
    weight: usize,
}

/// Edits made on top of a document but not yet part of it: the text they make and their
/// deltas, in order. [`Document::commit`] makes them part of it (once they are stored);
/// dropping them leaves the document as it was.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Staged {
    text: Option<Vec<u16>>,
    deltas: Vec<Delta>,
}

impl Staged {
    /// The text the staged edits make (empty when none is staged).
    #[must_use]
    pub fn text(&self) -> &[u16] {
        self.text.as_deref().unwrap_or(&[])
    }
}

/// One document. Versions count applied ops; the log keeps the newest ones.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Document {
    text: Vec<u16>,
    version: u64,
    log: VecDeque<Logged>,
    /// The sum of the log's weights.
    log_bytes: usize,
    limits: DocLimits,
    /// Cursor positions (UTF-16 offsets) by socket.
    cursors: BTreeMap<SocketId, usize>,
}

#[cfg(any(test, fuzzing))]
impl Document {
    pub fn check_bounds(&self) -> Result<(), String> {
        if self.log.len() > self.limits.log_ops {
            return Err(format!("op log of {} ops, over {}", self.log.len(), self.limits.log_ops));
        }
        let weight: usize = self.log.iter().map(|l| l.weight).sum();
        if weight != self.log_bytes || weight > self.limits.log_bytes {
            return Err(format!(
                "op log of {weight} bytes (counted {}), limit {}",
                self.log_bytes, self.limits.log_bytes
            ));
        }
        if self.text.len() > self.limits.max_len {
            return Err(format!("text of {} units, over {}", self.text.len(), self.limits.max_len));
        }
        Ok(())
    }
}

impl Document {
    #[must_use]
    /// A text longer than `limits.max_len` (stored under a higher limit) is kept whole;
    /// edits may not make it longer.
    pub fn new(text: &str, version: u64, limits: DocLimits) -> Self {
        let text: Vec<u16> = text.encode_utf16().collect();
        Document {
            limits: DocLimits { log_ops: limits.log_ops.max(1), max_len: limits.max_len.max(text.len()), ..limits },
            text,
            version,
            log: VecDeque::new(),
            log_bytes: 0,
            cursors: BTreeMap::new(),
        }
    }

    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf16_lossy(&self.text)
    }

    /// The document length in UTF-16 code units.
    #[must_use]
    pub fn len(&self) -> usize {
        self.text.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Bytes the op log holds.
    #[must_use]
    pub fn log_bytes(&self) -> usize {
        self.log_bytes
    }

    /// Stages `delta`, made against version `base`: transformed over every op since (the
    /// logged ones, then the staged ones) and applied to the staged text. Returns the
    /// transformed delta and the version it makes. The document itself does not change.
    pub fn stage(&self, staged: &mut Staged, delta: &Delta, base: u64) -> Result<(Delta, u64), EditError> {
        let head = self.version + staged.deltas.len() as u64;
        if base > head {
            return Err(EditError::FutureVersion(base));
        }
        let behind = usize::try_from(head - base).unwrap_or(usize::MAX);
        let known = self.log.len() + staged.deltas.len();
        if behind > known {
            return Err(EditError::Stale(base));
        }
        let missed = || self.log.iter().map(|l| &l.delta).chain(&staged.deltas).skip(known - behind);
        // A transform walks both deltas once: refuse, before doing it, an edit whose
        // catching up would cost more than one edit may.
        let work = missed().fold(0usize, |w, m| w.saturating_add(m.ops.len()).saturating_add(delta.ops.len()));
        if work > self.limits.transform_work {
            return Err(EditError::Stale(base));
        }
        // A delta valid at `base` stays in bounds once transformed, and one out of bounds
        // at `base` is caught when the transformed delta is applied.
        let mut d = delta.clone();
        for m in missed() {
            d = m.transform(&d, true);
        }
        let text = d.apply(staged.text.as_deref().unwrap_or(&self.text))?;
        if text.len() > self.limits.max_len {
            return Err(EditError::TooLarge(self.limits.max_len));
        }
        ot::to_string(&text)?;
        staged.text = Some(text);
        staged.deltas.push(d.clone());
        Ok((d, head + 1))
    }

    /// Makes the staged edits part of the document: its text, version, log and cursors.
    /// The log then keeps at most `log_bytes` bytes (and the document's own limits).
    pub fn commit(&mut self, staged: Staged, log_bytes: usize) {
        let Some(text) = staged.text else { return };
        self.text = text;
        for d in staged.deltas {
            self.version += 1;
            for pos in self.cursors.values_mut() {
                *pos = d.transform_position(*pos, false);
            }
            let weight = d.weight();
            self.log_bytes += weight;
            self.log.push_back(Logged { delta: d, weight });
        }
        let budget = log_bytes.min(self.limits.log_bytes);
        while self.log.len() > self.limits.log_ops || self.log_bytes > budget {
            let Some(old) = self.log.pop_front() else { break };
            self.log_bytes -= old.weight;
        }
    }

    /// Stages and commits one edit at once (for callers without a store in between).
    pub fn edit(&mut self, delta: &Delta, base: u64) -> Result<(Delta, u64), EditError> {
        let mut staged = Staged::default();
        let done = self.stage(&mut staged, delta, base)?;
        self.commit(staged, usize::MAX);
        Ok(done)
    }

    /// Sets a socket's cursor, clamped into the document.
    pub fn set_cursor(&mut self, socket: &SocketId, position: usize) -> usize {
        let p = position.min(self.text.len());
        self.cursors.insert(socket.clone(), p);
        p
    }

    pub fn remove_cursor(&mut self, socket: &SocketId) {
        self.cursors.remove(socket);
    }

    #[must_use]
    pub fn cursor(&self, socket: &SocketId) -> Option<usize> {
        self.cursors.get(socket).copied()
    }

    #[must_use]
    pub fn cursors(&self) -> &BTreeMap<SocketId, usize> {
        &self.cursors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits(log_ops: usize, max_len: usize) -> DocLimits {
        DocLimits { log_ops, log_bytes: usize::MAX, max_len, transform_work: usize::MAX }
    }

    fn d(v: serde_json::Value) -> Delta {
        Delta::from_json(&v, 100).unwrap()
    }

    #[test]
    fn late_edits_are_transformed_to_the_head() {
        let mut doc = Document::new("abc", 0, limits(10, 1000));
        let (_, v1) = doc.edit(&d(json!([{"insert": "X"}])), 0).unwrap();
        assert_eq!((doc.text().as_str(), v1), ("Xabc", 1));
        // Made against version 0: insert after "c".
        let (t, v2) = doc.edit(&d(json!([{"retain": 3}, {"insert": "Y"}])), 0).unwrap();
        assert_eq!(doc.text(), "XabcY");
        assert_eq!((t, v2), (d(json!([{"retain": 4}, {"insert": "Y"}])), 2));
    }

    #[test]
    fn stale_future_and_out_of_range_edits_are_refused() {
        let mut doc = Document::new("abc", 0, limits(2, 10));
        for _ in 0..3 {
            doc.edit(&d(json!([{"insert": "x"}])), doc.version()).unwrap();
        }
        assert_eq!(doc.edit(&d(json!([{"insert": "x"}])), 0), Err(EditError::Stale(0)));
        assert_eq!(doc.edit(&d(json!([{"insert": "x"}])), 9), Err(EditError::FutureVersion(9)));
        assert_eq!(
            doc.edit(&d(json!([{"retain": 99}, {"insert": "x"}])), 3),
            Err(EditError::Delta(DeltaError::PastEnd))
        );
        assert_eq!(doc.edit(&d(json!([{"insert": "0123456789"}])), 3), Err(EditError::TooLarge(10)));
        assert_eq!(doc.version(), 3, "refused edits change nothing");
    }

    #[test]
    fn a_stored_text_over_the_limit_is_kept_but_cannot_grow() {
        let mut doc = Document::new(&"x".repeat(20), 0, limits(10, 10));
        assert_eq!(doc.check_bounds(), Ok(()));
        assert_eq!(doc.edit(&d(json!([{"insert": "y"}])), 0), Err(EditError::TooLarge(20)));
        assert!(doc.edit(&d(json!([{"delete": 5}])), 0).is_ok());
        assert_eq!(doc.len(), 15);
    }

    #[test]
    fn cursors_shift_with_edits() {
        let mut doc = Document::new("hello", 0, limits(10, 1000));
        let s = SocketId::from("s");
        doc.set_cursor(&s, 3);
        doc.edit(&d(json!([{"insert": "ab"}])), 0).unwrap();
        assert_eq!(doc.cursor(&s), Some(5));
        doc.edit(&d(json!([{"delete": 4}])), 1).unwrap();
        assert_eq!(doc.cursor(&s), Some(1));
        assert_eq!(doc.set_cursor(&s, 99), 3, "clamped");
    }

    /// A client as Quill apps write them: one op in flight, later local ops queued,
    /// remote ops transformed over the pending ones (the server's ops go first).
    struct Editor {
        text: Vec<u16>,
        version: u64,
        pending: VecDeque<Delta>,
        sent: bool,
        /// To the server: (delta, base version). From it: an op, or the ack of ours.
        up: VecDeque<(Delta, u64)>,
        down: VecDeque<Result<Delta, u64>>,
    }

    impl Editor {
        fn send_next(&mut self) -> bool {
            match self.pending.front() {
                Some(p) if !self.sent => {
                    self.up.push_back((p.clone(), self.version));
                    self.sent = true;
                    true
                }
                _ => false,
            }
        }

        fn receive(&mut self) -> bool {
            let Some(msg) = self.down.pop_front() else { return false };
            match msg {
                Ok(mut r) => {
                    for p in &mut self.pending {
                        let p2 = r.transform(p, true);
                        r = p.transform(&r, false);
                        *p = p2;
                    }
                    self.text = r.apply(&self.text).unwrap();
                    self.version += 1;
                }
                Err(v) => {
                    self.pending.pop_front();
                    self.sent = false;
                    self.version = v;
                }
            }
            true
        }
    }

    /// The server takes one op from client `c` and fans the result out.
    fn serve_one(server: &mut Document, clients: &mut [Editor], c: usize) -> bool {
        let Some((delta, base)) = clients[c].up.pop_front() else { return false };
        let (t, v) = server.edit(&delta, base).unwrap_or_else(|e| panic!("{e}: {delta:?} at {base}"));
        for (o, cl) in clients.iter_mut().enumerate() {
            cl.down.push_back(if o == c { Err(v) } else { Ok(t.clone()) });
        }
        true
    }

    #[test]
    fn any_number_of_concurrent_clients_converge() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        // Editors cut between characters, never inside a surrogate pair.
        let boundary = |i: usize, t: &[u16]| i == 0 || i >= t.len() || !(0xDC00..0xE000).contains(&t[i]);
        for _round in 0..200 {
            let mut server = Document::new("shared text", 0, limits(1000, 100_000));
            let n = 2 + rnd(4);
            let mut clients: Vec<Editor> = (0..n)
                .map(|_| Editor {
                    text: server.text.clone(),
                    version: 0,
                    pending: VecDeque::new(),
                    sent: false,
                    up: VecDeque::new(),
                    down: VecDeque::new(),
                })
                .collect();
            for _step in 0..200 {
                let c = rnd(n);
                match rnd(3) {
                    0 => {
                        let cl = &mut clients[c];
                        let len = cl.text.len();
                        let at = rnd(len + 1);
                        let mut e = Delta::default();
                        e.push(ot::Op::Retain(at));
                        if rnd(2) == 0 && at < len {
                            let n = 1 + rnd(len - at);
                            if !boundary(at, &cl.text) || !boundary(at + n, &cl.text) {
                                continue;
                            }
                            e.push(ot::Op::Delete(n));
                        } else if boundary(at, &cl.text) {
                            e.push(ot::Op::Insert(["a", "b", "😀", "ab"][rnd(4)].encode_utf16().collect()));
                        } else {
                            continue;
                        }
                        cl.text = e.apply(&cl.text).unwrap();
                        cl.pending.push_back(e);
                    }
                    1 => {
                        clients[c].send_next();
                        serve_one(&mut server, &mut clients, c);
                    }
                    _ => {
                        clients[c].receive();
                    }
                }
            }
            // Drain: send everything, deliver everything.
            let mut moved = true;
            while moved {
                moved = false;
                for c in 0..n {
                    moved |= clients[c].send_next();
                    while serve_one(&mut server, &mut clients, c) {
                        moved = true;
                    }
                    while clients[c].receive() {
                        moved = true;
                    }
                }
            }
            for cl in &clients {
                assert_eq!(String::from_utf16_lossy(&cl.text), server.text(), "client diverged");
                assert_eq!(cl.version, server.version());
            }
        }
    }
}
