//! The worker's probes as Kubernetes uses them, on a real `kyc work` process: `/healthz`
//! fails when a consumer holds a delivery and makes no progress (its vendor accepts the call
//! and never answers), and `/readyz` answers at once, 503 with the reason, while the
//! database is away.

use std::time::{Duration, Instant};

use crate::db_outage::FlakyProxy;
use crate::helpers::{closed_port, silent_server, spawn_app};

/// GETs `path` until `want` holds for (status, body), failing after `cap`; every answer must
/// come within `answer_within` (a probe that hangs is what these tests rule out).
async fn probe_until(
    listen: &str,
    path: &str,
    cap: Duration,
    answer_within: Duration,
    want: impl Fn(u16, &str) -> bool,
) -> (u16, String, Duration) {
    let http = reqwest::Client::new();
    let start = Instant::now();
    loop {
        let asked = Instant::now();
        match http
            .get(format!("http://{listen}{path}"))
            .timeout(answer_within)
            .send()
            .await
        {
            Ok(resp) => {
                let took = asked.elapsed();
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                if want(status, &body) {
                    return (status, body, took);
                }
            }
            Err(e) if e.is_timeout() => panic!("{path} did not answer within {answer_within:?}"),
            // Not listening yet.
            Err(_) => {}
        }
        assert!(
            start.elapsed() < cap,
            "{path}: condition not met within {cap:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kill(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stuck_on_a_call_fails_healthz_naming_its_vendor() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let vendor = format!("http://127.0.0.1:{}", silent_server().await);
    let listen = format!("127.0.0.1:{}", closed_port());
    let mut worker = app.spawn_worker_process(
        &dir.path().join("stuck.log"),
        &[
            ("KYC_HTTP_LISTEN", &listen),
            ("KYC_STUCK_AFTER", "2s"),
            ("KYC_HUAWEI_ENDPOINT", &vendor),
        ],
    );
    let cap = Duration::from_secs(60);
    let within = Duration::from_secs(5);
    // Idle, it is healthy: holding nothing is never stuck.
    probe_until(&listen, "/healthz", cap, within, |s, _| s == 200).await;
    app.produce_extension_jobs("stuck", 1, dir.path()).await;
    let (_, body, _) = probe_until(&listen, "/healthz", cap, within, |s, _| s == 503).await;
    assert!(
        body.contains("stuck consumer") && body.contains("huawei holds 1 deliveries"),
        "{body}"
    );
    kill(&mut worker);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_at_once_with_the_reason_while_the_database_is_away() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (scheme_user, rest) = app.db_url.split_once('@').unwrap();
    let (hostport, path) = rest.split_once('/').unwrap();
    let proxy = FlakyProxy::start(hostport.to_string()).await;
    let via_proxy = format!("{scheme_user}@127.0.0.1:{}/{path}", proxy.port);
    let listen = format!("127.0.0.1:{}", closed_port());
    let mut worker = app.spawn_worker_process(
        &dir.path().join("ready.log"),
        &[
            ("KYC_HTTP_LISTEN", &listen),
            ("KYC_DATABASE_URL", &via_proxy),
        ],
    );
    let cap = Duration::from_secs(60);
    // The server bounds its own database ping to 800 ms; the client allows for a busy machine.
    let within = Duration::from_secs(3);
    probe_until(&listen, "/readyz", cap, within, |s, _| s == 200).await;

    proxy.stop();
    let (_, body, took) = probe_until(&listen, "/readyz", cap, within, |s, _| s == 503).await;
    assert!(body.contains("database"), "{body}");
    assert!(
        !body.contains("kyc:"),
        "credentials in the probe's answer: {body}"
    );
    eprintln!("readyz during the outage: 503 in {took:?}: {body}");
    // Healthy all along: an outage must not restart every pod at once.
    probe_until(&listen, "/healthz", cap, within, |s, _| s == 200).await;

    proxy.resume();
    probe_until(&listen, "/readyz", cap, within, |s, _| s == 200).await;
    kill(&mut worker);
    app.cleanup().await;
}
