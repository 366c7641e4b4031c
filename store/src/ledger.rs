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
    vendor: String,
    product: String,
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
        let row = (
            call_id.to_string(),
            c.job_id.as_str().to_string(),
            c.vendor.to_string(),
            c.api.to_string(),
            c.product.to_string(),
            i64::from(c.attempt),
            now,
            day_of(now),
            c.reference.map(str::to_string),
        );
        self.group
            .run(move |conn, _| {
                let row = row.clone();
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO vendor_calls (call_id, job_id, vendor, api, product, attempt, state, started_at_ms, day, reference) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9)",
                    )
                    .bind(row.0)
                    .bind(row.1)
                    .bind(row.2)
                    .bind(row.3)
                    .bind(row.4)
                    .bind(row.5)
                    .bind(row.6)
                    .bind(row.7)
                    .bind(row.8)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await?;
        Ok(OpenCall {
            call_id: call_id.to_string(),
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
        let (call, rec) = (call.clone(), rec.clone());
        self.group
            .run(move |conn, fx| {
                let (call, rec) = (call.clone(), rec.clone());
                Box::pin(async move { complete_in(conn, fx, &call, &rec).await })
            })
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
        let call = call.cloned();
        let rec = rec.clone();
        let outcome = d.outcome.clone();
        let charges = d.charges.to_vec();
        let recovered = d.recovered.to_vec();
        let owed = d.dead_letter_owed.map(str::to_string);
        let release = d.release.map(str::to_string);
        self.group
            .run(move |conn, fx| {
                let (call, rec, outcome) = (call.clone(), rec.clone(), outcome.clone());
                let (charges, recovered) = (charges.clone(), recovered.clone());
                let (owed, release) = (owed.clone(), release.clone());
                Box::pin(async move {
                    for (lost, answer) in &recovered {
                        complete_in(conn, fx, lost, answer).await?;
                    }
                    if let Some(call) = &call {
                        complete_in(conn, fx, call, &rec).await?;
                    }
                    let inserted = insert_outcome(conn, &outcome, owed.as_deref()).await?;
                    if inserted {
                        insert_charges(conn, outcome.job_id.as_str(), &charges).await?;
                    }
                    if let Some(owner) = release {
                        release_in(conn, outcome.job_id.as_str(), &owner).await?;
                    }
                    Ok(inserted)
                })
            })
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
        self.group
            .run(move |conn, _| {
                let (id, owner) = (id.clone(), owner.clone());
                Box::pin(async move { claim_in(conn, &id, &owner, lease_ms).await })
            })
            .await
    }

    /// What a delivery finds when it starts on a job, in one transaction: the claim taken
    /// (or renewed), the outcome looked up, and calls left `open` by a dead delivery marked
    /// `unknown`. Two statements when nothing was left open (the usual case), a third when
    /// something was.
    pub async fn start_job(&self, job_id: &JobId, owner: &str, lease_ms: i64) -> Result<JobStart> {
        let (id, owner) = (job_id.as_str().to_string(), owner.to_string());
        self.group
            .run(move |conn, _| {
                let (id, owner) = (id.clone(), owner.clone());
                Box::pin(async move { start_in(conn, &id, &owner, lease_ms).await })
            })
            .await
    }

    /// Drops the owner's claim (the job is handed back; a decided job's claim goes with its
    /// outcome, see [`Decision::release`]).
    pub async fn release_claim(&self, job_id: &JobId, owner: &str) -> Result<()> {
        let (id, owner) = (job_id.as_str().to_string(), owner.to_string());
        self.group
            .run(move |conn, _| {
                let (id, owner) = (id.clone(), owner.clone());
                Box::pin(async move { release_in(conn, &id, &owner).await })
            })
            .await
    }
}

async fn claim_in(conn: &mut AnyConnection, id: &str, owner: &str, lease_ms: i64) -> Result<bool> {
    let now = now_ms();
    let row: Option<(String,)> = sqlx::query_as(
        "INSERT INTO job_claims (job_id, owner, until_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (job_id) DO UPDATE SET owner = $4, until_ms = $5 \
         WHERE job_claims.until_ms < $6 OR job_claims.owner = $7 \
         RETURNING job_id",
    )
    .bind(id.to_string())
    .bind(owner.to_string())
    .bind(now + lease_ms)
    .bind(owner.to_string())
    .bind(now + lease_ms)
    .bind(now)
    .bind(owner.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some())
}

async fn release_in(conn: &mut AnyConnection, id: &str, owner: &str) -> Result<()> {
    sqlx::query("DELETE FROM job_claims WHERE job_id = $1 AND owner = $2")
        .bind(id.to_string())
        .bind(owner.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn start_in(
    conn: &mut AnyConnection,
    id: &str,
    owner: &str,
    lease_ms: i64,
) -> Result<JobStart> {
    let claimed = claim_in(conn, id, owner, lease_ms).await?;
    // Everything else the delivery needs to know, in one round trip: the outcome (and a
    // dead-letter copy it owes), the job's calls, those left open, and the calls made before
    // an operator gave the job a fresh budget (`kyc retry`, `kyc dlq replay`), which stay in
    // the ledger but no longer count against it.
    let (decided, owed, calls, open, before): (i64, Option<String>, i64, i64, i64) =
        sqlx::query_as(
            "SELECT \
           (SELECT COUNT(*) FROM outcomes WHERE job_id = $1), \
           (SELECT dead_letter_owed FROM outcomes WHERE job_id = $2), \
           (SELECT COUNT(*) FROM vendor_calls WHERE job_id = $3), \
           (SELECT COUNT(*) FROM vendor_calls WHERE job_id = $4 AND state = 'open'), \
           COALESCE((SELECT calls_before FROM job_budget_resets WHERE job_id = $5), 0)",
        )
        .bind(id.to_string())
        .bind(id.to_string())
        .bind(id.to_string())
        .bind(id.to_string())
        .bind(id.to_string())
        .fetch_one(&mut *conn)
        .await?;
    Ok(match (decided > 0, claimed) {
        (true, _) => JobStart::Decided {
            owed,
            claimed,
            calls: (calls - before).max(0) as u32,
        },
        (false, false) => JobStart::Held,
        (false, true) => {
            let unknown = if open > 0 {
                sqlx::query(
                    "UPDATE vendor_calls SET state = 'unknown', finished_at_ms = $1 WHERE job_id = $2 AND state = 'open'",
                )
                .bind(now_ms())
                .bind(id.to_string())
                .execute(&mut *conn)
                .await?
                .rows_affected()
            } else {
                0
            };
            JobStart::Claimed {
                unknown,
                calls: u32::try_from((calls - before).max(0)).unwrap_or(u32::MAX),
            }
        }
    })
}

/// Completes one ledger row and, if billable, counts it for the billing counter, which the
/// group's transaction moves before it commits (see `group::Effects`).
async fn complete_in(
    conn: &mut AnyConnection,
    fx: &mut Effects,
    call: &OpenCall,
    rec: &CallRecord,
) -> Result<()> {
    let now = now_ms();
    // 'unknown' too: a row marked unknown by a redelivery while this call was still in
    // flight gets its real answer after all, and so does a lost answer the vendor told us
    // about when asked.
    let updated = sqlx::query(
        "UPDATE vendor_calls SET state = $1, finished_at_ms = $2, http_status = $3, vendor_code = $4, \
         vendor_request_id = $5, billable = $6 WHERE call_id = $7 AND state IN ('open', 'unknown') \
         RETURNING day",
    )
    .bind(if rec.answer_lost { "unknown" } else { "done" })
    .bind(now)
    .bind(rec.http_status.map(i64::from))
    .bind(rec.vendor_code.clone())
    .bind(rec.vendor_request_id.clone())
    .bind(i64::from(rec.billable))
    .bind(call.call_id.clone())
    .fetch_optional(&mut *conn)
    .await?;
    if let (Some(row), true) = (updated, rec.billable) {
        use sqlx::Row;
        // The counter is keyed by the day the call started, like the ledger row.
        let day: String = row.try_get(0)?;
        *fx.billing
            .entry((call.vendor.clone(), call.product.clone(), day))
            .or_default() += 1;
    }
    Ok(())
}

async fn insert_outcome(
    conn: &mut AnyConnection,
    o: &Outcome,
    dead_letter_owed: Option<&str>,
) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO outcomes (job_id, batch_id, vendor, operation, status, reason, vendor_code, vendor_message, \
         similarity, liveness_score, vendor_request_id, vendor_ref, attempts, latency_ms, billed, completed_at_ms, \
         dead_letter_owed) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(o.job_id.as_str().to_string())
    .bind(o.batch_id.clone())
    .bind(o.vendor.as_str())
    .bind(o.operation.as_str())
    .bind(o.status.as_str())
    .bind(o.reason.as_str())
    .bind(o.vendor_code.clone())
    .bind(o.vendor_message.clone())
    .bind(crate::nullable_f64(o.similarity))
    .bind(crate::nullable_f64(o.liveness_score))
    .bind(o.vendor_request_id.clone())
    .bind(o.vendor_ref.clone())
    .bind(i64::from(o.attempts))
    .bind(o.latency_ms as i64)
    .bind(i64::from(o.billed))
    .bind(o.completed_at.timestamp_millis())
    .bind(dead_letter_owed.map(str::to_string))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Writes the vendor's charge entries; each new charged one counts one charged call in
/// `vendor_charges` for its product and day (an attempt's OCR charge is one charge however
/// many OCR calls it made, as in getall's `ocr_charge_count`).
async fn insert_charges(
    conn: &mut AnyConnection,
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
            sqlx::query(
                "INSERT INTO vendor_charges (vendor, product, day, charged_calls, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (vendor, product, day) DO UPDATE SET \
                 charged_calls = vendor_charges.charged_calls + 1, updated_at_ms = $5",
            )
            .bind(c.vendor.clone())
            .bind(c.product.clone())
            .bind(c.day.clone())
            .bind(1i64)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
