//! The billing report: per vendor × product × day, the billing counter, the ledger's billable
//! calls (they must agree), the calls whose answer was lost (possibly billed), and — where the
//! vendor reports its charges — the vendor's figure and the difference. With a price table
//! (`KYC_PRICES`), each row also has its unit price, currency and amounts, computed exactly
//! (integer ten-thousandths, never floats); a product without a price says so in `amount`.

use std::io::Write;

use kyc_schemas::money::PriceTable;
use kyc_schemas::safe_csv::{Cell, Number};
use kyc_store::Store;

use crate::{csv_writer, ReportError};

pub const BILLING_COLUMNS: [&str; 12] = [
    "vendor",
    "product",
    "day",
    "billable_calls",
    "ledger_billable_calls",
    "unknown_calls",
    "vendor_charged_calls",
    "difference",
    "unit_price",
    "currency",
    "amount",
    "vendor_charged_amount",
];

/// What `amount` says for a product the price table does not name.
pub const NO_PRICE: &str = "no price configured";

/// Days are `YYYY-MM-DD` (UTC), both bounds inclusive. Returns the number of rows.
pub async fn write_billing<W: Write>(
    store: &Store,
    prices: &PriceTable,
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
        let price = r
            .vendor
            .parse::<kyc_schemas::Vendor>()
            .ok()
            .and_then(|v| prices.price(v, &r.product));
        let (unit_price, currency, amount, vendor_amount) = match price {
            Some(p) => (
                Cell::from(Number::amount(p.amount)),
                Cell::from(p.currency.to_string()),
                Cell::from(Number::amount(p.amount.times(r.billable_calls))),
                r.vendor_charged.map_or(Cell::Empty, |n| {
                    Cell::from(Number::amount(p.amount.times(n)))
                }),
            ),
            None => (Cell::Empty, Cell::Empty, Cell::from(NO_PRICE), Cell::Empty),
        };
        w.write_row([
            Cell::from(&r.vendor),
            Cell::from(&r.product),
            Cell::from(&r.day),
            Cell::from(r.billable_calls),
            Cell::from(r.ledger_billable),
            Cell::from(r.unknown_calls),
            Cell::from(r.vendor_charged),
            Cell::from(difference),
            unit_price,
            currency,
            amount,
            vendor_amount,
        ])?;
    }
    w.flush()?;
    Ok(rows.len() as u64)
}
