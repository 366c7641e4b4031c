//! Long waits leave the worker: a throttle answer whose Retry-After exceeds the in-process
//! limit parks the job in a delay queue (TTL, dead-lettered back to the work queue). When the
//! attempts are spent the job gets an `error` outcome with the vendor's last code, and a copy
//! goes to the dead-letter queue with the reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kyc_queue::OutMessage;
use kyc_schemas::{Job, JobId, Operation, PersonName, Subject, Vendor};
use kyc_simulator::FaultConfig;
use kyc_worker::{Context, RetryPolicy};

use crate::helpers::{id_with_seq, spawn_app, wait_until, TestApp};

fn job(seq: &str) -> Job {
    numbered_job("retries", 9, seq)
}

/// Job `n` of `batch`, for the simulator's sequence code `seq`.
fn numbered_job(batch: &str, n: usize, seq: &str) -> Job {
    Job {
        schema_version: 1,
        job_id: JobId::derive(
            &crate::helpers::keyring().index,
            batch,
            &format!("{n}-{seq}"),
        ),
        batch_id: batch.into(),
        source_row: n as u64 + 2,
        customer_ref: None,
        operation: Operation::HuaweiIdcardExtension,
        subject: Subject {
            name: Some(PersonName::parse("王伟").unwrap()),
            id_number: Some(id_with_seq(n, seq)),
            ..Default::default()
        },
        materials: Default::default(),
        vendor_refs: Default::default(),
    }
}

/// A worker context calling only Huawei (the simulator), with `retry`.
fn huawei_context(app: &TestApp, retry: RetryPolicy) -> Arc<Context> {
    let base = app.context();
    Arc::new(Context {
        store: base.store.clone(),
        objects: base.objects.clone(),
        clients: kyc_worker::Clients {
            huawei: Some(
                app.huawei_config(Duration::from_secs(5))
                    .build(reqwest::Client::new()),
            ),
            ..Default::default()
        },
        limiters: kyc_worker::Limiters::default(),
        retry,
        metrics: Default::default(),
        keys: crate::helpers::keyring().data.clone(),
        spend: Default::default(),
    })
}

async fn publish(app: &TestApp, jobs: &[Job]) {
    let messages: Vec<OutMessage> = jobs
        .iter()
        .map(|j| OutMessage {
            vendor: Vendor::Huawei,
            message_id: j.job_id.to_string(),
            payload: crate::helpers::message(j),
        })
        .collect();
    app.broker
        .publisher()
        .await
        .unwrap()
        .publish_confirmed(&messages)
        .await
        .unwrap();
}

/// The job's budget is counted in its message, not per delivery: whatever mix of in-process
/// waits and delay-queue trips the jitter picks, each job makes exactly `max_attempts` calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_always_failing_jobs_give_up_after_exactly_their_budget() {
    let app = spawn_app().await;
    let ctx = huawei_context(
        &app,
        RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(300),
            max_delay: Duration::from_secs(2),
            // Backoff 300 ms, 600 ms, 1.2 s plus jitter: some waits stay in the worker, some
            // go through the 5 s delay queue, differently for each job.
            max_in_process_delay: Duration::from_millis(600),
            max_deferrals: 10,
        },
    );
    let (stop, worker) = app.spawn_worker_with(ctx).await;
    let jobs: Vec<Job> = (0..12).map(|n| numbered_job("budget", n, "954")).collect();
    publish(&app, &jobs).await;
    app.wait_for_outcomes("budget", 12, Duration::from_secs(120))
        .await;
    let _ = stop.send(());
    worker.await.unwrap();

    let outcomes = app.outcomes_by_job("budget").await;
    for j in &jobs {
        assert_eq!(
            outcomes[j.job_id.as_str()],
            ("error".into(), "vendor_internal".into(), 4),
            "every job gives up after exactly 4 calls"
        );
    }
    // Our ledger and the vendor's agree: 4 calls per job, 48 in all.
    let per_job: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT job_id, COUNT(*), MIN(started_at_ms), MAX(started_at_ms) FROM vendor_calls GROUP BY job_id",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert_eq!(per_job.len(), 12);
    assert!(per_job.iter().all(|(_, n, _, _)| *n == 4), "{per_job:?}");
    assert_eq!(app.sim.ledger().entries.len(), 48);
    // The budget did cross the delay queue (a job's calls spread over its 5 s bucket).
    assert!(
        per_job
            .iter()
            .any(|(_, _, first, last)| last - first >= 5000),
        "no job went through the delay queue: {per_job:?}"
    );
    let mut dead = 0;
    while let Some((_, reason)) = app.take_dead_letter().await {
        assert!(
            reason.contains("attempts exhausted after 4 calls"),
            "{reason}"
        );
        dead += 1;
    }
    assert_eq!(dead, 12, "one dead-letter copy per job that gave up");
    app.cleanup().await;
}

/// A job that gave up owes its dead-letter copy until the broker confirmed it: with the
/// dead-letter queue gone the copy cannot be placed (the broker returns it), the outcome
/// stays marked "copy owed", every redelivery tries again instead of acking the job away,
/// and once the queue is back the copy arrives, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_copy_that_could_not_be_placed_is_settled_on_a_redelivery() {
    let app = spawn_app().await;
    let conn = crate::helpers::amqp_connection(&app.amqp_url).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(
        app.topology.dead_letter_queue().as_str().into(),
        Default::default(),
    )
    .await
    .unwrap();
    let ctx = huawei_context(
        &app,
        RetryPolicy {
            max_attempts: 2,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            max_in_process_delay: Duration::from_secs(1),
            max_deferrals: 1,
        },
    );
    let (stop, worker) = app.spawn_worker_with(ctx.clone()).await;
    let j = numbered_job("owed", 1, "954");
    publish(&app, std::slice::from_ref(&j)).await;
    // The deciding delivery's copy fails, then at least one redelivery's.
    wait_until("two failed copies", Duration::from_secs(60), || {
        let ctx = ctx.clone();
        async move { copy_failures(&ctx) >= 2 }
    })
    .await;
    assert_eq!(
        app.store.outcome_owes(&j.job_id).await.unwrap(),
        Some(Some(
            "attempts exhausted after 2 calls; last vendor code IVS.0101".into()
        ))
    );
    app.broker.declare().await.unwrap();
    wait_until("the copy is settled", Duration::from_secs(60), || async {
        app.store.outcome_owes(&j.job_id).await.unwrap() == Some(None)
    })
    .await;
    let (id, reason) = app.take_dead_letter().await.expect("the owed copy");
    assert_eq!(id, j.job_id.as_str());
    assert!(reason.starts_with("attempts exhausted"), "{reason}");
    assert_eq!(app.take_dead_letter().await, None, "one copy");
    wait_until(
        "the job's message is acked",
        Duration::from_secs(30),
        || async { app.work_queue_state(Vendor::Huawei).await.0 == 0 },
    )
    .await;
    let _ = stop.send(());
    worker.await.unwrap();
    // The job made its two calls and no more: redeliveries of a decided job never call.
    assert_eq!(app.sim.ledger().entries.len(), 2);
    let _ = conn.close(0, "done".into()).await;
    app.cleanup().await;
}

fn copy_failures(ctx: &Context) -> u64 {
    ctx.metrics
        .render()
        .lines()
        .find(|l| l.starts_with("kyc_dead_letter_copy_failures_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_waits_go_through_the_delay_queue_and_spent_jobs_are_dead_lettered() {
    let app = spawn_app().await;
    let mut faults = FaultConfig::default();
    faults.huawei.retry_after_secs = Some(2);
    app.sim.set_faults(faults);
    let base = app.context();
    let ctx = Arc::new(Context {
        store: base.store.clone(),
        objects: base.objects.clone(),
        clients: kyc_worker::Clients {
            huawei: Some(
                app.huawei_config(Duration::from_secs(5))
                    .build(reqwest::Client::new()),
            ),
            ..Default::default()
        },
        limiters: kyc_worker::Limiters::default(),
        retry: RetryPolicy {
            max_attempts: 2,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(3),
            max_in_process_delay: Duration::from_secs(1),
            max_deferrals: 1,
        },
        metrics: Default::default(),
        keys: crate::helpers::keyring().data.clone(),
        spend: Default::default(),
    });
    let (stop, worker) = app.spawn_worker_with(ctx).await;
    let start = Instant::now();
    let messages: Vec<OutMessage> = ["951", "953"]
        .iter()
        .map(|seq| {
            let j = job(seq);
            OutMessage {
                vendor: Vendor::Huawei,
                message_id: j.job_id.to_string(),
                payload: crate::helpers::message(&j),
            }
        })
        .collect();
    app.broker
        .publisher()
        .await
        .unwrap()
        .publish_confirmed(&messages)
        .await
        .unwrap();
    app.wait_for_outcomes("retries", 2, Duration::from_secs(60))
        .await;
    let took = start.elapsed();
    let _ = stop.send(());
    worker.await.unwrap();

    let outcomes = app.outcomes_by_job("retries").await;
    // Throttled once with Retry-After 2 s (over the 1 s in-process limit): deferred, then passed.
    assert_eq!(
        outcomes[job("951").job_id.as_str()],
        ("passed".into(), "verified".into(), 2)
    );
    // Always throttled: one call, deferred, one more call, and the job's budget of two is
    // spent (a trip through the delay queue does not start a new budget).
    assert_eq!(
        outcomes[job("953").job_id.as_str()],
        ("error".into(), "throttled".into(), 2)
    );
    assert!(
        took >= Duration::from_secs(5),
        "the 5 s delay bucket was skipped: {took:?}"
    );

    let (id, reason) = app
        .take_dead_letter()
        .await
        .expect("a copy of the spent job in the dead-letter queue");
    assert_eq!(id, job("953").job_id.as_str());
    assert!(
        reason.contains("attempts exhausted") && reason.contains("APIG.0308"),
        "{reason}"
    );
    app.cleanup().await;
}
