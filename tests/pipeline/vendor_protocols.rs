//! The vendors' protocols where they can fail: Alibaba's signature, timestamp and nonce
//! checks (the worker's signer against the simulator's independent verifier), each vendor's
//! own throttle signal under a quota, and Baidu credentials the OAuth endpoint refuses.

use std::sync::Arc;
use std::time::Duration;

use kyc_simulator::FaultConfig;
use kyc_worker::vendors::alibaba::{request, sign};
use kyc_worker::{Clients, Context};

use crate::helpers::{id_with_seq, spawn_app, TestApp};

/// A signed VerifyMaterial POST as the worker builds it, with a chosen nonce and time.
fn signed_url(
    app: &TestApp,
    secret: &str,
    nonce: &str,
    when: chrono::DateTime<chrono::Utc>,
    tamper: bool,
) -> String {
    let mut params = request::describe("RPBasic", "biz-1");
    params.extend(request::common(
        "DescribeVerifyResult",
        "2019-03-07",
        &app_ak(app),
        "cn-hangzhou",
        when,
        nonce,
    ));
    let signed = sign::sign("POST", &params, secret);
    if tamper {
        params[0].1.push('x');
    }
    params.push(("Signature".into(), signed.signature));
    let query = params
        .iter()
        .map(|(k, v)| format!("{}={}", sign::percent_encode(k), sign::percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}/?{query}", app.sim.base_url())
}

fn app_ak(app: &TestApp) -> String {
    app.alibaba_config().access_key_id
}

async fn post(url: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new().post(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn alibaba_refuses_bad_signatures_stale_timestamps_and_reused_nonces() {
    let app = spawn_app().await;
    let secret = app.alibaba_config().access_key_secret;
    let now = chrono::Utc::now();

    let (status, body) = post(&signed_url(&app, &secret, "nonce-1", now, false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["VerifyStatus"], -1,
        "an unknown BizId was never verified"
    );

    // The same nonce again, correctly signed: a replay.
    let (status, body) = post(&signed_url(&app, &secret, "nonce-1", now, false)).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("SignatureNonceUsed"))
    );

    let stale = now - chrono::Duration::minutes(40);
    let (status, body) = post(&signed_url(&app, &secret, "nonce-2", stale, false)).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidTimeStamp.Expired"))
    );

    let (status, body) = post(&signed_url(&app, &secret, "nonce-3", now, true)).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("SignatureDoesNotMatch"))
    );
    // The legacy SDK prints the server's string to sign after the colon.
    assert!(body["Message"]
        .as_str()
        .unwrap()
        .contains("server string to sign is:POST&%2F&"));
    assert!(body["RequestId"].is_string() && body["Recommend"].is_string());

    let (status, body) = post(&signed_url(&app, "wrong-secret", "nonce-4", now, false)).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("SignatureDoesNotMatch"))
    );

    // A refused signature is an error outcome the worker does not retry.
    let mut bad = app.alibaba_config();
    bad.access_key_secret = "wrong".into();
    let base = app.context();
    let ctx = Arc::new(Context {
        store: base.store.clone(),
        objects: base.objects.clone(),
        clients: Clients {
            alibaba: Some(bad.build(reqwest::Client::new())),
            ..Default::default()
        },
        limiters: Default::default(),
        retry: base.retry.clone(),
        metrics: Default::default(),
        keys: crate::helpers::keyring().data.clone(),
        spend: Default::default(),
    });
    let job: kyc_schemas::Job = serde_json::from_value(serde_json::json!({
        "schema_version": 1, "job_id": "sig-1", "batch_id": "sig", "source_row": 2,
        "operation": "alibaba.describe_verify_result",
        "subject": {}, "vendor_refs": {"biz_id": "biz-1"},
    }))
    .unwrap();
    let payload = crate::helpers::message(&job);
    let d = kyc_worker::process::process(&ctx, &payload, Default::default()).await;
    assert_eq!(
        d,
        kyc_worker::process::Disposition::Ack(Some(kyc_schemas::Status::Error))
    );
    let outcomes = app.outcomes_by_job("sig").await;
    assert_eq!(outcomes["sig-1"], ("error".into(), "auth_failed".into(), 1));
    app.cleanup().await;
}

#[tokio::test]
async fn each_vendor_throttles_with_its_own_signal_and_every_job_still_passes() {
    let app = spawn_app().await;
    app.upload_faces().await;
    // Our worker is told the default 10 QPS; the vendors grant 3 per API.
    let mut faults = FaultConfig::default();
    faults.alibaba.api_qps.insert("VerifyMaterial".into(), 3.0);
    faults.alibaba.retry_after_secs = Some(1);
    faults
        .baidu
        .api_qps
        .insert("verifyToken/generate".into(), 3.0);
    app.sim.set_faults(faults);
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("customer_ref,operation,name,id_number,face_image\n");
    for i in 0..12 {
        let id = id_with_seq(i, "123");
        csv.push_str(&format!(
            "A{i},alibaba.verify_material,欧阳娜娜,{},s3://{}/faces/face01.jpg\n",
            id.as_str(),
            app.bucket
        ));
        csv.push_str(&format!(
            "B{i},baidu.start_session,欧阳娜娜,{},\n",
            id.as_str()
        ));
    }
    assert_eq!(app.produce_text("quota", &csv, dir.path()).await, 24);
    let base = app.context();
    let quotas: std::collections::HashMap<String, kyc_worker::Quota> = [
        "alibaba.VerifyMaterial",
        "baidu.verifyToken/generate",
        "baidu.idcard/submit",
    ]
    .into_iter()
    .map(|k| (k.to_string(), kyc_worker::Quota::qps(10.0, 10)))
    .collect();
    let ctx = Arc::new(Context {
        store: base.store.clone(),
        objects: base.objects.clone(),
        clients: Clients {
            alibaba: Some(app.alibaba_config().build(reqwest::Client::new())),
            baidu: Some(app.baidu_config().build(reqwest::Client::new())),
            ..Default::default()
        },
        limiters: kyc_worker::Limiters::shared(&quotas, app.store.clone()),
        retry: kyc_worker::RetryPolicy {
            max_attempts: 10,
            ..base.retry.clone()
        },
        metrics: Default::default(),
        keys: crate::helpers::keyring().data.clone(),
        spend: Default::default(),
    });
    let (stop, worker) = app.spawn_worker_with(ctx).await;
    app.wait_for_outcomes("quota", 24, Duration::from_secs(120))
        .await;
    let outcomes = app.outcomes("quota").await;
    for (row, (status, reason, _)) in &outcomes {
        let want = if row % 2 == 0 { "passed" } else { "pending" };
        assert_eq!(status, want, "row {row}: {reason}");
    }
    let ledger = app.sim.ledger();
    let throttled = |key: &str| ledger.totals.get(key).map_or(0, |t| t.throttled);
    assert!(
        throttled("alibaba.VerifyMaterial") > 0,
        "{:?}",
        ledger.totals
    );
    assert!(
        throttled("baidu.verifyToken/generate") > 0,
        "{:?}",
        ledger.totals
    );
    // Alibaba's answer was HTTP 400 Throttling.User; Baidu's an HTTP 200 with error_code 18.
    let statuses: std::collections::BTreeSet<(String, u16)> = ledger
        .entries
        .iter()
        .filter(|e| e.throttled)
        .map(|e| (e.vendor.clone(), e.http_status))
        .collect();
    assert_eq!(
        statuses,
        [("alibaba".to_string(), 400), ("baidu".to_string(), 200)]
            .into_iter()
            .collect()
    );
    // Billed once per job, however often it was throttled.
    assert_eq!(ledger.totals["alibaba.VerifyMaterial"].billable, 12);
    let _ = stop.send(());
    worker.await.unwrap();
    app.cleanup().await;
}

#[tokio::test]
async fn baidu_credentials_the_oauth_endpoint_refuses_end_as_auth_failed() {
    let app = spawn_app().await;
    let mut bad = app.baidu_config();
    bad.secret_key = "not-the-secret".into();
    let base = app.context();
    let ctx = Arc::new(Context {
        store: base.store.clone(),
        objects: base.objects.clone(),
        clients: Clients {
            baidu: Some(bad.build(reqwest::Client::new())),
            ..Default::default()
        },
        limiters: Default::default(),
        retry: base.retry.clone(),
        metrics: Default::default(),
        keys: crate::helpers::keyring().data.clone(),
        spend: Default::default(),
    });
    let job: kyc_schemas::Job = serde_json::from_value(serde_json::json!({
        "schema_version": 1, "job_id": "oauth-1", "batch_id": "oauth", "source_row": 2,
        "operation": "baidu.result_getall",
        "subject": {}, "vendor_refs": {"verify_token": "t"},
    }))
    .unwrap();
    let payload = crate::helpers::message(&job);
    kyc_worker::process::process(&ctx, &payload, Default::default()).await;
    let outcomes = app.outcomes_by_job("oauth").await;
    assert_eq!(outcomes["oauth-1"].0, "error");
    assert_eq!(outcomes["oauth-1"].1, "auth_failed");
    // Nothing reached the API: only the token endpoint was asked.
    let ledger = app.sim.ledger();
    assert_eq!(
        ledger.totals.keys().collect::<Vec<_>>(),
        ["baidu.oauth/token"]
    );
    app.cleanup().await;
}
