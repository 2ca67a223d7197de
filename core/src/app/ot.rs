//! Operational transformation of Quill-style deltas over plain text.
//!
//! A delta is a list of `{retain: n}`, `{insert: "s"}` and `{delete: n}` ops; lengths and
//! positions count UTF-16 code units (JavaScript string indices), so browser editors and
//! the server agree on every position. [`Delta::transform`] and
//! [`Delta::transform_position`] follow quill-delta's algorithms, so a Quill client that
//! transforms with the same rules converges with the server.

use serde_json::{json, Map, Value};
use thiserror::Error;

/// One delta operation. Inserts keep their UTF-16 form: every length is in code units.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    Retain(usize),
    Insert(Vec<u16>),
    Delete(usize),
}

impl Op {
    fn len(&self) -> usize {
        match self {
            Op::Retain(n) | Op::Delete(n) => *n,
            Op::Insert(s) => s.len(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delta {
    pub ops: Vec<Op>,
}

/// The largest `retain` or `delete` count a client may send (far past any document).
pub const MAX_COUNT: u64 = u32::MAX as u64;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DeltaError {
    #[error("a delta is an array of {{retain}}, {{insert}} or {{delete}} ops")]
    Shape,
    #[error("a delta has at most {0} ops")]
    TooManyOps(usize),
    #[error("the delta reaches past the end of the document")]
    PastEnd,
    #[error("the delta splits a character in two")]
    SplitsCharacter,
}

impl Delta {
    /// Parses a delta from JSON (`[{...}]` or Quill's `{ops: [...]}`), normalising it:
    /// zero-length ops dropped, neighbours of one kind merged.
    pub fn from_json(v: &Value, max_ops: usize) -> Result<Delta, DeltaError> {
        let ops = match v {
            Value::Array(ops) => ops,
            Value::Object(m) => m.get("ops").and_then(Value::as_array).ok_or(DeltaError::Shape)?,
            _ => return Err(DeltaError::Shape),
        };
        if ops.len() > max_ops {
            return Err(DeltaError::TooManyOps(max_ops));
        }
        let mut d = Delta::default();
        for op in ops {
            let m = op.as_object().ok_or(DeltaError::Shape)?;
            // Counts are bounded so that no sum of up to `max_ops` of them can overflow.
            let count =
                |k: &str| m.get(k).map(|v| v.as_u64().filter(|n| *n <= MAX_COUNT).ok_or(DeltaError::Shape)).transpose();
            let op = match (m.get("insert"), count("retain")?, count("delete")?) {
                (Some(Value::String(s)), None, None) => Op::Insert(s.encode_utf16().collect()),
                (None, Some(n), None) => Op::Retain(usize::try_from(n).map_err(|_| DeltaError::Shape)?),
                (None, None, Some(n)) => Op::Delete(usize::try_from(n).map_err(|_| DeltaError::Shape)?),
                _ => return Err(DeltaError::Shape),
            };
            d.push(op);
        }
        // A trailing retain stays: it says how long the client thinks the document is,
        // and `apply` refuses a delta that reaches past the end.
        Ok(d)
    }

    #[must_use]
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.ops
                .iter()
                .map(|op| match op {
                    Op::Retain(n) => json!({ "retain": n }),
                    Op::Delete(n) => json!({ "delete": n }),
                    Op::Insert(s) => {
                        let mut m = Map::new();
                        m.insert("insert".into(), Value::String(String::from_utf16_lossy(s)));
                        Value::Object(m)
                    }
                })
                .collect(),
        )
    }

    /// Appends an op, merging it with the last one when they are of one kind. An insert
    /// right after a delete goes before it, the canonical order quill-delta keeps.
    pub fn push(&mut self, op: Op) {
        if op.len() == 0 {
            return;
        }
        match (self.ops.last_mut(), op) {
            (Some(Op::Retain(a)), Op::Retain(b)) | (Some(Op::Delete(a)), Op::Delete(b)) => *a = a.saturating_add(b),
            (Some(Op::Insert(a)), Op::Insert(b)) => a.extend(b),
            (Some(Op::Delete(_)), Op::Insert(b)) => {
                let del = self.ops.pop().expect("just matched");
                self.push(Op::Insert(b));
                self.ops.push(del);
            }
            (_, op) => self.ops.push(op),
        }
    }

    fn chop(&mut self) {
        if matches!(self.ops.last(), Some(Op::Retain(_))) {
            self.ops.pop();
        }
    }

    /// The bytes this delta holds in memory: each op and the text it inserts.
    #[must_use]
    pub fn weight(&self) -> usize {
        let text: usize = self.ops.iter().map(|op| if let Op::Insert(s) = op { s.len() * 2 } else { 0 }).sum();
        std::mem::size_of::<Delta>() + self.ops.len() * std::mem::size_of::<Op>() + text
    }

    /// The document length this delta expects at least (what it retains and deletes).
    #[must_use]
    pub fn base_len(&self) -> usize {
        self.ops.iter().map(|op| if let Op::Insert(_) = op { 0 } else { op.len() }).fold(0, usize::saturating_add)
    }

    /// Applies the delta to a document held as UTF-16.
    pub fn apply(&self, doc: &[u16]) -> Result<Vec<u16>, DeltaError> {
        if self.base_len() > doc.len() {
            return Err(DeltaError::PastEnd);
        }
        let mut out = Vec::with_capacity(doc.len());
        let mut at = 0;
        for op in &self.ops {
            match op {
                Op::Retain(n) => {
                    out.extend_from_slice(&doc[at..at + n]);
                    at += n;
                }
                Op::Delete(n) => at += n,
                Op::Insert(s) => out.extend_from_slice(s),
            }
        }
        out.extend_from_slice(&doc[at..]);
        Ok(out)
    }

    /// Rewrites `other`, made concurrently with `self` against the same document, so that
    /// it applies after `self`. With `priority`, `self` happened first: where both insert
    /// at one position, `self`'s text comes first.
    #[must_use]
    pub fn transform(&self, other: &Delta, priority: bool) -> Delta {
        let mut a = Cursor::new(&self.ops);
        let mut b = Cursor::new(&other.ops);
        let mut out = Delta::default();
        while a.has_next() || b.has_next() {
            if a.peek_is_insert() && (priority || !b.peek_is_insert()) {
                out.push(Op::Retain(a.next(usize::MAX).len()));
            } else if b.peek_is_insert() {
                out.push(b.next(usize::MAX));
            } else {
                let n = a.peek_len().min(b.peek_len());
                let mine = a.next(n);
                let theirs = b.next(n);
                match (mine, theirs) {
                    // Already deleted by `self`: nothing left to retain or delete.
                    (Op::Delete(_), _) => {}
                    (_, Op::Delete(n)) => out.push(Op::Delete(n)),
                    _ => out.push(Op::Retain(n)),
                }
            }
        }
        out.chop();
        out
    }

    /// Where a position (a cursor) ends up after this delta. With `priority`, an insert at
    /// exactly the position stays after it (the cursor does not move).
    #[must_use]
    pub fn transform_position(&self, mut index: usize, priority: bool) -> usize {
        let mut offset = 0;
        for op in &self.ops {
            if offset > index {
                break;
            }
            match op {
                Op::Delete(n) => {
                    index -= (*n).min(index - offset);
                    continue;
                }
                Op::Insert(s) if offset < index || !priority => index += s.len(),
                _ => {}
            }
            offset += op.len();
        }
        index
    }
}

/// Walks a list of ops, taking them whole or in pieces; past the end it yields retains.
struct Cursor<'a> {
    ops: &'a [Op],
    index: usize,
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn new(ops: &'a [Op]) -> Self {
        Cursor { ops, index: 0, offset: 0 }
    }

    fn has_next(&self) -> bool {
        self.index < self.ops.len()
    }

    fn peek_is_insert(&self) -> bool {
        matches!(self.ops.get(self.index), Some(Op::Insert(_)))
    }

    fn peek_len(&self) -> usize {
        self.ops.get(self.index).map_or(usize::MAX, |op| op.len() - self.offset)
    }

    fn next(&mut self, max: usize) -> Op {
        let Some(op) = self.ops.get(self.index) else { return Op::Retain(max) };
        let left = op.len() - self.offset;
        let n = left.min(max);
        let piece = match op {
            Op::Retain(_) => Op::Retain(n),
            Op::Delete(_) => Op::Delete(n),
            Op::Insert(s) => Op::Insert(s[self.offset..self.offset + n].to_vec()),
        };
        if n == left {
            self.index += 1;
            self.offset = 0;
        } else {
            self.offset += n;
        }
        piece
    }
}

/// The document text for a UTF-16 buffer, refusing a split surrogate pair.
pub fn to_string(doc: &[u16]) -> Result<String, DeltaError> {
    String::from_utf16(doc).map_err(|_| DeltaError::SplitsCharacter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: Value) -> Delta {
        Delta::from_json(&v, 1000).unwrap()
    }

    fn u(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    fn apply(doc: &str, delta: &Delta) -> String {
        to_string(&delta.apply(&u(doc)).unwrap()).unwrap()
    }

    #[test]
    fn applies_inserts_deletes_and_retains_in_utf16_units() {
        let doc = "a😀b";
        assert_eq!(apply(doc, &d(json!([{"retain": 3}, {"insert": "X"}]))), "a😀Xb");
        assert_eq!(apply(doc, &d(json!([{"retain": 1}, {"delete": 2}]))), "ab");
        assert_eq!(d(json!([{"retain": 5}])).apply(&u(doc)), Err(DeltaError::PastEnd));
        let split = d(json!([{"retain": 1}, {"delete": 1}])).apply(&u(doc)).unwrap();
        assert_eq!(to_string(&split), Err(DeltaError::SplitsCharacter));
    }

    #[test]
    fn rejects_malformed_deltas() {
        for bad in [
            json!("x"),
            json!([{"retain": -1}]),
            json!([{"insert": 5}]),
            json!([{"retain": 1, "delete": 1}]),
            json!([{}]),
            json!([1]),
        ] {
            assert!(Delta::from_json(&bad, 10).is_err(), "{bad}");
        }
        assert_eq!(Delta::from_json(&json!([{"retain": 1}, {"retain": 1}]), 1), Err(DeltaError::TooManyOps(1)));
        assert_eq!(d(json!({"ops": [{"insert": "a"}]})).ops, vec![Op::Insert(u("a"))]);
    }

    #[test]
    fn huge_counts_are_refused_not_overflowed() {
        // Found by the `ot` and `service` fuzz targets: these used to overflow and panic.
        let max = json!(u64::MAX);
        assert_eq!(Delta::from_json(&json!([{"retain": 97}, {"retain": max}]), 10), Err(DeltaError::Shape));
        assert_eq!(Delta::from_json(&json!([{"retain": max}, {"delete": 1}]), 10), Err(DeltaError::Shape));
        let big = json!([{"retain": MAX_COUNT}, {"retain": MAX_COUNT}, {"delete": MAX_COUNT}]);
        let d = Delta::from_json(&big, 10).unwrap();
        assert_eq!(d.apply(&u("abc")), Err(DeltaError::PastEnd));
    }

    #[test]
    fn concurrent_inserts_at_one_place_keep_the_first_first() {
        let a = d(json!([{"retain": 1}, {"insert": "A"}]));
        let b = d(json!([{"retain": 1}, {"insert": "B"}]));
        let b2 = a.transform(&b, true);
        let a2 = b.transform(&a, false);
        assert_eq!(apply(&apply("xy", &a), &b2), "xABy");
        assert_eq!(apply(&apply("xy", &b), &a2), "xABy");
    }

    #[test]
    fn transform_of_overlapping_deletes_deletes_once() {
        let a = d(json!([{"retain": 1}, {"delete": 3}]));
        let b = d(json!([{"retain": 2}, {"delete": 3}]));
        let b2 = a.transform(&b, true);
        assert_eq!(apply(&apply("0123456", &a), &b2), "056");
        let a2 = b.transform(&a, false);
        assert_eq!(apply(&apply("0123456", &b), &a2), "056");
    }

    #[test]
    fn positions_shift_with_edits() {
        let ins = d(json!([{"retain": 2}, {"insert": "abc"}]));
        assert_eq!(ins.transform_position(1, false), 1);
        assert_eq!(ins.transform_position(2, false), 5);
        assert_eq!(ins.transform_position(2, true), 2);
        assert_eq!(ins.transform_position(4, false), 7);
        let del = d(json!([{"retain": 2}, {"delete": 3}]));
        assert_eq!(del.transform_position(3, false), 2);
        assert_eq!(del.transform_position(9, false), 6);
    }

    /// A small deterministic generator, so the property test needs no extra crate.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn delta(&mut self, len: usize) -> Delta {
            let mut out = Delta::default();
            let mut at = 0;
            while at < len && self.next(4) != 0 {
                let n = 1 + self.next(len - at);
                match self.next(3) {
                    0 => out.push(Op::Retain(n)),
                    1 => out.push(Op::Delete(n)),
                    _ => {
                        out.push(Op::Insert(u(["x", "yz", "é", "😀"][self.next(4)])));
                        continue;
                    }
                }
                at += n;
            }
            if self.next(2) == 0 {
                out.push(Op::Retain(len - at));
                out.push(Op::Insert(u("!")));
            }
            out.chop();
            out
        }
    }

    #[test]
    fn concurrent_deltas_converge() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let doc = u("hello, wörld 😀!");
            let a = g.delta(doc.len());
            let b = g.delta(doc.len());
            let left = a.transform(&b, true).apply(&a.apply(&doc).unwrap()).unwrap();
            let right = b.transform(&a, false).apply(&b.apply(&doc).unwrap()).unwrap();
            assert_eq!(left, right, "a={a:?} b={b:?}");
        }
    }
}
