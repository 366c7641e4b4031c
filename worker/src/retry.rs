//! When and how long to wait before calling a vendor again. The decision (retry or not) is
//! the vendor's `response.rs` classification; this file owns only the mechanics: exponential
//! backoff with jitter from backon, capped, and never shorter than the vendor's `Retry-After`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::vendors::VendorError;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Vendor calls per job, first call included, across every delivery and every trip
    /// through a delay queue (the job's budget, not a delivery's).
    pub max_attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Waits longer than this leave the worker: the job goes to a delay queue instead of
    /// holding a slot (and its delivery) while it waits.
    pub max_in_process_delay: Duration,
    /// Trips through a delay queue before the job is given up as `error`.
    pub max_deferrals: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_in_process_delay: Duration::from_secs(5),
            max_deferrals: 10,
        }
    }
}

/// A retry schedule for one step of a job delivery (its backoff grows within the step; the
/// attempt budget is the job's, passed in by the caller).
#[derive(Debug)]
pub struct Schedule {
    policy: RetryPolicy,
    backoff: backon::ExponentialBackoff,
    auth_refreshed: bool,
}

impl RetryPolicy {
    pub fn schedule(&self) -> Schedule {
        Schedule {
            policy: self.clone(),
            backoff: ExponentialBuilder::default()
                .with_min_delay(self.min_delay)
                .with_max_delay(self.max_delay)
                .with_jitter()
                .without_max_times()
                .build(),
            auth_refreshed: false,
        }
    }
}

impl Schedule {
    /// A wait done inside the worker is capped at `max_delay`: a job must not sit on its
    /// delivery past the broker's consumer timeout (the job goes to a delay queue instead
    /// whenever it may).
    pub fn in_process(&self, delay: Duration) -> Duration {
        delay.min(self.policy.max_delay)
    }

    /// Called after each failed call, with the job's calls so far (every delivery, this one
    /// included): `Some(delay)` to try again after `delay`, `None` to give up (permanent error
    /// or the job's attempts spent).
    pub fn next_delay(&mut self, err: &VendorError, job_attempts: u32) -> Option<Duration> {
        if job_attempts >= self.policy.max_attempts {
            return None;
        }
        match err {
            VendorError::Permanent { .. } => None,
            // Refresh once (the client dropped its token), then retry at once.
            VendorError::AuthExpired { .. } if !self.auth_refreshed => {
                self.auth_refreshed = true;
                Some(Duration::ZERO)
            }
            VendorError::AuthExpired { .. } => None,
            VendorError::Throttled { .. } | VendorError::Transient { .. } => {
                let backoff = self.backoff.next().unwrap_or(self.policy.max_delay);
                // The vendor's Retry-After is a floor: retrying sooner is pointless. A long wait
                // goes to a delay queue; only an in-process wait is capped (see `in_process`).
                Some(err.retry_after().map_or(backoff, |ra| ra.max(backoff)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kyc_schemas::Reason;

    fn transient(retry_after: Option<Duration>) -> VendorError {
        VendorError::Transient {
            code: "IVS.0101".into(),
            message: String::new(),
            retry_after,
            reason: Reason::VendorInternal,
        }
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let mut s = RetryPolicy::default().schedule();
        let e = VendorError::Permanent {
            code: "IVS.0003".into(),
            message: String::new(),
            reason: Reason::InvalidRequest,
        };
        assert_eq!(s.next_delay(&e, 1), None);
    }

    #[test]
    fn attempts_are_bounded() {
        let policy = RetryPolicy {
            max_attempts: 3,
            ..Default::default()
        };
        let mut s = policy.schedule();
        assert!(s.next_delay(&transient(None), 1).is_some());
        assert!(s.next_delay(&transient(None), 2).is_some());
        assert_eq!(s.next_delay(&transient(None), 3), None);
        // The budget is the job's: a fresh schedule (a later delivery, a step after a trip
        // through the delay queue) does not reset it.
        assert_eq!(policy.schedule().next_delay(&transient(None), 3), None);
    }

    #[test]
    fn retry_after_is_a_floor_and_backoff_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 100,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            ..Default::default()
        };
        let mut s = policy.schedule();
        assert_eq!(
            s.next_delay(&transient(Some(Duration::from_millis(80))), 1),
            Some(Duration::from_millis(80)),
        );
        // A Retry-After beyond the cap is honoured in full (for the delay queue), but a wait
        // inside the worker is cut to the cap: the delivery must not go stale.
        let long = s
            .next_delay(&transient(Some(Duration::from_secs(60))), 2)
            .unwrap();
        assert_eq!(long, Duration::from_secs(60));
        assert_eq!(s.in_process(long), Duration::from_millis(100));
        for _ in 0..20 {
            // backon's jitter may add up to one delay on top of its cap.
            assert!(s.next_delay(&transient(None), 3).unwrap() <= Duration::from_millis(200));
        }
    }

    #[test]
    fn an_expired_token_is_refreshed_once() {
        let mut s = RetryPolicy::default().schedule();
        let e = VendorError::AuthExpired {
            code: "APIG.0307".into(),
        };
        assert_eq!(s.next_delay(&e, 1), Some(Duration::ZERO));
        assert_eq!(s.next_delay(&e, 2), None);
    }
}
