//! What connection tasks send a mount's driver, and the handle they send it through: the
//! [`Command`]s that go through the bounded inbox in order, and the few [`Control`]
//! requests that never wait behind it.

use crate::queues::inflow::Credit;
use crate::queues::inbox::{self, PushError as InboxFull, Weigh};
use crate::metrics::MountMetrics;
use crate::queues::outbound::Outbound;
use crate::queues::sync::Arc;
use bytes::Bytes;
use parlor_core::host::{ConnId, Method, TransportEnd};
use parlor_core::service::Machine;
use parlor_core::time::Instant;
use std::net::IpAddr;
use tokio::sync::oneshot;

/// Commands a mount's inbox holds at most; senders wait beyond it.
pub(super) const INBOX_CAPACITY: usize = 1024;
/// Bytes a mount's inbox holds at most (past its first command): with 1 MB frames, 16 of
/// them wait at a time, not a thousand.
pub(super) const INBOX_BYTES: usize = 16 << 20;
/// What a command weighs besides its body: the command itself and its bookkeeping.
const COMMAND_OVERHEAD: usize = 256;
/// A request on the HTTP API (`/api/...`), owned.
#[derive(Debug)]
pub(crate) struct OwnedApi {
    pub conn: ConnId,
    pub method: Method,
    /// The path after `/api/`.
    pub path: String,
    pub authorization: Option<String>,
    pub body: Bytes,
}

/// An HTTP request on the Engine.IO path, owned so it can cross to the driver task.
#[derive(Debug)]
pub(crate) struct OwnedRequest {
    pub conn: ConnId,
    pub method: Method,
    pub query: String,
    pub body: Bytes,
    pub too_large: bool,
    pub websocket: bool,
    pub remote: Option<IpAddr>,
}

/// A received WebSocket message, owned. Text is already checked to be UTF-8.
#[derive(Debug)]
pub(crate) enum OwnedFrame {
    Text(String),
    Binary(Bytes),
}

/// The first output for a request (for HTTP, the only one): its response, or the WebSocket
/// accept.
#[derive(Debug)]
pub(crate) enum FirstOutput {
    Respond {
        status: u16,
        content_type: &'static str,
        body: Bytes,
    },
    /// Upgrade to WebSocket; the core's frames for it go into this queue.
    Accept(Arc<Outbound>),
}

/// What connection tasks tell the driver, in order per connection.
#[derive(Debug)]
pub(crate) enum Command {
    Request {
        req: OwnedRequest,
        reply: oneshot::Sender<FirstOutput>,
    },
    Api {
        req: OwnedApi,
        reply: oneshot::Sender<FirstOutput>,
    },
    /// `credit` goes back to the connection once the frame is handled.
    Frame {
        conn: ConnId,
        frame: OwnedFrame,
        credit: Credit,
    },
    Ended {
        conn: ConnId,
        how: TransportEnd,
    },
}

impl Weigh for Command {
    fn weight(&self) -> usize {
        match self {
            Command::Request { req, .. } => COMMAND_OVERHEAD + req.body.len() + req.query.len(),
            Command::Api { req, .. } => COMMAND_OVERHEAD + req.body.len() + req.path.len(),
            Command::Frame { credit, .. } => credit.cost(),
            Command::Ended { .. } => COMMAND_OVERHEAD,
        }
    }
}

/// Replaces the machine between two inputs (a live component swap): it gets the running
/// machine and the time, and either puts a new one in its place or leaves it and says why.
pub(crate) type Swap = Box<dyn FnOnce(&mut Box<dyn Machine + Send>, Instant) -> SwapResult + Send>;

/// What a swap says: what it did (`Ok`), or why the running machine stays (`Err`).
pub(crate) type SwapResult = Result<String, String>;

/// Out-of-band requests: few, and never stuck behind a full inbox.
pub(super) enum Control {
    Metrics(oneshot::Sender<MountMetrics>),
    Shutdown,
    Swap(Swap, oneshot::Sender<SwapResult>),
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Control::Metrics(_) => "Metrics",
            Control::Shutdown => "Shutdown",
            Control::Swap(..) => "Swap",
        })
    }
}

/// The driver task is gone (the server is stopping).
#[derive(Copy, Clone, Debug)]
pub(crate) struct Gone;

/// Why [`DriverHandle::try_push`] did not queue a command.
#[derive(Debug)]
pub(crate) enum NotQueued {
    /// The inbox is full: here is the command back, for [`DriverHandle::push`].
    Full(Command),
    Gone,
}

/// A cheap, cloneable way to talk to one mount's driver: commands go through the
/// mount's bounded inbox, control requests through its urgent lane.
#[derive(Clone, Debug)]
pub(crate) struct DriverHandle {
    pub(super) inbox: inbox::Sender<Command, Control>,
}

impl DriverHandle {
    /// Hands a request to the core; the receiver gets its first output.
    pub async fn request(&self, req: OwnedRequest) -> Result<oneshot::Receiver<FirstOutput>, Gone> {
        let (reply, rx) = oneshot::channel();
        self.inbox.push(Command::Request { req, reply }).await.map_err(|_| Gone)?;
        Ok(rx)
    }

    /// Hands an HTTP API request to the core; the receiver gets its answer.
    pub async fn api(&self, req: OwnedApi) -> Result<oneshot::Receiver<FirstOutput>, Gone> {
        let (reply, rx) = oneshot::channel();
        self.inbox.push(Command::Api { req, reply }).await.map_err(|_| Gone)?;
        Ok(rx)
    }

    /// Queues a command at once if the inbox has room; a full inbox hands it back for
    /// [`DriverHandle::push`]. Lets a connection task skip holding a push future (and the
    /// command in it) in its own state while the inbox has room, as it nearly always has.
    pub fn try_push(&self, cmd: Command) -> Result<(), NotQueued> {
        match self.inbox.try_push(cmd) {
            Ok(()) => Ok(()),
            Err(InboxFull::Full(cmd)) => Err(NotQueued::Full(cmd)),
            Err(InboxFull::Closed(_)) => Err(NotQueued::Gone),
        }
    }

    /// Queues a command, waiting for room.
    pub async fn push(&self, cmd: Command) -> Result<(), Gone> {
        self.inbox.push(cmd).await.map_err(|_| Gone)
    }

    /// Reports a transport that ended on its own. Goes through the inbox, so it arrives
    /// after every frame this connection sent before it.
    pub async fn ended(&self, conn: ConnId, how: TransportEnd) {
        let _ = self.inbox.push(Command::Ended { conn, how }).await;
    }

    /// [`DriverHandle::ended`] from synchronous code (a `Drop`): tries the inbox at once
    /// and, when it is full, finishes the send on a spawned task — an `Ended` must not be
    /// lost, or the core would keep a long-poll open for a client that left.
    pub fn ended_now(&self, conn: ConnId, how: TransportEnd) {
        match self.inbox.try_push(Command::Ended { conn, how }) {
            Ok(()) | Err(InboxFull::Closed(_)) => {}
            Err(InboxFull::Full(cmd)) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let inbox = self.inbox.clone();
                    rt.spawn(async move {
                        let _ = inbox.push(cmd).await;
                    });
                }
            }
        }
    }

    /// The mount's numbers, or `None` if the driver is gone.
    pub async fn metrics(&self) -> Option<MountMetrics> {
        let (tx, rx) = oneshot::channel();
        self.inbox.push_urgent(Control::Metrics(tx)).ok()?;
        rx.await.ok()
    }

    /// Feeds `Input::Shutdown` to the machine: it tells its clients and closes them.
    pub fn shutdown(&self) {
        let _ = self.inbox.push_urgent(Control::Shutdown);
    }

    /// Runs `swap` on the machine between two inputs (after the current drain), then
    /// drains whatever the new machine has to say; returns what `swap` returned.
    pub async fn swap(&self, swap: Swap) -> SwapResult {
        let (tx, rx) = oneshot::channel();
        self.inbox.push_urgent(Control::Swap(swap, tx)).map_err(|_| "the server is stopping".to_owned())?;
        rx.await.map_err(|_| "the server is stopping".to_owned())?
    }
}
