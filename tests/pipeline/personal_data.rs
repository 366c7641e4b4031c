//! Personal data at rest (issue 10): after a batch on the real services, no name, ID number,
//! mobile number or material URI is in the database, a queued message or a dead letter;
//! data keys rotate with old values still readable; `kyc purge` removes personal data past
//! retention and keeps billing and audit; dead letters expire.

use std::time::{Duration, Instant};

use kyc_queue::{Broker, QueueError, Topology};
use kyc_schemas::{DataKeys, JobMessage, Keyring, JOB_SCHEMA_VERSION};
use kyc_store::queries::OutcomeFilter;
use kyc_store::Store;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

use crate::helpers::{id_with_seq, keyring, service, spawn_app, TestApp};

/// What must never be found in clear: (what it is, the text).
struct Secrets(Vec<(&'static str, String)>);

impl Secrets {
    fn assert_absent(&self, place: &str, text: &str) {
        for (what, value) in &self.0 {
            assert!(
                !text.contains(value.as_str()),
                "{place} holds {what} in clear"
            );
        }
    }
}

/// A CSV of two-factor, three-factor (face on S3, mobile given) and always-throttled jobs
/// (these give up and leave a dead-letter copy). Returns the CSV and what is personal in it.
fn batch_csv(app: &TestApp) -> (String, Secrets, usize) {
    let names = ["欧阳娜娜", "诸葛孔明", "司马相如", "上官婉儿"];
    let mut csv = String::from("operation,customer_ref,name,id_number,mobile,face_image\n");
    let mut secrets = Vec::new();
    let mut rows = 0;
    for (i, name) in names.iter().enumerate() {
        // 101 passes, 953 is throttled on every call (attempts exhausted → dead letter).
        for (j, seq) in ["101", "953"].iter().enumerate() {
            let n = i * 2 + j;
            let id = id_with_seq(40 + n, seq);
            let mobile = format!("1391234{n:04}");
            let (operation, face) = if j == 0 && i % 2 == 0 {
                (
                    "huawei.standard",
                    format!("s3://{}/faces/face0{}.jpg", app.bucket, 1 + i),
                )
            } else {
                ("huawei.idcard_extension", String::new())
            };
            csv.push_str(&format!(
                "{operation},PII-C{n},{name},{},{mobile},{face}\n",
                id.as_str()
            ));
            secrets.push(("an ID number", id.as_str().to_string()));
            secrets.push(("a mobile number", mobile));
            if !face.is_empty() {
                secrets.push(("a material URI", face));
            }
            rows += 1;
        }
        secrets.push(("a name", name.to_string()));
    }
    (csv, Secrets(secrets), rows)
}

async fn report(store: &Store, batch: &str, keys: Option<DataKeys>) -> Result<String, String> {
    let mut out = Vec::new();
    let opts = kyc_report::ReportOptions {
        unmasked: keys.is_some(),
        requested_by: "test".into(),
        operator: Some(kyc_report::Operator {
            name: "test".into(),
            source: kyc_report::OperatorSource::Configured,
        }),
        destination: "memory".into(),
        excel_bom: false,
        keys,
    };
    let filter = OutcomeFilter {
        batch_id: Some(batch.into()),
        ..Default::default()
    };
    kyc_report::write_outcomes(store, &filter, &opts, &mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_leaves_no_personal_data_in_clear_in_the_database_the_queue_or_a_dead_letter() {
    let app = spawn_app().await;
    app.upload_faces().await;
    let dir = tempfile::tempdir().unwrap();
    let (csv, secrets, rows) = batch_csv(&app);
    assert_eq!(
        app.produce_text("pii", &csv, dir.path()).await as usize,
        rows
    );

    // The messages at rest in the broker, before any worker touched them.
    let queued = app
        .peek_queue(&app.topology.work_queue(kyc_schemas::Vendor::Huawei))
        .await;
    assert_eq!(queued.len(), rows);
    for (id, body, _) in &queued {
        secrets.assert_absent(
            &format!("queued message {id}"),
            &String::from_utf8_lossy(body),
        );
        let m: JobMessage = serde_json::from_slice(body).unwrap();
        assert_eq!(m.schema_version, JOB_SCHEMA_VERSION);
        assert!(m.personal.starts_with("v1.test."));
    }

    let (stop, w) = app.spawn_worker().await;
    app.wait_for_outcomes("pii", rows as i64, Duration::from_secs(120))
        .await;
    // Every always-throttled job leaves a copy in the dead-letter queue.
    let deadline = Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let dead = app.peek_queue(&app.topology.dead_letter_queue()).await;
        if dead.len() >= rows / 2 {
            break dead;
        }
        assert!(Instant::now() < deadline, "{} dead letters", dead.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = stop.send(());
    w.await.unwrap();
    for (id, body, headers) in &dead {
        secrets.assert_absent(&format!("dead letter {id}"), &String::from_utf8_lossy(body));
        secrets.assert_absent(&format!("dead letter {id}'s headers"), headers);
    }

    // Every table, every column, as pg_dump writes them.
    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", "--no-owner", "--dbname"])
        .arg(&app.db_url)
        .output()
        .expect("pg_dump runs (it comes with PostgreSQL)");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8(dump.stdout).unwrap();
    // The dump does cover the jobs: their references and masked subjects are in it.
    assert!(dump.contains("PII-C0") && dump.contains("欧***"), "{dump}");
    secrets.assert_absent("the database dump", &dump);

    // Stored all the same: the masked report shows masks, the unmasked export the values.
    let masked = report(&app.store, "pii", None).await.unwrap();
    secrets.assert_absent("the masked report", &masked);
    let unmasked = report(&app.store, "pii", Some(keyring().data.clone()))
        .await
        .unwrap();
    for name in ["欧阳娜娜", "上官婉儿"] {
        assert!(unmasked.contains(name), "{unmasked}");
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_keys_keep_old_values_readable_and_a_missing_key_is_named() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let kid1 = DataKeys::generate("kid1").unwrap();
    let kid2 = DataKeys::generate("kid2").unwrap();
    let rotated = DataKeys::parse(
        &format!("{},{}", kid1.to_config(), kid2.to_config()),
        Some("kid2"),
    )
    .unwrap();
    let index = keyring().index.clone();
    let produce = |batch: &'static str, data: DataKeys, name: &'static str, seq: usize| {
        let text = format!(
            "operation,name,id_number\nhuawei.idcard_extension,{name},{}\n",
            id_with_seq(seq, "101").as_str()
        );
        let input = dir.path().join(format!("{batch}.csv"));
        std::fs::write(&input, text).unwrap();
        let settings = kyc_producer::ProduceSettings {
            batch_id: batch.into(),
            input: input.display().to_string(),
            images: None,
            material_sources: Default::default(),
            default_operation: None,
            rejects_path: dir.path().join(format!("{batch}.rejects.csv")),
            dry_run: false,
            window: 10,
            encoding: Default::default(),
            max_record_bytes: kyc_producer::DEFAULT_MAX_RECORD_BYTES,
            keys: Keyring {
                data,
                index: index.clone(),
            },
            skip_verified_within: None,
        };
        let (store, broker) = (app.store.clone(), app.broker.clone());
        async move {
            kyc_producer::produce(
                &settings,
                None,
                &store,
                &broker,
                &kyc_producer::CancellationToken::new(),
                |_| {},
            )
            .await
            .unwrap()
        }
    };
    // Written before the rotation with kid1 (row and message), after it with kid2.
    assert_eq!(
        produce("rot-1", kid1.clone(), "皇甫嵩", 61).await.published,
        1
    );
    assert_eq!(
        produce("rot-2", rotated.clone(), "慕容复", 62)
            .await
            .published,
        1
    );

    // A worker with the rotated configuration opens both messages.
    let base = app.context();
    let ctx = std::sync::Arc::new(kyc_worker::Context {
        store: base.store.clone(),
        objects: base.objects.clone(),
        clients: kyc_worker::Clients {
            huawei: Some(
                app.huawei_config(Duration::from_secs(10))
                    .build(reqwest::Client::new()),
            ),
            ..Default::default()
        },
        limiters: kyc_worker::Limiters::default(),
        retry: Default::default(),
        metrics: Default::default(),
        keys: rotated.clone(),
        spend: Default::default(),
    });
    let (stop, w) = app.spawn_worker_with(ctx).await;
    app.wait_for_outcomes("rot-1", 1, Duration::from_secs(60))
        .await;
    app.wait_for_outcomes("rot-2", 1, Duration::from_secs(60))
        .await;
    let _ = stop.send(());
    w.await.unwrap();
    let outcomes = app.outcomes("rot-1").await;
    assert_eq!(outcomes[&2].0, "passed");

    // Each row names the key it was sealed with.
    let kids: Vec<(String, String)> = sqlx::query_as(
        "SELECT batch_id, subject_name_sealed FROM jobs WHERE batch_id LIKE 'rot-%' ORDER BY batch_id",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert!(kids[0].1.starts_with("v1.kid1."), "{kids:?}");
    assert!(kids[1].1.starts_with("v1.kid2."), "{kids:?}");

    // Both readable with the rotated configuration.
    assert!(report(&app.store, "rot-1", Some(rotated.clone()))
        .await
        .unwrap()
        .contains("皇甫嵩"));
    assert!(report(&app.store, "rot-2", Some(rotated))
        .await
        .unwrap()
        .contains("慕容复"));
    // kid1 dropped too early: the export fails, naming the job and the key, not the data.
    let err = report(&app.store, "rot-1", Some(kid2)).await.unwrap_err();
    assert!(
        err.contains("\"kid1\"") && err.contains("not configured"),
        "{err}"
    );
    assert!(!err.contains("皇甫嵩"), "{err}");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_removes_personal_data_past_retention_and_keeps_billing_and_audit() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("operation,customer_ref,name,id_number\n");
    for i in 0..3 {
        text.push_str(&format!(
            "huawei.idcard_extension,OLD-{i},宇文泰,{}\n",
            id_with_seq(70 + i, "101").as_str()
        ));
    }
    assert_eq!(app.produce_text("purge", &text, dir.path()).await, 3);
    let (stop, w) = app.spawn_worker().await;
    app.wait_for_outcomes("purge", 3, Duration::from_secs(60))
        .await;
    let _ = stop.send(());
    w.await.unwrap();
    // Two of the three were decided 200 days ago, with the vendor's raw words kept.
    let day = 86_400_000i64;
    let old = kyc_store::now_ms() - 200 * day;
    sqlx::query(
        "UPDATE outcomes SET completed_at_ms = $1, vendor_message = 'raw vendor words' \
         WHERE job_id IN (SELECT job_id FROM jobs WHERE customer_ref IN ('OLD-0', 'OLD-1'))",
    )
    .bind(old)
    .execute(app.store.pool())
    .await
    .unwrap();
    app.store
        .start_report_audit(&kyc_store::audit::ExportStart {
            operator: "auditor",
            operator_source: kyc_report::OperatorSource::Configured,
            requested_by: "ticket",
            report: "outcomes",
            filter: &OutcomeFilter::default(),
            destination: "memory",
        })
        .await
        .unwrap();
    let billing = app.store.billing_rows().await.unwrap();
    let ledger = app.store.ledger_counts().await.unwrap();
    let statuses = app.outcomes("purge").await;

    let cutoff = kyc_store::now_ms() - 180 * day;
    let first = app.store.purge_personal_data(cutoff).await.unwrap();
    assert_eq!((first.jobs, first.vendor_messages), (2, 2));
    let again = app.store.purge_personal_data(cutoff).await.unwrap();
    assert_eq!(
        (again.jobs, again.vendor_messages),
        (0, 0),
        "not idempotent"
    );

    let subjects: Vec<SubjectState> = sqlx::query_as(
        "SELECT customer_ref, subject_name_sealed, subject_id_number_masked, purged_at_ms \
         FROM jobs WHERE batch_id = 'purge' ORDER BY customer_ref",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    for (r, name, id, purged) in &subjects[..2] {
        assert!(name.is_none() && id.is_none() && purged.is_some(), "{r}");
    }
    let (_, name, id, purged) = &subjects[2];
    assert!(name.is_some() && id.is_some() && purged.is_none());
    let (messages,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM outcomes WHERE vendor_message = 'raw vendor words'")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(messages, 0);

    // Billing, the ledger, outcomes and the audit trail are as they were.
    assert_eq!(app.store.billing_rows().await.unwrap(), billing);
    assert_eq!(app.store.ledger_counts().await.unwrap(), ledger);
    assert_eq!(app.outcomes("purge").await, statuses);
    assert_eq!(app.store.report_audit().await.unwrap().len(), 1);
    // The unmasked export still works: purged rows simply have no subject any more.
    let unmasked = report(&app.store, "purge", Some(keyring().data.clone()))
        .await
        .unwrap();
    assert_eq!(unmasked.matches("宇文泰").count(), 1, "{unmasked}");
    app.cleanup().await;
}

/// customer_ref, sealed name, masked ID number, purged_at_ms.
type SubjectState = (String, Option<String>, Option<String>, Option<i64>);

fn fresh_topology(ttl: Duration) -> Topology {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
    Topology::new(format!("ttl{id}")).with_dead_letter_ttl(ttl)
}

async fn delete_queues(url: &str, t: &Topology) {
    let conn = crate::helpers::amqp_connection(url).await;
    let ch = conn.create_channel().await.unwrap();
    let mut queues = vec![t.dead_letter_queue()];
    for v in kyc_schemas::Vendor::ALL {
        queues.push(t.work_queue(v));
        for b in kyc_queue::topology::DELAY_BUCKETS {
            queues.push(t.delay_queue(v, b));
        }
    }
    for q in queues {
        let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    }
    let _ = conn.close(200, "bye".into()).await;
}

fn quorum_args(ttl_ms: Option<i64>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(ms) = ttl_ms {
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms));
    }
    args
}

#[tokio::test]
async fn dead_letters_expire_after_the_configured_ttl() {
    let url = service("KYC_TEST_AMQP_URL");
    let t = fresh_topology(Duration::from_millis(1500));
    let broker = Broker::connect_amqp(
        &url,
        crate::helpers::test_ca("KYC_TEST_AMQP_CA_FILE").as_deref(),
        t.clone(),
    )
    .await
    .unwrap();
    broker.declare().await.unwrap();
    let conn = crate::helpers::amqp_connection(&url).await;
    let ch = conn.create_channel().await.unwrap();
    // The queue carries exactly this TTL: the same declaration is accepted, another refused.
    ch.queue_declare(
        t.dead_letter_queue().as_str().into(),
        QueueDeclareOptions::durable(),
        quorum_args(Some(1500)),
    )
    .await
    .expect("same arguments are accepted");
    let other = ch
        .queue_declare(
            t.dead_letter_queue().as_str().into(),
            QueueDeclareOptions::durable(),
            quorum_args(Some(1501)),
        )
        .await
        .unwrap_err();
    assert!(other.to_string().contains("PRECONDITION_FAILED"), "{other}");

    // A dead letter left there (confirmed: it is in the queue) is dropped by the broker.
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let confirm = ch
        .basic_publish(
            "".into(),
            t.dead_letter_queue().as_str().into(),
            BasicPublishOptions::default(),
            b"{}",
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let q = ch
            .queue_declare(
                t.dead_letter_queue().as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        if q.message_count() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the dead letter did not expire");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = conn.close(200, "bye".into()).await;
    broker.close().await;
    delete_queues(&url, &t).await;
}

#[tokio::test]
async fn a_dead_letter_queue_from_before_the_ttl_is_named_with_what_to_do() {
    let url = service("KYC_TEST_AMQP_URL");
    let t = fresh_topology(Duration::from_secs(14 * 86_400));
    // As an older version declared it: no TTL.
    let conn = crate::helpers::amqp_connection(&url).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        t.dead_letter_queue().as_str().into(),
        QueueDeclareOptions::durable(),
        quorum_args(None),
    )
    .await
    .unwrap();
    let broker = Broker::connect_amqp(
        &url,
        crate::helpers::test_ca("KYC_TEST_AMQP_CA_FILE").as_deref(),
        t.clone(),
    )
    .await
    .unwrap();
    match broker.declare().await {
        Err(e @ QueueError::QueueArguments { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&t.dead_letter_queue()) && text.contains("delete_queue"),
                "{text}"
            );
        }
        other => panic!("expected a queue-arguments error, got {other:?}"),
    }
    // After the operator deletes it, the declaration goes through.
    ch.queue_delete(t.dead_letter_queue().as_str().into(), Default::default())
        .await
        .unwrap();
    let broker = Broker::connect_amqp(
        &url,
        crate::helpers::test_ca("KYC_TEST_AMQP_CA_FILE").as_deref(),
        t.clone(),
    )
    .await
    .unwrap();
    broker.declare().await.unwrap();
    let _ = conn.close(200, "bye".into()).await;
    broker.close().await;
    delete_queues(&url, &t).await;
}
