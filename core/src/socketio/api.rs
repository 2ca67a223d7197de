//! The Rust API applications are written against: what a [`Handler`] is told, and the
//! values it passes back to [`Io`](super::Io) to emit, ack, join and leave.

use crate::cluster::{NodeId, QueryId};
use crate::host::ApiRequest;
use crate::store::{StoreAnswer, StoreId};
use crate::time::Instant;
use bytes::Bytes;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// A socket id: per namespace connection, random, 20 url-safe characters. Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct SocketId(Arc<str>);

impl SocketId {
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SocketId {
    fn from(s: &str) -> Self {
        SocketId(Arc::from(s))
    }
}

impl From<String> for SocketId {
    fn from(s: String) -> Self {
        SocketId(Arc::from(s))
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SocketId({})", self.0)
    }
}

/// An event a client emitted.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event name (a client may also use a number; it arrives here as its decimal text).
    pub name: String,
    /// The arguments after the name. Buffers appear as `{"_placeholder":true,"num":i}`
    /// objects that index into `binary`.
    pub args: Vec<Value>,
    pub binary: Vec<Bytes>,
    /// The client waits for an answer: pass this id to [`Io::ack`](super::Io::ack).
    pub ack: Option<u64>,
}

/// An event to emit: a name, arguments and buffers, placeholders as in [`Event`].
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub event: String,
    pub args: Vec<Value>,
    pub binary: Vec<Bytes>,
}

impl Message {
    #[must_use]
    pub fn new(event: impl Into<String>, args: Vec<Value>) -> Self {
        Message { event: event.into(), args, binary: Vec::new() }
    }

    #[must_use]
    pub fn with_binary(mut self, binary: Vec<Bytes>) -> Self {
        self.binary = binary;
        self
    }
}

/// Who a broadcast reaches: the sockets of one namespace that are in any of `rooms` (or
/// all of them if `rooms` is empty), minus those in any of `except_rooms`, minus
/// `except_socket`. Each socket gets it once however many of its rooms match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub nsp: String,
    pub rooms: Vec<String>,
    pub except_rooms: Vec<String>,
    pub except_socket: Option<SocketId>,
    /// This node's sockets only, in cluster mode (Socket.IO's `local` flag).
    pub local: bool,
}

impl Target {
    /// Every socket of a namespace.
    #[must_use]
    pub fn all(nsp: &str) -> Self {
        Target { nsp: nsp.to_owned(), ..Target::default() }
    }

    /// Adds a room (`to`/`in`); several rooms make a union.
    #[must_use]
    pub fn to(mut self, room: impl Into<String>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Leaves out the sockets of a room.
    #[must_use]
    pub fn except(mut self, room: impl Into<String>) -> Self {
        self.except_rooms.push(room.into());
        self
    }

    /// This node's sockets only: nothing is published to the other nodes (`io.local`).
    #[must_use]
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// Leaves out one socket (`socket.broadcast`).
    #[must_use]
    pub fn except_socket(mut self, socket: &SocketId) -> Self {
        self.except_socket = Some(socket.clone());
        self
    }
}

/// The answer to an ack the server asked a client for.
#[derive(Clone, Debug, PartialEq)]
pub enum AckReply {
    Answered {
        args: Vec<Value>,
        binary: Vec<Bytes>,
    },
    TimedOut,
    /// The socket disconnected before answering.
    Disconnected,
}

/// A middleware refusal: becomes CONNECT_ERROR `{message, data}`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectRefusal {
    pub message: String,
    pub data: Option<Value>,
}

impl ConnectRefusal {
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        ConnectRefusal { message: message.into(), data: None }
    }
}

/// Why a socket left its namespace, with Socket.IO's names.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DisconnectReason {
    ServerNamespaceDisconnect,
    ClientNamespaceDisconnect,
    TransportClose,
    TransportError,
    PingTimeout,
    ParseError,
    ForcedClose,
    ServerShuttingDown,
}

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 8] = [
        DisconnectReason::ServerNamespaceDisconnect,
        DisconnectReason::ClientNamespaceDisconnect,
        DisconnectReason::TransportClose,
        DisconnectReason::TransportError,
        DisconnectReason::PingTimeout,
        DisconnectReason::ParseError,
        DisconnectReason::ForcedClose,
        DisconnectReason::ServerShuttingDown,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ServerShuttingDown => "server shutting down",
        }
    }

    /// Connection state recovery applies after these, not after a deliberate disconnect.
    #[must_use]
    pub fn is_recoverable(self) -> bool {
        matches!(
            self,
            DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
                | DisconnectReason::ServerShuttingDown
        )
    }
}

/// An application on top of the Socket.IO layer. Every callback gets the layer as `io`
/// to act through, and the step's `now`.
pub trait Handler {
    /// What [`Handler::authorize`] found out about a connecting client (its user, say),
    /// handed to [`Handler::may_recover`] and [`Handler::on_connect`] of the same CONNECT.
    type Auth: Default;

    /// Whether a namespace exists; a CONNECT to any other is refused "Invalid namespace".
    fn has_namespace(&self, nsp: &str) -> bool;

    /// Middleware: runs before a socket exists; `Err` refuses the CONNECT.
    fn authorize(
        &mut self,
        _io: &mut super::Io<'_>,
        _nsp: &str,
        _auth: &Value,
        _now: Instant,
    ) -> Result<Self::Auth, ConnectRefusal> {
        Ok(Self::Auth::default())
    }

    /// Whether a CONNECT that `authorize` accepted (with `granted`) may resume the earlier
    /// socket `socket` (its id, rooms and missed packets): a pid alone is not a credential,
    /// so a handler with users checks that the socket was this user's. `false` connects it
    /// afresh.
    fn may_recover(&mut self, _io: &super::Sockets, _socket: &SocketId, _granted: &Self::Auth) -> bool {
        true
    }

    /// A socket connected (its CONNECT was answered); `granted` is what `authorize`
    /// returned for it. `recovered` is true when it resumed an earlier session: same id,
    /// same rooms, missed packets already replayed.
    fn on_connect(
        &mut self,
        _io: &mut super::Io<'_>,
        _socket: &SocketId,
        _auth: &Value,
        _granted: Self::Auth,
        _recovered: bool,
        _now: Instant,
    ) {
    }

    fn on_event(&mut self, _io: &mut super::Io<'_>, _socket: &SocketId, _event: Event, _now: Instant) {}

    /// The answer to [`Io::emit_with_ack`](super::Io::emit_with_ack), by the tag it returned.
    fn on_ack(&mut self, _io: &mut super::Io<'_>, _socket: &SocketId, _tag: u64, _reply: AckReply, _now: Instant) {}

    /// The socket is gone from its namespace and rooms (the id is still readable for
    /// cleanup through the arguments, no longer through `io`).
    fn on_disconnect(
        &mut self,
        _io: &mut super::Io<'_>,
        _socket: &SocketId,
        _nsp: &str,
        _reason: DisconnectReason,
        _now: Instant,
    ) {
    }

    /// The store answered a request made with [`Io::store`](super::Io::store).
    fn on_store(&mut self, _io: &mut super::Io<'_>, _id: StoreId, _answer: StoreAnswer, _now: Instant) {}

    /// A request on the HTTP API; answer it (now or later) with
    /// [`Io::respond`](super::Io::respond). By default there is no API: 404.
    fn on_api(&mut self, io: &mut super::Io<'_>, req: &ApiRequest<'_>, _now: Instant) {
        io.respond(req.conn, 404, &crate::errors::ErrorCode::NotFound.body("not found"));
    }

    /// The name a snapshot of this application carries (a snapshot restores only into
    /// the same kind).
    fn kind(&self) -> &'static str {
        "app"
    }

    /// The application's state for a snapshot (see [`crate::snapshot`]); `None` if this
    /// application cannot be snapshotted (the default).
    fn snapshot(&self) -> Option<Vec<u8>> {
        None
    }

    /// The application from its [`Handler::snapshot`] bytes.
    fn restore(_bytes: &[u8]) -> Result<Self, crate::snapshot::SnapshotError>
    where
        Self: Sized,
    {
        Err(crate::snapshot::SnapshotError::Unsupported)
    }

    /// In cluster mode: bytes another node's application sent this node's with
    /// [`Io::cluster_to_room`](super::Io::cluster_to_room) or
    /// [`Io::cluster_to_node`](super::Io::cluster_to_node). They come from the network:
    /// check them like a client's input.
    fn on_cluster_message(&mut self, _io: &mut super::Io<'_>, _from: &NodeId, _payload: &[u8], _now: Instant) {}

    /// In cluster mode: a node is gone (its heartbeat expired, it said it stops, or it
    /// came back as a new incarnation); what the application keeps of it is stale.
    fn on_node_gone(&mut self, _io: &mut super::Io<'_>, _node: &NodeId, _now: Instant) {}

    /// In cluster mode: another node asked every node a question
    /// ([`Io::ask_cluster`](super::Io::ask_cluster)); the bytes returned are this node's
    /// answer (every live node answers, if only with nothing, so that the asker knows when
    /// it has heard from all).
    fn on_cluster_question(
        &mut self,
        _io: &mut super::Io<'_>,
        _from: &NodeId,
        _question: &[u8],
        _now: Instant,
    ) -> Bytes {
        Bytes::new()
    }

    /// In cluster mode: a node's answer to this node's question `query` (it may come after
    /// the question is done).
    fn on_cluster_answer(
        &mut self,
        _io: &mut super::Io<'_>,
        _query: QueryId,
        _from: &NodeId,
        _answer: &[u8],
        _now: Instant,
    ) {
    }

    /// In cluster mode: question `query` is done: every node alive when it was asked has
    /// answered or gone, or the query timeout passed; `missing` are the nodes that did not
    /// answer.
    fn on_cluster_query_done(&mut self, _io: &mut super::Io<'_>, _query: QueryId, _missing: &[NodeId], _now: Instant) {}

    /// In cluster mode: the link is up (at start, and after every outage). What the other
    /// nodes learnt from this one while it was away may be stale, and they may have
    /// forgotten it.
    fn on_cluster_up(&mut self, _io: &mut super::Io<'_>, _now: Instant) {}

    /// The application's own timers.
    fn handle_timeout(&mut self, _io: &mut super::Io<'_>, _now: Instant) {}

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Checks the application's own maps and queues against their bounds (simulations
    /// and fuzz targets call it after every step); the first violation, described.
    #[cfg(any(test, fuzzing))]
    fn check_bounds(&self, _io: &super::Sockets) -> Result<(), String> {
        Ok(())
    }
}

impl std::borrow::Borrow<str> for SocketId {
    fn borrow(&self) -> &str {
        &self.0
    }
}
