//! Personal data in the database: how a job's subject is stored, read back, sealed after an
//! upgrade, and removed after the retention period.
//!
//! Only the name and the ID number are kept (the outcomes report shows them), each as an
//! AES-256-GCM envelope ([`kyc_schemas::crypto`]) bound to its column and job id, next to
//! its masked form. Mobile numbers, user ids and material URIs are not stored at all: no
//! later step reads them. The masked forms let the default report run without the key.

use kyc_schemas::mask::{mask_middle, mask_name};
use kyc_schemas::{CryptoError, DataKeys, Job};
use sqlx::Row;

use crate::{now_ms, Result, Store};

/// The associated data of a sealed column value: the column and the row's job id, so a
/// value copied into another row or column does not open.
pub fn column_context(column: &str, job_id: &str) -> String {
    format!("jobs.{column}\u{1f}{job_id}")
}

/// A job's subject as the `jobs` row holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSubject {
    pub name_sealed: Option<String>,
    pub id_number_sealed: Option<String>,
    pub name_masked: Option<String>,
    pub id_number_masked: Option<String>,
    /// Clear values written by a version before sealing, not sealed yet (`kyc migrate` with
    /// a key configured seals them).
    pub legacy_name: Option<String>,
    pub legacy_id_number: Option<String>,
}

/// The subject columns of a new job row, in insert order.
pub(crate) struct SubjectColumns {
    pub(crate) name_sealed: Option<String>,
    pub(crate) id_number_sealed: Option<String>,
    pub(crate) name_masked: Option<String>,
    pub(crate) id_number_masked: Option<String>,
}

impl SubjectColumns {
    pub(crate) fn seal(job: &Job, keys: &DataKeys) -> Self {
        let id = job.job_id.as_str();
        let s = &job.subject;
        Self {
            name_sealed: s
                .name
                .as_ref()
                .map(|n| keys.seal_str(n.as_str(), &column_context("subject_name", id))),
            id_number_sealed: s
                .id_number
                .as_ref()
                .map(|n| keys.seal_str(n.as_str(), &column_context("subject_id_number", id))),
            name_masked: s.name.as_ref().map(|n| n.masked()),
            id_number_masked: s.id_number.as_ref().map(|n| n.masked()),
        }
    }
}

impl StoredSubject {
    /// (name, ID number) masked as reports show them by default; no key needed.
    pub fn masked(&self) -> (String, String) {
        (
            self.name_masked
                .clone()
                .or_else(|| self.legacy_name.as_deref().map(mask_name))
                .unwrap_or_default(),
            self.id_number_masked
                .clone()
                .or_else(|| {
                    self.legacy_id_number
                        .as_deref()
                        .map(|i| mask_middle(i, 3, 4))
                })
                .unwrap_or_default(),
        )
    }

    /// (name, ID number) in clear, opened with the data keys. Empty where nothing is stored
    /// (an operation without them, or purged).
    pub fn open(
        &self,
        job_id: &str,
        keys: &DataKeys,
    ) -> std::result::Result<(String, String), CryptoError> {
        let open = |sealed: &Option<String>, legacy: &Option<String>, column: &str| match sealed {
            Some(s) => keys.open_str(s, &column_context(column, job_id)),
            None => Ok(legacy.clone().unwrap_or_default()),
        };
        Ok((
            open(&self.name_sealed, &self.legacy_name, "subject_name")?,
            open(
                &self.id_number_sealed,
                &self.legacy_id_number,
                "subject_id_number",
            )?,
        ))
    }
}

/// What `kyc purge` removed (rows changed by this run; a second run over the same data
/// counts zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    /// Jobs whose name, ID number (sealed, masked or legacy clear) were removed.
    pub jobs: u64,
    /// Outcomes whose raw vendor message was removed.
    pub vendor_messages: u64,
}

impl Store {
    /// Seals the clear names and ID numbers rows from before sealing still hold, and clears
    /// those columns. Returns how many rows it sealed. Batched, so a large table is done in
    /// bounded transactions; safe to run concurrently (each update re-checks its row).
    pub async fn seal_legacy_subjects(&self, keys: &DataKeys) -> Result<u64> {
        let mut sealed = 0;
        loop {
            let rows = sqlx::query(
                "SELECT job_id, subject_name, subject_id_number FROM jobs \
                 WHERE subject_name IS NOT NULL OR subject_id_number IS NOT NULL LIMIT 500",
            )
            .fetch_all(self.pool())
            .await?;
            if rows.is_empty() {
                return Ok(sealed);
            }
            let mut tx = self.pool().begin().await?;
            for r in rows {
                let job_id: String = r.try_get(0)?;
                let name: Option<String> = r.try_get(1)?;
                let id: Option<String> = r.try_get(2)?;
                let seal = |v: &Option<String>, column: &str| {
                    v.as_ref()
                        .map(|v| keys.seal_str(v, &column_context(column, &job_id)))
                };
                sqlx::query(
                    "UPDATE jobs SET subject_name_sealed = $1, subject_id_number_sealed = $2, \
                     subject_name_masked = $3, subject_id_number_masked = $4, \
                     subject_name = NULL, subject_id_number = NULL WHERE job_id = $5",
                )
                .bind(seal(&name, "subject_name"))
                .bind(seal(&id, "subject_id_number"))
                .bind(name.as_deref().map(mask_name))
                .bind(id.as_deref().map(|i| mask_middle(i, 3, 4)))
                .bind(job_id.clone())
                .execute(&mut *tx)
                .await?;
                sealed += 1;
            }
            tx.commit().await?;
        }
    }

    /// Rows still holding a clear name or ID number from before sealing.
    pub async fn legacy_subject_count(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM jobs WHERE subject_name IS NOT NULL OR subject_id_number IS NOT NULL",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(n)
    }

    /// Removes personal data past retention: the subject (sealed, masked and any legacy clear
    /// value) of every job decided (or, undecided, created) before `before_ms`, and the raw
    /// vendor message of every outcome completed before it. Keeps what billing and audit
    /// need: job ids, customer references, statuses, reasons, vendor codes, attempts, the
    /// ledger, the counters and the audit trail. Idempotent.
    pub async fn purge_personal_data(&self, before_ms: i64) -> Result<PurgeCounts> {
        let mut tx = self.pool().begin().await?;
        let jobs = sqlx::query(
            "UPDATE jobs SET subject_name_sealed = NULL, subject_id_number_sealed = NULL, \
             subject_name_masked = NULL, subject_id_number_masked = NULL, \
             subject_name = NULL, subject_id_number = NULL, message_sealed = NULL, purged_at_ms = $1 \
             WHERE purged_at_ms IS NULL AND COALESCE( \
               (SELECT o.completed_at_ms FROM outcomes o WHERE o.job_id = jobs.job_id), \
               created_at_ms) < $2",
        )
        .bind(now_ms())
        .bind(before_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let vendor_messages = sqlx::query(
            "UPDATE outcomes SET vendor_message = NULL \
             WHERE vendor_message IS NOT NULL AND completed_at_ms < $1",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Outcomes a retry superseded keep their vendor message no longer than current ones.
        sqlx::query(
            "UPDATE outcome_history SET vendor_message = NULL \
             WHERE vendor_message IS NOT NULL AND completed_at_ms < $1",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PurgeCounts {
            jobs,
            vendor_messages,
        })
    }
}
