//! Rate limits per vendor × API. A token is taken before every vendor call, retries
//! included, so our own traffic never exceeds the account's quota. Waiting for a token is
//! normal flow, not an error.
//!
//! This is the in-process stage (governor's GCRA). Several replicas sharing one account
//! quota must split it between them; see the worker runtime design notes.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota as GQuota, RateLimiter};

use crate::vendors::Api;

/// A limit: `qps` calls per second with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub qps: f64,
    pub burst: u32,
}

#[derive(Debug, Default)]
pub struct Limiters {
    by_api: HashMap<String, Arc<DefaultDirectRateLimiter>>,
}

impl Limiters {
    /// `quotas` maps `vendor.api` (e.g. `huawei.ivs-standard`) to its quota; APIs without an
    /// entry are not limited.
    pub fn new(quotas: &HashMap<String, Quota>) -> Self {
        let by_api = quotas
            .iter()
            .filter(|(_, q)| q.qps > 0.0)
            .map(|(k, q)| {
                let period = Duration::from_secs_f64(1.0 / q.qps);
                let burst = NonZeroU32::new(q.burst.max(1)).expect("max(1) is non-zero");
                let quota = GQuota::with_period(period)
                    .expect("positive period")
                    .allow_burst(burst);
                (k.clone(), Arc::new(RateLimiter::direct(quota)))
            })
            .collect();
        Self { by_api }
    }

    pub fn key(api: &Api) -> String {
        format!("{}.{}", api.vendor.as_str(), api.name)
    }

    /// Waits for a token of this API; returns how long it waited.
    pub async fn acquire(&self, api: &Api) -> Duration {
        let Some(l) = self.by_api.get(&Self::key(api)) else {
            return Duration::ZERO;
        };
        let start = Instant::now();
        l.until_ready().await;
        start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kyc_schemas::Vendor;

    const API: Api = Api {
        vendor: Vendor::Huawei,
        name: "ivs-standard",
        product: "ivs-standard",
    };

    #[tokio::test]
    async fn unlisted_apis_are_not_limited() {
        let l = Limiters::new(&HashMap::new());
        assert_eq!(l.acquire(&API).await, Duration::ZERO);
    }

    #[tokio::test]
    async fn tokens_beyond_the_burst_wait_for_the_rate() {
        let quotas = HashMap::from([(
            "huawei.ivs-standard".to_string(),
            Quota {
                qps: 10.0,
                burst: 2,
            },
        )]);
        let l = Limiters::new(&quotas);
        // governor reads a real clock, so this checks the ordering, not wall time: the third
        // token in a row must wait, the first two must not.
        assert!(l.acquire(&API).await < Duration::from_millis(5));
        assert!(l.acquire(&API).await < Duration::from_millis(5));
        let waited = l.acquire(&API).await;
        assert!(waited >= Duration::from_millis(50), "waited {waited:?}");
    }
}
