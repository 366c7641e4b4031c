//! Batches: one row per producer run, keyed by batch id, with running counts so that an
//! operator can watch a nightly run from the database alone.

use crate::{now_ms, Result, Store};

/// Counts to add to a batch row (the producer sends deltas as it goes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub read: i64,
    pub published: i64,
    pub rejected: i64,
    pub skipped: i64,
    /// Rows not published because the person passed the same operation recently.
    pub verified_recently: i64,
}

impl Store {
    /// Creates the batch row, or leaves an existing one (a resumed run) as it is.
    pub async fn ensure_batch(&self, batch_id: &str, source: &str) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO batches (batch_id, source, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(source)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn add_batch_counts(&self, batch_id: &str, d: BatchCounts) -> Result<()> {
        sqlx::query(
            "UPDATE batches SET rows_read = rows_read + $1, rows_published = rows_published + $2, \
             rows_rejected = rows_rejected + $3, rows_skipped = rows_skipped + $4, \
             rows_verified_recently = rows_verified_recently + $7, updated_at_ms = $5 \
             WHERE batch_id = $6",
        )
        .bind(d.read)
        .bind(d.published)
        .bind(d.rejected)
        .bind(d.skipped)
        .bind(now_ms())
        .bind(batch_id)
        .bind(d.verified_recently)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn finish_batch(&self, batch_id: &str) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "UPDATE batches SET finished_at_ms = $1, updated_at_ms = $2 WHERE batch_id = $3",
        )
        .bind(now)
        .bind(now)
        .bind(batch_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The batch's accumulated counts, if the batch exists.
    pub async fn batch_counts(&self, batch_id: &str) -> Result<Option<BatchCounts>> {
        let row: Option<(i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT rows_read, rows_published, rows_rejected, rows_skipped, rows_verified_recently \
             FROM batches WHERE batch_id = $1",
        )
        .bind(batch_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(
            |(read, published, rejected, skipped, verified_recently)| BatchCounts {
                read,
                published,
                rejected,
                skipped,
                verified_recently,
            },
        ))
    }
}
