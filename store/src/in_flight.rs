//! The account-wide cap on calls in flight per vendor × API, shared by every replica like
//! the quota (`rate_limits`): one row per call in flight. A grant first upserts the key's lock
//! row (empty token), which serialises grants for one key across replicas (PostgreSQL's row
//! lock, SQLite's single writer), then drops rows that lapsed (a worker died holding them),
//! then inserts its own row only if fewer than the cap are left. Grants and hand-backs go
//! through the group commit; the lock row counts as a shared row, so groups take it in order.

use crate::{now_ms, Result, Store};

impl Store {
    /// Takes one of `max` in-flight tokens of `key` as `token`, held until [`Store::
    /// release_in_flight`] or `lease_ms` from now. False if all `max` are taken.
    pub async fn grant_in_flight(
        &self,
        key: &str,
        token: &str,
        max: u32,
        lease_ms: i64,
    ) -> Result<bool> {
        let (key, token) = (key.to_string(), token.to_string());
        let row = format!("in_flight/{key}");
        self.group
            .run_shared(&row, move |conn, _| {
                let (key, token) = (key.clone(), token.clone());
                Box::pin(async move {
                    let now = now_ms();
                    sqlx::query(
                        "INSERT INTO in_flight_tokens (limit_key, token, until_ms) VALUES ($1, '', 0) \
                         ON CONFLICT (limit_key, token) DO UPDATE SET until_ms = 0",
                    )
                    .bind(key.clone())
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query(
                        "DELETE FROM in_flight_tokens WHERE limit_key = $1 AND token <> '' AND until_ms < $2",
                    )
                    .bind(key.clone())
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    let n = sqlx::query(
                        "INSERT INTO in_flight_tokens (limit_key, token, until_ms) SELECT $1, $2, $3 \
                         WHERE (SELECT COUNT(*) FROM in_flight_tokens WHERE limit_key = $4 AND token <> '') < $5",
                    )
                    .bind(key.clone())
                    .bind(token)
                    .bind(now + lease_ms)
                    .bind(key)
                    .bind(i64::from(max))
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    Ok(n == 1)
                })
            })
            .await
    }

    /// Hands an in-flight token back.
    pub async fn release_in_flight(&self, key: &str, token: &str) -> Result<()> {
        let (key, token) = (key.to_string(), token.to_string());
        self.group
            .run(move |conn, _| {
                let (key, token) = (key.clone(), token.clone());
                Box::pin(async move {
                    sqlx::query("DELETE FROM in_flight_tokens WHERE limit_key = $1 AND token = $2")
                        .bind(key)
                        .bind(token)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Tokens of `key` held right now (lapsed ones excluded).
    pub async fn in_flight_held(&self, key: &str) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM in_flight_tokens WHERE limit_key = $1 AND token <> '' AND until_ms >= $2",
        )
        .bind(key.to_string())
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        Ok(n)
    }
}
