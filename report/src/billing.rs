//! The billing report: per vendor × product × day, the billing counter, the ledger's billable
//! calls (they must agree), the calls whose answer was lost (possibly billed), and — where the
//! vendor reports its charges — the vendor's figure and the difference.

use std::io::Write;

use kyc_store::Store;

use crate::{csv_writer, opt, ReportError};

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
    w.write_record(BILLING_COLUMNS)?;
    for r in &rows {
        // Positive: we counted more than the vendor charged; negative: the vendor charged
        // calls we did not count (look at the unknown calls first).
        let difference = r.vendor_charged.map(|v| r.billable_calls - v);
        w.write_record([
            r.vendor.clone(),
            r.product.clone(),
            r.day.clone(),
            r.billable_calls.to_string(),
            r.ledger_billable.to_string(),
            r.unknown_calls.to_string(),
            opt(&r.vendor_charged),
            opt(&difference),
        ])?;
    }
    w.flush()?;
    Ok(rows.len() as u64)
}
