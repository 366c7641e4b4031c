//! One vendor call, done properly: a limiter token, a ledger row opened *before* the call
//! (so a crash mid-call leaves evidence that it may have been billed), the HTTP exchange,
//! then the retry decision. The last call's ledger row stays pending until the outcome is
//! known, so that row, the billing counter and the outcome commit in one transaction.

use std::future::Future;
use std::time::{Duration, Instant};

use kyc_schemas::{JobId, Reason};
use kyc_store::ledger::OpenCall;
use kyc_store::{CallRecord, Decision, LostCall, NewCall, Store, StoreError};

use crate::limiter::Limiters;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use crate::vendors::{Api, Exchange, VendorError};

/// Why a job could not get a verdict from its calls.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The vendor's last word (attempts spent or a permanent error): becomes the outcome.
    #[error(transparent)]
    Vendor(VendorError),
    /// Our database failed: the job is requeued, nothing is decided.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another delivery of this job took it over (ours outlived its claim): stop, make no call.
    #[error("another delivery of this job holds its claim")]
    ClaimLost,
    /// The next try is too far off to wait in the worker: park the job in a delay queue.
    #[error("retry deferred by {0:?}: {1}")]
    Defer(Duration, VendorError),
    /// A call that can be asked about (see [`Caller::call_about`]) lost its answer: the
    /// client asks the vendor what became of it before calling again.
    #[error("the vendor's answer was lost ({0})")]
    AnswerLost(VendorError),
    /// The vendor's spend cap for this window is reached (see `crate::spend`): no call; the
    /// job waits in a delay queue for the next window, its budgets untouched.
    #[error("spend cap of {} reached; deferred by {:?}", .0.vendor, .0.wait)]
    OverCap(crate::spend::OverCap),
}

/// How long a claim on a job lasts without renewal. While a delivery works on the job, a
/// heartbeat renews it every [`CLAIM_RENEW_EVERY`] (and [`Caller`] renews it before each
/// call), so the lease only has to outlast a few missed beats, not a call. When the worker
/// dies, nothing renews it: the job's redelivery takes over at most this long after the
/// last beat. A commit that waits out a database outage can outlive it; the delivery it holds
/// is unacked, so no other worker has the job unless a duplicate message exists.
pub const CLAIM_LEASE_MS: i64 = 15_000;

/// How often the heartbeat renews a claim: five beats per lease, so four can be missed (a
/// slow database) before the claim lapses.
pub const CLAIM_RENEW_EVERY: Duration = Duration::from_millis(CLAIM_LEASE_MS as u64 / 5);

/// How long after a lost answer the vendor is asked about it (at least: the wait goes to the
/// delay queue when the job may defer, and the next delivery asks).
pub const LOST_ANSWER_SETTLE: Duration = Duration::from_secs(5);

/// Facts about the last call, for the outcome.
#[derive(Debug, Clone, Default)]
pub struct LastCall {
    pub request_id: Option<String>,
    pub latency: Duration,
    pub billable: bool,
}

/// Makes a job's vendor calls. One per job delivery.
#[derive(Debug)]
pub struct Caller<'a> {
    /// When this delivery's claim was last taken or renewed.
    claimed_at: Instant,
    /// Whether a long wait may go to a delay queue (the job has deferrals left).
    can_defer: bool,
    /// This delivery's claim on the job.
    owner: &'a str,
    store: &'a Store,
    metrics: &'a Metrics,
    limiters: &'a Limiters,
    retry: &'a RetryPolicy,
    spend: &'a crate::spend::SpendGuard,
    job_id: &'a JobId,
    /// Calls made for this job so far, across deliveries (continues the numbering).
    attempts: u32,
    pending: Option<(OpenCall, CallRecord)>,
    /// Lost answers the vendor has told us about since: settled with the outcome.
    recovered: Vec<(OpenCall, CallRecord)>,
    last: LastCall,
    retries: u32,
    /// The vendor of the last call (for the consumer's progress watermark).
    vendor: Option<&'static str>,
}

impl<'a> Caller<'a> {
    pub fn new(
        ctx: &'a crate::Context,
        job_id: &'a JobId,
        owner: &'a str,
        prior_attempts: u32,
        can_defer: bool,
    ) -> Self {
        Self {
            // The caller claimed the job just before creating the Caller.
            claimed_at: Instant::now(),
            can_defer,
            owner,
            store: &ctx.store,
            metrics: &ctx.metrics,
            limiters: &ctx.limiters,
            retry: &ctx.retry,
            spend: &ctx.spend,
            job_id,
            attempts: prior_attempts,
            pending: None,
            recovered: Vec::new(),
            last: LastCall::default(),
            retries: 0,
            vendor: None,
        }
    }

    /// Calls `send` until it yields a result or the retry policy gives up.
    pub async fn call<T, F, Fut>(&mut self, api: Api, send: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Exchange<T>>,
    {
        self.call_inner(api, None, false, send).await
    }

    /// Like [`Caller::call`], for a call about `reference` at the vendor (a verify_token):
    /// the reference is written with the ledger row before the call goes out, so a worker
    /// killed mid-call leaves what a later delivery needs to ask the vendor about it.
    pub async fn call_about<T, F, Fut>(
        &mut self,
        api: Api,
        reference: &str,
        send: F,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Exchange<T>>,
    {
        self.call_inner(api, Some(reference), false, send).await
    }

    /// Like [`Caller::call_about`], for a billable call the vendor can be asked about: a lost
    /// answer (a timeout after sending) is not retried blindly. The attempt is settled
    /// `unknown`, the retry wait is served, and [`CallError::AnswerLost`] hands back to the
    /// client, which asks the vendor what became of the call ([`Caller::lost_calls`]) before
    /// calling again.
    pub async fn call_or_ask<T, F, Fut>(
        &mut self,
        api: Api,
        reference: &str,
        send: F,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Exchange<T>>,
    {
        self.call_inner(api, Some(reference), true, send).await
    }

    async fn call_inner<T, F, Fut>(
        &mut self,
        api: Api,
        reference: Option<&str>,
        ask_when_lost: bool,
        mut send: F,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Exchange<T>>,
    {
        let mut schedule = self.retry.schedule();
        loop {
            // A previous call of this job (an earlier step, or a failed attempt) is settled
            // now, in its own transaction, before the next one is opened.
            self.flush().await?;
            // The budget is the job's: earlier deliveries may have spent it (a worker killed
            // after its last try, a job parked in the delay queue after its last try).
            if self.attempts >= self.retry.max_attempts {
                return Err(CallError::Vendor(VendorError::Transient {
                    code: "attempts_exhausted".into(),
                    message: format!(
                        "the job's {} vendor calls were spent by earlier deliveries",
                        self.attempts
                    ),
                    retry_after: None,
                    reason: Reason::VendorInternal,
                }));
            }
            // Spend caps: held from here until the call's ledger row is committed.
            let budget = crate::spend::hook(self.spend, self.store, self.metrics, &api).await?;
            let permit = self.limiters.acquire(&api).await?;
            let preparing = Instant::now();
            for _ in 0..permit.dropped_slots {
                self.metrics.slot_dropped(api.vendor.as_str(), api.name);
            }
            let waited = permit.waited;
            if !waited.is_zero() {
                self.metrics
                    .limiter_wait(api.vendor.as_str(), api.name, waited);
                tracing::debug!(
                    api = api.name,
                    waited_ms = waited.as_millis() as u64,
                    "limiter wait"
                );
            }
            // Renewed before a call once a beat has gone by: if another delivery took the job
            // over meanwhile (a heartbeat that could not reach the database), no call.
            if self.claimed_at.elapsed() > CLAIM_RENEW_EVERY {
                if !self
                    .store
                    .claim_job(self.job_id, self.owner, CLAIM_LEASE_MS)
                    .await?
                {
                    return Err(CallError::ClaimLost);
                }
                self.claimed_at = Instant::now();
            }
            self.attempts += 1;
            self.vendor = Some(api.vendor.as_str());
            let call_id = Store::new_call_id();
            let opened = self
                .store
                .open_call_as(
                    &call_id,
                    NewCall {
                        job_id: self.job_id,
                        vendor: api.vendor.as_str(),
                        api: api.name,
                        product: api.product,
                        attempt: self.attempts,
                        reference,
                    },
                )
                .await;
            drop(budget);
            let open = match opened {
                Ok(open) => open,
                Err(e) => {
                    // The insert may have committed with its reply lost (a database outage):
                    // no call follows, so take the row back while we still know its id, or
                    // the next delivery would count it as an `unknown`, possibly billed call.
                    self.withdraw_unsent(&call_id).await;
                    return Err(e.into());
                }
            };
            self.limiters.prepared(preparing.elapsed());
            // The writes above can stall on the database; a slot that went by meanwhile is
            // dropped and a fresh one taken, so calls held up together do not go out together.
            let permit = if permit.is_fresh() {
                permit
            } else {
                drop(permit);
                self.metrics.slot_dropped(api.vendor.as_str(), api.name);
                match self.limiters.acquire(&api).await {
                    Ok(p) => p,
                    Err(e) => {
                        self.withdraw_unsent(&call_id).await;
                        return Err(e.into());
                    }
                }
            };
            // Woken a little early to write the ledger row: the call goes out on its slot.
            permit.until_slot().await;
            let started = Instant::now();
            let ex = send().await;
            drop(permit);
            let result = match &ex.result {
                Ok(_) => "ok",
                Err(VendorError::Throttled { .. }) => "throttled",
                Err(VendorError::Transient { .. }) => "transient",
                Err(VendorError::AuthExpired { .. }) => "auth_expired",
                Err(VendorError::Permanent { .. }) => "refused",
            };
            self.metrics
                .vendor_call(api.vendor.as_str(), api.name, result, started.elapsed());
            self.last = LastCall {
                request_id: ex.request_id.clone(),
                latency: started.elapsed(),
                billable: ex.billable,
            };
            self.pending = Some((
                open,
                CallRecord {
                    http_status: ex.http_status,
                    vendor_code: ex.vendor_code.clone(),
                    vendor_request_id: ex.request_id,
                    billable: ex.billable,
                    answer_lost: ex.answer_lost,
                },
            ));
            let lost = ex.answer_lost && ask_when_lost;
            match ex.result {
                Ok(v) => return Ok(v),
                // A lost answer is asked about only after the vendor had time to finish the
                // call: asked too early, it would say "nothing recorded" and the next call
                // would race the lost one.
                Err(e) => match schedule.next_delay(&e, self.attempts).map(|d| {
                    if lost {
                        d.max(LOST_ANSWER_SETTLE)
                    } else {
                        d
                    }
                }) {
                    Some(delay) if delay > self.retry.max_in_process_delay && self.can_defer => {
                        // The attempt's ledger row is settled before anything else can fail.
                        self.flush().await?;
                        if let VendorError::Throttled { .. } = &e {
                            self.hold(&api, delay).await;
                        }
                        self.metrics.retry(api.vendor.as_str(), api.name, result);
                        return Err(CallError::Defer(delay, e));
                    }
                    Some(delay) => {
                        let delay = schedule.in_process(delay);
                        if let VendorError::Throttled { .. } = &e {
                            // Everyone sharing the quota pauses, not only this job.
                            self.hold(&api, delay).await;
                        }
                        self.retries += 1;
                        self.metrics.retry(api.vendor.as_str(), api.name, result);
                        tracing::info!(
                            api = api.name,
                            code = e.code(),
                            delay_ms = delay.as_millis() as u64,
                            "vendor call failed, retrying"
                        );
                        if let Err(e) = self.wait(delay).await {
                            // Settle the failed attempt's ledger row before giving up the job.
                            self.flush().await?;
                            return Err(e);
                        }
                        if lost {
                            self.flush().await?;
                            return Err(CallError::AnswerLost(e));
                        }
                    }
                    None => return Err(CallError::Vendor(e)),
                },
            }
        }
    }

    /// Takes back the ledger row of a call that was never sent. Tried for as long as an
    /// outage is worth waiting out (the job is held meanwhile, as when a verdict waits for
    /// its commit).
    async fn withdraw_unsent(&self, call_id: &str) {
        let give_up = Instant::now() + WITHDRAW_FOR;
        let mut delay = Duration::from_millis(200);
        while let Err(w) = self.store.withdraw_call(call_id).await {
            if Instant::now() >= give_up {
                tracing::warn!(error = %w, "could not withdraw the ledger row of a call never sent");
                break;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(COMMIT_RETRY_MAX);
        }
    }

    /// Sleeps `delay`, renewing the job's claim so that a long back-off does not let a
    /// duplicate delivery take the job over.
    async fn wait(&self, delay: Duration) -> Result<(), CallError> {
        let step = Duration::from_millis(CLAIM_LEASE_MS as u64 / 2);
        let mut left = delay;
        while !left.is_zero() {
            let now = left.min(step);
            tokio::time::sleep(now).await;
            left -= now;
            if !left.is_zero()
                && !self
                    .store
                    .claim_job(self.job_id, self.owner, CLAIM_LEASE_MS)
                    .await?
            {
                return Err(CallError::ClaimLost);
            }
        }
        Ok(())
    }

    /// Pauses the API for everyone after a throttle answer. A failure here only loses the
    /// pause (the vendor will throttle again), so it is logged, not fatal.
    async fn hold(&self, api: &Api, delay: Duration) {
        if let Err(e) = self.limiters.throttled(api, delay).await {
            tracing::warn!(api = api.name, error = %e, "could not record the throttle pause");
        }
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if let Some((open, rec)) = &self.pending {
            with_retries(|| self.store.complete_call(open, rec)).await?;
            self.pending = None;
        }
        Ok(())
    }

    /// When an outcome first named `reference` for `vendor` (see
    /// [`Store::first_reference_ms`]).
    pub async fn first_reference_ms(
        &self,
        vendor: &str,
        reference: &str,
    ) -> Result<Option<i64>, CallError> {
        Ok(self.store.first_reference_ms(vendor, reference).await?)
    }

    /// This job's calls at `apis` whose answer was lost (a worker died mid-call, or a
    /// timeout after sending), with the references written before they went out.
    pub async fn lost_calls(&self, apis: &[Api]) -> Result<Vec<LostCall>, CallError> {
        let names: Vec<&str> = apis.iter().map(|a| a.name).collect();
        Ok(self.store.lost_calls(self.job_id, &names).await?)
    }

    /// The vendor, asked, said what became of a lost call: it is settled with the outcome
    /// (same transaction) as answered, billed if `billable`.
    pub fn recovered(&mut self, lost: &LostCall, vendor_code: Option<String>, billable: bool) {
        // The outcome's `billed` says whether the job's deciding answer was billed.
        self.last.billable |= billable;
        tracing::info!(
            api = lost.api,
            billable,
            "the vendor's answer to a lost call was recovered by asking"
        );
        self.recovered.push((
            lost.call.clone(),
            CallRecord {
                http_status: None,
                vendor_code,
                vendor_request_id: None,
                billable,
                answer_lost: false,
            },
        ));
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn retries(&self) -> u32 {
        self.retries
    }

    pub fn last(&self) -> &LastCall {
        &self.last
    }

    /// Writes the outcome together with the deciding call's ledger row and billing counter.
    /// Returns false if another delivery of the job had already written an outcome.
    ///
    /// A vendor answer has been paid for: a failing commit is retried here for a while before
    /// the job is handed back (which would make the call again).
    /// `charges` are the vendor's own charge entries (Baidu getall), written with the outcome.
    pub async fn finish(
        self,
        outcome: &kyc_schemas::Outcome,
        charges: &[kyc_store::ChargeEntry],
        dead_letter_owed: Option<&str>,
    ) -> Result<bool, StoreError> {
        let decision = Decision {
            outcome,
            charges,
            recovered: &self.recovered,
            dead_letter_owed,
            // The job is decided: its claim goes with the outcome, in the same transaction.
            release: Some(self.owner),
        };
        let none = CallRecord::default();
        let (open, rec) = match &self.pending {
            Some((open, rec)) => (Some(open), rec),
            None => (None, &none),
        };
        // The vendor has answered (and may have billed): that answer is kept until it is
        // committed, however long the database is away. Giving up here would requeue the job,
        // and its redelivery would find the call `unknown` and call the vendor again. The
        // delivery stays unacked meanwhile, so no other worker takes the job.
        let mut delay = Duration::from_millis(200);
        let mut failures = 0u32;
        loop {
            match self.store.complete_with_outcome(open, rec, decision).await {
                Ok(v) => {
                    if failures > 0 {
                        tracing::info!(failures, "outcome committed after the database returned");
                    }
                    return Ok(v);
                }
                Err(e) => {
                    failures += 1;
                    // Waiting out an outage is progress, not a stuck consumer.
                    if let Some(vendor) = self.vendor {
                        self.metrics.progress.touch(vendor);
                    }
                    tracing::warn!(error = %e, failures, delay_ms = delay.as_millis() as u64, "committing the vendor's answer failed; keeping it and retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(COMMIT_RETRY_MAX);
                }
            }
        }
    }
}

/// Longest pause between two tries of committing an answered call.
const COMMIT_RETRY_MAX: Duration = Duration::from_secs(5);

/// Retries a database write with backoff (0.2, 0.4, 0.8, 1.6, 3.2 s: about 6 s in all), for
/// writes made before a call: giving up there costs nothing but a redelivery.
/// How long a worker keeps trying to take back the ledger row of a call it never sent.
const WITHDRAW_FOR: Duration = Duration::from_secs(120);

async fn with_retries<T, F, Fut>(mut write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut delay = Duration::from_millis(200);
    for _ in 0..5 {
        match write().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "database write failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    write().await
}
