//! Golden-file tests of the reports: a fixed database, seeded identically on PostgreSQL and
//! SQLite, must produce byte-identical CSVs equal to `tests/golden/*.csv`.
//! Run with `UPDATE_GOLDEN=1` to rewrite the files after an intended change.

use std::path::PathBuf;

use kyc_store::queries::OutcomeFilter;
use kyc_store::Store;

use crate::helpers::fresh_pg_store;

const DAY_20: i64 = 1_763_632_800_000; // 2025-11-20T10:00:00Z
const DAY_21: i64 = DAY_20 + 86_400_000;

/// Two batches' worth of every state a report distinguishes. Literal SQL (no binds) so the
/// fixture reads the same on both backends. The subjects are in the clear columns, as an
/// older version wrote them: the masked report must show them (masked) before they are sealed.
const SEED: &[&str] = &[
    "INSERT INTO batches (batch_id, source, created_at_ms, updated_at_ms) VALUES ('gold', 'jobs.csv', 0, 0)",
    "INSERT INTO jobs (job_id, batch_id, source_row, dedup_key, customer_ref, vendor, operation, subject_name, subject_id_number, created_at_ms, published_at_ms) VALUES \
     ('j1', 'gold', 2, 'd1', 'C-1', 'huawei', 'huawei.standard', '张三丰', '11010519491231002X', 0, 1), \
     ('j2', 'gold', 3, 'd2', 'C-2', 'huawei', 'huawei.standard', '李四', '440304199001011237', 0, 1), \
     ('j3', 'gold', 4, 'd3', 'C-3', 'huawei', 'huawei.idcard_extension', '王五', '440304199001021234', 0, 1), \
     ('j4', 'gold', 5, 'd4', NULL, 'huawei', 'huawei.idcard_extension', '赵六', '440304199001031230', 0, NULL)",
    "INSERT INTO outcomes (job_id, batch_id, vendor, operation, status, reason, vendor_code, vendor_message, similarity, liveness_score, vendor_request_id, vendor_ref, attempts, latency_ms, billed, completed_at_ms) VALUES \
     ('j1', 'gold', 'huawei', 'huawei.standard', 'passed', 'verified', '1000', 'Successful certification', 91.5, NULL, 'r-1', NULL, 1, 120, 1, 1763632800000), \
     ('j2', 'gold', 'huawei', 'huawei.standard', 'failed', 'identity_mismatch', '2001', 'Inconsistent identity information, \"quoted\"', NULL, NULL, 'r-2', NULL, 2, 80, 1, 1763719200000)",
    "INSERT INTO vendor_calls (call_id, job_id, vendor, api, product, attempt, state, started_at_ms, finished_at_ms, http_status, vendor_code, vendor_request_id, billable, day) VALUES \
     ('c1', 'j1', 'huawei', 'ivs-standard', 'ivs-standard', 1, 'done', 0, 1, 200, '1000', 'r-1', 1, '2025-11-20'), \
     ('c2', 'j2', 'huawei', 'ivs-standard', 'ivs-standard', 1, 'done', 0, 1, 429, 'APIG.0308', NULL, 0, '2025-11-20'), \
     ('c3', 'j2', 'huawei', 'ivs-standard', 'ivs-standard', 2, 'done', 0, 1, 200, '2001', 'r-2', 1, '2025-11-20'), \
     ('c4', 'j3', 'huawei', 'ivs-idcard-extention', 'ivs-idcard-extention', 1, 'unknown', 0, 1, NULL, NULL, NULL, 0, '2025-11-21')",
    "INSERT INTO billing_counters (vendor, product, day, billable_calls) VALUES ('huawei', 'ivs-standard', '2025-11-20', 2)",
    "INSERT INTO vendor_charges (vendor, product, day, charged_calls, updated_at_ms) VALUES ('huawei', 'ivs-standard', '2025-11-20', 3, 0)",
];

async fn seed(store: &Store) {
    for sql in SEED {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(store.pool())
            .await
            .unwrap();
    }
}

fn check(name: &str, got: &[u8]) {
    let path = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/golden")
    .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
    assert!(
        want == got,
        "{name} differs from the golden file:\n--- want\n{}\n--- got\n{}",
        String::from_utf8_lossy(&want),
        String::from_utf8_lossy(got)
    );
}

async fn all_reports(store: &Store) {
    seed(store).await;
    let mut out = Vec::new();
    let opts = kyc_report::ReportOptions::default();
    let filter = OutcomeFilter {
        batch_id: Some("gold".into()),
        ..Default::default()
    };
    assert_eq!(
        kyc_report::write_outcomes(store, &filter, &opts, &mut out)
            .await
            .unwrap(),
        2
    );
    check("outcomes.csv", &out);

    // A completion-date window keeps only the first day's outcome.
    let mut out = Vec::new();
    let day_filter = OutcomeFilter {
        from_ms: Some(DAY_20 - 36_000_000),
        to_ms: Some(DAY_21 - 36_000_000),
        ..Default::default()
    };
    assert_eq!(
        kyc_report::write_outcomes(store, &day_filter, &opts, &mut out)
            .await
            .unwrap(),
        1
    );

    // Priced: one product has a price (amounts exact: 2 × 1.50, the vendor's 3 × 1.50), the
    // other none, which the report says instead of guessing.
    let mut out = Vec::new();
    let prices = kyc_schemas::money::PriceTable::parse("huawei.ivs-standard=1.50 CNY").unwrap();
    kyc_report::write_billing(store, &prices, None, None, None, false, &mut out)
        .await
        .unwrap();
    check("billing.csv", &out);

    let mut out = Vec::new();
    let s = kyc_report::write_reconcile(store, "gold", &mut out)
        .await
        .unwrap();
    assert_eq!(
        (
            s.jobs,
            s.done,
            s.missing,
            s.unpublished,
            s.unknown_calls,
            s.complete()
        ),
        (4, 2, 1, 1, 1, false)
    );
    check("reconcile.csv", &out);

    // Unmasked output is audited: who, what, how many.
    assert!(store.report_audit().await.unwrap().is_empty());
    let mut out = Vec::new();
    let unmasked = kyc_report::ReportOptions {
        unmasked: true,
        requested_by: "auditor-7".into(),
        operator: Some(kyc_report::Operator {
            name: "ops-1".into(),
            source: kyc_report::OperatorSource::Configured,
        }),
        destination: "standard output".into(),
        excel_bom: true,
        keys: Some(crate::helpers::keyring().data.clone()),
    };
    kyc_report::write_outcomes(store, &filter, &unmasked, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with('\u{feff}')
            && text.contains("11010519491231002X")
            && text.contains("张三丰")
    );
    let audit = store.report_audit().await.unwrap();
    assert_eq!(audit.len(), 1);
    let a = &audit[0];
    assert_eq!(
        (
            a.operator.as_str(),
            a.requested_by.as_str(),
            a.report.as_str(),
            a.rows_written
        ),
        ("ops-1", "auditor-7", "outcomes", 2)
    );
    assert!(a.filter.contains("batch=gold"), "{}", a.filter);
    assert_eq!(a.filter_batch.as_deref(), Some("gold"));

    // After an upgrade, the clear subjects are sealed (`kyc migrate` with a key): the clear
    // columns are emptied, and both reports read the same as before.
    assert_eq!(store.legacy_subject_count().await.unwrap(), 4);
    let keys = &crate::helpers::keyring().data;
    assert_eq!(store.seal_legacy_subjects(keys).await.unwrap(), 4);
    assert_eq!(store.seal_legacy_subjects(keys).await.unwrap(), 0);
    let (clear,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM jobs WHERE subject_name IS NOT NULL OR subject_id_number IS NOT NULL \
         OR subject_name_sealed LIKE '%张三丰%' OR subject_id_number_sealed LIKE '%1101051949%'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(clear, 0);
    let mut out = Vec::new();
    kyc_report::write_outcomes(store, &filter, &opts, &mut out)
        .await
        .unwrap();
    check("outcomes.csv", &out);
    let mut sealed = Vec::new();
    kyc_report::write_outcomes(store, &filter, &unmasked, &mut sealed)
        .await
        .unwrap();
    assert_eq!(String::from_utf8(sealed).unwrap(), text);
}

#[tokio::test]
async fn reports_match_the_golden_files_on_postgresql() {
    let store = fresh_pg_store().await;
    all_reports(&store).await;
    store.close().await;
}

#[tokio::test]
async fn reports_match_the_golden_files_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("g.db").display()),
        2,
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    all_reports(&store).await;
    store.close().await;
}
