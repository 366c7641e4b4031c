//! The server-mode pipeline: a CSV on S3 → producer → RabbitMQ → two workers → PostgreSQL,
//! checked row by row against the simulator's table, and the ledger against the simulator's.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kyc_producer::ProduceSettings;

use crate::helpers::{id_with_seq, predicted, spawn_app};

/// Sequence codes cycled through the batch: passes, every verification code, and the two
/// one-shot faults that must succeed on retry.
const SEQS: [&str; 12] = [
    "101", "102", "901", "902", "903", "906", "930", "951", "952", "103", "104", "105",
];
const NAMES: [&str; 6] = ["王伟", "李娜", "张敏", "刘洋", "陈静", "阿依古丽·买买提"];

fn csv_rows(n: usize) -> (String, Vec<(String, &'static str)>) {
    let mut csv = String::from("customer_ref,operation,name,id_number,face_image\n");
    let mut expected = Vec::new();
    for i in 0..n {
        let seq = SEQS[i % SEQS.len()];
        let op = if i % 4 == 3 {
            "huawei.idcard_extension"
        } else {
            "huawei.standard"
        };
        let face = if op == "huawei.standard" {
            format!("faces/face{:02}.jpg", 1 + i % 6)
        } else {
            String::new()
        };
        csv.push_str(&format!(
            "C{i:05},{op},{},{},{face}\n",
            NAMES[i % NAMES.len()],
            id_with_seq(i, seq).as_str()
        ));
        expected.push((op.to_string(), seq));
    }
    (csv, expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_csv_on_s3_flows_through_rabbitmq_to_postgres_with_predicted_outcomes_and_exact_billing()
{
    let app = spawn_app().await;
    app.upload_faces().await;
    let (csv, expected) = csv_rows(200);
    let input = format!("s3://{}/in/jobs.csv", app.bucket);
    app.objects.put(&input, Bytes::from(csv)).await.unwrap();

    let (stop1, w1) = app.spawn_worker().await;
    let (stop2, w2) = app.spawn_worker().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = ProduceSettings {
        batch_id: "nightly-1".into(),
        input,
        images: Some(format!("s3://{}/", app.bucket)),
        material_sources: Default::default(),
        default_operation: None,
        rejects_path: dir.path().join("rejects.csv"),
        dry_run: false,
        window: 64,
        encoding: Default::default(),
        max_record_bytes: kyc_producer::DEFAULT_MAX_RECORD_BYTES,
        keys: crate::helpers::keyring().clone(),
        skip_verified_within: None,
    };
    let summary = kyc_producer::produce(
        &settings,
        Some(&app.objects),
        &app.store,
        &app.broker,
        &kyc_producer::CancellationToken::new(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        (summary.rows_read, summary.published, summary.rejected),
        (200, 200, 0)
    );
    // The batch row, which operators watch, says the same.
    let counts = app.store.batch_counts("nightly-1").await.unwrap().unwrap();
    assert_eq!(
        (counts.read, counts.published, counts.rejected),
        (200, 200, 0)
    );

    app.wait_for_outcomes("nightly-1", 200, Duration::from_secs(120))
        .await;
    let _ = stop1.send(());
    let _ = stop2.send(());
    w1.await.unwrap();
    w2.await.unwrap();

    // Every row has the outcome the simulator's table predicts.
    let outcomes = app.outcomes("nightly-1").await;
    assert_eq!(outcomes.len(), 200);
    for (i, (op, seq)) in expected.iter().enumerate() {
        let row = i as i64 + 2; // the header is row 1
        let (status, reason, attempts) = &outcomes[&row];
        let (want_status, want_reason) = predicted(op, seq);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            (want_status.as_str(), want_reason),
            "row {row} ({op}, seq {seq})"
        );
        let want_attempts = if matches!(*seq, "951" | "952") { 2 } else { 1 };
        assert_eq!(*attempts, want_attempts, "row {row} attempts");
    }

    // Our ledger agrees with the vendor's, call for call, and the counters with both.
    let sim = app.sim.ledger();
    let mut ours: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (vendor, api, state, billable, n) in app.store.ledger_counts().await.unwrap() {
        assert_eq!(state, "done", "no call may stay open or unknown");
        let e = ours.entry(format!("{vendor}.{api}")).or_default();
        e.0 += n as u64;
        if billable {
            e.1 += n as u64;
        }
    }
    let theirs: BTreeMap<String, (u64, u64)> = sim
        .totals
        .iter()
        .map(|(k, t)| (k.clone(), (t.calls, t.billable)))
        .collect();
    assert_eq!(ours, theirs);
    let counted = app.billable_calls_counted().await;
    let http_200 = sim.entries.iter().filter(|e| e.http_status == 200).count() as i64;
    assert_eq!(counted, http_200);
    // 951/952 rows made one extra, unbilled call each.
    let retries = expected
        .iter()
        .filter(|(_, s)| matches!(*s, "951" | "952"))
        .count();
    assert_eq!(sim.entries.len(), 200 + retries);
    assert_eq!(http_200, 200);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rerunning_the_producer_and_redelivering_jobs_change_nothing() {
    let app = spawn_app().await;
    app.upload_faces().await;
    let (csv, _) = csv_rows(30);
    let input = format!("s3://{}/in/again.csv", app.bucket);
    app.objects.put(&input, Bytes::from(csv)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = ProduceSettings {
        batch_id: "again".into(),
        input,
        images: Some(format!("s3://{}/", app.bucket)),
        material_sources: Default::default(),
        default_operation: None,
        rejects_path: dir.path().join("rejects.csv"),
        dry_run: false,
        window: 7,
        encoding: Default::default(),
        max_record_bytes: kyc_producer::DEFAULT_MAX_RECORD_BYTES,
        keys: crate::helpers::keyring().clone(),
        skip_verified_within: None,
    };
    let first = kyc_producer::produce(
        &settings,
        Some(&app.objects),
        &app.store,
        &app.broker,
        &kyc_producer::CancellationToken::new(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(first.published, 30);
    // The messages as published (sealed), to deliver them again after the jobs are done.
    let published: Vec<kyc_queue::OutMessage> = app
        .peek_queue(&app.topology.work_queue(kyc_schemas::Vendor::Huawei))
        .await
        .into_iter()
        .map(|(id, payload, _)| kyc_queue::OutMessage {
            vendor: kyc_schemas::Vendor::Huawei,
            message_id: id,
            payload,
        })
        .collect();
    assert_eq!(published.len(), 30);
    let (stop, w) = app.spawn_worker().await;
    app.wait_for_outcomes("again", 30, Duration::from_secs(60))
        .await;
    let calls_before = app.sim.ledger().entries.len();

    // Same file, same batch: nothing new is published.
    let second = kyc_producer::produce(
        &settings,
        Some(&app.objects),
        &app.store,
        &app.broker,
        &kyc_producer::CancellationToken::new(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!((second.published, second.skipped), (0, 30));

    // The same messages delivered again (as after a lost ack): acked with no vendor call.
    let payloads = published;
    app.broker
        .publisher()
        .await
        .unwrap()
        .publish_confirmed(&payloads)
        .await
        .unwrap();
    // Wait until every copy was taken and settled: a stopped worker drains what it was
    // working on and hands back deliveries it had not started, so work again until a stop
    // leaves nothing in the queue.
    let (mut stop, mut w) = (stop, w);
    for round in 0.. {
        app.wait_queue_taken(kyc_schemas::Vendor::Huawei, Duration::from_secs(30))
            .await;
        let _ = stop.send(());
        w.await.unwrap();
        if app.work_queue_state(kyc_schemas::Vendor::Huawei).await.0 == 0 {
            break;
        }
        assert!(round < 5, "copies keep coming back to the queue");
        (stop, w) = app.spawn_worker().await;
    }
    assert_eq!(
        app.sim.ledger().entries.len(),
        calls_before,
        "a redelivered job made a vendor call"
    );
    assert_eq!(app.store.outcome_count("again").await.unwrap(), 30);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_copies_of_a_job_in_the_queue_make_one_vendor_call() {
    let app = spawn_app().await;
    let mut faults = kyc_simulator::FaultConfig::default();
    faults.huawei.latency_ms = 400; // both copies are in flight at the same time
    app.sim.set_faults(faults);
    let (stop1, w1) = app.spawn_worker().await;
    let (stop2, w2) = app.spawn_worker().await;
    let job = kyc_schemas::Job {
        schema_version: 1,
        job_id: kyc_schemas::JobId::derive(&crate::helpers::keyring().index, "twins", "1"),
        batch_id: "twins".into(),
        source_row: 2,
        customer_ref: None,
        operation: kyc_schemas::Operation::HuaweiIdcardExtension,
        subject: kyc_schemas::Subject {
            name: Some(kyc_schemas::PersonName::parse("王伟").unwrap()),
            id_number: Some(id_with_seq(5, "101")),
            ..Default::default()
        },
        materials: Default::default(),
        vendor_refs: Default::default(),
    };
    let message = kyc_queue::OutMessage {
        vendor: kyc_schemas::Vendor::Huawei,
        message_id: job.job_id.to_string(),
        payload: serde_json::to_vec(&job).unwrap(),
    };
    app.broker
        .publisher()
        .await
        .unwrap()
        .publish_confirmed(&[message.clone(), message])
        .await
        .unwrap();
    app.wait_for_outcomes("twins", 1, Duration::from_secs(30))
        .await;
    // The second copy is taken too; stopping the workers drains (settles) it.
    app.wait_queue_taken(kyc_schemas::Vendor::Huawei, Duration::from_secs(30))
        .await;
    let _ = stop1.send(());
    let _ = stop2.send(());
    w1.await.unwrap();
    w2.await.unwrap();
    assert_eq!(
        app.sim.ledger().entries.len(),
        1,
        "the duplicate message called the vendor"
    );
    app.cleanup().await;
}
