//! Live swap: load the component file again and move the running state into it, without
//! closing a connection.
//!
//! Triggered by SIGHUP, or by `POST /admin/reload` with `Authorization: Bearer <token>`
//! where the token is an admin token (`admin: true`) signed by one of the keys of the
//! [`AdminAuth`] a mount carries (`parlor serve` gives its `--auth-key`s).
//! For each mount that runs a component: the file is loaded (compiled or from its cache)
//! off the driver; then, inside the driver task and between two inputs, the running
//! machine is snapshotted, the snapshot is restored in a fresh instance of the new
//! program, and the new machine takes the old one's place. The driver's connection table
//! and queues are untouched, so clients see nothing. If anything fails (the file does not
//! load, the snapshot is refused or a guest traps) the old instance keeps running and the
//! failure is logged and reported.

use super::{ComponentMachine, ComponentSpec};
use crate::driver::{DriverHandle, SwapResult};
use hyper::StatusCode;
use parlor_core::app::auth::{self, AuthKey};
use parlor_core::service::Machine;
use serde_json::json;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A mount whose machine comes from a component.
pub(crate) struct Target {
    pub mount: String,
    pub driver: DriverHandle,
    pub spec: ComponentSpec,
}

/// Who may use the host's admin routes (`POST /admin/reload`): the keys that may sign an
/// admin token (`admin: true`), and the slack on its `exp`/`nbf`. The application that
/// signs its users' tokens knows these; the host only checks them. No keys: the routes are
/// refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminAuth {
    pub keys: Vec<AuthKey>,
    pub leeway_secs: u64,
}

/// Reloads every component mount; shared by the SIGHUP task and the HTTP route.
pub(crate) struct Reloader {
    targets: Vec<Target>,
    /// Who may ask over HTTP.
    admin: AdminAuth,
    /// One reload at a time.
    busy: tokio::sync::Mutex<()>,
}

/// What happened to one mount.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub mount: String,
    pub result: SwapResult,
}

impl Reloader {
    pub(crate) fn new(targets: Vec<Target>, admin: AdminAuth) -> Reloader {
        Reloader { targets, admin, busy: tokio::sync::Mutex::new(()) }
    }

    /// Swaps every component mount; each result is logged.
    pub(crate) async fn reload(&self) -> Vec<Outcome> {
        let _busy = self.busy.lock().await;
        let mut outcomes = Vec::with_capacity(self.targets.len());
        for target in &self.targets {
            let result = swap(target).await;
            match &result {
                Ok(done) => tracing::info!(mount = %target.mount, "{done}"),
                Err(why) => tracing::error!(
                    mount = %target.mount,
                    path = %target.spec.path.display(),
                    "component reload REFUSED, the running instance keeps going: {why}"
                ),
            }
            outcomes.push(Outcome { mount: target.mount.clone(), result });
        }
        outcomes
    }

    /// `POST /admin/reload`: status and JSON body.
    pub(crate) async fn http(&self, authorization: Option<&str>) -> (StatusCode, String) {
        let denied = |status: StatusCode, why: &str| (status, json!({ "error": why }).to_string());
        if self.admin.keys.is_empty() {
            return denied(StatusCode::FORBIDDEN, "no --auth-key configured: reload with SIGHUP");
        }
        let Some(token) = authorization.and_then(parlor_core::host::bearer_token) else {
            return denied(StatusCode::UNAUTHORIZED, "an admin token is required (Authorization: Bearer)");
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match auth::verify(token, &self.admin.keys, now, self.admin.leeway_secs) {
            Ok(claims) if claims.admin => {
                tracing::info!(sub = %claims.sub, "component reload requested over HTTP");
            }
            Ok(_) => return denied(StatusCode::FORBIDDEN, "the token is not an admin token"),
            Err(e) => return denied(StatusCode::UNAUTHORIZED, &format!("bad token: {e}")),
        }
        let outcomes = self.reload().await;
        let ok = outcomes.iter().all(|o| o.result.is_ok());
        let body = json!({
            "reloaded": ok,
            "mounts": outcomes.iter().map(|o| match &o.result {
                Ok(done) => json!({ "mount": o.mount, "ok": true, "message": done }),
                Err(why) => json!({ "mount": o.mount, "ok": false, "error": why }),
            }).collect::<Vec<_>>(),
        });
        (if ok { StatusCode::OK } else { StatusCode::CONFLICT }, body.to_string())
    }
}

/// Reloads on every SIGHUP until the reloader is gone (the server stopped).
pub(crate) fn on_sighup(reloader: &Arc<Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP: reload over HTTP only");
                return;
            }
        };
        let weak = Arc::downgrade(reloader);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let Some(reloader) = weak.upgrade() else { return };
                tracing::info!("SIGHUP: reloading the component");
                reloader.reload().await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = reloader;
}

async fn swap(target: &Target) -> SwapResult {
    let spec = target.spec.clone();
    let program = tokio::task::spawn_blocking(move || spec.load())
        .await
        .map_err(|e| format!("loading the component failed: {e}"))?
        .map_err(|e| format!("{e:#}"))?;
    let spec = target.spec.clone();
    let swap = Box::new(move |machine: &mut Box<dyn Machine + Send>, now| {
        let started = std::time::Instant::now();
        let snapshot = machine.snapshot().map_err(|e| format!("the running instance cannot be snapshotted: {e}"))?;
        let new = ComponentMachine::restore(program, &spec.kind, spec.config_json.clone(), &snapshot, now)
            .map_err(|e| format!("the new component cannot take over: {e:#}"))?;
        *machine = Box::new(new);
        Ok(format!(
            "component reloaded from {}: {} bytes of state moved in {} µs, no connection closed",
            spec.path.display(),
            snapshot.len(),
            started.elapsed().as_micros()
        ))
    });
    target.driver.swap(swap).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{mint, TokenSpec};
    use ed25519_dalek::SigningKey;

    fn token(key: &SigningKey, admin: bool) -> String {
        let spec = TokenSpec { sub: "u", name: None, ttl_secs: 60, admin, kid: None };
        format!("Bearer {}", mint(key, &spec).unwrap())
    }

    #[tokio::test]
    async fn reload_over_http_takes_an_admin_token_of_the_mounts_admin_auth() {
        let refused = Reloader::new(Vec::new(), AdminAuth::default());
        assert_eq!(refused.http(None).await.0, StatusCode::FORBIDDEN, "no keys: SIGHUP only");

        let key = SigningKey::from_bytes(&[7; 32]);
        let admin = AdminAuth { keys: vec![AuthKey { kid: None, key: key.verifying_key().to_bytes() }], leeway_secs: 0 };
        let reloader = Reloader::new(Vec::new(), admin);
        assert_eq!(reloader.http(None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(reloader.http(Some(&token(&key, false))).await.0, StatusCode::FORBIDDEN);
        let other = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(reloader.http(Some(&token(&other, true))).await.0, StatusCode::UNAUTHORIZED);
        // No component mount to swap: every one (none) swapped.
        assert_eq!(reloader.http(Some(&token(&key, true))).await.0, StatusCode::OK);
    }
}
