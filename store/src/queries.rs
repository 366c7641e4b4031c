//! The read side: what reports, reconciliation, the embedded summary and the tests ask of the
//! database. Row-by-row queries are streamed through a callback, so a million-row export
//! holds one row at a time.

use futures::TryStreamExt;
use sqlx::Row;

use crate::{Result, Store};

/// Which outcomes to read.
#[derive(Debug, Clone, Default)]
pub struct OutcomeFilter {
    pub batch_id: Option<String>,
    /// Inclusive lower bound on completion time (ms since epoch).
    pub from_ms: Option<i64>,
    /// Exclusive upper bound on completion time (ms since epoch).
    pub to_ms: Option<i64>,
    pub status: Option<String>,
}

/// One outcome joined with its job (customer reference and subject, for reports).
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeRow {
    pub job_id: String,
    pub batch_id: String,
    pub source_row: Option<i64>,
    pub customer_ref: Option<String>,
    /// Name and ID number: sealed and masked (see [`crate::personal`]).
    pub subject: crate::StoredSubject,
    pub vendor: String,
    pub operation: String,
    pub status: String,
    pub reason: String,
    pub vendor_code: Option<String>,
    pub vendor_message: Option<String>,
    pub similarity: Option<f64>,
    pub liveness_score: Option<f64>,
    pub vendor_request_id: Option<String>,
    pub vendor_ref: Option<String>,
    pub attempts: i64,
    pub latency_ms: i64,
    pub billed: bool,
    pub completed_at_ms: i64,
}

/// A billing counter row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingRow {
    pub vendor: String,
    pub product: String,
    pub day: String,
    pub billable_calls: i64,
}

impl Store {
    /// Calls `f` for each outcome matching `filter`, ordered by batch and source row.
    pub async fn for_each_outcome<F>(&self, filter: &OutcomeFilter, mut f: F) -> Result<u64>
    where
        F: FnMut(OutcomeRow) -> Result<()>,
    {
        let mut clauses = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.batch_id.is_some() {
            clauses.push(format!("o.batch_id = {}", next()));
        }
        if filter.from_ms.is_some() {
            clauses.push(format!("o.completed_at_ms >= {}", next()));
        }
        if filter.to_ms.is_some() {
            clauses.push(format!("o.completed_at_ms < {}", next()));
        }
        if filter.status.is_some() {
            clauses.push(format!("o.status = {}", next()));
        }
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT o.job_id, o.batch_id, j.source_row, j.customer_ref, j.subject_name, j.subject_id_number, \
             j.subject_name_sealed, j.subject_id_number_sealed, j.subject_name_masked, j.subject_id_number_masked, \
             o.vendor, o.operation, o.status, o.reason, o.vendor_code, o.vendor_message, o.similarity, \
             o.liveness_score, o.vendor_request_id, o.vendor_ref, o.attempts, o.latency_ms, o.billed, \
             o.completed_at_ms FROM outcomes o LEFT JOIN jobs j ON j.job_id = o.job_id {where_sql} \
             ORDER BY o.batch_id, (j.source_row IS NULL), j.source_row, o.job_id"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(b) = &filter.batch_id {
            q = q.bind(b.clone());
        }
        if let Some(v) = filter.from_ms {
            q = q.bind(v);
        }
        if let Some(v) = filter.to_ms {
            q = q.bind(v);
        }
        if let Some(s) = &filter.status {
            q = q.bind(s.clone());
        }
        let mut rows = q.fetch(self.pool());
        let mut count = 0;
        while let Some(r) = rows.try_next().await? {
            f(OutcomeRow {
                job_id: r.try_get(0)?,
                batch_id: r.try_get(1)?,
                source_row: r.try_get(2)?,
                customer_ref: r.try_get(3)?,
                subject: crate::StoredSubject {
                    legacy_name: r.try_get(4)?,
                    legacy_id_number: r.try_get(5)?,
                    name_sealed: r.try_get(6)?,
                    id_number_sealed: r.try_get(7)?,
                    name_masked: r.try_get(8)?,
                    id_number_masked: r.try_get(9)?,
                },
                vendor: r.try_get(10)?,
                operation: r.try_get(11)?,
                status: r.try_get(12)?,
                reason: r.try_get(13)?,
                vendor_code: r.try_get(14)?,
                vendor_message: r.try_get(15)?,
                similarity: r.try_get(16)?,
                liveness_score: r.try_get(17)?,
                vendor_request_id: r.try_get(18)?,
                vendor_ref: r.try_get(19)?,
                attempts: r.try_get(20)?,
                latency_ms: r.try_get(21)?,
                billed: r.try_get::<i64, _>(22)? != 0,
                completed_at_ms: r.try_get(23)?,
            })?;
            count += 1;
        }
        Ok(count)
    }

    /// Outcome counts by (vendor, status) for one batch, for the run summary.
    pub async fn status_counts(&self, batch_id: &str) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT vendor, status, COUNT(*) FROM outcomes WHERE batch_id = $1 GROUP BY vendor, status ORDER BY vendor, status",
        )
        .bind(batch_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// When an outcome first named this vendor reference (an Alibaba BizId or TicketId): the
    /// submission we made, or the first query about it. `None` if no outcome has.
    pub async fn first_reference_ms(&self, vendor: &str, reference: &str) -> Result<Option<i64>> {
        let (ms,): (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(completed_at_ms) FROM outcomes WHERE vendor = $1 AND vendor_ref = $2",
        )
        .bind(vendor)
        .bind(reference)
        .fetch_one(self.pool())
        .await?;
        Ok(ms)
    }

    pub async fn outcome_count(&self, batch_id: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outcomes WHERE batch_id = $1")
            .bind(batch_id)
            .fetch_one(self.pool())
            .await?;
        Ok(n)
    }

    /// Statements the server has run in this database so far, as PostgreSQL's
    /// `pg_stat_statements` counts them (BEGIN and COMMIT included): what `kyc bench
    /// throughput` and the tests divide by jobs. `None` on SQLite or where the server does
    /// not load the extension (`scripts/test-all` loads it).
    pub async fn statements_run(&self) -> Option<i64> {
        if self.backend() != crate::Backend::Postgres {
            return None;
        }
        sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE(SUM(calls), 0)::bigint FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(self.pool())
        .await
        .ok()
    }

    /// Transactions committed in this database so far (PostgreSQL's `pg_stat_database`,
    /// which other sessions reach about a second after they commit); `None` on SQLite.
    pub async fn commits_so_far(&self) -> Option<i64> {
        if self.backend() != crate::Backend::Postgres {
            return None;
        }
        sqlx::query_scalar::<_, i64>(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(self.pool())
        .await
        .ok()
    }

    pub async fn billing_rows(&self) -> Result<Vec<BillingRow>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT vendor, product, day, billable_calls FROM billing_counters ORDER BY vendor, product, day",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(vendor, product, day, billable_calls)| BillingRow {
                vendor,
                product,
                day,
                billable_calls,
            })
            .collect())
    }

    /// Ledger counts by (vendor, api, state, billable).
    pub async fn ledger_counts(&self) -> Result<Vec<(String, String, String, bool, i64)>> {
        let rows = sqlx::query(
            "SELECT vendor, api, state, billable, COUNT(*) FROM vendor_calls GROUP BY vendor, api, state, billable \
             ORDER BY vendor, api, state, billable",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get::<i64, _>(3)? != 0,
                    r.try_get(4)?,
                ))
            })
            .collect()
    }
}

/// One line of the billing report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingReportRow {
    pub vendor: String,
    pub product: String,
    pub day: String,
    /// The billing counter (moved in the ledger's transactions).
    pub billable_calls: i64,
    /// Billable `done` rows in the ledger: must equal the counter.
    pub ledger_billable: i64,
    /// Calls whose answer was lost (worker died mid-call): possibly billed.
    pub unknown_calls: i64,
    /// What the vendor reports it charged, where it reports anything.
    pub vendor_charged: Option<i64>,
}

/// A job of a batch and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileRow {
    pub job_id: String,
    pub source_row: i64,
    pub customer_ref: Option<String>,
    pub operation: String,
    pub published: bool,
    pub status: Option<String>,
    /// Calls of this job whose answer was lost (possibly billed): listed for reconciliation.
    pub unknown_calls: i64,
}

impl Store {
    /// Billing per vendor × product × day within `[from_day, to_day]` (inclusive, UTC).
    pub async fn billing_report(
        &self,
        from_day: Option<&str>,
        to_day: Option<&str>,
        vendor: Option<&str>,
    ) -> Result<Vec<BillingReportRow>> {
        // Every (vendor, product, day) that any of the three sources knows about.
        let rows = sqlx::query(
            "WITH keys AS ( \
               SELECT vendor, product, day FROM billing_counters \
               UNION SELECT vendor, product, day FROM vendor_calls \
               UNION SELECT vendor, product, day FROM vendor_charges) \
             SELECT k.vendor, k.product, k.day, \
               COALESCE((SELECT b.billable_calls FROM billing_counters b \
                         WHERE b.vendor = k.vendor AND b.product = k.product AND b.day = k.day), 0), \
               (SELECT COUNT(*) FROM vendor_calls c WHERE c.vendor = k.vendor AND c.product = k.product \
                  AND c.day = k.day AND c.state = 'done' AND c.billable = 1), \
               (SELECT COUNT(*) FROM vendor_calls c WHERE c.vendor = k.vendor AND c.product = k.product \
                  AND c.day = k.day AND c.state = 'unknown'), \
               (SELECT v.charged_calls FROM vendor_charges v \
                  WHERE v.vendor = k.vendor AND v.product = k.product AND v.day = k.day) \
             FROM keys k \
             WHERE ($1 = '' OR k.day >= $2) AND ($3 = '' OR k.day <= $4) AND ($5 = '' OR k.vendor = $6) \
             ORDER BY k.vendor, k.product, k.day",
        )
        .bind(from_day.unwrap_or_default().to_string())
        .bind(from_day.unwrap_or_default().to_string())
        .bind(to_day.unwrap_or_default().to_string())
        .bind(to_day.unwrap_or_default().to_string())
        .bind(vendor.unwrap_or_default().to_string())
        .bind(vendor.unwrap_or_default().to_string())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(BillingReportRow {
                    vendor: r.try_get(0)?,
                    product: r.try_get(1)?,
                    day: r.try_get(2)?,
                    billable_calls: r.try_get(3)?,
                    ledger_billable: r.try_get(4)?,
                    unknown_calls: r.try_get(5)?,
                    vendor_charged: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Calls `f` for every job of a batch, in source order, with its publish and outcome state.
    pub async fn for_each_batch_job<F>(&self, batch_id: &str, mut f: F) -> Result<u64>
    where
        F: FnMut(ReconcileRow) -> Result<()>,
    {
        let mut rows = sqlx::query(
            "SELECT j.job_id, j.source_row, j.customer_ref, j.operation, \
             CASE WHEN j.published_at_ms IS NULL THEN 0 ELSE 1 END, o.status, \
             (SELECT COUNT(*) FROM vendor_calls c WHERE c.job_id = j.job_id AND c.state = 'unknown') \
             FROM jobs j LEFT JOIN outcomes o ON o.job_id = j.job_id \
             WHERE j.batch_id = $1 ORDER BY j.source_row, j.job_id",
        )
        .bind(batch_id)
        .fetch(self.pool());
        let mut n = 0;
        while let Some(r) = rows.try_next().await? {
            f(ReconcileRow {
                job_id: r.try_get(0)?,
                source_row: r.try_get(1)?,
                customer_ref: r.try_get(2)?,
                operation: r.try_get(3)?,
                published: r.try_get::<i64, _>(4)? == 1,
                status: r.try_get(5)?,
                unknown_calls: r.try_get(6)?,
            })?;
            n += 1;
        }
        Ok(n)
    }
}
