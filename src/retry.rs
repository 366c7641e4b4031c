//! `kyc retry --batch ID --status error [--reason R]`: a new attempt for the jobs of a batch
//! whose outcome is `error` (a vendor down for longer than the retry budget, an expired
//! credential since fixed).
//!
//! Each job's `error` outcome moves to `outcome_history` (reports then show the newest
//! outcome, once the new attempt decides), its attempt budget starts afresh, and its queue
//! message, as the producer sealed and stored it (`jobs.message_sealed`), is published again
//! with publisher confirms. Jobs decided `passed`, `failed` or `not_found` (or `pending`) are
//! never touched: only `--status error` is accepted, and the store re-checks each job's status
//! in the transaction that reopens it, so nothing decided is billed twice. A retry cut short
//! is completed by running it again. Recorded in `operator_audit`.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;
use kyc_queue::OutMessage;
use kyc_schemas::{JobId, Vendor};
use kyc_store::Reopened;

use crate::{commands, config, Conn};

/// Jobs published per confirmed window.
const WINDOW: usize = 200;

#[derive(Debug, Args)]
pub struct RetryArgs {
    #[command(flatten)]
    conn: Conn,
    /// The batch whose jobs are tried again.
    #[arg(long)]
    batch: String,
    /// Which outcomes get a new attempt: only `error` is accepted.
    #[arg(long)]
    status: String,
    /// Only jobs whose `error` outcome has this reason (`vendor_internal`, `throttled`,
    /// `material_unavailable`…, see docs/outcomes.md).
    #[arg(long)]
    reason: Option<String>,
    /// Who retries, for the audit trail (default: KYC_OPERATOR, else the OS account).
    #[arg(long, env = "KYC_OPERATOR")]
    by: Option<String>,
}

pub async fn run(a: RetryArgs) -> anyhow::Result<ExitCode> {
    commands::init_logs(&a.conn);
    if a.status != "error" {
        bail!(
            "--status {}: only `error` jobs are tried again; a job decided passed, failed or not_found (or pending) is never called again, so nothing is billed twice",
            a.status
        );
    }
    if let Some(r) = &a.reason {
        if kyc_schemas::Reason::parse(r).is_none() {
            bail!("--reason {r:?} is not a reason (see docs/outcomes.md: vendor_internal, throttled, material_unavailable, …)");
        }
    }
    let op = config::operator(a.by.as_deref()).context(
        "cannot tell who is retrying: give --by NAME (or KYC_OPERATOR); it goes to the audit trail",
    )?;
    let store = commands::connect_store(&a.conn).await?;
    let candidates = store
        .retry_candidates(&a.batch, a.reason.as_deref())
        .await
        .context("Failed to read the batch's error outcomes")?;
    let filter = format!(
        "batch={} status=error reason={}",
        a.batch,
        a.reason.as_deref().unwrap_or_default()
    );
    let audit = store
        .start_operator_action("retry", &op.name, op.source, &filter)
        .await
        .context("Failed to record the retry in operator_audit")?;
    let broker = commands::broker(&a.conn, a.conn.topology()).await?;
    broker
        .declare()
        .await
        .context("Failed to declare the queues")?;
    let publisher = broker
        .publisher()
        .await
        .context("Failed to open a publishing channel")?;
    let (mut published, mut no_message, mut decided) = (0u64, 0u64, 0u64);
    for window in candidates.chunks(WINDOW) {
        let mut messages = Vec::with_capacity(window.len());
        let mut ids = Vec::with_capacity(window.len());
        for c in window {
            let Some(message) = &c.message else {
                no_message += 1;
                continue;
            };
            let vendor: Vendor = c
                .vendor
                .parse()
                .with_context(|| format!("job {}: unknown vendor", c.job_id))?;
            let job_id = JobId::from_stored(c.job_id.clone());
            // Reopened before publishing: a worker taking the message at once must not find
            // the old outcome (it would ack the job away without a call).
            match store.reopen_job(&job_id, &audit).await? {
                Reopened::Decided(_) => {
                    decided += 1;
                    continue;
                }
                Reopened::Reopened { .. } => {}
            }
            messages.push(OutMessage {
                vendor,
                message_id: c.job_id.clone(),
                payload: message.clone().into_bytes(),
            });
            ids.push(job_id);
        }
        publisher
            .publish_confirmed(&messages)
            .await
            .context("Failed to publish the jobs again (run kyc retry again: it resumes)")?;
        store.mark_republished(&ids).await?;
        published += ids.len() as u64;
    }
    broker.close().await;
    store
        .finish_operator_action(&audit, candidates.len() as u64, published)
        .await?;
    println!(
        "batch {}: {} jobs with outcome error{}; {} published again with a fresh attempt budget (old outcomes kept in outcome_history; recorded as {}){}{}",
        a.batch,
        candidates.len(),
        a.reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        published,
        op.name,
        if no_message > 0 {
            format!("; {no_message} not retried: no stored message (produced before this version, or purged): produce their rows again as a new batch")
        } else {
            String::new()
        },
        if decided > 0 {
            format!("; {decided} decided meanwhile, left alone")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
