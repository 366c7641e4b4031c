//! `kyc bench`: throughput and memory figures, printed for people and as a last-line JSON
//! object for machines, compared against `bench/baseline.json` as ratios (this machine is
//! small and noisy: ratios measured in one run mean more than absolute numbers).
//!
//! `kyc bench produce --rows N` runs the producer three times over one generated file, so the
//! bottleneck shows itself: parse + validate only (dry run), then + the database with an
//! in-process queue, then the real path with RabbitMQ.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use kyc_producer::{CancellationToken, Encoding, ProduceSettings};
use kyc_queue::{Broker, Topology};
use kyc_schemas::{IdNumber, Vendor};
use kyc_store::Store;
use serde_json::json;

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
    /// Worker processes against account quotas (simulated vendor latency): achieved QPS,
    /// utilisation and throttles per vendor × API.
    Quota {
        #[command(flatten)]
        conn: Conn,
        /// Worker processes sharing the quotas.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Length of the measured window.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Simulated vendor latency.
        #[arg(long, default_value_t = 200)]
        latency_ms: u64,
        #[arg(long, default_value = "bench/baseline.json")]
        baseline: PathBuf,
    },
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
        } => produce(conn, rows, window, &baseline).await,
        BenchKind::Quota {
            conn,
            workers,
            seconds,
            latency_ms,
            baseline,
        } => quota(conn, workers, seconds, latency_ms, &baseline).await,
        BenchKind::Throughput {
            conn,
            jobs,
            workers,
            concurrency,
            baseline,
        } => throughput(conn, jobs, workers, concurrency, &baseline).await,
        BenchKind::Memory {
            conn,
            jobs,
            material_mib,
            budget,
        } => memory(conn, jobs, material_mib, budget).await,
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

async fn produce(
    conn: Conn,
    rows: usize,
    window: usize,
    baseline: &Path,
) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(false, "warn,sqlx=error,lapin=off");
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("bench.csv");
    let t = Instant::now();
    generate(&input, rows)?;
    println!(
        "generated {rows} rows in {:.1} s ({} MB)",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&input)?.len() / 1_000_000
    );

    let (store, scratch) = scratch_store(&conn, dir.path()).await?;

    // 1. Parse and validate only.
    let parse = stage(&store, &Broker::memory(), &input, "parse", window, true).await?;
    println!(
        "parse + validate:               {:>9.0} rows/s",
        parse.rows_per_s
    );

    // 2. Plus the database, with an in-process queue drained as fast as it fills.
    let memory = Broker::memory();
    let mut drain = memory.consume(Vendor::Huawei, 1).await?;
    let drainer = tokio::spawn(async move {
        while let Some(Ok(d)) = drain.next().await {
            let _ = d.ack().await;
        }
    });
    let db = stage(&store, &memory, &input, "db", window, false).await?;
    if let Broker::Memory(m) = &memory {
        m.close();
    }
    let _ = drainer.await;
    println!(
        "+ database ({}):             {:>9.0} rows/s",
        if scratch.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        db.rows_per_s
    );

    // 3. The real path: database and RabbitMQ with pipelined confirms.
    let topology = Topology::new(format!(
        "bench{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let broker = crate::commands::broker(&conn, topology.clone()).await?;
    let full = stage(&store, &broker, &input, "full", window, false).await?;
    println!(
        "+ RabbitMQ (full path):         {:>9.0} rows/s  ({} published)",
        full.rows_per_s, full.published
    );
    broker.close().await;
    delete_queues(&conn, &topology).await;
    drop_scratch(store, scratch).await?;

    let peak = peak_rss_mb().unwrap_or(f64::NAN);
    // The stage whose addition costs the most throughput is the bottleneck.
    let db_cost = 1.0 / db.rows_per_s - 1.0 / parse.rows_per_s;
    // Clamped: on a noisy machine the full run can beat the database-only run.
    let broker_cost = (1.0 / full.rows_per_s - 1.0 / db.rows_per_s).max(0.0);
    let parse_cost = 1.0 / parse.rows_per_s;
    let bottleneck = if broker_cost >= db_cost && broker_cost >= parse_cost {
        "broker"
    } else if db_cost >= parse_cost {
        "database"
    } else {
        "parsing"
    };
    println!(
        "time per row: parsing {:.1} µs, database {:.1} µs, broker {:.1} µs → bottleneck: {bottleneck}",
        parse_cost * 1e6,
        db_cost * 1e6,
        broker_cost * 1e6
    );
    println!("peak RSS: {peak:.1} MB (target < 64 MB)");
    let base = std::fs::read_to_string(baseline)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let ratio = |key: &str, v: f64| {
        base.as_ref()
            .and_then(|b| b["produce"][key].as_f64())
            .map(|b| v / b)
    };
    if let (Some(r), Some(m)) = (
        ratio("rows_per_s", full.rows_per_s),
        ratio("peak_rss_mb", peak),
    ) {
        println!(
            "against {}: rows/s × {r:.2}, peak RSS × {m:.2}",
            baseline.display()
        );
    }
    println!(
        "{}",
        json!({
            "bench": "produce",
            "rows": rows,
            "rows_per_s": full.rows_per_s.round(),
            "parse_rows_per_s": parse.rows_per_s.round(),
            "db_rows_per_s": db.rows_per_s.round(),
            "peak_rss_mb": (peak * 10.0).round() / 10.0,
            "bottleneck": bottleneck,
            "rows_per_s_vs_baseline": ratio("rows_per_s", full.rows_per_s),
            "peak_rss_vs_baseline": ratio("peak_rss_mb", peak),
        })
    );
    Ok(ExitCode::SUCCESS)
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

/// A face the benchmarks send (one of the generated cartoons, ≥ 10 KB as IVS requires).
const FACE: &[u8] = include_bytes!("../examples/images/faces/face01.jpg");

/// Everything a worker-process benchmark runs against: a scratch database, a queue prefix of
/// its own, and the simulator in this process.
struct Fleet {
    /// Keys of this run's scratch data; the worker processes get the data keys in their env.
    keys: kyc_schemas::Keyring,
    store: Store,
    scratch: Option<(String, String)>,
    db_url: String,
    topology: Topology,
    broker: Broker,
    sim: kyc_simulator::Simulator,
    creds: crate::embedded::SimCredentials,
    dir: tempfile::TempDir,
    /// Passed on to the worker processes (flags given to `kyc bench` are not in their env).
    conn: Conn,
}

impl Fleet {
    async fn start(conn: &Conn, faults: kyc_simulator::FaultConfig) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (store, scratch, db_url) = scratch_store_url(conn, dir.path()).await?;
        let topology = Topology::new(format!(
            "bench{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let broker = crate::commands::broker(conn, topology.clone()).await?;
        broker.declare().await?;
        let (mut config, creds) = crate::embedded::simulator_config();
        config.faults = faults;
        let sim = kyc_simulator::Simulator::start(config, "127.0.0.1:0").await?;
        std::fs::write(dir.path().join("face.jpg"), FACE)?;
        Ok(Self {
            keys: kyc_schemas::Keyring::generate("bench")?,
            store,
            scratch,
            db_url,
            topology,
            broker,
            sim,
            creds,
            dir,
            conn: conn.clone(),
        })
    }

    /// Publishes `n` jobs: two thirds three-factor with `face` as the image, one third two-factor.
    /// `sources`: the material allowlist `face` is on (empty for a local file).
    async fn produce(&self, n: usize, face: &str, sources: &str) -> anyhow::Result<()> {
        self.produce_with(n, face, sources, 3).await
    }

    /// Publishes `n` jobs, every `two_factor_every`-th two-factor (no image), the others
    /// three-factor with `face`; 1 or 0: every job fetches the image, as in a nightly run.
    async fn produce_with(
        &self,
        n: usize,
        face: &str,
        sources: &str,
        two_factor_every: usize,
    ) -> anyhow::Result<()> {
        let mut csv = Vec::new();
        let w = &mut csv;
        writeln!(w, "operation,name,id_number,face_image")?;
        for i in 0..n {
            let id = IdNumber::with_checksum(&format!(
                "{}19900101{:03}",
                110_000 + i / 800,
                100 + i % 800
            ))
            .expect("digits");
            if two_factor_every > 1 && i % two_factor_every == two_factor_every - 1 {
                writeln!(w, "huawei.idcard_extension,王伟,{},", id.as_str())?;
            } else {
                writeln!(w, "huawei.standard,王伟,{},{face}", id.as_str())?;
            }
        }
        self.produce_csv(&csv, sources).await
    }

    /// Publishes the rows of `csv` (header included) as batch `bench`.
    async fn produce_csv(&self, csv: &[u8], sources: &str) -> anyhow::Result<()> {
        let input = self.dir.path().join("jobs.csv");
        std::fs::write(&input, csv)?;
        let settings = ProduceSettings {
            batch_id: "bench".into(),
            input: input.display().to_string(),
            images: None,
            material_sources: kyc_objects::MaterialSources::parse(sources)?,
            default_operation: None,
            rejects_path: self.dir.path().join("rejects.csv"),
            dry_run: false,
            window: 500,
            encoding: Encoding::Auto,
            max_record_bytes: kyc_producer::DEFAULT_MAX_RECORD_BYTES,
            keys: self.keys.clone(),
            skip_verified_within: None,
        };
        kyc_producer::produce(
            &settings,
            None,
            &self.store,
            &self.broker,
            &CancellationToken::new(),
            |_| {},
        )
        .await?;
        Ok(())
    }

    fn spawn_workers(
        &self,
        n: usize,
        quotas: &str,
        concurrency: Option<usize>,
        sources: &str,
        extra_env: &[(&str, String)],
    ) -> anyhow::Result<Vec<std::process::Child>> {
        let exe = std::env::current_exe()?;
        // Unset, the workers' concurrency follows the quota (their default).
        let fixed: Vec<(&str, String)> = concurrency
            .map(|c| {
                vec![
                    ("KYC_WORKER_CONCURRENCY", c.to_string()),
                    ("KYC_PREFETCH", (c * 2).to_string()),
                ]
            })
            .unwrap_or_default();
        (0..n)
            .map(|_| {
                std::process::Command::new(&exe)
                    .arg("work")
                    .arg("--images")
                    .arg(self.dir.path())
                    .env("KYC_DATABASE_URL", &self.db_url)
                    .env("KYC_AMQP_URL", &self.conn.amqp)
                    .env(
                        "KYC_AMQP_CA_FILE",
                        self.conn.amqp_ca_file.clone().unwrap_or_default(),
                    )
                    .env(
                        "KYC_S3_ENDPOINT",
                        self.conn.s3_endpoint.as_deref().unwrap_or_default(),
                    )
                    .env(
                        "KYC_S3_CA_FILE",
                        self.conn.s3_ca_file.clone().unwrap_or_default(),
                    )
                    .env("KYC_QUEUE_PREFIX", &self.topology.prefix)
                    .env(crate::keys::DATA_KEYS, self.keys.data.to_config())
                    .env(crate::keys::DATA_KEY_ID, self.keys.data.current_id())
                    .env("KYC_HTTP_LISTEN", "127.0.0.1:0")
                    .env("KYC_QUOTAS", quotas)
                    .env("KYC_MATERIAL_SOURCES", sources)
                    .env_remove("KYC_WORKER_CONCURRENCY")
                    .env_remove("KYC_PREFETCH")
                    .envs(fixed.iter().map(|(k, v)| (*k, v.as_str())))
                    .env(
                        "RUST_LOG",
                        std::env::var("KYC_BENCH_WORKER_LOG").unwrap_or_else(|_| "error".into()),
                    )
                    .env("HUAWEICLOUD_SDK_AK", &self.creds.huawei_ak)
                    .env("HUAWEICLOUD_SDK_SK", &self.creds.huawei_sk)
                    .env("HUAWEICLOUD_SDK_PROJECT_ID", &self.creds.project_id)
                    .env("KYC_HUAWEI_ENDPOINT", self.sim.base_url())
                    .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .context("Failed to start a worker process")
            })
            .collect()
    }

    async fn stop(self, workers: Vec<std::process::Child>) -> anyhow::Result<()> {
        stop_workers(workers);
        self.broker.close().await;
        delete_queues(&self.conn, &self.topology).await;
        self.sim.stop().await;
        drop_scratch(self.store, self.scratch).await
    }
}

/// Peak RSS of another process, in MB (Linux `VmHWM`).
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

fn peak_rss_of(pid: u32) -> Option<f64> {
    peak_rss_in(&format!("/proc/{pid}/status"))
}

fn baseline_ratio(baseline: &Path, bench: &str, key: &str, v: f64) -> Option<f64> {
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(baseline).ok()?).ok()?;
    base[bench][key].as_f64().map(|b| v / b)
}

async fn quota(
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

async fn throughput(
    conn: Conn,
    jobs: usize,
    workers: usize,
    concurrency: Option<usize>,
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
    let objects = crate::commands::objects(&conn, None).await?;
    let bucket = format!(
        "kyc-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    objects
        .ensure_bucket(&bucket)
        .await
        .context("Failed to create a bucket (KYC_S3_ENDPOINT, AWS_* credentials)")?;
    let face = format!("s3://{bucket}/face.jpg");
    objects.put(&face, bytes::Bytes::from_static(FACE)).await?;
    let sources = format!("s3://{bucket}/");
    // The producer is timed on its own: the clock of the workers starts with a loaded queue.
    let started = Instant::now();
    fleet.produce_with(jobs, &face, &sources, 1).await?;
    let produced = started.elapsed();
    println!(
        "queue loaded: {jobs} jobs in {:.1} s",
        produced.as_secs_f64()
    );
    let is_pg = fleet.store.backend() == kyc_store::Backend::Postgres;
    // Statistics of other sessions reach pg_stat_database about a second after they commit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let commits_before = commits(&fleet.store, is_pg).await;
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
        if let Some(status) = children
            .iter_mut()
            .find_map(|c| c.try_wait().ok().flatten())
        {
            anyhow::bail!("a worker process exited early ({status}); run it by hand to see why");
        }
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
        if let Some(status) = children
            .iter_mut()
            .find_map(|c| c.try_wait().ok().flatten())
        {
            anyhow::bail!("a worker process exited early ({status}); run it by hand to see why");
        }
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
    let commits_after = commits(&fleet.store, is_pg).await;
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
    println!("peak worker RSS: {peak:.1} MB");
    let vs = baseline_ratio(baseline, "throughput", "jobs_per_s", jobs_per_s);
    if let Some(r) = vs {
        println!("against {}: jobs/s × {r:.2}", baseline.display());
    }
    println!(
        "{}",
        json!({"bench": "throughput", "jobs": jobs, "counted": counted, "errors": errors, "workers": workers, "jobs_per_s": jobs_per_s.round(), "produce_s": (produced.as_secs_f64() * 10.0).round() / 10.0, "parse_rows_per_s": calibration.round(), "jobs_per_s_per_1000_parse_rows_per_s": (per_parse * 1000.0).round() / 1000.0, "cpu_ms_per_job": cpu, "worker_plus_db_cpu_ms_per_job": (ours_ms * 1000.0).round() / 1000.0, "db_commits_per_job": commits_per_job, "peak_worker_rss_mb": (peak * 10.0).round() / 10.0, "jobs_per_s_vs_baseline": vs})
    );
    Ok(ExitCode::SUCCESS)
}

/// Transactions committed in the scratch database so far (PostgreSQL only).
async fn commits(store: &Store, is_pg: bool) -> Option<i64> {
    if !is_pg {
        return None;
    }
    sqlx::query_scalar::<_, i64>(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(store.pool())
    .await
    .ok()
}

/// `kyc bench memory`: the same jobs twice, each time in a fresh fleet with one worker
/// process that may hold all of them at once (concurrency = jobs): once with the budget
/// under test, once with a budget too large to matter. Each job carries four materials of
/// `material_mib` (ID-card front and back, face, video) on the S3 server; by name-less
/// ivs-standard rules the request carries three of them (front, back, face) and the worker
/// reads only those. The figure is each run's peak worker RSS (`VmHWM`), so the ratio is
/// measured in one run on one machine; nothing else shares the worker process.
async fn memory(
    conn: Conn,
    jobs: usize,
    material_mib: usize,
    budget: u64,
) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(false, "warn,sqlx=error,lapin=off");
    let mut peaks = Vec::new();
    for (label, b) in [
        ("with the budget", budget),
        ("without (64 GiB)", 64u64 << 30),
    ] {
        let fleet = Fleet::start(&conn, kyc_simulator::FaultConfig::default()).await?;
        let objects = crate::commands::objects(&conn, None).await?;
        let bucket = format!(
            "kyc-bench-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        objects
            .ensure_bucket(&bucket)
            .await
            .context("Failed to create a bucket (KYC_S3_ENDPOINT, AWS_* credentials)")?;
        // A JPEG header followed by filler: large, and a valid start for the vendor's check.
        let mut big = FACE.to_vec();
        big.resize(material_mib << 20, 0x5A);
        let big = bytes::Bytes::from(big);
        for name in ["front", "back", "face", "video"] {
            objects
                .put(&format!("s3://{bucket}/{name}.jpg"), big.clone())
                .await?;
        }
        let mut csv =
            b"operation,customer_ref,id_card_front,id_card_back,face_image,video\n".to_vec();
        for i in 0..jobs {
            writeln!(
                csv,
                "huawei.standard,M{i},s3://{bucket}/front.jpg,s3://{bucket}/back.jpg,s3://{bucket}/face.jpg,s3://{bucket}/video.jpg"
            )?;
        }
        let sources = format!("s3://{bucket}/");
        fleet.produce_csv(&csv, &sources).await?;
        let mut children = fleet.spawn_workers(
            1,
            "huawei.ivs-standard=100000/1000",
            Some(jobs),
            &sources,
            &[("KYC_MATERIAL_BUDGET", b.to_string())],
        )?;
        let deadline = Instant::now() + Duration::from_secs(600);
        while (fleet.store.outcome_count("bench").await? as usize) < jobs {
            if let Some(status) = children
                .iter_mut()
                .find_map(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!("the worker exited early ({status}); run it by hand to see why");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the worker did not finish {jobs} jobs within 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let peak = children
            .iter()
            .filter_map(|c| peak_rss_of(c.id()))
            .fold(0.0, f64::max);
        fleet.stop(children).await?;
        println!("{label}: peak worker RSS {peak:.0} MB");
        peaks.push(peak);
    }
    let budget_mb = budget as f64 / (1u64 << 20) as f64;
    let demand = (jobs * 3 * material_mib) as f64 * kyc_objects::budget::BODY_FACTOR;
    println!(
        "{jobs} jobs × 3 materials read × {material_mib} MiB (4 present): would hold ≈ {demand:.0} MiB at once; budget {budget_mb:.0} MiB"
    );
    println!(
        "peak RSS with the budget: {:.0} MB ({:.2} × the budget); without: {:.0} MB ({:.2} × with)",
        peaks[0],
        peaks[0] / budget_mb,
        peaks[1],
        peaks[1] / peaks[0].max(1.0)
    );
    Ok(ExitCode::SUCCESS)
}
