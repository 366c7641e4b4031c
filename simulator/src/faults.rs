//! Injected trouble: latency (fixed, uniform jitter, or a lognormal distribution per vendor ×
//! API with occasional stalls), a share of 5xx answers, and a QPS quota per vendor × API
//! enforced when a call *arrives* and answered with the vendor's own throttle signal.
//! Configurable at start-up and through `POST /admin/faults`, so a test can change them
//! mid-run. The quota model and its reasons are in `docs/simulator.md` §8.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Faults for one vendor.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct VendorFaults {
    /// Added to every admitted call's answer (gateway refusals — bad signature, throttle —
    /// are answered at once, as a gateway does).
    pub latency_ms: u64,
    /// Uniform extra latency in `0..jitter_ms`.
    pub jitter_ms: u64,
    /// Share of calls answered with the vendor's internal-error response (0.0–1.0).
    pub error_rate: f64,
    /// `Retry-After` seconds sent with throttle answers (Huawei) or ms (`x-acs-retry-after`).
    pub retry_after_secs: Option<u64>,
    /// QPS quota per API of this vendor; `None` = unlimited.
    pub qps: Option<f64>,
    /// Delay of the "slow once" scenario (sequence code 955), in ms; 0 means 5000.
    pub slow_ms: u64,
    /// QPS quota of single APIs (by API name, e.g. `ivs-standard`), overriding `qps`.
    pub api_qps: std::collections::BTreeMap<String, f64>,
    /// Calls the quota's bucket holds (a call arriving early against perfect pacing is
    /// admitted while the bucket has a token); `None` = [`default_burst`].
    pub burst: Option<f64>,
    /// A latency distribution for every API of this vendor, on top of `latency_ms`.
    pub latency: Option<Latency>,
    /// Distributions of single APIs (by API name), overriding `latency`.
    pub api_latency: std::collections::BTreeMap<String, Latency>,
}

impl VendorFaults {
    /// The quota of one API of this vendor.
    pub fn qps_of(&self, api: &str) -> Option<f64> {
        self.api_qps.get(api).copied().or(self.qps)
    }

    /// The latency distribution of one API of this vendor.
    pub fn latency_of(&self, api: &str) -> Option<&Latency> {
        self.api_latency.get(api).or(self.latency.as_ref())
    }
}

/// The bucket of a quota of `qps` when none is configured: one call plus a tenth of a
/// second's worth. A client pacing at exactly the quota may arrive up to 100 ms early
/// (scheduling, network) without a throttle, and no 1 s window holds more than about
/// `1.1 × qps + 1` admitted calls.
pub fn default_burst(qps: f64) -> f64 {
    1.0 + qps / 10.0
}

/// A vendor's answer time: lognormal (set by its median and 99th percentile, the two
/// figures a vendor's status page or our own metrics give), plus, with probability
/// `stall_rate`, a stall of `stall_ms` (a gateway retry, a GC pause, a slow authority).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Latency {
    pub median_ms: f64,
    pub p99_ms: f64,
    pub stall_rate: f64,
    pub stall_ms: u64,
}

/// The standard normal quantile at 0.99: p99 = median × e^(σ·Z99) for a lognormal.
const Z99: f64 = 2.326_347_874;

impl Latency {
    /// The lognormal's σ; 0 (a fixed `median_ms`) when p99 is not above the median.
    pub fn sigma(&self) -> f64 {
        if self.median_ms > 0.0 && self.p99_ms > self.median_ms {
            (self.p99_ms / self.median_ms).ln() / Z99
        } else {
            0.0
        }
    }

    /// One answer time, drawn from `rng`.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let mut ms = 0.0;
        if self.median_ms > 0.0 {
            // Box–Muller: a standard normal from two uniforms (1 − u keeps ln away from 0).
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            ms += self.median_ms * (self.sigma() * z).exp();
        }
        if self.stall_rate > 0.0 && rng.random::<f64>() < self.stall_rate {
            ms += self.stall_ms as f64;
        }
        // Capped at an hour: a typo in p99 must not park a request for days.
        Duration::from_secs_f64(ms.clamp(0.0, 3_600_000.0) / 1000.0)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FaultConfig {
    pub huawei: VendorFaults,
    /// Also read as `aliyun`, Alibaba's name here before the rename.
    #[serde(alias = "aliyun")]
    pub alibaba: VendorFaults,
    pub baidu: VendorFaults,
    /// Moves the simulator's clock (session and token lifetimes, Huawei's signature window,
    /// every answer's `Date` header), in seconds.
    pub clock_offset_secs: i64,
    /// Seeds the latency draws, so that a run's sequence of answer times repeats; `None`:
    /// seeded from the system. Setting a new value re-seeds.
    pub seed: Option<u64>,
}

impl FaultConfig {
    pub fn for_vendor(&self, vendor: &str) -> &VendorFaults {
        match vendor {
            "huawei" => &self.huawei,
            "alibaba" => &self.alibaba,
            _ => &self.baidu,
        }
    }
}

/// A token bucket per `vendor.api`, refilled at the quota, holding `burst` calls (by default
/// [`default_burst`]), consulted when a call arrives (before its latency): what a vendor's
/// gateway counts is requests arriving, not answers leaving.
#[derive(Debug, Default)]
pub struct Quotas {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Quotas {
    /// True if a call arriving `at` fits the quota (and takes a token), false if it must be
    /// throttled. A throttled call takes nothing.
    pub fn admit(&self, key: &str, qps: Option<f64>, burst: Option<f64>, at: Instant) -> bool {
        let Some(qps) = qps.filter(|q| *q > 0.0) else {
            return true;
        };
        let burst = burst
            .filter(|b| *b >= 1.0)
            .unwrap_or_else(|| default_burst(qps));
        // std Mutex: a few float operations, never held across an await.
        let mut buckets = self.buckets.lock().expect("quota lock");
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((burst, at));
        // Arrivals stamped just before another task took the lock may come in out of order.
        let elapsed = at.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * qps).min(burst);
        *last = (*last).max(at);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The latency draws, from one generator so that a seeded run repeats its sequence.
#[derive(Debug)]
pub struct Delays {
    rng: Mutex<(Option<u64>, StdRng)>,
}

impl Default for Delays {
    fn default() -> Self {
        Self {
            rng: Mutex::new((None, StdRng::from_os_rng())),
        }
    }
}

impl Delays {
    /// The injected latency of one admitted call of `api`: `latency_ms`, uniform jitter, and
    /// the API's distribution if one is set.
    pub fn delay(&self, f: &VendorFaults, api: &str, seed: Option<u64>) -> Duration {
        let fixed = Duration::from_millis(f.latency_ms);
        if f.jitter_ms == 0 && f.latency_of(api).is_none() {
            return fixed;
        }
        let mut guard = self.rng.lock().expect("rng lock");
        let (seeded, rng) = &mut *guard;
        if seed.is_some() && *seeded != seed {
            *rng = StdRng::seed_from_u64(seed.unwrap_or_default());
            *seeded = seed;
        }
        let jitter = if f.jitter_ms > 0 {
            Duration::from_millis(rng.random_range(0..f.jitter_ms))
        } else {
            Duration::ZERO
        };
        let drawn = f.latency_of(api).map(|l| l.sample(rng)).unwrap_or_default();
        fixed + jitter + drawn
    }
}

/// How many times each request reference was seen, for "once" faults.
#[derive(Debug, Default)]
pub struct Seen {
    counts: Mutex<HashMap<String, u32>>,
}

impl Seen {
    /// Increments and returns the count for `reference` (1 on first sight).
    pub fn bump(&self, reference: &str) -> u32 {
        let mut m = self.counts.lock().expect("seen lock");
        let c = m.entry(reference.to_string()).or_insert(0);
        *c += 1;
        *c
    }
}

pub fn roll(rate: f64) -> bool {
    rate > 0.0 && rand::random::<f64>() < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_admits_its_burst_then_throttles() {
        let q = Quotas::default();
        let now = Instant::now();
        let admitted = (0..10)
            .filter(|_| q.admit("huawei.x", Some(5.0), Some(5.0), now))
            .count();
        assert_eq!(admitted, 5);
        assert!(q.admit("huawei.y", None, None, now));
    }

    #[test]
    fn the_default_bucket_holds_one_call_and_a_tenth_of_a_second() {
        let q = Quotas::default();
        let now = Instant::now();
        // 20 QPS: 1 + 2 calls at once, then one per 50 ms.
        let at_once = (0..10)
            .filter(|_| q.admit("huawei.x", Some(20.0), None, now))
            .count();
        assert_eq!(at_once, 3);
        assert!(!q.admit(
            "huawei.x",
            Some(20.0),
            None,
            now + Duration::from_millis(40)
        ));
        assert!(q.admit(
            "huawei.x",
            Some(20.0),
            None,
            now + Duration::from_millis(51)
        ));
    }

    /// Calls paced at exactly the quota are all admitted even when each arrives up to
    /// 90 ms early or late, and a client sending twice the quota gets about half through.
    #[test]
    fn paced_calls_pass_with_jitter_and_double_the_quota_does_not() {
        let q = Quotas::default();
        let start = Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        for i in 0..200u64 {
            let jitter = rng.random_range(0..90);
            let at = start + Duration::from_millis(i * 100 + jitter);
            assert!(q.admit("paced", Some(10.0), None, at), "call {i}");
        }
        let admitted = (0..200u64)
            .filter(|i| {
                q.admit(
                    "double",
                    Some(10.0),
                    None,
                    start + Duration::from_millis(i * 50),
                )
            })
            .count();
        assert!((100..=103).contains(&admitted), "{admitted}");
    }

    /// Many seeded draws of the bench's distribution (median 800 ms, p99 4 s) have that
    /// median and p99 within a few per cent, and the same seed draws the same sequence.
    #[test]
    fn lognormal_latency_has_its_median_and_p99() {
        let l = Latency {
            median_ms: 800.0,
            p99_ms: 4000.0,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(42);
        let mut ms: Vec<f64> = (0..100_000)
            .map(|_| l.sample(&mut rng).as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        let p99 = ms[ms.len() * 99 / 100];
        assert!((median - 800.0).abs() < 800.0 * 0.03, "median {median}");
        assert!((p99 - 4000.0).abs() < 4000.0 * 0.05, "p99 {p99}");
        let f = VendorFaults {
            latency: Some(l),
            ..Default::default()
        };
        let (a, b) = (Delays::default(), Delays::default());
        let draw = |d: &Delays| {
            (0..5)
                .map(|_| d.delay(&f, "x", Some(9)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(&a), draw(&b));
    }

    #[test]
    fn stalls_come_at_their_rate_and_add_their_duration() {
        let l = Latency {
            stall_rate: 0.1,
            stall_ms: 5000,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let stalls = (0..10_000)
            .map(|_| l.sample(&mut rng))
            .filter(|d| *d == Duration::from_secs(5))
            .count();
        assert!((900..=1100).contains(&stalls), "{stalls}");
        // Fixed latency alone stays exactly what it was.
        let fixed = VendorFaults {
            latency_ms: 150,
            ..Default::default()
        };
        assert_eq!(
            Delays::default().delay(&fixed, "x", None),
            Duration::from_millis(150)
        );
    }
}
