//! Spend caps' side of the database: what a capped vendor has spent in the current window,
//! read from the ledger the worker writes anyway (every replica's calls are there, so the
//! count is shared without a counter of its own), and the jobs a cap deferred.

use crate::{now_ms, Result, Store};

/// Calls of one product counted against a vendor's cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpentCalls {
    pub product: String,
    pub calls: i64,
}

/// Jobs of one batch and vendor that a spend cap deferred to a later window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapDeferrals {
    pub batch_id: String,
    pub vendor: String,
    /// Jobs deferred at least once.
    pub jobs: i64,
    /// Of those, jobs without an outcome yet (still waiting for budget).
    pub waiting: i64,
    /// Trips through the delay queue, all jobs together.
    pub times: i64,
}

impl Store {
    /// Per product, the vendor's calls since `since_ms` that count against a cap: billed
    /// (`done`, billable), in flight (`open`) or possibly billed (`unknown`). Counting calls
    /// in flight is what lets replicas see each other's calls before they are answered.
    /// Charges the vendor itself reported since `since_ms` (Baidu getall) come as their own
    /// products. The caller keeps the products it bills.
    pub async fn spend_since(&self, vendor: &str, since_ms: i64) -> Result<Vec<SpentCalls>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT product, COUNT(*) FROM vendor_calls WHERE vendor = $1 AND started_at_ms >= $2 \
               AND (state IN ('open', 'unknown') OR billable = 1) GROUP BY product \
             UNION ALL \
             SELECT product, COUNT(*) FROM vendor_charge_entries WHERE vendor = $3 \
               AND recorded_at_ms >= $4 AND charged = 1 GROUP BY product",
        )
        .bind(vendor.to_string())
        .bind(since_ms)
        .bind(vendor.to_string())
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(product, calls)| SpentCalls { product, calls })
            .collect())
    }

    /// Records that a spend cap sent `job_id` to a later window (once more, if it was
    /// already deferred): one row per job, so "jobs deferred" counts jobs, not trips.
    pub async fn record_cap_deferral(
        &self,
        job_id: &str,
        batch_id: &str,
        vendor: &str,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO cap_deferrals (job_id, batch_id, vendor, times, first_at_ms, last_at_ms) \
             VALUES ($1, $2, $3, 1, $4, $5) ON CONFLICT (job_id) DO UPDATE SET \
             times = cap_deferrals.times + 1, last_at_ms = $6",
        )
        .bind(job_id.to_string())
        .bind(batch_id.to_string())
        .bind(vendor.to_string())
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Jobs deferred by a spend cap, per batch and vendor (one batch, or all).
    pub async fn cap_deferrals(&self, batch_id: Option<&str>) -> Result<Vec<CapDeferrals>> {
        let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT d.batch_id, d.vendor, COUNT(*), \
               CAST(SUM(CASE WHEN o.job_id IS NULL THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(d.times) AS BIGINT) \
             FROM cap_deferrals d LEFT JOIN outcomes o ON o.job_id = d.job_id \
             WHERE ($1 = '' OR d.batch_id = $2) \
             GROUP BY d.batch_id, d.vendor ORDER BY d.batch_id, d.vendor",
        )
        .bind(batch_id.unwrap_or_default().to_string())
        .bind(batch_id.unwrap_or_default().to_string())
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(batch_id, vendor, jobs, waiting, times)| CapDeferrals {
                batch_id,
                vendor,
                jobs,
                waiting,
                times,
            })
            .collect())
    }
}
