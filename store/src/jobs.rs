//! Jobs the producer accepted. The table is what makes producing resumable and idempotent:
//! a job row is written before its message is published and marked once the broker confirms,
//! so a re-run publishes exactly the rows that are missing or were never confirmed.
//! A row keeps only what later steps read: ids, row number, customer reference, operation,
//! and the subject's name and ID number sealed (see [`crate::personal`]), and the job's queue
//! message as published (personal fields sealed), for `kyc retry`.

use std::collections::HashMap;

use kyc_schemas::{DataKeys, Job, JobId, JobMessage};
use sqlx::Row;

use crate::personal::SubjectColumns;
use crate::{now_ms, placeholders, Result, Store};

/// A job row to insert. `dedup_key` identifies "the same person asking for the same
/// operation", which a batch must not contain twice; it is a keyed hash (the producer's),
/// never the ID number itself.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job: Job,
    pub dedup_key: String,
}

/// What the producer should do with a job after trying to insert it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobInsert {
    /// New row: publish it.
    New,
    /// Known from an earlier run but never confirmed by the broker: publish it again.
    Unconfirmed,
    /// Known and confirmed (or already has an outcome): skip it.
    AlreadyPublished,
    /// Another row of this batch already asks for the same person and operation.
    Duplicate { first_row: u64 },
}

const COLS: usize = 13;
const MAX_ROWS_PER_INSERT: usize = 2000;

/// A `passed` outcome an earlier batch recorded for the same person and operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentPass {
    pub job_id: String,
    pub batch_id: String,
    pub completed_at_ms: i64,
}

impl Store {
    /// For each dedup key (operation × person) that has a `passed` outcome completed at or
    /// after `since_ms` in another batch than `batch_id`, the latest such outcome. The
    /// re-verification policy skips these rows; outcomes of `batch_id` itself are left out so
    /// that a resumed run recognises its own jobs as already published, not as "verified".
    pub async fn recent_passes(
        &self,
        batch_id: &str,
        dedup_keys: &[&str],
        since_ms: i64,
    ) -> Result<HashMap<String, RecentPass>> {
        let mut out: HashMap<String, RecentPass> = HashMap::new();
        for part in dedup_keys.chunks(MAX_ROWS_PER_INSERT) {
            let list = (0..part.len())
                .map(|i| format!("${}", i + 3))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT j.dedup_key, o.job_id, o.batch_id, o.completed_at_ms FROM jobs j \
                 JOIN outcomes o ON o.job_id = j.job_id \
                 WHERE o.status = 'passed' AND o.completed_at_ms >= $1 AND j.batch_id <> $2 \
                 AND j.dedup_key IN ({list})"
            );
            let mut q =
                sqlx::query_as::<_, (String, String, String, i64)>(sqlx::AssertSqlSafe(sql))
                    .bind(since_ms)
                    .bind(batch_id.to_string());
            for k in part {
                q = q.bind(k.to_string());
            }
            for (key, job_id, batch, at) in q.fetch_all(self.pool()).await? {
                let newer = out.get(&key).is_none_or(|p| p.completed_at_ms < at);
                if newer {
                    out.insert(
                        key,
                        RecentPass {
                            job_id,
                            batch_id: batch,
                            completed_at_ms: at,
                        },
                    );
                }
            }
        }
        Ok(out)
    }

    /// Inserts a chunk of jobs in one statement and classifies each one. All jobs must belong
    /// to `batch_id`. Names and ID numbers are sealed with the current data key.
    pub async fn insert_jobs(
        &self,
        batch_id: &str,
        chunk: &[NewJob],
        keys: &DataKeys,
    ) -> Result<Vec<JobInsert>> {
        // One statement binds COLS parameters a row; SQLite takes at most 32766 of them.
        if chunk.len() > MAX_ROWS_PER_INSERT {
            let mut out = Vec::with_capacity(chunk.len());
            for part in chunk.chunks(MAX_ROWS_PER_INSERT) {
                out.extend(Box::pin(self.insert_jobs(batch_id, part, keys)).await?);
            }
            return Ok(out);
        }
        if chunk.is_empty() {
            return Ok(Vec::new());
        }
        // The same person and operation twice in this chunk: the later rows are duplicates of
        // the first, and only the first goes to the database.
        let mut first_row: HashMap<&str, u64> = HashMap::new();
        let mut within: Vec<Option<u64>> = Vec::with_capacity(chunk.len());
        for nj in chunk {
            match first_row.get(nj.dedup_key.as_str()) {
                Some(row) => within.push(Some(*row)),
                None => {
                    first_row.insert(&nj.dedup_key, nj.job.source_row);
                    within.push(None);
                }
            }
        }
        let unique: Vec<&NewJob> = chunk
            .iter()
            .zip(&within)
            .filter(|(_, w)| w.is_none())
            .map(|(nj, _)| nj)
            .collect();
        let now = now_ms();
        let sql = format!(
            "INSERT INTO jobs (job_id, batch_id, source_row, dedup_key, customer_ref, vendor, operation, \
             subject_name_sealed, subject_id_number_sealed, subject_name_masked, \
             subject_id_number_masked, created_at_ms, message_sealed) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING job_id",
            placeholders(unique.len(), COLS)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for nj in &unique {
            let j = &nj.job;
            let subject = SubjectColumns::seal(j, keys);
            q = q
                .bind(j.job_id.as_str().to_string())
                .bind(batch_id.to_string())
                .bind(j.source_row as i64)
                .bind(nj.dedup_key.clone())
                .bind(j.customer_ref.clone())
                .bind(j.vendor().as_str())
                .bind(j.operation.as_str())
                .bind(subject.name_sealed)
                .bind(subject.id_number_sealed)
                .bind(subject.name_masked)
                .bind(subject.id_number_masked)
                .bind(now)
                // The queue message, sealed as published: what `kyc retry` publishes again.
                .bind(
                    String::from_utf8(JobMessage::seal(j, keys).to_bytes()).expect("JSON is UTF-8"),
                );
        }
        let inserted: std::collections::HashSet<String> = q
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;

        // Rows that existed already: look them up by dedup key to tell a resumed row (same
        // job, same line) from a duplicate (same person and operation, another line).
        let missing: Vec<&NewJob> = unique
            .iter()
            .copied()
            .filter(|nj| !inserted.contains(nj.job.job_id.as_str()))
            .collect();
        let existing = if missing.is_empty() {
            HashMap::new()
        } else {
            self.existing_by_dedup(batch_id, &missing).await?
        };
        Ok(chunk
            .iter()
            .zip(within)
            .map(|(nj, within)| {
                if let Some(first_row) = within {
                    return JobInsert::Duplicate { first_row };
                }
                if inserted.contains(nj.job.job_id.as_str()) {
                    return JobInsert::New;
                }
                match existing.get(&nj.dedup_key) {
                    Some(e)
                        if e.job_id == nj.job.job_id.as_str()
                            && e.source_row == nj.job.source_row =>
                    {
                        if e.published || e.has_outcome {
                            JobInsert::AlreadyPublished
                        } else {
                            JobInsert::Unconfirmed
                        }
                    }
                    Some(e) => JobInsert::Duplicate {
                        first_row: e.source_row,
                    },
                    // The same job id under another dedup key cannot happen (the id hashes
                    // the content the key is made of); treat it as already known.
                    None => JobInsert::AlreadyPublished,
                }
            })
            .collect())
    }

    async fn existing_by_dedup(
        &self,
        batch_id: &str,
        jobs: &[&NewJob],
    ) -> Result<HashMap<String, Existing>> {
        let mut out = HashMap::new();
        for part in jobs.chunks(500) {
            let list: Vec<String> = (0..part.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT j.dedup_key, j.job_id, j.source_row, j.published_at_ms, \
                 CASE WHEN o.job_id IS NULL THEN 0 ELSE 1 END \
                 FROM jobs j LEFT JOIN outcomes o ON o.job_id = j.job_id \
                 WHERE j.batch_id = $1 AND j.dedup_key IN ({})",
                list.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(batch_id.to_string());
            for nj in part {
                q = q.bind(nj.dedup_key.clone());
            }
            for row in q.fetch_all(self.pool()).await? {
                let key: String = row.try_get(0)?;
                out.insert(
                    key,
                    Existing {
                        job_id: row.try_get(1)?,
                        source_row: row.try_get::<i64, _>(2)? as u64,
                        published: row.try_get::<Option<i64>, _>(3)?.is_some(),
                        has_outcome: row.try_get::<i64, _>(4)? == 1,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Records the broker's confirmation of these jobs.
    pub async fn mark_published(&self, job_ids: &[JobId]) -> Result<()> {
        let now = now_ms();
        for part in job_ids.chunks(500) {
            let list: Vec<String> = (0..part.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "UPDATE jobs SET published_at_ms = $1 WHERE published_at_ms IS NULL AND job_id IN ({})",
                list.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
            for id in part {
                q = q.bind(id.as_str().to_string());
            }
            q.execute(self.pool()).await?;
        }
        Ok(())
    }

    /// Number of jobs of a batch the broker confirmed.
    pub async fn published_count(&self, batch_id: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM jobs WHERE batch_id = $1 AND published_at_ms IS NOT NULL",
        )
        .bind(batch_id)
        .fetch_one(self.pool())
        .await?;
        Ok(n)
    }
}

#[derive(Debug)]
struct Existing {
    job_id: String,
    source_row: u64,
    published: bool,
    has_outcome: bool,
}
