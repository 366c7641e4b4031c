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

use crate::helpers::{id_with_seq, spawn_app};

fn job(seq: &str) -> Job {
    Job {
        schema_version: 1,
        job_id: JobId::derive(&crate::helpers::keyring().index, "retries", seq),
        batch_id: "retries".into(),
        source_row: 2,
        customer_ref: None,
        operation: Operation::HuaweiIdcardExtension,
        subject: Subject {
            name: Some(PersonName::parse("王伟").unwrap()),
            id_number: Some(id_with_seq(9, seq)),
            ..Default::default()
        },
        materials: Default::default(),
        vendor_refs: Default::default(),
    }
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
                kyc_worker::HuaweiConfig {
                    endpoint: app.sim.base_url(),
                    iam_endpoint: app.sim.base_url(),
                    region: "cn-north-4".into(),
                    project_id: "test-project".into(),
                    auth: app.huawei_auth(),
                    timeout: Duration::from_secs(5),
                    enterprise_project_id: None,
                    retry_uncropped: true,
                }
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
    // Always throttled: deferred once, then two calls in-process, then given up.
    assert_eq!(
        outcomes[job("953").job_id.as_str()],
        ("error".into(), "throttled".into(), 3)
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
