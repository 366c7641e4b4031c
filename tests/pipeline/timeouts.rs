//! A call whose answer never arrives in time may still have been billed: it is recorded as
//! `unknown` (listed for reconciliation), not as a free failed call.

use std::sync::Arc;
use std::time::Duration;

use kyc_schemas::{Job, JobId, Operation, PersonName, Status, Subject};
use kyc_worker::process::{process, Disposition};
use kyc_worker::{Clients, Context, HuaweiConfig, Limiters, RetryPolicy};

use crate::helpers::{id_with_seq, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_call_is_recorded_as_unknown_and_listed() {
    let app = spawn_app().await;
    let mut faults = kyc_simulator::FaultConfig::default();
    faults.huawei.slow_ms = 1500;
    app.sim.set_faults(faults);
    let base = app.context();
    let huawei = HuaweiConfig {
        endpoint: app.sim.base_url(),
        iam_endpoint: app.sim.base_url(),
        region: "cn-north-4".into(),
        project_id: "test-project".into(),
        auth: app.huawei_auth(),
        timeout: Duration::from_millis(500),
        enterprise_project_id: None,
        retry_uncropped: true,
    };
    let ctx = Arc::new(Context {
        store: base.store.clone(),
        objects: base.objects.clone(),
        clients: Clients {
            huawei: Some(huawei.build(reqwest::Client::new())),
            ..Default::default()
        },
        limiters: Limiters::default(),
        retry: RetryPolicy {
            max_attempts: 3,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            ..Default::default()
        },
        metrics: Default::default(),
        keys: crate::helpers::keyring().data.clone(),
        spend: Default::default(),
    });
    let job = Job {
        schema_version: 1,
        job_id: JobId::derive(&crate::helpers::keyring().index, "slow", "1"),
        batch_id: "slow".into(),
        source_row: 2,
        customer_ref: None,
        operation: Operation::HuaweiIdcardExtension,
        subject: Subject {
            name: Some(PersonName::parse("王伟").unwrap()),
            id_number: Some(id_with_seq(7, "955")),
            ..Default::default()
        },
        materials: Default::default(),
        vendor_refs: Default::default(),
    };
    let d = process(&ctx, &crate::helpers::message(&job), Default::default()).await;
    assert_eq!(d, Disposition::Ack(Some(Status::Passed)));
    tokio::time::sleep(Duration::from_millis(1500)).await; // the late answer lands at the simulator
    let states: Vec<(String, i64)> = app
        .store
        .ledger_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, _, state, _, n)| (state, n))
        .collect();
    assert_eq!(
        states,
        vec![("done".to_string(), 1), ("unknown".to_string(), 1)]
    );
    let report = app.store.billing_report(None, None, None).await.unwrap();
    assert_eq!((report[0].billable_calls, report[0].unknown_calls), (1, 1));
    // The vendor did answer the slow call, later, and billed it: that is what `unknown` covers.
    assert_eq!(
        app.sim
            .ledger()
            .entries
            .iter()
            .filter(|e| e.billable)
            .count(),
        2
    );
    app.cleanup().await;
}
