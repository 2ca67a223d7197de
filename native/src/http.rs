//! HTTP routing: `/healthz`, `/metrics`, `POST /admin/reload` (when a mount runs a
//! component), each mount's Engine.IO path (long-polling,
//! CORS preflights, WebSocket upgrades), and the HTTP API `/api/...` of the mount that
//! serves it; everything else is 404.
//!
//! Every request on an Engine.IO path gets its own `ConnId` and goes to its mount's driver
//! whole (body read up to `max_payload + 1` bytes). The request then waits for its first
//! output: a `Respond` becomes the HTTP response (a long-poll GET may wait for it until the
//! next heartbeat); an `Accept` completes the WebSocket upgrade and hands the connection to
//! [`crate::ws`]. If the client goes away first, hyper drops the request future and an
//! [`EndGuard`] reports `Ended{Closed}`, so the core does not keep a poll open for nobody.
//!
//! `/api/<rest>` goes to the API mount's machine as `Input::Api` (method, `<rest>`, the
//! `Authorization` header, the body up to `max_payload`; over it is a 413 here) and its
//! `Respond` is the answer, with the same CORS policy as the Engine.IO paths. Without an
//! API mount it is 404.
//!
//! With `--static DIR`, every other path goes to [`crate::static_files`], except the
//! routes above and everything under them (`/api/`, `/admin/`, an Engine.IO path), so a
//! file in DIR can never shadow a route.

use crate::bodies::{BodyBudget, BodyShare};
use crate::cors::Cors;
use crate::driver::{DriverHandle, OwnedApi, OwnedRequest, Reply};
use crate::metrics::{self, Snapshot};
use crate::ws;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE,
    WWW_AUTHENTICATE,
};
use hyper::{Method as HttpMethod, Request, Response, StatusCode};
use parlor_core::host::{ConnId, Method, TransportEnd};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) type Body = Full<Bytes>;

/// Connection ids are unique across the process (and never reused), so a late output or
/// a duplicate `Ended` for an old id can never hit a new connection.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

fn next_conn() -> ConnId {
    ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed))
}

/// Where the HTTP API is served.
const API_PREFIX: &str = "/api/";

/// One mount: an Engine.IO path and the driver of the machine behind it.
pub(crate) struct Route {
    /// Normalized to end with `/`.
    pub path: String,
    pub driver: DriverHandle,
    /// This mount's machine answers `/api/...`.
    pub api: bool,
}

/// What every request handler shares.
pub(crate) struct Router {
    pub mounts: Vec<Route>,
    pub cors: Cors,
    pub max_payload: usize,
    /// The connection cap, to report open TCP connections.
    pub limit: Arc<Semaphore>,
    pub max_connections: usize,
    /// Live swap of the component mounts (`POST /admin/reload`); `None` without any.
    pub reload: Option<Arc<crate::component::reload::Reloader>>,
    /// Bytes of request bodies being read, node-wide.
    pub bodies: Arc<BodyBudget>,
    /// A request body must arrive within this time.
    pub body_timeout: Duration,
    /// Bytes per second a body must keep up after its grace period (0: any rate).
    pub body_min_rate: u64,
    /// Bytes of one WebSocket's frames waiting for the driver.
    pub inbound_budget: usize,
    /// The bearer token `/metrics` asks for; `None`: open.
    pub metrics_token: Option<String>,
    /// The folder served at `/` (`--static`); `None`: off.
    pub static_files: Option<crate::static_files::StaticFiles>,
}

/// Per-TCP-connection context: who is calling, and the connection's slot under the cap
/// (a WebSocket spawned from this connection keeps holding it).
#[derive(Clone)]
pub(crate) struct ConnCtx {
    pub remote: SocketAddr,
    pub permit: Arc<OwnedSemaphorePermit>,
    /// Held by spawned WebSocket tasks so shutdown waits for them.
    pub done: tokio::sync::mpsc::Sender<()>,
}

impl Router {
    pub(crate) async fn handle(&self, req: Request<Incoming>, ctx: &ConnCtx) -> Response<Body> {
        let path = req.uri().path();
        if let Some(route) = self.mount_for(path) {
            return self.engine_io(route, req, ctx).await;
        }
        if let Some(rest) = path.strip_prefix(API_PREFIX) {
            if let Some(route) = self.mounts.iter().find(|m| m.api) {
                let rest = rest.to_owned();
                return self.api(route, rest, req).await;
            }
        }
        match (req.method(), path) {
            (&HttpMethod::GET | &HttpMethod::HEAD, "/healthz") => text(StatusCode::OK, "ok"),
            (&HttpMethod::GET, "/metrics") => self.metrics(&req).await,
            (&HttpMethod::POST, "/admin/reload") if self.reload.is_some() => self.reload(&req).await,
            _ => match &self.static_files {
                Some(files) if !self.is_route(path) => files.serve(req.method(), path, req.headers()).await,
                _ => text(StatusCode::NOT_FOUND, "not found"),
            },
        }
    }

    /// Paths the server's own routes own, whatever the method: never a static file.
    fn is_route(&self, path: &str) -> bool {
        const ROUTES: [&str; 2] = ["/healthz", "/metrics"];
        const PREFIXES: [&str; 2] = [API_PREFIX, "/admin/"];
        ROUTES.contains(&path)
            || PREFIXES.iter().any(|p| path.starts_with(p) || path == p.trim_end_matches('/'))
            || self.mounts.iter().any(|m| path.starts_with(&m.path) || path == m.path.trim_end_matches('/'))
    }

    /// The mount serving `path`: its path exactly, or without the trailing slash.
    fn mount_for(&self, path: &str) -> Option<&Route> {
        self.mounts.iter().find(|m| path == m.path || path == m.path.trim_end_matches('/'))
    }

    /// `POST /admin/reload`: swaps in the component files again (an admin token is needed).
    async fn reload(&self, req: &Request<Incoming>) -> Response<Body> {
        let Some(reloader) = &self.reload else { return text(StatusCode::NOT_FOUND, "not found") };
        let authorization = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let (status, body) = reloader.http(authorization).await;
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(parlor_core::host::APPLICATION_JSON));
        resp
    }

    async fn metrics(&self, req: &Request<Incoming>) -> Response<Body> {
        if let Some(expected) = &self.metrics_token {
            let given = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
            let given = given.and_then(parlor_core::host::bearer_token).unwrap_or_default();
            if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
                let mut resp = text(StatusCode::UNAUTHORIZED, "a metrics token is required (Authorization: Bearer)");
                resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return resp;
            }
        }
        let mut snapshot = Snapshot {
            tcp_connections: self.max_connections.saturating_sub(self.limit.available_permits()),
            mounts: Vec::with_capacity(self.mounts.len()),
        };
        for m in &self.mounts {
            if let Some(numbers) = m.driver.metrics().await {
                snapshot.mounts.push(numbers);
            }
        }
        let mut resp = Response::new(Full::new(Bytes::from(metrics::render(&snapshot))));
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
        resp
    }

    async fn engine_io(&self, route: &Route, mut req: Request<Incoming>, ctx: &ConnCtx) -> Response<Body> {
        if req.method() == HttpMethod::OPTIONS {
            let mut resp = empty(StatusCode::NO_CONTENT);
            resp.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, POST, OPTIONS"));
            self.cors.apply_preflight(req.headers(), resp.headers_mut());
            return resp;
        }
        let method = match *req.method() {
            HttpMethod::GET => Method::Get,
            HttpMethod::POST => Method::Post,
            _ => Method::Other,
        };
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
        // From here until the core answers, a vanished client must be reported.
        let guard = EndGuard { conn, driver: &route.driver, armed: true };
        let reply = reply.await;
        guard.disarm();
        match reply {
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

impl Router {
    /// The machine's answer as an HTTP response, with CORS headers for `req_headers`' origin.
    /// Never cached: long-poll and API answers are not reusable.
    fn respond(&self, req_headers: &HeaderMap, status: u16, content_type: &'static str, body: Bytes) -> Response<Body> {
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        self.cors.apply(req_headers, headers);
        resp
    }

    /// `/api/<rest>`: preflights here, everything else to the machine.
    async fn api(&self, route: &Route, rest: String, mut req: Request<Incoming>) -> Response<Body> {
        if req.method() == HttpMethod::OPTIONS {
            let mut resp = empty(StatusCode::NO_CONTENT);
            resp.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, POST, OPTIONS"));
            self.cors.apply_preflight(req.headers(), resp.headers_mut());
            return resp;
        }
        let method = match *req.method() {
            HttpMethod::GET => Method::Get,
            HttpMethod::POST => Method::Post,
            _ => Method::Other,
        };
        let body = match self.body(&mut req).await {
            Ok((_, true)) => {
                let body = parlor_core::errors::ErrorCode::PayloadTooLarge.body("Payload too large");
                let mut resp = json(StatusCode::PAYLOAD_TOO_LARGE, body.to_string());
                self.cors.apply(req.headers(), resp.headers_mut());
                return resp;
            }
            Ok((body, false)) => body,
            Err(resp) => return resp,
        };
        let conn = next_conn();
        let authorization = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let request = OwnedApi { conn, method, path: rest, authorization, body };
        let Ok(reply) = route.driver.api(request).await else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        };
        let guard = EndGuard { conn, driver: &route.driver, armed: true };
        let reply = reply.await;
        guard.disarm();
        match reply {
            Ok(Reply::Respond { status, content_type, body }) => {
                self.respond(req.headers(), status, content_type, body)
            }
            Ok(Reply::Accept(queue)) => {
                // The core does not upgrade API requests; refuse rather than hang.
                queue.abort();
                route.driver.ended(conn, TransportEnd::Error).await;
                text(StatusCode::INTERNAL_SERVER_ERROR, "unexpected upgrade")
            }
            Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        }
    }
}

/// Reports `Ended{Closed}` for a request dropped before its answer (the client left).
struct EndGuard<'a> {
    conn: ConnId,
    driver: &'a DriverHandle,
    armed: bool,
}

impl EndGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(conn = ?self.conn, "request abandoned by the client");
            self.driver.ended_now(self.conn, TransportEnd::Closed);
        }
    }
}

/// The headers `fastwebsockets::upgrade::upgrade` needs, checked before the core is asked,
/// so an accepted upgrade cannot fail afterwards.
fn has_websocket_handshake<B>(req: &Request<B>) -> bool {
    req.headers().contains_key("sec-websocket-key")
        && req.headers().get("sec-websocket-version").is_some_and(|v| v.as_bytes() == b"13")
}

impl Router {
    /// Reads a request body within the body timeout and the node's body budget: the
    /// body and whether it was over `max_payload`, or the answer when it could not be read
    /// (408 past the deadline, 503 past the budget, 400 for a broken body; each closes the
    /// connection, since the rest of the body is never read).
    async fn body(&self, req: &mut Request<Incoming>) -> Result<(Bytes, bool), Response<Body>> {
        let mut share = self.bodies.share();
        let limits = BodyLimits { max: self.max_payload, min_rate: self.body_min_rate };
        let read = tokio::time::timeout(self.body_timeout, read_body(req, limits, &mut share)).await;
        let (status, reason) = match read {
            Ok(Ok(BodyRead::Whole(body, too_large))) => return Ok((body, too_large)),
            Ok(Ok(BodyRead::OverBudget)) => (StatusCode::SERVICE_UNAVAILABLE, "too many request bodies in progress"),
            Ok(Ok(BodyRead::TooSlow)) | Err(_) => (StatusCode::REQUEST_TIMEOUT, "request body too slow"),
            Ok(Err(e)) => {
                // Usually the client broke off mid-body and nobody reads the answer.
                tracing::debug!(error = %e, "reading a request body failed");
                (StatusCode::BAD_REQUEST, "bad body")
            }
        };
        let mut resp = text(status, reason);
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        Err(resp)
    }
}

/// What one request body may be.
#[derive(Clone, Copy, Debug)]
struct BodyLimits {
    /// Bytes kept at most; past it the body is refused (413).
    max: usize,
    /// Bytes per second after [`crate::bodies::BODY_GRACE`] (0: any rate).
    min_rate: u64,
}

/// How reading a body ended.
#[derive(Debug)]
enum BodyRead {
    /// All of it, and whether it was over the limit (then it is empty).
    Whole(Bytes, bool),
    /// The node's body budget is spent.
    OverBudget,
    /// It fell behind the minimum rate.
    TooSlow,
}

/// Reads a POST body, stopping once it is over `limits.max` bytes: then the body is empty
/// and `too_large` is set (the core answers 413). The rest is read and dropped, up to
/// [`DRAIN_LIMIT`] bytes in all, so that the client, still sending, gets the 413 instead of
/// a reset (a close with unread data is a reset). Every kept chunk is counted in `share`
/// first. Each chunk must come before the body falls behind `limits.min_rate`.
async fn read_body(
    req: &mut Request<Incoming>,
    limits: BodyLimits,
    share: &mut BodyShare,
) -> Result<BodyRead, hyper::Error> {
    let max = limits.max;
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        drain(req, 0).await;
        return Ok(BodyRead::Whole(Bytes::new(), true));
    }
    let start = tokio::time::Instant::now();
    // Most bodies arrive as one chunk: keep it as is, and copy only when there are more.
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut total = 0usize;
    loop {
        let next = req.body_mut().frame();
        let frame = match crate::bodies::rate_deadline(start, total, limits.min_rate) {
            Some(at) => match tokio::time::timeout_at(at, next).await {
                Ok(frame) => frame,
                Err(_) => return Ok(BodyRead::TooSlow),
            },
            None => next.await,
        };
        let Some(frame) = frame else { break };
        let Ok(data) = frame?.into_data() else { continue };
        total = total.saturating_add(data.len());
        if total > max {
            drain(req, total).await;
            return Ok(BodyRead::Whole(Bytes::new(), true));
        }
        if !share.grow(data.len()) {
            return Ok(BodyRead::OverBudget);
        }
        match &first {
            None => first = Some(data),
            Some(head) => {
                if rest.is_empty() {
                    rest.extend_from_slice(head);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    if rest.is_empty() {
        Ok(BodyRead::Whole(first.unwrap_or_default(), false))
    } else {
        Ok(BodyRead::Whole(rest.freeze(), false))
    }
}

/// Bytes of a refused body read and dropped at most before its 413.
pub(crate) const DRAIN_LIMIT: usize = 8 << 20;

/// Reads and drops the rest of a body (`seen` bytes of it already read), up to
/// [`DRAIN_LIMIT`]; past it, or on an error, the connection is left to close.
async fn drain(req: &mut Request<Incoming>, mut seen: usize) {
    while seen <= DRAIN_LIMIT {
        match req.body_mut().frame().await {
            Some(Ok(frame)) => seen = seen.saturating_add(frame.data_ref().map_or(0, Bytes::len)),
            _ => return,
        }
    }
}

/// Compares two secrets in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(parlor_core::host::APPLICATION_JSON));
    resp
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}
