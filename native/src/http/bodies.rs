//! The node-wide budget of bytes held in partly read HTTP request bodies: a client that
//! sends a body slowly holds what it sent until the body deadline; many of them together
//! may hold this much, and a body that would go past it is answered 503.

use super::{text, Body, Router};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH};
use hyper::{Request, Response, StatusCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A request body must arrive whole within this time (by default), or the request is
/// answered 408 and the connection closed.
pub(crate) const BODY_TIMEOUT_MS: u64 = 10_000;
/// Bytes of partly read request bodies the whole node holds at most.
pub(crate) const BODY_BUDGET: usize = 64 << 20;
/// After [`BODY_GRACE`], a body must keep arriving at this many bytes per second on
/// average (by default), or the request is answered 408 at once: a client trickling a
/// body holds its connection for a few seconds, not the whole body deadline.
pub(crate) const BODY_MIN_RATE: u64 = 1024;
/// How long a body may arrive at any rate before [`BODY_MIN_RATE`] applies: a small
/// body sent whole never meets the rate check, and a slow link gets its first round trips.
pub(crate) const BODY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// When the next chunk of a body that started at `start` and has `received` bytes so far
/// must have arrived to keep `min_rate` bytes per second after [`BODY_GRACE`]; `None`:
/// no rate is asked (`min_rate` 0).
pub(crate) fn rate_deadline(
    start: tokio::time::Instant,
    received: usize,
    min_rate: u64,
) -> Option<tokio::time::Instant> {
    if min_rate == 0 {
        return None;
    }
    // Whole milliseconds of credit the bytes so far bought; saturating, so a huge count
    // cannot overflow (the body deadline still ends the request).
    let earned_ms = (received as u64).saturating_mul(1000) / min_rate;
    Some(start + BODY_GRACE + std::time::Duration::from_millis(earned_ms))
}

/// The node-wide account of bytes in partly read bodies.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    held: AtomicUsize,
    limit: usize,
}

impl BodyBudget {
    pub(crate) fn new(limit: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget { held: AtomicUsize::new(0), limit })
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// An empty share, growing with [`BodyShare::grow`]; what it holds is given back when
    /// it is dropped.
    pub(crate) fn share(self: &Arc<Self>) -> BodyShare {
        BodyShare { budget: self.clone(), held: 0 }
    }
}

/// One body's part of the [`BodyBudget`].
#[derive(Debug)]
pub(crate) struct BodyShare {
    budget: Arc<BodyBudget>,
    held: usize,
}

impl BodyShare {
    /// Counts `n` more bytes; `false` (and nothing counted) when the node would go past
    /// its budget.
    pub(crate) fn grow(&mut self, n: usize) -> bool {
        let b = &self.budget;
        let mut now = b.held.load(Ordering::Acquire);
        loop {
            let next = now.saturating_add(n);
            if next > b.limit {
                return false;
            }
            match b.held.compare_exchange_weak(now, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.held += n;
                    return true;
                }
                Err(seen) => now = seen,
            }
        }
    }
}

impl Drop for BodyShare {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.held, Ordering::AcqRel);
    }
}

impl Router {
    /// Reads a request body within the body timeout and the node's body budget: the
    /// body and whether it was over `max_payload`, or the answer when it could not be read
    /// (408 past the deadline, 503 past the budget, 400 for a broken body; each closes the
    /// connection, since the rest of the body is never read).
    pub(super) async fn body(&self, req: &mut Request<Incoming>) -> Result<(Bytes, bool), Response<Body>> {
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
    /// Bytes per second after [`crate::http::bodies::BODY_GRACE`] (0: any rate).
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
        let frame = match crate::http::bodies::rate_deadline(start, total, limits.min_rate) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_deadline_moves_with_the_bytes_received() {
        let start = tokio::time::Instant::now();
        assert_eq!(rate_deadline(start, 0, 0), None, "0 is off");
        assert_eq!(rate_deadline(start, 0, 1024), Some(start + BODY_GRACE));
        let at = rate_deadline(start, 2048, 1024).unwrap();
        assert_eq!(at, start + BODY_GRACE + std::time::Duration::from_secs(2));
        assert!(rate_deadline(start, usize::MAX, 1).is_some(), "no overflow");
    }

    #[test]
    fn shares_stay_within_the_budget_and_give_back_on_drop() {
        let budget = BodyBudget::new(100);
        let mut a = budget.share();
        let mut b = budget.share();
        assert!(a.grow(60));
        assert!(!b.grow(41), "past the budget");
        assert!(b.grow(40));
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 40);
        assert!(b.grow(60));
        drop(b);
        assert_eq!(budget.held(), 0);
    }
}
