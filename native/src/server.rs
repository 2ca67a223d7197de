//! The server: listener, accept loop, connection cap, per-connection HTTP tasks, and
//! graceful shutdown.
//!
//! Shutdown follows mini-redis: every task holds a clone of one `done` sender, and the
//! server waits until the receiver sees them all gone. On the signal, the listener stops,
//! every driver gets `Input::Shutdown` (the core tells its clients and emits the `Close`
//! and `Respond` outputs that end their transports), hyper connections finish their
//! in-flight request and close, WebSocket tasks write what is queued and their close
//! frame. The wait is bounded; what is still running after it is dropped with the runtime.
//! Last, each store finishes the requests queued so far and closes: anything it answered
//! "stored" is on disk before `run` returns.

use crate::component::reload;
use crate::http::cors::Cors;
use crate::driver;
use crate::http::{ConnCtx, MountPoint, Router};
use crate::Mount;
use crate::Settings;
use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

/// How long shutdown waits for connections to finish before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// A client must send its request headers within this time (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Accept errors (out of file descriptors, mostly) back off exponentially up to this.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// How long a refused connection may take to receive its 503.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long shutdown waits for a store to finish its queue.
const STORE_CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The answer to a connection over the cap, written straight to the socket: no request
/// is read, so a refused client costs one small write.
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 13\r\nconnection: close\r\n\r\nover capacity";

/// See [`crate::run`].
pub(crate) async fn run(
    settings: Settings,
    mounts: Vec<Mount>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    survive_file_size_limit();
    // A missing folder stops startup before the port is taken.
    let static_files = match &settings.static_dir {
        Some(dir) => {
            let files = crate::http::static_files::StaticFiles::new(dir)?;
            tracing::info!(dir = %dir.display(), "serving static files at /");
            Some(files)
        }
        None => None,
    };
    let listener =
        TcpListener::bind(&settings.listen).await.with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr().context("listener has no local address")?;
    // The one line on stdout: tests and scripts read the port from it.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "parlor listening on http://{addr}")?;
        out.flush()?;
    }

    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let max_connections = settings.core.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let limit = Arc::new(Semaphore::new(max_connections));

    let mut mount_points = Vec::with_capacity(mounts.len());
    let mut stores = Vec::new();
    let mut components = Vec::new();
    let mut admin = None;
    // The mount at the main path is the one in the cluster (cluster mode only).
    let main_path = crate::config::normalize_path(&settings.path)?;
    let mut link = match &settings.cluster.redis {
        Some(url) => Some(crate::cluster::LinkConfig::parse(url).map_err(|e| anyhow::anyhow!("redis: {e}"))?),
        None => None,
    };
    for mount in mounts {
        let path = crate::config::normalize_path(&mount.path)?;
        let link = if path == main_path { link.take() } else { None };
        tracing::info!(%addr, path = %path, api = mount.api, "serving Engine.IO");
        if let Some(store) = &mount.store {
            stores.push(store.clone());
        }
        let driver =
            driver::spawn(mount.machine, mount.store, link, settings.outbound_limit, path.clone(), done_tx.clone());
        // The first mount that says who its admins are guards the host's admin routes.
        admin = admin.or(mount.admin);
        if let Some(spec) = mount.component {
            components.push(reload::Target { mount: path.clone(), driver: driver.clone(), spec });
        }
        mount_points.push(MountPoint { path, driver, api: mount.api });
    }
    let reloader = if components.is_empty() {
        None
    } else {
        let reloader = Arc::new(reload::Reloader::new(components, admin.unwrap_or_default()));
        reload::on_sighup(&reloader);
        Some(reloader)
    };
    let drivers: Vec<_> = mount_points.iter().map(|m| m.driver.clone()).collect();
    let router = Arc::new(Router {
        mounts: mount_points,
        cors: settings.cors.clone(),
        max_payload: settings.core.max_payload,
        limit: limit.clone(),
        max_connections,
        reload: reloader,
        bodies: crate::http::bodies::BodyBudget::new(settings.host.body_budget),
        body_timeout: std::time::Duration::from_millis(settings.host.body_timeout_ms),
        body_min_rate: settings.host.body_min_rate,
        inbound_budget: settings.host.inbound_budget,
        metrics_token: settings.host.metrics_token.clone(),
        static_files,
    });
    if settings.cors == Cors::SameOrigin {
        tracing::debug!("no CORS origin configured: same-origin polling only");
    }

    tokio::select! {
        () = accept_loop(&listener, &router, &limit, &stop_rx, &done_tx) => {}
        () = shutdown => tracing::info!("shutdown signal received"),
    }

    // Stop taking connections, then let the cores close what they own.
    drop(listener);
    for driver in &drivers {
        driver.shutdown();
    }
    let _ = stop_tx.send(true);
    drop((drivers, router, done_tx));
    match tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv()).await {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; exiting"),
    }
    for store in stores {
        let close = tokio::task::spawn_blocking(move || store.close());
        if tokio::time::timeout(STORE_CLOSE_GRACE, close).await.is_err() {
            tracing::error!(grace = ?STORE_CLOSE_GRACE, "the store did not finish its queue in time");
        }
    }
    Ok(())
}

/// Accepts forever; errors back off instead of spinning.
async fn accept_loop(
    listener: &TcpListener,
    router: &Arc<Router>,
    limit: &Arc<Semaphore>,
    stop: &watch::Receiver<bool>,
    done: &mpsc::Sender<()>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => {
                backoff = Duration::from_millis(5);
                accepted
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        // Without it a small write after a small write waits for the peer's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let ctx = ConnCtx { remote, permit: Arc::new(permit), done: done.clone() };
                tokio::spawn(serve_connection(stream, ctx, router.clone(), stop.clone()));
            }
            Err(_) => {
                tracing::debug!(%remote, "over the connection cap; refusing");
                tokio::spawn(refuse(stream));
            }
        }
    }
}

/// Serves HTTP/1.1 on one TCP connection until it closes or the server stops.
async fn serve_connection(stream: TcpStream, ctx: ConnCtx, router: Arc<Router>, mut stop: watch::Receiver<bool>) {
    let remote: SocketAddr = ctx.remote;
    let service_ctx = ctx.clone();
    let service = service_fn(move |req| {
        let router = router.clone();
        let ctx = service_ctx.clone();
        async move { Ok::<_, Infallible>(router.handle(req, &ctx).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stop.changed() => {
            // Finish the request in flight (the core answers pending polls on shutdown),
            // then close instead of keeping the connection alive.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "http connection ended with an error");
    }
    drop(ctx);
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async {
        stream.write_all(OVERLOADED).await?;
        stream.shutdown().await
    })
    .await;
}

/// Takes SIGXFSZ, as PostgreSQL does: past a file size limit (`ulimit -f`) a write then
/// fails with EFBIG and the store answers it like a full disk (the request fails, nothing
/// acknowledged is lost) instead of the signal's default, killing the node. Tokio keeps the
/// handler for the life of the process; the signal itself needs no action.
fn survive_file_size_limit() {
    #[cfg(unix)]
    if let Err(e) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ)) {
        tracing::warn!(error = %e, "cannot take SIGXFSZ: a file size limit would stop the node");
    }
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
