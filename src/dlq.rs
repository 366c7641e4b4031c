//! `kyc dlq list|show|replay|purge`: the dead-letter queue for an operator, without
//! RabbitMQ's own tools and without personal data on the screen.
//!
//! Every command reads the queue in one pass that holds the messages and gives back whatever
//! it did not settle (`kyc_queue::dead_letters`). What is shown comes from the message's
//! clear fields and headers only: job id, batch, row, operation, reason, the job's counters,
//! times. The sealed personal part (name, ID number, mobile, material URIs) is never opened.
//! `replay` and `purge` are recorded in `operator_audit` (who, filter, how many).

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use kyc_queue::dead_letters::{DeadLetter, DeadLetters};
use kyc_queue::Broker;
use kyc_schemas::{Operation, Vendor};
use kyc_store::{Reopened, Store};

use crate::{commands, config, Conn};

/// At most this many dead letters are read in one pass (they are held in memory and
/// unacknowledged on the broker until the pass ends).
const DEFAULT_LIMIT: usize = 10_000;

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    action: DlqAction,
}

/// Which dead letters a command applies to; every given condition must hold.
#[derive(Debug, Clone, Default, Args)]
pub struct DlqFilter {
    /// Only dead letters of this vendor.
    #[arg(long)]
    pub vendor: Option<Vendor>,
    /// Only dead letters whose reason contains this text (any case), e.g. `attempts
    /// exhausted`, `IVS.0101`, `delivery_limit`, `not JSON`.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only dead letters of this batch.
    #[arg(long)]
    pub batch: Option<String>,
    /// Only the dead letters of this job (repeatable).
    #[arg(long = "job")]
    pub jobs: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum DlqAction {
    /// One line per dead letter: job, batch, vendor, operation, when, reason.
    List {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        filter: DlqFilter,
        /// Read at most this many dead letters.
        #[arg(long, default_value_t = DEFAULT_LIMIT)]
        limit: usize,
    },
    /// Everything about one job's dead letter(s) except personal data.
    Show {
        #[command(flatten)]
        conn: Conn,
        /// The job id (the dead letter's message id).
        job_id: String,
    },
    /// Publish matching dead letters to their vendor's work queue with a fresh attempt budget
    /// (confirmed by the broker before each dead letter is removed). A job already decided
    /// `passed`, `failed`, `not_found` or `pending` is not replayed.
    Replay {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        filter: DlqFilter,
        /// Replay every dead letter (required when no filter is given).
        #[arg(long)]
        all: bool,
        /// Who replays, for the audit trail (default: KYC_OPERATOR, else the OS account).
        #[arg(long, env = "KYC_OPERATOR")]
        by: Option<String>,
        #[arg(long, default_value_t = DEFAULT_LIMIT)]
        limit: usize,
    },
    /// Delete matching dead letters for good. Without `--yes` only counts them.
    Purge {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        filter: DlqFilter,
        /// Delete every dead letter (required when no filter is given).
        #[arg(long)]
        all: bool,
        /// Really delete.
        #[arg(long)]
        yes: bool,
        /// Who deletes, for the audit trail (default: KYC_OPERATOR, else the OS account).
        #[arg(long, env = "KYC_OPERATOR")]
        by: Option<String>,
        #[arg(long, default_value_t = DEFAULT_LIMIT)]
        limit: usize,
    },
}

/// What a dead letter says about its job, from clear fields only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The job id, when it is one (32 lowercase hex digits): anything else in a poison
    /// message could be a value, and is not shown.
    pub job_id: Option<String>,
    pub batch_id: Option<String>,
    pub source_row: Option<u64>,
    pub operation: Option<Operation>,
    pub vendor: Option<Vendor>,
    pub schema_version: Option<u64>,
}

/// A job id as this project derives them: 16 bytes in lowercase hex.
fn is_job_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Reads the clear top-level fields of a job message (either version); never the subject,
/// materials or vendor references.
pub fn summarize(dl: &DeadLetter, prefix: &str) -> Summary {
    let value: Option<serde_json::Value> =
        if dl.payload.len() <= kyc_worker::process::MAX_MESSAGE_BYTES {
            serde_json::from_slice(&dl.payload).ok()
        } else {
            None
        };
    let field = |name: &str| value.as_ref().and_then(|v| v.get(name));
    let job_id = field("job_id")
        .and_then(|v| v.as_str())
        .or(dl.message_id.as_deref())
        .filter(|s| is_job_id(s))
        .map(str::to_string);
    let operation = field("operation")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<Operation>().ok());
    // A message the broker dead-lettered says which work queue it died in.
    let work_queue = format!("{prefix}.jobs.");
    let vendor = operation.map(|o| o.vendor()).or_else(|| {
        dl.died_in()
            .and_then(|q| q.strip_prefix(&work_queue))
            .and_then(|v| v.parse().ok())
    });
    Summary {
        job_id,
        batch_id: field("batch_id")
            .and_then(|v| v.as_str())
            .map(kyc_schemas::scrub),
        source_row: field("source_row").and_then(|v| v.as_u64()),
        operation,
        vendor,
        schema_version: field("schema_version").and_then(|v| v.as_u64()),
    }
}

impl DlqFilter {
    fn is_empty(&self) -> bool {
        self.vendor.is_none()
            && self.reason.is_none()
            && self.batch.is_none()
            && self.jobs.is_empty()
    }

    pub fn matches(&self, dl: &DeadLetter, s: &Summary) -> bool {
        self.vendor.is_none_or(|v| s.vendor == Some(v))
            && self
                .batch
                .as_ref()
                .is_none_or(|b| s.batch_id.as_ref() == Some(b))
            && self
                .reason
                .as_ref()
                .is_none_or(|r| dl.reason_text().to_lowercase().contains(&r.to_lowercase()))
            && (self.jobs.is_empty() || s.job_id.as_ref().is_some_and(|j| self.jobs.contains(j)))
    }

    /// The filter in one line, for the audit trail.
    fn describe(&self) -> String {
        format!(
            "vendor={} reason={} batch={} jobs={}",
            self.vendor.map(|v| v.as_str()).unwrap_or_default(),
            self.reason.as_deref().unwrap_or_default(),
            self.batch.as_deref().unwrap_or_default(),
            self.jobs.join(",")
        )
    }
}

fn time_of_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// When it died: the worker's stamp, else the broker's (first death recorded).
fn dead_at(dl: &DeadLetter) -> Option<String> {
    dl.dead_at_ms.map(time_of_ms).or_else(|| {
        dl.deaths
            .iter()
            .filter_map(|d| d.time_s)
            .min()
            .map(|s| time_of_ms(s as i64 * 1000))
    })
}

fn or_dash(s: Option<String>) -> String {
    s.unwrap_or_else(|| "-".into())
}

/// One line of `kyc dlq list`.
pub fn list_line(dl: &DeadLetter, s: &Summary) -> String {
    format!(
        "{:<32}  {:<20}  {:<7}  {:<30}  {:<20}  {}",
        or_dash(s.job_id.clone()),
        or_dash(s.batch_id.clone()),
        or_dash(s.vendor.map(|v| v.to_string())),
        or_dash(s.operation.map(|o| o.to_string())),
        or_dash(dead_at(dl)),
        dl.reason_text()
    )
}

/// `kyc dlq show`: every non-personal fact about one dead letter.
pub fn show_text(dl: &DeadLetter, s: &Summary) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<16} {v}\n"));
    line("job_id", or_dash(s.job_id.clone()));
    line("batch", or_dash(s.batch_id.clone()));
    line("source_row", or_dash(s.source_row.map(|r| r.to_string())));
    line("vendor", or_dash(s.vendor.map(|v| v.to_string())));
    line("operation", or_dash(s.operation.map(|o| o.to_string())));
    line("reason", dl.reason_text());
    // As the message carried them when it died: a worker that gave up states its total
    // of calls in the reason.
    line(
        "counters",
        format!(
            "attempts {}, requeues {}, delay-queue trips {} (message headers)",
            dl.headers.attempts, dl.headers.requeues, dl.headers.deferrals
        ),
    );
    line("dead_at", or_dash(dead_at(dl)));
    for (i, d) in dl.deaths.iter().enumerate() {
        line(
            if i == 0 { "broker deaths" } else { "" },
            format!(
                "{} in {} ({} times){}",
                d.reason,
                d.queue,
                d.count,
                d.time_s
                    .map(|t| format!(", at {}", time_of_ms(t as i64 * 1000)))
                    .unwrap_or_default()
            ),
        );
    }
    if let Some(n) = dl.delivery_count {
        line(
            "read before",
            format!("{n} times from the dead-letter queue (kyc dlq reads count)"),
        );
    }
    line(
        "message",
        match s.schema_version {
            Some(2) => format!(
                "version 2, {} bytes; name, ID number, mobile and materials are sealed and not shown",
                dl.payload.len()
            ),
            Some(1) => format!(
                "version 1 (personal fields in clear, not shown), {} bytes",
                dl.payload.len()
            ),
            _ => format!("not a readable job message, {} bytes (not shown)", dl.payload.len()),
        },
    );
    out
}

pub async fn run(a: DlqArgs) -> anyhow::Result<ExitCode> {
    match &a.action {
        DlqAction::List { conn, .. }
        | DlqAction::Show { conn, .. }
        | DlqAction::Replay { conn, .. }
        | DlqAction::Purge { conn, .. } => commands::init_logs(conn),
    }
    match a.action {
        DlqAction::List {
            conn,
            filter,
            limit,
        } => {
            let (broker, mut reader) = open(&conn).await?;
            let read = reader.read(limit).await;
            reader.release().await;
            broker.close().await;
            let all = read.context("Failed to read the dead-letter queue")?;
            let mut shown = 0;
            println!(
                "{:<32}  {:<20}  {:<7}  {:<30}  {:<20}  reason",
                "job_id", "batch", "vendor", "operation", "dead_at"
            );
            for dl in &all {
                let s = summarize(dl, &conn.queue_prefix);
                if filter.matches(dl, &s) {
                    println!("{}", list_line(dl, &s));
                    shown += 1;
                }
            }
            eprintln!(
                "{shown} of {} dead letters in {} match{}",
                all.len(),
                conn.topology().dead_letter_queue(),
                if all.len() >= limit {
                    format!(" (only the first {limit} were read; --limit)")
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Show { conn, job_id } => {
            let (broker, mut reader) = open(&conn).await?;
            let read = reader.read(DEFAULT_LIMIT).await;
            reader.release().await;
            broker.close().await;
            let all = read.context("Failed to read the dead-letter queue")?;
            let mut found = 0;
            for dl in &all {
                let s = summarize(dl, &conn.queue_prefix);
                if s.job_id.as_deref() == Some(job_id.as_str()) {
                    if found > 0 {
                        println!();
                    }
                    print!("{}", show_text(dl, &s));
                    found += 1;
                }
            }
            if found == 0 {
                bail!(
                    "no dead letter of job {job_id} in {}",
                    conn.topology().dead_letter_queue()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Replay {
            conn,
            filter,
            all,
            by,
            limit,
        } => {
            if filter.is_empty() && !all {
                bail!(
                    "kyc dlq replay needs a filter (--vendor, --reason, --batch, --job) or --all"
                );
            }
            let store = commands::connect_store(&conn).await?;
            let (name, source) = who(by.as_deref())?;
            let audit = store
                .start_operator_action("dlq.replay", &name, source, &filter.describe())
                .await
                .context("Failed to record the replay in operator_audit")?;
            let (broker, mut reader) = open(&conn).await?;
            let result = replay(
                &store,
                &mut reader,
                &filter,
                &conn.queue_prefix,
                limit,
                &audit,
            )
            .await;
            reader.release().await;
            broker.close().await;
            let counts = result?;
            store
                .finish_operator_action(&audit, counts.matched, counts.done)
                .await?;
            println!(
                "replayed {} of {} matching dead letters (fresh attempt budget; recorded as {name}){}{}",
                counts.done,
                counts.matched,
                if counts.decided > 0 {
                    format!("; {} kept: their job is already decided (purge them)", counts.decided)
                } else {
                    String::new()
                },
                if counts.unreadable > 0 {
                    format!(
                        "; {} kept: not a readable job message, nothing to replay (purge them)",
                        counts.unreadable
                    )
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Purge {
            conn,
            filter,
            all,
            yes,
            by,
            limit,
        } => {
            if filter.is_empty() && !all {
                bail!("kyc dlq purge needs a filter (--vendor, --reason, --batch, --job) or --all");
            }
            let store = commands::connect_store(&conn).await?;
            let (name, source) = who(by.as_deref())?;
            let audit = if yes {
                Some(
                    store
                        .start_operator_action("dlq.purge", &name, source, &filter.describe())
                        .await
                        .context("Failed to record the purge in operator_audit")?,
                )
            } else {
                None
            };
            let (broker, mut reader) = open(&conn).await?;
            let result = purge(&mut reader, &filter, &conn.queue_prefix, limit, yes).await;
            reader.release().await;
            broker.close().await;
            let counts = result?;
            match audit {
                Some(audit) => {
                    store
                        .finish_operator_action(&audit, counts.matched, counts.done)
                        .await?;
                    println!("deleted {} dead letters (recorded as {name})", counts.done);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    println!(
                        "{} dead letters match; nothing deleted: add --yes to delete them",
                        counts.matched
                    );
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}

/// The operator recorded in the audit trail: `--by` / `KYC_OPERATOR`, else the OS account.
fn who(by: Option<&str>) -> anyhow::Result<(String, kyc_store::audit::OperatorSource)> {
    let op = config::operator(by).context(
        "cannot tell who is doing this: give --by NAME (or KYC_OPERATOR); it goes to the audit trail",
    )?;
    Ok((op.name, op.source))
}

async fn open(conn: &Conn) -> anyhow::Result<(Broker, DeadLetters)> {
    let broker = commands::broker(conn, conn.topology()).await?;
    // Idempotent, as for the producer and workers: an environment where nothing was ever
    // dead-lettered then has an empty queue to read rather than a missing one.
    broker
        .declare()
        .await
        .context("Failed to declare the queues")?;
    let Broker::Amqp(amqp) = &broker else {
        bail!("kyc dlq needs RabbitMQ (KYC_AMQP_URL)");
    };
    let reader = amqp
        .dead_letters()
        .await
        .context("Failed to open the dead-letter queue")?;
    Ok((broker, reader))
}

#[derive(Debug, Default)]
struct Counts {
    matched: u64,
    done: u64,
    decided: u64,
    unreadable: u64,
}

/// The dead letters among the first `limit` that `filter` matches, each with its summary.
async fn read_matching(
    reader: &mut DeadLetters,
    filter: &DlqFilter,
    prefix: &str,
    limit: usize,
) -> anyhow::Result<Vec<(DeadLetter, Summary)>> {
    let all = reader
        .read(limit)
        .await
        .context("Failed to read the dead-letter queue")?;
    Ok(all
        .into_iter()
        .map(|dl| {
            let s = summarize(&dl, prefix);
            (dl, s)
        })
        .filter(|(dl, s)| filter.matches(dl, s))
        .collect())
}

async fn replay(
    store: &Store,
    reader: &mut DeadLetters,
    filter: &DlqFilter,
    prefix: &str,
    limit: usize,
    audit: &str,
) -> anyhow::Result<Counts> {
    let mut c = Counts::default();
    for (dl, s) in &read_matching(reader, filter, prefix, limit).await? {
        c.matched += 1;
        let (Some(job_id), Some(vendor)) = (s.job_id.clone(), s.vendor) else {
            c.unreadable += 1;
            continue;
        };
        let job_id = kyc_schemas::JobId::from_stored(job_id);
        // The job's `error` outcome (if any) becomes history and its budget starts afresh
        // *before* the message goes out: a worker taking it at once must find the job open.
        match store.reopen_job(&job_id, audit).await? {
            Reopened::Decided(_) => {
                c.decided += 1;
                continue;
            }
            Reopened::Reopened { .. } => {}
        }
        reader
            .replay(dl, vendor)
            .await
            .with_context(|| format!("Failed to replay job {job_id} (its dead letter is kept)"))?;
        store
            .mark_republished(std::slice::from_ref(&job_id))
            .await?;
        c.done += 1;
    }
    Ok(c)
}

async fn purge(
    reader: &mut DeadLetters,
    filter: &DlqFilter,
    prefix: &str,
    limit: usize,
    delete: bool,
) -> anyhow::Result<Counts> {
    let mut c = Counts::default();
    for (dl, _) in &read_matching(reader, filter, prefix, limit).await? {
        c.matched += 1;
        if delete {
            reader.remove(dl).await?;
            c.done += 1;
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_shown_only_when_they_look_like_ours() {
        assert!(is_job_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_job_id("11010519491231002X"));
        assert!(!is_job_id("张三"));
        assert!(!is_job_id("0123456789ABCDEF0123456789ABCDEF"));
    }
}
