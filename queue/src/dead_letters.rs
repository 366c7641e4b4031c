//! Reading the dead-letter queue without losing anything, and settling single dead letters
//! (`kyc dlq list|show|replay|purge`).
//!
//! Dead letters are read with `basic.get` (manual acknowledgement) and *held*: each one stays
//! unacknowledged on this reader's channel until it is settled (replayed or removed) or the
//! reader is [released](DeadLetters::release), when the broker puts back everything not
//! settled. Holding them, rather than `nack`-requeueing each after reading it, is what makes
//! one pass see every message exactly once: a requeued message would come straight back to
//! the head of a quorum queue, and a list would loop on it. The pass also stops after the
//! number of messages the queue held when it started, so dead letters arriving meanwhile
//! cannot keep it going. Releasing closes the channel instead of `nack`ing: RabbitMQ 4 counts
//! a `nack`-requeue against a quorum queue's delivery limit, but not a message a closed
//! channel gives back.
//!
//! The broker keeps a dead letter's expiry (`KYC_DEAD_LETTER_TTL`) from when it entered the
//! queue; returning it does not restart it, so reading never extends how long a sealed copy
//! of a person's job is kept.

use std::time::Duration;

use kyc_schemas::Vendor;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Acker, Channel};

use crate::amqp::{within, AmqpBroker};
use crate::topology::{
    ATTEMPTS_HEADER, DEAD_AT_HEADER, DEFERRALS_HEADER, REASON_HEADER, REQUEUES_HEADER,
};
use crate::{JobHeaders, QueueError, Result};

/// One death the broker recorded in the message's `x-death` header (a message it
/// dead-lettered itself: the delivery limit of a work queue was reached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// The queue the message died in.
    pub queue: String,
    /// The broker's reason: `delivery_limit`, `rejected`, `expired`, `maxlen`.
    pub reason: String,
    pub count: i64,
    /// When, in seconds since the epoch.
    pub time_s: Option<u64>,
}

/// A dead letter as read, held unacknowledged until settled or released.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The job id for messages we published.
    pub message_id: Option<String>,
    pub payload: Vec<u8>,
    /// Why a worker dead-lettered it (`x-kyc-dead-reason`); `None` for a message the broker
    /// dead-lettered by itself (see [`DeadLetter::deaths`]).
    pub reason: Option<String>,
    /// The job's counters as they were when it died.
    pub headers: JobHeaders,
    /// When a worker dead-lettered it (`x-kyc-dead-at`, ms since the epoch); copies made by
    /// older versions have none.
    pub dead_at_ms: Option<i64>,
    /// The broker's own records (`x-death`), newest first as the broker keeps them.
    pub deaths: Vec<Death>,
    /// How often the dead-letter queue delivered it before (reads by earlier lists count).
    pub delivery_count: Option<u32>,
    slot: usize,
}

impl DeadLetter {
    /// The reason in one line: the worker's, or the broker's last death's
    /// (`delivery_limit in kyc.jobs.huawei`).
    pub fn reason_text(&self) -> String {
        match (&self.reason, self.deaths.first()) {
            (Some(r), _) => r.clone(),
            (None, Some(d)) => format!("{} in {}", d.reason, d.queue),
            (None, None) => "unknown".into(),
        }
    }

    /// The work queue a broker-dead-lettered message died in, if any.
    pub fn died_in(&self) -> Option<&str> {
        self.deaths.last().map(|d| d.queue.as_str())
    }
}

/// A reader of one dead-letter queue; see the module documentation.
#[derive(Debug)]
pub struct DeadLetters {
    channel: Channel,
    queue: String,
    broker: AmqpBroker,
    /// The acknowledgement handle of each dead letter read; `None` once settled.
    held: Vec<Option<Acker>>,
}

impl AmqpBroker {
    /// Opens a reader of the dead-letter queue (its own channel, with publisher confirms for
    /// replays).
    pub async fn dead_letters(&self) -> Result<DeadLetters> {
        let channel = within(self.timeouts().connect, "open a channel", async {
            let ch = self.connection().create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok(ch)
        })
        .await?;
        Ok(DeadLetters {
            channel,
            queue: self.topology().dead_letter_queue(),
            broker: self.clone(),
            held: Vec::new(),
        })
    }
}

impl DeadLetters {
    /// Takes up to `limit` dead letters off the queue, oldest first, and holds them. Stops
    /// when the queue is empty for this reader, or after as many messages as the queue held
    /// at the start: each message is seen once.
    pub async fn read(&mut self, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut out = Vec::new();
        let mut remaining: Option<u32> = None;
        let wait = self.broker.timeouts().confirm;
        while out.len() < limit && remaining != Some(0) {
            let got = within(wait, "hand out a dead letter", async {
                Ok(self
                    .channel
                    .basic_get(
                        self.queue.as_str().into(),
                        BasicGetOptions { no_ack: false },
                    )
                    .await?)
            })
            .await?;
            let Some(msg) = got else { break };
            // The count after this message; from the first answer on, only what was there
            // then is read.
            remaining = Some(match remaining {
                None => msg.message_count,
                Some(n) => n.saturating_sub(1).min(msg.message_count),
            });
            let d = msg.delivery;
            let headers = d.properties.headers().clone().unwrap_or_default();
            let slot = self.held.len();
            self.held.push(Some(d.acker));
            out.push(DeadLetter {
                message_id: d.properties.message_id().as_ref().map(|s| s.to_string()),
                payload: d.data,
                reason: string(&headers, REASON_HEADER),
                headers: JobHeaders {
                    attempts: number(&headers, ATTEMPTS_HEADER).unwrap_or(0) as u32,
                    requeues: number(&headers, REQUEUES_HEADER).unwrap_or(0) as u32,
                    deferrals: number(&headers, DEFERRALS_HEADER).unwrap_or(0) as u32,
                },
                dead_at_ms: number(&headers, DEAD_AT_HEADER),
                deaths: deaths(&headers),
                delivery_count: number(&headers, "x-delivery-count").map(|n| n as u32),
                slot,
            });
        }
        Ok(out)
    }

    /// Publishes the dead letter's message to `vendor`'s work queue with fresh counters (no
    /// attempts, requeues or deferrals: a new budget), waits for the broker's confirm, and
    /// only then removes the dead letter. The message is never in neither queue; a failure
    /// before the confirm leaves the dead letter held (it returns on release).
    pub async fn replay(&mut self, dl: &DeadLetter, vendor: Vendor) -> Result<()> {
        let queue = self.broker.topology().work_queue(vendor);
        let id = dl.message_id.clone().unwrap_or_default();
        within(
            self.broker.timeouts().confirm,
            "confirm a replayed dead letter",
            async {
                let confirm = self
                    .channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &dl.payload,
                        crate::amqp::properties(&id, None),
                    )
                    .await?;
                crate::amqp::check_confirmed(confirm.await?, &id)
            },
        )
        .await?;
        self.remove(dl).await
    }

    /// Removes the dead letter from the queue for good.
    pub async fn remove(&mut self, dl: &DeadLetter) -> Result<()> {
        let acker = self
            .held
            .get_mut(dl.slot)
            .and_then(Option::take)
            .ok_or_else(|| QueueError::AlreadySettled {
                message_id: dl.message_id.clone().unwrap_or_default(),
            })?;
        acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Gives every dead letter not settled back to the queue, by closing the channel (see the
    /// module documentation), after the settled ones' acknowledgements.
    pub async fn release(self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.channel.close(200, "dead letters read".into()),
        )
        .await;
    }
}

fn header<'a>(h: &'a FieldTable, name: &str) -> Option<&'a AMQPValue> {
    h.inner().get(name)
}

fn as_i64(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

fn as_string(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn number(h: &FieldTable, name: &str) -> Option<i64> {
    header(h, name).and_then(as_i64)
}

fn string(h: &FieldTable, name: &str) -> Option<String> {
    header(h, name).and_then(as_string)
}

/// The `x-death` header: an array of tables, one per (queue, reason).
fn deaths(h: &FieldTable) -> Vec<Death> {
    let Some(AMQPValue::FieldArray(list)) = header(h, "x-death") else {
        return Vec::new();
    };
    list.as_slice()
        .iter()
        .filter_map(|v| match v {
            AMQPValue::FieldTable(t) => Some(Death {
                queue: string(t, "queue").unwrap_or_default(),
                reason: string(t, "reason").unwrap_or_default(),
                count: number(t, "count").unwrap_or(0),
                time_s: number(t, "time").and_then(|n| u64::try_from(n).ok()),
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString, ShortString};

    #[test]
    fn broker_deaths_are_read_from_x_death() {
        let mut death = FieldTable::default();
        death.insert(
            ShortString::from("queue"),
            AMQPValue::LongString(LongString::from("kyc.jobs.huawei")),
        );
        death.insert(
            ShortString::from("reason"),
            AMQPValue::LongString(LongString::from("delivery_limit")),
        );
        death.insert(ShortString::from("count"), AMQPValue::LongLongInt(1));
        death.insert(
            ShortString::from("time"),
            AMQPValue::Timestamp(1_700_000_000),
        );
        let mut h = FieldTable::default();
        h.insert(
            ShortString::from("x-death"),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        let d = deaths(&h);
        assert_eq!(
            d,
            vec![Death {
                queue: "kyc.jobs.huawei".into(),
                reason: "delivery_limit".into(),
                count: 1,
                time_s: Some(1_700_000_000),
            }]
        );
        let dl = DeadLetter {
            message_id: None,
            payload: Vec::new(),
            reason: None,
            headers: JobHeaders::default(),
            dead_at_ms: None,
            deaths: d,
            delivery_count: None,
            slot: 0,
        };
        assert_eq!(dl.reason_text(), "delivery_limit in kyc.jobs.huawei");
        assert_eq!(dl.died_in(), Some("kyc.jobs.huawei"));
    }
}
