//! `kyc status` as a child process: a small batch before any worker ran (every published job
//! pending, waiting in its vendor's queue, an ETA from the quotas) and after (every job done,
//! nothing pending, the outcomes counted by status); and on SQLite after an embedded run.

use std::process::{Command, Output};
use std::time::Duration;

use crate::helpers::{child_env, output_text, spawn_app, TestApp};

fn status(app: &TestApp, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kyc"))
        .arg("status")
        .args(args)
        .env("KYC_DATABASE_URL", &app.db_url)
        .env("KYC_AMQP_URL", &app.amqp_url)
        .env("KYC_QUEUE_PREFIX", &app.topology.prefix)
        .env("KYC_QUOTAS", "huawei.ivs-idcard-extention=2")
        .env_remove("KYC_QUOTAS_FILE")
        .envs(child_env())
        .output()
        .expect("run kyc status")
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", output_text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_a_batch_before_and_after_the_workers_ran() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let batch = format!("st-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    // Six two-factor jobs and one refused row (bad checksum).
    let mut text = String::from("operation,customer_ref,name,id_number\n");
    for i in 0..6 {
        let id =
            kyc_schemas::IdNumber::with_checksum(&format!("1100001985010{:04}", 1100 + i)).unwrap();
        text.push_str(&format!(
            "huawei.idcard_extension,C{i},王小明,{}\n",
            id.as_str()
        ));
    }
    text.push_str("huawei.idcard_extension,BAD,王小明,110000198501011230\n");
    assert_eq!(app.produce_text(&batch, &text, dir.path()).await, 6);

    let before = json(&status(&app, &["--batch", &batch, "--json"]));
    let b = &before["batches"][0];
    assert_eq!(b["batch_id"], batch.as_str());
    assert_eq!(
        (b["rows_read"].as_i64(), b["rows_rejected"].as_i64()),
        (Some(7), Some(1))
    );
    assert_eq!(b["published"], 6);
    assert_eq!(
        (b["pending"].as_i64(), b["done"].as_i64()),
        (Some(6), Some(0))
    );
    assert_eq!(b["pending_by_operation"]["huawei.idcard_extension"], 6);
    // 6 pending calls of ivs-idcard-extention at the configured 2 per second.
    assert_eq!(b["eta_quota_secs"].as_f64(), Some(3.0));
    let huawei = before["queues"]["vendors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vendor"] == "huawei")
        .unwrap()
        .clone();
    assert_eq!(huawei["waiting"], 6, "{before}");

    let (stop, worker) = app.spawn_worker().await;
    app.wait_for_outcomes(&batch, 6, Duration::from_secs(60))
        .await;
    let _ = stop.send(());
    worker.await.unwrap();

    let after = json(&status(&app, &["--batch", &batch, "--json"]));
    let b = &after["batches"][0];
    assert_eq!(
        (b["done"].as_i64(), b["pending"].as_i64()),
        (Some(6), Some(0))
    );
    assert_eq!(b["passed"], 6, "{after}");
    assert_eq!(
        (b["error"].as_i64(), b["unknown_calls"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(b["eta_quota_secs"].as_f64(), Some(0.0));
    // Six outcomes within the last five minutes.
    assert!(
        (b["jobs_per_min"].as_f64().unwrap() - 1.2).abs() < 1e-9,
        "{after}"
    );
    let waiting: i64 = after["queues"]["vendors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["waiting"].as_i64().unwrap())
        .sum();
    assert_eq!(waiting, 0, "{after}");

    // The table for people: a header and the batch's row.
    let table = status(&app, &["--batch", &batch]);
    let t = output_text(&table);
    assert!(table.status.success(), "{t}");
    assert!(t.lines().next().unwrap().starts_with("batch"), "{t}");
    assert!(t.lines().any(|l| l.starts_with(&batch)), "{t}");
    // An unknown batch is an error naming it.
    let none = status(&app, &["--batch", "no-such-batch"]);
    assert!(!none.status.success());
    assert!(output_text(&none).contains("no-such-batch"));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_an_embedded_runs_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("small.csv");
    let mut text = String::from("operation,customer_ref,name,id_number\n");
    for i in 0..3 {
        let id =
            kyc_schemas::IdNumber::with_checksum(&format!("1100001985010{:04}", 1200 + i)).unwrap();
        text.push_str(&format!(
            "huawei.idcard_extension,C{i},王小明,{}\n",
            id.as_str()
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let db = format!("sqlite://{}", dir.path().join("kyc.db").display());
    let run = Command::new(env!("CARGO_BIN_EXE_kyc"))
        .arg("run")
        .arg(&csv)
        .arg("--database")
        .arg(&db)
        .arg("--report")
        .arg(dir.path().join("report.csv"))
        .current_dir(dir.path())
        .env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("KYC_HUAWEI_IAM_USER")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("BAIDU_API_KEY")
        .env_remove("KYC_DATA_KEYS")
        .env_remove("KYC_INDEX_KEY")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", output_text(&run));
    let out = Command::new(env!("CARGO_BIN_EXE_kyc"))
        .args(["status", "--json", "--database", &db])
        .output()
        .unwrap();
    let v = json(&out);
    let b = &v["batches"][0];
    assert_eq!(
        (b["published"].as_i64(), b["done"].as_i64()),
        (Some(3), Some(3)),
        "{v}"
    );
    assert_eq!(b["pending"], 0);
    assert!(v["queues"].is_null(), "{v}");
}
