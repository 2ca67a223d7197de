//! HTTP routing: `/healthz`, `/metrics`, `POST /admin/reload` (when a mount runs a
//! component), each mount's Engine.IO path ([`engineio`]: long-polling,
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
//! With `--static DIR`, every other path goes to [`crate::http::static_files`], except the
//! routes above and everything under them (`/api/`, `/admin/`, an Engine.IO path), so a
//! file in DIR can never shadow a route.
//!
//! The API is in [`api`]; reading request bodies within their budgets in [`bodies`].

mod api;
pub(crate) mod bodies;
pub mod cors;
mod engineio;
pub(crate) mod static_files;

use self::bodies::BodyBudget;
use self::cors::Cors;
use crate::driver::{DriverHandle, FirstOutput};
use crate::metrics::{self, MountMetrics, Snapshot};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE,
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
pub(crate) struct MountPoint {
    /// Normalized to end with `/`.
    pub path: String,
    pub driver: DriverHandle,
    /// This mount's machine answers `/api/...`.
    pub api: bool,
}

/// What every request handler shares.
pub(crate) struct Router {
    pub mounts: Vec<MountPoint>,
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
    pub static_files: Option<crate::http::static_files::StaticFiles>,
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
        if let Some(mount) = self.mount_for(path) {
            return self.engine_io(mount, req, ctx).await;
        }
        if let Some(rest) = path.strip_prefix(API_PREFIX) {
            if let Some(mount) = self.mounts.iter().find(|m| m.api) {
                let rest = rest.to_owned();
                return self.api(mount, rest, req).await;
            }
        }
        match (req.method(), path) {
            (&HttpMethod::GET | &HttpMethod::HEAD, "/healthz") => self.health().await,
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
    fn mount_for(&self, path: &str) -> Option<&MountPoint> {
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

    /// `/healthz`: 200 while serving. In cluster mode a node whose Redis link is down still
    /// serves its own clients, so it stays 200 and says `degraded` (load balancers keep it;
    /// dashboards see it).
    async fn health(&self) -> Response<Body> {
        for m in &self.mounts {
            if let Some(MountMetrics { link: Some(link), .. }) = m.driver.metrics().await {
                if !link.up {
                    return text(StatusCode::OK, "degraded: the cluster link to Redis is down");
                }
            }
        }
        text(StatusCode::OK, "ok")
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

}

impl Router {
    /// The answer to a CORS preflight, which the Engine.IO paths and the API give alike;
    /// `None` for any other request.
    fn preflight<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        if req.method() != HttpMethod::OPTIONS {
            return None;
        }
        let mut resp = empty(StatusCode::NO_CONTENT);
        resp.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, POST, OPTIONS"));
        self.cors.apply_preflight(req.headers(), resp.headers_mut());
        Some(resp)
    }
}

/// An HTTP method as the core sees it.
fn core_method(method: &HttpMethod) -> Method {
    match *method {
        HttpMethod::GET => Method::Get,
        HttpMethod::POST => Method::Post,
        _ => Method::Other,
    }
}

/// Waits for the core's first answer to `conn`'s request. Until it comes, a client that
/// goes away (hyper drops this future) is reported as `Ended{Closed}`. An error: the
/// driver dropped the request (it is stopping).
async fn first_output(
    driver: &DriverHandle,
    conn: ConnId,
    reply: tokio::sync::oneshot::Receiver<FirstOutput>,
) -> Result<FirstOutput, tokio::sync::oneshot::error::RecvError> {
    let guard = EndGuard { conn, driver, armed: true };
    let reply = reply.await;
    guard.disarm();
    reply
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
