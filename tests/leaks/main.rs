//! Nothing secret or personal leaves where it must not. Every vendor is driven through every
//! way a call can fail (connection refused, timeout, 5xx, malformed body, refused credentials,
//! and a vendor that answers too late once a token is held), then every place the pipeline
//! writes is read back and searched for what the test used: the secrets, Baidu access tokens,
//! names, ID numbers, mobiles and URL query strings. The count must be zero.
//!
//! The places: every text of every table in the database, the outcomes, billing and reconcile
//! reports (written by the `kyc` binary), the rejects file, every dead letter (body and
//! headers) and every log line the worker and producer wrote, at trace level.
//!
//! A test binary of its own: it captures logs with a thread-local subscriber, which other
//! tests running in the same process would disturb (tracing's callsite cache is global).

#[path = "../pipeline/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use kyc_worker::{Clients, Context, HuaweiAuth, HuaweiConfig, Limiters, RetryPolicy};
use sqlx::Row;

use crate::helpers::{id_with_seq, spawn_app, TestApp};

/// How the vendor side fails in one round.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    /// Nothing listens on the port.
    Refused,
    /// The server accepts and never answers.
    Timeout,
    /// A 5xx whose body echoes the request's query string, as some gateways do.
    ServerError,
    /// HTTP 200 with a body that is not the vendor's JSON.
    Malformed,
    /// The real (simulated) vendor, with a wrong secret.
    CredentialsRefused,
    /// The real (simulated) vendor, answering after the client gave up: Baidu's calls then
    /// fail while an access token is in their URL.
    SlowAfterToken,
}

const FAILURES: [Failure; 6] = [
    Failure::Refused,
    Failure::Timeout,
    Failure::ServerError,
    Failure::Malformed,
    Failure::CredentialsRefused,
    Failure::SlowAfterToken,
];

/// A loopback server that fails every request the same way.
async fn failing_server(failure: Failure) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| async move {
        match failure {
            Failure::Timeout => {
                tokio::time::sleep(Duration::from_secs(300)).await;
                StatusCode::OK.into_response()
            }
            Failure::Malformed => (StatusCode::OK, "<html>{\"result\": [not json").into_response(),
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{{\"error_code\":503,\"error_msg\":\"backend failed for {uri}\",\"Code\":\"ServiceUnavailable\",\"Message\":\"backend failed for {uri}\",\"error_message\":\"backend failed for {uri}\"}}"
                ),
            )
                .into_response(),
        }
    });
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), handle)
}

/// A port on which nothing listens (bound, then released).
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A worker context whose three vendor clients all talk to `endpoint` with `secret`.
fn context_for(app: &TestApp, endpoint: &str, secret: &str) -> Arc<Context> {
    let base = app.context();
    let timeout = Duration::from_millis(400);
    let huawei = HuaweiConfig {
        endpoint: endpoint.into(),
        iam_endpoint: endpoint.into(),
        region: "cn-north-4".into(),
        project_id: "test-project".into(),
        auth: match app.huawei_auth() {
            HuaweiAuth::AkSk { ak, .. } => HuaweiAuth::AkSk {
                ak,
                sk: secret.into(),
            },
            other => other,
        },
        timeout,
        enterprise_project_id: None,
        retry_uncropped: true,
    };
    let mut alibaba = app.alibaba_config();
    alibaba.endpoint = endpoint.into();
    alibaba.access_key_secret = secret.into();
    alibaba.timeout = timeout;
    let mut baidu = app.baidu_config();
    baidu.endpoint = endpoint.into();
    baidu.secret_key = secret.into();
    baidu.timeout = timeout;
    Arc::new(Context {
        store: base.store.clone(),
        objects: base.objects.clone(),
        clients: Clients {
            huawei: Some(huawei.build(reqwest::Client::new())),
            alibaba: Some(alibaba.build(reqwest::Client::new())),
            baidu: Some(baidu.build(reqwest::Client::new())),
        },
        limiters: Limiters::default(),
        retry: RetryPolicy {
            max_attempts: 2,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            ..Default::default()
        },
        metrics: Default::default(),
        keys: base.keys.clone(),
        spend: Default::default(),
    })
}

/// Collects every formatted log line of this thread's tasks.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the test used that must appear nowhere.
struct Needles {
    literal: Vec<(String, &'static str)>,
}

impl Needles {
    fn find_in(&self, place: &str, text: &str) -> Vec<String> {
        let mut hits = Vec::new();
        for (needle, what) in &self.literal {
            if text.contains(needle.as_str()) {
                hits.push(format!("{place}: {what} {needle:?}"));
            }
        }
        // Baidu access tokens as the simulator issues them: `24.<32 hex>.`
        for (i, _) in text.match_indices("24.") {
            let tail = &text[i + 3..];
            if tail.len() > 33
                && tail[..32].bytes().all(|b| b.is_ascii_hexdigit())
                && tail.as_bytes()[32] == b'.'
            {
                hits.push(format!("{place}: a Baidu access token"));
            }
        }
        // A URL query string: `?name=`.
        for (i, _) in text.match_indices('?') {
            let name: String = text[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && text[i + 1 + name.len()..].starts_with('=') {
                hits.push(format!("{place}: a query string ?{name}="));
            }
        }
        for word in ["client_secret", "access_token=", "IdCardNumber"] {
            if text.contains(word) {
                hits.push(format!("{place}: {word}"));
            }
        }
        hits
    }
}

#[tokio::test(flavor = "current_thread")]
async fn no_secret_or_personal_data_reaches_any_output_whatever_the_vendor_does() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            // As the binary filters: these crates print whole frames and bodies below info.
            "trace,lapin=info,amq_protocol=info,hyper=info,h2=info,reqwest=info,hyper_util=info,\
             aws_smithy_runtime=debug,aws_smithy_http_client=debug,rustls=info,sqlx=debug",
        )
        .with_writer(move || sink.clone())
        .finish();
    // current_thread: every task of the worker runs on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = spawn_app().await;
    app.upload_faces().await;
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "欧阳娜娜",
        "司马相如",
        "诸葛孔明",
        "上官婉儿",
        "慕容复",
        "令狐冲",
    ];
    let mut literal: Vec<(String, &'static str)> = vec![
        (app.baidu_config().secret_key, "secret"),
        ("wrong-secret-for-leak-test".into(), "secret"),
    ];
    let operations = [
        "huawei.standard",
        "huawei.idcard_extension",
        "alibaba.verify_material",
        "alibaba.submit_verification",
        "baidu.start_session",
    ];
    let mut servers = Vec::new();
    for (round, failure) in FAILURES.iter().enumerate() {
        let (endpoint, secret) = match failure {
            Failure::Refused => (closed_port_url().await, app.baidu_config().secret_key),
            Failure::CredentialsRefused => {
                (app.sim.base_url(), "wrong-secret-for-leak-test".to_string())
            }
            Failure::SlowAfterToken => {
                let mut faults = kyc_simulator::FaultConfig::default();
                for v in [&mut faults.huawei, &mut faults.alibaba, &mut faults.baidu] {
                    v.latency_ms = 1500;
                }
                app.sim.set_faults(faults);
                (app.sim.base_url(), app.baidu_config().secret_key)
            }
            _ => {
                let (url, handle) = failing_server(*failure).await;
                servers.push(handle);
                (url, app.baidu_config().secret_key)
            }
        };
        let batch = format!("leak{round}");
        let mut text = String::from("customer_ref,operation,name,id_number,mobile,face_image\n");
        for (i, op) in operations.iter().enumerate() {
            let name = names[(round + i) % names.len()];
            let id = id_with_seq(round * 10 + i, "123");
            let mobile = format!("139{:08}", round * 100 + i);
            text.push_str(&format!(
                "C{round}{i},{op},{name},{},{mobile},s3://{}/faces/face02.jpg\n",
                id.as_str(),
                app.bucket
            ));
            literal.push((name.to_string(), "name"));
            literal.push((id.as_str().to_string(), "ID number"));
            literal.push((mobile, "mobile"));
        }
        // A row the producer refuses (bad checksum): its name and number must not be in the
        // rejects file either.
        let bad_id = format!("44030419800101{:03}0", 100 + round);
        let bad_id = if kyc_schemas::IdNumber::parse(&bad_id).is_ok() {
            format!("44030419800101{:03}1", 100 + round)
        } else {
            bad_id
        };
        text.push_str(&format!(
            "R{round},huawei.idcard_extension,独孤求败,{bad_id},13912345678,\n"
        ));
        literal.push(("独孤求败".into(), "name"));
        literal.push((bad_id, "ID number"));
        literal.push(("13912345678".into(), "mobile"));
        let published = app.produce_text(&batch, &text, dir.path()).await;
        assert_eq!(published, operations.len() as u64, "{failure:?}");

        let ctx = context_for(&app, &endpoint, &secret);
        let (stop, handle) = app.spawn_worker_with(ctx).await;
        app.wait_for_outcomes(&batch, operations.len() as i64, Duration::from_secs(120))
            .await;
        let _ = stop.send(());
        handle.await.unwrap();
        app.sim.set_faults(Default::default());
        // Each round must have failed as intended, or it proves nothing.
        let outcomes = app.outcomes(&batch).await;
        let errors = outcomes.values().filter(|(s, ..)| s == "error").count();
        assert!(
            errors >= 3,
            "{failure:?}: expected failed calls, got {outcomes:?}"
        );
    }
    for s in servers {
        s.abort();
    }

    let needles = Needles { literal };
    let mut hits = Vec::new();

    // The database: every row of every table, as text.
    let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    assert!(tables.iter().any(|t| t == "outcomes"), "{tables:?}");
    for table in &tables {
        // pg_stat_statements (which scripts/test-all loads for the benchmark) keeps the text of
        // every statement the server ran: searched too, since a value written into a statement
        // instead of bound would stay there. Its text only: its timings, cast to text
        // (0.13900000000000001), read as mobiles; its _info view holds no text.
        let row = match table.as_str() {
            "pg_stat_statements" => "query",
            "pg_stat_statements_info" => continue,
            _ => "CAST(t AS TEXT)",
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {row} FROM \"{table}\" t"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        for r in rows {
            hits.extend(needles.find_in(&format!("table {table}"), &r.get::<String, _>(0)));
        }
    }
    pool.close().await;

    // The reports, as the binary writes them.
    for (round, _) in FAILURES.iter().enumerate() {
        let batch = format!("leak{round}");
        for args in [
            vec!["outcomes", "--batch", &batch],
            vec!["reconcile", "--batch", &batch],
            vec!["billing"],
        ] {
            let out = dir.path().join(format!("{batch}-{}.csv", args[0]));
            let status = std::process::Command::new(env!("CARGO_BIN_EXE_kyc"))
                .arg("report")
                .args(&args)
                .arg("--out")
                .arg(&out)
                .env("KYC_DATABASE_URL", &app.db_url)
                .envs(helpers::child_env())
                .status()
                .unwrap();
            assert!(status.code().is_some(), "kyc report {args:?} died");
            let text = std::fs::read_to_string(&out)
                .unwrap_or_else(|e| panic!("kyc report {args:?} wrote nothing: {e}"));
            assert!(text.lines().count() > 1, "kyc report {args:?}: {text}");
            hits.extend(needles.find_in(&format!("report {}", args[0]), &text));
        }
        let rejects =
            std::fs::read_to_string(dir.path().join(format!("{batch}.rejects.csv"))).unwrap();
        assert!(
            rejects.lines().count() > 1,
            "the bad row is in the rejects file"
        );
        hits.extend(needles.find_in("rejects file", &rejects));
    }

    // Every dead letter: body and headers.
    let conn = helpers::amqp_connection(&app.amqp_url).await;
    let ch = conn.create_channel().await.unwrap();
    let mut dead = 0;
    while let Some(msg) = ch
        .basic_get(
            app.topology.dead_letter_queue().as_str().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        dead += 1;
        let body = String::from_utf8_lossy(&msg.delivery.data).to_string();
        hits.extend(needles.find_in("dead-letter body", &body));
        let headers = format!("{:?}", msg.delivery.properties.headers());
        hits.extend(needles.find_in("dead-letter headers", &headers));
    }
    assert!(dead > 0, "jobs that gave up leave dead letters to scan");
    let _ = conn.close(0, "done".into()).await;

    // Every log line.
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(
        logs.contains("outcome recorded"),
        "the capture saw the worker"
    );
    hits.extend(needles.find_in("logs", &logs));

    hits.sort();
    hits.dedup();
    assert!(
        hits.is_empty(),
        "{} leaks:\n{}",
        hits.len(),
        hits.join("\n")
    );
    app.cleanup().await;
}
