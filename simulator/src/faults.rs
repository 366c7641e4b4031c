//! Injected trouble: latency, a share of 5xx answers, and a QPS quota per vendor × API
//! answered with the vendor's own throttle signal. Configurable at start-up and through
//! `POST /admin/faults`, so a test can change them mid-run.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Faults for one vendor.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct VendorFaults {
    /// Added to every answer.
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
}

impl VendorFaults {
    /// The quota of one API of this vendor.
    pub fn qps_of(&self, api: &str) -> Option<f64> {
        self.api_qps.get(api).copied().or(self.qps)
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

/// A token bucket per `vendor.api`, refilled at the quota, with a burst of one second's
/// worth: the vendor gateways count per second.
#[derive(Debug, Default)]
pub struct Quotas {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Quotas {
    /// True if the call fits the quota (and takes a token), false if it must be throttled.
    pub fn admit(&self, key: &str, qps: Option<f64>) -> bool {
        let Some(qps) = qps.filter(|q| *q > 0.0) else {
            return true;
        };
        let burst = qps.max(1.0);
        let mut buckets = self.buckets.lock().expect("quota lock");
        let now = Instant::now();
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * qps).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
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

pub fn delay(f: &VendorFaults) -> Duration {
    let jitter = if f.jitter_ms > 0 {
        rand::random_range(0..f.jitter_ms)
    } else {
        0
    };
    Duration::from_millis(f.latency_ms + jitter)
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
        let admitted = (0..10).filter(|_| q.admit("huawei.x", Some(5.0))).count();
        assert_eq!(admitted, 5);
        assert!(q.admit("huawei.y", None));
    }
}
