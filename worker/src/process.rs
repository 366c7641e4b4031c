//! One delivery, start to finish: decode the job (poison → dead letter), skip it if it
//! already has an outcome, fetch its materials, call the vendor, record the outcome. The
//! result says what to do with the message; the caller acks only after the commit.

use kyc_queue::JobHeaders;
use kyc_schemas::{
    DataKeys, Job, JobId, JobMessage, Outcome, Reason, Status, CLEAR_JOB_SCHEMA_VERSION,
    JOB_SCHEMA_VERSION, OUTCOME_SCHEMA_VERSION,
};
use kyc_store::JobStart;
use tracing::Instrument;

use crate::call::{CallError, Caller};
use crate::vendors::{VendorError, Verdict};
use crate::{materials, Context};

/// Larger messages cannot be jobs (materials travel as URIs); refusing them early keeps a
/// stray upload from being parsed at all.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// How the dead-letter reason of a job that gave up (outcome recorded) starts.
pub const GAVE_UP: &str = "attempts exhausted";

/// What to do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Effects committed (or already there): ack. Carries the outcome's status if this
    /// delivery wrote it.
    Ack(Option<Status>),
    /// Nothing decided, try again later (our database or storage failed). `attempts`: the
    /// job's vendor calls so far, for the message's header.
    Requeue { reason: String, attempts: u32 },
    /// The message can never be processed: dead-letter it with this reason.
    DeadLetter(String),
    /// Retry later, out of the worker: park the message in a delay queue for this long.
    Delay {
        wait: std::time::Duration,
        attempts: u32,
    },
    /// Another live delivery holds the job's claim: park this one in a delay queue for this
    /// long (not a retry: the job's counters stay), instead of holding a worker slot.
    Park(std::time::Duration),
    /// The job gave up: its outcome (`error`, attempts spent) is committed together with a
    /// "copy owed" mark. Publish a copy to the dead-letter queue with this reason so an
    /// operator sees what gave up, clear the mark once the broker confirmed it, then ack.
    /// A later delivery of the job finds the mark and comes here again.
    /// `attempts`: the calls the job spent, which the copy's attempts header carries (the
    /// delivered message's count is what earlier deliveries spent, often 0).
    DeadLetterAfterOutcome {
        job_id: JobId,
        reason: String,
        attempts: u32,
    },
    /// The vendor's spend cap for this window is reached: park the job in a delay queue for
    /// this long (the next window, or a recheck), its attempt and retry budgets untouched.
    CapDeferred(std::time::Duration),
}

/// Decodes a message into a job, or says why it is poison. The reason never quotes message
/// content (it could be a name or an ID number), only positions, kinds and key ids.
/// Version 2 messages are opened with the data keys; version 1 (personal fields in clear,
/// written before sealing) is still read so that a queue filled before an upgrade drains.
pub fn decode(payload: &[u8], keys: &DataKeys) -> Result<Job, String> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "oversized message: {} bytes (limit {MAX_MESSAGE_BYTES})",
            payload.len()
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| {
        format!(
            "not JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let invalid = |e: serde_json::Error| format!("invalid job: {}", scrub(&e.to_string()));
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(JOB_SCHEMA_VERSION) => {
            let message: JobMessage = serde_json::from_value(value).map_err(invalid)?;
            let job_id = message.job_id.clone();
            message
                .open(keys)
                .map_err(|e| format!("job {job_id}: {e}"))
        }
        Some(v) if v == u64::from(CLEAR_JOB_SCHEMA_VERSION) => {
            let job: Job = serde_json::from_value(value).map_err(invalid)?;
            tracing::warn!(job_id = %job.job_id, "version 1 job message (personal fields in clear, from a producer before sealing)");
            Ok(job)
        }
        Some(v) => Err(format!(
            "unsupported schema_version {v} (this worker reads {CLEAR_JOB_SCHEMA_VERSION} and {JOB_SCHEMA_VERSION})"
        )),
        None => Err("missing schema_version".into()),
    }
}

/// Removes quoted fragments from a serde message: they may be field values. Escaped quotes
/// inside a quoted value (`"a\"b"`) do not end it.
fn scrub(msg: &str) -> String {
    let mut out = String::new();
    let mut quoted: Option<char> = None;
    let mut escaped = false;
    for c in msg.chars() {
        match quoted {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quoted = None,
            Some(_) => {}
            None if c == '"' || c == '`' => {
                out.push('…');
                quoted = Some(c);
            }
            None => out.push(c),
        }
    }
    out
}

/// `headers`: the job's own counters (calls made, requeues, trips through a delay queue).
pub async fn process(ctx: &Context, payload: &[u8], headers: JobHeaders) -> Disposition {
    let job = match decode(payload, &ctx.keys) {
        Ok(j) => j,
        Err(reason) => return Disposition::DeadLetter(reason),
    };
    let span = tracing::info_span!("job", job_id = %job.job_id, batch_id = %job.batch_id, operation = %job.operation);
    process_job(ctx, &job, headers).instrument(span).await
}

/// How long a duplicate delivery of a job that another live delivery holds is parked before
/// it looks again (the smallest delay-queue bucket).
pub const PARK: std::time::Duration = std::time::Duration::from_secs(5);

async fn process_job(ctx: &Context, job: &Job, headers: JobHeaders) -> Disposition {
    let requeue = |reason: String| Disposition::Requeue {
        reason,
        attempts: headers.attempts,
    };
    // One live delivery per job. A duplicate message of a job being worked on is parked in
    // a delay queue (it holds no worker slot meanwhile) and looks again later: by then the
    // job is decided (ack, or settle a copy it owes), or its claim has expired because its
    // worker died (take over).
    let owner = uuid::Uuid::new_v4().simple().to_string();
    // Claim, outcome and calls left open, read in one transaction.
    let (unknown, calls) = match ctx
        .store
        .start_job(&job.job_id, &owner, crate::call::CLAIM_LEASE_MS)
        .await
    {
        Ok(JobStart::Claimed { unknown, calls }) => (unknown, calls),
        Ok(JobStart::Decided {
            owed,
            claimed,
            calls,
        }) => {
            tracing::info!("outcome already recorded; no call for this delivery");
            if claimed {
                let _ = ctx.store.release_claim(&job.job_id, &owner).await;
            }
            return settle_decided(job, owed, calls);
        }
        Ok(JobStart::Held) => return Disposition::Park(PARK),
        Err(e) => return requeue(format!("database: {e}")),
    };
    if unknown > 0 {
        ctx.metrics.unknown_calls(job.vendor().as_str(), unknown);
        tracing::warn!(
            unknown,
            "calls left open by an earlier delivery marked unknown"
        );
    }
    // The claim is a short lease, renewed while this delivery works on the job; it lapses
    // within a lease of the worker dying (SIGKILL, OOM), so the job's redelivery can take
    // over in seconds. The heartbeat runs in this task: it stops with the job, whichever way.
    let disposition = tokio::select! {
        d = decide(ctx, job, headers, &owner, calls) => d,
        never = heartbeat(ctx, &job.job_id, &owner) => match never {},
    };
    // A job handed back releases its claim, so that its next delivery need not wait out the
    // lease. A decided job's claim went with its outcome (same transaction), and a lost
    // claim is another delivery's.
    if matches!(
        disposition,
        Disposition::Requeue { .. } | Disposition::Delay { .. } | Disposition::CapDeferred(_)
    ) {
        let _ = ctx.store.release_claim(&job.job_id, &owner).await;
    }
    disposition
}

/// A delivery of a job that already has an outcome: ack, or settle a dead-letter copy the
/// job still owes (an earlier delivery recorded the outcome, then lost the copy).
fn settle_decided(job: &Job, owed: Option<String>, calls: u32) -> Disposition {
    match owed {
        None => Disposition::Ack(None),
        Some(reason) => {
            tracing::warn!("outcome recorded, dead-letter copy still owed; settling it now");
            Disposition::DeadLetterAfterOutcome {
                job_id: job.job_id.clone(),
                reason,
                attempts: calls,
            }
        }
    }
}

/// Renews the job's claim every [`crate::call::CLAIM_RENEW_EVERY`] until dropped. A failed
/// renewal (the database away) is tried again at the next beat; a claim another delivery took
/// over is noticed by the [`Caller`] before its next call.
async fn heartbeat(
    ctx: &Context,
    job_id: &kyc_schemas::JobId,
    owner: &str,
) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(crate::call::CLAIM_RENEW_EVERY).await;
        match ctx
            .store
            .claim_job(job_id, owner, crate::call::CLAIM_LEASE_MS)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!("the job's claim was taken over by another delivery"),
            Err(e) => tracing::warn!(error = %e, "could not renew the job's claim; trying again"),
        }
    }
}

async fn decide(
    ctx: &Context,
    job: &Job,
    headers: JobHeaders,
    owner: &str,
    calls: u32,
) -> Disposition {
    let requeue = |reason: String, attempts: u32| Disposition::Requeue { reason, attempts };
    // The attempt budget is the job's: the count its message carries, or the ledger's when
    // that is higher (a worker killed mid-job could not update the message).
    let prior = calls.max(headers.attempts);
    let can_defer = headers.deferrals < ctx.retry.max_deferrals;
    let mut caller = Caller::new(ctx, &job.job_id, owner, prior, can_defer);

    // Alibaba downloads remote images itself (presigned URLs): only local files are read here.
    let remote_by_url = job.vendor() == kyc_schemas::Vendor::Alibaba;
    let needed = crate::vendors::materials_needed(job);
    let mut verdict =
        match materials::load(&ctx.objects, &job.materials, needed, remote_by_url).await {
            Err(e) if e.source.is_transient() && headers.requeues < MAX_MATERIAL_REQUEUES => {
                // Field name only: a URI can name the person or carry a signed token.
                return requeue(
                    format!("material {}: storage temporarily unavailable", e.field),
                    prior,
                );
            }
            Err(e) if e.source.is_not_allowed() => {
                tracing::warn!(field = e.field, "material not allowed");
                Err(VendorError::Permanent {
                    code: "material_not_allowed".into(),
                    message: e.to_string(),
                    reason: Reason::MaterialNotAllowed,
                })
            }
            // Not found, refused, too large, or transient for too long: no retry helps now.
            Err(e) => {
                tracing::warn!(field = e.field, "material unavailable");
                Err(VendorError::Permanent {
                    code: "material_unavailable".into(),
                    message: e.to_string(),
                    reason: Reason::MaterialUnavailable,
                })
            }
            Ok(loaded) => match call_vendor(ctx, job, &loaded, &mut caller).await {
                Ok(v) => Ok(v),
                // A lost answer the client could not ask about is the job's last word, as any
                // other error.
                Err(CallError::Vendor(e) | CallError::AnswerLost(e)) => Err(e),
                Err(CallError::Store(e)) => {
                    return requeue(format!("database: {e}"), caller.attempts())
                }
                // Another delivery owns the job now and will decide it.
                Err(CallError::ClaimLost) => return Disposition::Ack(None),
                Err(CallError::OverCap(over)) => return cap_deferred(ctx, job, over).await,
                Err(CallError::Defer(delay, e)) => {
                    tracing::info!(
                        code = e.code(),
                        delay_ms = delay.as_millis() as u64,
                        deferrals = headers.deferrals,
                        "retry deferred to the delay queue"
                    );
                    return Disposition::Delay {
                        wait: delay,
                        attempts: caller.attempts(),
                    };
                }
            },
        };
    // Attempts spent on a retryable error: the outcome says `error`, and a copy of the job goes
    // to the dead-letter queue so that someone looks at what gave up. The copy is owed from
    // the moment the outcome commits (same transaction) until the broker confirms it.
    let gave_up = match &verdict {
        Err(e @ (VendorError::Throttled { .. } | VendorError::Transient { .. })) => Some(format!(
            "{GAVE_UP} after {} calls; last vendor code {}",
            caller.attempts(),
            e.code()
        )),
        _ => None,
    };
    let charges = verdict
        .as_mut()
        .map(|v| std::mem::take(&mut v.charges))
        .unwrap_or_default();
    let outcome = outcome_of(job, &caller, verdict);
    let status = outcome.status;
    let attempts = caller.attempts();
    match caller.finish(&outcome, &charges, gave_up.as_deref()).await {
        Ok(true) => {
            ctx.metrics.job_finished(
                job.vendor().as_str(),
                job.operation.as_str(),
                status.as_str(),
            );
            tracing::info!(
                status = status.as_str(),
                reason = outcome.reason.as_str(),
                attempts = outcome.attempts,
                "outcome recorded"
            );
            match gave_up {
                Some(reason) => Disposition::DeadLetterAfterOutcome {
                    job_id: job.job_id.clone(),
                    reason,
                    attempts,
                },
                None => Disposition::Ack(Some(status)),
            }
        }
        // Another delivery recorded the outcome first; whatever it owes, it settles.
        Ok(false) => Disposition::Ack(None),
        Err(e) => requeue(format!("database: {e}"), attempts),
    }
}

/// A job whose vendor's spend cap is reached: counted (metrics, and one row per job in the
/// database for `kyc status` and the run summary), then parked until the next window.
async fn cap_deferred(ctx: &Context, job: &Job, over: crate::spend::OverCap) -> Disposition {
    let vendor = over.vendor.as_str();
    ctx.metrics.cap_deferral(vendor);
    if let Err(e) = ctx
        .store
        .record_cap_deferral(job.job_id.as_str(), &job.batch_id, vendor)
        .await
    {
        // Only the count is lost; the job is deferred all the same.
        tracing::warn!(error = %e, "could not record the spend-cap deferral");
    }
    tracing::info!(
        vendor,
        wait_s = over.wait.as_secs(),
        "spend cap reached; job deferred to the next window"
    );
    Disposition::CapDeferred(over.wait)
}

/// A material whose storage keeps failing transiently is handed back this many times (the
/// count travels in the message), then the job ends `error` / `material_unavailable`.
const MAX_MATERIAL_REQUEUES: u32 = 5;

async fn call_vendor(
    ctx: &Context,
    job: &Job,
    loaded: &materials::Loaded,
    caller: &mut Caller<'_>,
) -> Result<Verdict, CallError> {
    let no_client = || {
        CallError::Vendor(VendorError::Permanent {
            code: "not_configured".into(),
            message: format!("no credentials configured for vendor {}", job.vendor()),
            reason: Reason::AuthFailed,
        })
    };
    let clients = &ctx.clients;
    match job.vendor() {
        kyc_schemas::Vendor::Huawei => {
            let client = clients.huawei.as_ref().ok_or_else(no_client)?;
            client.run(job, loaded, caller).await
        }
        kyc_schemas::Vendor::Alibaba => {
            let client = clients.alibaba.as_ref().ok_or_else(no_client)?;
            client.run(job, loaded, &ctx.objects, caller).await
        }
        kyc_schemas::Vendor::Baidu => {
            let client = clients.baidu.as_ref().ok_or_else(no_client)?;
            client.run(job, loaded, caller).await
        }
    }
}

fn outcome_of(job: &Job, caller: &Caller<'_>, verdict: Result<Verdict, VendorError>) -> Outcome {
    let last = caller.last();
    let base = |status, reason| Outcome {
        schema_version: OUTCOME_SCHEMA_VERSION,
        job_id: job.job_id.clone(),
        batch_id: job.batch_id.clone(),
        vendor: job.vendor(),
        operation: job.operation,
        status,
        reason,
        vendor_code: None,
        vendor_message: None,
        similarity: None,
        liveness_score: None,
        vendor_request_id: last.request_id.clone(),
        vendor_ref: None,
        attempts: caller.attempts(),
        latency_ms: last.latency.as_millis() as u64,
        billed: last.billable,
        completed_at: chrono::Utc::now(),
    };
    match verdict {
        Ok(v) => Outcome {
            vendor_code: v.vendor_code,
            // Vendors may echo what they were sent: stored only scrubbed.
            vendor_message: v.vendor_message.as_deref().map(kyc_schemas::scrub),
            similarity: v.similarity,
            liveness_score: v.liveness_score,
            vendor_ref: v.vendor_ref,
            ..base(v.status, v.reason)
        },
        Err(e) => {
            let message = match &e {
                VendorError::Transient { message, .. } | VendorError::Permanent { message, .. } => {
                    Some(kyc_schemas::scrub(message))
                }
                _ => None,
            };
            Outcome {
                vendor_code: Some(e.code().to_string()),
                vendor_message: message,
                ..base(Status::Error, e.final_reason())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poison_messages_are_named_without_their_content() {
        let keys = DataKeys::generate("k1").unwrap();
        let decode = |b: &[u8]| decode(b, &keys);
        assert!(decode(b"not json").unwrap_err().starts_with("not JSON"));
        assert_eq!(decode(br#"{"a":1}"#).unwrap_err(), "missing schema_version");
        assert!(decode(br#"{"schema_version":99}"#)
            .unwrap_err()
            .contains("unsupported schema_version 99"));
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(decode(&big).unwrap_err().starts_with("oversized"));
        let bad = br#"{"schema_version":1,"job_id":"j","batch_id":"b","source_row":2,"operation":"huawei.standard","subject":{"name":"Zhang San","id_number":"110105194912310021"}}"#;
        let reason = decode(bad).unwrap_err();
        assert!(reason.starts_with("invalid job"), "{reason}");
        assert!(
            !reason.contains("110105194912310021") && !reason.contains("Zhang"),
            "{reason}"
        );
    }

    fn sample_job() -> Job {
        Job {
            schema_version: JOB_SCHEMA_VERSION,
            job_id: kyc_schemas::JobId::from_stored("job-1"),
            batch_id: "b".into(),
            source_row: 2,
            customer_ref: None,
            operation: kyc_schemas::Operation::HuaweiIdcardExtension,
            subject: kyc_schemas::Subject {
                name: Some(kyc_schemas::PersonName::parse("张三").unwrap()),
                id_number: Some(kyc_schemas::IdNumber::parse("11010519491231002X").unwrap()),
                ..Default::default()
            },
            materials: Default::default(),
            vendor_refs: Default::default(),
        }
    }

    #[test]
    fn sealed_messages_open_and_clear_version_1_messages_are_still_read() {
        let keys = DataKeys::generate("k1").unwrap();
        let job = sample_job();
        let sealed = JobMessage::seal(&job, &keys).to_bytes();
        assert_eq!(decode(&sealed, &keys).unwrap(), job);
        let mut v1 = job.clone();
        v1.schema_version = CLEAR_JOB_SCHEMA_VERSION;
        let clear = serde_json::to_vec(&v1).unwrap();
        assert_eq!(decode(&clear, &keys).unwrap(), v1);
    }

    #[test]
    fn a_message_sealed_with_an_unknown_key_is_poison_naming_the_key_not_the_data() {
        let sealed = JobMessage::seal(&sample_job(), &DataKeys::generate("retired").unwrap());
        let reason = decode(&sealed.to_bytes(), &DataKeys::generate("k2").unwrap()).unwrap_err();
        assert!(
            reason.contains("job-1") && reason.contains("\"retired\""),
            "{reason}"
        );
        assert!(
            !reason.contains("张三") && !reason.contains("002X"),
            "{reason}"
        );
    }

    #[test]
    fn scrub_keeps_escaped_quotes_inside_the_value() {
        assert_eq!(
            scrub(r#"invalid value: string "a\"13800138000", expected x"#),
            "invalid value: string …, expected x"
        );
    }

    #[test]
    fn scrub_removes_quoted_values() {
        assert_eq!(
            scrub(r#"invalid type: string "张三", expected u32"#),
            "invalid type: string …, expected u32"
        );
    }
}
