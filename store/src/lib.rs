//! The database behind every stage: PostgreSQL in server mode, SQLite for the embedded
//! `kyc run`. One SQL text serves both through sqlx's `Any` driver (see
//! `migrations/README.md` for the column-type conventions that make that work).
//!
//! # Layout
//! - [`batches`]: one row per producer run, with its counts
//! - [`jobs`]: jobs the producer accepted; resumable publishing keys on them
//! - [`personal`]: names and ID numbers sealed at rest, sealing rows from older versions, and
//!   the retention purge
//! - [`ledger`]: vendor calls opened before and completed after each call, billing counters,
//!   and the outcome written in the same transaction as the deciding call
//! - `group`: group commit of the jobs' small writes (claims, ledger rows, outcomes)
//! - `rows`: those writes as data, each kind one multi-row statement per group
//! - [`in_flight`]: the account-wide cap on calls in flight, shared like the quota
//! - [`rate_limits`]: account quotas shared by all replicas (GCRA rows)
//! - [`queries`]: read side for reports, reconciliation and tests (streamed, never whole tables)
//! - [`spend`]: a capped vendor's spend in the current window (from the ledger), and the jobs
//!   a spend cap deferred
//! - [`audit`]: the trail of unmasked exports (who, which filter, where to, how many rows)
//! - [`operator_audit`]: the trail of retries, dead-letter replays and purges
//! - [`retries`]: a new attempt for a job (old outcome kept as history, fresh budget)
//! - [`reach`]: bounded waits (connect, pool, statements) and why a database cannot be reached
//! - [`status`]: where each batch stands (`kyc status`), and whether the schema is current
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod audit;
pub mod batches;
mod group;
pub mod in_flight;
pub mod jobs;
pub mod ledger;
mod migrations;
pub mod operator_audit;
pub mod personal;
pub mod queries;
pub mod rate_limits;
pub mod reach;
pub mod retries;
mod rows;
pub mod spend;
pub mod status;

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection as _};

pub use jobs::{JobInsert, NewJob, RecentPass};
pub use ledger::{CallRecord, ChargeEntry, Decision, JobStart, LostCall, NewCall};
pub use personal::{PurgeCounts, StoredSubject};
pub use reach::DbTimeouts;
pub use retries::{Reopened, RetryCandidate};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL must start with postgres:// or sqlite: (got scheme {0:?})")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
    /// The first connection failed: `cause` says why (see [`reach::cause`]).
    #[error("cannot reach the database: {cause}")]
    Unreachable { cause: String },
    /// A group commit failed for every write in it (see [`group`]): each caller gets the
    /// one cause.
    #[error("{0}")]
    Group(std::sync::Arc<StoreError>),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A handle on the database; cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The jobs' small writes, committed together (see [`group`]).
    group: group::Group,
}

impl Store {
    /// Connects to `postgres://…` or `sqlite:…` with the default [`DbTimeouts`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with(url, max_connections, DbTimeouts::default()).await
    }

    /// Connects to `postgres://…` or `sqlite:…`. A SQLite file is created if missing and put
    /// in WAL mode, so the embedded run's worker tasks can read while one of them writes.
    /// One connection is opened first, on its own, so that a database that cannot be reached
    /// fails at once with its cause ([`StoreError::Unreachable`]) instead of a pool timeout.
    /// Every connection then bounds its statements by `timeouts.statement`.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        timeouts: DbTimeouts,
    ) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else if url.starts_with("sqlite:") {
            let url = if url.contains("mode=") || url.contains(":memory:") {
                url.to_string()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else {
            let scheme = url.split(':').next().unwrap_or_default().to_string();
            return Err(StoreError::UnsupportedUrl(scheme));
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|e| StoreError::Unreachable {
            cause: reach::cause(&e),
        })?;
        match tokio::time::timeout(timeouts.connect, sqlx::AnyConnection::connect_with(&options))
            .await
        {
            Ok(Ok(probe)) => {
                let _ = probe.close().await;
            }
            Ok(Err(e)) => {
                return Err(StoreError::Unreachable {
                    cause: reach::cause(&e),
                })
            }
            Err(_) => {
                return Err(StoreError::Unreachable {
                    cause: format!(
                        "no answer within {} s (KYC_DATABASE_TIMEOUT): the host accepts connections but the server does not respond",
                        timeouts.connect.as_secs_f32()
                    ),
                })
            }
        }
        let statement_ms = timeouts.statement.as_millis().min(i32::MAX as u128) as i64;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(timeouts.connect)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            // NORMAL is durable in WAL mode except for the last commits on
                            // power loss; a redelivered job then simply runs again.
                            sqlx::query("PRAGMA journal_mode = WAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA synchronous = NORMAL")
                                .execute(&mut *conn)
                                .await?;
                            // How long a statement waits for another connection's write lock.
                            sqlx::query(sqlx::AssertSqlSafe(format!(
                                "PRAGMA busy_timeout = {statement_ms}"
                            )))
                            .execute(&mut *conn)
                            .await?;
                        }
                        Backend::Postgres => {
                            // The server cancels a statement that runs (or waits for a lock)
                            // longer than this, instead of holding a worker slot forever.
                            sqlx::query(sqlx::AssertSqlSafe(format!(
                                "SET statement_timeout = {statement_ms}"
                            )))
                            .execute(&mut *conn)
                            .await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let group = group::Group::start(pool.clone());
        Ok(Self {
            pool,
            backend,
            group,
        })
    }

    /// Applies the migrations of this backend (embedded in the binary at build time).
    pub async fn migrate(&self) -> Result<()> {
        migrations::migrator(self.backend).run(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// (writes, transactions) of the group commit so far (see `group`): how many of the
    /// jobs' small writes each commit carried.
    pub fn group_stats(&self) -> (u64, u64) {
        self.group.stats().read()
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Readiness probe: one round trip.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Milliseconds since the Unix epoch, the timestamp format of every table.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The UTC day (`YYYY-MM-DD`) of a millisecond timestamp, the billing counters' key.
pub fn day_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// A nullable float to bind. sqlx 0.9.0's `Any` driver declares a NULL `f64` as `float4`
/// on PostgreSQL (and a NULL `f32` as `float8`): the prepared statement then refuses the
/// 8-byte values of later rows. Binding NULL as `f32` yields `float8` either way.
pub(crate) fn nullable_f64(v: Option<f64>) -> NullableF64 {
    NullableF64(v)
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct NullableF64(Option<f64>);

impl sqlx::Type<sqlx::Any> for NullableF64 {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <f64 as sqlx::Type<sqlx::Any>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Any> for NullableF64 {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        match self.0 {
            Some(v) => <f64 as sqlx::Encode<sqlx::Any>>::encode_by_ref(&v, buf),
            None => <Option<f32> as sqlx::Encode<sqlx::Any>>::encode_by_ref(&None, buf),
        }
    }
}

/// `$1, $2, …` placeholders for a multi-row insert of `rows` rows of `cols` columns.
/// Both backends accept `$N` (SQLite numbers them in order of first use).
pub(crate) fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_in_order() {
        assert_eq!(placeholders(2, 2), "($1, $2), ($3, $4)");
    }

    #[test]
    fn days_are_utc() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(86_400_000 - 1), "1970-01-01");
    }

    #[tokio::test]
    async fn unknown_schemes_are_refused_by_name() {
        let err = Store::connect("mysql://x", 1).await.unwrap_err();
        assert!(err.to_string().contains("mysql"));
    }
}
