//! CSV reports for compliance and finance, streamed from the database one row at a time.
//! Personal data is masked by default: ID numbers keep their first 3 and last 4 characters,
//! names their first character; an unmasked export must be asked for and is audited.
//!
//! # Layout
//! - [`outcomes`]: one row per job (compliance)
//! - [`billing`]: vendor × product × day: our counters, our ledger, unknown calls, the vendor's figure
//! - [`reconcile`]: every job of a batch accounted for
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod billing;
pub mod outcomes;
pub mod reconcile;

pub use billing::write_billing;
pub use outcomes::{write_outcomes, OUTCOME_COLUMNS};
pub use reconcile::{write_reconcile, ReconcileSummary};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("an unmasked report needs the name of who asks for it (--requested-by)")]
    Unaudited,
    #[error("database: {0}")]
    Store(#[from] kyc_store::StoreError),
    #[error("writing the report: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Show full names and ID numbers. Must be asked for explicitly, and is audited.
    pub unmasked: bool,
    /// Who asked, for the audit record of an unmasked export.
    pub requested_by: String,
    /// Start with a UTF-8 BOM so Excel opens the file as UTF-8.
    pub excel_bom: bool,
}

/// Writes the optional BOM and returns a CSV writer on `out`.
fn csv_writer<W: std::io::Write>(
    mut out: W,
    excel_bom: bool,
) -> Result<csv::Writer<W>, ReportError> {
    if excel_bom {
        out.write_all("\u{feff}".as_bytes())?;
    }
    Ok(csv::Writer::from_writer(out))
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}
