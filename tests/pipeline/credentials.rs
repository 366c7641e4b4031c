//! Credentials decide consumption: a worker without a vendor's credentials leaves that
//! vendor's jobs on the queue for a worker that has them, instead of ending each one as
//! `error/auth_failed` (which a re-run would then skip).

use std::time::Duration;

use crate::helpers::{id_with_seq, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_baidu_credentials_leaves_baidu_jobs_in_the_queue() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("customer_ref,operation,name,id_number\n");
    for i in 0..3 {
        let id = id_with_seq(i, "123");
        text.push_str(&format!(
            "H{i},huawei.idcard_extension,王芳,{}\n",
            id.as_str()
        ));
        let id = id_with_seq(i + 10, "123");
        text.push_str(&format!("B{i},baidu.start_session,李娜,{}\n", id.as_str()));
    }
    assert_eq!(app.produce_text("creds", &text, dir.path()).await, 6);

    let log = dir.path().join("worker.log");
    let mut worker = app.spawn_worker_process(&log, &[("BAIDU_SECRET_KEY", "")]);
    // The Huawei jobs are done: the worker is up and consuming what it can.
    app.wait_for_outcomes("creds", 3, Duration::from_secs(60))
        .await;

    let (ready, consumers) = app.work_queue_state(kyc_schemas::Vendor::Baidu).await;
    assert_eq!(consumers, 0, "nobody consumes the Baidu queue");
    assert_eq!(
        ready, 3,
        "the Baidu jobs wait for a worker with credentials"
    );
    let outcomes = app.outcomes("creds").await;
    assert!(
        outcomes
            .values()
            .all(|(s, r, _)| s == "passed" && r == "verified"),
        "{outcomes:?}"
    );
    let _ = worker.kill();
    let _ = worker.wait();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("this vendor's queue is not consumed"),
        "the worker says what it skips: {logs}"
    );

    // Naming the vendor explicitly without credentials is a start-up error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc"))
        .args(["work", "--vendors", "baidu"])
        .env("KYC_DATABASE_URL", &app.db_url)
        .env("KYC_AMQP_URL", &app.amqp_url)
        .env("KYC_QUEUE_PREFIX", &app.topology.prefix)
        .env("KYC_HTTP_LISTEN", "127.0.0.1:0")
        .envs(crate::helpers::child_env())
        .env_remove("BAIDU_API_KEY")
        .env_remove("BAIDU_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--vendors names baidu"), "{err}");
    app.cleanup().await;
}
