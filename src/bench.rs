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
use std::time::Instant;

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
}

pub async fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    match a.kind {
        BenchKind::Produce {
            conn,
            rows,
            window,
            baseline,
        } => produce(conn, rows, window, &baseline).await,
    }
}

/// Peak resident set size of this process so far, in MB (Linux `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
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
    if !conn.database.starts_with("postgres") {
        let store =
            Store::connect(&format!("sqlite://{}", dir.join("bench.db").display()), 4).await?;
        store.migrate().await?;
        return Ok((store, None));
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
    let (base, _) = conn
        .database
        .rsplit_once('/')
        .context("database URL has no path")?;
    let store = Store::connect(&format!("{base}/{name}"), 8).await?;
    store.migrate().await?;
    Ok((store, Some((conn.database.clone(), name))))
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
        default_operation: None,
        rejects_path: input.with_extension(format!("{batch}.rejects.csv")),
        dry_run,
        window,
        encoding: Encoding::Auto,
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
    let broker = Broker::connect_amqp(&conn.amqp, topology.clone())
        .await
        .context("Failed to connect to RabbitMQ (KYC_AMQP_URL)")?;
    let full = stage(&store, &broker, &input, "full", window, false).await?;
    println!(
        "+ RabbitMQ (full path):         {:>9.0} rows/s  ({} published)",
        full.rows_per_s, full.published
    );
    broker.close().await;
    delete_queues(&conn.amqp, &topology).await;
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

async fn delete_queues(amqp: &str, t: &Topology) {
    if let Ok(conn) = lapin::Connection::connect(amqp, Default::default()).await {
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
