//! `kyc work` as real processes, as Kubernetes runs it: killed at random moments, stopped with
//! SIGTERM, and three replicas sharing one account quota.

use std::process::Child;
use std::time::{Duration, Instant};

use kyc_simulator::FaultConfig;

use crate::helpers::{spawn_app, TestApp};

pub(crate) fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            start.elapsed() < within,
            "worker did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (state → count) of the ledger.
async fn ledger_states(app: &TestApp) -> std::collections::BTreeMap<String, i64> {
    let mut m = std::collections::BTreeMap::new();
    for (_, _, state, _, n) in app.store.ledger_counts().await.unwrap() {
        *m.entry(state).or_default() += n;
    }
    m
}

fn assert_no_pii(log: &std::path::Path, ids: &[String]) {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        text.len() > 1000,
        "the workers logged almost nothing: {text}"
    );
    assert!(!text.contains("欧阳娜娜"), "a name reached the logs");
    for id in ids {
        assert!(!text.contains(id.as_str()), "an ID number reached the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_killed_at_random_moments_lose_nothing_and_count_no_charge_twice() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut faults = FaultConfig::default();
    faults.huawei.latency_ms = 20;
    faults.huawei.jitter_ms = 40;
    app.sim.set_faults(faults);
    let ids = app.produce_extension_jobs("crash", 2000, dir.path()).await;
    let log = dir.path().join("workers.log");
    let env = [
        ("KYC_QUOTAS", "huawei.ivs-idcard-extention=500/50"),
        ("KYC_WORKER_CONCURRENCY", "16"),
    ];
    let mut workers = vec![
        app.spawn_worker_process(&log, &env),
        app.spawn_worker_process(&log, &env),
    ];

    let mut kills = 0;
    while kills < 6 && app.store.outcome_count("crash").await.unwrap() < 1900 {
        tokio::time::sleep(Duration::from_millis(rand_ms(150, 600))).await;
        let victim = kills % 2;
        signal(&workers[victim], "-KILL");
        workers[victim].wait().unwrap();
        workers[victim] = app.spawn_worker_process(&log, &env);
        kills += 1;
    }
    assert!(
        kills >= 2,
        "the batch finished before the workers could be killed: make it larger"
    );
    app.wait_for_outcomes("crash", 2000, Duration::from_secs(180))
        .await;
    for w in &mut workers {
        signal(w, "-TERM");
        assert!(wait_exit(w, Duration::from_secs(30)).success());
    }

    let outcomes = app.outcomes("crash").await;
    assert_eq!(outcomes.len(), 2000);
    assert!(
        outcomes.values().all(|(s, _, _)| s == "passed"),
        "every job verifies"
    );
    let states = ledger_states(&app).await;
    assert_eq!(
        states.get("open"),
        None,
        "no call may stay open: {states:?}"
    );
    let unknown = states.get("unknown").copied().unwrap_or(0);
    // The billing counter counts every billable answer we received; the vendor may also have
    // billed some of the calls whose answer died with a worker, and only those.
    let counted = app.billable_calls_counted().await;
    let sim = app.sim.ledger();
    let vendor_billed = sim.entries.iter().filter(|e| e.billable).count() as i64;
    assert!(
        counted <= vendor_billed && vendor_billed <= counted + unknown,
        "counted {counted}, vendor {vendor_billed}, unknown {unknown}"
    );
    assert!(counted >= 2000, "each job's deciding call is counted");
    eprintln!("crash test: {kills} kills, {counted} billable calls counted, {vendor_billed} billed by the vendor, {unknown} unknown");
    // Every unknown call is listed for reconciliation.
    let listed: i64 = app
        .store
        .billing_report(None, None, None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.unknown_calls)
        .sum();
    assert_eq!(listed, unknown);
    assert_no_pii(&log, &ids);
    app.cleanup().await;
}

fn rand_ms(lo: u64, hi: u64) -> u64 {
    lo + (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64)
        % (hi - lo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_jobs_and_exits_cleanly() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut faults = FaultConfig::default();
    faults.huawei.latency_ms = 150;
    app.sim.set_faults(faults);
    let ids = app.produce_extension_jobs("term", 300, dir.path()).await;
    let log = dir.path().join("term.log");
    let env = [
        ("KYC_QUOTAS", "huawei.ivs-idcard-extention=500/50"),
        ("KYC_WORKER_CONCURRENCY", "8"),
        ("KYC_SHUTDOWN_GRACE_SECS", "10"),
    ];
    // A free port for the probes of the first worker.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut probe_env = env.to_vec();
    probe_env.push(("KYC_HTTP_LISTEN", &listen));
    let mut first = app.spawn_worker_process(&log, &probe_env);
    let start = Instant::now();
    while app.store.outcome_count("term").await.unwrap() < 40 {
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The probes Kubernetes uses, and the metrics Prometheus scrapes.
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("http://{listen}{path}")).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kyc_jobs_total{vendor=\"huawei\",operation=\"huawei.idcard_extension\",status=\"passed\"}"), "{metrics}");
    assert!(
        metrics.contains("kyc_vendor_call_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("kyc_jobs_in_flight"), "{metrics}");
    assert!(!metrics.contains("欧阳"), "a name in a metric label");
    assert!(
        ids.iter().all(|id| !metrics.contains(id.as_str())),
        "an ID number in a metric label"
    );
    signal(&first, "-TERM");
    assert_eq!(
        wait_exit(&mut first, Duration::from_secs(20)).code(),
        Some(0)
    );
    let done = app.store.outcome_count("term").await.unwrap();
    assert!(done < 300, "the worker finished the batch before SIGTERM");
    assert_eq!(
        ledger_states(&app)
            .await
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        vec!["done".to_string()],
        "drained, nothing abandoned"
    );

    let mut second = app.spawn_worker_process(&log, &env);
    app.wait_for_outcomes("term", 300, Duration::from_secs(120))
        .await;
    signal(&second, "-TERM");
    assert_eq!(
        wait_exit(&mut second, Duration::from_secs(20)).code(),
        Some(0)
    );
    // One call per job: nothing was lost, nothing was called twice.
    assert_eq!(app.sim.ledger().entries.len(), 300);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_sharing_a_quota_are_never_throttled() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut faults = FaultConfig::default();
    // The vendor enforces 20 QPS (answering 429 above it); so is our configured quota.
    faults.huawei.qps = Some(20.0);
    faults.huawei.latency_ms = 30;
    app.sim.set_faults(faults);
    app.produce_extension_jobs("quota", 200, dir.path()).await;
    let log = dir.path().join("quota.log");
    let env = [
        ("KYC_QUOTAS", "huawei.ivs-idcard-extention=20/1"),
        ("KYC_WORKER_CONCURRENCY", "16"),
    ];
    let mut workers: Vec<Child> = (0..3)
        .map(|_| app.spawn_worker_process(&log, &env))
        .collect();
    let start = Instant::now();
    app.wait_for_outcomes("quota", 200, Duration::from_secs(120))
        .await;
    let took = start.elapsed();
    for w in &mut workers {
        signal(w, "-TERM");
        assert!(wait_exit(w, Duration::from_secs(20)).success());
    }
    let sim = app.sim.ledger();
    let throttled = sim.totals.values().map(|t| t.throttled).sum::<u64>();
    assert_eq!(throttled, 0, "our own traffic was throttled");
    assert_eq!(sim.entries.len(), 200);
    // How fully the quota is used is a benchmark figure (`kyc bench quota`), not a test.
    eprintln!("three workers: 200 calls at 20 QPS took {took:?}");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttle_storm_slows_the_workers_down_and_every_job_completes() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut faults = FaultConfig::default();
    // The vendor grants 5 QPS although we were told 20: most calls are throttled at first.
    faults.huawei.qps = Some(5.0);
    faults.huawei.retry_after_secs = Some(1);
    app.sim.set_faults(faults);
    app.produce_extension_jobs("storm", 80, dir.path()).await;
    let log = dir.path().join("storm.log");
    let env = [
        ("KYC_QUOTAS", "huawei.ivs-idcard-extention=20/5"),
        ("KYC_WORKER_CONCURRENCY", "16"),
    ];
    let mut workers: Vec<Child> = (0..2)
        .map(|_| app.spawn_worker_process(&log, &env))
        .collect();
    app.wait_for_outcomes("storm", 80, Duration::from_secs(120))
        .await;
    for w in &mut workers {
        signal(w, "-TERM");
        assert!(wait_exit(w, Duration::from_secs(30)).success());
    }
    let outcomes = app.outcomes("storm").await;
    let errors: Vec<_> = outcomes
        .values()
        .filter(|(s, _, _)| s != "passed")
        .collect();
    assert!(
        errors.is_empty(),
        "jobs failed under throttling: {errors:?}"
    );
    let sim = app.sim.ledger();
    let throttled: u64 = sim.totals.values().map(|t| t.throttled).sum();
    assert!(throttled > 0, "the storm never happened");
    // Retries were counted: each throttled call is a ledger row of its own, and not billed.
    let rows: i64 = app
        .store
        .ledger_counts()
        .await
        .unwrap()
        .iter()
        .map(|r| r.4)
        .sum();
    assert_eq!(rows as usize, sim.entries.len());
    eprintln!(
        "throttle storm: 80 jobs, {} calls, {throttled} throttled",
        sim.entries.len()
    );
    app.cleanup().await;
}
