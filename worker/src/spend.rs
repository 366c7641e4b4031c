//! Spend caps: a vendor's budget per window (a Beijing day by default), in calls or money,
//! checked before every billable call. When the budget is spent the job is not called: it
//! goes to the delay queue and comes back in the next window (or after [`SpendSettings::recheck`],
//! whichever is sooner), without spending its attempt or retry budget.
//!
//! What is counted is the ledger every replica writes anyway (`kyc_store::spend`): billed
//! calls, calls in flight (their rows are opened before they go out) and calls whose answer
//! was lost, since the window began; for Baidu, the charges `result/getall` reported. The read
//! is cached for [`REFRESH`] while the budget is far from the cap, and repeated before every
//! call once it is within [`NEAR_CALLS`] calls of it. Within one replica, a call is reserved
//! from the check until its ledger row is committed, so one replica never overshoots. Across
//! replicas, two checks may both see the last unit free before either row is written: the cap
//! can be overshot by at most the calls other replicas have between their check and their
//! ledger row at that moment: at most their jobs in flight for the vendor, and in practice
//! the calls the vendor's quota lets out in the time one ledger insert takes. Baidu bills the
//! person's attempts, not our calls: its cap holds back new sessions
//! (`verifyToken/generate`) once the charges it reported reach the cap, and sessions already
//! handed to people can still be charged after that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kyc_schemas::money::{PriceTable, SpendCap, SpendCaps, SpendZone};
use kyc_schemas::Vendor;
use kyc_store::{Store, StoreError};

use crate::metrics::Metrics;
use crate::vendors::Api;

/// How long a read of a vendor's spend is used while the budget is far from the cap.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Within this many calls' worth of the cap, the spend is read again before every call.
pub const NEAR_CALLS: i64 = 100;

/// What each vendor bills (the ledger's or the vendor's own product names): what a cap counts
/// and what a money cap needs prices for.
pub const BILLED_PRODUCTS: [(Vendor, &str); 7] = [
    (Vendor::Huawei, "ivs-standard"),
    (Vendor::Huawei, "ivs-idcard-extention"),
    (Vendor::Alibaba, "VerifyMaterial"),
    (Vendor::Alibaba, "SubmitVerification"),
    (Vendor::Baidu, "faceprint-verify"),
    (Vendor::Baidu, "faceprint-match"),
    (Vendor::Baidu, "faceprint-ocr"),
];

/// The Baidu call a cap holds back: a new session, which the person's attempts are charged to.
const BAIDU_SESSION: &str = "verifyToken/generate";

/// Caps, prices and the window they apply to.
#[derive(Debug, Clone)]
pub struct SpendSettings {
    pub caps: SpendCaps,
    pub prices: PriceTable,
    /// Whose midnight starts a window.
    pub zone: SpendZone,
    /// The window's length: a day (a shorter one divides the day into equal parts).
    pub window: Duration,
    /// The longest a deferred job waits before it looks again (the largest delay queue): a
    /// cap raised by configuration meanwhile is then noticed.
    pub recheck: Duration,
}

impl Default for SpendSettings {
    fn default() -> Self {
        Self {
            caps: SpendCaps::default(),
            prices: PriceTable::default(),
            zone: SpendZone::default(),
            window: Duration::from_secs(86_400),
            recheck: Duration::from_secs(600),
        }
    }
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpendConfigError {
    #[error("spend cap {vendor}={cap}: no price configured for {vendor}.{product} (KYC_PRICES; 0.00 {currency} if it is not billed to you)")]
    NoPrice {
        vendor: Vendor,
        cap: SpendCap,
        product: &'static str,
        currency: String,
    },
    #[error(
        "spend cap {vendor}={cap}: {vendor}.{product} is priced in {other}, the cap in {currency}"
    )]
    Currency {
        vendor: Vendor,
        cap: SpendCap,
        product: &'static str,
        currency: String,
        other: String,
    },
    #[error("price {vendor}.{product}: not a product {vendor} bills (known: {known})")]
    UnknownProduct {
        vendor: Vendor,
        product: String,
        known: String,
    },
}

impl SpendSettings {
    /// Every price names a product its vendor bills, and every money cap has a price in its
    /// currency for each product its vendor bills: a typo must not make spend look free.
    pub fn validate(&self) -> Result<(), SpendConfigError> {
        for (vendor, product, _) in self.prices.iter() {
            if !BILLED_PRODUCTS.contains(&(vendor, product)) {
                return Err(SpendConfigError::UnknownProduct {
                    vendor,
                    product: product.to_string(),
                    known: billed(vendor).collect::<Vec<_>>().join(", "),
                });
            }
        }
        for (vendor, cap) in self.caps.iter() {
            let SpendCap::Money(limit) = cap else {
                continue;
            };
            for product in billed(vendor) {
                match self.prices.price(vendor, product) {
                    None => {
                        return Err(SpendConfigError::NoPrice {
                            vendor,
                            cap,
                            product,
                            currency: limit.currency.to_string(),
                        })
                    }
                    Some(p) if p.currency != limit.currency => {
                        return Err(SpendConfigError::Currency {
                            vendor,
                            cap,
                            product,
                            currency: limit.currency.to_string(),
                            other: p.currency.to_string(),
                        })
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

fn billed(vendor: Vendor) -> impl Iterator<Item = &'static str> {
    BILLED_PRODUCTS
        .into_iter()
        .filter(move |(v, _)| *v == vendor)
        .map(|(_, p)| p)
}

/// The vendor's cap was reached: defer the job by `wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverCap {
    pub vendor: Vendor,
    pub wait: Duration,
}

/// Checks billable calls against the caps. Cheap to clone; the default has no caps and
/// checks nothing.
#[derive(Debug, Clone, Default)]
pub struct SpendGuard {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    settings: SpendSettings,
    /// Added to the system clock: moves the window boundary in tests and drills.
    clock_offset_ms: AtomicI64,
    budgets: HashMap<Vendor, Budget>,
    deferred: AtomicU64,
}

#[derive(Debug, Default)]
struct Budget {
    // std Mutex: held for arithmetic, never across an await.
    state: Mutex<BudgetState>,
    /// One read of the database at a time per vendor.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct BudgetState {
    /// Start of the window `spent` belongs to (clock time), if read.
    window_start: Option<i64>,
    read_at: Option<Instant>,
    /// What the ledger showed at the last read, in cap units.
    spent: i64,
    /// Calls this replica let through whose ledger rows are not committed yet.
    pending: i64,
    /// Calls whose rows were committed while the last read ran: perhaps not in it, so
    /// counted until the next read (which surely has them).
    carried: i64,
    /// Released during the read now running.
    released_during_read: i64,
    reading: bool,
}

/// A call let through by its vendor's cap, counted by this replica until dropped; drop it
/// once the call's ledger row is committed (from then on the database counts it).
#[derive(Debug)]
pub struct Reservation {
    inner: Arc<Inner>,
    vendor: Vendor,
    cost: i64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(b) = self.inner.budgets.get(&self.vendor) {
            let mut s = b.state.lock().expect("spend lock");
            s.pending -= self.cost;
            if s.reading {
                s.released_during_read += self.cost;
            }
        }
    }
}

/// Why a call may not go out now.
#[derive(Debug)]
pub enum Refusal {
    OverCap(OverCap),
    Store(StoreError),
}

impl SpendGuard {
    /// A guard for `settings` (validated); without caps it checks nothing.
    pub fn new(settings: SpendSettings) -> Self {
        if settings.caps.is_empty() {
            return Self::default();
        }
        let budgets = settings
            .caps
            .iter()
            .map(|(v, _)| (v, Budget::default()))
            .collect();
        Self {
            inner: Some(Arc::new(Inner {
                settings,
                clock_offset_ms: AtomicI64::new(0),
                budgets,
                deferred: AtomicU64::new(0),
            })),
        }
    }

    /// Jobs this process deferred because of a cap (each trip counted).
    pub fn deferred(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.deferred.load(Ordering::Relaxed))
    }

    /// Moves this guard's clock to the start of the next window (tests and drills: "the next
    /// day has come"). Calls counted so far stay in the window that ends now.
    pub fn skip_to_next_window(&self) {
        if let Some(i) = &self.inner {
            let now = i.now_ms();
            let next = i.window_start(now) + i.window_ms();
            i.clock_offset_ms.fetch_add(next - now, Ordering::SeqCst);
        }
    }

    /// Reads every capped vendor's spend and shows it on `/metrics` (at start, so the
    /// budget is visible before the first job).
    pub async fn publish(&self, store: &Store, metrics: &Metrics) -> Result<(), StoreError> {
        if let Some(i) = &self.inner {
            for (vendor, _) in i.settings.caps.iter() {
                i.read(store, metrics, vendor).await?;
            }
        }
        Ok(())
    }

    /// Lets a call to `api` out, or says why not. Calls a cap does not count pass at once;
    /// a counted call is reserved (keep the [`Reservation`] until its ledger row is
    /// committed). `Refusal::OverCap` when the vendor's budget for the window is spent.
    pub async fn check(
        &self,
        store: &Store,
        metrics: &Metrics,
        api: &Api,
    ) -> Result<Option<Reservation>, Refusal> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        let vendor = api.vendor;
        let (Some(cap), Some(cost)) = (inner.settings.caps.get(vendor), inner.cost(api)) else {
            return Ok(None);
        };
        let limit = cap_units(&cap);
        let budget = &inner.budgets[&vendor];
        let now = inner.now_ms();
        let window = inner.window_start(now);
        let stale = {
            let s = budget.state.lock().expect("spend lock");
            s.window_start != Some(window)
                || s.read_at.is_none_or(|t| t.elapsed() >= REFRESH)
                || limit - s.used() < NEAR_CALLS * cost
        };
        if stale {
            inner
                .read(store, metrics, vendor)
                .await
                .map_err(Refusal::Store)?;
        }
        let mut s = budget.state.lock().expect("spend lock");
        if s.used() + cost > limit {
            drop(s);
            inner.deferred.fetch_add(1, Ordering::Relaxed);
            let next = window + inner.window_ms();
            let wait =
                Duration::from_millis((next - now).max(1000) as u64).min(inner.settings.recheck);
            return Err(Refusal::OverCap(OverCap { vendor, wait }));
        }
        s.pending += cost;
        let remaining = limit - s.used();
        drop(s);
        metrics.spend(
            vendor.as_str(),
            &cap.unit(),
            units_f64(&cap, limit),
            units_f64(&cap, remaining),
        );
        Ok(Some(Reservation {
            inner: inner.clone(),
            vendor,
            cost,
        }))
    }
}

/// The caller's hook (`crate::call`): a reservation to hold until the ledger row is
/// committed, or the error that ends this delivery's calls.
pub(crate) async fn hook(
    guard: &SpendGuard,
    store: &Store,
    metrics: &Metrics,
    api: &Api,
) -> Result<Option<Reservation>, crate::call::CallError> {
    guard.check(store, metrics, api).await.map_err(|r| match r {
        Refusal::OverCap(o) => crate::call::CallError::OverCap(o),
        Refusal::Store(e) => crate::call::CallError::Store(e),
    })
}

impl BudgetState {
    fn used(&self) -> i64 {
        self.spent + self.pending + self.carried
    }
}

impl Inner {
    fn now_ms(&self) -> i64 {
        kyc_store::now_ms() + self.clock_offset_ms.load(Ordering::SeqCst)
    }

    fn window_ms(&self) -> i64 {
        self.settings.window.as_millis().max(1) as i64
    }

    fn window_start(&self, now_ms: i64) -> i64 {
        self.settings.zone.window_start(now_ms, self.window_ms())
    }

    /// What one call of `api` costs against its vendor's cap; `None` if the cap does not
    /// count it (queries, session set-up calls other than the one that opens a session).
    fn cost(&self, api: &Api) -> Option<i64> {
        let cap = self.settings.caps.get(api.vendor)?;
        let counted: Vec<&str> = if api.vendor == Vendor::Baidu {
            if api.name != BAIDU_SESSION {
                return None;
            }
            // A session may end in any of Baidu's charges: reserve the dearest.
            billed(Vendor::Baidu).collect()
        } else {
            if !BILLED_PRODUCTS.contains(&(api.vendor, api.product)) {
                return None;
            }
            vec![api.product]
        };
        Some(
            counted
                .into_iter()
                .map(|p| self.unit_cost(&cap, api.vendor, p))
                .max()
                .unwrap_or(1),
        )
    }

    /// One call of `product` in cap units: 1 for a calls cap, its price for a money cap.
    fn unit_cost(&self, cap: &SpendCap, vendor: Vendor, product: &str) -> i64 {
        match cap {
            SpendCap::Calls(_) => 1,
            SpendCap::Money(_) => self
                .settings
                .prices
                .price(vendor, product)
                .map_or(0, |p| p.amount.units()),
        }
    }

    /// Reads the vendor's spend in the current window from the database.
    async fn read(
        &self,
        store: &Store,
        metrics: &Metrics,
        vendor: Vendor,
    ) -> Result<(), StoreError> {
        let Some(cap) = self.settings.caps.get(vendor) else {
            return Ok(());
        };
        let budget = &self.budgets[&vendor];
        let _one = budget.refresh.lock().await;
        let now = self.now_ms();
        let window = self.window_start(now);
        // The window in the database's (system) time.
        let since = window - self.clock_offset_ms.load(Ordering::SeqCst);
        budget.state.lock().expect("spend lock").begin_read();
        let rows = store.spend_since(vendor.as_str(), since).await;
        let mut s = budget.state.lock().expect("spend lock");
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                s.end_read();
                return Err(e);
            }
        };
        s.spent = rows
            .iter()
            .filter(|r| BILLED_PRODUCTS.contains(&(vendor, r.product.as_str())))
            .map(|r| {
                self.unit_cost(&cap, vendor, &r.product)
                    .saturating_mul(r.calls)
            })
            .fold(0_i64, i64::saturating_add);
        s.carried = s.released_during_read;
        s.end_read();
        s.window_start = Some(window);
        s.read_at = Some(Instant::now());
        let limit = cap_units(&cap);
        let remaining = (limit - s.used()).max(0);
        drop(s);
        metrics.spend(
            vendor.as_str(),
            &cap.unit(),
            units_f64(&cap, limit),
            units_f64(&cap, remaining),
        );
        Ok(())
    }
}

impl BudgetState {
    fn begin_read(&mut self) {
        self.reading = true;
        self.released_during_read = 0;
    }

    fn end_read(&mut self) {
        self.reading = false;
    }
}

fn cap_units(cap: &SpendCap) -> i64 {
    match cap {
        SpendCap::Calls(n) => i64::try_from(*n).unwrap_or(i64::MAX),
        SpendCap::Money(m) => m.amount.units(),
    }
}

/// A gauge value: calls, or the currency's units (a float for Prometheus only).
fn units_f64(cap: &SpendCap, units: i64) -> f64 {
    match cap {
        SpendCap::Calls(_) => units as f64,
        SpendCap::Money(_) => kyc_schemas::money::Amount::from_units(units).to_f64_lossy(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(caps: &str, prices: &str) -> SpendSettings {
        SpendSettings {
            caps: SpendCaps::parse(caps).unwrap(),
            prices: PriceTable::parse(prices).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn a_money_cap_needs_a_price_in_its_currency_for_every_billed_product() {
        let err = settings("huawei=10.00CNY", "huawei.ivs-standard=1 CNY")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("huawei.ivs-idcard-extention"), "{err}");
        let err = settings(
            "huawei=10.00CNY",
            "huawei.ivs-standard=1 CNY,huawei.ivs-idcard-extention=1 USD",
        )
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("priced in USD"), "{err}");
        settings(
            "huawei=10.00CNY,alibaba=3calls",
            "huawei.ivs-standard=1 CNY,huawei.ivs-idcard-extention=0.5 CNY",
        )
        .validate()
        .unwrap();
    }

    #[test]
    fn a_price_for_a_product_nobody_bills_is_refused_by_name() {
        let err = settings("", "huawei.ivs-standrad=1 CNY")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("huawei.ivs-standrad") && err.contains("ivs-standard"),
            "{err}"
        );
    }

    #[test]
    fn caps_count_billed_calls_and_baidu_sessions_only() {
        let s = settings(
            "huawei=5.00CNY,alibaba=3calls,baidu=2calls",
            "huawei.ivs-standard=1.5 CNY,huawei.ivs-idcard-extention=0.25 CNY",
        );
        let guard = SpendGuard::new(s);
        let i = guard.inner.as_ref().unwrap();
        let api = |vendor, name, product| Api {
            vendor,
            name,
            product,
        };
        assert_eq!(
            i.cost(&api(Vendor::Huawei, "ivs-standard", "ivs-standard")),
            Some(15_000)
        );
        assert_eq!(
            i.cost(&api(
                Vendor::Alibaba,
                "DescribeVerifyResult",
                "DescribeVerifyResult"
            )),
            None
        );
        assert_eq!(
            i.cost(&api(Vendor::Alibaba, "VerifyMaterial", "VerifyMaterial")),
            Some(1)
        );
        assert_eq!(
            i.cost(&api(Vendor::Baidu, "verifyToken/generate", "faceprint-h5")),
            Some(1)
        );
        assert_eq!(
            i.cost(&api(Vendor::Baidu, "result/getall", "faceprint-h5")),
            None
        );
    }

    #[test]
    fn skipping_to_the_next_window_lands_on_its_start() {
        let guard = SpendGuard::new(settings("huawei=1calls", ""));
        let i = guard.inner.as_ref().unwrap();
        let before = i.window_start(i.now_ms());
        guard.skip_to_next_window();
        let now = i.now_ms();
        assert_eq!(i.window_start(now), before + 86_400_000);
        assert!(now - i.window_start(now) < 60_000);
    }
}
