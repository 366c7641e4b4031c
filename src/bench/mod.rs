//! `kyc bench`: throughput and memory figures, printed for people and as a last-line JSON
//! object for machines, compared against `bench/baseline.json` as ratios (this machine is
//! small and noisy: ratios measured in one run mean more than absolute numbers).
//!
//! # Layout
//! - [`fleet`]: a scratch database, queues, the simulator and worker processes for one run
//! - [`produce`]: `kyc bench produce`
//! - [`quota`]: `kyc bench quota`
//! - [`throughput`]: `kyc bench throughput`
//! - [`memory`]: `kyc bench memory`

mod fleet;
mod memory;
mod produce;
mod quota;
mod throughput;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use kyc_producer::{CancellationToken, Encoding, ProduceSettings};
use kyc_queue::{Broker, Topology};
use kyc_schemas::{IdNumber, Vendor};
use kyc_store::Store;

use crate::Conn;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    kind: BenchKind,
}

#[derive(Debug, Subcommand)]
enum BenchKind {
    /// CSV → validation → database → RabbitMQ, on a generated file.
    Produce {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Jobs per database insert and confirm window.
        #[arg(long, default_value_t = 500)]
        window: usize,
        /// Figures to compare with.
        #[arg(long, default_value = "bench/baseline.json")]
        baseline: PathBuf,
    },
    /// Worker processes started together against quotas the simulator enforces as calls
    /// arrive, under realistic latency: steady-state utilisation, calls in any 1 s and
    /// 100 ms, throttles from the first call (bench/README.md defines each figure).
    Quota(quota::QuotaArgs),
    /// Peak worker RSS with the material budget against without it: jobs whose materials
    /// are 15 MiB each, all in flight at once.
    Memory {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, default_value_t = 24)]
        jobs: usize,
        /// Size of each material, in MiB.
        #[arg(long, default_value_t = 15)]
        material_mib: usize,
        /// The budget under test (KYC_MATERIAL_BUDGET).
        #[arg(long, default_value = "256MiB", value_parser = crate::config::parse_bytes)]
        budget: u64,
    },
    /// End-to-end jobs/s, CSV → RabbitMQ → S3 image → vendor HTTP → database, with a
    /// zero-latency simulator and no quota; also the workers' peak RSS.
    Throughput {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, default_value_t = 5000)]
        jobs: usize,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Fixed jobs in flight per worker (default: the workers' own, following the quota).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Size of every job's face image in KiB (a JPEG start padded with filler; the
        /// sample face is 48 KiB).
        #[arg(long, default_value_t = 100)]
        image_kb: usize,
        #[arg(long, default_value = "bench/baseline.json")]
        baseline: PathBuf,
    },
}

pub async fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    match a.kind {
        BenchKind::Produce {
            conn,
            rows,
            window,
            baseline,
        } => produce::produce(conn, rows, window, &baseline).await,
        BenchKind::Quota(q) => quota::quota(q).await,
        BenchKind::Throughput {
            conn,
            jobs,
            workers,
            concurrency,
            image_kb,
            baseline,
        } => throughput::throughput(conn, jobs, workers, concurrency, image_kb, &baseline).await,
        BenchKind::Memory {
            conn,
            jobs,
            material_mib,
            budget,
        } => memory::memory(conn, jobs, material_mib, budget).await,
    }
}

/// Peak resident set size of this process so far, in MB (Linux `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    peak_rss_in("/proc/self/status")
}

/// `VmHWM` of a `/proc/…/status` file, in MB.
fn peak_rss_in(status_file: &str) -> Option<f64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Writes `rows` distinct valid jobs, with one row in a hundred refused on purpose.
fn generate(path: &Path, rows: usize) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "operation,customer_ref,name,id_number")?;
    for i in 0..rows {
        let id = IdNumber::with_checksum(&format!("{}19900101{:03}", 110_000 + i / 1000, i % 1000))
            .expect("digits")
            .as_str()
            .to_string();
        let id = if i % 100 == 99 {
            id[..17].to_string()
        } else {
            id
        };
        writeln!(w, "huawei.idcard_extension,C{i},王伟,{id}")?;
    }
    w.flush()?;
    Ok(())
}

/// A throw-away database next to the configured one (PostgreSQL) or in a temporary folder.
async fn scratch_store(
    conn: &Conn,
    dir: &Path,
) -> anyhow::Result<(Store, Option<(String, String)>)> {
    let (store, scratch, _) = scratch_store_url(conn, dir).await?;
    Ok((store, scratch))
}

/// Like [`scratch_store`], with the scratch database's URL (for worker processes).
async fn scratch_store_url(
    conn: &Conn,
    dir: &Path,
) -> anyhow::Result<(Store, Option<(String, String)>, String)> {
    if !conn.database.starts_with("postgres") {
        let url = format!("sqlite://{}", dir.join("bench.db").display());
        let store = Store::connect(&url, 4).await?;
        store.migrate().await?;
        return Ok((store, None, url));
    }
    let admin = Store::connect(&conn.database, 1)
        .await
        .context("Failed to connect to KYC_DATABASE_URL")?;
    let name = format!(
        "kyc_bench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.pool())
        .await
        .context("The benchmark creates a scratch database: the role needs CREATEDB")?;
    admin.close().await;
    let url = crate::config::with_database_name(&conn.database, &name)
        .context("database URL has no path")?;
    let store = Store::connect(&url, 8).await?;
    store.migrate().await?;
    Ok((store, Some((conn.database.clone(), name)), url))
}

/// Drops the scratch database. Autovacuum may still hold a connection to it for a moment
/// (and only a superuser may end that), so this retries, and only warns if it cannot.
async fn drop_scratch(store: Store, scratch: Option<(String, String)>) -> anyhow::Result<()> {
    store.close().await;
    if let Some((admin_url, name)) = scratch {
        let admin = Store::connect(&admin_url, 1).await?;
        let mut dropped = false;
        for _ in 0..30 {
            let sql = format!("DROP DATABASE IF EXISTS {name}");
            if sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(admin.pool())
                .await
                .is_ok()
            {
                dropped = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        if !dropped {
            eprintln!("warning: could not drop the scratch database {name}; drop it by hand");
        }
        admin.close().await;
    }
    Ok(())
}

struct Stage {
    rows_per_s: f64,
    published: u64,
}

async fn stage(
    store: &Store,
    broker: &Broker,
    input: &Path,
    batch: &str,
    window: usize,
    dry_run: bool,
) -> anyhow::Result<Stage> {
    let settings = ProduceSettings {
        batch_id: batch.into(),
        input: input.display().to_string(),
        images: None,
        material_sources: Default::default(),
        default_operation: None,
        rejects_path: input.with_extension(format!("{batch}.rejects.csv")),
        dry_run,
        window,
        encoding: Encoding::Auto,
        max_record_bytes: kyc_producer::DEFAULT_MAX_RECORD_BYTES,
        // Sealing is part of the measured path; the keys live as long as the scratch data.
        keys: kyc_schemas::Keyring::generate("bench")?,
        skip_verified_within: None,
    };
    let start = Instant::now();
    let s = kyc_producer::produce(
        &settings,
        None,
        store,
        broker,
        &CancellationToken::new(),
        |_| {},
    )
    .await?;
    Ok(Stage {
        rows_per_s: s.rows_read as f64 / start.elapsed().as_secs_f64(),
        published: s.published,
    })
}

async fn delete_queues(conn: &Conn, t: &Topology) {
    let ca = crate::config::ca_pem(conn.amqp_ca_file.as_deref(), "KYC_AMQP_CA_FILE")
        .ok()
        .flatten();
    if let Ok(conn) = kyc_queue::amqp::connect(&conn.amqp, ca.as_deref()).await {
        if let Ok(ch) = conn.create_channel().await {
            let mut queues = vec![t.dead_letter_queue()];
            for v in Vendor::ALL {
                queues.push(t.work_queue(v));
                queues.extend(kyc_queue::topology::DELAY_BUCKETS.map(|b| t.delay_queue(v, b)));
            }
            for q in queues {
                let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
            }
        }
    }
}

/// SIGTERM to every worker, then waits for each to exit.
fn stop_workers(mut workers: Vec<std::process::Child>) {
    for w in &workers {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &w.id().to_string()])
            .status();
    }
    for w in &mut workers {
        let _ = w.wait();
    }
}

/// Peak RSS of another process, in MB (Linux `VmHWM`).
fn peak_rss_of(pid: u32) -> Option<f64> {
    peak_rss_in(&format!("/proc/{pid}/status"))
}

fn baseline_ratio(baseline: &Path, bench: &str, key: &str, v: f64) -> Option<f64> {
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(baseline).ok()?).ok()?;
    base[bench][key].as_f64().map(|b| v / b)
}

/// Fails the benchmark if a worker process has exited: its figures would measure nothing.
pub(crate) fn ensure_workers_running(children: &mut [std::process::Child]) -> anyhow::Result<()> {
    if let Some(status) = children
        .iter_mut()
        .find_map(|c| c.try_wait().ok().flatten())
    {
        anyhow::bail!("a worker process exited early ({status}); run it by hand to see why");
    }
    Ok(())
}
