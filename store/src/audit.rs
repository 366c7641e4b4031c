//! The audit trail of unmasked exports (`report_audit`): personal data leaving the database
//! in the clear is recorded *before* the first row is written, so an export that fails or is
//! killed half-way is on record too (`rows_written` -1, `finished_at_ms` NULL), and completed
//! with the row count once the last row is written.

use crate::queries::OutcomeFilter;
use crate::{Result, Store};

/// Who runs an unmasked export, and how we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorSource {
    /// `--operator` / `KYC_OPERATOR`: an identity the deployment configured.
    Configured,
    /// The operating-system account running `kyc`.
    OsUser,
}

impl OperatorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorSource::Configured => "configured",
            OperatorSource::OsUser => "os_user",
        }
    }
}

/// An unmasked export about to start.
#[derive(Debug, Clone, Copy)]
pub struct ExportStart<'a> {
    pub operator: &'a str,
    pub operator_source: OperatorSource,
    /// The free text of `--requested-by` (on whose behalf, a ticket).
    pub requested_by: &'a str,
    /// Which report: `outcomes`.
    pub report: &'a str,
    pub filter: &'a OutcomeFilter,
    /// Where the rows go: a file path, an `s3://` URI or `standard output`.
    pub destination: &'a str,
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub operator: String,
    pub operator_source: String,
    pub requested_by: String,
    pub report: String,
    /// The filter in one line, for people reading the table.
    pub filter: String,
    pub filter_batch: Option<String>,
    pub filter_from_ms: Option<i64>,
    pub filter_to_ms: Option<i64>,
    pub filter_status: Option<String>,
    pub destination: String,
    /// -1 until the export completes.
    pub rows_written: i64,
    /// NULL until the export completes: a row that stays so is an export that was aborted.
    pub finished_at_ms: Option<i64>,
}

/// The filter in one line.
fn describe(f: &OutcomeFilter) -> String {
    fn opt<T: ToString>(v: &Option<T>) -> String {
        v.as_ref().map(T::to_string).unwrap_or_default()
    }
    format!(
        "batch={} from_ms={} to_ms={} status={}",
        opt(&f.batch_id),
        opt(&f.from_ms),
        opt(&f.to_ms),
        opt(&f.status)
    )
}

impl Store {
    /// Records that an unmasked export starts. Returns the id for
    /// [`Store::finish_report_audit`].
    pub async fn start_report_audit(&self, e: &ExportStart<'_>) -> Result<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(
            "INSERT INTO report_audit (audit_id, at_ms, who, report, filter, rows_written, \
             operator, operator_source, filter_batch, filter_from_ms, filter_to_ms, filter_status, destination) \
             VALUES ($1, $2, $3, $4, $5, -1, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(id.clone())
        .bind(crate::now_ms())
        .bind(e.requested_by.to_string())
        .bind(e.report.to_string())
        .bind(describe(e.filter))
        .bind(e.operator.to_string())
        .bind(e.operator_source.as_str())
        .bind(e.filter.batch_id.clone())
        .bind(e.filter.from_ms)
        .bind(e.filter.to_ms)
        .bind(e.filter.status.clone())
        .bind(e.destination.to_string())
        .execute(self.pool())
        .await?;
        Ok(id)
    }

    /// Completes the record once the last row is written.
    pub async fn finish_report_audit(&self, audit_id: &str, rows: u64) -> Result<()> {
        sqlx::query(
            "UPDATE report_audit SET rows_written = $1, finished_at_ms = $2 WHERE audit_id = $3",
        )
        .bind(rows as i64)
        .bind(crate::now_ms())
        .bind(audit_id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The audit trail, newest first.
    pub async fn report_audit(&self) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT at_ms, operator, operator_source, who, report, filter, filter_batch, \
             filter_from_ms, filter_to_ms, filter_status, destination, rows_written, finished_at_ms \
             FROM report_audit ORDER BY at_ms DESC, audit_id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                at_ms: r.0,
                operator: r.1,
                operator_source: r.2,
                requested_by: r.3,
                report: r.4,
                filter: r.5,
                filter_batch: r.6,
                filter_from_ms: r.7,
                filter_to_ms: r.8,
                filter_status: r.9,
                destination: r.10,
                rows_written: r.11,
                finished_at_ms: r.12,
            })
            .collect())
    }
}

type AuditRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    String,
    i64,
    Option<i64>,
);
