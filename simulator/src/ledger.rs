//! Every call the simulator answered, as the vendor's bill would see it. Tests compare it
//! with the project's own ledger and billing counters.

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
    pub at_ms: i64,
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
        self.record_call(Call {
            vendor,
            api,
            http_status,
            billable,
            reference,
            throttled: http_status == 429,
        });
    }

    pub fn record_call(&self, c: Call<'_>) {
        self.entries.lock().expect("ledger lock").push(LedgerEntry {
            vendor: c.vendor.into(),
            api: c.api.into(),
            http_status: c.http_status,
            billable: c.billable,
            reference: c.reference,
            throttled: c.throttled,
            at_ms: chrono::Utc::now().timestamp_millis(),
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
