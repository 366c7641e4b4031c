//! The billing report: per vendor × product × day, the billing counter, the ledger's billable
//! calls (they must agree), the calls whose answer was lost (possibly billed), and — where the
//! vendor reports its charges — the vendor's figure and the difference.

use std::io::Write;

use kyc_store::Store;

use kyc_schemas::safe_csv::Cell;

use crate::{csv_writer, ReportError};

pub const BILLING_COLUMNS: [&str; 8] = [
    "vendor",
    "product",
    "day",
    "billable_calls",
    "ledger_billable_calls",
    "unknown_calls",
    "vendor_charged_calls",
    "difference",
];

/// Days are `YYYY-MM-DD` (UTC), both bounds inclusive. Returns the number of rows.
pub async fn write_billing<W: Write>(
    store: &Store,
    from_day: Option<&str>,
    to_day: Option<&str>,
    vendor: Option<&str>,
    excel_bom: bool,
    out: W,
) -> Result<u64, ReportError> {
    let rows = store.billing_report(from_day, to_day, vendor).await?;
    let mut w = csv_writer(out, excel_bom)?;
    w.write_header(&BILLING_COLUMNS)?;
    for r in &rows {
        // Positive: we counted more than the vendor charged; negative: the vendor charged
        // calls we did not count (look at the unknown calls first).
        let difference = r.vendor_charged.map(|v| r.billable_calls - v);
        w.write_row([
            Cell::from(&r.vendor),
            Cell::from(&r.product),
            Cell::from(&r.day),
            Cell::from(r.billable_calls),
            Cell::from(r.ledger_billable),
            Cell::from(r.unknown_calls),
            Cell::from(r.vendor_charged),
            Cell::from(difference),
        ])?;
    }
    w.flush()?;
    Ok(rows.len() as u64)
}
