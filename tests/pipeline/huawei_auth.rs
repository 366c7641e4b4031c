//! The Huawei client against the simulator's auth checks: IAM password tokens work end to end,
//! and a wrong secret key is refused with APIG.0301 and not retried (retries would risk the
//! vendor's five-failure lock on the key).

use std::sync::Arc;
use std::time::Duration;

use kyc_schemas::{Job, JobId, Operation, PersonName, Subject};
use kyc_simulator::{SimConfig, Simulator};
use kyc_worker::process::{process, Disposition};
use kyc_worker::{Clients, Context, HuaweiAuth, HuaweiConfig, Limiters, RetryPolicy};

use crate::helpers::{id_with_seq, spawn_app};

fn job(batch: &str, seq: &str) -> Job {
    Job {
        schema_version: 1,
        job_id: JobId::derive(&crate::helpers::keyring().index, batch, seq),
        batch_id: batch.into(),
        source_row: 2,
        customer_ref: None,
        operation: Operation::HuaweiIdcardExtension,
        subject: Subject {
            name: Some(PersonName::parse("李娜").unwrap()),
            id_number: Some(id_with_seq(3, seq)),
            ..Default::default()
        },
        materials: Default::default(),
        vendor_refs: Default::default(),
    }
}

fn context(
    store: kyc_store::Store,
    objects: kyc_objects::ObjectStore,
    sim: &Simulator,
    auth: HuaweiAuth,
) -> Arc<Context> {
    let huawei = HuaweiConfig {
        endpoint: sim.base_url(),
        iam_endpoint: sim.base_url(),
        region: "cn-north-4".into(),
        project_id: "p".into(),
        auth,
        timeout: Duration::from_secs(5),
        enterprise_project_id: None,
        retry_uncropped: true,
    };
    Arc::new(Context {
        store,
        objects,
        clients: Clients {
            huawei: Some(huawei.build(reqwest::Client::new())),
            ..Default::default()
        },
        limiters: Limiters::default(),
        retry: RetryPolicy::default(),
        metrics: Default::default(),
        keys: crate::helpers::keyring().data.clone(),
        spend: Default::default(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_tokens_are_fetched_cached_and_accepted_and_bad_keys_are_not_retried() {
    let app = spawn_app().await;
    let mut config = SimConfig::default();
    config.huawei.users = vec![("ops".into(), "pw".into(), "acme".into())];
    config.huawei.ak_sk = vec![("AK1".into(), "right-secret".into())];
    let sim = Simulator::start(config, "127.0.0.1:0").await.unwrap();

    let token_ctx = context(
        app.store.clone(),
        app.objects.clone(),
        &sim,
        HuaweiAuth::Password {
            user: "ops".into(),
            password: "pw".into(),
            domain: "acme".into(),
        },
    );
    for seq in ["101", "901"] {
        let payload = crate::helpers::message(&job("token", seq));
        assert_eq!(
            process(&token_ctx, &payload, Default::default()).await,
            Disposition::Ack(Some(if seq == "101" {
                kyc_schemas::Status::Passed
            } else {
                kyc_schemas::Status::Failed
            }))
        );
    }
    // Two IVS calls, both accepted with the one cached token.
    let ledger = sim.ledger();
    assert_eq!(
        ledger
            .entries
            .iter()
            .filter(|e| e.http_status == 200)
            .count(),
        2
    );

    let bad_ctx = context(
        app.store.clone(),
        app.objects.clone(),
        &sim,
        HuaweiAuth::AkSk {
            ak: "AK1".into(),
            sk: "wrong-secret".into(),
        },
    );
    let payload = crate::helpers::message(&job("badkey", "101"));
    assert_eq!(
        process(&bad_ctx, &payload, Default::default()).await,
        Disposition::Ack(Some(kyc_schemas::Status::Error))
    );
    let outcomes = app.outcomes_by_job("badkey").await;
    let (status, reason, attempts) = &outcomes[job("badkey", "101").job_id.as_str()];
    assert_eq!(
        (status.as_str(), reason.as_str(), *attempts),
        ("error", "auth_failed", 1)
    );
    let refused: Vec<_> = sim
        .ledger()
        .entries
        .into_iter()
        .filter(|e| e.http_status == 401)
        .collect();
    assert_eq!(refused.len(), 1, "a bad signature must not be retried");
    assert!(!refused[0].billable);
    sim.stop().await;
    app.cleanup().await;
}
