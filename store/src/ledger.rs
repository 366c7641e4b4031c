//! The vendor-call ledger, the billing counters, and the outcome, written so that
//! at-least-once delivery has exactly-once effects:
//!
//! 1. A ledger row is opened (`state = 'open'`) *before* the vendor call. If the worker dies
//!    during the call, the row survives and says a call may have been billed.
//! 2. After the call the row is completed (`done`) and, if the call is billable, the billing
//!    counter moves — in the same transaction, so the counter always equals the billable
//!    `done` rows. The deciding call also writes the outcome in that transaction.
//! 3. A redelivered job first checks for an outcome (then makes no call at all) and turns
//!    its left-over `open` rows into `unknown`, which reconciliation lists.

use kyc_schemas::{JobId, Outcome};

use sqlx::AnyConnection;

use crate::group::Effects;
use crate::rows::{NewRow, Row};
use crate::{day_of, now_ms, Result, Store};

/// A vendor call about to be made.
#[derive(Debug, Clone)]
pub struct NewCall<'a> {
    pub job_id: &'a JobId,
    pub vendor: &'a str,
    /// The endpoint, e.g. `ivs-standard`.
    pub api: &'a str,
    /// What the vendor bills it as; the billing counters' key.
    pub product: &'a str,
    /// 1-based across all deliveries of the job.
    pub attempt: u32,
    /// What the call is about at the vendor (Alibaba TicketId, Baidu verify_token), written
    /// with the row before the call goes out: a delivery that finds the call `unknown` asks
    /// the vendor about this reference instead of calling again.
    pub reference: Option<&'a str>,
}

/// What came back from a vendor call, as far as the ledger cares.
#[derive(Debug, Clone, Default)]
pub struct CallRecord {
    pub http_status: Option<u16>,
    pub vendor_code: Option<String>,
    pub vendor_request_id: Option<String>,
    pub billable: bool,
    /// No answer came back (a timeout after sending): the call is recorded `unknown`, as
    /// possibly billed, instead of `done`.
    pub answer_lost: bool,
}

/// One charge as the vendor reports it (Baidu `result/getall`: an attempt's verify or match
/// charge, or its OCR charge).
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeEntry {
    pub vendor: String,
    /// The vendor's reference for the session (Baidu verify_token).
    pub reference: String,
    /// The attempt's `order` (1-based).
    pub attempt: u32,
    /// The billing product, e.g. `faceprint-verify`.
    pub product: String,
    pub charged: bool,
    /// Calls within the attempt (OCR `ocr_count`), 1 otherwise.
    pub calls: u32,
    /// As the vendor wrote it; empty when not charged.
    pub charge_time: String,
    /// UTC day the charge falls on (`YYYY-MM-DD`).
    pub day: String,
}

/// An opened ledger row.
#[derive(Debug, Clone)]
pub struct OpenCall {
    pub call_id: String,
    /// The job the call is for: a group commit takes one write per job (see `rows`).
    pub(crate) job_id: String,
    pub(crate) vendor: String,
    pub(crate) product: String,
}

/// A call of the job whose answer was lost (`unknown`), with what it was about.
#[derive(Debug, Clone)]
pub struct LostCall {
    pub call: OpenCall,
    pub api: String,
    pub reference: Option<String>,
}

/// Everything written with a job's outcome, in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub outcome: &'a Outcome,
    /// What the vendor reports it charged (Baidu getall).
    pub charges: &'a [ChargeEntry],
    /// Calls whose answer was lost and that the vendor has since told us about (a recovery
    /// query): settled as answered, billed as the vendor says.
    pub recovered: &'a [(OpenCall, CallRecord)],
    /// The job gave up: a copy is owed to the dead-letter queue, for this reason, until
    /// [`Store::dead_letter_sent`].
    pub dead_letter_owed: Option<&'a str>,
    /// This delivery's claim (its owner id), released with the outcome.
    pub release: Option<&'a str>,
}

/// What [`Store::start_job`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStart {
    /// Claimed for this delivery. `unknown`: calls an earlier delivery left open, just
    /// marked unknown; `calls`: the job's calls that count against its attempt budget (all of
    /// them, or those since an operator reset the budget).
    Claimed { unknown: u64, calls: u32 },
    /// The job has an outcome; `owed` is the reason of a dead-letter copy still owed.
    /// `claimed`: this delivery took the claim (and must release it). `calls`: as for
    /// `Claimed` (what the copy tells an operator the job spent).
    Decided {
        owed: Option<String>,
        claimed: bool,
        calls: u32,
    },
    /// Another live delivery holds the claim, and there is no outcome yet.
    Held,
}

impl Store {
    /// Opens a ledger row before a vendor call; commits immediately so that it survives a
    /// crash during the call.
    pub async fn open_call(&self, c: NewCall<'_>) -> Result<OpenCall> {
        self.open_call_as(&Self::new_call_id(), c).await
    }

    /// A fresh ledger row id, chosen before the row is written so that a writer whose
    /// commit reply was lost can still name (and withdraw) the row it may have written.
    pub fn new_call_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// [`Store::open_call`] with the row id chosen by the caller. Committed (with other jobs'
    /// writes, see `group`) before this returns, so the call that follows leaves evidence.
    pub async fn open_call_as(&self, call_id: &str, c: NewCall<'_>) -> Result<OpenCall> {
        let now = now_ms();
        let job_id = c.job_id.as_str().to_string();
        let row = NewRow {
            call_id: call_id.to_string(),
            vendor: c.vendor.to_string(),
            api: c.api.to_string(),
            product: c.product.to_string(),
            attempt: i64::from(c.attempt),
            started_at_ms: now,
            day: day_of(now),
            reference: c.reference.map(str::to_string),
        };
        self.group.row(Row::open(job_id.clone(), row)).await?;
        Ok(OpenCall {
            call_id: call_id.to_string(),
            job_id,
            vendor: c.vendor.to_string(),
            product: c.product.to_string(),
        })
    }

    /// Removes a row that is still `open` because its call was never sent: the insert failed
    /// as far as the writer knows (its reply was lost in a database outage), so no call
    /// followed. Without this, the next delivery would find the row open and count a call
    /// that never reached the vendor as `unknown` (possibly billed). True if a row went.
    pub async fn withdraw_call(&self, call_id: &str) -> Result<bool> {
        let call_id = call_id.to_string();
        self.group
            .run(move |conn, _| {
                let call_id = call_id.clone();
                Box::pin(async move {
                    let n = sqlx::query(
                        "DELETE FROM vendor_calls WHERE call_id = $1 AND state = 'open'",
                    )
                    .bind(call_id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    Ok(n > 0)
                })
            })
            .await
    }

    /// Completes a ledger row (and moves the billing counter) without deciding the job:
    /// a throttled or failed attempt that will be retried.
    pub async fn complete_call(&self, call: &OpenCall, rec: &CallRecord) -> Result<()> {
        self.group
            .row(Row::complete(call.clone(), rec.clone()))
            .await
    }

    /// Completes the deciding call and writes the job's outcome in one transaction. `call` is
    /// `None` when no vendor call was made (e.g. a material could not be fetched). Returns
    /// false if the job already had an outcome (a concurrent redelivery won); the ledger rows
    /// are completed either way, because the calls did happen.
    ///
    /// `d.charges` (what the vendor reports it charged) are written in the same transaction
    /// when the outcome is new; entries already known (same vendor, reference, attempt,
    /// product) are skipped, and only new charged entries move `vendor_charges`.
    ///
    /// `d.release` names this delivery's claim on the job, dropped in the same transaction:
    /// the job is decided, so no delivery needs to hold it any more.
    pub async fn complete_with_outcome(
        &self,
        call: Option<&OpenCall>,
        rec: &CallRecord,
        d: Decision<'_>,
    ) -> Result<bool> {
        self.group
            .row(Row::decide(
                call.cloned(),
                rec.clone(),
                d.outcome.clone(),
                d.charges.to_vec(),
                d.recovered.to_vec(),
                d.dead_letter_owed.map(str::to_string),
                d.release.map(str::to_string),
            ))
            .await
    }

    /// The job's calls whose answer was lost (`unknown`) at `apis`, oldest first.
    pub async fn lost_calls(&self, job_id: &JobId, apis: &[&str]) -> Result<Vec<LostCall>> {
        let rows: Vec<(String, String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT call_id, vendor, product, api, reference FROM vendor_calls \
             WHERE job_id = $1 AND state = 'unknown' ORDER BY attempt",
        )
        .bind(job_id.as_str().to_string())
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter(|r| apis.contains(&r.3.as_str()))
            .map(|(call_id, vendor, product, api, reference)| LostCall {
                call: OpenCall {
                    call_id,
                    job_id: job_id.as_str().to_string(),
                    vendor,
                    product,
                },
                api,
                reference,
            })
            .collect())
    }

    /// `None` if the job has no outcome yet; else the reason of a dead-letter copy it still
    /// owes (its outcome was recorded, the copy not yet confirmed by the broker), if any.
    pub async fn outcome_owes(&self, job_id: &JobId) -> Result<Option<Option<String>>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT dead_letter_owed FROM outcomes WHERE job_id = $1")
                .bind(job_id.as_str().to_string())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|r| r.0))
    }

    /// The broker confirmed the job's dead-letter copy: nothing is owed any more.
    pub async fn dead_letter_sent(&self, job_id: &JobId) -> Result<()> {
        sqlx::query("UPDATE outcomes SET dead_letter_owed = NULL WHERE job_id = $1")
            .bind(job_id.as_str().to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Claims `job_id` for `owner` until `lease_ms` from now, or renews the owner's claim.
    /// False if another owner holds a live claim: then another delivery of the same job is
    /// being worked on, and this one must not call the vendor.
    pub async fn claim_job(&self, job_id: &JobId, owner: &str, lease_ms: i64) -> Result<bool> {
        let (id, owner) = (job_id.as_str().to_string(), owner.to_string());
        self.group.row(Row::claim(id, owner, lease_ms)).await
    }

    /// What a delivery finds when it starts on a job, in one transaction: the claim taken
    /// (or renewed), the outcome looked up, and calls left `open` by a dead delivery marked
    /// `unknown`. Two statements (for all the jobs of a group, see `rows`) when nothing was
    /// left open (the usual case), a third when something was.
    pub async fn start_job(&self, job_id: &JobId, owner: &str, lease_ms: i64) -> Result<JobStart> {
        let (id, owner) = (job_id.as_str().to_string(), owner.to_string());
        self.group.row(Row::start(id, owner, lease_ms)).await
    }

    /// Drops the owner's claim (the job is handed back; a decided job's claim goes with its
    /// outcome, see [`Decision::release`]).
    pub async fn release_claim(&self, job_id: &JobId, owner: &str) -> Result<()> {
        let (id, owner) = (job_id.as_str().to_string(), owner.to_string());
        self.group.row(Row::release(id, owner)).await
    }
}

/// Writes the vendor's charge entries; each new charged one counts one charged call in
/// `vendor_charges` for its product and day (an attempt's OCR charge is one charge however
/// many OCR calls it made, as in getall's `ocr_charge_count`). The counters are moved at the
/// end of the group's transaction, in key order (see `group::Effects`): rows every job's
/// group may touch, taken in job order here, could deadlock two replicas' groups.
pub(crate) async fn insert_charges(
    conn: &mut AnyConnection,
    fx: &mut Effects,
    job_id: &str,
    charges: &[ChargeEntry],
) -> Result<()> {
    let now = now_ms();
    for c in charges {
        let new = sqlx::query(
            "INSERT INTO vendor_charge_entries (vendor, reference, attempt, product, job_id, charged, calls, \
             charge_time, day, recorded_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (vendor, reference, attempt, product) DO NOTHING",
        )
        .bind(c.vendor.clone())
        .bind(c.reference.clone())
        .bind(i64::from(c.attempt))
        .bind(c.product.clone())
        .bind(job_id.to_string())
        .bind(i64::from(c.charged))
        .bind(i64::from(c.calls))
        .bind(c.charge_time.clone())
        .bind(c.day.clone())
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            > 0;
        if new && c.charged {
            *fx.charges
                .entry((c.vendor.clone(), c.product.clone(), c.day.clone()))
                .or_default() += 1;
        }
    }
    Ok(())
}
