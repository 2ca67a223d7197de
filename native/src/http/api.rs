//! The HTTP API, `/api/<rest>`: the API mount's machine answers it as `Input::Api`.

use super::{core_method, first_output, json, next_conn, text, Body, MountPoint, Router};
use crate::driver::{OwnedApi, FirstOutput};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Request, Response, StatusCode};
use parlor_core::host::TransportEnd;

impl Router {
    /// `/api/<rest>`: preflights here, everything else to the machine.
    pub(super) async fn api(&self, mount: &MountPoint, rest: String, mut req: Request<Incoming>) -> Response<Body> {
        if let Some(preflight) = self.preflight(&req) {
            return preflight;
        }
        let method = core_method(req.method());
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
        let Ok(reply) = mount.driver.api(request).await else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        };
        match first_output(&mount.driver, conn, reply).await {
            Ok(FirstOutput::Respond { status, content_type, body }) => {
                self.respond(req.headers(), status, content_type, body)
            }
            Ok(FirstOutput::Accept(queue)) => {
                // The core does not upgrade API requests; refuse rather than hang.
                queue.abort();
                mount.driver.ended(conn, TransportEnd::Error).await;
                text(StatusCode::INTERNAL_SERVER_ERROR, "unexpected upgrade")
            }
            Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        }
    }
}
