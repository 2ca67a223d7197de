//! Deltas and operational transformation over UTF-16 text.
//!
//! - Parsing (`Delta::from_json`) and `apply` never panic, whatever the counts.
//! - TP1: for deltas `a`, `b` that both apply to one document and cut no surrogate pair,
//!   `a.transform(b, true)` after `a` equals `b.transform(a, false)` after `b`.
//! - `transform_position` keeps a position inside the edited document.
//! - A `Document` fed edits at arbitrary base versions never panics, keeps its version in
//!   step with accepted edits, changes nothing on a refused one, and keeps every cursor
//!   inside the text.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use parlor_core::app::document::{DocLimits, Document, Staged};
use parlor_core::app::ot::{Delta, Op};
use parlor_core::socketio::SocketId;
use parlor_fuzz::DeltaOp;
use serde_json::Value;

/// Characters of one or two UTF-16 units.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Ch {
    A,
    B,
    Space,
    E,
    Emoji,
    Cjk,
}

impl Ch {
    fn as_str(self) -> &'static str {
        match self {
            Ch::A => "a",
            Ch::B => "b",
            Ch::Space => " ",
            Ch::E => "é",
            Ch::Emoji => "😀",
            Ch::Cjk => "字",
        }
    }
}

fn text(chars: &[Ch]) -> String {
    chars.iter().map(|c| c.as_str()).collect()
}

/// A bounded op for the TP1 check.
#[derive(Arbitrary, Debug, Clone)]
enum SmallOp {
    Retain(u8),
    Delete(u8),
    Insert(Vec<Ch>),
}

fn small_delta(ops: &[SmallOp]) -> Delta {
    let mut d = Delta::default();
    for op in ops {
        d.push(match op {
            SmallOp::Retain(n) => Op::Retain(usize::from(n % 24)),
            SmallOp::Delete(n) => Op::Delete(usize::from(n % 24)),
            SmallOp::Insert(s) => Op::Insert(text(s).encode_utf16().collect()),
        });
    }
    d
}

#[derive(Arbitrary, Debug)]
struct Edit {
    /// How many versions behind the head the client was.
    behind: u8,
    ops: Vec<SmallOp>,
    cursor: Option<(u8, u8)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    doc: Vec<Ch>,
    /// Parsed from JSON, any counts: only "never panics".
    raw: Vec<DeltaOp>,
    a: Vec<SmallOp>,
    b: Vec<SmallOp>,
    pos: u8,
    edits: Vec<Edit>,
}

/// True if `i` is not between the two halves of a surrogate pair.
fn boundary(doc: &[u16], i: usize) -> bool {
    i == 0 || i >= doc.len() || !(0xDC00..0xE000).contains(&doc[i])
}

/// True if every place the delta cuts the document is a character boundary.
fn cuts_cleanly(d: &Delta, doc: &[u16]) -> bool {
    let mut at = 0;
    for op in &d.ops {
        match op {
            Op::Retain(n) | Op::Delete(n) => at += n,
            Op::Insert(_) => {}
        }
        if !boundary(doc, at) {
            return false;
        }
    }
    true
}

fuzz_target!(|input: Input| {
    let doc_text = text(&input.doc);
    let doc: Vec<u16> = doc_text.encode_utf16().collect();

    // Any delta a client could send: parse, apply, transform, positions. No panics.
    let raw = Value::Array(input.raw.iter().map(|o| o.render(&[])).collect());
    if let Ok(d) = Delta::from_json(&raw, 64) {
        let _ = d.apply(&doc);
        let small = small_delta(&input.a);
        let _ = d.transform(&small, true);
        let _ = small.transform(&d, false);
        let _ = d.transform_position(usize::from(input.pos), true);
        let _ = d.to_json();
    }

    // TP1 on deltas that apply cleanly.
    let a = small_delta(&input.a);
    let b = small_delta(&input.b);
    if let (Ok(after_a), Ok(after_b)) = (a.apply(&doc), b.apply(&doc)) {
        if cuts_cleanly(&a, &doc) && cuts_cleanly(&b, &doc) {
            let b2 = a.transform(&b, true);
            let a2 = b.transform(&a, false);
            let left = b2.apply(&after_a).unwrap_or_else(|e| panic!("b' does not apply after a: {e}"));
            let right = a2.apply(&after_b).unwrap_or_else(|e| panic!("a' does not apply after b: {e}"));
            assert_eq!(
                String::from_utf16_lossy(&left),
                String::from_utf16_lossy(&right),
                "TP1: doc={doc_text:?} a={a:?} b={b:?} b'={b2:?} a'={a2:?}"
            );
            assert!(String::from_utf16(&left).is_ok(), "clean deltas split a character");
            let p = usize::from(input.pos) % (doc.len() + 1);
            for pri in [false, true] {
                let q = a.transform_position(p, pri);
                assert!(q <= after_a.len(), "position {p} → {q} past the end ({})", after_a.len());
            }
        }
    }

    // A document fed edits made against older versions.
    let limits = DocLimits { log_ops: 4, log_bytes: 400, max_len: 256, transform_work: 60 };
    let mut d = Document::new(&doc_text, 0, limits);
    let sockets = [SocketId::from("s0"), SocketId::from("s1")];
    for e in &input.edits {
        if let Some((who, at)) = e.cursor {
            d.set_cursor(&sockets[usize::from(who % 2)], usize::from(at));
        }
        let (before, version) = (d.text(), d.version());
        let base = version.saturating_sub(u64::from(e.behind % 8));
        // Staged and dropped (a save the store refused): the document is as it was.
        let mut staged = Staged::default();
        let _ = d.stage(&mut staged, &small_delta(&e.ops), base);
        drop(staged);
        assert_eq!((d.text(), d.version()), (before.clone(), version), "a dropped stage changed the doc");
        match d.edit(&small_delta(&e.ops), base) {
            Ok((_, v)) => assert_eq!((v, d.version()), (version + 1, version + 1)),
            Err(_) => assert_eq!((d.text(), d.version()), (before, version), "a refused edit changed the doc"),
        }
        // A text stored longer than the limit is kept whole (and never grows): the bound is
        // the larger of the two.
        assert!(d.len() <= 256.max(doc.len()), "{} units, over {}", d.len(), 256.max(doc.len()));
        assert_eq!(d.check_bounds(), Ok(()));
        for (s, pos) in d.cursors() {
            assert!(*pos <= d.len(), "cursor of {s:?} at {pos}, past the end ({})", d.len());
        }
    }
});
