//! Dead letters and retries, through the `kyc` binary an operator runs: `kyc dlq list`
//! filters, `show` prints no personal data, `replay` gives a dead-lettered job a fresh
//! attempt budget and it completes, `purge` deletes what matches (and counts it);
//! `kyc retry --status error` re-attempts only the jobs that ended in `error`, never a decided
//! one, keeps the old outcome as history, and the report shows the new one. Each action is
//! in `operator_audit`.

use std::collections::HashMap;
use std::time::Duration;

use kyc_schemas::JobId;
use kyc_simulator::FaultConfig;

use crate::helpers::{child_env, id_with_seq, output_text, spawn_app, wait_until, TestApp};

/// `kyc ARGS` against this app's database and broker, off the runtime's threads.
async fn kyc(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kyc"));
    cmd.args(args)
        .env("KYC_DATABASE_URL", &app.db_url)
        .env("KYC_AMQP_URL", &app.amqp_url)
        .env("KYC_QUEUE_PREFIX", &app.topology.prefix)
        .env_remove("KYC_OPERATOR")
        .envs(child_env());
    tokio::task::spawn_blocking(move || cmd.output().expect("run kyc"))
        .await
        .unwrap()
}

/// The simulator always answers Huawei with an internal error (or, with `on` false, never).
fn huawei_down(app: &TestApp, on: bool) {
    let mut faults = FaultConfig::default();
    faults.huawei.error_rate = if on { 1.0 } else { 0.0 };
    app.sim.set_faults(faults);
}

/// (source_row → job id) of a batch.
async fn job_ids(app: &TestApp, batch: &str) -> HashMap<i64, String> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT source_row, job_id FROM jobs WHERE batch_id = $1")
            .bind(batch)
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    rows.into_iter().collect()
}

/// Calls the simulated vendor answered for a job (Huawei's `meta.uuid` is the job id).
fn vendor_calls(app: &TestApp, job_id: &str) -> usize {
    app.sim
        .ledger()
        .entries
        .iter()
        .filter(|e| e.reference.as_deref() == Some(job_id))
        .count()
}

/// Our ledger's calls for a job.
async fn ledger_calls(app: &TestApp, job_id: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM vendor_calls WHERE job_id = $1")
        .bind(job_id)
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    n
}

async fn dead_letter_count(app: &TestApp) -> usize {
    app.peek_queue(&app.topology.dead_letter_queue())
        .await
        .len()
}

const NAME: &str = "欧阳娜娜";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_job_is_listed_shown_masked_replayed_with_a_fresh_budget_and_purged() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    huawei_down(&app, true);
    let (stop, worker) = app.spawn_worker().await;
    let id_a = id_with_seq(1, "101");
    let id_b = id_with_seq(2, "101");
    for (batch, id) in [("dlq-a", &id_a), ("dlq-b", &id_b)] {
        let text = format!(
            "operation,customer_ref,name,id_number\nhuawei.idcard_extension,C-{batch},{NAME},{}\n",
            id.as_str()
        );
        assert_eq!(app.produce_text(batch, &text, dir.path()).await, 1);
    }
    let job_a = job_ids(&app, "dlq-a").await[&2].clone();
    let job_b = job_ids(&app, "dlq-b").await[&2].clone();
    // Both give up after the test context's 5 calls and leave a dead-letter copy.
    for batch in ["dlq-a", "dlq-b"] {
        app.wait_for_outcomes(batch, 1, Duration::from_secs(60))
            .await;
    }
    wait_until("two dead letters", Duration::from_secs(60), || async {
        dead_letter_count(&app).await == 2
    })
    .await;
    assert_eq!(app.outcomes("dlq-a").await[&2].0, "error");
    assert_eq!(vendor_calls(&app, &job_a), 5);

    // list: the filters select; nothing personal is printed.
    let secrets = [NAME, id_a.as_str(), id_b.as_str(), "C-dlq"];
    let list = |args: &'static [&'static str]| {
        let app = &app;
        async move {
            let mut all = vec!["dlq", "list"];
            all.extend_from_slice(args);
            let o = kyc(app, &all).await;
            assert!(o.status.success(), "{}", output_text(&o));
            let text = output_text(&o);
            for s in secrets {
                assert!(!text.contains(s), "kyc dlq list printed {s:?}: {text}");
            }
            text
        }
    };
    let text = list(&["--batch", "dlq-a"]).await;
    assert!(text.contains(&job_a) && !text.contains(&job_b), "{text}");
    assert!(text.contains("1 of 2 dead letters"), "{text}");
    let text = list(&["--vendor", "huawei", "--reason", "ATTEMPTS EXHAUSTED"]).await;
    assert!(text.contains(&job_a) && text.contains(&job_b), "{text}");
    let text = list(&["--vendor", "baidu"]).await;
    assert!(text.contains("0 of 2 dead letters"), "{text}");
    let text = list(&["--reason", "delivery_limit"]).await;
    assert!(text.contains("0 of 2 dead letters"), "{text}");
    // Reading them left them where they were.
    assert_eq!(dead_letter_count(&app).await, 2);

    // show: the job's facts, never its subject.
    let o = kyc(&app, &["dlq", "show", &job_a]).await;
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    for s in secrets {
        assert!(!text.contains(s), "kyc dlq show printed {s:?}: {text}");
    }
    for fact in [
        job_a.as_str(),
        "dlq-a",
        "huawei.idcard_extension",
        "attempts exhausted after 5 calls; last vendor code IVS.0101",
        // The copy's header carries the calls the job spent, not the delivered count (0).
        "attempts 5,",
        "sealed and not shown",
    ] {
        assert!(text.contains(fact), "no {fact:?} in {text}");
    }

    // replay, once the vendor is back: a fresh budget (without it, the 5 calls in the
    // ledger would spend the job's budget of 5 at once, with no call), and the job passes.
    huawei_down(&app, false);
    let o = kyc(&app, &["dlq", "replay"]).await;
    assert!(!o.status.success(), "replay without a filter or --all");
    let o = kyc(
        &app,
        &["dlq", "replay", "--batch", "dlq-a", "--by", "oncall-amy"],
    )
    .await;
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("replayed 1 of 1"), "{text}");
    wait_until(
        "the replayed job passes",
        Duration::from_secs(60),
        || async {
            let now = app.outcomes("dlq-a").await;
            now.get(&2).is_some_and(|o| o.0 == "passed")
        },
    )
    .await;
    assert_eq!(
        app.outcomes("dlq-a").await[&2],
        ("passed".into(), "verified".into(), 1),
        "one call of a fresh budget"
    );
    assert_eq!(vendor_calls(&app, &job_a), 6, "5 failed calls, then one");
    assert_eq!(
        ledger_calls(&app, &job_a).await,
        6,
        "the ledger keeps them all"
    );
    let history = app
        .store
        .outcome_history(&JobId::from_stored(job_a.clone()))
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].status.as_str(), history[0].attempts),
        ("error", 5)
    );
    // Only B's dead letter is left.
    let text = list(&[]).await;
    assert!(
        text.contains("1 of 1 dead letters") && text.contains(&job_b),
        "{text}"
    );

    // purge: counts without --yes and deletes nothing; with it, deletes and records.
    let o = kyc(&app, &["dlq", "purge", "--batch", "dlq-b"]).await;
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains("1 dead letters match; nothing deleted"),
        "{text}"
    );
    assert_eq!(dead_letter_count(&app).await, 1);
    let o = kyc(
        &app,
        &[
            "dlq",
            "purge",
            "--batch",
            "dlq-b",
            "--yes",
            "--by",
            "oncall-amy",
        ],
    )
    .await;
    let text = output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("deleted 1 dead letters"), "{text}");
    assert_eq!(dead_letter_count(&app).await, 0);

    let _ = stop.send(());
    worker.await.unwrap();
    let actions = app.store.operator_actions().await.unwrap();
    let mut seen: Vec<(String, String, i64, i64)> = actions
        .iter()
        .map(|a| (a.action.clone(), a.operator.clone(), a.matched, a.done))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("dlq.purge".into(), "oncall-amy".into(), 1, 1),
            ("dlq.replay".into(), "oncall-amy".into(), 1, 1),
        ]
    );
    assert!(actions
        .iter()
        .all(|a| a.operator_source == "configured" && a.finished_at_ms.is_some()));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_re_attempts_only_the_error_jobs_and_keeps_the_old_outcomes() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (stop, worker) = app.spawn_worker().await;
    // Rows 2–4 are decided while the vendor is up: passed, failed, not_found.
    let mut text = String::from("operation,customer_ref,name,id_number\n");
    for (n, seq) in [(1, "101"), (2, "901"), (3, "930")] {
        text.push_str(&format!(
            "huawei.idcard_extension,R{n},{NAME},{}\n",
            id_with_seq(n, seq).as_str()
        ));
    }
    assert_eq!(app.produce_text("retry", &text, dir.path()).await, 3);
    app.wait_for_outcomes("retry", 3, Duration::from_secs(60))
        .await;
    // Rows 5–6 come while it is down, and end in `error`.
    huawei_down(&app, true);
    for n in [4, 5] {
        text.push_str(&format!(
            "huawei.idcard_extension,R{n},{NAME},{}\n",
            id_with_seq(n, "101").as_str()
        ));
    }
    assert_eq!(app.produce_text("retry", &text, dir.path()).await, 2);
    app.wait_for_outcomes("retry", 5, Duration::from_secs(60))
        .await;
    let before = app.outcomes("retry").await;
    let statuses: Vec<&str> = (2..=6).map(|r| before[&r].0.as_str()).collect();
    assert_eq!(
        statuses,
        ["passed", "failed", "not_found", "error", "error"]
    );
    let jobs = job_ids(&app, "retry").await;
    let calls_before: HashMap<i64, usize> = jobs
        .iter()
        .map(|(r, j)| (*r, vendor_calls(&app, j)))
        .collect();
    huawei_down(&app, false);

    // Only `error` may be retried.
    let o = kyc(&app, &["retry", "--batch", "retry", "--status", "failed"]).await;
    let text_out = output_text(&o);
    assert!(!o.status.success(), "{text_out}");
    assert!(
        text_out.contains("only `error` jobs are tried again"),
        "{text_out}"
    );

    let o = kyc(
        &app,
        &[
            "retry", "--batch", "retry", "--status", "error", "--by", "ops-lee",
        ],
    )
    .await;
    let out = output_text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("2 jobs with outcome error; 2 published again"),
        "{out}"
    );
    wait_until("the retried jobs pass", Duration::from_secs(60), || async {
        let now = app.outcomes("retry").await;
        now.len() == 5 && (5..=6).all(|r| now[&r].0 == "passed")
    })
    .await;
    let after = app.outcomes("retry").await;
    for r in 2..=4 {
        assert_eq!(after[&r], before[&r], "row {r} is untouched");
        assert_eq!(
            vendor_calls(&app, &jobs[&r]),
            calls_before[&r],
            "no second call for decided row {r}"
        );
    }
    for r in 5..=6 {
        assert_eq!(after[&r], ("passed".into(), "verified".into(), 1));
        assert_eq!(vendor_calls(&app, &jobs[&r]), calls_before[&r] + 1);
        let history = app
            .store
            .outcome_history(&JobId::from_stored(jobs[&r].clone()))
            .await
            .unwrap();
        assert_eq!(history.len(), 1, "row {r}");
        assert_eq!(history[0].status, "error");
        assert_eq!(history[0].attempts, before[&r].2);
    }

    // The report shows the newest outcome of each job, one row per job.
    let report = dir.path().join("outcomes.csv");
    let o = kyc(
        &app,
        &[
            "report",
            "outcomes",
            "--batch",
            "retry",
            "--out",
            report.to_str().unwrap(),
        ],
    )
    .await;
    assert!(o.status.success(), "{}", output_text(&o));
    let csv = std::fs::read_to_string(&report).unwrap();
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert!(!csv.contains(",error,"), "{csv}");

    // Nothing left to retry: a second run publishes nothing and calls nobody.
    let total = app.sim.ledger().entries.len();
    let o = kyc(
        &app,
        &[
            "retry", "--batch", "retry", "--status", "error", "--by", "ops-lee",
        ],
    )
    .await;
    let out = output_text(&o);
    assert!(
        out.contains("0 jobs with outcome error; 0 published again"),
        "{out}"
    );
    let _ = stop.send(());
    worker.await.unwrap();
    assert_eq!(app.sim.ledger().entries.len(), total);

    let actions = app.store.operator_actions().await.unwrap();
    let mut seen: Vec<(String, String, String, i64, i64)> = actions
        .iter()
        .map(|a| {
            (
                a.action.clone(),
                a.operator.clone(),
                a.filter.clone(),
                a.matched,
                a.done,
            )
        })
        .collect();
    seen.sort_by_key(|s| -s.4);
    assert_eq!(
        seen,
        vec![
            (
                "retry".into(),
                "ops-lee".into(),
                "batch=retry status=error reason=".into(),
                2,
                2
            ),
            (
                "retry".into(),
                "ops-lee".into(),
                "batch=retry status=error reason=".into(),
                0,
                0
            ),
        ]
    );
    app.cleanup().await;
}
