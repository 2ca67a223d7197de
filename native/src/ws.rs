//! One accepted WebSocket: a reader that forwards frames to the driver, a writer that
//! drains the connection's [`Outbound`] queue, and the close handshake between them.
//!
//! The two halves run concurrently in one task (reads are not cancel-safe in
//! fastwebsockets, so neither half is ever dropped mid-operation except when the whole
//! connection is being cut). Control frames the reader owes the peer (pongs, the echo of
//! a close) go through the same queue as data, so the writer half is owned by one loop.

use crate::driver::{DriverHandle, OwnedFrame};
use crate::outbound::{Item, Outbound, PushError, Take, OVERFLOW_CODE, OVERFLOW_REASON};
use crate::sync::Arc;
use bytes::Bytes;
use fastwebsockets::upgrade::UpgradeFut;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite};
use parlor_core::host::{ConnId, OutFrame, TransportEnd};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, BufWriter};

/// How long a closing connection may take to finish writing, or to answer our close,
/// before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Bytes the writer gathers before a syscall: a drained batch of small frames goes out
/// in one write instead of one per frame.
const WRITE_BUFFER: usize = 64 * 1024;

/// How the reader stopped.
#[derive(Debug, PartialEq, Eq)]
enum ReadEnd {
    /// The peer sent a close frame (its echo is queued).
    Closed,
    /// The TCP stream ended without a close frame: nothing more can be written.
    Vanished,
    /// A read failed: the socket is unusable, write nothing more.
    Broken,
    /// The peer broke the rules: close with this code and reason.
    Violation(u16, &'static str),
    /// The reader's own push (a pong) overflowed the queue.
    Backpressure,
    /// The driver is gone: the server is stopping.
    DriverGone,
}

/// How the writer stopped.
#[derive(Debug, PartialEq, Eq)]
enum WriteEnd {
    /// A close frame went out (the core's, an echo, ours on overflow or violation).
    Closed,
    /// A write failed.
    Broken,
    /// The queue was aborted.
    Aborted,
}

/// Runs one WebSocket from its pending upgrade to the end, then reports how it ended.
pub(crate) async fn serve(
    upgrade: UpgradeFut,
    conn: ConnId,
    driver: DriverHandle,
    queue: Arc<Outbound>,
    max_payload: usize,
) {
    let ws = match upgrade.await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(?conn, error = %e, "websocket upgrade failed");
            queue.abort();
            driver.ended(conn, TransportEnd::Error).await;
            return;
        }
    };
    let (mut read, mut write) = ws.split(|io| {
        let (r, w) = tokio::io::split(io);
        (r, BufWriter::with_capacity(WRITE_BUFFER, w))
    });
    // fastwebsockets refuses a frame of `max_message_size` bytes or more; a payload of
    // exactly `max_payload` is allowed.
    read.set_max_message_size(max_payload.saturating_add(1));
    read.set_auto_close(true);
    read.set_auto_pong(true);

    let reader = read_loop(&mut read, conn, &driver, &queue, max_payload);
    let writer = write_loop(&mut write, &queue);
    tokio::pin!(reader, writer);

    tokio::select! {
        end = &mut reader => {
            tracing::debug!(?conn, ?end, "websocket reader ended");
            let how = match end {
                ReadEnd::Closed | ReadEnd::Vanished => TransportEnd::Closed,
                ReadEnd::Backpressure => TransportEnd::Backpressure,
                ReadEnd::Broken | ReadEnd::Violation(..) | ReadEnd::DriverGone => TransportEnd::Error,
            };
            match end {
                ReadEnd::Violation(code, reason) => {
                    let _ = queue.push_close(code, reason);
                }
                ReadEnd::Vanished | ReadEnd::Broken | ReadEnd::DriverGone => queue.abort(),
                // Closed: the echo is queued. Backpressure: the writer sends the 1008.
                ReadEnd::Closed | ReadEnd::Backpressure => {}
            }
            // After every frame this reader forwarded: the inbox keeps them in order.
            driver.ended(conn, how).await;
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut writer).await;
        }
        end = &mut writer => {
            tracing::debug!(?conn, ?end, "websocket writer ended");
            match end {
                WriteEnd::Broken => {
                    queue.abort();
                    driver.ended(conn, TransportEnd::Error).await;
                }
                // RFC 6455: after our close, wait (briefly) for the peer's.
                WriteEnd::Closed => {
                    let _ = tokio::time::timeout(CLOSE_GRACE, &mut reader).await;
                }
                WriteEnd::Aborted => {}
            }
        }
        () = queue.failed() => {
            tracing::debug!(?conn, "websocket outbound queue overflowed");
            // Usually the driver saw the overflow and told the core already; if the
            // reader's pong overflowed, only we know. A second report is ignored.
            driver.ended(conn, TransportEnd::Backpressure).await;
            // The writer sends the 1008 close if the client reads at all; else cut.
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut writer).await;
        }
    }
}

/// Reads messages and forwards them to the driver until the connection ends.
async fn read_loop<S: AsyncRead + Unpin>(
    read: &mut WebSocketRead<S>,
    conn: ConnId,
    driver: &DriverHandle,
    queue: &Outbound,
    max_payload: usize,
) -> ReadEnd {
    // The frames fastwebsockets owes the peer go into the queue, in order with data.
    let mut obligated = |frame: Frame<'_>| {
        let pushed = match frame.opcode {
            OpCode::Pong => queue.push_pong(Bytes::copy_from_slice(&frame.payload)),
            OpCode::Close => queue.push_close_raw(Bytes::copy_from_slice(&frame.payload)),
            _ => Ok(()),
        };
        // Closed: our own close is already queued, so nothing may follow it anyway.
        std::future::ready(match pushed {
            Err(PushError::Overflow) => Err(PushError::Overflow),
            Ok(()) | Err(PushError::Closed) => Ok(()),
        })
    };
    // A fragmented message being reassembled: its opcode and the bytes so far. Capped at
    // `max_payload` as a whole, not just per frame.
    let mut partial: Option<(OpCode, Vec<u8>)> = None;
    loop {
        let frame = match read.read_frame(&mut obligated).await {
            Ok(frame) => frame,
            Err(e) => return read_error(&e, queue),
        };
        let message = match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                if partial.is_some() {
                    return ReadEnd::Violation(1002, "expected a continuation frame");
                }
                if frame.fin {
                    Some((frame.opcode, payload_vec(frame.payload)))
                } else {
                    partial = Some((frame.opcode, payload_vec(frame.payload)));
                    None
                }
            }
            OpCode::Continuation => {
                let Some((_, buf)) = partial.as_mut() else {
                    return ReadEnd::Violation(1002, "unexpected continuation frame");
                };
                if buf.len().saturating_add(frame.payload.len()) > max_payload {
                    return ReadEnd::Violation(1009, "message too big");
                }
                buf.extend_from_slice(&frame.payload);
                if frame.fin {
                    partial.take()
                } else {
                    None
                }
            }
            OpCode::Close => return ReadEnd::Closed,
            OpCode::Ping | OpCode::Pong => None,
        };
        let Some((opcode, bytes)) = message else { continue };
        let frame = if opcode == OpCode::Text {
            match String::from_utf8(bytes) {
                Ok(text) => OwnedFrame::Text(text),
                Err(_) => return ReadEnd::Violation(1007, "invalid UTF-8"),
            }
        } else {
            OwnedFrame::Binary(Bytes::from(bytes))
        };
        if driver.frame(conn, frame).await.is_err() {
            return ReadEnd::DriverGone;
        }
    }
}

/// The payload as an owned buffer of exactly its size. Copying detaches it from
/// fastwebsockets' read buffer, which a shared slice would keep alive for as long as the
/// core holds the message.
fn payload_vec(payload: Payload<'_>) -> Vec<u8> {
    payload.to_vec()
}

fn read_error(e: &WebSocketError, queue: &Outbound) -> ReadEnd {
    match e {
        WebSocketError::UnexpectedEOF | WebSocketError::ConnectionClosed => ReadEnd::Vanished,
        WebSocketError::IoError(_) => ReadEnd::Broken,
        WebSocketError::SendError(_) if queue.is_failed() => ReadEnd::Backpressure,
        // Only an overflow fails an obligated push (see `obligated`); be safe anyway.
        WebSocketError::SendError(_) => ReadEnd::Broken,
        WebSocketError::FrameTooLarge => ReadEnd::Violation(1009, "message too big"),
        WebSocketError::InvalidUTF8 => ReadEnd::Violation(1007, "invalid UTF-8"),
        // fastwebsockets already queued its own 1002 through `obligated` for this one;
        // ours is then refused as a second close, harmlessly.
        WebSocketError::InvalidCloseCode => ReadEnd::Violation(1002, "invalid close code"),
        _ => ReadEnd::Violation(1002, "protocol error"),
    }
}

/// Writes what the queue holds, a batch per wake-up and one flush per batch, until a
/// close frame goes out or the connection breaks.
async fn write_loop<S: AsyncWrite + Unpin>(write: &mut WebSocketWrite<S>, queue: &Outbound) -> WriteEnd {
    let mut batch = Vec::new();
    loop {
        match queue.take(&mut batch).await {
            Take::Items(cost) => {
                for item in batch.drain(..) {
                    let (frame, last) = match &item {
                        Item::Frame(OutFrame::Text(b)) => (Frame::text(Payload::Borrowed(b)), false),
                        Item::Frame(OutFrame::Binary(b)) => (Frame::binary(Payload::Borrowed(b)), false),
                        Item::Pong(b) => (Frame::pong(Payload::Borrowed(b)), false),
                        Item::Close(b) => (Frame::close_raw(Payload::Borrowed(b)), true),
                    };
                    if write.write_frame(frame).await.is_err() {
                        return WriteEnd::Broken;
                    }
                    if last {
                        return match write.flush().await {
                            Ok(()) => WriteEnd::Closed,
                            Err(_) => WriteEnd::Broken,
                        };
                    }
                }
                if write.flush().await.is_err() {
                    return WriteEnd::Broken;
                }
                queue.release(cost);
            }
            Take::Failed => {
                let close = Frame::close(OVERFLOW_CODE, OVERFLOW_REASON.as_bytes());
                if write.write_frame(close).await.is_err() || write.flush().await.is_err() {
                    return WriteEnd::Broken;
                }
                return WriteEnd::Closed;
            }
            Take::Aborted => return WriteEnd::Aborted,
            Take::Empty => {}
        }
    }
}
