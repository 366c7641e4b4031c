//! `kyc doctor` as a child process against the simulator and the real PostgreSQL, RabbitMQ
//! and S3: everything passes on a healthy setup, without a billable call; and each fault
//! (wrong secret, skewed vendor clock, missing bucket, unmigrated database, a queue declared
//! with other arguments, queues never declared) fails its own line with what to fix.

use std::process::{Command, Output};

use kyc_queue::verify::QueueState;
use kyc_queue::{Broker, Topology};
use sqlx::Executor;

use crate::helpers::{child_env, output_text, service, spawn_app, test_ca, TestApp};

/// `kyc doctor` with this app's services, simulator and bucket, then `extra` on top.
fn doctor(app: &TestApp, extra: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kyc"));
    cmd.arg("doctor")
        .env("KYC_DATABASE_URL", &app.db_url)
        .env("KYC_AMQP_URL", &app.amqp_url)
        .env("KYC_QUEUE_PREFIX", &app.topology.prefix)
        .env("KYC_S3_ENDPOINT", service("KYC_TEST_S3_ENDPOINT"))
        .env(
            "KYC_MATERIAL_SOURCES",
            format!("s3://{}/faces/", app.bucket),
        )
        .env_remove("KYC_QUOTAS")
        .env_remove("KYC_QUOTAS_FILE")
        .envs(child_env())
        .envs(app.vendor_env());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().expect("run kyc doctor")
}

/// The output's line for `what` (`PASS  what: …`), which must exist.
fn line<'a>(text: &'a str, what: &str) -> &'a str {
    text.lines()
        .find(|l| {
            l.get(6..)
                .is_some_and(|rest| rest.starts_with(&format!("{what}:")))
        })
        .unwrap_or_else(|| panic!("no line for {what:?} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_on_a_healthy_setup_without_a_billable_call() {
    let app = spawn_app().await;
    let out = doctor(&app, &[]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    for what in [
        "database",
        "database migrations",
        "broker",
        &format!("material source s3://{}/faces/", app.bucket),
        "huawei credentials",
        "huawei clock",
        "alibaba credentials",
        "alibaba clock",
        "baidu credentials",
        "baidu clock",
    ] {
        assert!(line(&text, what).starts_with("PASS"), "{what}:\n{text}");
    }
    // AK/SK and Alibaba are labelled for what they prove.
    assert!(
        line(&text, "huawei credentials").contains("signature only"),
        "{text}"
    );
    assert!(
        line(&text, "alibaba credentials").contains("signature only"),
        "{text}"
    );
    // Quotas are the built-in defaults here: a warning that says so, not a failure.
    assert!(line(&text, "quotas").starts_with("WARN"), "{text}");
    assert!(text.contains("all checks passed"), "{text}");
    // One call per vendor reached the simulator, and none is billable.
    let ledger = app.sim.ledger();
    assert!(
        ledger.entries.iter().any(|e| e.vendor == "huawei"),
        "{ledger:?}"
    );
    assert!(
        ledger.entries.iter().any(|e| e.vendor == "alibaba"),
        "{ledger:?}"
    );
    assert!(
        ledger.entries.iter().all(|e| !e.billable),
        "a probe was billable: {ledger:?}"
    );
    // With every API given a quota, the quota line passes too.
    let all: Vec<String> = kyc_worker::vendors::APIS
        .iter()
        .map(|a| format!("{}=5", kyc_worker::Limiters::key(a)))
        .collect();
    let out = doctor(&app, &[("KYC_QUOTAS", all.join(","))]);
    let text = output_text(&out);
    assert!(line(&text, "quotas").starts_with("PASS"), "{text}");
    // A misspelt quota key fails, naming it.
    let out = doctor(&app, &[("KYC_QUOTAS", "huawei.ivs-standrd=5".into())]);
    let text = output_text(&out);
    assert!(!out.status.success());
    assert!(line(&text, "quotas").starts_with("FAIL"), "{text}");
    assert!(
        line(&text, "quotas").contains("huawei.ivs-standrd"),
        "{text}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_for_wrong_secrets_naming_the_variables_and_not_the_values() {
    let app = spawn_app().await;
    let wrong = "wrong-secret-value-7781".to_string();
    let out = doctor(
        &app,
        &[
            ("HUAWEICLOUD_SDK_SK", wrong.clone()),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", wrong.clone()),
            ("BAIDU_SECRET_KEY", wrong.clone()),
        ],
    );
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    for (vendor, var) in [
        ("huawei", "HUAWEICLOUD_SDK_SK"),
        ("alibaba", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        ("baidu", "BAIDU_SECRET_KEY"),
    ] {
        let l = line(&text, &format!("{vendor} credentials"));
        assert!(
            l.starts_with("FAIL") && l.contains("refused") && l.contains(var),
            "{l}"
        );
    }
    // The rest still passes: the fault is pinned to the credentials.
    assert!(line(&text, "database").starts_with("PASS"), "{text}");
    assert!(line(&text, "huawei clock").starts_with("PASS"), "{text}");
    assert!(!text.contains(&wrong), "a secret was printed:\n{text}");
    assert!(
        !text.contains(&app.db_url),
        "the database URL was printed:\n{text}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_when_the_vendors_clock_is_an_hour_off() {
    let app = spawn_app().await;
    // The vendor side moves, not this host: the simulator's Date header (and Huawei's
    // signature window) follow its clock.
    app.sim.set_faults(kyc_simulator::FaultConfig {
        clock_offset_secs: 3600,
        ..Default::default()
    });
    let out = doctor(&app, &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    let huawei = line(&text, "huawei clock");
    assert!(
        huawei.starts_with("FAIL") && huawei.contains("s ahead of this host's clock"),
        "{text}"
    );
    assert!(
        huawei.contains("15 min") && huawei.contains("NTP"),
        "{huawei}"
    );
    let skew: i64 = huawei
        .split("Date is ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no skew figure in {huawei}"));
    assert!((3590..=3610).contains(&skew), "{huawei}");
    assert!(line(&text, "alibaba clock").starts_with("FAIL"), "{text}");
    // Baidu signs no timestamps: a warning only.
    assert!(line(&text, "baidu clock").starts_with("WARN"), "{text}");
    // Huawei refused the stale signature, Alibaba the stale Timestamp
    // (InvalidTimeStamp.Expired); their lines point at the clock too.
    for vendor in ["huawei", "alibaba"] {
        let credentials = line(&text, &format!("{vendor} credentials"));
        assert!(credentials.contains("clock"), "{text}");
    }
    assert!(
        line(&text, "alibaba credentials").contains("InvalidTimeStamp.Expired"),
        "{text}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_for_a_missing_bucket_naming_the_setting() {
    let app = spawn_app().await;
    let missing = format!(
        "kyc-missing-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let out = doctor(
        &app,
        &[(
            "KYC_MATERIAL_SOURCES",
            format!("s3://{}/faces/,s3://{missing}/x/", app.bucket),
        )],
    );
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        line(
            &text,
            &format!("material source s3://{}/faces/", app.bucket)
        )
        .starts_with("PASS"),
        "{text}"
    );
    let l = line(&text, &format!("material source s3://{missing}/x/"));
    assert!(
        l.starts_with("FAIL") && l.contains("does not exist") && l.contains("KYC_MATERIAL_SOURCES"),
        "{l}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_for_an_unmigrated_database_and_passes_after_kyc_migrate() {
    let app = spawn_app().await;
    let admin_url = service("KYC_TEST_DATABASE_URL");
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let db = format!(
        "kyc_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .await
        .unwrap();
    admin.close().await;
    let url = crate::helpers::with_database_name(&admin_url, &db);
    let out = doctor(&app, &[("KYC_DATABASE_URL", url.clone())]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(line(&text, "database").starts_with("PASS"), "{text}");
    let l = line(&text, "database migrations");
    assert!(
        l.starts_with("FAIL") && l.contains("never migrated") && l.contains("run `kyc migrate`"),
        "{l}"
    );
    // doctor applied nothing: it still fails; `kyc migrate` fixes it.
    let again = output_text(&doctor(&app, &[("KYC_DATABASE_URL", url.clone())]));
    assert!(
        line(&again, "database migrations").starts_with("FAIL"),
        "{again}"
    );
    let migrate = Command::new(env!("CARGO_BIN_EXE_kyc"))
        .arg("migrate")
        .env("KYC_DATABASE_URL", &url)
        .envs(child_env())
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{}", output_text(&migrate));
    let fixed = output_text(&doctor(&app, &[("KYC_DATABASE_URL", url)]));
    assert!(
        line(&fixed, "database migrations").starts_with("PASS"),
        "{fixed}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_for_queues_missing_or_declared_with_other_arguments_and_creates_none() {
    let app = spawn_app().await;
    // The app declared its queues with the default 14-day dead-letter TTL: a doctor
    // configured for 7 days meets a queue declared otherwise.
    let out = doctor(&app, &[("KYC_DEAD_LETTER_TTL", "7d".into())]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    let l = line(&text, "broker");
    assert!(
        l.starts_with("FAIL") && l.contains(&app.topology.dead_letter_queue()),
        "{l}"
    );
    // A prefix nobody declared: every queue is missing, and doctor creates none of them.
    let fresh = format!("doc{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let out = doctor(&app, &[("KYC_QUEUE_PREFIX", fresh.clone())]);
    let text = output_text(&out);
    let l = line(&text, "broker");
    assert!(l.starts_with("FAIL") && l.contains("not declared"), "{l}");
    let broker = Broker::connect_amqp(
        &app.amqp_url,
        test_ca("KYC_TEST_AMQP_CA_FILE").as_deref(),
        Topology::new(fresh),
    )
    .await
    .unwrap();
    let states = broker.queue_states().await.unwrap();
    assert!(!states.is_empty());
    assert!(
        states.iter().all(|(_, s)| *s == QueueState::Missing),
        "doctor created queues: {states:?}"
    );
    broker.close().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_in_embedded_mode_skips_the_broker_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("kyc.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_kyc"))
        .arg("doctor")
        .env("KYC_DATABASE_URL", &db)
        .env_remove("KYC_MATERIAL_SOURCES")
        .env_remove("HUAWEICLOUD_SDK_AK")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("BAIDU_API_KEY")
        .env_remove("KYC_HUAWEI_IAM_USER")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(line(&text, "broker").starts_with("SKIP"), "{text}");
    assert!(line(&text, "broker").contains("embedded"), "{text}");
    // A new SQLite file has no migrations yet (`kyc run` applies them).
    assert!(
        line(&text, "database migrations").starts_with("FAIL"),
        "{text}"
    );
    assert!(
        line(&text, "huawei credentials").starts_with("SKIP"),
        "{text}"
    );
}
