//! Materials come only from the allowlist (`KYC_MATERIAL_SOURCES`): the producer refuses a
//! row pointing elsewhere, and the worker refuses such a job again when it arrives by
//! another road (published straight to the queue), before any fetch and any vendor call.
//! A material that cannot heal (no such bucket, no such key) fails at once; only what can
//! heal is handed back for redelivery. All on the real s3s-fs; HTTP only to loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kyc_queue::OutMessage;
use kyc_schemas::{Job, JobId, Materials, Operation, PersonName, Status, Subject};
use kyc_worker::process::Disposition;
use kyc_worker::Context;

use crate::helpers::{id_with_seq, spawn_app};

const FACE: &[u8] = include_bytes!("../../examples/images/faces/face01.jpg");

fn job(batch: &str, row: u64, operation: Operation, face: &str) -> Job {
    Job {
        schema_version: 1,
        job_id: JobId::derive(&crate::helpers::keyring().index, batch, &row.to_string()),
        batch_id: batch.into(),
        source_row: row,
        customer_ref: None,
        operation,
        subject: Subject {
            name: Some(PersonName::parse("王伟").unwrap()),
            id_number: Some(id_with_seq(row as usize, "101")),
            ..Default::default()
        },
        materials: Materials {
            face_image: Some(face.into()),
            ..Default::default()
        },
        vendor_refs: Default::default(),
    }
}

/// A loopback listener that only counts connections (and answers none).
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((_sock, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_producer_refuses_rows_whose_materials_are_outside_the_allowlist() {
    let app = spawn_app().await;
    app.upload_faces().await;
    // Another bucket the worker's key can read, holding a real face: still not a source.
    let other = format!("{}-other", app.bucket);
    app.objects.ensure_bucket(&other).await.unwrap();
    app.objects
        .put(
            &format!("s3://{other}/faces/face01.jpg"),
            Bytes::from_static(FACE),
        )
        .await
        .unwrap();
    let b = &app.bucket;
    let id = |n: usize| id_with_seq(n, "101").as_str().to_string();
    let rows = [
        format!("s3://{b}/faces/face01.jpg"),
        format!("s3://{other}/faces/face01.jpg"),
        "https://evil.example/face.jpg?X-Amz-Signature=SECRET".to_string(),
        "https://169.254.169.254/latest/meta-data/iam/security-credentials/role".to_string(),
        format!("s3://{b}/faces/../../{other}/faces/face01.jpg"),
        format!("https://{b}@evil.example/faces/face01.jpg"),
    ];
    let mut csv = String::from("operation,name,id_number,face_image\n");
    for (i, face) in rows.iter().enumerate() {
        csv.push_str(&format!("huawei.standard,王伟,{},{face}\n", id(i)));
    }
    let dir = tempfile::tempdir().unwrap();
    let published = app.produce_text("allow", &csv, dir.path()).await;
    assert_eq!(published, 1, "only the row in the test's own bucket");

    let rejects = std::fs::read_to_string(dir.path().join("allow.rejects.csv")).unwrap();
    let lines: Vec<&str> = rejects.lines().skip(1).collect();
    assert_eq!(lines.len(), 5, "{rejects}");
    for (line, row) in lines.iter().zip(3..) {
        assert!(line.starts_with(&format!("{row},face_image,")), "{line}");
        assert!(
            line.contains("face_image: not an allowed material source"),
            "{line}"
        );
    }
    assert!(!rejects.contains("SECRET") && !rejects.contains("security-credentials"));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worker_refuses_jobs_published_around_the_producer_without_fetching_or_calling() {
    let app = spawn_app().await;
    let other = format!("{}-other", app.bucket);
    app.objects.ensure_bucket(&other).await.unwrap();
    app.objects
        .put(
            &format!("s3://{other}/faces/face01.jpg"),
            Bytes::from_static(FACE),
        )
        .await
        .unwrap();
    let (port, connections) = counting_listener().await;
    let jobs = [
        job(
            "around",
            2,
            Operation::HuaweiStandard,
            &format!("s3://{other}/faces/face01.jpg"),
        ),
        // Alibaba would be handed a presigned URL for it: it must not be.
        job(
            "around",
            3,
            Operation::AlibabaVerifyMaterial,
            &format!("s3://{other}/faces/face01.jpg"),
        ),
        job(
            "around",
            4,
            Operation::HuaweiStandard,
            &format!("http://127.0.0.1:{port}/probe?X-Amz-Signature=SECRET"),
        ),
        job(
            "around",
            5,
            Operation::HuaweiStandard,
            &format!("s3://{}/faces/%2e%2e/{other}/faces/face01.jpg", app.bucket),
        ),
    ];
    let messages: Vec<OutMessage> = jobs
        .iter()
        .map(|j| OutMessage {
            vendor: j.vendor(),
            message_id: j.job_id.to_string(),
            payload: crate::helpers::message(j),
        })
        .collect();
    let (stop, w) = app.spawn_worker().await;
    app.broker
        .publisher()
        .await
        .unwrap()
        .publish_confirmed(&messages)
        .await
        .unwrap();
    app.wait_for_outcomes("around", 4, Duration::from_secs(60))
        .await;
    let _ = stop.send(());
    w.await.unwrap();

    let filter = kyc_store::queries::OutcomeFilter {
        batch_id: Some("around".into()),
        ..Default::default()
    };
    let mut rows = Vec::new();
    app.store
        .for_each_outcome(&filter, |r| {
            rows.push(r);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(
            (r.status.as_str(), r.reason.as_str(), r.attempts),
            ("error", "material_not_allowed", 0),
            "row {:?}",
            r.source_row
        );
        let message = r.vendor_message.as_deref().unwrap_or_default();
        assert!(message.starts_with("material face_image: "), "{message}");
        assert!(
            !message.contains("SECRET") && !message.contains("faces/"),
            "{message}"
        );
    }
    assert!(app.sim.ledger().entries.is_empty(), "a vendor was called");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the probe was fetched"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn materials_that_cannot_heal_fail_at_once_and_only_transient_ones_are_redelivered() {
    let app = spawn_app().await;
    app.upload_faces().await;
    let missing_bucket = format!("{}-gone", app.bucket);
    // The allowlist names a bucket that does not exist, and an HTTP source on a closed
    // loopback port (connection refused: transient).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sources = kyc_objects::MaterialSources::parse(&format!(
        "s3://{}/,s3://{missing_bucket}/,http://127.0.0.1:{closed}/m/",
        app.bucket
    ))
    .unwrap()
    .with_addresses(kyc_objects::AddressPolicy::allowing(&[
        kyc_objects::AddressClass::Loopback,
    ]));
    let mut ctx = Arc::into_inner(app.context()).unwrap();
    ctx.objects = ctx.objects.with_material_sources(sources);
    let run = |j: Job| {
        let payload = crate::helpers::message(&j);
        let ctx = &ctx;
        async move { kyc_worker::process::process(ctx, &payload, Default::default()).await }
    };
    for (row, face) in [
        (2, format!("s3://{missing_bucket}/faces/face01.jpg")),
        (3, format!("s3://{}/faces/no-such-face.jpg", app.bucket)),
    ] {
        assert_eq!(
            run(job("heal", row, Operation::HuaweiStandard, &face)).await,
            Disposition::Ack(Some(Status::Error)),
            "{face}"
        );
    }
    // Credentials the S3 server refuses (HTTP 403): a refusal, not an outage. The same
    // client settings (endpoint, CA) with a wrong secret.
    let refused = aws_sdk_s3::Client::from_conf(
        app.objects
            .s3_client()
            .unwrap()
            .config()
            .to_builder()
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "kyc-test",
                "wrong-secret",
                None,
                None,
                "test",
            ))
            .build(),
    );
    let denied = Context {
        objects: ctx.objects.clone().with_s3_client(refused),
        ..Arc::into_inner(app.context()).unwrap()
    };
    let payload = crate::helpers::message(&job(
        "heal",
        5,
        Operation::HuaweiStandard,
        &format!("s3://{}/faces/face01.jpg", app.bucket),
    ));
    assert_eq!(
        kyc_worker::process::process(&denied, &payload, Default::default()).await,
        Disposition::Ack(Some(Status::Error))
    );
    // Published around the jobs table: keyed by job id.
    let outcomes = app.outcomes_by_job("heal").await;
    for row in [2, 3, 5] {
        assert_eq!(
            outcomes[&JobId::derive(&crate::helpers::keyring().index, "heal", &row.to_string())
                .to_string()],
            ("error".to_string(), "material_unavailable".to_string(), 0)
        );
    }
    let transient = run(job(
        "heal",
        4,
        Operation::HuaweiStandard,
        &format!("http://127.0.0.1:{closed}/m/face.jpg"),
    ))
    .await;
    assert!(
        matches!(&transient, Disposition::Requeue { reason: r, .. } if r == "material face_image: storage temporarily unavailable"),
        "{transient:?}"
    );
    assert!(app.sim.ledger().entries.is_empty());
    app.cleanup().await;
}
