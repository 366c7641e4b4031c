//! A SIGKILLed worker's claims lapse within a short lease, and the duplicates that come back
//! meanwhile are parked instead of holding a surviving worker's slots. The kill lands while
//! calls are in flight: the vendor (simulator) is made slow, and our ledger shows the calls
//! open when the process dies.

use std::time::{Duration, Instant};

use kyc_simulator::FaultConfig;

use crate::helpers::{closed_port, spawn_app, TestApp};

async fn ledger_state(app: &TestApp, state: &str) -> i64 {
    app.store
        .ledger_counts()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.2 == state)
        .map(|r| r.4)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_workers_jobs_are_decided_by_another_within_seconds_and_waiting_holds_no_slot() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    // The first worker's calls hang at the vendor for longer than anything in this test.
    let mut faults = FaultConfig::default();
    faults.huawei.latency_ms = 120_000;
    app.sim.set_faults(faults);
    app.produce_extension_jobs("held", 3, dir.path()).await;
    let mut first = app.spawn_worker_process(&dir.path().join("first.log"), &[]);
    let cap = Duration::from_secs(60);
    let start = Instant::now();
    while ledger_state(&app, "open").await < 3 {
        assert!(
            start.elapsed() < cap,
            "the first worker's calls never opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A second worker with one slot, ready before the kill; the vendor is fast for it.
    let listen = format!("127.0.0.1:{}", closed_port());
    let second_log = dir.path().join("second.log");
    let mut second = app.spawn_worker_process(
        &second_log,
        &[
            ("KYC_HTTP_LISTEN", &listen),
            ("KYC_WORKER_CONCURRENCY", "1"),
        ],
    );
    let http = reqwest::Client::new();
    loop {
        let ready = http.get(format!("http://{listen}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            start.elapsed() < cap * 2,
            "the second worker never got ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.sim.set_faults(FaultConfig::default());

    // The kill lands with the three calls in flight (open in the ledger, still unanswered).
    assert_eq!(ledger_state(&app, "open").await, 3);
    first.kill().unwrap();
    first.wait().unwrap();
    let killed = Instant::now();
    assert_eq!(
        ledger_state(&app, "open").await,
        3,
        "calls in flight at the kill"
    );
    // Nothing renews the dead worker's claims now: this is when they lapse.
    let (lapse_ms,): (i64,) = sqlx::query_as("SELECT MAX(until_ms) FROM job_claims")
        .fetch_one(app.store.pool())
        .await
        .unwrap();

    // A fresh job for the second worker's only slot, while its duplicates are coming back.
    app.produce_extension_jobs("fresh", 1, dir.path()).await;
    // Generous for a busy machine, and still well inside the old 60 s lease.
    app.wait_for_outcomes("held", 3, Duration::from_secs(45))
        .await;
    app.wait_for_outcomes("fresh", 1, Duration::from_secs(45))
        .await;
    let decided_after = killed.elapsed();

    let (fresh_ms,): (i64,) =
        sqlx::query_as("SELECT completed_at_ms FROM outcomes WHERE batch_id = 'fresh'")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert!(
        fresh_ms < lapse_ms,
        "the fresh job waited for the dead worker's claims to lapse: its slot was held"
    );
    let log = std::fs::read_to_string(&second_log).unwrap();
    assert!(
        log.contains("job claimed by another live delivery; parked"),
        "the duplicates were not parked"
    );
    let outcomes = app.outcomes("held").await;
    assert!(
        outcomes.values().all(|(s, _, _)| s == "passed"),
        "{outcomes:?}"
    );
    // The dead worker's calls are listed as unknown (possibly billed); nothing stays open.
    assert_eq!(ledger_state(&app, "open").await, 0);
    assert_eq!(ledger_state(&app, "unknown").await, 3);
    eprintln!(
        "claims: 3 jobs killed mid-call decided {decided_after:?} after the kill (lease {} s)",
        kyc_worker::call::CLAIM_LEASE_MS / 1000
    );
    second.kill().unwrap();
    second.wait().unwrap();
    app.cleanup().await;
}
