//! The host clock: the core's `Instant` is milliseconds since this process first asked.
//!
//! One process-wide origin, so every mount and every machine built before [`crate::run`]
//! (`Service::new(.., clock::now(), ..)`) share the same time line. It reads
//! `tokio::time::Instant`, which is monotonic (and pausable in tokio tests).

use parlor_core::time::Instant;
use std::sync::OnceLock;
use std::time::Duration;

static ORIGIN: OnceLock<tokio::time::Instant> = OnceLock::new();

fn origin() -> tokio::time::Instant {
    *ORIGIN.get_or_init(tokio::time::Instant::now)
}

/// Now, on the core's clock.
#[must_use]
pub fn now() -> Instant {
    let ms = origin().elapsed().as_millis();
    Instant(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// The tokio instant at which the core's clock reads `at`. Rounds nothing away: at this
/// instant [`now`] returns at least `at`, so a timer armed here never fires early.
#[must_use]
pub fn deadline(at: Instant) -> tokio::time::Instant {
    let start = origin();
    // A deadline too far to represent (a "never" timeout) becomes a year from now.
    start
        .checked_add(Duration::from_millis(at.0))
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_maps_back_to_at_least_the_same_instant() {
        let now = now();
        let at = now.plus(5);
        let d = deadline(at);
        assert!(d >= origin() + Duration::from_millis(at.0));
    }

    #[test]
    fn far_deadlines_do_not_overflow() {
        let _ = deadline(Instant(u64::MAX));
    }
}
