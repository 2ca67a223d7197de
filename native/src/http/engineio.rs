//! Engine.IO over HTTP: a mount's long-polling requests, CORS preflights and WebSocket
//! upgrades, each handed to its driver as a request that waits for its first output.

use super::{core_method, first_output, next_conn, text, Body, ConnCtx, MountPoint, Router};
use crate::driver::{OwnedRequest, FirstOutput};
use crate::ws;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode};
use parlor_core::host::{Method, TransportEnd};

impl Router {
    /// A request on `route`'s Engine.IO path.
    pub(super) async fn engine_io(&self, mount: &MountPoint, mut req: Request<Incoming>, ctx: &ConnCtx) -> Response<Body> {
        if let Some(preflight) = self.preflight(&req) {
            return preflight;
        }
        let method = core_method(req.method());
        let websocket = method == Method::Get && is_upgrade_request(&req);
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
        let Ok(reply) = mount.driver.request(request).await else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        };
        match first_output(&mount.driver, conn, reply).await {
            Ok(FirstOutput::Respond { status, content_type, body }) => {
                self.respond(req.headers(), status, content_type, body)
            }
            Ok(FirstOutput::Accept(queue)) => match upgrade(&mut req) {
                Some((resp, upgrade)) => {
                    let driver = mount.driver.clone();
                    let (max_payload, permit, done) = (self.max_payload, ctx.permit.clone(), ctx.done.clone());
                    let budget = self.inbound_budget;
                    tokio::spawn(async move {
                        ws::serve(upgrade, conn, driver, queue, max_payload, budget).await;
                        drop((permit, done));
                    });
                    resp
                }
                // Checked by `has_websocket_handshake` already; kept as a safe answer.
                None => {
                    queue.abort();
                    mount.driver.ended(conn, TransportEnd::Error).await;
                    text(StatusCode::BAD_REQUEST, "bad websocket handshake")
                }
            },
            // The driver dropped the request: it is stopping.
            Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        }
    }
}

/// A WebSocket upgrade request (RFC 6455 §4.2.1): `Connection` names `Upgrade` and
/// `Upgrade` names `websocket`, among comma-separated tokens, in any case.
fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    has_token(req.headers(), CONNECTION, "upgrade") && has_token(req.headers(), UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.as_bytes().split(|&c| c == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The headers [`upgrade`] needs, checked before the core is asked, so an accepted upgrade
/// cannot fail afterwards.
fn has_websocket_handshake<B>(req: &Request<B>) -> bool {
    req.headers().contains_key("sec-websocket-key")
        && req.headers().get("sec-websocket-version").is_some_and(|v| v.as_bytes() == b"13")
}

/// Completes the handshake: the 101 response, with the accept key for the request's key,
/// and the upgraded connection to come once hyper has sent it. `None` without the
/// handshake's headers.
fn upgrade<B>(req: &mut Request<B>) -> Option<(Response<Body>, OnUpgrade)> {
    if !has_websocket_handshake(req) {
        return None;
    }
    let key = req.headers().get("sec-websocket-key")?;
    let accept = parlor_rfc6455::handshake::accept_key(key.as_bytes());
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    // Base64 is always a valid header value.
    headers.insert("sec-websocket-accept", HeaderValue::from_str(&accept).ok()?);
    Some((resp, hyper::upgrade::on(req)))
}
