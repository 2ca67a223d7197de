//! Engine.IO over HTTP: a mount's long-polling requests, CORS preflights and WebSocket
//! upgrades, each handed to its driver as a request that waits for its first output.

use super::{core_method, first_reply, next_conn, text, Body, ConnCtx, Route, Router};
use crate::driver::{OwnedRequest, Reply};
use crate::ws;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use parlor_core::host::{Method, TransportEnd};

impl Router {
    /// A request on `route`'s Engine.IO path.
    pub(super) async fn engine_io(&self, route: &Route, mut req: Request<Incoming>, ctx: &ConnCtx) -> Response<Body> {
        if let Some(preflight) = self.preflight(&req) {
            return preflight;
        }
        let method = core_method(req.method());
        let websocket = method == Method::Get && fastwebsockets::upgrade::is_upgrade_request(&req);
        if websocket && !has_websocket_handshake(&req) {
            return text(StatusCode::BAD_REQUEST, "bad websocket handshake");
        }
        // Browsers send any page's WebSocket to any server (no CORS): the origin check is
        // the server's to make, by the same policy as polling's.
        if websocket && !self.cors.allows_websocket(req.headers()) {
            return text(StatusCode::FORBIDDEN, "origin not allowed");
        }
        let (body, too_large) = if method == Method::Post {
            match self.body(&mut req).await {
                Ok(read) => read,
                Err(resp) => return resp,
            }
        } else {
            (Bytes::new(), false)
        };

        let conn = next_conn();
        let request = OwnedRequest {
            conn,
            method,
            query: req.uri().query().unwrap_or("").to_owned(),
            body,
            too_large,
            websocket,
            remote: Some(ctx.remote.ip()),
        };
        let Ok(reply) = route.driver.request(request).await else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        };
        match first_reply(&route.driver, conn, reply).await {
            Ok(Reply::Respond { status, content_type, body }) => {
                self.respond(req.headers(), status, content_type, body)
            }
            Ok(Reply::Accept(queue)) => match fastwebsockets::upgrade::upgrade(&mut req) {
                Ok((resp, upgrade)) => {
                    let driver = route.driver.clone();
                    let (max_payload, permit, done) = (self.max_payload, ctx.permit.clone(), ctx.done.clone());
                    let budget = self.inbound_budget;
                    tokio::spawn(async move {
                        ws::serve(upgrade, conn, driver, queue, max_payload, budget).await;
                        drop((permit, done));
                    });
                    resp.map(|_| Full::new(Bytes::new()))
                }
                // Checked by `has_websocket_handshake` already; kept as a safe answer.
                Err(e) => {
                    queue.abort();
                    route.driver.ended(conn, TransportEnd::Error).await;
                    text(StatusCode::BAD_REQUEST, &e.to_string())
                }
            },
            // The driver dropped the request: it is stopping.
            Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        }
    }
}

/// The headers `fastwebsockets::upgrade::upgrade` needs, checked before the core is asked,
/// so an accepted upgrade cannot fail afterwards.
fn has_websocket_handshake<B>(req: &Request<B>) -> bool {
    req.headers().contains_key("sec-websocket-key")
        && req.headers().get("sec-websocket-version").is_some_and(|v| v.as_bytes() == b"13")
}
