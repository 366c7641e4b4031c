//! The account quota, shared by every worker replica through the database: one GCRA state row
//! per vendor × API. Each reservation moves the row's "theoretical arrival time" forward in one
//! atomic statement, so replicas that come and go (KEDA) split the quota without talking to
//! each other. `CASE` instead of `GREATEST`/`MAX` keeps one SQL text for both databases.

use crate::{Result, Store};

impl Store {
    /// Reserves `span_us` of the quota's time line and returns where it starts (µs since the
    /// epoch). At most `burst` slots of `interval_us` may lie before now: a replica that was
    /// idle gets its burst, never more, whatever span it asks for.
    pub async fn reserve_rate_slots(
        &self,
        key: &str,
        interval_us: i64,
        burst: u32,
        span_us: i64,
        now_us: i64,
    ) -> Result<i64> {
        let earliest = now_us - i64::from(burst.max(1) - 1) * interval_us;
        let span = span_us.max(1);
        // In the group commit (see `group`): one commit for many jobs' reservations and
        // writes, instead of one per call. The slot is computed from `now_us`, taken before
        // the group waited; the limiter drops a slot that arrives later than its grace.
        let key = key.to_string();
        self.group
            .run_shared(&format!("rate_limits/{key}"), move |conn, _| {
                let key = key.clone();
                Box::pin(async move {
                    let (tat,): (i64,) = sqlx::query_as(
                        "INSERT INTO rate_limits (limit_key, tat_us) VALUES ($1, $2) \
                         ON CONFLICT (limit_key) DO UPDATE SET tat_us = \
                           (CASE WHEN rate_limits.tat_us > $3 THEN rate_limits.tat_us ELSE $4 END) + $5 \
                         RETURNING tat_us",
                    )
                    .bind(key)
                    .bind(earliest + span)
                    .bind(earliest)
                    .bind(earliest)
                    .bind(span)
                    .fetch_one(&mut *conn)
                    .await?;
                    Ok(tat - span)
                })
            })
            .await
    }

    /// Pushes the next free slot to at least `until_us`: after a throttle answer, everyone
    /// sharing the quota pauses, not only the worker that was told.
    pub async fn hold_rate_until(&self, key: &str, until_us: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO rate_limits (limit_key, tat_us) VALUES ($1, $2) \
             ON CONFLICT (limit_key) DO UPDATE SET tat_us = \
               CASE WHEN rate_limits.tat_us > $3 THEN rate_limits.tat_us ELSE $4 END",
        )
        .bind(key.to_string())
        .bind(until_us)
        .bind(until_us)
        .bind(until_us)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[tokio::test]
    async fn reservations_are_spaced_and_bursts_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(
            &format!("sqlite://{}", dir.path().join("r.db").display()),
            1,
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let now = 1_000_000_000;
        // 10 QPS (100 ms), burst 2: the first two slots are immediate, then one every 100 ms.
        let a = store
            .reserve_rate_slots("k", 100_000, 2, 100_000, now)
            .await
            .unwrap();
        let b = store
            .reserve_rate_slots("k", 100_000, 2, 100_000, now)
            .await
            .unwrap();
        let c = store
            .reserve_rate_slots("k", 100_000, 2, 300_000, now)
            .await
            .unwrap();
        assert!(a <= now && b <= now, "burst slots are not in the future");
        assert_eq!(b - a, 100_000);
        assert_eq!(c - b, 100_000);
        let d = store
            .reserve_rate_slots("k", 100_000, 2, 100_000, now)
            .await
            .unwrap();
        assert_eq!(d - c, 300_000, "a lease of three takes three slots");
        // A throttle answer holds everyone until the hold ends.
        store.hold_rate_until("k", now + 5_000_000).await.unwrap();
        let e = store
            .reserve_rate_slots("k", 100_000, 2, 100_000, now)
            .await
            .unwrap();
        assert_eq!(e, now + 5_000_000);
        // Long idle: no credit beyond the burst.
        let later = now + 60_000_000;
        let f = store
            .reserve_rate_slots("k", 100_000, 2, 100_000, later)
            .await
            .unwrap();
        assert_eq!(f, later - 100_000);
    }
}
