//! The per-connection outbound queue: frames the driver wants written to one WebSocket.
//!
//! The driver must never wait on a slow client, so [`Outbound::push`] never blocks: it
//! either queues the frame or, when the queue would grow past its byte limit, marks the
//! queue failed and says so. The driver then tells the core (`Ended{Backpressure}`) and the
//! connection's writer closes the WebSocket with [`OVERFLOW_CODE`] instead of writing what
//! is left. A frame is never dropped silently: it is written, or the connection is closed
//! with a reason (and connection state recovery can replay what was lost).
//!
//! Bytes count from the push until the writer has flushed them to the socket
//! ([`Outbound::release`]), so the limit bounds everything the node holds for one client,
//! including a batch being written. A single frame is always accepted into an empty queue,
//! whatever its size: the bound is `limit + one frame`, and a large message to a reader
//! that keeps up is never refused.

use crate::queues::inflow::Inflow;
use crate::queues::sync::{lock, Mutex, MutexGuard, Wake};
use bytes::Bytes;
use parlor_core::host::OutFrame;
use std::collections::VecDeque;

/// Close code for a client that does not read fast enough (RFC 6455 "policy violation").
pub const OVERFLOW_CODE: u16 = 1008;
/// Items a fresh queue buffer has room for.
const FIRST_CAPACITY: usize = 8;

/// Close reason sent with [`OVERFLOW_CODE`].
pub const OVERFLOW_REASON: &str = "outbound queue full";

/// One thing to write, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Frame(OutFrame),
    /// The answer to a client's ping (queued by the reader, written in order).
    Pong(Bytes),
    /// A close frame's payload (code, big-endian, then reason). Nothing follows it.
    Close(Bytes),
}

impl Item {
    /// A close item with `code` and `reason`.
    #[must_use]
    pub fn close(code: u16, reason: &str) -> Item {
        Item::Close(close_payload(code, reason))
    }

    /// What the item counts against the limit: its payload, and at least one byte so
    /// that even empty frames (pongs to empty pings) cannot pile up for free.
    fn cost(&self) -> usize {
        let len = match self {
            Item::Frame(f) => f.len(),
            Item::Pong(b) | Item::Close(b) => b.len(),
        };
        len.max(1)
    }
}

/// A close frame's payload: `code`, big-endian, then `reason`, cut on a character boundary
/// so that the whole fits a control frame (125 bytes: 2 for the code, 123 for the reason).
#[must_use]
pub fn close_payload(code: u16, reason: &str) -> Bytes {
    let reason = truncate_utf8(reason, 123);
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    Bytes::from(payload)
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Why a push was not queued.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PushError {
    /// This push would have gone over the limit: the queue is now failed and the
    /// connection will be closed with [`OVERFLOW_CODE`]. Reported once per queue.
    Overflow,
    /// The queue takes nothing more: a close is queued, it failed earlier, or the socket
    /// is gone.
    Closed,
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushError::Overflow => OVERFLOW_REASON,
            PushError::Closed => "outbound queue closed",
        })
    }
}

impl std::error::Error for PushError {}

/// What the writer found in the queue.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Take {
    /// Items were moved into the batch; they cost this many bytes. Call
    /// [`Outbound::release`] with it once they are flushed.
    Items(usize),
    /// Nothing queued yet.
    Empty,
    /// The queue overflowed: write a close with [`OVERFLOW_CODE`] and stop.
    Failed,
    /// The socket is gone: stop without writing.
    Aborted,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    /// Bytes queued, not yet taken by the writer.
    queued: usize,
    /// Bytes taken by the writer, not yet flushed.
    in_flight: usize,
    /// A close item is queued (or was written): nothing may follow it.
    closing: bool,
    failed: bool,
    aborted: bool,
}

/// A bounded, never-blocking queue from the driver (and the reader, for control frames)
/// to one WebSocket's writer. One writer takes from it.
#[derive(Debug)]
pub struct Outbound {
    state: Mutex<State>,
    limit: usize,
    /// Wakes the writer when there is something to take.
    writer: Wake,
    /// The other direction's account, kept here so a connection's shared state is one
    /// allocation.
    #[cfg_attr(loom, allow(dead_code))]
    inflow: Inflow,
}

impl Outbound {
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Outbound { state: Mutex::new(State::default()), limit, writer: Wake::default(), inflow: Inflow::default() }
    }

    /// Queues a frame, or fails the queue if it would go over the limit.
    pub fn push(&self, frame: OutFrame) -> Result<(), PushError> {
        self.push_counted(Item::Frame(frame))
    }

    /// Queues a pong; it counts against the limit like any frame (a client that pings
    /// without reading must not grow the queue either).
    pub fn push_pong(&self, payload: Bytes) -> Result<(), PushError> {
        self.push_counted(Item::Pong(payload))
    }

    fn push_counted(&self, item: Item) -> Result<(), PushError> {
        let cost = item.cost();
        let mut st = lock(&self.state);
        if st.closing || st.failed || st.aborted {
            return Err(PushError::Closed);
        }
        let held = st.queued + st.in_flight;
        if held > 0 && held.saturating_add(cost) > self.limit {
            // Over the limit: what is queued will never be written; free it now.
            st.failed = true;
            st.items.clear();
            st.queued = 0;
            drop(st);
            self.writer.wake_one();
            return Err(PushError::Overflow);
        }
        self.enqueue(st, item, cost);
        Ok(())
    }

    /// Appends `item` under the lock `st` holds, then wakes the writer if it found nothing
    /// waiting.
    fn enqueue(&self, mut st: MutexGuard<'_, State>, item: Item, cost: usize) {
        if st.items.capacity() == 0 {
            // The writer takes the buffer with the items; start the next one with room
            // for a burst instead of growing it one doubling at a time.
            st.items.reserve(FIRST_CAPACITY);
        }
        let was_empty = st.items.is_empty();
        st.items.push_back(item);
        st.queued += cost;
        drop(st);
        // The writer takes everything at once, so items already waiting mean a wake-up is
        // already owed to it (by the push that found the queue empty): one per batch.
        if was_empty {
            self.writer.wake_one();
        }
    }

    /// Queues a close frame after everything already queued. A close is never refused
    /// for size: it is how an overfull connection ends.
    pub fn push_close(&self, code: u16, reason: &str) -> Result<(), PushError> {
        self.push_close_item(Item::close(code, reason))
    }

    /// Queues a close frame with a raw payload (the echo of a client's close).
    pub fn push_close_raw(&self, payload: Bytes) -> Result<(), PushError> {
        self.push_close_item(Item::Close(payload))
    }

    fn push_close_item(&self, item: Item) -> Result<(), PushError> {
        let cost = item.cost();
        let mut st = lock(&self.state);
        if st.closing || st.failed || st.aborted {
            return Err(PushError::Closed);
        }
        st.closing = true;
        self.enqueue(st, item, cost);
        Ok(())
    }

    /// The socket is gone: the writer stops and every later push is refused.
    pub fn abort(&self) {
        let mut st = lock(&self.state);
        st.aborted = true;
        st.items.clear();
        st.queued = 0;
        drop(st);
        self.writer.wake_one();
    }

    /// Moves everything queued into `batch` (for the writer), without waiting.
    pub fn try_take(&self, batch: &mut Vec<Item>) -> Take {
        let mut st = lock(&self.state);
        if st.aborted {
            return Take::Aborted;
        }
        if st.failed {
            return Take::Failed;
        }
        if st.items.is_empty() {
            return Take::Empty;
        }
        // The queue's buffer goes with the items: an idle connection holds none.
        batch.extend(std::mem::take(&mut st.items));
        let cost = st.queued;
        st.in_flight += cost;
        st.queued = 0;
        Take::Items(cost)
    }

    /// Waits until something was pushed (or the queue failed or was aborted) since the
    /// writer last looked. A push between the writer's `try_take` and this wait is not
    /// missed: its wake-up is stored. Only one task (the writer) may call this.
    #[cfg(not(loom))]
    pub async fn changed(&self) {
        self.writer.notify().notified().await;
    }

    /// The writer flushed `cost` bytes it took.
    pub fn release(&self, cost: usize) {
        let mut st = lock(&self.state);
        st.in_flight = st.in_flight.saturating_sub(cost);
    }

    /// Whether the queue overflowed.
    #[must_use]
    pub fn is_failed(&self) -> bool {
        lock(&self.state).failed
    }

    /// The connection's inbound credit (see [`crate::queues::inflow`]).
    pub(crate) fn inflow(&self) -> &Inflow {
        &self.inflow
    }

    /// Bytes the queue holds for this client (queued and being written).
    #[must_use]
    pub fn held_bytes(&self) -> usize {
        let st = lock(&self.state);
        st.queued + st.in_flight
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn text(n: usize) -> OutFrame {
        OutFrame::Text(Bytes::from(vec![b'x'; n]))
    }

    #[test]
    fn frames_are_taken_in_order_and_counted_until_released() {
        let q = Outbound::new(100);
        q.push(text(10)).unwrap();
        q.push(OutFrame::Binary(Bytes::from_static(b"abc"))).unwrap();
        assert_eq!(q.held_bytes(), 13);
        let mut batch = Vec::new();
        assert_eq!(q.try_take(&mut batch), Take::Items(13));
        assert_eq!(batch, vec![Item::Frame(text(10)), Item::Frame(OutFrame::Binary(Bytes::from_static(b"abc")))]);
        // Taken but not flushed: still held.
        assert_eq!(q.held_bytes(), 13);
        q.release(13);
        assert_eq!(q.held_bytes(), 0);
        assert_eq!(q.try_take(&mut Vec::new()), Take::Empty);
    }

    #[test]
    fn push_over_limit_fails_the_queue_once_and_frees_it() {
        let q = Outbound::new(100);
        q.push(text(60)).unwrap();
        q.push(text(40)).unwrap(); // exactly at the limit is fine
        assert_eq!(q.push(text(1)), Err(PushError::Overflow));
        assert!(q.is_failed());
        assert_eq!(q.held_bytes(), 0, "queued frames are freed on failure");
        assert_eq!(q.push(text(1)), Err(PushError::Closed), "overflow is reported once");
        assert_eq!(q.push_close(1000, "bye"), Err(PushError::Closed));
        assert_eq!(q.try_take(&mut Vec::new()), Take::Failed);
    }

    #[test]
    fn in_flight_bytes_count_against_the_limit() {
        let q = Outbound::new(100);
        q.push(text(80)).unwrap();
        let mut batch = Vec::new();
        assert_eq!(q.try_take(&mut batch), Take::Items(80));
        // The writer has not flushed yet: the client still owes us 80 bytes of reading.
        assert_eq!(q.push(text(30)), Err(PushError::Overflow));
    }

    #[test]
    fn a_frame_larger_than_the_limit_is_accepted_into_an_empty_queue() {
        let q = Outbound::new(10);
        q.push(text(1000)).unwrap();
        assert_eq!(q.push(text(1)), Err(PushError::Overflow));
    }

    #[test]
    fn empty_pongs_still_count() {
        let q = Outbound::new(3);
        for _ in 0..3 {
            q.push_pong(Bytes::new()).unwrap();
        }
        assert_eq!(q.push_pong(Bytes::new()), Err(PushError::Overflow));
    }

    #[test]
    fn close_goes_after_queued_frames_even_when_full_and_ends_the_queue() {
        let q = Outbound::new(10);
        q.push(text(10)).unwrap();
        q.push_close(4000, "done").unwrap();
        assert_eq!(q.push(text(1)), Err(PushError::Closed));
        assert_eq!(q.push_close(1000, "again"), Err(PushError::Closed));
        let mut batch = Vec::new();
        q.try_take(&mut batch);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[1], Item::close(4000, "done"));
        let Item::Close(payload) = &batch[1] else { panic!("not a close") };
        assert_eq!(&payload[..], b"\x0f\xa0done");
    }

    #[test]
    fn close_reason_is_cut_to_fit_a_control_frame_on_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let Item::Close(payload) = Item::close(1000, &reason) else { panic!("not a close") };
        assert!(payload.len() <= 125);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }

    #[test]
    fn abort_stops_the_writer_and_refuses_pushes() {
        let q = Outbound::new(10);
        q.push(text(1)).unwrap();
        q.abort();
        assert_eq!(q.try_take(&mut Vec::new()), Take::Aborted);
        assert_eq!(q.push(text(1)), Err(PushError::Closed));
    }

    #[tokio::test]
    async fn changed_wakes_the_writer_for_a_push_from_another_task() {
        let q = std::sync::Arc::new(Outbound::new(100));
        let q2 = q.clone();
        let writer = tokio::spawn(async move {
            let mut batch = Vec::new();
            loop {
                match q2.try_take(&mut batch) {
                    Take::Empty => q2.changed().await,
                    took => return (took, batch),
                }
            }
        });
        tokio::task::yield_now().await;
        q.push(text(5)).unwrap();
        let (took, batch) = writer.await.unwrap();
        assert_eq!(took, Take::Items(5));
        assert_eq!(batch.len(), 1);
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::queues::sync::Arc;

    /// The driver pushes while the writer takes and releases: every frame is taken exactly
    /// once, in order, and the byte count returns to zero.
    #[test]
    fn loom_push_and_take_lose_nothing() {
        loom::model(|| {
            let q = Arc::new(Outbound::new(1 << 20));
            let q2 = q.clone();
            let driver = loom::thread::spawn(move || {
                for i in 0..3u8 {
                    q2.push(OutFrame::Binary(Bytes::from(vec![i]))).unwrap();
                }
            });
            let mut seen = Vec::new();
            while seen.len() < 3 {
                let mut batch = Vec::new();
                if let Take::Items(cost) = q.try_take(&mut batch) {
                    seen.extend(batch);
                    q.release(cost);
                } else {
                    loom::thread::yield_now();
                }
            }
            driver.join().unwrap();
            let want: Vec<Item> = (0..3u8).map(|i| Item::Frame(OutFrame::Binary(Bytes::from(vec![i])))).collect();
            assert_eq!(seen, want);
            assert_eq!(q.held_bytes(), 0);
        });
    }

    /// The driver pushes past the limit while the writer drains: the frames the writer
    /// takes are a prefix of those pushed, in order, and an overflow the driver saw is
    /// always seen by the writer as `Failed`.
    #[test]
    fn loom_overflow_is_seen_by_the_writer() {
        loom::model(|| {
            let q = Arc::new(Outbound::new(2));
            let q2 = q.clone();
            let driver = loom::thread::spawn(move || {
                for i in 0..3u8 {
                    if let Err(e) = q2.push(OutFrame::Binary(Bytes::from(vec![i]))) {
                        return Some(e);
                    }
                }
                None
            });
            let mut taken = Vec::new();
            let mut writer_saw_failure = false;
            for _ in 0..4 {
                let mut batch = Vec::new();
                match q.try_take(&mut batch) {
                    Take::Items(cost) => {
                        taken.extend(batch);
                        q.release(cost);
                    }
                    Take::Failed => {
                        writer_saw_failure = true;
                        break;
                    }
                    Take::Empty | Take::Aborted => loom::thread::yield_now(),
                }
            }
            let pushed_error = driver.join().unwrap();
            if pushed_error == Some(PushError::Overflow) {
                assert!(writer_saw_failure || q.try_take(&mut Vec::new()) == Take::Failed);
            }
            for (i, item) in taken.iter().enumerate() {
                assert_eq!(*item, Item::Frame(OutFrame::Binary(Bytes::from(vec![i as u8]))));
            }
        });
    }
}
