//! Every wait on the network has an end: a database, broker or S3 server that accepts a
//! connection and never answers (a loopback listener that stays silent), a broker that stops
//! confirming (a proxy that holds its answers, as a memory alarm does), a statement that runs
//! too long (`pg_sleep`). And a database that cannot be reached is named by its cause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kyc_objects::{MaterialSources, ObjectStore};
use kyc_queue::{AmqpTimeouts, Broker, OutMessage, QueueError};
use kyc_schemas::Vendor;
use kyc_store::{DbTimeouts, Store, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{child_env, closed_port, service, silent_server, spawn_app, test_ca};

const SHORT: DbTimeouts = DbTimeouts {
    connect: Duration::from_secs(1),
    statement: Duration::from_secs(1),
};

/// `kyc report outcomes` against `url`: (exit success, stderr).
fn report_against(url: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kyc"))
        .args(["report", "outcomes"])
        .env("KYC_DATABASE_URL", url)
        .envs(child_env())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_report_that_cannot_reach_its_database_says_why() {
    let good = service("KYC_TEST_DATABASE_URL");
    let mut url = url::Url::parse(&good).unwrap();

    url.set_port(Some(closed_port())).unwrap();
    let (ok, err) = report_against(url.as_str());
    assert!(!ok);
    assert!(err.contains("connection refused"), "{err}");
    assert!(!err.contains("pool timed out"), "{err}");

    let mut url = url::Url::parse(&good).unwrap();
    url.set_password(Some("not-the-password")).unwrap();
    let (ok, err) = report_against(url.as_str());
    assert!(!ok);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the password reached the message: {err}"
    );

    // A server whose certificate another CA signed: the handshake is named.
    let wrong_ca = service("KYC_TEST_WRONG_CA_FILE");
    let mut url = url::Url::parse(&good).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "sslrootcert" {
                wrong_ca.clone()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let (ok, err) = report_against(url.as_str());
    assert!(!ok);
    assert!(err.contains("TLS handshake failed"), "{err}");
}

#[tokio::test]
async fn a_database_server_that_never_answers_is_given_up_on() {
    let port = silent_server().await;
    let url = format!("postgres://kyc:kyc@127.0.0.1:{port}/kyc");
    let err = Store::connect_with(&url, 1, SHORT).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unreachable { cause } if cause.contains("no answer within")),
        "{err}"
    );
}

#[tokio::test]
async fn a_statement_that_runs_too_long_is_cancelled() {
    let (_, url) = crate::helpers::fresh_pg().await;
    let store = Store::connect_with(&url, 1, SHORT).await.unwrap();
    let err = sqlx::query("SELECT pg_sleep(30)")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("statement timeout"), "{err}");
    // The connection is still usable afterwards.
    store.ping().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn sqlite_waits_for_a_lock_only_as_long_as_the_statement_bound() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::connect_with(&url, 1, SHORT).await.unwrap();
    let (ms,): (i64,) = sqlx::query_as("PRAGMA busy_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(ms, 1000);
    store.close().await;
}

#[tokio::test]
async fn a_broker_that_never_answers_is_given_up_on() {
    let port = silent_server().await;
    let err = Broker::connect_amqp_with(
        &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        None,
        kyc_queue::Topology::new("never"),
        AmqpTimeouts {
            connect: Duration::from_secs(1),
            confirm: Duration::from_secs(1),
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, QueueError::Timeout { .. }), "{err}");
}

/// A TCP proxy that can hold back everything the server sends (the client's requests still
/// go through): a broker that stops confirming, as a memory alarm makes it.
async fn freezing_proxy(upstream: String) -> (u16, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let frozen = Arc::new(AtomicBool::new(false));
    let f = frozen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            let f = f.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    while f.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, frozen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_to_a_broker_that_stops_confirming_fail_instead_of_hanging() {
    let app = spawn_app().await;
    let mut url = url::Url::parse(&app.amqp_url).unwrap();
    let upstream = format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port_or_known_default().unwrap_or(5671)
    );
    let (port, frozen) = freezing_proxy(upstream).await;
    url.set_port(Some(port)).unwrap();
    let broker = Broker::connect_amqp_with(
        url.as_str(),
        test_ca("KYC_TEST_AMQP_CA_FILE").as_deref(),
        app.topology.clone(),
        AmqpTimeouts {
            connect: Duration::from_secs(20),
            confirm: Duration::from_secs(1),
        },
    )
    .await
    .unwrap();
    let publisher = broker.publisher().await.unwrap();
    let mut consumer = broker.consume(Vendor::Huawei, 4).await.unwrap();
    let message = |id: &str| OutMessage {
        vendor: Vendor::Huawei,
        message_id: id.into(),
        payload: b"{}".to_vec(),
    };
    publisher.publish_confirmed(&[message("m1")]).await.unwrap();
    let delivery = consumer.next().await.unwrap().unwrap();

    // Unfrozen on every way out of the test, a failed assertion included: the broker must
    // never be left writing into a stalled socket.
    struct Thaw(Arc<AtomicBool>);
    impl Drop for Thaw {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let _thaw = Thaw(frozen.clone());
    frozen.store(true, Ordering::SeqCst);
    // The producer's window: its confirm never comes.
    let err = publisher
        .publish_confirmed(&[message("m2")])
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Timeout { .. }), "{err}");
    // The worker's copy to a delay queue: abandoned, not awaited forever.
    let err = delivery.delay(Duration::from_secs(5), 0).await.unwrap_err();
    assert!(matches!(err, QueueError::Timeout { .. }), "{err}");
    frozen.store(false, Ordering::SeqCst);
    drop(consumer);
    broker.close().await;
    app.cleanup().await;
}

/// An S3 store whose endpoint is `port` on loopback, with 1 s bounds.
async fn s3_at(port: u16) -> ObjectStore {
    ObjectStore::s3(Some(&format!("http://127.0.0.1:{port}")), None, None)
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(1))
        .with_material_sources(MaterialSources::parse("s3://b/").unwrap())
}

#[tokio::test]
async fn s3_operations_against_a_server_that_never_answers_fail_as_transient() {
    let store = s3_at(silent_server().await).await;
    let err = store.get("s3://b/face.jpg").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(store.s3_identity("s3://b/in.csv").await.is_err());
    assert!(store
        .put("s3://b/out.csv", bytes::Bytes::from_static(b"x"))
        .await
        .is_err());
    assert!(store.reader("s3://b/in.csv").await.is_err());
}

/// An HTTP server that answers every request with headers and the first bytes of a
/// 1,000-byte body, then stops sending without closing.
async fn stalling_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/csv\r\n\r\nid_number,name\n",
                )
                .await;
            held.push(socket);
        }
    });
    port
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_given_up_on() {
    let store = s3_at(stalling_server().await).await;
    let err = store.get("s3://b/face.jpg").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let mut reader = store.reader("s3://b/in.csv").await.unwrap();
    let mut text = Vec::new();
    let err = reader.read_to_end(&mut text).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(text.starts_with(b"id_number"), "the first bytes arrived");
}
