//! The worker: takes jobs off the queue and turns each into exactly one outcome.
//!
//! # Layout (one job's path, top to bottom)
//! - [`consume`]: one consumer per vendor queue, bounded concurrency, clean shutdown
//! - [`concurrency`]: the jobs in flight per vendor, steered by the limiter's queue
//! - [`process`]: delivery → job → (already done? skip) → materials → vendor → record → ack
//! - [`materials`]: fetches the job's images from object storage
//! - [`limiter`]: per vendor × API rate limits, a token before every call (retries too)
//! - [`retry`]: backoff with jitter (backon), `Retry-After` honoured
//! - [`spend`]: spend caps per vendor and window, checked before every billable call
//! - [`call`]: one vendor call = limiter token + ledger row + HTTP + retry decision
//! - [`metrics`]: counters and latency histograms for `/metrics` (no PII in labels)
//! - [`progress`]: per-consumer liveness watermark: a stuck consumer fails `/healthz`
//! - [`vendors`]: one folder per vendor: config, signing, request, response, client
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod call;
pub mod concurrency;
pub mod consume;
pub mod limiter;
pub mod materials;
pub mod metrics;
pub mod process;
pub mod progress;
pub mod retry;
pub mod spend;
pub mod vendors;

use std::sync::Arc;

use kyc_objects::ObjectStore;
use kyc_store::Store;

pub use consume::{run, WorkerSettings};
pub use limiter::{Limiters, Quota};
pub use retry::RetryPolicy;
pub use vendors::alibaba::{AlibabaClient, AlibabaConfig};
pub use vendors::baidu::{BaiduClient, BaiduConfig};
pub use vendors::huawei::{HuaweiAuth, HuaweiClient, HuaweiConfig};

/// The vendor clients this worker can call; a vendor without credentials is `None`, and
/// its jobs end as `error` / `auth_failed` instead of being guessed at.
#[derive(Debug, Default)]
pub struct Clients {
    pub huawei: Option<HuaweiClient>,
    pub alibaba: Option<AlibabaClient>,
    pub baidu: Option<BaiduClient>,
}

/// Everything a job needs, shared by all tasks.
#[derive(Debug)]
pub struct Context {
    pub store: Store,
    pub objects: ObjectStore,
    pub clients: Clients,
    pub limiters: Limiters,
    pub retry: RetryPolicy,
    pub metrics: metrics::Metrics,
    /// Open the sealed personal fields of job messages (every configured key id, so
    /// messages sealed before a rotation still open).
    pub keys: kyc_schemas::DataKeys,
    /// Spend caps per vendor and window (`SpendGuard::default()`: none).
    pub spend: spend::SpendGuard,
}

pub type SharedContext = Arc<Context>;
