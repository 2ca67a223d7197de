//! Documents under a slow or failing store, and the budgets of what one edit may hold
//! and cost.

use super::*;
use crate::app::records::{RoomAnswer, RoomRequest};
use crate::testing::MemStore;

fn doc_harness(app: AppConfig) -> (H, TestClient, TestClient) {
    let mut h = harness(app);
    let a = connect(&mut h, "/", json!({"username": "ann"}));
    let b = connect(&mut h, "/", json!({"username": "ben"}));
    for c in [&a, &b] {
        emit(&mut h, c, None, "join-document", &[json!("d")]);
    }
    received(&mut h, &a);
    received(&mut h, &b);
    (h, a, b)
}

/// What an insert of 100 characters holds in a log or a queue.
fn hundred() -> (String, usize) {
    let text = "x".repeat(100);
    let weight = super::super::ot::Delta::from_json(&json!([{"insert": text}]), 1).unwrap().weight();
    (text, weight)
}

fn edit(h: &mut H, c: &TestClient, ack: u64, delta: Value, version: u64) {
    emit(h, c, Some(ack), "text-change", &[json!({"docId": "d", "delta": delta, "version": version})]);
}

/// Answers the store requests waiting in the outputs, from `store` or all as failed.
fn answer_store(h: &mut H, store: &mut MemStore, fail: bool) {
    let requests: Vec<_> = std::mem::take(&mut h.outputs)
        .into_iter()
        .filter_map(|o| match o {
            crate::Output::Store { id, request } => Some((id, request)),
            other => {
                h.outputs.push(other);
                None
            }
        })
        .collect();
    assert!(!requests.is_empty(), "nothing waits for the store");
    for (id, request) in requests {
        let answer = if fail { StoreAnswer::Failed("disk full".into()) } else { store.answer(&request) };
        h.input(Input::Stored { id, answer });
    }
}

fn stored(store: &mut MemStore) -> RoomAnswer {
    let answer = store.answer(&RoomRequest::LoadDocument { scope: "/".into(), doc: "d".into() }.into());
    RoomAnswer::from_store(answer).expect("the store answers")
}

#[test]
fn a_failed_edit_is_not_applied_announced_or_stored_later() {
    let (mut h, a, b) = doc_harness(AppConfig::default());
    h.answer_at_once = false;
    let mut store = std::mem::take(&mut h.store);
    edit(&mut h, &a, 1, json!([{"insert": "lost"}]), 0);
    // Made while a's edit is out: it waits, and goes as the next batch.
    edit(&mut h, &b, 2, json!([{"insert": "kept"}]), 0);
    answer_store(&mut h, &mut store, true);
    let got_a = received(&mut h, &a);
    assert_eq!(named(&got_a, "ack:1")[0]["code"], "INTERNAL_ERROR", "{got_a:?}");
    assert!(named(&received(&mut h, &b), "text-change").is_empty(), "nobody hears of a failed edit");
    assert_eq!(h.machine.handler().document_text("/", "d").as_deref(), Some(""), "not applied");

    answer_store(&mut h, &mut store, false);
    assert_eq!(named(&received(&mut h, &b), "ack:2"), vec![json!({"version": 1})]);
    let change = &named(&received(&mut h, &a), "text-change")[0];
    assert_eq!((&change["delta"], &change["version"]), (&json!([{"insert": "kept"}]), &json!(1)));
    assert_eq!(h.machine.handler().document_text("/", "d").as_deref(), Some("kept"));
    assert_eq!(stored(&mut store), RoomAnswer::Document(Some(("kept".into(), 1))), "the failed edit is never saved");
    assert_eq!(h.machine.check_bounds(), Ok(()));
}

#[test]
fn edits_that_wait_are_saved_together_and_announced_in_order() {
    let (mut h, a, b) = doc_harness(AppConfig::default());
    h.answer_at_once = false;
    let mut store = std::mem::take(&mut h.store);
    edit(&mut h, &a, 1, json!([{"insert": "a"}]), 0);
    for (n, v) in [(2, 1), (3, 2), (4, 3)] {
        edit(&mut h, &a, n, json!([{"insert": "a"}]), v);
    }
    edit(&mut h, &b, 9, json!([{"insert": "b"}]), 0);
    answer_store(&mut h, &mut store, false);
    answer_store(&mut h, &mut store, false);
    let got_a = received(&mut h, &a);
    let acks: Vec<Value> = (1..=4).map(|n| named(&got_a, &format!("ack:{n}"))[0].clone()).collect();
    assert_eq!(acks, (1..=4).map(|v| json!({"version": v})).collect::<Vec<_>>());
    let versions: Vec<Value> =
        named(&received(&mut h, &b), "text-change").iter().map(|c| c["version"].clone()).collect();
    assert_eq!(versions, [json!(1), json!(2), json!(3), json!(4)]);
    assert_eq!(named(&got_a, "text-change")[0]["version"], 5, "b's late edit, transformed over a's four");
    assert_eq!(stored(&mut store), RoomAnswer::Document(Some(("aaaab".into(), 5))));
    assert!(h.outputs.iter().all(|o| !matches!(o, crate::Output::Store { .. })), "two batches in all");
}

#[test]
fn a_join_gets_what_is_stored_once_and_waits_only_for_its_own_edits() {
    let (mut h, a, _b) = doc_harness(AppConfig::default());
    h.answer_at_once = false;
    let mut store = std::mem::take(&mut h.store);
    edit(&mut h, &a, 1, json!([{"insert": "x"}]), 0);
    // A newcomer joins while a's edit is out: it gets the stored state at once, then the edit.
    let c = connect(&mut h, "/", json!({"username": "cy"}));
    emit(&mut h, &c, Some(7), "join-document", &[json!("d")]);
    let got = received(&mut h, &c);
    let states = named(&got, "document-state");
    assert_eq!(states.len(), 1, "the state goes once: {got:?}");
    assert_eq!((&states[0]["content"], &states[0]["version"]), (&json!(""), &json!(0)));
    assert_eq!(named(&got, "ack:7"), vec![json!({"success": true, "version": 0})], "the ack does not repeat it");
    // a joins again with its edit out: the state it gets must include that edit.
    emit(&mut h, &a, None, "join-document", &[json!("d")]);
    assert!(named(&received(&mut h, &a), "document-state").is_empty());
    answer_store(&mut h, &mut store, false);
    let got = received(&mut h, &a);
    assert_eq!(got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["ack:1", "document-state"]);
    assert_eq!(named(&got, "document-state")[0]["content"], "x");
    assert_eq!(named(&received(&mut h, &c), "text-change")[0]["version"], 1);
    assert_eq!(h.machine.check_bounds(), Ok(()));
}

#[test]
fn a_large_document_is_joined_with_one_copy_of_its_state() {
    let (mut h, a, _b) = doc_harness(AppConfig { max_doc_len: 50_000, ..AppConfig::default() });
    edit(&mut h, &a, 1, json!([{"insert": "\u{1}".repeat(50_000)}]), 0);
    assert_eq!(named(&received(&mut h, &a), "ack:1"), vec![json!({"version": 1})]);
    edit(&mut h, &a, 2, json!([{"insert": "y"}]), 1);
    assert_eq!(named(&received(&mut h, &a), "ack:2")[0]["code"], "PAYLOAD_TOO_LARGE");
    let c = connect(&mut h, "/", json!({}));
    emit(&mut h, &c, Some(1), "join-document", &[json!("d")]);
    let frames = h.frames(c.conn);
    let bytes: usize = frames.iter().map(String::len).sum();
    // Each control character is six bytes of JSON: the state once is ~300 kB.
    assert!((300_000..350_000).contains(&bytes), "{bytes} bytes sent to the joiner");
}

#[test]
fn catching_up_a_late_edit_costs_bounded_work() {
    let (mut h, a, _b) = doc_harness(AppConfig { doc_transform_work: 60, ..AppConfig::default() });
    for v in 0..11 {
        edit(&mut h, &a, v + 1, json!([{"insert": "xy"}]), v);
    }
    received(&mut h, &a);
    // Five ops made ten versions back: (1 + 5) steps for each of ten logged ops = 60, allowed.
    let five = json!([{"insert": "a"}, {"retain": 1}, {"insert": "b"}, {"retain": 1}, {"insert": "c"}]);
    edit(&mut h, &a, 20, five.clone(), 1);
    assert_eq!(named(&received(&mut h, &a), "ack:20"), vec![json!({"version": 12})]);
    // Eleven versions back: 66 steps, past the budget: stale, the client re-joins.
    edit(&mut h, &a, 21, five, 1);
    assert_eq!(named(&received(&mut h, &a), "ack:21")[0]["code"], "STALE_VERSION");
}

#[test]
fn op_logs_are_bounded_in_bytes_per_document_and_in_all() {
    // d's log holds eight such edits; all logs together twelve.
    let (hundred, w) = hundred();
    let app = AppConfig { doc_log_bytes: 8 * w + w / 2, doc_log_total_bytes: 12 * w + w / 2, ..AppConfig::default() };
    let (mut h, a, _b) = doc_harness(app);
    emit(&mut h, &a, None, "join-document", &[json!("e")]);
    for v in 0..20 {
        edit(&mut h, &a, v + 1, json!([{"insert": hundred}]), v);
        assert_eq!(h.machine.check_bounds(), Ok(()));
    }
    for v in 0..20 {
        let e = json!({"docId": "e", "delta": [{"insert": hundred}], "version": v});
        emit(&mut h, &a, Some(100 + v), "text-change", &[e]);
        assert_eq!(h.machine.check_bounds(), Ok(()), "all logs together within their budget");
    }
    let got = received(&mut h, &a);
    assert_eq!(named(&got, "ack:119"), vec![json!({"version": 20})], "every edit went through");
    // e, edited while d held eight, got the four that were left: five versions back is fine
    // on d, stale on e.
    edit(&mut h, &a, 200, json!([{"insert": "z"}]), 15);
    assert_eq!(named(&received(&mut h, &a), "ack:200"), vec![json!({"version": 21})]);
    let late = |v: u64| json!({"docId": "e", "delta": [{"insert": "z"}], "version": v});
    emit(&mut h, &a, Some(201), "text-change", &[late(15)]);
    assert_eq!(named(&received(&mut h, &a), "ack:201")[0]["code"], "STALE_VERSION");
    emit(&mut h, &a, Some(202), "text-change", &[late(16)]);
    assert_eq!(named(&received(&mut h, &a), "ack:202"), vec![json!({"version": 21})]);
    assert_eq!(h.machine.check_bounds(), Ok(()));
}

#[test]
fn edits_waiting_for_the_store_are_bounded_in_bytes() {
    let (hundred, w) = hundred();
    let (mut h, a, _b) = doc_harness(AppConfig { doc_log_bytes: 3 * w + w / 2, ..AppConfig::default() });
    h.answer_at_once = false;
    // The first goes to the store, three wait, the fifth would pass the queue's bytes.
    for v in 0..5 {
        edit(&mut h, &a, v + 1, json!([{"insert": hundred}]), v);
    }
    let got = received(&mut h, &a);
    assert!(named(&got, "ack:4").is_empty(), "queued behind the first: {got:?}");
    assert_eq!(named(&got, "ack:5")[0]["code"], "RATE_LIMITED", "over the queue's bytes: {got:?}");
    assert_eq!(h.machine.check_bounds(), Ok(()));
}
