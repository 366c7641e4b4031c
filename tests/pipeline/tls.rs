//! Encryption in transit, proved against the TLS-only services of `scripts/test-all`: each
//! client verifies the server's certificate (a CA it does not trust, or a host name the
//! certificate does not name, is refused) and the servers refuse plaintext. 127.0.0.2 is a
//! loopback address the services also listen on, absent from their certificate.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kyc_objects::{ObjectError, ObjectStore};
use kyc_queue::QueueError;
use kyc_simulator::{SimConfig, Simulator};
use kyc_worker::{Clients, Context};
use sqlx::Connection;

use crate::helpers::{id_with_seq, service, spawn_app, test_ca};

/// Every attempt must end, refused or not, well within a minute.
async fn settle<T>(what: &str, attempt: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), attempt)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 60 s"))
}

fn wrong_ca() -> String {
    test_ca("KYC_TEST_WRONG_CA_FILE")
        .expect("KYC_TEST_WRONG_CA_FILE is not set: run scripts/test-all, which makes it")
}

/// `url` with some query options replaced (or added).
fn with_options(url: &str, options: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(url).unwrap();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !options.iter().any(|(o, _)| o == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .extend_pairs(options);
    url.into()
}

fn with_host(url: &str, host: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_host(Some(host)).unwrap();
    url.into()
}

#[tokio::test]
async fn postgres_is_reached_over_verified_tls_only() {
    let url = service("KYC_TEST_DATABASE_URL");
    assert!(url.contains("sslmode=verify-full"), "{url}");
    let connect =
        |url: String| async move { settle(&url.clone(), sqlx::PgConnection::connect(&url)).await };

    let mut conn = connect(url.clone()).await.expect("verified TLS connection");
    let (tls,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(tls, "the connection the tests use is encrypted");
    conn.close().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-ca.crt");
    std::fs::write(&wrong, wrong_ca()).unwrap();
    let err = connect(with_options(
        &url,
        &[("sslrootcert", wrong.to_str().unwrap())],
    ))
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid peer certificate: UnknownIssuer"),
        "a server certified by another CA must be refused: {err}"
    );

    // The chain is right but the name is not: verify-full refuses, verify-ca (chain only)
    // accepts, so it is the host name check that refuses.
    let other_name = with_host(&url, "127.0.0.2");
    let err = connect(other_name.clone()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid peer certificate: certificate not valid for name"),
        "{err}"
    );
    connect(with_options(&other_name, &[("sslmode", "verify-ca")]))
        .await
        .expect("verify-ca checks the chain only");

    let err = connect(with_options(&url, &[("sslmode", "disable")]))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no encryption"),
        "the server must refuse plaintext: {err}"
    );
}

#[tokio::test]
async fn rabbitmq_is_reached_over_verified_tls_only() {
    let url = service("KYC_TEST_AMQP_URL");
    assert!(url.starts_with("amqps://"), "{url}");
    let ca = test_ca("KYC_TEST_AMQP_CA_FILE").expect("KYC_TEST_AMQP_CA_FILE");
    let connect = |url: String, ca: Option<String>| async move {
        settle(&url, kyc_queue::amqp::connect(&url, ca.as_deref())).await
    };

    let conn = connect(url.clone(), Some(ca.clone()))
        .await
        .expect("verified TLS connection");
    conn.close(200, "bye".into()).await.unwrap();

    for (why, url, ca) in [
        (
            "a CA the client does not trust",
            url.clone(),
            Some(wrong_ca()),
        ),
        ("only the system's roots", url.clone(), None),
        (
            "a host name the certificate does not name",
            with_host(&url, "127.0.0.2"),
            Some(ca.clone()),
        ),
    ] {
        let err = connect(url, ca).await.unwrap_err();
        assert!(
            matches!(err, QueueError::Amqp(_)),
            "{why}: must be refused, got {err}"
        );
        assert!(!err.to_string().contains("guest:guest"), "{err}");
    }

    let plain = url.replacen("amqps://", "amqp://", 1);
    assert!(
        connect(plain.clone(), None).await.is_err(),
        "plaintext AMQP to the TLS port must fail"
    );
    assert!(
        matches!(
            connect(plain, Some(ca)).await,
            Err(QueueError::CaWithoutTls)
        ),
        "a CA with an amqp:// URL is a configuration mistake"
    );
}

#[tokio::test]
async fn s3_is_reached_over_verified_tls_only() {
    let endpoint = service("KYC_TEST_S3_ENDPOINT");
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let ca = test_ca("KYC_TEST_S3_CA_FILE").expect("KYC_TEST_S3_CA_FILE");
    let store = |endpoint: String, ca: Option<String>| async move {
        ObjectStore::s3(Some(&endpoint), ca.as_deref(), None)
            .await
            .unwrap()
    };
    let bucket = format!(
        "kyc-tls-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let key = format!("s3://{bucket}/probe.txt");

    let trusted = store(endpoint.clone(), Some(ca.clone())).await;
    trusted.ensure_bucket(&bucket).await.unwrap();
    trusted
        .put(&key, bytes::Bytes::from_static(b"probe"))
        .await
        .expect("verified TLS upload");

    for (why, endpoint, ca) in [
        (
            "a CA the client does not trust",
            endpoint.clone(),
            Some(wrong_ca()),
        ),
        ("only the system's roots", endpoint.clone(), None),
        (
            "a host name the certificate does not name",
            with_host(&endpoint, "127.0.0.2"),
            Some(ca.clone()),
        ),
        (
            "plaintext to the TLS port",
            endpoint.replacen("https://", "http://", 1),
            None,
        ),
    ] {
        // The bucket is an allowed source: what is refused must be the TLS handshake.
        let allowed = kyc_objects::MaterialSources::parse(&format!("s3://{bucket}/")).unwrap();
        let s = store(endpoint, ca).await.with_material_sources(allowed);
        let got = settle(why, s.get(&key)).await;
        assert!(
            matches!(got, Err(ObjectError::S3 { .. })),
            "{why}: must fail, got {got:?}"
        );
    }
}

/// The simulated Alibaba downloads presigned https URLs like the vendor: trusting the S3's CA
/// it gets the image; trusting another CA it cannot, and says so as the vendor would.
#[tokio::test]
async fn the_simulator_downloads_presigned_urls_over_verified_tls() {
    let app = spawn_app().await;
    app.upload_faces().await;
    let mut config = SimConfig::default();
    let ours = app.alibaba_config();
    config.alibaba.access_keys = vec![(ours.access_key_id.clone(), ours.access_key_secret)];
    config.alibaba.trusted_ca_pem = Some(wrong_ca());
    let distrustful = Simulator::start(config, "127.0.0.1:0").await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let face = format!("s3://{}/faces/face01.jpg", app.bucket);
    let csv = |n: usize| {
        format!(
            "customer_ref,operation,name,id_number,face_image\nT{n},alibaba.verify_material,欧阳娜娜,{},{face}\n",
            id_with_seq(n, "123").as_str()
        )
    };
    for (batch, sim, want) in [
        ("trusting", &app.sim, ("passed", "verified")),
        ("distrustful", &distrustful, ("error", "invalid_request")),
    ] {
        let n = if batch == "trusting" { 1 } else { 2 };
        assert_eq!(app.produce_text(batch, &csv(n), dir.path()).await, 1);
        let mut alibaba = app.alibaba_config();
        alibaba.endpoint = sim.base_url();
        let base = app.context();
        let ctx = Arc::new(Context {
            clients: Clients {
                alibaba: Some(alibaba.build(reqwest::Client::new())),
                ..Default::default()
            },
            store: base.store.clone(),
            objects: base.objects.clone(),
            limiters: Default::default(),
            retry: base.retry.clone(),
            metrics: Default::default(),
            keys: crate::helpers::keyring().data.clone(),
            spend: Default::default(),
        });
        let (stop, worker) = app.spawn_worker_with(ctx).await;
        app.wait_for_outcomes(batch, 1, Duration::from_secs(60))
            .await;
        let _ = stop.send(());
        worker.await.unwrap();
        let (status, reason, _) = app.outcomes(batch).await[&2].clone();
        assert_eq!((status.as_str(), reason.as_str()), want, "{batch}");
    }
    distrustful.stop().await;
    app.cleanup().await;
}
