//! The real `kyc produce` binary stopped in the middle of a file, then run again: a graceful
//! stop (SIGTERM) leaves every row published exactly once in total; a hard kill (SIGKILL)
//! loses nothing and re-sends at most the two windows that were in flight.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kyc_store::Store;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};

use crate::helpers::{amqp_connection, fresh_pg, service, tls_env};

const ROWS: usize = 30_000;
const WINDOW: usize = 500;

fn write_csv(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::from("operation,customer_ref,name,id_number\n");
    for i in 0..ROWS {
        // Distinct people: (region code, sequence code) is unique per row.
        let id = kyc_schemas::IdNumber::with_checksum(&format!(
            "{}19900101{:03}",
            110_000 + i / 1000,
            i % 1000
        ))
        .unwrap();
        text.push_str(&format!(
            "huawei.idcard_extension,C{i},王伟,{}\n",
            id.as_str()
        ));
    }
    let path = dir.join("restart.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn produce(csv: &std::path::Path, db: &str, prefix: &str, batch: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kyc"))
        .args(["produce", "--quiet", "--input"])
        .arg(csv)
        .args([
            "--batch-id",
            batch,
            "--database",
            db,
            "--amqp",
            &service("KYC_TEST_AMQP_URL"),
            "--queue-prefix",
            prefix,
        ])
        .arg("--rejects")
        .arg(csv.with_extension("rejects.csv"))
        .env("KYC_DATA_KEYS", crate::helpers::keyring().data.to_config())
        .env("KYC_INDEX_KEY", crate::helpers::keyring().index.to_base64())
        .envs(tls_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the producer has published part of the file, then signals it.
async fn interrupt(child: &mut Child, store: &Store, batch: &str, signal: &str) {
    let start = Instant::now();
    while store.published_count(batch).await.unwrap() < 3 * WINDOW as i64 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "producer made no progress"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// All messages in a queue, drained: (total, distinct message ids).
async fn drain(prefix: &str) -> (usize, usize) {
    let conn = amqp_connection(&service("KYC_TEST_AMQP_URL")).await;
    let ch = conn.create_channel().await.unwrap();
    let queue = format!("{prefix}.jobs.huawei");
    let declared = ch
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let total = declared.message_count() as usize;
    ch.basic_qos(2000, Default::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let mut ids = HashSet::new();
    for _ in 0..total {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        ids.insert(d.properties.message_id().as_ref().unwrap().to_string());
    }
    let delay: Vec<String> = ["huawei", "alibaba", "baidu"]
        .iter()
        .flat_map(|v| kyc_queue::topology::DELAY_BUCKETS.map(|b| format!("delay.{v}.{b}s")))
        .collect();
    for suffix in ["jobs.huawei", "jobs.alibaba", "jobs.baidu", "dead"]
        .iter()
        .map(|s| s.to_string())
        .chain(delay)
    {
        let _ = ch
            .queue_delete(
                format!("{prefix}.{suffix}").as_str().into(),
                Default::default(),
            )
            .await;
    }
    (total, ids.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_stopped_mid_file_and_rerun_publishes_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_csv(dir.path());
    let (store, db) = fresh_pg().await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();

    for (signal, batch) in [("-TERM", "graceful"), ("-KILL", "hard")] {
        let prefix = format!("restart{tag}{batch}");
        let mut first = produce(&csv, &db, &prefix, batch);
        interrupt(&mut first, &store, batch, signal).await;
        let status = first.wait().unwrap();
        let after_first = store.published_count(batch).await.unwrap() as usize;
        assert!(
            after_first < ROWS,
            "{batch}: the producer finished before it was stopped; use more rows"
        );
        if signal == "-TERM" {
            assert_eq!(
                status.code(),
                Some(130),
                "{batch}: a stopped producer says so"
            );
        }

        let second = produce(&csv, &db, &prefix, batch)
            .wait_with_output()
            .unwrap();
        let out = String::from_utf8_lossy(&second.stdout);
        assert!(
            second.status.success(),
            "{batch}: {out}\n{}",
            String::from_utf8_lossy(&second.stderr)
        );
        assert_eq!(
            store.published_count(batch).await.unwrap() as usize,
            ROWS,
            "{batch}: {out}"
        );

        let (total, distinct) = drain(&prefix).await;
        assert_eq!(distinct, ROWS, "{batch}: every row reaches the queue");
        if signal == "-TERM" {
            assert_eq!(total, ROWS, "{batch}: a graceful stop re-sends nothing");
        } else {
            // Confirmed by the broker but not yet recorded when the process died: at most the
            // two windows in flight, which the worker's outcome check makes harmless.
            assert!(
                total - ROWS <= 2 * WINDOW,
                "{batch}: {} duplicates",
                total - ROWS
            );
        }
    }
    store.close().await;
}
