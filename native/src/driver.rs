//! The driver: one task per mount that owns its [`Machine`] and follows the drain rule.
//!
//! Connection tasks never touch the machine. They send [`Command`]s over a bounded channel
//! (so a flood of frames slows the readers down instead of growing memory), and the driver,
//! for each one: calls `handle`, drains `poll_output` until `None` routing every output by
//! its `ConnId`, and re-arms its one timer at `poll_timeout`. When that timer fires it
//! calls `handle_timeout` and drains again. Nothing else moves the machine's state.
//!
//! Routing: an HTTP request waits on a oneshot for its first output ([`Reply`]). A
//! `Respond` ends it; an `Accept` turns the route into the WebSocket's [`Outbound`] queue,
//! created here and handed to the request task, so frames the core emits in the same drain
//! are already queued in order. Pushing never blocks; an overflowing queue becomes
//! `Ended{Backpressure}` fed back to the machine after the drain.

use crate::clock;
use crate::metrics::MountMetrics;
use crate::outbound::{Outbound, PushError};
use crate::sync::Arc;
use bytes::Bytes;
use parlor_core::host::{ConnId, Frame, Input, Method, Output, Request, TransportEnd};
use parlor_core::service::Machine;
use std::collections::HashMap;
use std::net::IpAddr;
use tokio::sync::{mpsc, oneshot};

/// Commands a mount's inbox holds at most; senders wait beyond it.
const INBOX_CAPACITY: usize = 1024;

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

/// The first (and for HTTP, only) answer to a request.
#[derive(Debug)]
pub(crate) enum Reply {
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
    Request { req: OwnedRequest, reply: oneshot::Sender<Reply> },
    Frame { conn: ConnId, frame: OwnedFrame },
    Ended { conn: ConnId, how: TransportEnd },
}

/// Out-of-band requests: few, and never stuck behind a full inbox.
#[derive(Debug)]
enum Control {
    Metrics(oneshot::Sender<MountMetrics>),
    Shutdown,
}

/// The driver task is gone (the server is stopping).
#[derive(Copy, Clone, Debug)]
pub(crate) struct Gone;

/// A cheap, cloneable way to talk to one mount's driver.
#[derive(Clone, Debug)]
pub(crate) struct DriverHandle {
    inbox: mpsc::Sender<Command>,
    control: mpsc::UnboundedSender<Control>,
}

impl DriverHandle {
    /// Hands a request to the core; the receiver gets its first output.
    pub async fn request(&self, req: OwnedRequest) -> Result<oneshot::Receiver<Reply>, Gone> {
        let (reply, rx) = oneshot::channel();
        self.inbox.send(Command::Request { req, reply }).await.map_err(|_| Gone)?;
        Ok(rx)
    }

    pub async fn frame(&self, conn: ConnId, frame: OwnedFrame) -> Result<(), Gone> {
        self.inbox.send(Command::Frame { conn, frame }).await.map_err(|_| Gone)
    }

    /// Reports a transport that ended on its own. Goes through the inbox, so it arrives
    /// after every frame this connection sent before it.
    pub async fn ended(&self, conn: ConnId, how: TransportEnd) {
        let _ = self.inbox.send(Command::Ended { conn, how }).await;
    }

    /// [`DriverHandle::ended`] from synchronous code (a `Drop`): tries the inbox at once
    /// and, when it is full, finishes the send on a spawned task — an `Ended` must not be
    /// lost, or the core would keep a long-poll open for a client that left.
    pub fn ended_now(&self, conn: ConnId, how: TransportEnd) {
        match self.inbox.try_send(Command::Ended { conn, how }) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let inbox = self.inbox.clone();
                    rt.spawn(async move {
                        let _ = inbox.send(cmd).await;
                    });
                }
            }
        }
    }

    /// The mount's numbers, or `None` if the driver is gone.
    pub async fn metrics(&self) -> Option<MountMetrics> {
        let (tx, rx) = oneshot::channel();
        self.control.send(Control::Metrics(tx)).ok()?;
        rx.await.ok()
    }

    /// Feeds `Input::Shutdown` to the machine: it tells its clients and closes them.
    pub fn shutdown(&self) {
        let _ = self.control.send(Control::Shutdown);
    }
}

/// Where an output for a connection goes.
#[derive(Debug)]
enum Route {
    /// An HTTP request waiting for its answer.
    Pending(oneshot::Sender<Reply>),
    /// An accepted WebSocket.
    Ws(Arc<Outbound>),
}

/// Starts the driver task for `machine`. It runs until every handle is dropped; `done`
/// is held until then, so the server can wait for it at shutdown.
pub(crate) fn spawn(
    machine: Box<dyn Machine + Send>,
    outbound_limit: usize,
    mount: String,
    done: mpsc::Sender<()>,
) -> DriverHandle {
    let (inbox_tx, inbox) = mpsc::channel(INBOX_CAPACITY);
    let (control_tx, control) = mpsc::unbounded_channel();
    let driver = Driver {
        machine,
        routes: HashMap::new(),
        outbound_limit,
        ended: Vec::new(),
        unstored: Vec::new(),
        overflows: 0,
        mount,
    };
    tokio::spawn(driver.run(inbox, control, done));
    DriverHandle { inbox: inbox_tx, control: control_tx }
}

struct Driver {
    machine: Box<dyn Machine + Send>,
    routes: HashMap<ConnId, Route>,
    outbound_limit: usize,
    /// Transports found dead while routing (overflowed queues, abandoned upgrades), fed
    /// to the machine once the current drain is over.
    ended: Vec<(ConnId, TransportEnd)>,
    /// Storage requests to answer as failed (no store in this host yet).
    unstored: Vec<parlor_core::host::StoreId>,
    overflows: u64,
    mount: String,
}

impl Driver {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Command>,
        mut control: mpsc::UnboundedReceiver<Control>,
        _done: mpsc::Sender<()>,
    ) {
        let mut control_open = true;
        loop {
            // Expired timers first: a busy inbox must not starve the heartbeat.
            let now = clock::now();
            if self.machine.poll_timeout().is_some_and(|t| t <= now) {
                self.machine.handle_timeout(now);
                self.drain();
            }
            let deadline = self.machine.poll_timeout().map(clock::deadline);
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Control first: metrics and shutdown answer promptly under load.
                biased;
                msg = control.recv(), if control_open => match msg {
                    Some(Control::Metrics(tx)) => {
                        let _ = tx.send(MountMetrics { core: self.machine.metrics(), overflows: self.overflows });
                    }
                    Some(Control::Shutdown) => {
                        tracing::info!(mount = %self.mount, "shutting down the core");
                        self.handle(Input::Shutdown);
                    }
                    None => control_open = false,
                },
                cmd = inbox.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    // Every handle is gone: nobody can reach this mount any more.
                    None => break,
                },
                () = sleep => {}
            }
        }
        tracing::debug!(mount = %self.mount, "driver stopped");
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Request { req, reply } => {
                self.routes.insert(req.conn, Route::Pending(reply));
                self.handle(Input::Request(Request {
                    conn: req.conn,
                    method: req.method,
                    query: &req.query,
                    body: &req.body,
                    too_large: req.too_large,
                    websocket: req.websocket,
                    remote: req.remote,
                }));
            }
            Command::Frame { conn, frame } => {
                let frame = match &frame {
                    OwnedFrame::Text(s) => Frame::Text(s),
                    OwnedFrame::Binary(b) => Frame::Binary(b),
                };
                self.handle(Input::Frame { conn, frame });
            }
            Command::Ended { conn, how } => {
                self.routes.remove(&conn);
                self.handle(Input::Ended { conn, how });
            }
        }
    }

    /// One input, then the drain rule.
    fn handle(&mut self, input: Input<'_>) {
        self.machine.handle(input, clock::now());
        self.drain();
    }

    /// Drains every output, then feeds back transports that died while routing (and
    /// drains after each of those too), until the machine is quiet.
    fn drain(&mut self) {
        loop {
            while let Some(output) = self.machine.poll_output() {
                self.route(output);
            }
            for id in std::mem::take(&mut self.unstored) {
                let answer = parlor_core::host::StoreAnswer::Failed("no store configured".into());
                self.machine.handle(Input::Stored { id, answer }, clock::now());
                while let Some(output) = self.machine.poll_output() {
                    self.route(output);
                }
            }
            if self.ended.is_empty() && self.unstored.is_empty() {
                return;
            }
            for (conn, how) in std::mem::take(&mut self.ended) {
                self.machine.handle(Input::Ended { conn, how }, clock::now());
                while let Some(output) = self.machine.poll_output() {
                    self.route(output);
                }
            }
        }
    }

    fn route(&mut self, output: Output) {
        match output {
            Output::Respond { conn, status, content_type, body } => match self.routes.remove(&conn) {
                Some(Route::Pending(reply)) => {
                    // A closed receiver means the client left; its drop guard reports that.
                    let _ = reply.send(Reply::Respond { status, content_type, body });
                }
                Some(ws @ Route::Ws(_)) => {
                    tracing::warn!(?conn, "core answered an accepted WebSocket over HTTP; ignored");
                    self.routes.insert(conn, ws);
                }
                None => tracing::trace!(?conn, "response for a request that is gone"),
            },
            Output::Accept { conn } => match self.routes.remove(&conn) {
                Some(Route::Pending(reply)) => {
                    let queue = Arc::new(Outbound::new(self.outbound_limit));
                    match reply.send(Reply::Accept(queue.clone())) {
                        Ok(()) => {
                            self.routes.insert(conn, Route::Ws(queue));
                        }
                        // The upgrade request was abandoned before we could accept it.
                        Err(_) => self.ended.push((conn, TransportEnd::Closed)),
                    }
                }
                Some(ws @ Route::Ws(_)) => {
                    self.routes.insert(conn, ws);
                }
                None => tracing::trace!(?conn, "accept for a request that is gone"),
            },
            Output::Send { conn, frame } => {
                let Some(Route::Ws(queue)) = self.routes.get(&conn) else {
                    tracing::trace!(?conn, "frame for a connection that is gone");
                    return;
                };
                match queue.push(frame) {
                    Ok(()) => {}
                    Err(PushError::Overflow) => {
                        tracing::info!(?conn, mount = %self.mount, "outbound queue full; closing the connection");
                        self.overflows += 1;
                        self.routes.remove(&conn);
                        self.ended.push((conn, TransportEnd::Backpressure));
                    }
                    Err(PushError::Closed) => {
                        tracing::trace!(?conn, "frame for a closing connection");
                    }
                }
            }
            Output::Close { conn, code, reason } => match self.routes.remove(&conn) {
                Some(Route::Ws(queue)) => {
                    let _ = queue.push_close(code, reason);
                }
                // Closing a request that was never accepted: answering nothing would leave
                // the client hanging, so refuse the upgrade.
                Some(Route::Pending(reply)) => {
                    let _ = reply.send(Reply::Respond {
                        status: 400,
                        content_type: parlor_core::host::TEXT_PLAIN,
                        body: Bytes::from_static(b"closed"),
                    });
                }
                None => {}
            },
            // Until the embedded store is wired in, every request fails cleanly: the core
            // answers its clients with an error instead of waiting forever.
            Output::Store { id, .. } => {
                self.unstored.push(id);
            }
        }
    }
}
