//! Reconnect delays: exponential from a floor to a cap, with jitter.
//!
//! Jitter matters because every node of a cluster loses Redis at the same moment: without it
//! they would all come back in lockstep and hit the restarted server together, again and again.
//! "Equal jitter" (a delay drawn from the upper half of the current step) keeps the delays
//! growing while spreading the nodes out, and never retries sooner than half the step.

use std::time::Duration;

/// The delays between connection attempts of one outage.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    /// Attempts since the last success; the step is `min * 2^attempt`, capped at `max`.
    attempt: u32,
    /// splitmix64 state: the jitter needs no quality beyond "not in lockstep", and a seed makes
    /// the sequence repeatable in tests.
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff { min, max: max.max(min), attempt: 0, rng: seed }
    }

    /// The delay before the next attempt; each call doubles the step until it reaches the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.min.saturating_mul(1u32 << self.attempt.min(20)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let span = u64::try_from((step - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if span == 0 { 0 } else { self.next_u64() % (span + 1) };
        half + Duration::from_nanos(jitter)
    }

    /// A connection succeeded: the next outage starts again from the floor.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    #[test]
    fn delays_double_within_the_upper_half_of_each_step_up_to_the_cap() {
        let mut backoff = Backoff::new(MIN, MAX, 7);
        for attempt in 0..40u32 {
            let step = MIN.saturating_mul(1 << attempt.min(20)).min(MAX);
            let delay = backoff.next_delay();
            assert!(delay >= step / 2 && delay <= step, "attempt {attempt}: {delay:?} outside [{:?}, {step:?}]", step / 2);
        }
    }

    #[test]
    fn reset_starts_again_from_the_floor() {
        let mut backoff = Backoff::new(MIN, MAX, 7);
        for _ in 0..10 {
            backoff.next_delay();
        }
        backoff.reset();
        assert!(backoff.next_delay() <= MIN);
    }

    #[test]
    fn nodes_with_different_seeds_do_not_retry_in_lockstep() {
        let (mut a, mut b) = (Backoff::new(MIN, MAX, 1), Backoff::new(MIN, MAX, 2));
        let same = (0..10).filter(|_| a.next_delay() == b.next_delay()).count();
        assert!(same < 3, "{same} of 10 delays equal");
    }

    #[test]
    fn a_cap_below_the_floor_is_the_floor() {
        let mut backoff = Backoff::new(MIN, Duration::from_millis(1), 3);
        assert!(backoff.next_delay() <= MIN);
    }
}
