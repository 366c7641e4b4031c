//! The quota holds through a database stall. Calls take their rate-limit slot, then write the
//! ledger (and reserve slots) in the database; when the database stalls, the calls waiting on
//! it must not all go out together when it returns. Checked from the vendor's side: the
//! simulator's ledger, at a 10 QPS quota, never sees more than 10 calls (+1 for timer jitter) in
//! any one-second window, and throttles nothing; the worker's own count of slots it dropped
//! shows that the stall landed between a slot and its call.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kyc_store::Store;
use kyc_worker::{Quota, WorkerSettings};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::helpers::{id_with_seq, spawn_app};

const QPS: f64 = 10.0;
const JOBS: usize = 60;

/// A loopback TCP proxy that can stall: while stalled it forwards nothing in either direction
/// but keeps every connection open, so queries hang (a database under a lock storm, a network
/// partition) instead of failing at once.
struct StallProxy {
    port: u16,
    stalled: watch::Sender<bool>,
}

impl StallProxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stalled, rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, rx.clone()));
                tokio::spawn(pump(sr, cw, rx.clone()));
            }
        });
        Self { port, stalled }
    }

    fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The most entries in any window of `width_ms` (entries sorted by time).
fn max_in_window(times: &[i64], width_ms: i64) -> usize {
    let mut best = 0;
    let mut start = 0;
    for (end, t) in times.iter().enumerate() {
        while *t - times[start] >= width_ms {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_held_up_by_a_database_stall_do_not_go_out_together() {
    let app = spawn_app().await;
    let api = "ivs-idcard-extention";
    let mut faults = kyc_simulator::FaultConfig::default();
    faults.huawei.latency_ms = 300;
    // The vendor enforces the same quota: any excess is also a throttle answer.
    faults.huawei.api_qps = std::collections::BTreeMap::from([(api.to_string(), QPS)]);
    app.sim.set_faults(faults);

    let (scheme_user, rest) = app.db_url.split_once('@').unwrap();
    let (hostport, path) = rest.split_once('/').unwrap();
    let proxy = StallProxy::start(hostport.to_string()).await;
    let via_proxy = format!("{scheme_user}@127.0.0.1:{}/{path}", proxy.port);
    let store = Store::connect(&via_proxy, 16).await.unwrap();
    let quotas = HashMap::from([(format!("huawei.{api}"), Quota::qps(QPS, 1))]);
    let ctx = app.huawei_context_on(store.clone(), &quotas);

    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("customer_ref,operation,name,id_number\n");
    for i in 0..JOBS {
        text.push_str(&format!(
            "C{i},huawei.idcard_extension,王芳,{}\n",
            id_with_seq(i, "123").as_str()
        ));
    }
    assert_eq!(
        app.produce_text("stall", &text, dir.path()).await,
        JOBS as u64
    );
    // Default settings: the concurrency follows the quota.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (broker, run_ctx) = (app.broker.clone(), ctx.clone());
    let worker = tokio::spawn(async move {
        kyc_worker::run(run_ctx, broker, WorkerSettings::default(), async {
            let _ = stop_rx.await;
        })
        .await
        .expect("worker runs");
    });

    // In its stride: calls are flowing at the quota.
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.sim.ledger().entries.len() < 15 {
        assert!(Instant::now() < deadline, "no calls reached the vendor");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The database stalls for three seconds (well within the statement timeout): every query
    // sent meanwhile hangs, then all are answered at once.
    proxy.stall(true);
    let stalled = Instant::now();
    while stalled.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.stall(false);

    app.wait_for_outcomes("stall", JOBS as i64, Duration::from_secs(120))
        .await;
    let _ = stop_tx.send(());
    worker.await.unwrap();

    let ledger = app.sim.ledger();
    let mut times: Vec<i64> = ledger
        .entries
        .iter()
        .filter(|e| e.api == api)
        // When each call reached the vendor, as its gateway counts them.
        .map(|e| e.arrived_us / 1000)
        .collect();
    times.sort_unstable();
    let throttled = ledger.entries.iter().filter(|e| e.throttled).count();
    let most = max_in_window(&times, 1000);
    let metrics = ctx.metrics.render();
    let dropped: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("kyc_limiter_slots_dropped_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        dropped >= 1.0,
        "the stall must land between a slot and its call (no slot was dropped):\n{metrics}"
    );
    assert_eq!(throttled, 0, "the vendor throttled {throttled} calls");
    assert!(
        most <= QPS as usize + 1,
        "{most} calls reached the vendor within one second at a {QPS} QPS quota"
    );
    assert!(times.len() >= JOBS, "{} calls for {JOBS} jobs", times.len());
    app.cleanup().await;
}

#[test]
fn the_window_count_is_the_most_entries_within_any_width() {
    assert_eq!(max_in_window(&[0, 100, 999, 1000, 1500, 1999], 1000), 3);
    assert_eq!(max_in_window(&[0, 100, 999, 1000, 1050, 1999], 1000), 4);
    assert_eq!(max_in_window(&[], 1000), 0);
    assert_eq!(max_in_window(&[5, 5, 5], 1), 3);
}
