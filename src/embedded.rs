//! `kyc run`: the whole pipeline in one process, for a first look and for small batches.
//! The stages and their code are the server mode's; only the parts around them change:
//! an in-process queue for RabbitMQ, SQLite for PostgreSQL, a local folder for S3, and the
//! built-in simulator for every vendor whose credentials are not configured.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kyc_objects::ObjectStore;
use kyc_producer::ProduceSettings;
use kyc_queue::Broker;
use kyc_schemas::Operation;
use kyc_simulator::{SimConfig, Simulator};
use kyc_store::Store;
use kyc_worker::{
    AlibabaConfig, BaiduConfig, Clients, Context, HuaweiAuth, HuaweiConfig, Limiters, RetryPolicy,
    WorkerSettings,
};

use crate::{commands, config, telemetry};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The CSV of jobs (see README for the columns).
    csv: PathBuf,
    /// Folder that image paths in the CSV are relative to (default: the CSV's folder).
    #[arg(long)]
    images: Option<PathBuf>,
    /// SQLite (or PostgreSQL) URL for outcomes.
    #[arg(long, default_value = "sqlite://kyc.db")]
    database: String,
    /// Where to write the outcomes report.
    #[arg(long, default_value = "kyc-report.csv")]
    report: PathBuf,
    /// Where refused rows go (default: <csv stem>.rejects.csv).
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Operation for rows without an `operation` cell.
    #[arg(long)]
    operation: Option<Operation>,
    /// Batch id (default: run-<timestamp>).
    #[arg(long)]
    batch_id: Option<String>,
    /// Jobs in flight per vendor, fixed (default: follows the quota).
    #[arg(long)]
    concurrency: Option<usize>,
    /// No progress bar (for scripts and tests).
    #[arg(long)]
    quiet: bool,
    /// Exit with code 3 when any row was refused.
    #[arg(long)]
    fail_on_rejects: bool,
    #[command(flatten)]
    material: config::MaterialArgs,
}

/// Credentials the in-process simulator accepts; generated fresh for each run.
#[derive(Debug, Clone)]
pub struct SimCredentials {
    pub huawei_ak: String,
    pub huawei_sk: String,
    pub project_id: String,
    pub alibaba_ak: String,
    pub alibaba_secret: String,
    pub baidu_api_key: String,
    pub baidu_secret_key: String,
}

/// The scene and plan the simulator's clients use when a row names none.
pub const SIM_BIZ_TYPE: &str = "RPBasic";
pub const SIM_PLAN_ID: &str = "sim-authority";

/// Which vendors' simulator credentials came from the standard variables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FromEnv {
    pub huawei: bool,
    pub alibaba: bool,
    pub baidu: bool,
}

/// A simulator configuration whose credentials are the standard variables' where a vendor's
/// pair is set (`HUAWEICLOUD_SDK_AK`/`_SK` [+ `_PROJECT_ID`], `ALIBABA_CLOUD_ACCESS_KEY_ID`/
/// `_SECRET`, `BAIDU_API_KEY`/`BAIDU_SECRET_KEY`), fresh ones otherwise: a staging cluster, a
/// second team or an official SDK can then be pointed at it with stable keys.
pub fn simulator_config_from(
    env: impl Fn(&str) -> Option<String>,
) -> (SimConfig, SimCredentials, FromEnv) {
    let (_, mut creds) = simulator_config();
    let mut from = FromEnv::default();
    if let (Some(ak), Some(sk)) = (env("HUAWEICLOUD_SDK_AK"), env("HUAWEICLOUD_SDK_SK")) {
        (creds.huawei_ak, creds.huawei_sk) = (ak, sk);
        if let Some(p) = env("HUAWEICLOUD_SDK_PROJECT_ID") {
            creds.project_id = p;
        }
        from.huawei = true;
    }
    if let (Some(id), Some(secret)) = (
        env("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        env("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
    ) {
        (creds.alibaba_ak, creds.alibaba_secret) = (id, secret);
        from.alibaba = true;
    }
    if let (Some(key), Some(secret)) = (env("BAIDU_API_KEY"), env("BAIDU_SECRET_KEY")) {
        (creds.baidu_api_key, creds.baidu_secret_key) = (key, secret);
        from.baidu = true;
    }
    (config_for(&creds), creds, from)
}

fn config_for(creds: &SimCredentials) -> SimConfig {
    let mut config = SimConfig::default();
    config.huawei.ak_sk = vec![(creds.huawei_ak.clone(), creds.huawei_sk.clone())];
    config.huawei.project_id = creds.project_id.clone();
    config.alibaba.access_keys = vec![(creds.alibaba_ak.clone(), creds.alibaba_secret.clone())];
    config.baidu.clients = vec![(creds.baidu_api_key.clone(), creds.baidu_secret_key.clone())];
    config
}

/// A simulator configuration with freshly generated credentials.
pub fn simulator_config() -> (SimConfig, SimCredentials) {
    let creds = SimCredentials {
        huawei_ak: format!(
            "SIMAK{}",
            &uuid::Uuid::new_v4().simple().to_string()[..15].to_uppercase()
        ),
        huawei_sk: uuid::Uuid::new_v4().simple().to_string(),
        project_id: uuid::Uuid::new_v4().simple().to_string(),
        alibaba_ak: format!("LTAI{}", &uuid::Uuid::new_v4().simple().to_string()[..20]),
        alibaba_secret: uuid::Uuid::new_v4().simple().to_string(),
        baidu_api_key: uuid::Uuid::new_v4().simple().to_string()[..24].to_string(),
        baidu_secret_key: uuid::Uuid::new_v4().simple().to_string(),
    };
    (config_for(&creds), creds)
}

/// Fills every vendor without a client with one that talks to the simulator at `base_url`.
/// Returns the names of the vendors that were filled.
pub fn simulated_clients(
    clients: &mut Clients,
    base_url: &str,
    creds: &SimCredentials,
) -> Vec<&'static str> {
    let mut filled = Vec::new();
    if clients.huawei.is_none() {
        clients.huawei = Some(
            HuaweiConfig {
                endpoint: base_url.into(),
                iam_endpoint: base_url.into(),
                region: "cn-north-4".into(),
                project_id: creds.project_id.clone(),
                auth: HuaweiAuth::AkSk {
                    ak: creds.huawei_ak.clone(),
                    sk: creds.huawei_sk.clone(),
                },
                timeout: Duration::from_secs(15),
                enterprise_project_id: None,
                retry_uncropped: true,
            }
            .build(commands::http_client()),
        );
        filled.push("Huawei");
    }
    if clients.alibaba.is_none() {
        clients.alibaba = Some(
            AlibabaConfig {
                endpoint: base_url.into(),
                access_key_id: creds.alibaba_ak.clone(),
                access_key_secret: creds.alibaba_secret.clone(),
                region: "cn-hangzhou".into(),
                biz_type: Some(SIM_BIZ_TYPE.into()),
                timeout: Duration::from_secs(15),
                url_ttl: Duration::from_secs(600),
                pending_window: kyc_worker::vendors::alibaba::DEFAULT_PENDING_WINDOW,
            }
            .build(commands::http_client()),
        );
        filled.push("Alibaba");
    }
    if clients.baidu.is_none() {
        clients.baidu = Some(
            BaiduConfig {
                endpoint: base_url.into(),
                api_key: creds.baidu_api_key.clone(),
                secret_key: creds.baidu_secret_key.clone(),
                plan_id: Some(SIM_PLAN_ID.into()),
                quality_control: None,
                liveness_control: None,
                timeout: Duration::from_secs(15),
            }
            .build(commands::http_client()),
        );
        filled.push("Baidu");
    }
    filled
}

/// The vendors that have credentials of their own (before the simulator fills the rest).
fn configured_vendors(clients: &Clients) -> Vec<&'static str> {
    [
        (clients.huawei.is_some(), "Huawei"),
        (clients.alibaba.is_some(), "Alibaba"),
        (clients.baidu.is_some(), "Baidu"),
    ]
    .into_iter()
    .filter_map(|(real, name)| real.then_some(name))
    .collect()
}

/// The first line of `kyc run`: which vendors are real and which are simulated.
fn vendors_line(real: &[&str], simulated: &[&str], simulator_url: Option<&str>) -> String {
    let mut parts = Vec::new();
    if !real.is_empty() {
        parts.push(format!(
            "REAL vendors (credentials configured, calls may be billed): {}",
            real.join(", ")
        ));
    }
    if !simulated.is_empty() {
        parts.push(format!(
            "no credentials for {}; using the built-in vendor simulator at {} for them",
            simulated.join(", "),
            simulator_url.unwrap_or("?")
        ));
    }
    let tail = match (real.is_empty(), simulated.is_empty()) {
        (true, _) => " (no real vendor is called)",
        (false, true) => " (nothing is simulated)",
        (false, false) => "",
    };
    format!("kyc run: {}{tail}", parts.join("; "))
}

pub async fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    // Errors only: per-job detail is in the report, and the progress bar needs the terminal.
    telemetry::init(false, "error");
    let input = a
        .csv
        .to_str()
        .context("CSV path is not valid UTF-8")?
        .to_string();
    let images = a
        .images
        .clone()
        .unwrap_or_else(|| a.csv.parent().map(Path::to_path_buf).unwrap_or_default());

    // Materials: the image folder, plus whatever KYC_MATERIAL_SOURCES adds.
    let sources = a.material.sources()?;

    // Real endpoints for vendors with credentials, the simulator for the rest. The first line
    // says which is which, whatever the mix: nobody should believe a simulated answer is real,
    // or call a real (billing) vendor without knowing.
    let mut clients = commands::clients_from_env();
    let real = configured_vendors(&clients);
    let mut simulator = None;
    let mut simulated = Vec::new();
    if clients.huawei.is_none() || clients.alibaba.is_none() || clients.baidu.is_none() {
        let (sim_config, creds) = simulator_config();
        let sim = Simulator::start(sim_config, "127.0.0.1:0")
            .await
            .context("Failed to start the simulator")?;
        simulated = simulated_clients(&mut clients, &sim.base_url(), &creds);
        simulator = Some(sim);
    }
    println!(
        "{}",
        vendors_line(
            &real,
            &simulated,
            simulator.as_ref().map(|s| s.base_url()).as_deref()
        )
    );

    // Keys before the database: the first run creates a key file next to it, and says so.
    let (keys, created) = crate::keys::embedded(&a.database)?;
    if let Some(path) = created {
        println!(
            "kyc run: no data keys configured; created {} (mode 0600) with new keys that seal the names and ID numbers in {}: keep it with the database",
            path.display(),
            a.database
        );
    }
    let store = Store::connect(&a.database, 4)
        .await
        .context("Failed to open the database")?;
    store
        .migrate()
        .await
        .context("Failed to migrate the database")?;
    store
        .seal_legacy_subjects(&keys.data)
        .await
        .context("Failed to seal names and ID numbers stored in clear by an older version")?;
    let broker = Broker::memory();
    let local = ObjectStore::local(&images);
    let served = crate::material_server::start(local.clone())
        .await
        .context("Failed to serve the image folder")?;
    let ctx = Arc::new(Context {
        store: store.clone(),
        objects: local
            .with_local_url_base(served)
            .with_material_sources(sources.clone()),
        clients,
        limiters: Limiters::new(&config::quotas()?),
        retry: RetryPolicy::default(),
        metrics: Default::default(),
        keys: keys.data.clone(),
        // A capped vendor's jobs wait for the next window: this run then waits with them.
        spend: kyc_worker::spend::SpendGuard::new(config::spend_settings()?),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(kyc_worker::run(
        ctx,
        broker.clone(),
        WorkerSettings {
            concurrency: a.concurrency,
            ..WorkerSettings::default()
        },
        async {
            let _ = stop_rx.await;
        },
    ));

    let batch_id = a
        .batch_id
        .clone()
        .unwrap_or_else(|| format!("run-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S")));
    let settings = ProduceSettings {
        batch_id: batch_id.clone(),
        rejects_path: a
            .rejects
            .clone()
            .unwrap_or_else(|| crate::default_rejects_path(&input)),
        input,
        images: None,
        material_sources: sources,
        default_operation: a.operation,
        dry_run: false,
        window: 200,
        encoding: Default::default(),
        max_record_bytes: kyc_producer::DEFAULT_MAX_RECORD_BYTES,
        keys,
        skip_verified_within: None,
    };
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<10} [{bar:40}] {pos}/{len} jobs  {per_sec}  eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message("verifying");
    let produced = kyc_producer::produce(
        &settings,
        None,
        &store,
        &broker,
        &kyc_producer::CancellationToken::new(),
        |s| bar.set_length(s.published + s.skipped),
    )
    .await
    .context("Reading the CSV failed")?;

    // Every published job ends with an outcome (or a dead letter): wait for that.
    let expected = store.published_count(&batch_id).await? as u64;
    bar.set_length(expected);
    loop {
        let done = store.outcome_count(&batch_id).await? as u64;
        let dead = match &broker {
            // Jobs that gave up have an outcome *and* a dead-letter copy: count them once.
            Broker::Memory(m) => m
                .dead_letters()
                .iter()
                .filter(|d| !d.reason.starts_with(kyc_worker::process::GAVE_UP))
                .count() as u64,
            Broker::Amqp(_) => 0,
        };
        bar.set_position(done);
        if done + dead >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_with_message("done");
    let _ = stop_tx.send(());
    worker.await.context("worker task panicked")??;

    print_summary(&store, &batch_id, &produced, &settings.rejects_path).await?;
    // Owner-only (0600): the report names people, even masked.
    let file = kyc_objects::private_file::create(&a.report)
        .with_context(|| format!("Failed to create {}", a.report.display()))?;
    let filter = kyc_store::queries::OutcomeFilter {
        batch_id: Some(batch_id.clone()),
        ..Default::default()
    };
    let n = kyc_report::write_outcomes(
        &store,
        &filter,
        &kyc_report::ReportOptions::default(),
        std::io::BufWriter::new(file),
    )
    .await?;
    println!(
        "report: {} ({n} rows, ID numbers and names masked)",
        a.report.display()
    );
    if let Some(sim) = simulator {
        sim.stop().await;
    }
    store.close().await;
    // A damaged input is never a finished run: what was read is reported, then the run fails.
    if let Some(failure) = &produced.failure {
        eprintln!("error: {failure}; the input was not read to its end");
        return Ok(ExitCode::from(match failure {
            kyc_producer::InputFailure::Io { .. } => crate::commands::EXIT_INPUT_IO,
            _ => crate::commands::EXIT_INPUT_INVALID,
        }));
    }
    // Refused rows are part of a normal run here (they are listed above and in the rejects
    // file); `--fail-on-rejects` makes them an exit code for scripts, like `kyc produce`.
    Ok(if a.fail_on_rejects && produced.rejected > 0 {
        ExitCode::from(crate::EXIT_REJECTS)
    } else {
        ExitCode::SUCCESS
    })
}

async fn print_summary(
    store: &Store,
    batch_id: &str,
    p: &kyc_producer::Summary,
    rejects: &Path,
) -> anyhow::Result<()> {
    println!();
    println!(
        "batch {batch_id}: {} rows read, {} jobs, {} rows rejected",
        p.rows_read, p.published, p.rejected
    );
    if p.rejected > 0 {
        println!("rejected rows and reasons: {}", rejects.display());
    }
    let counts = store.status_counts(batch_id).await?;
    for d in store.cap_deferrals(Some(batch_id)).await? {
        println!(
            "{}: {} jobs deferred by the spend cap (KYC_SPEND_CAPS) to a later window, {} still waiting",
            d.vendor, d.jobs, d.waiting
        );
    }
    let statuses = ["passed", "failed", "not_found", "pending", "error"];
    println!();
    println!(
        "{:<10}{}{:>8}",
        "vendor",
        statuses
            .iter()
            .map(|s| format!("{s:>11}"))
            .collect::<String>(),
        "total"
    );
    let mut vendors: Vec<&String> = counts.iter().map(|(v, _, _)| v).collect();
    vendors.dedup();
    for v in vendors {
        let mut total = 0;
        let cells: String = statuses
            .iter()
            .map(|s| {
                let n = counts
                    .iter()
                    .find(|(cv, cs, _)| cv == v && cs == s)
                    .map_or(0, |(_, _, n)| *n);
                total += n;
                format!("{n:>11}")
            })
            .collect();
        println!("{v:<10}{cells}{total:>8}");
    }
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_names_real_and_simulated_vendors_in_every_mix() {
        let url = Some("http://127.0.0.1:1234");
        assert_eq!(
            vendors_line(&[], &["Huawei", "Alibaba", "Baidu"], url),
            "kyc run: no credentials for Huawei, Alibaba, Baidu; using the built-in vendor \
             simulator at http://127.0.0.1:1234 for them (no real vendor is called)"
        );
        assert_eq!(
            vendors_line(&["Huawei"], &["Alibaba", "Baidu"], url),
            "kyc run: REAL vendors (credentials configured, calls may be billed): Huawei; no \
             credentials for Alibaba, Baidu; using the built-in vendor simulator at \
             http://127.0.0.1:1234 for them"
        );
        assert_eq!(
            vendors_line(&["Huawei", "Alibaba", "Baidu"], &[], None),
            "kyc run: REAL vendors (credentials configured, calls may be billed): Huawei, \
             Alibaba, Baidu (nothing is simulated)"
        );
    }
}
