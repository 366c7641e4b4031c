//! The jobs' writes run as one multi-row statement per kind and group (`store/src/rows.rs`),
//! on both databases: each write still gets its own answer, a job's second write waits for
//! the next group (so its writes keep their order), and the server runs a handful of
//! statements for a group, not a few per job.

use kyc_schemas::{JobId, Operation, Outcome, Reason, Status, Vendor, OUTCOME_SCHEMA_VERSION};
use kyc_store::{CallRecord, ChargeEntry, Decision, JobStart, NewCall, Store};

use crate::helpers::fresh_pg_store;

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rows.db").display());
    let store = Store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

fn call(job: &JobId) -> NewCall<'_> {
    NewCall {
        job_id: job,
        vendor: "huawei",
        api: "ivs-standard",
        product: "ivs-standard",
        attempt: 1,
        reference: None,
    }
}

fn outcome(job: &JobId) -> Outcome {
    Outcome {
        schema_version: OUTCOME_SCHEMA_VERSION,
        job_id: job.clone(),
        batch_id: "rows".into(),
        vendor: Vendor::Huawei,
        operation: Operation::HuaweiStandard,
        status: Status::Passed,
        reason: Reason::Verified,
        vendor_code: None,
        vendor_message: None,
        similarity: None,
        liveness_score: None,
        vendor_request_id: None,
        vendor_ref: None,
        attempts: 1,
        latency_ms: 1,
        billed: true,
        completed_at: chrono::Utc::now(),
    }
}

fn billed() -> CallRecord {
    CallRecord {
        http_status: Some(200),
        billable: true,
        ..Default::default()
    }
}

/// Statements the server has run in this database (pg_stat_statements, which
/// `scripts/test-all` loads).
async fn statements(store: &Store) -> i64 {
    store
        .statements_run()
        .await
        .expect("pg_stat_statements is loaded (scripts/test-all)")
}

/// Writes of one job, queued together: serially, w1 claims, releases, then w2 claims. Run as
/// phases in one group, w2's claim would meet w1's live claim and be refused.
async fn a_jobs_writes_keep_their_order(store: &Store) {
    let job = JobId::from_stored("ordered");
    let (claimed, released, taken) = tokio::join!(
        store.claim_job(&job, "w1", 60_000),
        store.release_claim(&job, "w1"),
        store.claim_job(&job, "w2", 60_000),
    );
    assert!(claimed.unwrap());
    released.unwrap();
    assert!(taken.unwrap(), "w2's claim ran before w1's release");
}

/// Forty jobs: ten left a call open, ten are decided, twenty are new.
async fn forty_jobs(store: &Store) -> Vec<JobId> {
    let jobs: Vec<JobId> = (0..40)
        .map(|i| JobId::from_stored(format!("job-{i:02}")))
        .collect();
    for j in &jobs[..10] {
        store.open_call(call(j)).await.unwrap();
    }
    for j in &jobs[10..20] {
        let open = store.open_call(call(j)).await.unwrap();
        let o = outcome(j);
        let d = Decision {
            outcome: &o,
            charges: &[],
            recovered: &[],
            dead_letter_owed: None,
            release: None,
        };
        assert!(store
            .complete_with_outcome(Some(&open), &billed(), d)
            .await
            .unwrap());
    }
    jobs
}

/// The forty jobs' deliveries start at once, and a second delivery of one new job comes in
/// behind the first.
async fn many_starts_each_find_their_own_job(store: &Store, jobs: &[JobId]) -> (u64, u64) {
    let before = store.group_stats();
    let (starts, second) = tokio::join!(
        futures::future::join_all(jobs.iter().map(|j| store.start_job(j, "w", 60_000))),
        store.start_job(&jobs[25], "other", 60_000),
    );
    let after = store.group_stats();
    for (i, s) in starts.into_iter().enumerate() {
        let expected = match i {
            0..=9 => JobStart::Claimed {
                unknown: 1,
                calls: 1,
            },
            10..=19 => JobStart::Decided {
                owed: None,
                claimed: true,
                calls: 1,
            },
            _ => JobStart::Claimed {
                unknown: 0,
                calls: 0,
            },
        };
        assert_eq!(s.unwrap(), expected, "job {i}");
    }
    // The other delivery came second: it finds w's live claim.
    assert_eq!(second.unwrap(), JobStart::Held);
    (after.0 - before.0, after.1 - before.1)
}

/// Ten jobs decided in one group, each with the charges the vendor reported (a verify charge,
/// and an OCR charge for every other job): the charge counters move once per key, at the end
/// of the group, and equal the charged entries; deciding again (a redelivery) adds nothing.
async fn charges_are_counted_once(store: &Store) {
    let jobs: Vec<JobId> = (0..10)
        .map(|i| JobId::from_stored(format!("charged-{i}")))
        .collect();
    let charges: Vec<Vec<ChargeEntry>> = (0..10)
        .map(|i| {
            let entry = |product: &str, charged: bool| ChargeEntry {
                vendor: "baidu".into(),
                reference: format!("token-{i}"),
                attempt: 1,
                product: product.into(),
                charged,
                calls: 1,
                charge_time: String::new(),
                day: "2026-12-02".into(),
            };
            vec![entry("faceprint-verify", true), entry("ocr", i % 2 == 0)]
        })
        .collect();
    let outcomes: Vec<Outcome> = jobs.iter().map(outcome).collect();
    // No call decided these jobs here: only the outcomes and their charges are written.
    let no_call = CallRecord::default();
    for round in 0..2 {
        let decided = futures::future::join_all(outcomes.iter().zip(&charges).map(|(o, c)| {
            store.complete_with_outcome(
                None,
                &no_call,
                Decision {
                    outcome: o,
                    charges: c,
                    recovered: &[],
                    dead_letter_owed: None,
                    release: None,
                },
            )
        }))
        .await;
        assert!(decided.into_iter().all(|d| d.unwrap() == (round == 0)));
        let counted: Vec<(String, i64)> = sqlx::query_as(
            "SELECT product, charged_calls FROM vendor_charges WHERE vendor = 'baidu' ORDER BY product",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            counted,
            [("faceprint-verify".to_string(), 10), ("ocr".to_string(), 5)],
            "round {round}"
        );
    }
}

#[tokio::test]
async fn sqlite_runs_grouped_rows_like_one_by_one() {
    let (store, _dir) = sqlite().await;
    a_jobs_writes_keep_their_order(&store).await;
    let jobs = forty_jobs(&store).await;
    let (writes, transactions) = many_starts_each_find_their_own_job(&store, &jobs).await;
    assert_eq!(writes, 41);
    assert!(
        transactions <= 8,
        "{transactions} transactions for 41 writes"
    );
    charges_are_counted_once(&store).await;
}

#[tokio::test]
async fn postgres_runs_grouped_rows_like_one_by_one_in_a_few_statements() {
    let store = fresh_pg_store().await;
    a_jobs_writes_keep_their_order(&store).await;
    let jobs = forty_jobs(&store).await;
    // The setup above ran one write at a time; only the starts are counted here.
    let ran = statements(&store).await;
    let (writes, transactions) = many_starts_each_find_their_own_job(&store, &jobs).await;
    let ran = statements(&store).await - ran;
    assert_eq!(writes, 41);
    assert!(
        transactions <= 8,
        "{transactions} transactions for 41 writes"
    );
    // One by one, each start was a claim and a lookup (80 statements for 40, and ten
    // updates marking open calls unknown), plus BEGIN and COMMIT per transaction. Grouped:
    // per transaction BEGIN, a claim and a lookup statement per chunk (40 = 32 + 8), COMMIT;
    // the ten updates remain one per job. Minus the setup's own reading of the count.
    assert!(
        ran <= 10 + 8 * transactions as i64 + 2,
        "{ran} statements for 41 starts in {transactions} transactions"
    );
    charges_are_counted_once(&store).await;
}
