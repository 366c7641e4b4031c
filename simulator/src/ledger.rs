//! Every call the simulator answered, as the vendor's bill would see it, with the moment it
//! arrived (when the quota was checked) and the moment it was answered. Tests compare it
//! with the project's own ledger and billing counters; `kyc bench quota` reads the arrivals.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LedgerEntry {
    pub vendor: String,
    pub api: String,
    pub http_status: u16,
    pub billable: bool,
    /// The caller's request reference (Huawei `meta.uuid`), never PII.
    pub reference: Option<String>,
    /// Answered with the vendor's throttle signal (whatever its HTTP status).
    #[serde(default)]
    pub throttled: bool,
    /// When the answer left, ms since the epoch.
    pub at_ms: i64,
    /// When the request arrived (its body read, before any injected latency), µs since the
    /// epoch: the moment the quota counted it.
    #[serde(default)]
    pub arrived_us: i64,
    /// When the answer left, µs since the epoch (`at_ms` in finer grain).
    #[serde(default)]
    pub answered_us: i64,
}

/// Totals per `vendor.api`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiTotals {
    pub calls: u64,
    pub billable: u64,
    pub throttled: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LedgerSummary {
    pub totals: BTreeMap<String, ApiTotals>,
    pub entries: Vec<LedgerEntry>,
}

/// One answered call, as [`Ledger::record_call`] takes it.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub vendor: &'a str,
    pub api: &'a str,
    pub http_status: u16,
    pub billable: bool,
    pub reference: Option<String>,
    pub throttled: bool,
    /// When the request arrived, µs since the epoch ([`now_us`] at arrival).
    pub arrived_us: i64,
}

/// When a request arrived: the instant the quota counts and the stamp the ledger keeps.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub at: std::time::Instant,
    pub us: i64,
}

impl Arrival {
    pub fn now() -> Self {
        Self {
            at: std::time::Instant::now(),
            us: now_us(),
        }
    }
}

/// The wall clock in µs since the epoch, the unit of the ledger's timestamps.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[derive(Debug, Default)]
pub struct Ledger {
    // std Mutex: pushes and copies only, never held across an await.
    entries: Mutex<Vec<LedgerEntry>>,
}

impl Ledger {
    pub fn record(
        &self,
        vendor: &str,
        api: &str,
        http_status: u16,
        billable: bool,
        reference: Option<String>,
    ) {
        // Calls without an injected latency (tokens) and charges: arrival is now.
        self.record_call(Call {
            vendor,
            api,
            http_status,
            billable,
            reference,
            throttled: http_status == 429,
            arrived_us: now_us(),
        });
    }

    pub fn record_call(&self, c: Call<'_>) {
        let answered_us = now_us();
        self.entries.lock().expect("ledger lock").push(LedgerEntry {
            vendor: c.vendor.into(),
            api: c.api.into(),
            http_status: c.http_status,
            billable: c.billable,
            reference: c.reference,
            throttled: c.throttled,
            at_ms: answered_us.div_euclid(1000),
            arrived_us: c.arrived_us,
            answered_us,
        });
    }

    pub fn summary(&self) -> LedgerSummary {
        let entries = self.entries.lock().expect("ledger lock").clone();
        let mut totals: BTreeMap<String, ApiTotals> = BTreeMap::new();
        for e in &entries {
            let t = totals.entry(format!("{}.{}", e.vendor, e.api)).or_default();
            t.calls += 1;
            t.billable += u64::from(e.billable);
            t.throttled += u64::from(e.throttled);
        }
        LedgerSummary { totals, entries }
    }

    pub fn clear(&self) {
        self.entries.lock().expect("ledger lock").clear();
    }
}
