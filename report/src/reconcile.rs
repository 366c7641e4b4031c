//! Reconciliation of one batch: every job the producer accepted is listed with how far it got.
//! A batch is complete only when every job has an outcome.

use std::io::Write;

use kyc_store::Store;

use kyc_schemas::safe_csv::Cell;

use crate::{csv_writer, ReportError};

pub const RECONCILE_COLUMNS: [&str; 7] = [
    "job_id",
    "source_row",
    "customer_ref",
    "operation",
    "state",
    "status",
    "unknown_calls",
];

/// Counts by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileSummary {
    pub jobs: u64,
    /// Outcome recorded.
    pub done: u64,
    /// Published, no outcome yet (in the queue, in flight, or lost).
    pub missing: u64,
    /// Accepted but never confirmed by the broker: re-run the producer with the same batch id.
    pub unpublished: u64,
    /// Vendor calls whose answer was lost (possibly billed), over all jobs of the batch.
    pub unknown_calls: u64,
}

impl ReconcileSummary {
    pub fn complete(&self) -> bool {
        self.jobs > 0 && self.done == self.jobs
    }
}

pub async fn write_reconcile<W: Write>(
    store: &Store,
    batch_id: &str,
    out: W,
) -> Result<ReconcileSummary, ReportError> {
    let mut w = csv_writer(out, false)?;
    w.write_header(&RECONCILE_COLUMNS)?;
    let mut s = ReconcileSummary::default();
    let mut failed = None;
    store
        .for_each_batch_job(batch_id, |r| {
            let state = match (&r.status, r.published) {
                (Some(_), _) => {
                    s.done += 1;
                    "done"
                }
                (None, true) => {
                    s.missing += 1;
                    "missing"
                }
                (None, false) => {
                    s.unpublished += 1;
                    "unpublished"
                }
            };
            s.jobs += 1;
            s.unknown_calls += r.unknown_calls as u64;
            if failed.is_none() {
                if let Err(e) = w.write_row([
                    Cell::from(&r.job_id),
                    Cell::from(r.source_row),
                    Cell::from(r.customer_ref.as_deref()),
                    Cell::from(&r.operation),
                    Cell::from(state),
                    Cell::from(r.status.as_deref()),
                    Cell::from(r.unknown_calls),
                ]) {
                    failed = Some(e);
                }
            }
            Ok(())
        })
        .await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    w.flush()?;
    Ok(s)
}
