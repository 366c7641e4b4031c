//! A database outage while the vendor is answering: every answer the vendor billed is kept
//! until it is committed, and no job is called twice. The outage is real to the worker: its
//! connections go through a loopback TCP proxy that resets them all and refuses new ones
//! (what a PostgreSQL restart or failover looks like from the client), while the other tests
//! keep using the server directly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kyc_store::Store;
use kyc_worker::{Limiters, Quota};

use crate::helpers::{id_with_seq, spawn_app};

/// A TCP proxy whose "outage" resets every open connection and refuses new ones.
pub(crate) struct FlakyProxy {
    pub(crate) port: u16,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FlakyProxy {
    pub(crate) async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (d, c) = (down.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client); // refused, as a stopped server would
                    continue;
                }
                let upstream = upstream.clone();
                c.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self {
            port,
            down,
            conns,
            accept,
        }
    }

    pub(crate) fn stop(&self) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub(crate) fn resume(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_vendor_gave_during_a_database_outage_are_kept_and_billed_once() {
    let app = spawn_app().await;
    // Calls take a while, so that some are in flight when the database goes away.
    let mut faults = kyc_simulator::FaultConfig::default();
    faults.huawei.latency_ms = 1500;
    app.sim.set_faults(faults);

    // The worker reaches the database only through the proxy.
    let (scheme_user, rest) = app.db_url.split_once('@').unwrap();
    let (hostport, path) = rest.split_once('/').unwrap();
    let proxy = FlakyProxy::start(hostport.to_string()).await;
    let via_proxy = format!("{scheme_user}@127.0.0.1:{}/{path}", proxy.port);
    let store = Store::connect(&via_proxy, 8).await.unwrap();
    let quotas: std::collections::HashMap<String, Quota> = kyc_worker::vendors::APIS
        .iter()
        .map(|api| (Limiters::key(api), Quota::qps(200.0, 50)))
        .collect();
    let ctx = app.huawei_context_on(store.clone(), &quotas);

    let dir = tempfile::tempdir().unwrap();
    let n = 24;
    let mut text = String::from("customer_ref,operation,name,id_number\n");
    for i in 0..n {
        text.push_str(&format!(
            "C{i},huawei.idcard_extension,王芳,{}\n",
            id_with_seq(i, "123").as_str()
        ));
    }
    assert_eq!(
        app.produce_text("outage", &text, dir.path()).await,
        n as u64
    );
    let (stop, handle) = app.spawn_worker_with(ctx).await;

    // Some jobs are done (the worker is in its stride) and others are at the vendor.
    app.wait_for_outcomes("outage", 2, Duration::from_secs(60))
        .await;
    proxy.stop();
    let cut_at = chrono::Utc::now().timestamp_millis();
    let outage = Duration::from_secs(12); // longer than the old ~6 s of commit retries
    let started = Instant::now();
    while started.elapsed() < outage {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answered_during = app
        .sim
        .ledger()
        .entries
        .iter()
        .filter(|e| e.billable && e.at_ms > cut_at)
        .count();
    proxy.resume();
    assert!(
        answered_during > 0,
        "no call was answered while the database was away: the test proved nothing"
    );

    app.wait_for_outcomes("outage", n as i64, Duration::from_secs(120))
        .await;
    let _ = stop.send(());
    handle.await.unwrap();
    proxy.accept.abort();

    let billed = app
        .sim
        .ledger()
        .entries
        .iter()
        .filter(|e| e.billable)
        .count();
    assert_eq!(billed, n, "one billable call per job at the vendor");
    let report = app.store.billing_report(None, None, None).await.unwrap();
    let ours: i64 = report.iter().map(|r| r.billable_calls).sum();
    let unknown: i64 = report.iter().map(|r| r.unknown_calls).sum();
    assert_eq!((ours, unknown), (n as i64, 0), "{report:?}");
    let outcomes = app.outcomes("outage").await;
    assert!(
        outcomes.values().all(|(s, _, _)| s == "passed"),
        "{outcomes:?}"
    );
    store.close().await;
    app.cleanup().await;
}
