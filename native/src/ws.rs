//! One accepted WebSocket, on the bare TCP stream: one task reads frames and forwards
//! them to the driver, writes what the connection's [`Outbound`] queue holds, and runs the
//! close handshake.
//!
//! Why not a WebSocket library's stream: an idle connection should cost almost nothing.
//! Reads go into a buffer on the stack and only the unfinished tail of a frame is kept
//! (usually nothing); writes are encoded into a buffer that is freed once written. So an
//! idle socket holds its `TcpStream`, a few counters and this task, not 8 KiB of read
//! buffer and 64 KiB of write buffer. The framing is `parlor-rfc6455`'s; hyper does the HTTP
//! upgrade.

use crate::driver::{Command, DriverHandle, NotQueued, OwnedFrame};
use crate::queues::inflow::{Credit, FRAME_OVERHEAD};
use crate::queues::outbound::{close_payload, Item, Outbound, PushError, Take, OVERFLOW_CODE, OVERFLOW_REASON};
use crate::queues::sync::Arc;
use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use parlor_core::host::{ConnId, OutFrame, TransportEnd};
use parlor_rfc6455::{Header, OpCode, Peer, Violation, INVALID_DATA, PROTOCOL_ERROR, TOO_BIG};
use std::io;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// How long a closing connection may take to finish writing, or to answer our close,
/// before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Bytes of one connection's input that may wait in the driver's inbox; past it the
/// socket is not read until the driver catches up, so TCP slows the sender.
pub(crate) const INBOUND_BUDGET: usize = 64 << 10;
/// Bytes read per syscall, into a stack buffer.
const READ_CHUNK: usize = 16 * 1024;

/// Runs one WebSocket from its pending upgrade to the end, then reports how it ended.
pub(crate) async fn serve(
    upgrade: OnUpgrade,
    conn: ConnId,
    driver: DriverHandle,
    queue: Arc<Outbound>,
    max_payload: usize,
    inbound_budget: usize,
) {
    let (stream, early) = match upgrade.await.map_err(|e| e.to_string()).and_then(into_tcp) {
        Ok(parts) => parts,
        Err(error) => {
            tracing::debug!(?conn, %error, "websocket upgrade failed");
            queue.abort();
            driver.ended(conn, TransportEnd::Error).await;
            return;
        }
    };
    let mut ws = Conn {
        stream,
        conn,
        driver,
        queue,
        max_payload,
        inbound_budget,
        // Only the bytes: the `Bytes` hyper hands over keeps its whole read buffer alive.
        tail: early.to_vec(),
        partial: None,
        out: Vec::new(),
        out_at: 0,
        out_cost: 0,
        inbound: Vec::new(),
        close_in_out: false,
        reported: false,
        discarding: false,
    };
    drop(early);
    ws.run().await;
}

/// The TCP stream under an upgraded connection, and any bytes hyper read past the request.
fn into_tcp(upgraded: Upgraded) -> Result<(TcpStream, Bytes), String> {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Ok((parts.io.into_inner(), parts.read_buf)),
        Err(_) => Err("the upgraded connection is not a TCP stream".to_owned()),
    }
}

/// How a pass over the socket's input ended.
#[derive(Debug, PartialEq, Eq)]
enum ReadEnd {
    /// Nothing more to read now.
    More,
    /// The peer sent a close frame (its echo is queued).
    Closed,
    /// The TCP stream ended without a close frame: nothing more can be written.
    Vanished,
    /// A read failed: the socket is unusable.
    Broken,
    /// The peer broke the rules: close with this code and reason.
    Violation(Violation),
    /// Queueing a pong or the close echo overflowed the queue.
    Backpressure,
}

struct Conn {
    stream: TcpStream,
    conn: ConnId,
    driver: DriverHandle,
    queue: Arc<Outbound>,
    max_payload: usize,
    /// Bytes of input this connection may have waiting in the driver's inbox.
    inbound_budget: usize,
    /// Received bytes of a frame not yet complete (empty between frames).
    tail: Vec<u8>,
    /// A fragmented message being reassembled: its opcode and payload so far, capped at
    /// `max_payload` as a whole.
    partial: Option<Box<(OpCode, Vec<u8>)>>,
    /// Encoded frames not yet written, from `out_at`.
    out: Vec<u8>,
    out_at: usize,
    /// What the items in `out` count against the queue's limit, released once written.
    out_cost: usize,
    /// Messages parsed in one read, forwarded to the driver in order.
    inbound: Vec<OwnedFrame>,
    /// `out` ends with a close frame: nothing more is taken from the queue.
    close_in_out: bool,
    /// The driver has been told the transport ended.
    reported: bool,
    /// We closed on the peer; its further input is read and dropped.
    discarding: bool,
}

impl Conn {
    /// Serves the connection; `tail` may start with bytes the client sent right after its
    /// upgrade request (read by hyper already).
    async fn run(&mut self) {
        // Set once a close frame is encoded: it must be written, and the peer's answer
        // read, by then. Boxed: only closing connections carry a timer.
        let mut close_deadline: Option<Pin<Box<Sleep>>> = None;
        // No more input will be read: the peer closed, vanished or broke the rules.
        let mut input_done = false;
        if !self.tail.is_empty() {
            let end = self.absorb(&[]);
            if !self.forward().await {
                return;
            }
            input_done = self.input_ended(end).await;
        }
        loop {
            if !self.close_in_out {
                match self.take_queued() {
                    Ok(()) => {}
                    Err(()) => return, // aborted: the socket is gone
                }
            }
            if self.out_at < self.out.len() {
                if let Err(e) = self.write_some() {
                    tracing::debug!(conn = ?self.conn, error = %e, "websocket write failed");
                    self.queue.abort();
                    self.report(TransportEnd::Error).await;
                    return;
                }
            }
            let written = self.out_at == self.out.len();
            if self.close_in_out && close_deadline.is_none() {
                close_deadline = Some(Box::pin(tokio::time::sleep_until(Instant::now() + CLOSE_GRACE)));
            }
            if written && self.close_in_out && input_done {
                return;
            }
            // One readiness future for both directions keeps the task small.
            let interest = match (!input_done, !written) {
                (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
                (true, false) => Some(Interest::READABLE),
                (false, true) => Some(Interest::WRITABLE),
                (false, false) => None,
            };
            let ready = tokio::select! {
                biased;
                () = expired(&mut close_deadline) => return,
                ready = ready(&self.stream, interest) => ready,
                () = self.queue.changed(), if written && !self.close_in_out => continue,
            };
            let ready = match ready {
                Ok(ready) => ready,
                Err(_) => {
                    self.queue.abort();
                    self.report(TransportEnd::Error).await;
                    return;
                }
            };
            if !input_done && (ready.is_readable() || ready.is_read_closed()) {
                if self.discarding {
                    input_done = self.discard_ready();
                    continue;
                }
                let end = self.read_ready();
                // Forward what was read before acting on how reading ended.
                if !self.forward().await {
                    return;
                }
                input_done = self.input_ended(end).await;
            }
        }
    }

    /// Hands the parsed messages to the driver, in order; `false` when the driver is gone
    /// (the server is stopping). Past the connection's inbound budget it first waits for
    /// the driver to handle what it already has (see [`crate::queues::inflow`]).
    async fn forward(&mut self) -> bool {
        let mut ok = true;
        for frame in std::mem::take(&mut self.inbound) {
            let len = match &frame {
                OwnedFrame::Text(t) => t.len(),
                OwnedFrame::Binary(b) => b.len(),
            };
            if self.queue.inflow().held() >= self.inbound_budget {
                // Boxed: only a waiting task carries the wait.
                Box::pin(self.queue.inflow().room(self.inbound_budget)).await;
            }
            let credit = Credit::take(self.queue.clone(), len + FRAME_OVERHEAD);
            let cmd = Command::Frame { conn: self.conn, frame, credit };
            ok = match self.driver.try_push(cmd) {
                Ok(()) => true,
                // A full inbox: wait in a boxed future, so that only a waiting task
                // carries one.
                Err(NotQueued::Full(cmd)) => Box::pin(self.driver.push(cmd)).await.is_ok(),
                Err(NotQueued::Gone) => false,
            };
            if !ok {
                self.queue.abort();
                break;
            }
        }
        ok
    }

    /// Reports how the transport ended, once.
    async fn report(&mut self, how: TransportEnd) {
        if !self.reported {
            self.reported = true;
            // After every frame this connection forwarded: the inbox keeps them in order.
            let cmd = Command::Ended { conn: self.conn, how };
            if let Err(NotQueued::Full(cmd)) = self.driver.try_push(cmd) {
                let _ = Box::pin(self.driver.push(cmd)).await;
            }
        }
    }

    /// Acts on how a read ended: for an end, queues what the peer is owed and tells the
    /// driver. Returns whether input is over; after a broken rule or an overflow it is not
    /// quite: what the peer still sends is read and dropped (see `discard_ready`).
    async fn input_ended(&mut self, end: ReadEnd) -> bool {
        let how = match end {
            ReadEnd::More => return false,
            ReadEnd::Closed | ReadEnd::Vanished => TransportEnd::Closed,
            ReadEnd::Backpressure => TransportEnd::Backpressure,
            ReadEnd::Broken | ReadEnd::Violation(_) => TransportEnd::Error,
        };
        tracing::debug!(conn = ?self.conn, ?end, "websocket input ended");
        match end {
            ReadEnd::Violation(Violation(code, reason)) => {
                let _ = self.queue.push_close(code, reason);
            }
            // Nothing can be written to a stream that ended or broke.
            ReadEnd::Vanished | ReadEnd::Broken => self.queue.abort(),
            // Closed: the echo is queued. Backpressure: the queue is failed and the
            // writer sends the 1008 close.
            ReadEnd::Closed | ReadEnd::Backpressure | ReadEnd::More => {}
        }
        self.report(how).await;
        self.discarding = matches!(end, ReadEnd::Violation(_) | ReadEnd::Backpressure);
        !self.discarding
    }

    /// Reads and drops what the peer sends after we closed on it: closing a socket with
    /// unread input resets the connection, and the reset can destroy our close frame
    /// before the peer reads it. `true` once the peer's side has ended.
    fn discard_ready(&mut self) -> bool {
        with_scratch(|chunk| loop {
            chunk.clear();
            match self.stream.try_read_buf(chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        })
    }

    /// Moves what the queue holds into `out`, encoded. `Err` when the queue was aborted.
    fn take_queued(&mut self) -> Result<(), ()> {
        // Local, and so freed after the batch: an idle connection holds no buffers.
        let mut batch = Vec::new();
        match self.queue.try_take(&mut batch) {
            Take::Items(cost) => {
                self.out_cost += cost;
                // One allocation for the batch: each frame is its payload plus at most a
                // 10-byte header.
                self.out.reserve(cost + 10 * batch.len());
                for item in batch {
                    let (opcode, payload) = match &item {
                        Item::Frame(OutFrame::Text(b)) => (OpCode::Text, b),
                        Item::Frame(OutFrame::Binary(b)) => (OpCode::Binary, b),
                        Item::Pong(b) => (OpCode::Pong, b),
                        Item::Close(b) => (OpCode::Close, b),
                    };
                    parlor_rfc6455::write_frame(&mut self.out, opcode, payload, None);
                    if opcode == OpCode::Close {
                        // Nothing may follow a close; the queue refuses more already.
                        self.close_in_out = true;
                        break;
                    }
                }
                Ok(())
            }
            Take::Failed => {
                tracing::debug!(conn = ?self.conn, "websocket outbound queue overflowed");
                // Frames already encoded go out first (one may be half written); the
                // queue dropped the rest.
                parlor_rfc6455::write_frame(&mut self.out, OpCode::Close, &close_payload(OVERFLOW_CODE, OVERFLOW_REASON), None);
                self.close_in_out = true;
                // Usually the driver saw the overflow and told the core already; if a
                // pong overflowed, only we know. A second report is ignored.
                if !self.reported {
                    self.reported = true;
                    self.driver.ended_now(self.conn, TransportEnd::Backpressure);
                }
                Ok(())
            }
            Take::Aborted => Err(()),
            Take::Empty => Ok(()),
        }
    }

    /// Writes as much of `out` as the socket takes without waiting.
    fn write_some(&mut self) -> io::Result<()> {
        while self.out_at < self.out.len() {
            match self.stream.try_write(&self.out[self.out_at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.out_at = 0;
        self.out = Vec::new();
        self.queue.release(std::mem::take(&mut self.out_cost));
        Ok(())
    }

    /// Reads one chunk of what the socket has and parses every frame it completes;
    /// messages land in `inbound`. One chunk per call: the reader then forwards them and
    /// waits on the driver's inbox before it reads more, so a fast sender meets TCP
    /// backpressure instead of growing `inbound`. When more is waiting, the socket's
    /// readiness is still set and the next call comes at once.
    fn read_ready(&mut self) -> ReadEnd {
        with_scratch(|chunk| {
            // A short read emptied the socket, so it is reported to tokio as WouldBlock:
            // the readiness is forgotten now instead of after one more recv that could
            // only say EAGAIN (a syscall per message saved; tokio's own `poll_read` does
            // the same). Data arriving after the read raises a new edge, and tokio keeps
            // a readiness newer than the one this call saw.
            let read = self.stream.try_io(Interest::READABLE, || match self.stream.try_read_buf(chunk) {
                Ok(n) if n > 0 && n < READ_CHUNK => Err(io::ErrorKind::WouldBlock.into()),
                other => other,
            });
            match read {
                Ok(0) => ReadEnd::Vanished,
                Ok(_) => self.absorb(chunk),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !chunk.is_empty() => self.absorb(chunk),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                    ReadEnd::More
                }
                Err(_) => ReadEnd::Broken,
            }
        })
    }

    /// Parses the frames `bytes` completes, after the unfinished tail, keeping what is
    /// still unfinished.
    fn absorb(&mut self, bytes: &[u8]) -> ReadEnd {
        if self.tail.is_empty() {
            let (end, used, need) = self.parse(bytes);
            if end == ReadEnd::More && used < bytes.len() {
                // Room for what came, and as much again up to the frame's length: a
                // header that announces a large frame gets memory only as its bytes
                // arrive (at most twice what was sent), never the whole frame up front.
                let have = bytes.len() - used;
                self.tail.reserve_exact(need.min(2 * have).max(have));
                self.tail.extend_from_slice(&bytes[used..]);
            }
            end
        } else {
            self.tail.extend_from_slice(bytes);
            let mut tail = std::mem::take(&mut self.tail);
            let (end, used, need) = self.parse(&tail);
            if end == ReadEnd::More && used < tail.len() {
                // Keep the unfinished frame, in the same allocation, grown as above.
                tail.drain(..used);
                let have = tail.len();
                tail.reserve_exact(need.min(2 * have).saturating_sub(have));
                self.tail = tail;
            }
            end
        }
    }

    /// Parses complete frames from `buf`: how parsing ended, the bytes consumed, and the
    /// length of the unfinished frame after them when its header is complete (else 0).
    fn parse(&mut self, buf: &[u8]) -> (ReadEnd, usize, usize) {
        let mut at = 0;
        loop {
            let header = match parlor_rfc6455::parse_header(&buf[at..], self.max_payload, Peer::Client) {
                Ok(Some(h)) => h,
                Ok(None) => return (ReadEnd::More, at, 0),
                Err(v) => return (ReadEnd::Violation(v), at, 0),
            };
            if buf.len() - at < header.frame_len() {
                return (ReadEnd::More, at, header.frame_len());
            }
            let payload = &buf[at + header.header_len..at + header.frame_len()];
            at += header.frame_len();
            let end = self.frame(header, payload);
            if end != ReadEnd::More {
                return (end, at, 0);
            }
        }
    }

    /// Acts on one complete frame.
    fn frame(&mut self, h: Header, masked: &[u8]) -> ReadEnd {
        let mut payload = masked.to_vec();
        // A client's frames are always masked (`parse_header` refuses the others).
        if let Some(mask) = h.mask {
            parlor_rfc6455::apply_mask(&mut payload, mask);
        }
        let message = match h.opcode {
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return ReadEnd::Violation(Violation(PROTOCOL_ERROR, "expected a continuation frame"));
                }
                if !h.fin {
                    self.partial = Some(Box::new((h.opcode, payload)));
                    return ReadEnd::More;
                }
                (h.opcode, payload)
            }
            OpCode::Continuation => {
                let Some((_, buf)) = self.partial.as_deref_mut() else {
                    return ReadEnd::Violation(Violation(PROTOCOL_ERROR, "unexpected continuation frame"));
                };
                if buf.len().saturating_add(payload.len()) > self.max_payload {
                    return ReadEnd::Violation(Violation(TOO_BIG, "message too big"));
                }
                buf.extend_from_slice(&payload);
                if !h.fin {
                    return ReadEnd::More;
                }
                match self.partial.take() {
                    Some(message) => *message,
                    None => return ReadEnd::More,
                }
            }
            OpCode::Ping => {
                return match self.queue.push_pong(Bytes::from(payload)) {
                    Err(PushError::Overflow) => ReadEnd::Backpressure,
                    // Closed: our own close is queued, nothing may follow it anyway.
                    Ok(()) | Err(PushError::Closed) => ReadEnd::More,
                };
            }
            OpCode::Pong => return ReadEnd::More,
            OpCode::Close => {
                if let Err(v) = parlor_rfc6455::check_close(&payload) {
                    return ReadEnd::Violation(v);
                }
                // Echo it (RFC 6455 §5.5.1); if our own close is queued, that one stands.
                return match self.queue.push_close_raw(Bytes::from(payload)) {
                    Err(PushError::Overflow) => ReadEnd::Backpressure,
                    Ok(()) | Err(PushError::Closed) => ReadEnd::Closed,
                };
            }
        };
        let (opcode, bytes) = message;
        if self.close_in_out {
            // We are closing: data still in flight from the peer is not acted on.
            return ReadEnd::More;
        }
        self.inbound.push(if opcode == OpCode::Text {
            match String::from_utf8(bytes) {
                Ok(text) => OwnedFrame::Text(text),
                Err(_) => return ReadEnd::Violation(Violation(INVALID_DATA, "invalid UTF-8")),
            }
        } else {
            OwnedFrame::Binary(Bytes::from(bytes))
        });
        ReadEnd::More
    }
}

thread_local! {
    /// The buffer every connection on this thread reads into. Reads are synchronous
    /// (`try_read_buf` after readiness), so one buffer per thread serves them all, an idle
    /// connection holds none, and nothing is zeroed before each read.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(READ_CHUNK));
}

/// Runs `f` with this thread's read buffer, emptied (its capacity is `READ_CHUNK`).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.clear();
        f(&mut buf)
    })
}

/// Resolves when the closing timer fires; never without one.
async fn expired(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(sleep) => sleep.await,
        None => std::future::pending().await,
    }
}

/// The socket's readiness for `interest`; never without one.
async fn ready(stream: &TcpStream, interest: Option<Interest>) -> io::Result<tokio::io::Ready> {
    match interest {
        Some(interest) => stream.ready(interest).await,
        None => std::future::pending().await,
    }
}
