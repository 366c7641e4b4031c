//! The writes every job makes — its claim, its ledger rows opened and completed, its outcome,
//! its claim released — as data rather than code, so that a group commit (see `group`) runs
//! each kind once for all the jobs in the group: one multi-row statement instead of one
//! statement per job.
//!
//! Why: group commit made commits cheap (one per several jobs), but each job still sent about
//! six statements, each a round trip and an executor start-up in a PostgreSQL backend; those
//! were most of the database's CPU per job (`kyc bench throughput`).
//!
//! What keeps this equal to running the writes one after the other: a group holds at most one
//! of these writes per job (`group` holds a second back for the next group), and every
//! statement here touches only its own job's rows. Writes on different jobs commute, so the
//! phases below (claims, then what a delivery finds, then ledger rows, outcomes, releases)
//! give the result of some order of the writes one by one: the one the phases name. The rows
//! every job shares (billing and charge counters) are moved once at the end, in key order
//! (`group::Effects`). Rows are given to each statement in job order; two replicas' groups
//! working on the same jobs (a burst of redeliveries) can still lock one job's rows in one
//! phase and another's in a later one, in opposite orders: PostgreSQL then aborts one group
//! (a deadlock is a statement error) and its writes run again one by one.
//!
//! Why two statements to start a job and not one: the claim may wait for another delivery's
//! transaction; in PostgreSQL a statement sees the database as of its start, so a lookup in
//! the same statement could miss an outcome that transaction committed and call the vendor a
//! second time. The lookup is a statement of its own, after the claim, and sees it.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use kyc_schemas::Outcome;
use sqlx::{AnyConnection, Row as _};
use tokio::sync::oneshot;

use crate::group::Effects;
use crate::ledger::{insert_charges, ChargeEntry, JobStart, OpenCall};
use crate::{now_ms, placeholders, CallRecord, Result, StoreError};

/// The most rows one statement takes. Groups are cut into statements of 64, 32, … 1 rows, so
/// that a handful of statement texts per kind, each prepared once per connection, serve every
/// group size (sqlx keeps a connection's prepared statements by text).
const MAX_ROWS: usize = 64;

/// What a caller waits for: the value its write found, sent once the group has committed.
#[derive(Debug)]
pub(crate) struct Reply<T> {
    value: Option<T>,
    tx: oneshot::Sender<Result<T>>,
}

impl<T> Reply<T> {
    fn new() -> (Self, oneshot::Receiver<Result<T>>) {
        let (tx, rx) = oneshot::channel();
        (Self { value: None, tx }, rx)
    }

    fn answer(self, result: Result<()>) {
        let value = self.value;
        let _ = self.tx.send(result.and_then(|()| {
            value.ok_or_else(|| StoreError::Corrupt("a grouped write ran without a value".into()))
        }));
    }
}

/// One job's write.
#[derive(Debug)]
pub(crate) struct Row {
    /// The job it is about: a group takes one write per job.
    pub(crate) job: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Claim the job and find what earlier deliveries left (see `Store::start_job`).
    Start {
        owner: String,
        lease_ms: i64,
        reply: Reply<JobStart>,
    },
    /// Take or renew the claim (see `Store::claim_job`).
    Claim {
        owner: String,
        lease_ms: i64,
        reply: Reply<bool>,
    },
    /// Open a ledger row before a call.
    Open { call: NewRow, reply: Reply<()> },
    /// Complete a ledger row without deciding the job.
    Complete {
        call: OpenCall,
        rec: CallRecord,
        reply: Reply<()>,
    },
    /// Complete the deciding call (and recovered ones) and write the outcome.
    Decide(Box<Decide>),
    /// Drop the owner's claim.
    Release { owner: String, reply: Reply<()> },
}

/// A ledger row to open, as written.
#[derive(Debug)]
pub(crate) struct NewRow {
    pub(crate) call_id: String,
    pub(crate) vendor: String,
    pub(crate) api: String,
    pub(crate) product: String,
    pub(crate) attempt: i64,
    pub(crate) started_at_ms: i64,
    pub(crate) day: String,
    pub(crate) reference: Option<String>,
}

/// Everything a job's outcome is written with (see `Store::complete_with_outcome`).
#[derive(Debug)]
pub(crate) struct Decide {
    pub(crate) call: Option<OpenCall>,
    pub(crate) rec: CallRecord,
    pub(crate) outcome: Outcome,
    pub(crate) charges: Vec<ChargeEntry>,
    pub(crate) recovered: Vec<(OpenCall, CallRecord)>,
    pub(crate) owed: Option<String>,
    pub(crate) release: Option<String>,
    reply: Reply<bool>,
}

impl Row {
    pub(crate) fn start(
        job: String,
        owner: String,
        lease_ms: i64,
    ) -> (Self, oneshot::Receiver<Result<JobStart>>) {
        let (reply, rx) = Reply::new();
        let kind = Kind::Start {
            owner,
            lease_ms,
            reply,
        };
        (Self { job, kind }, rx)
    }

    pub(crate) fn claim(
        job: String,
        owner: String,
        lease_ms: i64,
    ) -> (Self, oneshot::Receiver<Result<bool>>) {
        let (reply, rx) = Reply::new();
        let kind = Kind::Claim {
            owner,
            lease_ms,
            reply,
        };
        (Self { job, kind }, rx)
    }

    pub(crate) fn open(job: String, call: NewRow) -> (Self, oneshot::Receiver<Result<()>>) {
        let (reply, rx) = Reply::new();
        let kind = Kind::Open { call, reply };
        (Self { job, kind }, rx)
    }

    pub(crate) fn complete(
        call: OpenCall,
        rec: CallRecord,
    ) -> (Self, oneshot::Receiver<Result<()>>) {
        let (reply, rx) = Reply::new();
        let job = call.job_id.clone();
        let kind = Kind::Complete { call, rec, reply };
        (Self { job, kind }, rx)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decide(
        call: Option<OpenCall>,
        rec: CallRecord,
        outcome: Outcome,
        charges: Vec<ChargeEntry>,
        recovered: Vec<(OpenCall, CallRecord)>,
        owed: Option<String>,
        release: Option<String>,
    ) -> (Self, oneshot::Receiver<Result<bool>>) {
        let (reply, rx) = Reply::new();
        let job = outcome.job_id.as_str().to_string();
        // One write per job in a group holds only if every row it touches is its job's.
        debug_assert!(call
            .iter()
            .chain(recovered.iter().map(|(c, _)| c))
            .all(|c| c.job_id == job));
        let kind = Kind::Decide(Box::new(Decide {
            call,
            rec,
            outcome,
            charges,
            recovered,
            owed,
            release,
            reply,
        }));
        (Self { job, kind }, rx)
    }

    pub(crate) fn release(job: String, owner: String) -> (Self, oneshot::Receiver<Result<()>>) {
        let (reply, rx) = Reply::new();
        let kind = Kind::Release { owner, reply };
        (Self { job, kind }, rx)
    }

    /// Sends the caller its answer: the value found if `result` (the group's commit) is Ok.
    pub(crate) fn answer(self, result: Result<()>) {
        match self.kind {
            Kind::Start { reply, .. } => reply.answer(result),
            Kind::Claim { reply, .. } => reply.answer(result),
            Kind::Open { reply, .. } => reply.answer(result),
            Kind::Complete { reply, .. } => reply.answer(result),
            Kind::Decide(d) => d.reply.answer(result),
            Kind::Release { reply, .. } => reply.answer(result),
        }
    }
}

/// Runs `rows` (one per job) in the open transaction, a phase per kind of statement.
pub(crate) async fn run(
    conn: &mut AnyConnection,
    fx: &mut Effects,
    rows: &mut [Row],
) -> Result<()> {
    // Job order in every statement, so two groups' statements of a kind take their rows in
    // the same order (across phases they may not: see the module notes).
    rows.sort_by(|a, b| a.job.cmp(&b.job));
    let now = now_ms();

    // 1. Claims, taken or renewed.
    let claims: Vec<(&str, &str, i64)> = rows
        .iter()
        .filter_map(|r| match &r.kind {
            Kind::Start {
                owner, lease_ms, ..
            }
            | Kind::Claim {
                owner, lease_ms, ..
            } => Some((r.job.as_str(), owner.as_str(), now + lease_ms)),
            _ => None,
        })
        .collect();
    let claimed = claim(conn, &claims, now).await?;

    // 2. What each starting delivery finds: the outcome, the job's calls, those left open.
    let starting: Vec<&str> = rows
        .iter()
        .filter(|r| matches!(r.kind, Kind::Start { .. }))
        .map(|r| r.job.as_str())
        .collect();
    let found = look_up(conn, &starting).await?;
    for r in rows.iter_mut() {
        match &mut r.kind {
            Kind::Claim { reply, .. } => reply.value = Some(claimed.contains(&r.job)),
            Kind::Start { reply, .. } => {
                let f = found.get(&r.job).ok_or_else(|| {
                    StoreError::Corrupt("a starting job's lookup returned no row".into())
                })?;
                reply.value = Some(start(conn, &r.job, claimed.contains(&r.job), f).await?);
            }
            _ => {}
        }
    }

    // 3. Ledger rows opened.
    let opening: Vec<(&str, &NewRow)> = rows
        .iter()
        .filter_map(|r| match &r.kind {
            Kind::Open { call, .. } => Some((r.job.as_str(), call)),
            _ => None,
        })
        .collect();
    open(conn, &opening).await?;

    // 4. Ledger rows completed: plain completions, and the deciding calls with the calls
    // their jobs recovered.
    let mut completing: Vec<(&OpenCall, &CallRecord)> = Vec::new();
    for r in rows.iter() {
        match &r.kind {
            Kind::Complete { call, rec, .. } => completing.push((call, rec)),
            Kind::Decide(d) => {
                completing.extend(d.recovered.iter().map(|(c, a)| (c, a)));
                completing.extend(d.call.as_ref().map(|c| (c, &d.rec)));
            }
            _ => {}
        }
    }
    complete(conn, fx, &completing, now).await?;

    // 5. Outcomes, and the charges the vendor reported with a new one.
    let deciding: Vec<&Decide> = rows
        .iter()
        .filter_map(|r| match &r.kind {
            Kind::Decide(d) => Some(&**d),
            _ => None,
        })
        .collect();
    let inserted = decide(conn, &deciding).await?;
    for d in &deciding {
        if inserted.contains(d.outcome.job_id.as_str()) && !d.charges.is_empty() {
            insert_charges(conn, fx, d.outcome.job_id.as_str(), &d.charges).await?;
        }
    }

    // 6. Claims released: by their owner, and with a decided job's outcome.
    let releasing: Vec<(&str, &str)> = rows
        .iter()
        .filter_map(|r| match &r.kind {
            Kind::Release { owner, .. } => Some((r.job.as_str(), owner.as_str())),
            Kind::Decide(d) => d.release.as_deref().map(|o| (r.job.as_str(), o)),
            _ => None,
        })
        .collect();
    release(conn, &releasing).await?;

    for r in rows.iter_mut() {
        match &mut r.kind {
            Kind::Open { reply, .. }
            | Kind::Complete { reply, .. }
            | Kind::Release { reply, .. } => reply.value = Some(()),
            Kind::Decide(d) => d.reply.value = Some(inserted.contains(&r.job)),
            Kind::Start { .. } | Kind::Claim { .. } => {}
        }
    }
    Ok(())
}

/// The statement text for a chunk of `rows` rows (a size [`chunks`] makes), written by
/// `write` once per process for every size: a group's statements cost no formatting.
fn text(
    cache: &'static OnceLock<Vec<String>>,
    rows: usize,
    write: fn(usize) -> String,
) -> &'static str {
    let texts = cache.get_or_init(|| (0..=MAX_ROWS.ilog2()).map(|k| write(1 << k)).collect());
    &texts[rows.ilog2() as usize]
}

/// `items` cut into statements of 64, 32, … 1 rows (see [`MAX_ROWS`]).
fn chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let take = 1 << items.len().min(MAX_ROWS).ilog2();
        let (head, rest) = items.split_at(take);
        items = rest;
        Some(head)
    })
}

/// Takes each claim, or renews it for its owner, unless another owner's is still live. The
/// jobs whose claim this delivery now holds.
async fn claim(
    conn: &mut AnyConnection,
    claims: &[(&str, &str, i64)],
    now: i64,
) -> Result<HashSet<String>> {
    let mut claimed = HashSet::new();
    for chunk in chunks(claims) {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let sql = text(&SQL, chunk.len(), |n| {
            format!(
                "INSERT INTO job_claims (job_id, owner, until_ms) VALUES {} \
                 ON CONFLICT (job_id) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
                 WHERE job_claims.until_ms < ${} OR job_claims.owner = excluded.owner \
                 RETURNING job_id",
                placeholders(n, 3),
                n * 3 + 1
            )
        });
        let mut q = sqlx::query(sql);
        for (job, owner, until) in chunk {
            q = q.bind(job.to_string()).bind(owner.to_string()).bind(*until);
        }
        for row in q.bind(now).fetch_all(&mut *conn).await? {
            claimed.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(claimed)
}

/// What a starting delivery finds about its job.
#[derive(Debug)]
struct Found {
    decided: bool,
    owed: Option<String>,
    /// The job's calls that count against its budget.
    calls: i64,
    open: i64,
}

/// Everything a starting delivery needs to know, for all of them in one round trip per
/// chunk: the outcome (and a dead-letter copy it owes), the job's calls, those left open, and
/// the calls made before an operator gave the job a fresh budget (`kyc retry`, `kyc dlq
/// replay`), which stay in the ledger but no longer count against it.
async fn look_up(conn: &mut AnyConnection, jobs: &[&str]) -> Result<HashMap<String, Found>> {
    let mut found = HashMap::new();
    for chunk in chunks(jobs) {
        // The CTE's column has its own name: `job_id` alone would be ambiguous in PostgreSQL.
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let sql = text(&SQL, chunk.len(), |n| {
            format!(
                "WITH j(j_id) AS (VALUES {}) SELECT j.j_id, \
                 (SELECT COUNT(*) FROM outcomes o WHERE o.job_id = j.j_id), \
                 (SELECT o.dead_letter_owed FROM outcomes o WHERE o.job_id = j.j_id), \
                 (SELECT COUNT(*) FROM vendor_calls c WHERE c.job_id = j.j_id), \
                 (SELECT COUNT(*) FROM vendor_calls c WHERE c.job_id = j.j_id AND c.state = 'open'), \
                 COALESCE((SELECT b.calls_before FROM job_budget_resets b WHERE b.job_id = j.j_id), 0) \
                 FROM j",
                placeholders(n, 1)
            )
        });
        let mut q = sqlx::query(sql);
        for job in chunk {
            q = q.bind(job.to_string());
        }
        for row in q.fetch_all(&mut *conn).await? {
            let calls: i64 = row.try_get(3)?;
            let before: i64 = row.try_get(5)?;
            found.insert(
                row.try_get::<String, _>(0)?,
                Found {
                    decided: row.try_get::<i64, _>(1)? > 0,
                    owed: row.try_get(2)?,
                    calls: (calls - before).max(0),
                    open: row.try_get(4)?,
                },
            );
        }
    }
    Ok(found)
}

/// What a delivery starts with; a claimed, undecided job's calls left `open` by a dead
/// delivery are marked `unknown` here (rare: a statement of its own).
async fn start(conn: &mut AnyConnection, job: &str, claimed: bool, f: &Found) -> Result<JobStart> {
    let calls = u32::try_from(f.calls).unwrap_or(u32::MAX);
    Ok(match (f.decided, claimed) {
        (true, _) => JobStart::Decided {
            owed: f.owed.clone(),
            claimed,
            calls,
        },
        (false, false) => JobStart::Held,
        (false, true) => {
            let unknown = if f.open > 0 {
                sqlx::query(
                    "UPDATE vendor_calls SET state = 'unknown', finished_at_ms = $1 WHERE job_id = $2 AND state = 'open'",
                )
                .bind(now_ms())
                .bind(job.to_string())
                .execute(&mut *conn)
                .await?
                .rows_affected()
            } else {
                0
            };
            JobStart::Claimed { unknown, calls }
        }
    })
}

async fn open(conn: &mut AnyConnection, rows: &[(&str, &NewRow)]) -> Result<()> {
    for chunk in chunks(rows) {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let sql = text(&SQL, chunk.len(), |n| {
            format!(
                "INSERT INTO vendor_calls (call_id, job_id, vendor, api, product, attempt, started_at_ms, day, reference, state) \
                 VALUES {}",
                placeholders(n, 10)
            )
        });
        let mut q = sqlx::query(sql);
        for (job, c) in chunk {
            q = q
                .bind(c.call_id.clone())
                .bind(job.to_string())
                .bind(c.vendor.clone())
                .bind(c.api.clone())
                .bind(c.product.clone())
                .bind(c.attempt)
                .bind(c.started_at_ms)
                .bind(c.day.clone())
                .bind(c.reference.clone())
                .bind("open");
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Completes ledger rows still `open` (or `unknown`: a redelivery marked it while its call
/// was in flight, or the vendor told us a lost answer when asked). A billable row that moved
/// is counted for the billing counter, keyed by the day its call started.
async fn complete(
    conn: &mut AnyConnection,
    fx: &mut Effects,
    calls: &[(&OpenCall, &CallRecord)],
    now: i64,
) -> Result<()> {
    // Billed per row the statements moved: a row is completed once, whatever asked for it.
    let billable: HashMap<&str, &OpenCall> = calls
        .iter()
        .filter(|(_, rec)| rec.billable)
        .map(|(call, _)| (call.call_id.as_str(), *call))
        .collect();
    for chunk in chunks(calls) {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let sql = text(&SQL, chunk.len(), |n| {
            format!(
                "WITH v(v_id, v_state, v_http, v_code, v_request, v_billable) AS (VALUES {}) \
                 UPDATE vendor_calls SET state = v.v_state, finished_at_ms = ${}, http_status = v.v_http, \
                 vendor_code = v.v_code, vendor_request_id = v.v_request, billable = v.v_billable \
                 FROM v WHERE vendor_calls.call_id = v.v_id AND vendor_calls.state IN ('open', 'unknown') \
                 RETURNING call_id, day",
                placeholders(n, 6),
                n * 6 + 1
            )
        });
        let mut q = sqlx::query(sql);
        for (call, rec) in chunk {
            q = q
                .bind(call.call_id.clone())
                .bind(if rec.answer_lost { "unknown" } else { "done" })
                .bind(rec.http_status.map(i64::from))
                .bind(rec.vendor_code.clone())
                .bind(rec.vendor_request_id.clone())
                .bind(i64::from(rec.billable));
        }
        for row in q.bind(now).fetch_all(&mut *conn).await? {
            let (id, day): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            if let Some(call) = billable.get(id.as_str()) {
                // The counter is keyed by the day the call started, like the ledger row.
                *fx.billing
                    .entry((call.vendor.clone(), call.product.clone(), day))
                    .or_default() += 1;
            }
        }
    }
    Ok(())
}

/// Writes the outcomes not written yet; the jobs whose outcome this wrote.
async fn decide(conn: &mut AnyConnection, decisions: &[&Decide]) -> Result<HashSet<String>> {
    const COLS: usize = 17;
    let mut inserted = HashSet::new();
    for chunk in chunks(decisions) {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let sql = text(&SQL, chunk.len(), |n| {
            format!(
                "INSERT INTO outcomes (job_id, batch_id, vendor, operation, status, reason, vendor_code, vendor_message, \
                 similarity, liveness_score, vendor_request_id, vendor_ref, attempts, latency_ms, billed, completed_at_ms, \
                 dead_letter_owed) VALUES {} ON CONFLICT (job_id) DO NOTHING RETURNING job_id",
                placeholders(n, COLS)
            )
        });
        let mut q = sqlx::query(sql);
        for d in chunk {
            let o = &d.outcome;
            q = q
                .bind(o.job_id.as_str().to_string())
                .bind(o.batch_id.clone())
                .bind(o.vendor.as_str())
                .bind(o.operation.as_str())
                .bind(o.status.as_str())
                .bind(o.reason.as_str())
                .bind(o.vendor_code.clone())
                .bind(o.vendor_message.clone())
                .bind(crate::nullable_f64(o.similarity))
                .bind(crate::nullable_f64(o.liveness_score))
                .bind(o.vendor_request_id.clone())
                .bind(o.vendor_ref.clone())
                .bind(i64::from(o.attempts))
                .bind(o.latency_ms as i64)
                .bind(i64::from(o.billed))
                .bind(o.completed_at.timestamp_millis())
                .bind(d.owed.clone());
        }
        for row in q.fetch_all(&mut *conn).await? {
            inserted.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(inserted)
}

async fn release(conn: &mut AnyConnection, claims: &[(&str, &str)]) -> Result<()> {
    for chunk in chunks(claims) {
        static SQL: OnceLock<Vec<String>> = OnceLock::new();
        let sql = text(&SQL, chunk.len(), |n| {
            format!(
                "WITH r(r_job, r_owner) AS (VALUES {}) DELETE FROM job_claims WHERE EXISTS \
                 (SELECT 1 FROM r WHERE r.r_job = job_claims.job_id AND r.r_owner = job_claims.owner)",
                placeholders(n, 2)
            )
        });
        let mut q = sqlx::query(sql);
        for (job, owner) in chunk {
            q = q.bind(job.to_string()).bind(owner.to_string());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_cut_into_a_few_statement_sizes() {
        let items: Vec<u32> = (0..100).collect();
        let sizes: Vec<usize> = chunks(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, [64, 32, 4]);
        let sizes: Vec<usize> = chunks(&items[..7]).map(<[u32]>::len).collect();
        assert_eq!(sizes, [4, 2, 1]);
        assert_eq!(chunks::<u32>(&[]).count(), 0);
    }

    #[test]
    fn each_chunk_size_has_its_own_statement_text() {
        static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
        let sizes: Vec<&str> = [1, 2, 8, 64]
            .into_iter()
            .map(|n| text(&TEXTS, n, |n| n.to_string()))
            .collect();
        assert_eq!(sizes, ["1", "2", "8", "64"]);
    }
}
