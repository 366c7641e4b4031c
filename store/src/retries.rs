//! A new attempt for a job an operator chose (`kyc retry`, `kyc dlq replay`): the old
//! outcome moves to `outcome_history`, the job gets a fresh attempt budget, and the job's new
//! message is recorded once the broker confirmed it.
//!
//! `outcomes` stays unique per job, and holds the newest outcome: a redelivery that finds an
//! outcome makes no call, and reports show what the last attempt decided. Only an `error`
//! outcome is ever superseded: a job decided `passed`, `failed`, `not_found` (or `pending`)
//! is never worked again, so nothing is billed twice for it.
//!
//! The budget: the worker counts a job's ledger calls against its attempt budget (as well as
//! the count in the message's headers). A reset records how many calls the job had made, and
//! the worker counts only the calls beyond that ([`Store::calls_before_budget_reset`]). The
//! ledger itself is never changed: every call made stays in it and in billing.

use kyc_schemas::JobId;

use crate::{now_ms, Result, Store};

/// What [`Store::reopen_job`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reopened {
    /// The job may be published again: its `error` outcome (if it had one) is in
    /// `outcome_history` as this generation, and its budget starts afresh.
    Reopened {
        generation: i64,
        superseded_outcome: bool,
    },
    /// The job is decided with this status (not `error`): nothing was changed, and it must
    /// not be published again.
    Decided(String),
}

/// A job of a batch that `kyc retry` may publish again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryCandidate {
    pub job_id: String,
    pub vendor: String,
    /// The job's queue message as the producer published it (personal fields sealed); `None`
    /// for a job produced by an older version or whose personal data was purged.
    pub message: Option<String>,
    /// The reason of its `error` outcome; `None` for a job whose earlier retry was cut short
    /// before the broker confirmed its new message (no outcome now).
    pub reason: Option<String>,
}

/// One superseded outcome, oldest first in [`Store::outcome_history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoricOutcome {
    pub generation: i64,
    pub status: String,
    pub reason: String,
    pub vendor_code: Option<String>,
    pub attempts: i64,
    pub completed_at_ms: i64,
    pub superseded_at_ms: i64,
    /// The operator audit row of the retry or replay that superseded it.
    pub superseded_by: String,
}

const OUTCOME_COLUMNS: &str = "batch_id, vendor, operation, status, reason, vendor_code, \
     vendor_message, similarity, liveness_score, vendor_request_id, vendor_ref, attempts, \
     latency_ms, billed, completed_at_ms";

impl Store {
    /// Prepares `job_id` for a new attempt, in one transaction: an `error` outcome moves to
    /// `outcome_history`, and the job's attempt budget is reset (the calls made so far are
    /// recorded as spent before the reset). A job decided otherwise is left alone
    /// ([`Reopened::Decided`]). A job without an outcome (a poison message, a job the broker
    /// dead-lettered) gets the budget reset only. `audit_id` names the operator action.
    pub async fn reopen_job(&self, job_id: &JobId, audit_id: &str) -> Result<Reopened> {
        let id = job_id.as_str().to_string();
        let mut tx = self.pool().begin().await?;
        let status: Option<(String,)> =
            sqlx::query_as("SELECT status FROM outcomes WHERE job_id = $1")
                .bind(id.clone())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((s,)) = &status {
            if s != "error" {
                return Ok(Reopened::Decided(s.clone()));
            }
        }
        let (generation,): (i64,) = sqlx::query_as(
            "SELECT COALESCE((SELECT generation FROM job_budget_resets WHERE job_id = $1), 0) + 1",
        )
        .bind(id.clone())
        .fetch_one(&mut *tx)
        .await?;
        let now = now_ms();
        let mut superseded_outcome = false;
        if status.is_some() {
            let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO outcome_history (job_id, generation, {OUTCOME_COLUMNS}, \
                 superseded_at_ms, superseded_by) \
                 SELECT job_id, $1, {OUTCOME_COLUMNS}, $2, $3 FROM outcomes \
                 WHERE job_id = $4 AND status = 'error'"
            )))
            .bind(generation)
            .bind(now)
            .bind(audit_id.to_string())
            .bind(id.clone())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM outcomes WHERE job_id = $1 AND status = 'error'")
                .bind(id.clone())
                .execute(&mut *tx)
                .await?;
            superseded_outcome = moved > 0;
        }
        let (calls,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM vendor_calls WHERE job_id = $1")
                .bind(id.clone())
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO job_budget_resets (job_id, generation, calls_before, reset_at_ms, audit_id) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (job_id) DO UPDATE SET generation = $6, calls_before = $7, \
             reset_at_ms = $8, audit_id = $9, republished_at_ms = NULL",
        )
        .bind(id.clone())
        .bind(generation)
        .bind(calls)
        .bind(now)
        .bind(audit_id.to_string())
        .bind(generation)
        .bind(calls)
        .bind(now)
        .bind(audit_id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Reopened::Reopened {
            generation,
            superseded_outcome,
        })
    }

    /// The broker confirmed the job's new message.
    pub async fn mark_republished(&self, job_ids: &[JobId]) -> Result<()> {
        let now = now_ms();
        for id in job_ids {
            sqlx::query("UPDATE job_budget_resets SET republished_at_ms = $1 WHERE job_id = $2")
                .bind(now)
                .bind(id.as_str().to_string())
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    /// How many of the job's ledger calls were made before an operator last gave it a fresh
    /// budget (0 if none did): the worker does not count them against the budget.
    pub async fn calls_before_budget_reset(&self, job_id: &JobId) -> Result<u32> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT calls_before FROM job_budget_resets WHERE job_id = $1")
                .bind(job_id.as_str().to_string())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map_or(0, |r| u32::try_from(r.0).unwrap_or(u32::MAX)))
    }

    /// The jobs of `batch_id` that `kyc retry --status error` publishes again: those whose
    /// outcome is `error` (with `reason`, if given), and those an earlier retry reopened but
    /// could not publish (no outcome, new message never confirmed).
    pub async fn retry_candidates(
        &self,
        batch_id: &str,
        reason: Option<&str>,
    ) -> Result<Vec<RetryCandidate>> {
        let errors: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT o.job_id, o.vendor, j.message_sealed, o.reason FROM outcomes o \
             LEFT JOIN jobs j ON j.job_id = o.job_id \
             WHERE o.batch_id = $1 AND o.status = 'error' AND ($2 = '' OR o.reason = $3) \
             ORDER BY o.job_id",
        )
        .bind(batch_id.to_string())
        .bind(reason.unwrap_or_default().to_string())
        .bind(reason.unwrap_or_default().to_string())
        .fetch_all(self.pool())
        .await?;
        let unfinished: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT j.job_id, j.vendor, j.message_sealed FROM job_budget_resets r \
             JOIN jobs j ON j.job_id = r.job_id \
             WHERE j.batch_id = $1 AND r.republished_at_ms IS NULL \
             AND NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.job_id = r.job_id) \
             ORDER BY j.job_id",
        )
        .bind(batch_id.to_string())
        .fetch_all(self.pool())
        .await?;
        Ok(errors
            .into_iter()
            .map(|(job_id, vendor, message, reason)| RetryCandidate {
                job_id,
                vendor,
                message,
                reason: Some(reason),
            })
            .chain(
                unfinished
                    .into_iter()
                    .map(|(job_id, vendor, message)| RetryCandidate {
                        job_id,
                        vendor,
                        message,
                        reason: None,
                    }),
            )
            .collect())
    }

    /// The job's superseded outcomes, oldest first.
    pub async fn outcome_history(&self, job_id: &JobId) -> Result<Vec<HistoricOutcome>> {
        type Row = (i64, String, String, Option<String>, i64, i64, i64, String);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT generation, status, reason, vendor_code, attempts, completed_at_ms, \
             superseded_at_ms, superseded_by FROM outcome_history WHERE job_id = $1 \
             ORDER BY generation",
        )
        .bind(job_id.as_str().to_string())
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| HistoricOutcome {
                generation: r.0,
                status: r.1,
                reason: r.2,
                vendor_code: r.3,
                attempts: r.4,
                completed_at_ms: r.5,
                superseded_at_ms: r.6,
                superseded_by: r.7,
            })
            .collect())
    }
}
