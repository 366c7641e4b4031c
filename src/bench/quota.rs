//! `kyc bench quota`: N `kyc work` processes, started together, against quotas the simulator
//! enforces the moment each call arrives, under a realistic latency distribution. Every
//! figure comes from the simulator's arrival timestamps (`bench/README.md` defines them):
//! steady-state utilisation after a stated warm-up (the warm-up reported on its own), the
//! most calls arriving in any sliding 1 s and 100 ms, throttles from the first call.
//!
//! Two APIs on two vendor queues with a job mix that does not follow their quotas: Huawei
//! ivs-idcard-extention at the run's quota Q and Alibaba SubmitVerification at Q/2, with
//! half of the jobs each. Each API has jobs for 1.5 × what its quota allows over the whole
//! run, so an API below its quota is held back by the client, not by an empty queue.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ExitCode};
use std::time::{Duration, Instant};

use clap::Args;
use kyc_schemas::IdNumber;
use kyc_simulator::{FaultConfig, Latency, LedgerEntry};
use serde_json::json;

use super::baseline_ratio;
use super::fleet::Fleet;
use crate::commands::{parse_latency, parse_stall, LatencyArg};
use crate::Conn;

#[derive(Debug, Args)]
pub struct QuotaArgs {
    #[command(flatten)]
    conn: Conn,
    /// Worker processes sharing the quotas, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    workers: Vec<usize>,
    /// The run's quota Q in QPS (Huawei gets Q, Alibaba Q/2), one run per value.
    #[arg(long, value_delimiter = ',', default_value = "10,20,50")]
    qps: Vec<f64>,
    /// Seconds after the first call that are reported apart, as the warm-up.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Length of the steady-state window that follows the warm-up.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The vendors' answer time: `MEDIAN/P99` in ms (lognormal) or `MS` (fixed).
    #[arg(long, default_value = "800/4000", value_parser = parse_latency)]
    latency: LatencyArg,
    /// Stalls on top: `RATE@MS`.
    #[arg(long, default_value = "0.005@5000", value_parser = parse_stall)]
    stall: (f64, u64),
    /// Seeds the simulator's latency draws.
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value = "bench/baseline.json")]
    baseline: PathBuf,
}

/// The APIs of a run: (vendor, API, operation, share of the quota Q).
const APIS: [(&str, &str, &str, f64); 2] = [
    (
        "huawei",
        "ivs-idcard-extention",
        "huawei.idcard_extension",
        1.0,
    ),
    (
        "alibaba",
        "SubmitVerification",
        "alibaba.submit_verification",
        0.5,
    ),
];

pub(super) async fn quota(a: QuotaArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(false, "warn,sqlx=error,lapin=off");
    let mut all_met = true;
    for &workers in &a.workers {
        for &q in &a.qps {
            all_met &= run(&a, workers, q).await?;
        }
    }
    println!(
        "all runs: target {}",
        if all_met { "met" } else { "NOT met" }
    );
    Ok(ExitCode::SUCCESS)
}

fn latency(a: &QuotaArgs) -> (u64, Option<Latency>) {
    let (rate, stall_ms) = a.stall;
    let stalls = |median_ms, p99_ms| Latency {
        median_ms,
        p99_ms,
        stall_rate: rate,
        stall_ms,
    };
    match a.latency {
        LatencyArg::Fixed(ms) if rate == 0.0 => (ms, None),
        LatencyArg::Fixed(ms) => (ms, Some(stalls(0.0, 0.0))),
        LatencyArg::Lognormal { median_ms, p99_ms } => (0, Some(stalls(median_ms, p99_ms))),
    }
}

/// One run: `workers` processes, the run's quota `q`. True if the targets were met.
async fn run(a: &QuotaArgs, workers: usize, q: f64) -> anyhow::Result<bool> {
    let (fixed_ms, dist) = latency(a);
    let mut faults = FaultConfig {
        seed: a.seed,
        ..Default::default()
    };
    for (vendor, api, _, share) in APIS {
        let f = match vendor {
            "huawei" => &mut faults.huawei,
            _ => &mut faults.alibaba,
        };
        f.api_qps.insert(api.into(), q * share);
        f.latency_ms = fixed_ms;
        f.latency = dist.clone();
    }
    let fleet = Fleet::start(&a.conn, faults).await?;
    // Jobs for 1.5 × the quota over warm-up + window + 10 s of start-up, for each API: the
    // mix is 50/50 whatever the quotas say.
    let per_api = (q * (a.warmup + a.seconds + 10) as f64 * 1.5).ceil() as usize;
    let mut csv = b"operation,name,id_number,face_image\n".to_vec();
    for i in 0..per_api {
        for (n, (_, _, operation, _)) in APIS.iter().enumerate() {
            let id = IdNumber::with_checksum(&format!(
                "{}19900101{:03}",
                110_000 + 10_000 * n + i / 800,
                100 + i % 800
            ))
            .expect("digits");
            writeln!(csv, "{operation},王伟,{},face.jpg", id.as_str())?;
        }
    }
    fleet.produce_csv(&csv, "").await?;
    let spec = APIS
        .iter()
        .map(|(vendor, api, _, share)| format!("{vendor}.{api}={}", q * share))
        .collect::<Vec<_>>()
        .join(",");

    // The queue is loaded; every process is spawned in one loop, so they start together.
    let released_us = kyc_simulator::ledger::now_us();
    let mut children = fleet.spawn_workers(workers, &spec, None, "", &[])?;
    let ours = |e: &LedgerEntry| {
        APIS.iter()
            .any(|(v, api, ..)| e.vendor == *v && e.api == *api)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet.sim.in_flight() == 0 && !fleet.sim.ledger().entries.iter().any(ours) {
        super::ensure_workers_running(&mut children)?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "no call reached the simulator within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The first call arrived just now: the window ends within warm-up + window from here.
    tokio::time::sleep(Duration::from_secs(a.warmup + a.seconds) + Duration::from_millis(200))
        .await;
    stop_workers(&mut children).await;
    // The ledger holds answered calls: wait for the last ones to be answered.
    let deadline = Instant::now() + Duration::from_secs(120);
    while fleet.sim.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ledger = fleet.sim.ledger();
    fleet.stop(Vec::new()).await?;

    let entries: Vec<&LedgerEntry> = ledger.entries.iter().filter(|e| ours(e)).collect();
    let t0 = entries
        .iter()
        .map(|e| e.arrived_us)
        .min()
        .ok_or_else(|| anyhow::anyhow!("no call reached the simulator"))?;
    let window = Window {
        t0_us: t0,
        warmup_us: a.warmup as i64 * 1_000_000,
        steady_us: a.seconds as i64 * 1_000_000,
    };
    let lat = match (&dist, fixed_ms) {
        (Some(d), _) if d.median_ms > 0.0 => {
            format!("lognormal median {} ms, p99 {} ms", d.median_ms, d.p99_ms)
        }
        (_, ms) => format!("{ms} ms"),
    };
    let stalls = dist
        .as_ref()
        .filter(|d| d.stall_rate > 0.0)
        .map(|d| format!(" + stalls {}% × {} ms", d.stall_rate * 100.0, d.stall_ms))
        .unwrap_or_default();
    println!();
    println!(
        "{workers} worker process(es), quota Q = {q} QPS, jobs 50/50, latency {lat}{stalls}; first call {:.2} s after start, warm-up {} s, steady window {} s",
        (t0 - released_us) as f64 / 1e6,
        a.warmup,
        a.seconds
    );
    println!(
        "{:<34} {:>6} {:>11} {:>8} {:>8} {:>10} {:>12} {:>9}",
        "api", "quota", "first call", "warm-up", "steady", "max in 1s", "max in 100ms", "throttled"
    );
    let mut apis = serde_json::Map::new();
    let mut met = true;
    let mut min_util = f64::INFINITY;
    let mut throttles = 0;
    for (vendor, api, _, share) in APIS {
        let quota = q * share;
        let key = format!("{vendor}.{api}");
        let calls: Vec<(i64, bool)> = entries
            .iter()
            .filter(|e| e.vendor == vendor && e.api == api)
            .map(|e| (e.arrived_us, e.throttled))
            .collect();
        let f = figures(&calls, quota, &window);
        let admitted_by_end = calls
            .iter()
            .filter(|(t, thr)| !thr && *t < window.end())
            .count();
        let starved = admitted_by_end >= per_api;
        met &= f.steady_utilisation >= 0.99
            && f.throttled == 0
            && f.max_1s as f64 <= quota + 1.0
            && !starved;
        min_util = min_util.min(f.steady_utilisation);
        throttles += f.throttled;
        let first = f
            .first_us
            .map(|t| format!("{:.2} s", (t - released_us) as f64 / 1e6))
            .unwrap_or_else(|| "none".into());
        println!(
            "{key:<34} {quota:>6.1} {first:>11} {:>8.3} {:>8.3} {:>4} / {:<4} {:>5} / {:<5.1} {:>9}{}",
            f.warmup_utilisation,
            f.steady_utilisation,
            f.max_1s,
            quota,
            f.max_100ms,
            quota / 10.0,
            f.throttled,
            if starved { "  (queue ran dry: figure void)" } else { "" }
        );
        apis.insert(
            key,
            json!({
                "quota": quota,
                "first_call_s": f.first_us.map(|t| round((t - released_us) as f64 / 1e6, 3)),
                "warmup_utilisation": round(f.warmup_utilisation, 3),
                "steady_utilisation": round(f.steady_utilisation, 3),
                "steady_calls": f.steady_admitted,
                "max_calls_1s": f.max_1s,
                "max_calls_100ms": f.max_100ms,
                "throttled": f.throttled,
                "queue_ran_dry": starved,
            }),
        );
    }
    let vs = baseline_ratio(
        &a.baseline,
        &format!("quota_{workers}_{q}"),
        "min_utilisation",
        min_util,
    );
    if let Some(r) = vs {
        println!("against {}: utilisation × {r:.3}", a.baseline.display());
    }
    println!(
        "target: steady utilisation >= 0.99 for each API, 0 throttles from the first call, at most quota + 1 calls in any 1 s → {}",
        if met { "met" } else { "NOT met" }
    );
    println!(
        "{}",
        json!({
            "bench": "quota",
            "workers": workers,
            "qps": q,
            "warmup_s": a.warmup,
            "seconds": a.seconds,
            "latency": {"fixed_ms": fixed_ms, "distribution": dist},
            "seed": a.seed,
            "first_call_s": round((t0 - released_us) as f64 / 1e6, 3),
            "apis": apis,
            "min_utilisation": round(min_util, 3),
            "throttles": throttles,
            "target_met": met,
            "min_utilisation_vs_baseline": vs,
        })
    );
    Ok(met)
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// SIGTERM (the workers drain: calls in flight are answered and recorded), SIGKILL after 60 s.
async fn stop_workers(children: &mut [Child]) {
    for w in children.iter() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for w in children.iter_mut() {
        while matches!(w.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = w.kill();
                let _ = w.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The measured stretch: from the first call's arrival (`t0_us`), a warm-up, then the
/// steady window. Times in µs since the epoch, as the simulator's ledger stamps arrivals.
#[derive(Debug, Clone, Copy)]
struct Window {
    t0_us: i64,
    warmup_us: i64,
    steady_us: i64,
}

impl Window {
    fn steady_start(&self) -> i64 {
        self.t0_us + self.warmup_us
    }

    fn end(&self) -> i64 {
        self.steady_start() + self.steady_us
    }
}

/// One API's figures over a [`Window`].
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    first_us: Option<i64>,
    /// Calls admitted in the warm-up ÷ (quota × warm-up length).
    warmup_utilisation: f64,
    /// Calls admitted in the steady window ÷ (quota × its length).
    steady_admitted: usize,
    steady_utilisation: f64,
    /// The most calls (admitted or not) arriving in any 1 s / 100 ms, from t0 to the end.
    max_1s: usize,
    max_100ms: usize,
    /// Throttle answers to calls that arrived from t0 to the end.
    throttled: u64,
}

/// `calls`: (arrival µs, throttled) of one API, in any order.
fn figures(calls: &[(i64, bool)], quota: f64, w: &Window) -> Figures {
    let mut arrivals: Vec<i64> = calls
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| (w.t0_us..w.end()).contains(t))
        .collect();
    arrivals.sort_unstable();
    let admitted_in = |from: i64, to: i64| {
        calls
            .iter()
            .filter(|(t, thr)| !thr && (from..to).contains(t))
            .count()
    };
    let per = |calls: usize, us: i64| {
        if us > 0 {
            calls as f64 / (quota * us as f64 / 1e6)
        } else {
            0.0
        }
    };
    let steady_admitted = admitted_in(w.steady_start(), w.end());
    Figures {
        first_us: calls.iter().map(|(t, _)| *t).min(),
        warmup_utilisation: per(admitted_in(w.t0_us, w.steady_start()), w.warmup_us),
        steady_admitted,
        steady_utilisation: per(steady_admitted, w.steady_us),
        max_1s: max_in_window(&arrivals, 1_000_000),
        max_100ms: max_in_window(&arrivals, 100_000),
        throttled: calls
            .iter()
            .filter(|(t, thr)| *thr && (w.t0_us..w.end()).contains(t))
            .count() as u64,
    }
}

/// The most of `sorted` (ascending µs) that fall in any half-open window `[t, t + width)`.
/// A busiest window can always be slid to start at an arrival, so only those are tried.
fn max_in_window(sorted: &[i64], width_us: i64) -> usize {
    let mut best = 0;
    let mut end = 0;
    for (start, t) in sorted.iter().enumerate() {
        while end < sorted.len() && sorted[end] < t + width_us {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_window_is_found_wherever_it_starts() {
        assert_eq!(max_in_window(&[], 1_000_000), 0);
        assert_eq!(max_in_window(&[5], 1_000_000), 1);
        // Ten calls evenly 100 ms apart: 10 in any 1 s, 1 in any 100 ms (half-open).
        let even: Vec<i64> = (0..10).map(|i| i * 100_000).collect();
        assert_eq!(max_in_window(&even, 1_000_000), 10);
        assert_eq!(max_in_window(&even, 100_000), 1);
        // Ten calls in the last 100 ms of one second and ten in the first 100 ms of the
        // next: each fixed second holds 10, the sliding second across the boundary 20.
        let burst: Vec<i64> = (0..20).map(|i| 900_000 + i * 10_000).collect();
        assert_eq!(max_in_window(&burst, 1_000_000), 20);
        assert_eq!(max_in_window(&burst, 100_000), 10);
        // A call exactly 1 s after another is in the next window.
        assert_eq!(max_in_window(&[0, 1_000_000], 1_000_000), 1);
        assert_eq!(max_in_window(&[0, 999_999], 1_000_000), 2);
    }

    #[test]
    fn utilisation_counts_admitted_arrivals_in_each_window_and_throttles_from_the_first_call() {
        let w = Window {
            t0_us: 10_000_000,
            warmup_us: 2_000_000,
            steady_us: 4_000_000,
        };
        // Quota 5: warm-up gets 4 of its 10 slots, the steady window all 20, one throttle
        // in the first 100 ms counts; calls after the end count for nothing.
        let mut calls: Vec<(i64, bool)> = Vec::new();
        calls.push((10_000_000, false));
        calls.push((10_050_000, true));
        calls.extend((1..4).map(|i| (10_000_000 + i * 500_000, false)));
        calls.extend((0..20).map(|i| (12_000_000 + i * 200_000, false)));
        calls.extend((0..7).map(|i| (16_000_000 + i * 1_000, false)));
        let f = figures(&calls, 5.0, &w);
        assert_eq!(f.first_us, Some(10_000_000));
        assert_eq!(f.warmup_utilisation, 0.4);
        assert_eq!(f.steady_admitted, 20);
        assert_eq!(f.steady_utilisation, 1.0);
        assert_eq!(f.throttled, 1);
        // The two calls 50 ms apart at the start, both arrivals (one was refused).
        assert_eq!(f.max_100ms, 2);
        assert_eq!(f.max_1s, 5);
    }
}
