//! `kyc bench quota`

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use super::*;

use super::fleet::Fleet;

pub(super) async fn quota(
    conn: Conn,
    workers: usize,
    seconds: u64,
    latency_ms: u64,
    baseline: &Path,
) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(false, "warn,sqlx=error,lapin=off");
    // The vendor enforces exactly the quotas we are given: any excess is a throttle answer.
    let quotas = [("ivs-standard", 20.0), ("ivs-idcard-extention", 10.0)];
    let mut faults = kyc_simulator::FaultConfig::default();
    faults.huawei.latency_ms = latency_ms;
    faults.huawei.api_qps = quotas
        .iter()
        .map(|(api, q)| (api.to_string(), *q))
        .collect();
    let fleet = Fleet::start(&conn, faults).await?;
    let total: f64 = quotas.iter().map(|(_, q)| q).sum();
    let warmup = 3;
    // Enough work that the queue never runs dry during the window.
    fleet
        .produce(
            ((total * (seconds + warmup + 5) as f64) * 1.5) as usize,
            "face.jpg",
            "",
        )
        .await?;
    let spec = quotas
        .iter()
        .map(|(api, q)| format!("huawei.{api}={q}/1"))
        .collect::<Vec<_>>()
        .join(",");
    let children = fleet.spawn_workers(workers, &spec, None, "", &[])?;
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    let count =
        |sim: &kyc_simulator::LedgerSummary| -> std::collections::BTreeMap<String, (u64, u64)> {
            sim.totals
                .iter()
                .map(|(k, t)| (k.clone(), (t.calls - t.throttled, t.throttled)))
                .collect()
        };
    let before = count(&fleet.sim.ledger());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = count(&fleet.sim.ledger());
    let mut apis = serde_json::Map::new();
    let mut min_util = f64::INFINITY;
    let mut throttles = 0;
    println!("{workers} worker process(es), {seconds} s window, vendor latency {latency_ms} ms");
    for (api, q) in quotas {
        let key = format!("huawei.{api}");
        let (c0, t0) = before.get(&key).copied().unwrap_or_default();
        let (c1, t1) = after.get(&key).copied().unwrap_or_default();
        let achieved = (c1 - c0) as f64 / seconds as f64;
        let util = achieved / q;
        min_util = min_util.min(util);
        throttles += t1 - t0;
        println!("{key:<32} quota {q:>5.1}  achieved {achieved:>6.2} QPS  utilisation {util:.3}  throttled {}", t1 - t0);
        apis.insert(key, json!({"quota": q, "achieved_qps": (achieved * 100.0).round() / 100.0, "utilisation": (util * 1000.0).round() / 1000.0, "throttled": t1 - t0}));
    }
    fleet.stop(children).await?;
    let vs = baseline_ratio(
        baseline,
        &format!("quota_{workers}"),
        "min_utilisation",
        min_util,
    );
    if let Some(r) = vs {
        println!("against {}: utilisation × {r:.3}", baseline.display());
    }
    println!(
        "target: utilisation >= 0.99 with 0 throttles → {}",
        if min_util >= 0.99 && throttles == 0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "{}",
        json!({"bench": "quota", "workers": workers, "seconds": seconds, "apis": apis, "min_utilisation": (min_util * 1000.0).round() / 1000.0, "throttles": throttles, "min_utilisation_vs_baseline": vs})
    );
    Ok(ExitCode::SUCCESS)
}
