//! `kyc`: bulk identity re-verification against Chinese KYC vendors.
//!
//! This file only parses arguments and calls the stage asked for; each stage lives in its
//! own crate (producer, worker, report, simulator) and `embedded` wires them in one process.

mod bench;
mod commands;
mod config;
mod dlq;
mod doctor;
mod embedded;
mod health;
mod keys;
mod material_server;
#[cfg(test)]
mod monitoring;
mod procstat;
mod retry;
mod status;
mod telemetry;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kyc",
    version,
    about = "Bulk KYC re-verification against Alibaba Cloud, Baidu and Huawei Cloud"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Connections shared by the server-mode commands.
#[derive(Args, Clone)]
pub struct Conn {
    /// Database URL: postgres://… in production, sqlite:… for a local file.
    #[arg(
        long = "database",
        env = "KYC_DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://kyc.db"
    )]
    pub database: String,
    /// RabbitMQ URL.
    #[arg(
        long = "amqp",
        env = "KYC_AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp: String,
    /// Prefix of queue names (`<prefix>.jobs.<vendor>`), to share one broker between environments.
    #[arg(long, env = "KYC_QUEUE_PREFIX", default_value = "kyc")]
    pub queue_prefix: String,
    /// CA certificate file (PEM) trusted for an amqps:// broker, besides the system's roots.
    #[arg(long, env = "KYC_AMQP_CA_FILE")]
    pub amqp_ca_file: Option<PathBuf>,
    /// S3-compatible endpoint (MinIO, s3s…); unset or empty for AWS S3 itself.
    #[arg(long, env = "KYC_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// CA certificate file (PEM) trusted for an https:// S3 endpoint, besides the system's roots.
    #[arg(long, env = "KYC_S3_CA_FILE")]
    pub s3_ca_file: Option<PathBuf>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "KYC_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// How long the broker keeps dead letters (`14d`, `36h`…). Part of the dead-letter
    /// queue's declaration: changing it means re-creating that queue (see README).
    #[arg(long, env = "KYC_DEAD_LETTER_TTL", default_value = "14d", value_parser = config::parse_duration)]
    pub dead_letter_ttl: std::time::Duration,
    /// How long to wait for the database to accept a connection, and for a free pooled one.
    #[arg(long, env = "KYC_DATABASE_TIMEOUT", default_value = "10s", value_parser = config::parse_duration)]
    pub database_timeout: std::time::Duration,
    /// Longest a single SQL statement may run or wait for a lock (PostgreSQL
    /// statement_timeout, SQLite busy_timeout).
    #[arg(long, env = "KYC_STATEMENT_TIMEOUT", default_value = "60s", value_parser = config::parse_duration)]
    pub statement_timeout: std::time::Duration,
    /// How long to wait for RabbitMQ: connecting, and each publish until its confirm.
    #[arg(long, env = "KYC_AMQP_TIMEOUT", default_value = "30s", value_parser = config::parse_duration)]
    pub amqp_timeout: std::time::Duration,
    /// How long to wait for S3 (and material downloads) to answer, and a streamed body for
    /// its next bytes.
    #[arg(long, env = "KYC_S3_TIMEOUT", default_value = "30s", value_parser = config::parse_duration)]
    pub s3_timeout: std::time::Duration,
}

impl Conn {
    /// The broker's queue names and arguments for this configuration.
    pub fn topology(&self) -> kyc_queue::Topology {
        kyc_queue::Topology::new(&self.queue_prefix).with_dead_letter_ttl(self.dead_letter_ttl)
    }
}

/// The URLs carry passwords: `Debug` shows them without.
impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("database", &kyc_schemas::redact_url(&self.database))
            .field("amqp", &kyc_schemas::redact_url(&self.amqp))
            .field("queue_prefix", &self.queue_prefix)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("log_format", &self.log_format)
            .field("database_timeout", &self.database_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("amqp_timeout", &self.amqp_timeout)
            .field("s3_timeout", &self.s3_timeout)
            .finish()
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a whole batch in one process: in-process queue, SQLite, local images, and the
    /// built-in vendor simulator for vendors without credentials. Writes a CSV report.
    Run(embedded::RunArgs),
    /// Read a CSV (file or s3://), validate each row, publish jobs to RabbitMQ.
    Produce(commands::ProduceArgs),
    /// Consume jobs from RabbitMQ, call the vendors, record outcomes and billing.
    Work(commands::WorkArgs),
    /// Write CSV reports from the database.
    Report(commands::ReportArgs),
    /// Serve the vendor simulator (all vendors on one port).
    Simulate(commands::SimulateArgs),
    /// Apply database migrations (and seal names and ID numbers older versions stored in
    /// clear, when the data keys are configured).
    Migrate(commands::MigrateArgs),
    /// Remove personal data and raw vendor messages past the retention period; keeps what
    /// billing and audit need.
    Purge(commands::PurgeArgs),
    /// Benchmarks: figures and a last-line JSON, compared with bench/baseline.json.
    Bench(bench::BenchArgs),
    /// Pre-flight check: database and migrations, broker queues, material sources, vendor
    /// credentials (calls that are not billed), clock skew, quotas. Exit 0 only if all pass.
    Doctor(doctor::DoctorArgs),
    /// Where each batch stands: counts, outcomes, unknown calls, throughput, ETA, queues.
    Status(status::StatusArgs),
    /// The dead-letter queue: list, show (no personal data), replay, purge.
    Dlq(dlq::DlqArgs),
    /// Give the jobs of a batch whose outcome is `error` a new attempt.
    Retry(retry::RetryArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    telemetry::install_panic_hook();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => embedded::run(a).await,
        Command::Produce(a) => commands::produce(a).await,
        Command::Work(a) => commands::work(a).await,
        Command::Report(a) => commands::report(a).await,
        Command::Simulate(a) => commands::simulate(a).await,
        Command::Migrate(a) => commands::migrate(a).await,
        Command::Purge(a) => commands::purge(a).await,
        Command::Bench(a) => bench::run(a).await,
        Command::Doctor(a) => doctor::run(a).await,
        Command::Status(a) => status::run(a).await,
        Command::Dlq(a) => dlq::run(a).await,
        Command::Retry(a) => retry::run(a).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Exit code when rows were refused (the run itself succeeded).
pub const EXIT_REJECTS: u8 = 3;

pub fn default_rejects_path(input: &str) -> PathBuf {
    let name = input.rsplit('/').next().unwrap_or("input");
    let stem = name.strip_suffix(".csv").unwrap_or(name);
    PathBuf::from(format!("{stem}.rejects.csv"))
}
