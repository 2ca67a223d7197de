//! Routing: every output that names a connection goes to where that connection waits, an
//! HTTP request's oneshot or an accepted WebSocket's [`Outbound`] queue.

use super::{Driver, FirstOutput};
use crate::queues::outbound::{Outbound, PushError};
use crate::queues::sync::Arc;
use bytes::Bytes;
use parlor_core::host::{Output, TransportEnd};
use tokio::sync::oneshot;

/// Where an output for a connection goes.
#[derive(Debug)]
pub(super) enum Destination {
    /// An HTTP request waiting for its answer.
    Pending(oneshot::Sender<FirstOutput>),
    /// An accepted WebSocket.
    Ws(Arc<Outbound>),
}

impl Driver {
    /// Sends one output where it goes; a transport found dead on the way is fed back
    /// after the drain (see `Driver::drain`).
    pub(super) fn route(&mut self, output: Output) {
        match output {
            Output::Respond { conn, status, content_type, body } => match self.routes.remove(&conn) {
                Some(Destination::Pending(reply)) => {
                    // A closed receiver means the client left; its drop guard reports that.
                    let _ = reply.send(FirstOutput::Respond { status, content_type, body });
                }
                Some(ws @ Destination::Ws(_)) => {
                    tracing::warn!(?conn, "core answered an accepted WebSocket over HTTP; ignored");
                    self.routes.insert(conn, ws);
                }
                None => tracing::trace!(?conn, "response for a request that is gone"),
            },
            Output::Accept { conn } => match self.routes.remove(&conn) {
                Some(Destination::Pending(reply)) => {
                    let queue = Arc::new(Outbound::new(self.outbound_limit));
                    match reply.send(FirstOutput::Accept(queue.clone())) {
                        Ok(()) => {
                            self.routes.insert(conn, Destination::Ws(queue));
                        }
                        // The upgrade request was abandoned before we could accept it.
                        Err(_) => self.ended.push((conn, TransportEnd::Closed)),
                    }
                }
                Some(ws @ Destination::Ws(_)) => {
                    self.routes.insert(conn, ws);
                }
                None => tracing::trace!(?conn, "accept for a request that is gone"),
            },
            Output::Send { conn, frame } => {
                let Some(Destination::Ws(queue)) = self.routes.get(&conn) else {
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
                Some(Destination::Ws(queue)) => {
                    let _ = queue.push_close(code, reason);
                }
                // Closing a request that was never accepted: answering nothing would leave
                // the client hanging, so refuse the upgrade.
                Some(Destination::Pending(reply)) => {
                    let _ = reply.send(FirstOutput::Respond {
                        status: 400,
                        content_type: parlor_core::host::TEXT_PLAIN,
                        body: Bytes::from_static(b"closed"),
                    });
                }
                None => {}
            },
            Output::Store { id, request } => self.store(id, request),
            Output::Cluster(op) => self.cluster(op),
        }
    }
}
