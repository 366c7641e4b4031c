//! Read side for operators: what `kyc status` shows of each batch (counts from `batches`,
//! `jobs`, `outcomes` and the `vendor_calls` ledger), and whether the schema matches the
//! migrations built into this binary (`kyc doctor`).

use crate::{Backend, Result, Store};

/// Where one batch stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchStatus {
    pub batch_id: String,
    pub created_at_ms: i64,
    /// When the producer finished reading the input; `None` while it runs (or if it stopped).
    pub finished_at_ms: Option<i64>,
    /// Rows the producer read and refused (all its runs of this batch together).
    pub rows_read: i64,
    pub rows_rejected: i64,
    /// Jobs accepted (valid rows), and of those, confirmed by the broker.
    pub accepted: i64,
    pub published: i64,
    /// Published jobs with an outcome (any status), and without one yet: queued, in flight
    /// or waiting in a delay queue.
    pub done: i64,
    pub pending: i64,
    /// Outcomes by status (`awaiting` is the outcome status `pending`: waiting for the person).
    pub passed: i64,
    pub failed: i64,
    pub not_found: i64,
    pub awaiting: i64,
    pub error: i64,
    /// Ledger rows whose answer was lost (possibly billed).
    pub unknown_calls: i64,
    /// Outcomes written since the `since_ms` given to [`Store::batch_status`].
    pub done_recently: i64,
    /// Pending jobs by operation (what the ETA is computed from).
    pub pending_by_operation: Vec<(String, i64)>,
}

/// How the applied migrations compare with the ones built into this binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationState {
    /// No migration table at all: a database `kyc migrate` never ran on.
    pub never_migrated: bool,
    /// Built in, not applied (versions).
    pub not_applied: Vec<i64>,
    /// Applied, but not built into this binary: the database is newer than this `kyc`.
    pub unknown: Vec<i64>,
    /// Applied with another checksum than the built-in file: the file was edited after it ran.
    pub checksum_mismatch: Vec<i64>,
    /// Recorded as failed (a migration that stopped half-way).
    pub failed: Vec<i64>,
    pub applied: usize,
}

impl MigrationState {
    pub fn is_current(&self) -> bool {
        !self.never_migrated
            && self.not_applied.is_empty()
            && self.unknown.is_empty()
            && self.checksum_mismatch.is_empty()
            && self.failed.is_empty()
    }
}

type Counts = (String, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64);

impl Store {
    /// The batch `batch`, or the `limit` most recent batches, newest first.
    pub async fn batch_status(
        &self,
        batch: Option<&str>,
        limit: i64,
        since_ms: i64,
    ) -> Result<Vec<BatchStatus>> {
        let rows: Vec<(String, i64, Option<i64>, i64, i64)> = match batch {
            Some(b) => {
                sqlx::query_as(
                    "SELECT batch_id, created_at_ms, finished_at_ms, rows_read, rows_rejected \
                     FROM batches WHERE batch_id = $1",
                )
                .bind(b)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query_as(
                    "SELECT batch_id, created_at_ms, finished_at_ms, rows_read, rows_rejected \
                     FROM batches ORDER BY created_at_ms DESC, batch_id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for (batch_id, created_at_ms, finished_at_ms, rows_read, rows_rejected) in rows {
            let mut s = BatchStatus {
                batch_id,
                created_at_ms,
                finished_at_ms,
                rows_read,
                rows_rejected,
                ..Default::default()
            };
            // One pass over the batch's jobs (the (batch_id, dedup_key) key is its index),
            // each joined to its outcome by primary key.
            let by_op: Vec<Counts> = sqlx::query_as(
                "SELECT j.operation, COUNT(*), \
                 SUM(CASE WHEN j.published_at_ms IS NOT NULL THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN o.job_id IS NOT NULL THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN j.published_at_ms IS NOT NULL AND o.job_id IS NULL THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN o.status = 'passed' THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN o.status = 'failed' THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN o.status = 'not_found' THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN o.status = 'pending' THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN o.status = 'error' THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN o.completed_at_ms >= $2 THEN 1 ELSE 0 END) \
                 FROM jobs j LEFT JOIN outcomes o ON o.job_id = j.job_id \
                 WHERE j.batch_id = $1 GROUP BY j.operation ORDER BY j.operation",
            )
            .bind(&s.batch_id)
            .bind(since_ms)
            .fetch_all(self.pool())
            .await?;
            for (
                op,
                accepted,
                published,
                done,
                pending,
                passed,
                failed,
                nf,
                awaiting,
                error,
                recent,
            ) in by_op
            {
                s.accepted += accepted;
                s.published += published;
                s.done += done;
                s.pending += pending;
                s.passed += passed;
                s.failed += failed;
                s.not_found += nf;
                s.awaiting += awaiting;
                s.error += error;
                s.done_recently += recent;
                if pending > 0 {
                    s.pending_by_operation.push((op, pending));
                }
            }
            let (unknown,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM vendor_calls c JOIN jobs j ON j.job_id = c.job_id \
                 WHERE j.batch_id = $1 AND c.state = 'unknown'",
            )
            .bind(&s.batch_id)
            .fetch_one(self.pool())
            .await?;
            s.unknown_calls = unknown;
            out.push(s);
        }
        Ok(out)
    }

    /// Compares `_sqlx_migrations` with the migrations built into this binary, without
    /// applying anything.
    pub async fn migration_state(&self) -> Result<MigrationState> {
        let (exists,): (i64,) = match self.backend() {
            Backend::Postgres => {
                sqlx::query_as(
                    "SELECT COUNT(*) FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'",
                )
                .fetch_one(self.pool())
                .await?
            }
            Backend::Sqlite => {
                sqlx::query_as(
                    "SELECT COUNT(*) FROM sqlite_master \
                     WHERE type = 'table' AND name = '_sqlx_migrations'",
                )
                .fetch_one(self.pool())
                .await?
            }
        };
        let built_in = self.migrator();
        let mut state = MigrationState::default();
        if exists == 0 {
            state.never_migrated = true;
            state.not_applied = built_in.iter().map(|m| m.version).collect();
            return Ok(state);
        }
        let applied: Vec<(i64, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT version, checksum, CASE WHEN success THEN 1 ELSE 0 END \
             FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(self.pool())
        .await?;
        state.applied = applied.len();
        for m in built_in.iter() {
            match applied.iter().find(|(v, ..)| *v == m.version) {
                None => state.not_applied.push(m.version),
                Some((v, _, 0)) => state.failed.push(*v),
                Some((v, sum, _)) if sum.as_slice() != &*m.checksum => {
                    state.checksum_mismatch.push(*v)
                }
                Some(_) => {}
            }
        }
        state.unknown = applied
            .iter()
            .filter(|(v, ..)| !built_in.iter().any(|m| m.version == *v))
            .map(|(v, ..)| *v)
            .collect();
        Ok(state)
    }

    fn migrator(&self) -> &'static [sqlx::migrate::Migration] {
        &crate::migrations::migrator(self.backend()).migrations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sqlite() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        (Store::connect(&url, 2).await.unwrap(), dir)
    }

    #[tokio::test]
    async fn a_fresh_database_is_never_migrated_and_a_migrated_one_is_current() {
        let (store, _dir) = sqlite().await;
        let before = store.migration_state().await.unwrap();
        assert!(before.never_migrated && !before.is_current());
        assert!(!before.not_applied.is_empty());
        store.migrate().await.unwrap();
        let after = store.migration_state().await.unwrap();
        assert!(after.is_current(), "{after:?}");
        sqlx::query("UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = (SELECT MIN(version) FROM _sqlx_migrations)")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99991231000000, 'future', 1, X'00', 0)")
            .execute(store.pool())
            .await
            .unwrap();
        let edited = store.migration_state().await.unwrap();
        assert_eq!(edited.checksum_mismatch.len(), 1);
        assert_eq!(edited.unknown, vec![99991231000000]);
    }

    #[tokio::test]
    async fn an_unknown_batch_has_no_status_and_an_empty_database_lists_nothing() {
        let (store, _dir) = sqlite().await;
        store.migrate().await.unwrap();
        assert!(store
            .batch_status(Some("nope"), 10, 0)
            .await
            .unwrap()
            .is_empty());
        store.ensure_batch("b1", "test").await.unwrap();
        let s = store.batch_status(None, 10, 0).await.unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].accepted, s[0].pending, s[0].done), (0, 0, 0));
    }
}
