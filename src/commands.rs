//! The server-mode commands: each builds its stage from configuration and runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use kyc_objects::ObjectStore;
use kyc_producer::{ProduceError, ProduceSettings};
use kyc_queue::{Broker, Topology};
use kyc_schemas::{Operation, Vendor};
use kyc_store::Store;
use kyc_worker::{Clients, Context, Limiters, RetryPolicy, WorkerSettings};

use crate::{config, keys, telemetry, Conn};

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    conn: Conn,
    /// CSV input: a local path or s3://bucket/key.
    #[arg(long)]
    input: String,
    /// Base for image cells that are keys: s3://bucket/prefix/ (or a folder, kept relative).
    #[arg(long)]
    images: Option<String>,
    /// Operation for rows without an `operation` cell, e.g. huawei.standard.
    #[arg(long)]
    operation: Option<Operation>,
    /// Batch id; re-running with the same id publishes only what is missing. Default: derived
    /// from the input's identity (a file's SHA-256; an S3 object's version or ETag), so
    /// running the same input again publishes nothing new.
    #[arg(long)]
    batch_id: Option<String>,
    /// Longest record accepted, in bytes: a longer one (or a quote that never closes) stops
    /// the run naming its line, before it is read into memory.
    #[arg(long, default_value_t = kyc_producer::DEFAULT_MAX_RECORD_BYTES)]
    max_record_bytes: usize,
    /// Where refused rows go: a file or s3://bucket/key (default: <input stem>.rejects.csv in
    /// the current folder for a local input, next to the input on S3 for an S3 input).
    #[arg(long)]
    rejects: Option<String>,
    /// Validate and report without publishing.
    #[arg(long)]
    dry_run: bool,
    /// Re-verification policy: do not publish a row whose person passed the same operation
    /// (in an earlier batch) within this long, e.g. 30d; such rows are listed in
    /// <input stem>.skipped.csv. Default: KYC_SKIP_VERIFIED_WITHIN, else every row is verified.
    #[arg(long, value_parser = config::parse_duration)]
    skip_verified_within: Option<std::time::Duration>,
    #[command(flatten)]
    material: config::MaterialArgs,
    /// Input encoding: auto (BOM, else UTF-8 if valid, else GB18030), utf-8 or gb18030.
    #[arg(long, default_value = "auto")]
    encoding: kyc_producer::Encoding,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct WorkArgs {
    #[command(flatten)]
    conn: Conn,
    /// Vendors to consume (default: all).
    #[arg(long, value_delimiter = ',')]
    vendors: Vec<Vendor>,
    /// Jobs in flight per vendor, fixed. Default: KYC_WORKER_CONCURRENCY; unset or empty, the
    /// limit follows the quota (it grows while slots go unused and shrinks while calls queue
    /// for slots).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Unacked deliveries per vendor queue. Default: KYC_PREFETCH; unset or empty, the most
    /// the concurrency limit may reach.
    #[arg(long)]
    prefetch: Option<u16>,
    /// Seconds in-flight jobs get to finish after SIGTERM (keep below the pod's grace period).
    #[arg(long, env = "KYC_SHUTDOWN_GRACE_SECS", default_value_t = 25)]
    shutdown_grace_secs: u64,
    /// Local folder for materials given as relative paths.
    #[arg(long)]
    images: Option<PathBuf>,
    #[command(flatten)]
    material: config::MaterialArgs,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "KYC_HTTP_LISTEN", default_value = "0.0.0.0:9090")]
    http_listen: String,
    /// /healthz fails when a vendor's consumer holds deliveries and has made no progress
    /// (no delivery taken or settled, no vendor call ended) for this long.
    #[arg(long, env = "KYC_STUCK_AFTER", default_value = "5m", value_parser = config::parse_duration)]
    stuck_after: Duration,
    /// Memory for materials in flight and the request bodies built from them (e.g. 512MiB,
    /// 1GiB): jobs wait for it instead of the pod running out of memory. Keep it well under
    /// the container's memory limit.
    #[arg(long, env = "KYC_MATERIAL_BUDGET", default_value = "512MiB", value_parser = config::parse_bytes)]
    material_budget: u64,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    kind: ReportKind,
}

#[derive(Debug, Subcommand)]
enum ReportKind {
    /// One row per job outcome (compliance).
    Outcomes {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        batch: Option<String>,
        /// First day (UTC, YYYY-MM-DD) of completion, inclusive.
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Last day (UTC, YYYY-MM-DD) of completion, inclusive.
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// passed, failed, not_found, pending or error.
        #[arg(long)]
        status: Option<String>,
        /// A file, an s3://bucket/key, or an s3://bucket/prefix/ (a dated name is added);
        /// default: standard output.
        #[arg(long)]
        out: Option<String>,
        /// Show full names and ID numbers. Recorded in the audit trail with --requested-by.
        #[arg(long, requires = "requested_by")]
        unmasked: bool,
        /// Who asks for an unmasked export; required with --unmasked, recorded in the audit trail.
        #[arg(long, requires = "unmasked")]
        requested_by: Option<String>,
        /// Who runs an unmasked export, recorded in its audit trail (default: the OS account).
        #[arg(long, env = "KYC_OPERATOR")]
        operator: Option<String>,
        /// Start the file with a UTF-8 BOM for Excel.
        #[arg(long)]
        excel_bom: bool,
    },
    /// Billable calls per vendor × product × day, against the ledger and the vendor's figures.
    Billing {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        #[arg(long)]
        vendor: Option<Vendor>,
        #[arg(long)]
        out: Option<String>,
        #[arg(long)]
        excel_bom: bool,
    },
    /// Every job of a batch accounted for; exits 4 while anything is missing.
    Reconcile {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        batch: String,
        #[arg(long)]
        out: Option<String>,
    },
}

/// Exit code of `kyc report reconcile` for a batch that is not complete yet.
pub const EXIT_INCOMPLETE: u8 = 4;

/// Where a report goes. S3 reports are written to a temporary file first and uploaded from
/// it, so a large export never sits in memory.
enum Destination {
    Stdout,
    File(PathBuf),
    S3 {
        uri: String,
        tmp: tempfile::NamedTempFile,
    },
}

impl Destination {
    fn parse(out: Option<&str>, report: &str) -> anyhow::Result<Self> {
        Ok(match out {
            None | Some("-") => Destination::Stdout,
            Some(uri) if uri.starts_with("s3://") => {
                let uri = if uri.ends_with('/') {
                    format!(
                        "{uri}{report}-{}.csv",
                        chrono::Utc::now().format("%Y-%m-%dT%H%M%SZ")
                    )
                } else {
                    uri.to_string()
                };
                Destination::S3 {
                    uri,
                    tmp: tempfile::NamedTempFile::new()
                        .context("Failed to create a temporary file")?,
                }
            }
            Some(path) => Destination::File(PathBuf::from(path)),
        })
    }

    fn writer(&self) -> anyhow::Result<Box<dyn std::io::Write>> {
        Ok(match self {
            Destination::Stdout => Box::new(std::io::stdout().lock()),
            // Owner-only (0600): a report names people.
            Destination::File(p) => Box::new(std::io::BufWriter::new(
                kyc_objects::private_file::create(p)
                    .with_context(|| format!("Failed to create {}", p.display()))?,
            )),
            // tempfile creates its files 0600 already.
            Destination::S3 { tmp, .. } => Box::new(std::io::BufWriter::new(tmp.reopen()?)),
        })
    }

    /// Where the rows go, as the audit trail records it (an absolute path for a file).
    fn describe(&self) -> String {
        match self {
            Destination::Stdout => "standard output".into(),
            Destination::File(p) => std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string(),
            Destination::S3 { uri, .. } => uri.clone(),
        }
    }

    async fn finish(self, conn: &Conn) -> anyhow::Result<String> {
        Ok(match self {
            Destination::Stdout => "standard output".into(),
            Destination::File(p) => p.display().to_string(),
            Destination::S3 { uri, tmp } => {
                objects(conn, None)
                    .await?
                    .put_file(&uri, tmp.path())
                    .await
                    .with_context(|| format!("Failed to upload {uri}"))?;
                uri
            }
        })
    }
}

fn day_start_ms(d: chrono::NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_millis()
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8480")]
    listen: String,
    /// CA certificate file (PEM) trusted when the simulated vendor downloads images from
    /// https:// URLs (a private S3's presigned URLs), besides the system's roots.
    #[arg(long, env = "KYC_S3_CA_FILE")]
    s3_ca_file: Option<PathBuf>,
    /// Answer time of every vendor: `MS`, fixed (`latency_ms` of `/admin/faults`), or
    /// `MEDIAN/P99` in ms, lognormal (`latency` of `/admin/faults`), e.g. `800/4000`.
    #[arg(long, value_name = "MS|MEDIAN/P99", value_parser = parse_latency)]
    latency: Option<LatencyArg>,
    /// Occasional stalls on top of the answer time: `RATE@MS`, e.g. `0.005@5000` (one call
    /// in 200 waits 5 s more).
    #[arg(long, value_name = "RATE@MS", value_parser = parse_stall)]
    stall: Option<(f64, u64)>,
    /// QPS quota per API of every vendor, counted when a call arrives and answered with each
    /// vendor's throttle signal (`qps` of `/admin/faults`).
    #[arg(long, value_name = "QPS")]
    quota: Option<f64>,
    /// Calls a quota's bucket holds (`burst` of `/admin/faults`); default one call plus a
    /// tenth of a second's worth.
    #[arg(long, value_name = "CALLS")]
    burst: Option<f64>,
    /// Seeds the latency draws, so that a run repeats its answer times (`seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Start-up faults: the JSON body `POST /admin/faults` takes, inline or as `@FILE`;
    /// `--latency` and `--quota` apply on top of it.
    #[arg(long, value_name = "JSON|@FILE")]
    faults: Option<String>,
}

/// The fault configuration the flags describe.
pub fn simulate_faults(a: &SimulateArgs) -> anyhow::Result<kyc_simulator::FaultConfig> {
    let mut faults: kyc_simulator::FaultConfig = match a.faults.as_deref() {
        None => Default::default(),
        Some(arg) => {
            let text = match arg.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("Failed to read --faults file {path}"))?,
                None => arg.to_string(),
            };
            serde_json::from_str(&text)
                .context("--faults is not the JSON that POST /admin/faults takes")?
        }
    };
    for v in [&mut faults.huawei, &mut faults.alibaba, &mut faults.baidu] {
        match a.latency {
            Some(LatencyArg::Fixed(ms)) => v.latency_ms = ms,
            Some(LatencyArg::Lognormal { median_ms, p99_ms }) => {
                let l = v.latency.get_or_insert_with(Default::default);
                (l.median_ms, l.p99_ms) = (median_ms, p99_ms);
            }
            None => {}
        }
        if let Some((rate, ms)) = a.stall {
            let l = v.latency.get_or_insert_with(Default::default);
            (l.stall_rate, l.stall_ms) = (rate, ms);
        }
        if let Some(q) = a.quota {
            v.qps = Some(q);
        }
        if let Some(b) = a.burst {
            v.burst = Some(b);
        }
    }
    if a.seed.is_some() {
        faults.seed = a.seed;
    }
    Ok(faults)
}

/// `kyc simulate --latency`: fixed, or lognormal by median and 99th percentile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyArg {
    Fixed(u64),
    Lognormal { median_ms: f64, p99_ms: f64 },
}

/// `MS` or `MEDIAN/P99` (ms; the p99 at least the median).
pub fn parse_latency(text: &str) -> Result<LatencyArg, String> {
    let ms = |t: &str| -> Result<f64, String> {
        t.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{t:?} is not a number of milliseconds"))
    };
    match text.split_once('/') {
        None => Ok(LatencyArg::Fixed(ms(text)?.round() as u64)),
        Some((m, p)) => {
            let (median_ms, p99_ms) = (ms(m)?, ms(p)?);
            if p99_ms < median_ms {
                return Err(format!(
                    "p99 {p99_ms} ms is below the median {median_ms} ms"
                ));
            }
            Ok(LatencyArg::Lognormal { median_ms, p99_ms })
        }
    }
}

/// `RATE@MS`: a share of calls (0–1) and how long each of them stalls.
pub fn parse_stall(text: &str) -> Result<(f64, u64), String> {
    let (rate, ms) = text
        .split_once('@')
        .ok_or_else(|| format!("{text:?}: expected RATE@MS, e.g. 0.005@5000"))?;
    let rate: f64 = rate
        .trim()
        .parse()
        .ok()
        .filter(|r: &f64| (0.0..=1.0).contains(r))
        .ok_or_else(|| format!("{rate:?}: the rate is a share between 0 and 1"))?;
    let ms: u64 = ms
        .trim()
        .parse()
        .map_err(|_| format!("{ms:?} is not a whole number of milliseconds"))?;
    Ok((rate, ms))
}

/// What `kyc simulate` prints about its credentials: everything for fresh ones (they exist
/// only for this process), only the key ids for the ones from the environment.
pub fn credentials_banner(
    creds: &crate::embedded::SimCredentials,
    from: crate::embedded::FromEnv,
) -> String {
    let secret = |from_env: bool, var: &str, value: &str| {
        if from_env {
            format!("{var}=<from the environment>")
        } else {
            format!("{var}={value}")
        }
    };
    format!(
        "          HUAWEICLOUD_SDK_AK={} {} HUAWEICLOUD_SDK_PROJECT_ID={}\n\
         ALIBABA_CLOUD_ACCESS_KEY_ID={} {}\n\
         BAIDU_API_KEY={} {}\n",
        creds.huawei_ak,
        secret(from.huawei, "HUAWEICLOUD_SDK_SK", &creds.huawei_sk),
        creds.project_id,
        creds.alibaba_ak,
        secret(
            from.alibaba,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            &creds.alibaba_secret
        ),
        creds.baidu_api_key,
        secret(from.baidu, "BAIDU_SECRET_KEY", &creds.baidu_secret_key),
    )
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    conn: Conn,
}

pub(crate) fn init_logs(conn: &Conn) {
    telemetry::init(conn.log_format == "json", "info");
    for warning in config::transport_warnings(
        &conn.database,
        &conn.amqp,
        config::s3_endpoint(conn.s3_endpoint.as_deref()).as_deref(),
    ) {
        tracing::warn!("{warning}");
    }
}

pub(crate) async fn connect_store(conn: &Conn) -> anyhow::Result<Store> {
    connect_store_sized(conn, 16).await
}

async fn connect_store_sized(conn: &Conn, max_connections: u32) -> anyhow::Result<Store> {
    let timeouts = kyc_store::DbTimeouts {
        connect: conn.database_timeout,
        statement: conn.statement_timeout,
    };
    let store = Store::connect_with(&conn.database, max_connections, timeouts)
        .await
        .context("Failed to connect to the database (KYC_DATABASE_URL)")?;
    Ok(store)
}

/// The S3 store of `conn`, trusting `KYC_S3_CA_FILE` for an https:// endpoint.
pub async fn objects(conn: &Conn, local: Option<PathBuf>) -> anyhow::Result<ObjectStore> {
    let endpoint = config::s3_endpoint(conn.s3_endpoint.as_deref());
    let ca = config::ca_pem(conn.s3_ca_file.as_deref(), "KYC_S3_CA_FILE")?;
    Ok(ObjectStore::s3(endpoint.as_deref(), ca.as_deref(), local)
        .await
        .context("Failed to set up S3 (KYC_S3_ENDPOINT, KYC_S3_CA_FILE)")?
        .with_timeout(conn.s3_timeout))
}

/// The RabbitMQ broker of `conn`, trusting `KYC_AMQP_CA_FILE` for an amqps:// URL.
pub async fn broker(conn: &Conn, topology: Topology) -> anyhow::Result<Broker> {
    let ca = config::ca_pem(conn.amqp_ca_file.as_deref(), "KYC_AMQP_CA_FILE")?;
    let timeouts = kyc_queue::AmqpTimeouts {
        connect: conn.amqp_timeout,
        confirm: conn.amqp_timeout,
    };
    Broker::connect_amqp_with(&conn.amqp, ca.as_deref(), topology, timeouts)
        .await
        .context("Failed to connect to RabbitMQ (KYC_AMQP_URL, KYC_AMQP_CA_FILE)")
}

pub async fn produce(a: ProduceArgs) -> anyhow::Result<ExitCode> {
    init_logs(&a.conn);
    // Before anything else: without keys nothing may be written.
    let keys = keys::require_keyring("kyc produce")?;
    // A bad allowlist stops the run before anything is read or published.
    let material_sources = a.material.sources()?;
    let store = connect_store(&a.conn).await?;
    store
        .migrate()
        .await
        .context("Failed to migrate the database")?;
    seal_legacy(&store, &keys.data).await?;
    // S3 only when something lives there: a local run needs no cloud configuration at all.
    let on_s3 = [Some(&a.input), a.images.as_ref(), a.rejects.as_ref()]
        .into_iter()
        .flatten()
        .any(|u| u.starts_with("s3://"));
    let objects = if on_s3 {
        objects(&a.conn, None).await?
    } else {
        ObjectStore::local(".")
    };
    let broker = if a.dry_run {
        Broker::memory()
    } else {
        broker(&a.conn, a.conn.topology()).await?
    };
    let rejects_target = a.rejects.unwrap_or_else(|| {
        if a.input.starts_with("s3://") {
            format!(
                "{}.rejects.csv",
                a.input.strip_suffix(".csv").unwrap_or(&a.input)
            )
        } else {
            crate::default_rejects_path(&a.input).display().to_string()
        }
    });
    // Rejects bound for S3 are written locally first (the container's root is read-only,
    // the temporary directory is not) and uploaded at the end.
    let tmp = tempfile::TempDir::new().context("Failed to create a temporary directory")?;
    let rejects_path = if rejects_target.starts_with("s3://") {
        tmp.path().join("rejects.csv")
    } else {
        PathBuf::from(&rejects_target)
    };
    let batch_id = match a.batch_id {
        Some(b) => b,
        None => match kyc_producer::default_batch_id(&a.input, Some(&objects)).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(source_exit_code(&e)));
            }
        },
    };
    // The variable is read here rather than by clap so that the config map's empty value
    // means "off" instead of a parse error.
    let skip_verified_within = match a.skip_verified_within {
        Some(d) => Some(d),
        None => config::skip_verified_within_from_env()?,
    };
    let skip_window = skip_verified_within.map(config::format_duration);
    let settings = ProduceSettings {
        batch_id,
        rejects_path,
        input: a.input,
        images: a.images,
        material_sources,
        default_operation: a.operation,
        dry_run: a.dry_run,
        window: 500,
        encoding: a.encoding,
        max_record_bytes: a.max_record_bytes,
        keys,
        skip_verified_within,
    };
    // SIGTERM / Ctrl-C: finish the current window (publish, confirm, record), then stop.
    let stop = kyc_producer::CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::warn!("stop requested: finishing the current window");
        on_signal.cancel();
    });
    let progress = Progress::new(a.quiet);
    let summary =
        match kyc_producer::produce(&settings, Some(&objects), &store, &broker, &stop, |s| {
            progress.update(s)
        })
        .await
        {
            Ok(s) => s,
            // The input is unusable as it stands: its own exit code, so that a Kubernetes Job
            // does not retry what cannot succeed.
            Err(ProduceError::Source(e)) => {
                progress.finish();
                eprintln!("error: {e}");
                return Ok(ExitCode::from(source_exit_code(&e)));
            }
            Err(e @ ProduceError::Header(_)) => {
                progress.finish();
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_INPUT_INVALID));
            }
            Err(e) => return Err(anyhow::Error::new(e).context("Producing failed")),
        };
    progress.finish();
    broker.close().await;
    if summary.rejected > 0 && rejects_target.starts_with("s3://") {
        objects
            .put_file(&rejects_target, &settings.rejects_path)
            .await
            .with_context(|| format!("Failed to upload the rejects to {rejects_target}"))?;
    }
    let skipped_local = kyc_producer::skipped::skipped_path(&settings.rejects_path);
    let skipped_target = if rejects_target.starts_with("s3://") {
        let target = format!(
            "{}.skipped.csv",
            rejects_target
                .strip_suffix(".csv")
                .unwrap_or(&rejects_target)
                .strip_suffix(".rejects")
                .unwrap_or(&rejects_target)
        );
        if summary.verified_recently > 0 {
            objects
                .put_file(&target, &skipped_local)
                .await
                .with_context(|| format!("Failed to upload the skipped rows to {target}"))?;
        }
        target
    } else {
        skipped_local.display().to_string()
    };
    println!(
        "batch {} ({}): {} rows read, {} published, {} skipped (already published), {} rejected{}",
        summary.batch_id,
        summary.encoding,
        summary.rows_read,
        summary.published,
        summary.skipped,
        summary.rejected,
        if summary.rejected > 0 {
            format!(" (see {rejects_target})")
        } else {
            String::new()
        }
    );
    if summary.verified_recently > 0 {
        println!(
            "{} rows not re-verified: passed within {} (at least {} billable calls saved; see {})",
            summary.verified_recently,
            skip_window.as_deref().unwrap_or_default(),
            summary.verified_recently,
            skipped_target
        );
    }
    if let Some(failure) = &summary.failure {
        eprintln!(
            "error: {failure}; batch {} is NOT finished: fix the input and run again (same input: same batch, nothing published twice)",
            summary.batch_id
        );
        return Ok(ExitCode::from(match failure {
            kyc_producer::InputFailure::Io { .. } => EXIT_INPUT_IO,
            _ => EXIT_INPUT_INVALID,
        }));
    }
    if summary.interrupted {
        println!(
            "interrupted: re-run with --batch-id {} to publish the rest",
            summary.batch_id
        );
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if summary.published == 0 && summary.skipped > 0 && summary.rejected == 0 {
        println!(
            "nothing new: every row of this input was already published in batch {}",
            summary.batch_id
        );
    }
    Ok(if summary.rejected > 0 {
        ExitCode::from(crate::EXIT_REJECTS)
    } else {
        ExitCode::SUCCESS
    })
}

/// Exit code of `kyc produce` stopped by a signal before the end of its input.
pub const EXIT_INTERRUPTED: u8 = 130;

/// An input that could not be opened or read: 5 when trying again may help (the storage
/// failed), 6 when it cannot (no such object, no header, refused).
fn source_exit_code(e: &kyc_producer::csv_source::SourceError) -> u8 {
    use kyc_producer::csv_source::SourceError;
    match e {
        SourceError::Read(_) => EXIT_INPUT_IO,
        SourceError::Open { source, .. } if source.is_transient() => EXIT_INPUT_IO,
        _ => EXIT_INPUT_INVALID,
    }
}

/// Exit code of `kyc produce` when reading the input failed part-way (a connection reset, a
/// disk error): what was read is published, the batch is unfinished; retrying is safe.
pub const EXIT_INPUT_IO: u8 = 5;

/// Exit code of `kyc produce` when the input cannot be used as it is: unreadable or missing
/// header, a header without a column an operation needs, a record over the size bound, or a
/// quote that never closes. Retrying the same input cannot help.
pub const EXIT_INPUT_INVALID: u8 = 6;

/// Producer progress: a bar on a terminal, a log line every few seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_log: std::cell::Cell<std::time::Instant>,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} {pos} rows ({per_sec}) {msg}",
                )
                .expect("valid template"),
            );
            b
        });
        Self {
            bar,
            last_log: std::cell::Cell::new(std::time::Instant::now()),
        }
    }

    fn update(&self, s: &kyc_producer::Summary) {
        match &self.bar {
            Some(b) => {
                b.set_position(s.rows_read);
                b.set_message(format!(
                    "published {}, skipped {}, rejected {}",
                    s.published, s.skipped, s.rejected
                ));
            }
            None if self.last_log.get().elapsed() >= std::time::Duration::from_secs(5) => {
                self.last_log.set(std::time::Instant::now());
                tracing::info!(
                    rows = s.rows_read,
                    published = s.published,
                    skipped = s.skipped,
                    rejected = s.rejected,
                    "producing"
                );
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Builds the vendor clients from the environment.
pub fn clients_from_env() -> Clients {
    Clients {
        huawei: config::huawei_from_env().map(|c| c.build(http_client())),
        alibaba: config::alibaba_from_env().map(|c| c.build(http_client())),
        baidu: config::baidu_from_env().map(|c| c.build(http_client())),
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("TLS backend initializes")
}

pub async fn work(mut a: WorkArgs) -> anyhow::Result<ExitCode> {
    init_logs(&a.conn);
    a.concurrency = a
        .concurrency
        .or(config::env_number("KYC_WORKER_CONCURRENCY")?);
    a.prefetch = a.prefetch.or(config::env_number("KYC_PREFETCH")?);
    let keys = keys::require_data_keys(
        "kyc work",
        "to open the sealed names and ID numbers of job messages",
    )?;
    let sources = a.material.sources()?;
    // Each job in flight makes a few short queries: a connection per two jobs, within reason
    // (several replicas share the server's connection limit).
    let store = connect_store_sized(
        &a.conn,
        a.concurrency.map_or(32, |n| (n as u32 / 2 + 4).min(32)),
    )
    .await?;
    let broker = broker(&a.conn, a.conn.topology()).await?;
    broker.declare().await.context("Failed to declare queues")?;
    tracing::info!(
        material_sources = %sources.entries().iter().map(|e| e.to_string()).collect::<Vec<_>>().join(","),
        local_folder = a.images.is_some(),
        "materials are read from these sources only"
    );
    let objects = objects(&a.conn, a.images)
        .await?
        .with_material_sources(sources)
        .with_material_budget(a.material_budget);
    let spend = config::spend_settings()?;
    for (vendor, cap) in spend.caps.iter() {
        tracing::info!(vendor = vendor.as_str(), cap = %cap, day = %spend.zone, "spend cap per day");
    }
    let ctx = Arc::new(Context {
        store: store.clone(),
        objects,
        clients: clients_from_env(),
        // The account quota is shared by every replica through the database.
        limiters: Limiters::shared(&config::quotas()?, store.clone()),
        retry: RetryPolicy::default(),
        metrics: Default::default(),
        keys,
        spend: kyc_worker::spend::SpendGuard::new(spend),
    });
    // The caps' budgets on /metrics from the start, and in the log.
    ctx.spend
        .publish(&ctx.store, &ctx.metrics)
        .await
        .context("Failed to read the spend of capped vendors")?;

    // Credentials decide consumption: a worker never takes a vendor's jobs it cannot call
    // (they would all end as `error/auth_failed` in seconds, and a re-run would skip them).
    let credentials = [
        (
            Vendor::Huawei,
            ctx.clients.huawei.is_some(),
            "HUAWEICLOUD_SDK_AK/SK",
        ),
        (
            Vendor::Alibaba,
            ctx.clients.alibaba.is_some(),
            "ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET",
        ),
        (
            Vendor::Baidu,
            ctx.clients.baidu.is_some(),
            "BAIDU_API_KEY/SECRET_KEY",
        ),
    ];
    let vendors = consumable_vendors(&a.vendors, &credentials)?;
    for (vendor, has, vars) in credentials {
        if !has {
            tracing::warn!(
                vendor = vendor.as_str(),
                vars,
                "no credentials: this vendor's queue is not consumed by this worker"
            );
        }
    }
    let settings = WorkerSettings {
        vendors: vendors.clone(),
        concurrency: a.concurrency,
        prefetch: a.prefetch,
        shutdown_grace: Duration::from_secs(a.shutdown_grace_secs),
    };
    let probes = crate::health::serve(
        &a.http_listen,
        ctx.clone(),
        broker.clone(),
        &vendors,
        a.stuck_after,
    )
    .await
    .with_context(|| format!("Failed to listen on {} (KYC_HTTP_LISTEN)", a.http_listen))?;
    tracing::info!(vendors = ?settings.vendors, concurrency = ?settings.concurrency, "worker started");
    let spend = ctx.spend.clone();
    kyc_worker::run(ctx, broker.clone(), settings, shutdown_signal())
        .await
        .context("Worker failed")?;
    probes.abort();
    broker.close().await;
    tracing::info!(deferred_by_spend_cap = spend.deferred(), "worker stopped");
    Ok(ExitCode::SUCCESS)
}

/// The queues a worker consumes: those asked for (all by default) that it has credentials for.
/// Naming a vendor without credentials is a start-up error, and so is having none at all.
fn consumable_vendors(
    asked: &[Vendor],
    credentials: &[(Vendor, bool, &str)],
) -> anyhow::Result<Vec<Vendor>> {
    let with: Vec<Vendor> = credentials
        .iter()
        .filter(|(_, has, _)| *has)
        .map(|(v, ..)| *v)
        .collect();
    if asked.is_empty() {
        if with.is_empty() {
            bail!("no vendor has credentials, so this worker would consume nothing: set HUAWEICLOUD_SDK_AK/SK, ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET or BAIDU_API_KEY/SECRET_KEY");
        }
        return Ok(with);
    }
    for v in asked {
        if let Some((_, false, vars)) = credentials.iter().find(|(c, ..)| c == v) {
            bail!("--vendors names {v}, which has no credentials ({vars} unset)");
        }
    }
    Ok(asked.to_vec())
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    match a.kind {
        ReportKind::Outcomes {
            conn,
            batch,
            from,
            to,
            status,
            out,
            unmasked,
            requested_by,
            operator,
            excel_bom,
        } => {
            init_logs(&conn);
            if let Some(s) = &status {
                if kyc_schemas::Status::parse(s).is_none() {
                    bail!("--status must be one of passed, failed, not_found, pending, error (got {s:?})");
                }
            }
            let requested_by = requested_by.unwrap_or_default();
            // A masked report reads the stored masked forms: only an unmasked one needs keys.
            let keys = if unmasked {
                Some(keys::require_data_keys(
                    "kyc report outcomes --unmasked",
                    "to open the sealed names and ID numbers",
                )?)
            } else {
                None
            };
            let store = connect_store(&conn).await?;
            let filter = kyc_store::queries::OutcomeFilter {
                batch_id: batch,
                status,
                from_ms: from.map(day_start_ms),
                to_ms: to.map(|d| day_start_ms(d) + 86_400_000),
            };
            let dest = Destination::parse(out.as_deref(), "outcomes")?;
            let opts = kyc_report::ReportOptions {
                unmasked,
                requested_by,
                // Only an unmasked export is audited; the OS lookup is not needed otherwise.
                operator: if unmasked {
                    config::operator(operator.as_deref())
                } else {
                    None
                },
                destination: dest.describe(),
                excel_bom,
                keys,
            };
            let n = kyc_report::write_outcomes(&store, &filter, &opts, dest.writer()?).await?;
            let at = dest.finish(&conn).await?;
            eprintln!(
                "{n} outcome rows written to {at}{}",
                if unmasked {
                    " (UNMASKED; audit recorded)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        ReportKind::Billing {
            conn,
            from,
            to,
            vendor,
            out,
            excel_bom,
        } => {
            init_logs(&conn);
            let store = connect_store(&conn).await?;
            let day = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
            let dest = Destination::parse(out.as_deref(), "billing")?;
            let prices = config::prices()?;
            let n = kyc_report::write_billing(
                &store,
                &prices,
                from.map(day).as_deref(),
                to.map(day).as_deref(),
                vendor.map(|v| v.as_str()),
                excel_bom,
                dest.writer()?,
            )
            .await?;
            let at = dest.finish(&conn).await?;
            eprintln!("{n} billing rows written to {at}");
            Ok(ExitCode::SUCCESS)
        }
        ReportKind::Reconcile { conn, batch, out } => {
            init_logs(&conn);
            let store = connect_store(&conn).await?;
            let dest = Destination::parse(out.as_deref(), "reconcile")?;
            let s = kyc_report::write_reconcile(&store, &batch, dest.writer()?).await?;
            let at = dest.finish(&conn).await?;
            let capped: i64 = store
                .cap_deferrals(Some(&batch))
                .await?
                .iter()
                .map(|d| d.waiting)
                .sum();
            if capped > 0 {
                eprintln!("batch {batch}: {capped} of the missing jobs are deferred by a spend cap to the next window (KYC_SPEND_CAPS)");
            }
            eprintln!(
                "batch {batch}: {} jobs, {} done, {} missing (published, no outcome), {} unpublished, {} unknown (possibly billed) calls; {} ({at})",
                s.jobs,
                s.done,
                s.missing,
                s.unpublished,
                s.unknown_calls,
                if s.complete() { "complete" } else { "INCOMPLETE" }
            );
            Ok(if s.complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_INCOMPLETE)
            })
        }
    }
}

pub async fn simulate(a: SimulateArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(false, "info");
    let (mut config, creds, from) = crate::embedded::simulator_config_from(|name| {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    });
    config.alibaba.trusted_ca_pem = config::ca_pem(a.s3_ca_file.as_deref(), "KYC_S3_CA_FILE")?;
    config.faults = simulate_faults(&a)?;
    let sim = kyc_simulator::Simulator::start(config, &a.listen)
        .await
        .with_context(|| format!("Failed to listen on {}", a.listen))?;
    let url = sim.base_url();
    println!("vendor simulator listening on {url}");
    println!("  endpoints: KYC_HUAWEI_ENDPOINT={url} KYC_HUAWEI_IAM_ENDPOINT={url}");
    println!("             KYC_ALIBABA_ENDPOINT={url} KYC_ALIBABA_BIZ_TYPE=RPBasic");
    println!("             KYC_BAIDU_ENDPOINT={url} KYC_BAIDU_PLAN_ID=sim-authority");
    println!("  credentials it accepts:");
    print!(
        "{}",
        credentials_banner(&creds, from)
            .replace("\n", "\n          ")
            .trim_end()
    );
    println!();
    if from == crate::embedded::FromEnv::default() {
        println!("  (fresh simulator-only credentials, valid for this process)");
    } else {
        println!("  (secrets marked <from the environment> are the standard variables' values)");
    }
    println!("  ledger: GET {url}/admin/ledger   faults: GET/POST {url}/admin/faults");
    shutdown_signal().await;
    sim.stop().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn migrate(a: MigrateArgs) -> anyhow::Result<ExitCode> {
    init_logs(&a.conn);
    let keys = keys::optional_data_keys()?;
    let store = connect_store(&a.conn).await?;
    store
        .migrate()
        .await
        .context("Failed to apply migrations")?;
    match keys {
        Some(k) => seal_legacy(&store, &k).await?,
        None => {
            let clear = store.legacy_subject_count().await?;
            if clear > 0 {
                tracing::warn!(
                    rows = clear,
                    "jobs hold names or ID numbers in clear from an older version; set KYC_DATA_KEYS and run `kyc migrate` again to seal them"
                );
            }
        }
    }
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}

/// Seals the names and ID numbers an older version stored in clear.
async fn seal_legacy(store: &Store, keys: &kyc_schemas::DataKeys) -> anyhow::Result<()> {
    let n = store
        .seal_legacy_subjects(keys)
        .await
        .context("Failed to seal names and ID numbers stored in clear by an older version")?;
    if n > 0 {
        tracing::info!(
            rows = n,
            key_id = keys.current_id(),
            "sealed names and ID numbers stored in clear by an older version"
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    conn: Conn,
    /// Retention: personal data of jobs decided longer ago than this is removed (`180d`).
    #[arg(long, env = "KYC_RETENTION", default_value = "180d", value_parser = config::parse_duration)]
    older_than: Duration,
}

pub async fn purge(a: PurgeArgs) -> anyhow::Result<ExitCode> {
    init_logs(&a.conn);
    let store = connect_store(&a.conn).await?;
    store
        .migrate()
        .await
        .context("Failed to migrate the database")?;
    let before = kyc_store::now_ms() - a.older_than.as_millis().min(i64::MAX as u128) as i64;
    let counts = store
        .purge_personal_data(before)
        .await
        .context("Purge failed")?;
    println!(
        "purged: names and ID numbers of {} jobs, vendor messages of {} outcomes (decided before {}); outcomes, ledger, billing and audit rows kept",
        counts.jobs,
        counts.vendor_messages,
        kyc_store::day_of(before)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{simulator_config_from, FromEnv};

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn standard_variables_set_the_credentials_and_only_key_ids_are_printed() {
        let vars = [
            ("HUAWEICLOUD_SDK_AK", "HWSTAGINGAK"),
            ("HUAWEICLOUD_SDK_SK", "hw-secret-value"),
            ("BAIDU_API_KEY", "bd-key"),
            ("BAIDU_SECRET_KEY", "bd-secret-value"),
        ];
        let (config, creds, from) = simulator_config_from(env(&vars));
        assert_eq!(
            from,
            FromEnv {
                huawei: true,
                alibaba: false,
                baidu: true
            }
        );
        assert_eq!(
            config.huawei.ak_sk,
            vec![("HWSTAGINGAK".to_string(), "hw-secret-value".to_string())]
        );
        assert_eq!(config.baidu.clients[0].0, "bd-key");
        let banner = credentials_banner(&creds, from);
        assert!(banner.contains("HWSTAGINGAK") && banner.contains("bd-key"));
        assert!(!banner.contains("hw-secret-value") && !banner.contains("bd-secret-value"));
        // Alibaba's were generated for this process: shown in full, to be copied.
        assert!(banner.contains(&creds.alibaba_secret));
    }

    #[test]
    fn the_fault_flags_are_the_admin_faults_body() {
        let a = SimulateArgs {
            listen: "127.0.0.1:0".into(),
            s3_ca_file: None,
            latency: Some(LatencyArg::Fixed(20)),
            stall: None,
            quota: Some(5.0),
            burst: None,
            seed: None,
            faults: Some(r#"{"huawei":{"error_rate":0.5},"clock_offset_secs":3}"#.into()),
        };
        let f = simulate_faults(&a).unwrap();
        assert_eq!((f.huawei.error_rate, f.clock_offset_secs), (0.5, 3));
        assert_eq!((f.baidu.latency_ms, f.alibaba.qps), (20, Some(5.0)));
        let lognormal = SimulateArgs {
            latency: Some(parse_latency("800/4000").unwrap()),
            stall: Some(parse_stall("0.005@5000").unwrap()),
            burst: Some(2.0),
            seed: Some(7),
            faults: None,
            ..a
        };
        let f = simulate_faults(&lognormal).unwrap();
        let l = f.huawei.latency.as_ref().unwrap();
        assert_eq!(
            (l.median_ms, l.p99_ms, l.stall_rate, l.stall_ms),
            (800.0, 4000.0, 0.005, 5000)
        );
        assert_eq!(
            (f.huawei.latency_ms, f.baidu.burst, f.seed),
            (0, Some(2.0), Some(7))
        );
        assert!(parse_latency("4000/800").is_err() && parse_latency("fast").is_err());
        assert!(parse_stall("2@10").is_err() && parse_stall("0.1").is_err());
        let a = lognormal;
        let bad = SimulateArgs {
            faults: Some("{not json".into()),
            ..a
        };
        assert!(simulate_faults(&bad).is_err());
    }

    /// `kyc simulate` with fixed credentials serves an official SDK call: the request the
    /// Huawei SDK signed for `tests/vectors/huawei-sdk-hmac-sha256.json`, replayed byte for
    /// byte at its own X-Sdk-Date (the simulator's clock moved there), gets past the signature
    /// check to the vendor's own answer.
    #[tokio::test]
    async fn a_simulator_with_the_sdk_vectors_credentials_serves_the_sdks_request() {
        const VECTORS: &str = include_str!("../tests/vectors/huawei-sdk-hmac-sha256.json");
        let file: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let v = file["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["url"].as_str().unwrap().ends_with("/v2.0/ivs-standard"))
            .expect("an ivs-standard vector");
        let (ak, sk) = (v["ak"].as_str().unwrap(), v["sk"].as_str().unwrap());
        let vars = [("HUAWEICLOUD_SDK_AK", ak), ("HUAWEICLOUD_SDK_SK", sk)];
        let (mut config, _, _) = simulator_config_from(env(&vars));
        let date = v["headers"]["X-Sdk-Date"].as_str().unwrap();
        let when = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
            .unwrap()
            .and_utc();
        config.faults.clock_offset_secs = (when - chrono::Utc::now()).num_seconds();
        let sim = kyc_simulator::Simulator::start(config, "127.0.0.1:0")
            .await
            .unwrap();
        let path = v["url"].as_str().unwrap().splitn(4, '/').nth(3).unwrap();
        let mut req = reqwest::Client::new().post(format!("{}/{path}", sim.base_url()));
        for (name, value) in v["headers"].as_object().unwrap() {
            if name != "Host" {
                req = req.header(name.as_str(), value.as_str().unwrap());
            }
        }
        // The vector was signed for the vendor's host; the simulator checks the Host it is
        // sent, so the replay keeps the signed value.
        req = req
            .header("Host", v["headers"]["Host"].as_str().unwrap())
            .header("Authorization", v["authorization"].as_str().unwrap());
        let resp = req
            .body(v["body"].as_str().unwrap().to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_ne!(status, 401, "signature refused: {body}");
        assert_ne!(body["error_code"], "APIG.0301", "{body}");
        assert_eq!(sim.ledger().entries.len(), 1);
        sim.stop().await;
    }
}
