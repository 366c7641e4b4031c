//! The outcomes report: one row per job with stable, documented columns.

use std::io::Write;

use kyc_schemas::safe_csv::{Cell, Number};
use kyc_schemas::DataKeys;
use kyc_store::audit::ExportStart;
use kyc_store::queries::{OutcomeFilter, OutcomeRow};
use kyc_store::Store;

use crate::{csv_writer, ReportError, ReportOptions};

/// The outcomes report's columns, in order. Stable: downstream spreadsheets key on them.
pub const OUTCOME_COLUMNS: [&str; 20] = [
    "job_id",
    "batch_id",
    "source_row",
    "customer_ref",
    "name",
    "id_number",
    "vendor",
    "operation",
    "status",
    "reason",
    "vendor_code",
    "vendor_message",
    "similarity",
    "liveness_score",
    "attempts",
    "billed",
    "latency_ms",
    "completed_at",
    "vendor_request_id",
    "vendor_ref",
];

/// Writes the outcomes report; returns the number of data rows.
pub async fn write_outcomes<W: Write>(
    store: &Store,
    filter: &OutcomeFilter,
    opts: &ReportOptions,
    out: W,
) -> Result<u64, ReportError> {
    // Personal data leaves the database in the clear: say who, what and where to, first, so
    // an export that dies half-way is on record too.
    let keys = match (opts.unmasked, &opts.keys) {
        (false, _) => None,
        (true, Some(k)) => Some(k),
        (true, None) => return Err(ReportError::NoKeys),
    };
    let audit = if opts.unmasked {
        if opts.requested_by.trim().is_empty() {
            return Err(ReportError::Unaudited);
        }
        let operator = opts
            .operator
            .as_ref()
            .filter(|o| !o.name.trim().is_empty())
            .ok_or(ReportError::NoOperator)?;
        Some(
            store
                .start_report_audit(&ExportStart {
                    operator: &operator.name,
                    operator_source: operator.source,
                    requested_by: &opts.requested_by,
                    report: "outcomes",
                    filter,
                    destination: &opts.destination,
                })
                .await?,
        )
    } else {
        None
    };
    let mut w = csv_writer(out, opts.excel_bom)?;
    w.write_header(&OUTCOME_COLUMNS)?;
    let mut failed: Option<ReportError> = None;
    let n = store
        .for_each_outcome(filter, |row| {
            if failed.is_none() {
                let written = outcome_record(&row, keys)
                    .and_then(|rec| w.write_row(rec).map_err(ReportError::from));
                if let Err(e) = written {
                    failed = Some(e);
                }
            }
            Ok(())
        })
        .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    w.flush()?;
    if let Some(id) = audit {
        store.finish_report_audit(&id, n).await?;
    }
    Ok(n)
}

/// One report row. With `keys` (an unmasked export) the name and ID number are opened; a
/// value sealed with a key that is not configured fails the export, naming the job and key.
fn outcome_record<'a>(
    r: &'a OutcomeRow,
    keys: Option<&DataKeys>,
) -> Result<Vec<Cell<'a>>, ReportError> {
    let (name, id) = match keys {
        Some(k) => r
            .subject
            .open(&r.job_id, k)
            .map_err(|source| ReportError::Sealed {
                job_id: r.job_id.clone(),
                source,
            })?,
        None => r.subject.masked(),
    };
    let completed = chrono::DateTime::from_timestamp_millis(r.completed_at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let score = |s: Option<f64>| Cell::from(s.map(|s| Number::fixed(s, 2)));
    Ok(vec![
        Cell::from(&r.job_id),
        Cell::from(&r.batch_id),
        Cell::from(r.source_row),
        Cell::from(r.customer_ref.as_deref()),
        Cell::from(name),
        Cell::from(id),
        Cell::from(&r.vendor),
        Cell::from(&r.operation),
        Cell::from(&r.status),
        Cell::from(&r.reason),
        Cell::from(r.vendor_code.as_deref()),
        Cell::from(r.vendor_message.as_deref()),
        score(r.similarity),
        score(r.liveness_score),
        Cell::from(r.attempts),
        Cell::from(r.billed),
        Cell::from(r.latency_ms),
        Cell::from(completed),
        Cell::from(r.vendor_request_id.as_deref()),
        Cell::from(r.vendor_ref.as_deref()),
    ])
}

#[cfg(test)]
mod tests {
    use kyc_store::StoredSubject;

    use super::*;

    const JOB: &str = "j";

    fn row(keys: &DataKeys) -> OutcomeRow {
        let ctx = |c: &str| kyc_store::personal::column_context(c, JOB);
        OutcomeRow {
            job_id: JOB.into(),
            batch_id: "b".into(),
            source_row: Some(2),
            customer_ref: Some("C1".into()),
            subject: StoredSubject {
                name_sealed: Some(keys.seal_str("张三丰", &ctx("subject_name"))),
                id_number_sealed: Some(
                    keys.seal_str("11010519491231002X", &ctx("subject_id_number")),
                ),
                name_masked: Some("张**".into()),
                id_number_masked: Some("110***********002X".into()),
                ..StoredSubject::default()
            },
            vendor: "huawei".into(),
            operation: "huawei.standard".into(),
            status: "passed".into(),
            reason: "verified".into(),
            vendor_code: Some("1000".into()),
            vendor_message: None,
            similarity: Some(91.234),
            liveness_score: None,
            vendor_request_id: None,
            vendor_ref: None,
            attempts: 1,
            latency_ms: 12,
            billed: true,
            completed_at_ms: 0,
        }
    }

    fn rendered(r: &OutcomeRow, keys: Option<&DataKeys>) -> Vec<String> {
        outcome_record(r, keys)
            .unwrap()
            .iter()
            .map(|c| c.render().into_owned())
            .collect()
    }

    #[test]
    fn names_and_id_numbers_are_masked_by_default() {
        let keys = DataKeys::generate("k1").unwrap();
        let rec = rendered(&row(&keys), None);
        assert_eq!(rec[4], "张**");
        assert_eq!(rec[5], "110***********002X");
        assert_eq!(rec[12], "91.23");
        assert_eq!(rec[17], "1970-01-01T00:00:00Z");
        assert_eq!(rec.len(), OUTCOME_COLUMNS.len());
    }

    #[test]
    fn unmasked_opens_the_sealed_values() {
        let keys = DataKeys::generate("k1").unwrap();
        let rec = rendered(&row(&keys), Some(&keys));
        assert_eq!(rec[4], "张三丰");
        assert_eq!(rec[5], "11010519491231002X");
    }

    #[test]
    fn a_value_under_an_unknown_key_fails_naming_the_job_and_key_only() {
        let written = DataKeys::generate("gone").unwrap();
        let other = DataKeys::generate("k2").unwrap();
        let err = outcome_record(&row(&written), Some(&other)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("gone") && text.contains(JOB), "{text}");
        assert!(!text.contains("张") && !text.contains("002X"), "{text}");
    }

    #[test]
    fn rows_from_before_sealing_are_masked_too() {
        let keys = DataKeys::generate("k1").unwrap();
        let mut r = row(&keys);
        r.subject = StoredSubject {
            legacy_name: Some("李四".into()),
            legacy_id_number: Some("11010519491231002X".into()),
            ..StoredSubject::default()
        };
        let rec = rendered(&r, None);
        assert_eq!(
            (rec[4].as_str(), rec[5].as_str()),
            ("李*", "110***********002X")
        );
    }
}
