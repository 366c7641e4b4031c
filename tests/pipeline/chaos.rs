//! Chaos as a test: a batch of 3,000 jobs worked by three `kyc work` processes while the
//! test SIGKILLs workers with calls in flight, takes RabbitMQ away (every connection reset,
//! new ones refused, then back: a broker restart as the clients see it) and does the same to
//! PostgreSQL, and restarts any worker that exits, as Kubernetes would. Both outages go
//! through loopback TCP proxies in front of the real servers, so the other tests keep their
//! services. Then, per job and in total: exactly one outcome, the batch reconciles complete,
//! our billing counter equals our ledger's billable calls, the vendor's ledger differs from
//! ours only by calls we list as `unknown`, and no name or ID number reached the logs.

use std::collections::HashMap;
use std::process::Child;
use std::time::{Duration, Instant};

use kyc_simulator::FaultConfig;
use sqlx::Row;

use crate::db_outage::FlakyProxy;
use crate::helpers::{service, spawn_app};

const JOBS: i64 = 3000;

fn kill(child: &mut Child) {
    crate::worker_processes::signal(child, "-KILL");
    child.wait().unwrap();
}

/// host:port of a URL's authority.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split(['/', '?']).next().unwrap();
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_string()
}

fn through(url: &str, port: u16) -> String {
    url.replacen(&host_port(url), &format!("127.0.0.1:{port}"), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_survives_kills_mid_call_and_broker_and_database_restarts_billing_nothing_twice() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    // Slow enough that every worker has calls in flight whenever it is killed.
    let mut faults = FaultConfig::default();
    faults.huawei.latency_ms = 30;
    faults.huawei.jitter_ms = 120;
    app.sim.set_faults(faults);
    let ids = app
        .produce_extension_jobs("chaos", JOBS as usize, dir.path())
        .await;

    let pg = FlakyProxy::start(host_port(&app.db_url)).await;
    let mq = FlakyProxy::start(host_port(&service("KYC_TEST_AMQP_URL"))).await;
    let db_url = through(&app.db_url, pg.port);
    let amqp_url = through(&app.amqp_url, mq.port);
    let log = dir.path().join("workers.log");
    let env = [
        ("KYC_DATABASE_URL", db_url.as_str()),
        ("KYC_AMQP_URL", amqp_url.as_str()),
        ("KYC_QUOTAS", "huawei.ivs-idcard-extention=400/40"),
        ("KYC_WORKER_CONCURRENCY", "16"),
    ];
    let spawn = || app.spawn_worker_process(&log, &env);
    let mut workers: Vec<Child> = (0..3).map(|_| spawn()).collect();

    // (fraction of the batch decided, what happens then)
    #[derive(Debug, Clone, Copy)]
    enum Fault {
        Kill(usize),
        Database,
        Broker,
    }
    let plan = [
        (0.08, Fault::Kill(0)),
        (0.18, Fault::Database),
        (0.30, Fault::Kill(1)),
        (0.42, Fault::Broker),
        (0.55, Fault::Kill(2)),
        (0.65, Fault::Kill(0)),
        (0.75, Fault::Database),
        (0.85, Fault::Kill(1)),
    ];
    let mut next = 0;
    let mut kills = 0;
    let mut restarts_by_exit = 0;
    let deadline = Instant::now() + Duration::from_secs(420);
    loop {
        let done = app.store.outcome_count("chaos").await.unwrap();
        if done >= JOBS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {JOBS} decided; faults applied: {next}"
        );
        if next < plan.len() && done as f64 >= plan[next].0 * JOBS as f64 {
            match plan[next].1 {
                Fault::Kill(i) => {
                    kill(&mut workers[i]);
                    workers[i] = spawn();
                    kills += 1;
                }
                Fault::Database => {
                    pg.stop();
                    tokio::time::sleep(Duration::from_secs(8)).await;
                    pg.resume();
                }
                Fault::Broker => {
                    mq.stop();
                    tokio::time::sleep(Duration::from_secs(8)).await;
                    mq.resume();
                }
            }
            next += 1;
        }
        // What Kubernetes does for a container that exits.
        for w in workers.iter_mut() {
            if w.try_wait().unwrap().is_some() {
                *w = spawn();
                restarts_by_exit += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        next,
        plan.len(),
        "every fault was applied before the batch ended"
    );
    for w in &mut workers {
        kill(w);
    }

    // Per job: our ledger (billable calls, unknown calls) against the vendor's.
    let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
    let mut ours: HashMap<String, (i64, i64, i64)> = HashMap::new();
    for r in sqlx::query(
        "SELECT job_id, \
         SUM(CASE WHEN billable <> 0 AND state = 'done' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN state = 'unknown' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN state = 'open' THEN 1 ELSE 0 END) \
         FROM vendor_calls GROUP BY job_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    {
        ours.insert(r.get(0), (r.get(1), r.get(2), r.get(3)));
    }
    let (outcomes, distinct): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT job_id) FROM outcomes WHERE batch_id = 'chaos'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(
        (outcomes, distinct),
        (JOBS, JOBS),
        "exactly one outcome per job"
    );

    let mut vendor: HashMap<String, i64> = HashMap::new();
    for e in app.sim.ledger().entries.iter().filter(|e| e.billable) {
        *vendor
            .entry(e.reference.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let (mut unknown, mut unknown_billed) = (0, 0);
    for (job, (billed, unk, open)) in &ours {
        assert_eq!(*open, 0, "job {job}: a call left open");
        let v = vendor.get(job).copied().unwrap_or(0);
        assert!(
            *billed <= v && v <= billed + unk,
            "job {job}: we count {billed} billable (+{unk} unknown), the vendor billed {v}"
        );
        assert!(v >= 1, "job {job}: decided without a billed call");
        unknown += unk;
        unknown_billed += v - billed;
    }
    let counted = app.billable_calls_counted().await;
    let ledger_billable: i64 = ours.values().map(|(b, _, _)| b).sum();
    let vendor_billed: i64 = vendor.values().sum();
    assert_eq!(
        counted, ledger_billable,
        "billing counter = ledger billable"
    );
    assert_eq!(
        vendor_billed,
        counted + unknown_billed,
        "vendor = ours + the unknown calls it billed"
    );
    assert!(
        unknown > 0,
        "no kill landed while a call was in flight ({kills} kills): the test proved nothing"
    );
    // Every unknown call is listed for reconciliation, and the batch reconciles complete.
    let listed: i64 = app
        .store
        .billing_report(None, None, None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.unknown_calls)
        .sum();
    assert_eq!(listed, unknown);
    let summary = kyc_report::write_reconcile(&app.store, "chaos", std::io::sink())
        .await
        .unwrap();
    assert!(summary.complete(), "{summary:?}");

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("欧阳娜娜"), "a name reached the logs");
    for id in &ids {
        assert!(!text.contains(id.as_str()), "an ID number reached the logs");
    }
    eprintln!(
        "chaos: {JOBS} jobs, {kills} SIGKILLs, 2 database and 1 broker outages of 8 s, \
         {restarts_by_exit} workers restarted after exiting; {counted} billable calls counted, \
         {vendor_billed} billed by the vendor, {unknown} unknown of which {unknown_billed} billed"
    );
    app.cleanup().await;
}
