//! The hand-off from connection tasks to a mount's driver: a bounded lane of commands
//! (frames, requests, transport ends; senders wait when it is full, so a flood of frames
//! slows the readers instead of growing memory) and an unbounded urgent lane (metrics,
//! shutdown, live swaps; never stuck behind a full inbox, always taken first).
//!
//! The command lane is bounded twice: in commands and in bytes (what [`Weigh`] says each
//! command holds), so a few large frames cannot hold as much memory as a thousand small
//! ones could. A command is always accepted into an empty lane, whatever its weight.
//!
//! The driver takes everything queued in one lock and handles it as a batch, so a busy
//! mount pays one wake-up and one lock per batch, not per frame. Built on the [`crate::queues::sync`]
//! facade so that the loom models below explore the real code: per-sender order, nothing
//! lost or taken twice, the urgent lane's priority, and the end when every sender is gone.

use crate::queues::sync::{lock, Arc, Mutex, Wake};
use std::collections::VecDeque;

/// What a command holds in memory, for the lane's byte bound.
pub(crate) trait Weigh {
    fn weight(&self) -> usize;
}

struct State<C, U> {
    commands: VecDeque<C>,
    /// The weight of `commands`.
    bytes: usize,
    /// A push was refused for room since the last take: senders may be waiting.
    refused: bool,
    urgent: VecDeque<U>,
    /// Live [`Sender`]s; at zero, the driver stops once it has taken what is left.
    senders: usize,
    /// The [`Receiver`] is gone: pushes fail.
    closed: bool,
}

struct Shared<C, U> {
    state: Mutex<State<C, U>>,
    capacity: usize,
    byte_capacity: usize,
    /// Wakes the driver.
    driver: Wake,
    /// Wakes senders waiting for room in the command lane.
    room: Wake,
}

/// A connection task's end. Cloning it counts as one more sender.
pub(crate) struct Sender<C, U> {
    shared: Arc<Shared<C, U>>,
}

/// The driver's end.
pub(crate) struct Receiver<C, U> {
    shared: Arc<Shared<C, U>>,
}

/// An inbox holding at most `capacity` commands and, past its first command,
/// `byte_capacity` bytes of them (the urgent lane is not bounded: it carries a handful of
/// operator requests, never client traffic).
pub(crate) fn channel<C, U>(capacity: usize, byte_capacity: usize) -> (Sender<C, U>, Receiver<C, U>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            commands: VecDeque::new(),
            bytes: 0,
            refused: false,
            urgent: VecDeque::new(),
            senders: 1,
            closed: false,
        }),
        capacity: capacity.max(1),
        byte_capacity,
        driver: Wake::default(),
        room: Wake::default(),
    });
    (Sender { shared: shared.clone() }, Receiver { shared })
}

/// Why a command was not queued; it is handed back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError<C> {
    /// The command lane is at capacity: wait for room.
    Full(C),
    /// The driver is gone.
    Closed(C),
}

impl<C: Weigh, U> Sender<C, U> {
    /// Queues a command unless the lane is full or the driver is gone.
    pub(crate) fn try_push(&self, command: C) -> Result<(), PushError<C>> {
        let weight = command.weight();
        let mut st = lock(&self.shared.state);
        if st.closed {
            return Err(PushError::Closed(command));
        }
        let over_bytes = !st.commands.is_empty() && st.bytes.saturating_add(weight) > self.shared.byte_capacity;
        if st.commands.len() >= self.shared.capacity || over_bytes {
            st.refused = true;
            return Err(PushError::Full(command));
        }
        let was_empty = st.commands.is_empty() && st.urgent.is_empty();
        st.bytes += weight;
        st.commands.push_back(command);
        drop(st);
        // The driver empties the inbox before it waits, so only the first push after
        // that needs to wake it.
        if was_empty {
            self.shared.driver.wake_one();
        }
        Ok(())
    }

    /// Queues a command, waiting for room; hands it back if the driver is gone.
    #[cfg(not(loom))]
    pub(crate) async fn push(&self, mut command: C) -> Result<(), C> {
        loop {
            let room = self.shared.room.notify().notified();
            tokio::pin!(room);
            // Registered before trying, so room made between the try and the wait wakes us.
            room.as_mut().enable();
            match self.try_push(command) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(c)) => return Err(c),
                Err(PushError::Full(c)) => command = c,
            }
            room.await;
        }
    }
}

impl<C, U> Sender<C, U> {
    /// Queues an urgent request ahead of every command; never waits. Hands it back if the
    /// driver is gone.
    pub(crate) fn push_urgent(&self, request: U) -> Result<(), U> {
        let mut st = lock(&self.shared.state);
        if st.closed {
            return Err(request);
        }
        st.urgent.push_back(request);
        drop(st);
        self.shared.driver.wake_one();
        Ok(())
    }
}

impl<C, U> Clone for Sender<C, U> {
    fn clone(&self) -> Self {
        lock(&self.shared.state).senders += 1;
        Sender { shared: self.shared.clone() }
    }
}

impl<C, U> Drop for Sender<C, U> {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        st.senders -= 1;
        let last = st.senders == 0;
        drop(st);
        if last {
            self.shared.driver.wake_one();
        }
    }
}

impl<C, U> std::fmt::Debug for Sender<C, U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inbox::Sender")
    }
}

/// What [`Receiver::try_take`] found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Something was moved into the batches.
    Some,
    /// Nothing queued; senders remain.
    Empty,
    /// Nothing queued and every sender is gone: nothing will ever come.
    Done,
}

impl<C, U> Receiver<C, U> {
    /// Moves everything queued into `urgent` and `commands`, in order, without waiting.
    pub(crate) fn try_take(&self, urgent: &mut Vec<U>, commands: &mut Vec<C>) -> Taken {
        let mut st = lock(&self.shared.state);
        if st.urgent.is_empty() && st.commands.is_empty() {
            return if st.senders == 0 { Taken::Done } else { Taken::Empty };
        }
        let was_full = std::mem::take(&mut st.refused);
        st.bytes = 0;
        urgent.extend(st.urgent.drain(..));
        commands.extend(st.commands.drain(..));
        drop(st);
        if was_full {
            // Senders may be waiting for room: there is all of it now.
            self.shared.room.wake_all();
        }
        Taken::Some
    }

    /// Waits until something may have been queued (or the last sender left) since the
    /// last [`Receiver::try_take`] that found nothing. Only the driver calls this.
    #[cfg(not(loom))]
    pub(crate) async fn changed(&self) {
        self.shared.driver.notify().notified().await;
    }
}

impl<C, U> Drop for Receiver<C, U> {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        st.closed = true;
        // Dropped here, not when the last sender goes: a request's reply channel closes
        // now, so its task sees the driver is gone instead of waiting.
        let commands = std::mem::take(&mut st.commands);
        let urgent = std::mem::take(&mut st.urgent);
        drop(st);
        drop((commands, urgent));
        self.shared.room.wake_all();
    }
}

/// Test commands: a number weighs as many bytes as it says; the loom models' tuples
/// weigh one.
#[cfg(test)]
mod weights {
    impl super::Weigh for u32 {
        fn weight(&self) -> usize {
            *self as usize
        }
    }
    impl super::Weigh for u8 {
        fn weight(&self) -> usize {
            1
        }
    }
    impl<T> super::Weigh for (u8, T) {
        fn weight(&self) -> usize {
            1
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_byte_bound_refuses_past_it_but_always_takes_one_command() {
        let (tx, rx) = channel::<u32, u32>(10, 100);
        tx.try_push(500).unwrap();
        assert_eq!(tx.try_push(1), Err(PushError::Full(1)), "over the bytes already");
        rx.try_take(&mut Vec::new(), &mut Vec::new());
        tx.try_push(60).unwrap();
        tx.try_push(40).unwrap();
        assert_eq!(tx.try_push(1), Err(PushError::Full(1)));
        let mut c = Vec::new();
        rx.try_take(&mut Vec::new(), &mut c);
        assert_eq!(c, vec![60, 40]);
        tx.try_push(100).unwrap();
    }

    #[test]
    fn urgent_first_then_commands_in_order() {
        let (tx, rx) = channel::<u32, &str>(10, usize::MAX);
        tx.try_push(1).unwrap();
        tx.push_urgent("swap").unwrap();
        tx.try_push(2).unwrap();
        let (mut u, mut c) = (Vec::new(), Vec::new());
        assert_eq!(rx.try_take(&mut u, &mut c), Taken::Some);
        assert_eq!((u, c), (vec!["swap"], vec![1, 2]));
        assert_eq!(rx.try_take(&mut Vec::new(), &mut Vec::new()), Taken::Empty);
    }

    #[test]
    fn full_lane_refuses_commands_but_not_urgent_requests() {
        let (tx, rx) = channel::<u32, u32>(2, usize::MAX);
        tx.try_push(1).unwrap();
        tx.try_push(2).unwrap();
        assert_eq!(tx.try_push(3), Err(PushError::Full(3)));
        tx.push_urgent(9).unwrap();
        let (mut u, mut c) = (Vec::new(), Vec::new());
        rx.try_take(&mut u, &mut c);
        assert_eq!((u, c), (vec![9], vec![1, 2]));
        tx.try_push(3).unwrap();
    }

    #[test]
    fn done_once_every_sender_is_gone_and_the_rest_is_taken() {
        let (tx, rx) = channel::<u32, u32>(4, usize::MAX);
        let tx2 = tx.clone();
        tx.try_push(1).unwrap();
        drop(tx);
        assert_eq!(rx.try_take(&mut Vec::new(), &mut Vec::new()), Taken::Some);
        assert_eq!(rx.try_take(&mut Vec::new(), &mut Vec::new()), Taken::Empty);
        drop(tx2);
        assert_eq!(rx.try_take(&mut Vec::new(), &mut Vec::new()), Taken::Done);
    }

    #[test]
    fn pushes_fail_once_the_driver_is_gone() {
        let (tx, rx) = channel::<u32, u32>(4, usize::MAX);
        drop(rx);
        assert_eq!(tx.try_push(1), Err(PushError::Closed(1)));
        assert_eq!(tx.push_urgent(2), Err(2));
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_room_when_the_driver_takes() {
        let (tx, rx) = channel::<u32, u32>(1, usize::MAX);
        tx.try_push(1).unwrap();
        let tx2 = tx.clone();
        let waiting = tokio::spawn(async move { tx2.push(2).await });
        tokio::task::yield_now().await;
        let mut c = Vec::new();
        rx.try_take(&mut Vec::new(), &mut c);
        waiting.await.unwrap().unwrap();
        rx.try_take(&mut Vec::new(), &mut c);
        assert_eq!(c, vec![1, 2]);
    }

    #[tokio::test]
    async fn the_driver_is_woken_by_a_push_and_by_the_last_sender_leaving() {
        let (tx, rx) = channel::<u32, u32>(4, usize::MAX);
        let driver = tokio::spawn(async move {
            let mut c = Vec::new();
            loop {
                match rx.try_take(&mut Vec::new(), &mut c) {
                    Taken::Some => {}
                    Taken::Empty => rx.changed().await,
                    Taken::Done => return c,
                }
            }
        });
        for i in 0..10 {
            tx.push(i).await.unwrap();
            tokio::task::yield_now().await;
        }
        drop(tx);
        assert_eq!(driver.await.unwrap(), (0..10).collect::<Vec<_>>());
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::atomic::{AtomicBool, Ordering};

    /// Loom with a preemption bound: the driver below waits by yielding, and unbounded
    /// preemption makes such a loop's schedules explode. Two preemptions find the known
    /// classes of ordering bugs (loom's own advice).
    fn model(f: impl Fn() + Send + Sync + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(f);
    }

    /// Two connection tasks push into a lane with room for two while the driver takes:
    /// every command that was accepted arrives exactly once, each sender's in its own
    /// order, refusals are only ever `Full`, and the driver sees `Done` only after the
    /// last sender left and everything was taken.
    #[test]
    fn loom_two_senders_lose_nothing_and_keep_their_order() {
        loom::model(|| {
            let (tx, rx) = channel::<(u8, u8), ()>(2, usize::MAX);
            let senders: Vec<_> = (0..2u8)
                .map(|who| {
                    let tx = tx.clone();
                    loom::thread::spawn(move || {
                        let mut accepted = 0;
                        for n in 0..2u8 {
                            match tx.try_push((who, n)) {
                                Ok(()) => accepted += 1,
                                // A sender that finds no room stops, as if it waited.
                                Err(PushError::Full(_)) => break,
                                Err(PushError::Closed(_)) => panic!("driver gone"),
                            }
                        }
                        accepted
                    })
                })
                .collect();
            drop(tx);
            let mut got = Vec::new();
            // Takes racing the pushes, then the rest once the senders are done.
            assert_ne!(rx.try_take(&mut Vec::new(), &mut got), Taken::Done);
            let accepted: usize = senders.into_iter().map(|s| s.join().unwrap()).sum();
            while rx.try_take(&mut Vec::new(), &mut got) == Taken::Some {}
            assert_eq!(rx.try_take(&mut Vec::new(), &mut got), Taken::Done);
            assert_eq!(got.len(), accepted);
            for who in 0..2u8 {
                let mine: Vec<u8> = got.iter().filter(|(w, _)| *w == who).map(|(_, n)| *n).collect();
                assert_eq!(mine, (0..mine.len() as u8).collect::<Vec<_>>(), "sender {who}'s order");
            }
        });
    }

    /// The live-swap switch: an operator asks for a swap (urgent lane) while a connection
    /// task sends frames. The driver applies the swap between two commands, exactly once;
    /// the operator's answer comes only after it is applied, and every frame sent after
    /// the operator saw that answer is handled by the new machine.
    #[test]
    fn loom_a_swap_lands_between_commands_and_before_later_frames() {
        model(|| {
            let (tx, rx) = channel::<(u8, bool), &'static str>(4, usize::MAX);
            let answered = Arc::new(AtomicBool::new(false));
            let operator = {
                let tx = tx.clone();
                loom::thread::spawn(move || tx.push_urgent("swap").unwrap())
            };
            let conn = {
                let (tx, answered) = (tx.clone(), answered.clone());
                loom::thread::spawn(move || {
                    for n in 0..2u8 {
                        // Records whether the operator had its answer before this frame.
                        let after = answered.load(Ordering::SeqCst);
                        tx.try_push((n, after)).unwrap();
                    }
                })
            };
            drop(tx);
            // The driver: urgent requests before the commands taken with them.
            let mut version = 0;
            let mut swaps = 0;
            let mut handled = Vec::new();
            loop {
                let (mut u, mut c) = (Vec::new(), Vec::new());
                match rx.try_take(&mut u, &mut c) {
                    Taken::Some => {
                        for _ in u {
                            version += 1;
                            swaps += 1;
                            answered.store(true, Ordering::SeqCst);
                        }
                        handled.extend(c.into_iter().map(|(n, after)| (n, after, version)));
                    }
                    Taken::Empty => loom::thread::yield_now(),
                    Taken::Done => break,
                }
            }
            operator.join().unwrap();
            conn.join().unwrap();
            assert_eq!(swaps, 1);
            assert_eq!(handled.iter().map(|h| h.0).collect::<Vec<_>>(), vec![0, 1]);
            for (n, after, version) in handled {
                if after {
                    assert_eq!(version, 1, "frame {n} was sent after the swap was answered");
                }
            }
        });
    }

    /// The driver stops while a sender still pushes: the push fails cleanly, and
    /// nothing is left holding a command.
    #[test]
    fn loom_pushes_after_the_driver_is_gone_fail() {
        loom::model(|| {
            let (tx, rx) = channel::<u8, ()>(1, usize::MAX);
            let sender = loom::thread::spawn(move || {
                let first = tx.try_push(1);
                let second = tx.try_push(2);
                (first, second)
            });
            drop(rx);
            let (first, second) = sender.join().unwrap();
            assert!(matches!(first, Ok(()) | Err(PushError::Closed(1))));
            assert!(matches!(second, Err(PushError::Full(2)) | Err(PushError::Closed(2))));
        });
    }
}
