//! The trail of operator actions on jobs and dead letters (`kyc retry`, `kyc dlq replay`,
//! `kyc dlq purge`): who, what, with which filter, how many matched and how many were done.
//! A row is written before the action starts and completed after it, so an action cut short
//! stays on record (`done` -1, no `finished_at_ms`). Never holds a secret: the operator is a
//! configured name or the OS account, the filter names batches, vendors and reasons.

use crate::audit::OperatorSource;
use crate::{now_ms, Result, Store};

/// One row of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorAction {
    pub audit_id: String,
    pub at_ms: i64,
    /// `retry`, `dlq.replay` or `dlq.purge`.
    pub action: String,
    pub operator: String,
    pub operator_source: String,
    /// The filter in one line (`batch=… vendor=… reason=…`).
    pub filter: String,
    /// Jobs or dead letters the filter matched; -1 until the action finishes.
    pub matched: i64,
    /// Jobs published again, dead letters replayed or removed; -1 until it finishes.
    pub done: i64,
    pub finished_at_ms: Option<i64>,
}

impl Store {
    /// Records that an operator action starts; returns its id for
    /// [`Store::finish_operator_action`] (and for the outcomes it supersedes).
    pub async fn start_operator_action(
        &self,
        action: &str,
        operator: &str,
        source: OperatorSource,
        filter: &str,
    ) -> Result<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(
            "INSERT INTO operator_audit (audit_id, at_ms, action, operator, operator_source, filter) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.clone())
        .bind(now_ms())
        .bind(action.to_string())
        .bind(operator.to_string())
        .bind(source.as_str())
        .bind(filter.to_string())
        .execute(self.pool())
        .await?;
        Ok(id)
    }

    /// Completes the record with what the action matched and did.
    pub async fn finish_operator_action(
        &self,
        audit_id: &str,
        matched: u64,
        done: u64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE operator_audit SET matched = $1, done = $2, finished_at_ms = $3 WHERE audit_id = $4",
        )
        .bind(matched as i64)
        .bind(done as i64)
        .bind(now_ms())
        .bind(audit_id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The trail, newest first.
    pub async fn operator_actions(&self) -> Result<Vec<OperatorAction>> {
        type Row = (
            String,
            i64,
            String,
            String,
            String,
            String,
            i64,
            i64,
            Option<i64>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT audit_id, at_ms, action, operator, operator_source, filter, matched, done, \
             finished_at_ms FROM operator_audit ORDER BY at_ms DESC, audit_id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| OperatorAction {
                audit_id: r.0,
                at_ms: r.1,
                action: r.2,
                operator: r.3,
                operator_source: r.4,
                filter: r.5,
                matched: r.6,
                done: r.7,
                finished_at_ms: r.8,
            })
            .collect())
    }
}
