//! The seed behaviours no signature check sees, end to end on the real services: Huawei's
//! `crop` remedy for IVS.0009 (tables 4-5, 4-16) as one extra, billed call in both ledgers,
//! and Alibaba DescribeVerifyResult −1 turning `failed/abandoned` once the pending window from
//! the submission has passed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kyc_queue::OutMessage;
use kyc_schemas::{Job, JobId, Materials, Operation, PersonName, Subject, VendorRefs};
use kyc_store::queries::OutcomeFilter;
use kyc_worker::Context;

use crate::helpers::{id_with_seq, spawn_app, TestApp};

fn job(batch: &str, row: &str, operation: Operation, seq: &str) -> Job {
    Job {
        schema_version: 1,
        job_id: JobId::derive(&crate::helpers::keyring().index, batch, row),
        batch_id: batch.into(),
        source_row: 2,
        customer_ref: Some(row.into()),
        operation,
        subject: Subject {
            name: Some(PersonName::parse("王伟").unwrap()),
            id_number: Some(id_with_seq(7, seq)),
            ..Default::default()
        },
        materials: Materials::default(),
        vendor_refs: VendorRefs::default(),
    }
}

async fn publish(app: &TestApp, jobs: &[Job]) {
    let messages: Vec<OutMessage> = jobs
        .iter()
        .map(|j| OutMessage {
            vendor: j.vendor(),
            message_id: j.job_id.to_string(),
            payload: serde_json::to_vec(j).unwrap(),
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

/// Runs `jobs` through a worker built on `ctx` until each has an outcome.
async fn run(app: &TestApp, ctx: Arc<Context>, batch: &str, jobs: &[Job]) {
    let (stop, worker) = app.spawn_worker_with(ctx).await;
    publish(app, jobs).await;
    app.wait_for_outcomes(batch, jobs.len() as i64, Duration::from_secs(60))
        .await;
    let _ = stop.send(());
    worker.await.unwrap();
}

/// A JPEG-headed face over 90 KB once in base64 (the simulator checks only the header).
async fn large_face(app: &TestApp) -> String {
    let mut data = vec![0xFF, 0xD8, 0xFF, 0xE0];
    data.resize(80 * 1024, 0x42);
    let uri = format!("s3://{}/faces/large.jpg", app.bucket);
    app.objects.put(&uri, Bytes::from(data)).await.unwrap();
    uri
}

/// Seed tables 4-5 and 4-16: with the default crop=true, a face image over 90 KB of base64
/// may get IVS.0009; crop=false is the remedy. The client resends once, and that second call
/// is in the simulator's ledger and ours; with the resend turned off, IVS.0009 is the verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ivs_0009_on_a_large_cropped_face_is_resent_once_uncropped() {
    let app = spawn_app().await;
    let face = large_face(&app).await;
    let with_face = |batch: &str, row: &str, seq: &str| {
        let mut j = job(batch, row, Operation::HuaweiStandard, seq);
        j.materials.face_image = Some(face.clone());
        j
    };

    let jobs = [
        with_face("crop", "cropped", "916"),
        with_face("crop", "no-face", "914"),
    ];
    run(&app, app.context(), "crop", &jobs).await;
    let got = app.outcomes_by_job("crop").await;
    // 916: IVS.0009 with crop=true, then passed with crop=false: two calls, the second billed.
    assert_eq!(
        got[jobs[0].job_id.as_str()],
        ("passed".into(), "verified".into(), 2)
    );
    // 914: no face either way: the resend is made, then IVS.0009 stands.
    assert_eq!(
        got[jobs[1].job_id.as_str()],
        ("failed".into(), "image_quality".into(), 2)
    );
    let ledger = app.sim.ledger();
    let calls = |reference: &str| {
        ledger
            .entries
            .iter()
            .filter(|e| e.api == "ivs-standard" && e.reference.as_deref() == Some(reference))
            .map(|e| (e.http_status, e.billable))
            .collect::<Vec<_>>()
    };
    assert_eq!(calls(jobs[0].job_id.as_str()), [(400, false), (200, true)]);
    assert_eq!(calls(jobs[1].job_id.as_str()), [(400, false), (400, false)]);

    // Turned off: one call, and the answer is the verdict.
    let base = app.context();
    let huawei = kyc_worker::HuaweiConfig {
        endpoint: app.sim.base_url(),
        iam_endpoint: app.sim.base_url(),
        region: "cn-north-4".into(),
        project_id: "test-project".into(),
        auth: app.huawei_auth(),
        timeout: Duration::from_secs(10),
        enterprise_project_id: Some("0a1b2c3d-eps".into()),
        retry_uncropped: false,
    };
    let ctx = Arc::new(Context {
        store: base.store.clone(),
        objects: base.objects.clone(),
        clients: kyc_worker::Clients {
            huawei: Some(huawei.build(reqwest::Client::new())),
            ..Default::default()
        },
        limiters: kyc_worker::Limiters::default(),
        retry: base.retry.clone(),
        metrics: Default::default(),
        keys: crate::helpers::keyring().data.clone(),
        spend: Default::default(),
    });
    let off = [with_face("crop-off", "cropped", "916")];
    run(&app, ctx, "crop-off", &off).await;
    assert_eq!(
        app.outcomes_by_job("crop-off").await[off[0].job_id.as_str()],
        ("failed".into(), "image_quality".into(), 1)
    );
    app.cleanup().await;
}

/// DescribeVerifyResult seed, VerifyStatus table: −1 未认证 ("用户中途主动退出认证流程, 或者
/// 用户的姓名身份证号实名校验不匹配等"). Pending while the verification can still complete, then
/// abandoned; and a name/ID mismatch reads −1 from the simulator, not 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn describe_minus_one_is_pending_within_the_window_and_abandoned_after_it() {
    let app = spawn_app().await;
    // Submissions that never complete (941) and a name/ID mismatch (901).
    let submit = |row: &str, seq: &str| {
        let mut j = job("ali-submit", row, Operation::AlibabaSubmitVerification, seq);
        j.vendor_refs.ticket_id = Some(format!("t-{row}"));
        j
    };
    let submissions = [submit("forever", "941"), submit("mismatch", "901")];
    run(&app, app.context(), "ali-submit", &submissions).await;
    let describe = |batch: &str, row: &str| {
        let mut j = job(batch, row, Operation::AlibabaDescribeVerifyResult, "000");
        j.vendor_refs.biz_id = Some(format!("t-{row}"));
        j
    };

    // Within the default window (30 min from the submission just made): pending.
    let now = [
        describe("ali-now", "forever"),
        describe("ali-now", "mismatch"),
    ];
    run(&app, app.context(), "ali-now", &now).await;
    let got = app.outcomes_by_job("ali-now").await;
    for j in &now {
        assert_eq!(
            got[j.job_id.as_str()],
            ("pending".into(), "awaiting_user".into(), 1),
            "{:?}",
            j.customer_ref
        );
    }
    let mut codes = Vec::new();
    let filter = OutcomeFilter {
        batch_id: Some("ali-now".into()),
        ..Default::default()
    };
    app.store
        .for_each_outcome(&filter, |r| {
            codes.push(r.vendor_code.clone().unwrap_or_default());
            Ok(())
        })
        .await
        .unwrap();
    assert!(codes.iter().all(|c| c == "-1"), "{codes:?}");

    // A window of zero: the submission is already too long ago.
    let base = app.context();
    let mut alibaba = app.alibaba_config();
    alibaba.pending_window = Duration::ZERO;
    let ctx = Arc::new(Context {
        store: base.store.clone(),
        objects: base.objects.clone(),
        clients: kyc_worker::Clients {
            alibaba: Some(alibaba.build(reqwest::Client::new())),
            ..Default::default()
        },
        limiters: kyc_worker::Limiters::default(),
        retry: base.retry.clone(),
        metrics: Default::default(),
        keys: crate::helpers::keyring().data.clone(),
        spend: Default::default(),
    });
    let late = [describe("ali-late", "forever")];
    run(&app, ctx, "ali-late", &late).await;
    assert_eq!(
        app.outcomes_by_job("ali-late").await[late[0].job_id.as_str()],
        ("failed".into(), "abandoned".into(), 1)
    );
    app.cleanup().await;
}
