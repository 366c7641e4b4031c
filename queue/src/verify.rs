//! Checks the broker against the topology without changing it: for `kyc doctor` (are the
//! queues there, with the arguments this version declares?) and `kyc status` (how many
//! messages wait in each).
//!
//! A passive declare says whether a queue exists and how many messages it holds, but ignores
//! arguments. So the arguments are checked by running the ordinary declaration, and only
//! once every queue is known to exist: it then creates no queue, and RabbitMQ answers
//! `PRECONDITION_FAILED` (naming the queue and the argument) for one declared otherwise.

use kyc_schemas::Vendor;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::topology::DELAY_BUCKETS;
use crate::{Broker, QueueError, Topology};

/// What the broker holds for one queue name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueState {
    /// It exists; `messages` are ready (not counting those delivered and unacked).
    Present {
        messages: u32,
        consumers: u32,
    },
    Missing,
}

/// Every queue name the topology declares: per vendor the work queue and its delay queues,
/// then the dead-letter queue.
pub fn queue_names(t: &Topology) -> Vec<String> {
    let mut names = Vec::new();
    for v in Vendor::ALL {
        names.push(t.work_queue(v));
        for b in DELAY_BUCKETS {
            names.push(t.delay_queue(v, b));
        }
    }
    names.push(t.dead_letter_queue());
    names
}

impl Broker {
    /// Passive-declares every queue of the topology (each on its own channel: a missing
    /// queue closes the channel it was asked on). Creates nothing. Empty for the in-process
    /// queue, which has no broker to ask.
    pub async fn queue_states(&self) -> Result<Vec<(String, QueueState)>, QueueError> {
        let Broker::Amqp(b) = self else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for name in queue_names(b.topology()) {
            let state =
                crate::amqp::within(b.timeouts().connect, "answer a passive declare", async {
                    let ch = b.conn.create_channel().await?;
                    let r = ch
                        .queue_declare(
                            name.as_str().into(),
                            QueueDeclareOptions {
                                passive: true,
                                ..Default::default()
                            },
                            FieldTable::default(),
                        )
                        .await;
                    Ok(match r {
                        Ok(q) => {
                            let _ = ch.close(200, "checked".into()).await;
                            QueueState::Present {
                                messages: q.message_count(),
                                consumers: q.consumer_count(),
                            }
                        }
                        Err(e) if e.to_string().contains("NOT_FOUND") => QueueState::Missing,
                        Err(e) => return Err(e.into()),
                    })
                })
                .await?;
            out.push((name, state));
        }
        Ok(out)
    }

    /// Whether every queue exists with the arguments this version declares: `Ok(missing)`
    /// lists the queues that do not exist (then the arguments were not checked), an error
    /// names a queue declared with other arguments. Creates no queue.
    pub async fn verify_topology(&self) -> Result<Vec<String>, QueueError> {
        let missing: Vec<String> = self
            .queue_states()
            .await?
            .into_iter()
            .filter(|(_, s)| *s == QueueState::Missing)
            .map(|(n, _)| n)
            .collect();
        if missing.is_empty() {
            self.declare().await?;
        }
        Ok(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vendor_has_a_work_queue_and_its_delay_queues() {
        let names = queue_names(&Topology::new("t"));
        assert_eq!(
            names.len(),
            Vendor::ALL.len() * (1 + DELAY_BUCKETS.len()) + 1
        );
        assert!(names.contains(&"t.jobs.baidu".to_string()));
        assert!(names.contains(&"t.delay.huawei.600s".to_string()));
        assert_eq!(names.last().unwrap(), "t.dead");
    }
}
