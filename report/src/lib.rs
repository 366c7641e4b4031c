//! CSV reports for compliance and finance, streamed from the database one row at a time.
//! Personal data is masked by default: ID numbers keep their first 3 and last 4 characters,
//! names their first character; an unmasked export must be asked for and is audited.
//!
//! # Layout
//! - [`outcomes`]: one row per job (compliance)
//! - [`billing`]: vendor × product × day: our counters, our ledger, unknown calls, the vendor's figure
//! - [`reconcile`]: every job of a batch accounted for
#![warn(unreachable_pub, missing_debug_implementations)]

use kyc_schemas::safe_csv::SafeCsvWriter;
pub use kyc_store::audit::OperatorSource;

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
    #[error("an unmasked report needs the operator's identity (--operator / KYC_OPERATOR, or an OS account with a name)")]
    NoOperator,
    #[error("an unmasked report needs the data keys (KYC_DATA_KEYS) to open names and ID numbers")]
    NoKeys,
    #[error("job {job_id}: {source}")]
    Sealed {
        job_id: String,
        #[source]
        source: kyc_schemas::CryptoError,
    },
    #[error("database: {0}")]
    Store(#[from] kyc_store::StoreError),
    #[error("writing the report: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
}

/// The identity an unmasked export is recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub source: OperatorSource,
}

#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Show full names and ID numbers. Must be asked for explicitly, and is audited.
    pub unmasked: bool,
    /// Who asked, for the audit record of an unmasked export (free text).
    pub requested_by: String,
    /// Who runs the export, for the audit record: a configured identity or the OS account.
    pub operator: Option<Operator>,
    /// Where the rows go, for the audit record (a path, an `s3://` URI, `standard output`).
    pub destination: String,
    /// Start with a UTF-8 BOM so Excel opens the file as UTF-8.
    pub excel_bom: bool,
    /// The data keys, to open names and ID numbers for an unmasked export (a masked report
    /// reads the stored masked forms and needs none).
    pub keys: Option<kyc_schemas::DataKeys>,
}

/// Writes the optional BOM and returns the CSV writer every report uses: text cells that
/// start like a formula are neutralised there (`kyc_schemas::safe_csv`).
fn csv_writer<W: std::io::Write>(out: W, excel_bom: bool) -> Result<SafeCsvWriter<W>, ReportError> {
    Ok(SafeCsvWriter::with_excel_bom(out, excel_bom)?)
}
