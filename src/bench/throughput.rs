//! `kyc bench throughput`: end-to-end jobs/s from a loaded queue and ready workers, CPU per job per
//! process, database commits and statements per job and the workers' peak RSS.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kyc_queue::Broker;
use kyc_schemas::Vendor;
use serde_json::json;

use super::*;

use super::fleet::{padded_face, scratch_bucket, Fleet};

pub(super) async fn throughput(
    conn: Conn,
    jobs: usize,
    workers: usize,
    concurrency: Option<usize>,
    image_kb: usize,
    baseline: &Path,
) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(false, "warn,sqlx=error,lapin=off");
    // This machine's speed, measured in the same run: the parse-only producer figure. Jobs/s
    // are also given as a ratio to it, since absolute figures drift between machines.
    let calibration = {
        let dir = tempfile::tempdir()?;
        let input = dir.path().join("calibrate.csv");
        generate(&input, 200_000)?;
        let (store, scratch) = scratch_store(&conn, dir.path()).await?;
        let parse = stage(&store, &Broker::memory(), &input, "parse", 500, true).await?;
        drop_scratch(store, scratch).await?;
        parse.rows_per_s
    };
    println!("calibrated: {calibration:.0} parse-only rows/s");
    let fleet = Fleet::start(&conn, kyc_simulator::FaultConfig::default()).await?;
    // The face comes from the S3 server, as in production.
    let (objects, bucket) = scratch_bucket(&conn).await?;
    let face = format!("s3://{bucket}/face.jpg");
    // The worker's memory is measured with images of a realistic size.
    objects.put(&face, padded_face(image_kb << 10)).await?;
    let sources = format!("s3://{bucket}/");
    // The producer is timed on its own: the clock of the workers starts with a loaded queue.
    let started = Instant::now();
    fleet.produce_with(jobs, &face, &sources, 1).await?;
    let produced = started.elapsed();
    println!(
        "queue loaded: {jobs} jobs in {:.1} s",
        produced.as_secs_f64()
    );
    // Statistics of other sessions reach pg_stat_database about a second after they commit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let commits_before = fleet.store.commits_so_far().await;
    let statements_before = fleet.store.statements_run().await;
    let mut children = fleet.spawn_workers(
        workers,
        "huawei.ivs-standard=100000/1000,huawei.ivs-idcard-extention=100000/1000",
        concurrency,
        &sources,
        &[],
    )?;
    // Ready: every worker has its consumer on the queue.
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, consumers) = fleet.broker.work_queue_state(Vendor::Huawei).await?;
        if consumers as usize >= workers {
            break;
        }
        super::ensure_workers_running(&mut children)?;
        anyhow::ensure!(
            Instant::now() < ready_by,
            "the workers did not start consuming"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("workers ready; clock started");
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    let cpu_before = crate::procstat::sample(&pids);
    let t0 = Instant::now();
    // Jobs done before the clock started (between the consumers' start and the first look)
    // are not counted.
    let done_before = fleet.store.outcome_count("bench").await? as usize;
    let mut polls = 1;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        polls += 1;
        if fleet.store.outcome_count("bench").await? as usize >= jobs {
            break;
        }
        super::ensure_workers_running(&mut children)?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "the workers did not finish {jobs} jobs within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = t0.elapsed();
    let cpu_after = crate::procstat::sample(&pids);
    let rss: Vec<f64> = children
        .iter()
        .filter_map(|c| peak_rss_of(c.id()))
        .collect();
    let peak = rss.iter().cloned().fold(0.0, f64::max);
    // Only verdicts count: an `error` outcome is a job the run failed, not one it did.
    let mut decided = 0usize;
    let mut errors = 0usize;
    for (_, status, n) in fleet.store.status_counts("bench").await? {
        if matches!(status.as_str(), "passed" | "failed" | "not_found") {
            decided += n as usize;
        } else {
            errors += n as usize;
        }
    }
    polls += 1;
    stop_workers(children);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let commits_after = fleet.store.commits_so_far().await;
    let statements_after = fleet.store.statements_run().await;
    fleet.stop(Vec::new()).await?;
    let counted = decided.saturating_sub(done_before);
    let jobs_per_s = counted as f64 / took.as_secs_f64();
    println!(
        "{jobs} jobs ({counted} counted: verdicts decided after the clock started; {done_before} done before it, {errors} errors), {workers} worker process(es)"
    );
    println!(
        "{jobs_per_s:.0} jobs/s over {:.1} s from a loaded queue and ready workers; producing took {:.1} s on its own",
        took.as_secs_f64(),
        produced.as_secs_f64()
    );
    let per_parse = jobs_per_s / calibration * 1000.0;
    println!(
        "machine speed (parse-only producer, same run): {calibration:.0} rows/s; jobs/s per 1000 rows/s of it: {per_parse:.3}"
    );
    let spent = crate::procstat::spent(&cpu_before, &cpu_after);
    let mut cpu = serde_json::Map::new();
    for (group, secs) in &spent {
        let ms = secs * 1000.0 / counted.max(1) as f64;
        println!("CPU per job, {group:<18} {ms:>7.3} ms");
        cpu.insert(group.to_string(), json!((ms * 1000.0).round() / 1000.0));
    }
    let ours = spent.get("worker").copied().unwrap_or(0.0)
        + spent.get("postgresql").copied().unwrap_or(0.0);
    let ours_ms = ours * 1000.0 / counted.max(1) as f64;
    println!("CPU per job, worker + database   {ours_ms:>7.3} ms (target ≤ 0.5)");
    let commits_per_job = match (commits_before, commits_after) {
        (Some(b), Some(a)) => {
            // The benchmark's own polling transactions are not the workers'.
            let c = (a - b - polls) as f64 / jobs as f64;
            println!("database commits per job: {c:.2} (all of the workers' transactions, start-up included; target ≤ 1)");
            Some((c * 100.0).round() / 100.0)
        }
        _ => None,
    };
    let statements_per_job = match (statements_before, statements_after) {
        (Some(b), Some(a)) => {
            // The benchmark's own: a poll is one statement, and so are the two readings of
            // pg_stat_database and this one's first.
            let s = (a - b - polls - 2) as f64 / jobs as f64;
            println!("database statements per job: {s:.2} (every statement the server ran for the workers, BEGIN and COMMIT included)");
            Some((s * 100.0).round() / 100.0)
        }
        _ => {
            println!("database statements per job: not measured (PostgreSQL without pg_stat_statements loaded)");
            None
        }
    };
    println!("peak worker RSS: {peak:.1} MB ({image_kb} KiB images; target ≤ 64 MB at 100 KiB)");
    let vs = baseline_ratio(baseline, "throughput", "jobs_per_s", jobs_per_s);
    if let Some(r) = vs {
        println!("against {}: jobs/s × {r:.2}", baseline.display());
    }
    println!(
        "{}",
        json!({"bench": "throughput", "jobs": jobs, "counted": counted, "errors": errors, "workers": workers, "image_kb": image_kb, "jobs_per_s": jobs_per_s.round(), "produce_s": (produced.as_secs_f64() * 10.0).round() / 10.0, "parse_rows_per_s": calibration.round(), "jobs_per_s_per_1000_parse_rows_per_s": (per_parse * 1000.0).round() / 1000.0, "cpu_ms_per_job": cpu, "worker_plus_db_cpu_ms_per_job": (ours_ms * 1000.0).round() / 1000.0, "db_commits_per_job": commits_per_job, "db_statements_per_job": statements_per_job, "peak_worker_rss_mb": (peak * 10.0).round() / 10.0, "jobs_per_s_vs_baseline": vs})
    );
    Ok(ExitCode::SUCCESS)
}
