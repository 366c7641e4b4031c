//! Group commit: the small writes every job makes (claim, ledger row opened before a call,
//! ledger row completed with the outcome, claim released) are gathered from all of a
//! process's jobs and committed together, one transaction for as many jobs as are waiting.
//!
//! Why: a commit is an fsync and a round trip, and with one transaction per write each job
//! paid for about six (`kyc bench throughput`, "commits per job"). The writes are tiny; the
//! commits were the cost. The same holds for SQLite, whose single writer serialises them.
//!
//! What does not change: a write's caller gets its answer only after the transaction holding
//! it has committed, so everything that follows an answer (a vendor call after the ledger row
//! is durable, an ack after the outcome is) still follows a durable write. A crash before the
//! commit loses the whole group, and every caller in it has been told nothing: as if each had
//! crashed before its own commit.
//!
//! How: one task per [`Store`](crate::Store) takes the first write waiting, then every other
//! one already queued (up to [`MAX_GROUP`]), and runs them in one transaction. While it commits, new writes queue: under load, groups grow by themselves;
//! alone, a write costs what it did before. When the last group carried several writes, the
//! next one waits up to [`LINGER`] for more (PostgreSQL's `commit_delay`). The jobs' own
//! writes are data (`rows`): a group takes at most one per job, holding a job's next write
//! back for the next group, and runs each kind as one statement for all its jobs. Other
//! writes are code and run first, in order. Either way a group behaves as its writes
//! committed one after the other. A write that fails on a
//! statement (a constraint, a deadlock, a timeout) aborts the group; each write is then run in
//! a transaction of its own, so one bad write never fails its neighbours. A lost connection
//! fails the whole group: each caller has its own retry.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::{Acquire as _, AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use crate::rows::Row;
use crate::{Result, StoreError};

/// The most writes one transaction takes; more wait for the next one.
pub(crate) const MAX_GROUP: usize = 256;

/// How long a group waits for more writes when the last one carried several.
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// Effects several writes of a group add up, written once at the end of the transaction.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Billable calls per (vendor, product, day): one upsert per key per group instead of
    /// one per call. The counters are the rows every job touches; updated once per group,
    /// in key order, they are held for the length of a commit, not of a group.
    pub(crate) billing: BTreeMap<(String, String, String), i64>,
    /// Calls the vendor reports it charged (new charge entries), per (vendor, product, day),
    /// for `vendor_charges`: likewise once per key, after `billing`, in key order.
    pub(crate) charges: BTreeMap<(String, String, String), i64>,
}

impl Effects {
    async fn write(&mut self, conn: &mut AnyConnection) -> Result<()> {
        for ((vendor, product, day), n) in std::mem::take(&mut self.billing) {
            sqlx::query(
                "INSERT INTO billing_counters (vendor, product, day, billable_calls) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (vendor, product, day) DO UPDATE SET billable_calls = billing_counters.billable_calls + $5",
            )
            .bind(vendor)
            .bind(product)
            .bind(day)
            .bind(n)
            .bind(n)
            .execute(&mut *conn)
            .await?;
        }
        let now = crate::now_ms();
        for ((vendor, product, day), n) in std::mem::take(&mut self.charges) {
            sqlx::query(
                "INSERT INTO vendor_charges (vendor, product, day, charged_calls, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (vendor, product, day) DO UPDATE SET \
                 charged_calls = vendor_charges.charged_calls + $6, updated_at_ms = $7",
            )
            .bind(vendor)
            .bind(product)
            .bind(day)
            .bind(n)
            .bind(now)
            .bind(n)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// One write, re-runnable (a failed group runs it again on its own).
trait Write: Send {
    fn run<'a>(
        &'a mut self,
        conn: &'a mut AnyConnection,
        fx: &'a mut Effects,
    ) -> BoxFuture<'a, Result<()>>;
    fn answer(self: Box<Self>, result: Result<()>);
    /// Writes on rows every replica shares (a quota's row) run first in a group, in this
    /// order, so that two replicas' groups never take them in opposite orders (a deadlock).
    fn shared_row(&self) -> Option<&str>;
}

struct Typed<T, F> {
    write: F,
    value: Option<T>,
    reply: oneshot::Sender<Result<T>>,
    shared_row: Option<String>,
}

impl<T, F> Write for Typed<T, F>
where
    T: Send,
    F: for<'a> FnMut(&'a mut AnyConnection, &'a mut Effects) -> BoxFuture<'a, Result<T>> + Send,
{
    fn run<'a>(
        &'a mut self,
        conn: &'a mut AnyConnection,
        fx: &'a mut Effects,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.value = Some((self.write)(conn, fx).await?);
            Ok(())
        })
    }

    fn shared_row(&self) -> Option<&str> {
        self.shared_row.as_deref()
    }

    fn answer(self: Box<Self>, result: Result<()>) {
        let Typed { value, reply, .. } = *self;
        let _ = reply.send(result.and_then(|()| {
            value.ok_or_else(|| StoreError::Corrupt("group write ran without a value".into()))
        }));
    }
}

/// A write waiting for a group: a job's write as data (see `rows`), run with the group's
/// other jobs' writes of its kind in one statement, or any other write as code.
enum Entry {
    Row(Row),
    Code(Box<dyn Write>),
}

/// The queue of writes waiting for the next group commit.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    queue: mpsc::UnboundedSender<Entry>,
    stats: Arc<Stats>,
}

/// How much grouping happened: writes answered, and the transactions that carried them
/// (counting each one-by-one rerun of a failed group).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    writes: AtomicU64,
    commits: AtomicU64,
}

impl Stats {
    /// (writes, transactions) so far.
    pub(crate) fn read(&self) -> (u64, u64) {
        (
            self.writes.load(Ordering::Relaxed),
            self.commits.load(Ordering::Relaxed),
        )
    }
}

impl Group {
    /// Starts the committing task; it ends when the last handle on the queue is dropped.
    pub(crate) fn start(pool: AnyPool) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        tokio::spawn(commit_loop(pool, rx, stats.clone()));
        Self { queue, stats }
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Runs `write` in the next group transaction; answers once that has committed.
    pub(crate) async fn run<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'a> FnMut(&'a mut AnyConnection, &'a mut Effects) -> BoxFuture<'a, Result<T>>
            + Send
            + 'static,
    {
        self.send(None, write).await
    }

    /// [`Group::run`] for a write on a row every replica shares, named `row`: it runs before
    /// the group's other writes, shared rows in name order (see `Write::shared_row`).
    pub(crate) async fn run_shared<T, F>(&self, row: &str, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'a> FnMut(&'a mut AnyConnection, &'a mut Effects) -> BoxFuture<'a, Result<T>>
            + Send
            + 'static,
    {
        self.send(Some(row.to_string()), write).await
    }

    /// Runs a job's write (made with its answer's receiver by `Row::start`, `Row::open`, …)
    /// in the next group that holds no other write of that job.
    pub(crate) async fn row<T>(
        &self,
        (row, answer): (Row, oneshot::Receiver<Result<T>>),
    ) -> Result<T> {
        self.queue.send(Entry::Row(row)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn send<T, F>(&self, shared_row: Option<String>, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'a> FnMut(&'a mut AnyConnection, &'a mut Effects) -> BoxFuture<'a, Result<T>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Entry::Code(Box::new(Typed {
                write,
                value: None,
                reply,
                shared_row,
            })))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Corrupt("the group-commit task has stopped".into())
}

/// The writes of one group.
#[derive(Default)]
struct Batch {
    code: Vec<Box<dyn Write>>,
    rows: Vec<Row>,
    /// The jobs `rows` are about: one write per job in a group (see `rows`).
    jobs: HashSet<String>,
}

impl Batch {
    fn len(&self) -> usize {
        self.code.len() + self.rows.len()
    }

    /// Takes `entry`, or hands it back when the group already holds a write of its job.
    fn take(&mut self, entry: Entry) -> Option<Entry> {
        match entry {
            Entry::Code(w) => self.code.push(w),
            Entry::Row(r) => {
                if self.jobs.contains(&r.job) {
                    return Some(Entry::Row(r));
                }
                self.jobs.insert(r.job.clone());
                self.rows.push(r);
            }
        }
        None
    }

    fn answer(&mut self, result: impl Fn() -> Result<()>) {
        self.code.drain(..).for_each(|w| w.answer(result()));
        self.rows.drain(..).for_each(|r| r.answer(result()));
        self.jobs.clear();
    }
}

async fn commit_loop(pool: AnyPool, mut rx: mpsc::UnboundedReceiver<Entry>, stats: Arc<Stats>) {
    let mut group = Batch::default();
    // Writes held back from a group that had one of their job already: first in the next,
    // in their order of arrival.
    let mut held: VecDeque<Entry> = VecDeque::new();
    let mut busy = false;
    loop {
        let mut later = VecDeque::new();
        for entry in held.drain(..) {
            later.extend(group.take(entry));
        }
        held = later;
        if group.len() == 0 {
            match rx.recv().await {
                Some(entry) => held.extend(group.take(entry)),
                None => break,
            }
        }
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(entry) => held.extend(group.take(entry)),
                Err(_) => break,
            }
        }
        // PostgreSQL's commit_delay, for the same reason: when the last group carried more
        // than one write, others are on their way, and waiting [`LINGER`] for them costs a
        // write less than a commit of its own. A lone writer never waits.
        if busy && group.len() < MAX_GROUP {
            let until = tokio::time::Instant::now() + LINGER;
            while group.len() < MAX_GROUP {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(entry)) => held.extend(group.take(entry)),
                    _ => break,
                }
            }
        }
        busy = group.len() > 1;
        // Shared rows first, in name order; the rest keep their order of arrival (a stable
        // sort). Any order is one the writes could have committed in one by one: they come
        // from callers that are all still waiting.
        group
            .code
            .sort_by(|a, b| match (a.shared_row(), b.shared_row()) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
        stats
            .writes
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        stats.commits.fetch_add(1, Ordering::Relaxed);
        match together(&pool, &mut group.code, &mut group.rows).await {
            Ok(()) => group.answer(|| Ok(())),
            Err(e) if group.len() > 1 && is_statement_error(&e) => {
                tracing::debug!(error = %e, writes = group.len(), "group transaction failed on a statement; running its writes one by one");
                for mut w in group.code.drain(..) {
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    let result = together(&pool, std::slice::from_mut(&mut w), &mut []).await;
                    w.answer(result);
                }
                for mut r in group.rows.drain(..) {
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    let result = together(&pool, &mut [], std::slice::from_mut(&mut r)).await;
                    r.answer(result);
                }
                group.jobs.clear();
            }
            Err(e) => {
                // The connection is gone (or the pool timed out): every write gets the cause.
                let shared = Arc::new(e);
                group.answer(|| Err(StoreError::Group(shared.clone())));
            }
        }
    }
}

/// Runs `code` then `rows` in one transaction and commits it.
async fn together(pool: &AnyPool, code: &mut [Box<dyn Write>], rows: &mut [Row]) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let mut fx = Effects::default();
    for w in code.iter_mut() {
        w.run(&mut tx, &mut fx).await?;
    }
    if !rows.is_empty() {
        crate::rows::run(&mut tx, &mut fx, rows).await?;
    }
    fx.write(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// A statement failed inside a working transaction: worth running the writes one by one.
fn is_statement_error(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Database(sqlx::Error::Database(_)) | StoreError::Corrupt(_)
    )
}

#[cfg(test)]
mod tests {
    use kyc_schemas::JobId;

    use crate::{CallRecord, NewCall, Store};

    async fn sqlite() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("g.db").display());
        let store = Store::connect(&url, 4).await.unwrap();
        store.migrate().await.unwrap();
        (store, dir)
    }

    fn call<'a>(job: &'a JobId, attempt: u32) -> NewCall<'a> {
        NewCall {
            job_id: job,
            vendor: "huawei",
            api: "ivs-standard",
            product: "ivs-standard",
            attempt,
            reference: None,
        }
    }

    #[tokio::test]
    async fn writes_waiting_together_commit_together_and_each_gets_its_answer() {
        let (store, _dir) = sqlite().await;
        let jobs: Vec<JobId> = (0..100)
            .map(|i| JobId::from_stored(format!("job-{i}")))
            .collect();
        let before = store.group_stats();
        // All 100 writes are queued in one poll, before the first commit can answer.
        let claims =
            futures::future::join_all(jobs.iter().map(|j| store.claim_job(j, "w1", 60_000))).await;
        assert!(claims.into_iter().all(|c| c.unwrap()));
        let (writes, commits) = store.group_stats();
        assert_eq!(writes - before.0, 100);
        assert!(
            commits - before.1 <= 10,
            "{} transactions for 100 writes",
            commits - before.1
        );
        // Answers are per write: a claim another owner holds is refused, the rest granted.
        let again = futures::future::join_all([
            store.claim_job(&jobs[0], "w2", 60_000),
            store.claim_job(&jobs[1], "w1", 60_000),
        ])
        .await;
        assert_eq!(
            again.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [false, true]
        );
    }

    #[tokio::test]
    async fn a_failing_write_does_not_fail_the_writes_grouped_with_it() {
        let (store, _dir) = sqlite().await;
        let jobs: Vec<JobId> = (1..=4)
            .map(|i| JobId::from_stored(format!("job-{i}")))
            .collect();
        store
            .open_call_as("c-taken", call(&jobs[0], 1))
            .await
            .unwrap();
        let before = store.group_stats();
        // One group (three jobs: a group takes one write per job): a good row, a duplicate
        // id (a unique violation), another good row.
        let results = futures::future::join_all([
            store.open_call_as("c-1", call(&jobs[1], 1)),
            store.open_call_as("c-taken", call(&jobs[2], 1)),
            store.open_call_as("c-2", call(&jobs[3], 1)),
        ])
        .await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(results[1].is_err());
        let (writes, commits) = store.group_stats();
        assert_eq!(writes - before.0, 3);
        // The group failed, then each write ran on its own: the fault was hit and handled
        // (one group, then three transactions of one).
        assert_eq!(commits - before.1, 4, "{:?}", (writes, commits));
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vendor_calls")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(rows, 3);
    }

    #[tokio::test]
    async fn billing_counters_moved_once_per_group_equal_the_billable_rows() {
        let (store, _dir) = sqlite().await;
        let jobs: Vec<JobId> = (0..40)
            .map(|i| JobId::from_stored(format!("job-{i}")))
            .collect();
        let mut opened = Vec::new();
        for j in &jobs {
            opened.push(store.open_call(call(j, 1)).await.unwrap());
        }
        let billable = CallRecord {
            http_status: Some(200),
            billable: true,
            ..Default::default()
        };
        let free = CallRecord {
            http_status: Some(429),
            ..Default::default()
        };
        let done = futures::future::join_all(
            opened
                .iter()
                .enumerate()
                .map(|(i, c)| store.complete_call(c, if i % 4 == 0 { &free } else { &billable })),
        )
        .await;
        assert!(done.into_iter().all(|r| r.is_ok()));
        let counted: i64 =
            sqlx::query_scalar("SELECT COALESCE(SUM(billable_calls), 0) FROM billing_counters")
                .fetch_one(store.pool())
                .await
                .unwrap();
        let rows: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM vendor_calls WHERE state = 'done' AND billable = 1",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!((counted, rows), (30, 30));
    }
}
