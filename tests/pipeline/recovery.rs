//! A lost answer is recovered by asking the vendor, not by calling again: `kyc work` is
//! SIGKILLed while Alibaba SubmitVerification and Baidu idcard/submit calls are in flight, the
//! simulator (like a vendor) finishes and bills them anyway, and the redelivered jobs ask
//! DescribeVerifyResult / result/getall about them instead of submitting again or opening a
//! second session.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use kyc_simulator::FaultConfig;

use crate::helpers::{id_with_seq, spawn_app, wait_until, TestApp};

/// (api → count) of our ledger rows in `state`.
async fn our_calls(app: &TestApp, state: &str) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT api, COUNT(*) FROM vendor_calls WHERE state = $1 GROUP BY api ORDER BY api",
    )
    .bind(state.to_string())
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// Simulator ledger entries of `vendor.api`, by reference.
fn sim_calls(app: &TestApp, vendor: &str, api: &str) -> Vec<(Option<String>, bool)> {
    app.sim
        .ledger()
        .entries
        .into_iter()
        .filter(|e| e.vendor == vendor && e.api == api)
        .map(|e| (e.reference, e.billable))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_lost_with_a_killed_worker_are_asked_for_not_billed_twice() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    // Answers come late (Alibaba 12 s, under the worker's 15 s timeout; Baidu 4 s, so that
    // each session's idcard/submit, after its verifyToken/generate, goes out while the Alibaba
    // submissions are still in flight): time to kill the worker with all of them in flight.
    // The simulator, like a vendor, finishes (and bills) a call whose client is gone.
    let mut slow = FaultConfig::default();
    slow.alibaba.latency_ms = 12_000;
    slow.baidu.latency_ms = 4000;
    app.sim.set_faults(slow);
    // Two people pass, two are refused by risk control (909), for each vendor.
    let seqs = ["120", "121", "909", "909"];
    let mut csv = String::from("operation,customer_ref,name,id_number\n");
    let mut ids = Vec::new();
    for (op, base) in [
        ("alibaba.submit_verification", 0),
        ("baidu.start_session", 10),
    ] {
        for (i, seq) in seqs.iter().enumerate() {
            let id = id_with_seq(base + i, seq);
            csv.push_str(&format!("{op},R{}{i},王伟,{}\n", base, id.as_str()));
            ids.push(id.as_str().to_string());
        }
    }
    assert_eq!(app.produce_text("lost", &csv, dir.path()).await, 8);
    let log = dir.path().join("workers.log");
    // Quotas that let all the calls go out at once.
    let env = [(
        "KYC_QUOTAS",
        "alibaba.SubmitVerification=100/20,alibaba.DescribeVerifyResult=100/20,\
         baidu.verifyToken/generate=100/20,baidu.idcard/submit=100/20,baidu.result/getall=100/20",
    )];
    let mut first = app.spawn_worker_process(&log, &env);

    // Killed once every billable Alibaba submission and every Baidu session's idcard/submit
    // has its ledger row (written before the call) and before any of them was answered.
    let start = Instant::now();
    loop {
        let open = our_calls(&app, "open").await;
        if open.get("SubmitVerification") == Some(&4) && open.get("idcard/submit") == Some(&4) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "calls in flight: {open:?}, {:?}\n{}",
            our_calls(&app, "done").await,
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::process::Command::new("kill")
        .args(["-KILL", &first.id().to_string()])
        .status()
        .unwrap();
    first.wait().unwrap();
    assert!(
        sim_calls(&app, "alibaba", "SubmitVerification").is_empty()
            && sim_calls(&app, "baidu", "idcard/submit").is_empty(),
        "the kill must land while the calls are in flight"
    );
    // The vendor finishes them without us.
    wait_until(
        "the vendor finishes the orphaned calls",
        Duration::from_secs(30),
        || async {
            sim_calls(&app, "alibaba", "SubmitVerification").len() == 4
                && sim_calls(&app, "baidu", "idcard/submit").len() == 4
        },
    )
    .await;
    app.sim.set_faults(FaultConfig::default());

    // The redeliveries wait out the dead worker's claims, then ask.
    let mut second = app.spawn_worker_process(&log, &env);
    app.wait_for_outcomes("lost", 8, Duration::from_secs(180))
        .await;
    std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    second.wait().unwrap();

    // What the vendor decided is the outcome.
    let outcomes = app.outcomes("lost").await;
    for (row, seq) in seqs.iter().chain(seqs.iter()).enumerate() {
        let (status, reason, _) = &outcomes[&(row as i64 + 2)];
        let expected = if *seq == "909" {
            ("failed", "risk_rejected")
        } else {
            ("passed", "verified")
        };
        assert_eq!(
            (status.as_str(), reason.as_str()),
            expected,
            "row {}",
            row + 2
        );
    }

    // Alibaba: one billable submission per ticket, and the free query that recovered it.
    let submits = sim_calls(&app, "alibaba", "SubmitVerification");
    let mut per_ticket: HashMap<String, usize> = HashMap::new();
    for (reference, billable) in &submits {
        assert!(billable, "every decided submission is billed");
        *per_ticket.entry(reference.clone().unwrap()).or_default() += 1;
    }
    assert_eq!(per_ticket.len(), 4);
    assert!(
        per_ticket.values().all(|n| *n == 1),
        "a ticket was submitted twice: {per_ticket:?}"
    );
    let described = sim_calls(&app, "alibaba", "DescribeVerifyResult");
    assert!(described.len() >= 4 && described.iter().all(|(_, billable)| !billable));

    // Baidu: one session per job (no second verifyToken/generate), the one in the outcome,
    // and each session's person charged once.
    let generated: HashSet<String> = sim_calls(&app, "baidu", "verifyToken/generate")
        .into_iter()
        .map(|(r, _)| r.unwrap())
        .collect();
    assert_eq!(
        sim_calls(&app, "baidu", "verifyToken/generate").len(),
        4,
        "a second session was opened"
    );
    let refs: Vec<(String,)> = sqlx::query_as(
        "SELECT vendor_ref FROM outcomes WHERE vendor = 'baidu' ORDER BY vendor_ref",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    let refs: HashSet<String> = refs.into_iter().map(|r| r.0).collect();
    assert_eq!(refs, generated);
    let charges = app
        .sim
        .ledger()
        .entries
        .into_iter()
        .filter(|e| e.vendor == "baidu" && e.billable)
        .count();
    assert_eq!(charges, 4, "one charged attempt per person");

    // Our side: nothing left open or unknown, the recovered submissions counted as billed,
    // equal to the vendor's bill; the queries are free.
    assert_eq!(our_calls(&app, "open").await, BTreeMap::new());
    assert_eq!(our_calls(&app, "unknown").await, BTreeMap::new());
    let billed: Vec<(String, i64)> = sqlx::query_as(
        "SELECT api, CAST(SUM(billable) AS BIGINT) FROM vendor_calls WHERE vendor = 'alibaba' GROUP BY api ORDER BY api",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert_eq!(
        billed,
        vec![
            ("DescribeVerifyResult".to_string(), 0),
            ("SubmitVerification".to_string(), 4)
        ]
    );
    assert_eq!(app.billable_calls_counted().await, 4);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("asking DescribeVerifyResult") && text.contains("asking result/getall"));
    for id in &ids {
        assert!(!text.contains(id.as_str()), "an ID number reached the logs");
    }
    app.cleanup().await;
}
