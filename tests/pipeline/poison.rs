//! Poison messages go to the dead-letter queue with a reason, and the worker keeps going.

use std::time::Duration;

use kyc_queue::OutMessage;
use kyc_schemas::Vendor;

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_are_dead_lettered_with_a_reason_and_consumption_continues() {
    let app = spawn_app().await;
    let (stop, w) = app.spawn_worker().await;
    let publisher = app.broker.publisher().await.unwrap();
    let poison = [
        ("p-not-json", b"\x00\x01 definitely not json".to_vec()),
        ("p-version", br#"{"schema_version":7,"job_id":"x"}"#.to_vec()),
        (
            "p-bad-id",
            br#"{"schema_version":1,"job_id":"j","batch_id":"b","source_row":2,"operation":"huawei.idcard_extension","subject":{"name":"Wang","id_number":"440304199001011231"}}"#.to_vec(),
        ),
        // Sealed with a key this worker does not have (retired too early, or another
        // environment's): poison, and the reason names the key id, not the data.
        ("p-key", {
            let mut job = kyc_schemas::Job {
                schema_version: 2,
                job_id: kyc_schemas::JobId::from_stored("p-key-job"),
                batch_id: "b".into(),
                source_row: 2,
                customer_ref: None,
                operation: kyc_schemas::Operation::HuaweiIdcardExtension,
                subject: Default::default(),
                materials: Default::default(),
                vendor_refs: Default::default(),
            };
            job.subject.name = Some(kyc_schemas::PersonName::parse("诸葛亮").unwrap());
            let other = kyc_schemas::DataKeys::generate("retired-2025").unwrap();
            kyc_schemas::JobMessage::seal(&job, &other).to_bytes()
        }),
    ];
    for (id, payload) in &poison {
        publisher
            .publish_confirmed(&[OutMessage {
                vendor: Vendor::Huawei,
                message_id: id.to_string(),
                payload: payload.clone(),
            }])
            .await
            .unwrap();
    }
    // A good job after the poison is still processed.
    let job = kyc_schemas::Job {
        schema_version: 1,
        job_id: kyc_schemas::JobId::derive(&crate::helpers::keyring().index, "poison", "good"),
        batch_id: "poison".into(),
        source_row: 2,
        customer_ref: None,
        operation: kyc_schemas::Operation::HuaweiIdcardExtension,
        subject: kyc_schemas::Subject {
            name: Some(kyc_schemas::PersonName::parse("王伟").unwrap()),
            id_number: Some(crate::helpers::id_with_seq(1, "101")),
            ..Default::default()
        },
        materials: Default::default(),
        vendor_refs: Default::default(),
    };
    publisher
        .publish_confirmed(&[OutMessage {
            vendor: Vendor::Huawei,
            message_id: job.job_id.to_string(),
            payload: serde_json::to_vec(&job).unwrap(),
        }])
        .await
        .unwrap();
    app.wait_for_outcomes("poison", 1, Duration::from_secs(30))
        .await;

    let mut reasons = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while reasons.len() < poison.len() && std::time::Instant::now() < deadline {
        match app.take_dead_letter().await {
            Some((id, reason)) => {
                reasons.insert(id, reason);
            }
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let _ = stop.send(());
    w.await.unwrap();
    assert!(reasons["p-not-json"].starts_with("not JSON"), "{reasons:?}");
    assert!(
        reasons["p-version"].contains("unsupported schema_version 7"),
        "{reasons:?}"
    );
    assert!(reasons["p-bad-id"].contains("checksum"), "{reasons:?}");
    assert!(
        !reasons["p-bad-id"].contains("440304199001011231"),
        "the reason leaked an ID number"
    );
    assert!(
        reasons["p-key"].contains("p-key-job") && reasons["p-key"].contains("\"retired-2025\""),
        "{reasons:?}"
    );
    assert!(!reasons["p-key"].contains("诸葛亮"), "{reasons:?}");
    app.cleanup().await;
}
