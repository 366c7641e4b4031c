//! The embedded in-process queue: one unbounded MPMC channel per vendor. Same contract as
//! RabbitMQ (requeue puts the message back, dead letters are kept with their reason), minus
//! durability, which the embedded run does not need: its SQLite outcomes are the record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kyc_schemas::Vendor;

use crate::{Delivery, DeliveryHandle, JobHeaders, QueueError, Result};

#[derive(Debug)]
struct Message {
    payload: Vec<u8>,
    message_id: String,
    delivery_count: u32,
    headers: JobHeaders,
}

/// A message the embedded run dead-lettered, with its reason.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub message_id: Option<String>,
    pub reason: String,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
struct Inner {
    queues: HashMap<
        Vendor,
        (
            async_channel::Sender<Message>,
            async_channel::Receiver<Message>,
        ),
    >,
    // std Mutex: held only to push or copy, never across an await.
    dead: Mutex<Vec<DeadLetter>>,
}

#[derive(Debug, Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        let queues = Vendor::ALL
            .into_iter()
            .map(|v| (v, async_channel::unbounded()))
            .collect();
        Self {
            inner: Arc::new(Inner {
                queues,
                dead: Mutex::new(Vec::new()),
            }),
        }
    }
}

impl MemoryBroker {
    pub(crate) fn push(
        &self,
        vendor: Vendor,
        message_id: String,
        payload: Vec<u8>,
        delivery_count: u32,
    ) -> Result<()> {
        self.push_with(
            vendor,
            message_id,
            payload,
            delivery_count,
            JobHeaders::default(),
        )
    }

    fn push_with(
        &self,
        vendor: Vendor,
        message_id: String,
        payload: Vec<u8>,
        delivery_count: u32,
        headers: JobHeaders,
    ) -> Result<()> {
        self.inner.queues[&vendor]
            .0
            .try_send(Message {
                payload,
                message_id,
                delivery_count,
                headers,
            })
            .map_err(|_| QueueError::Closed)
    }

    pub(crate) fn consume(&self, vendor: Vendor) -> MemoryConsumer {
        MemoryConsumer {
            vendor,
            rx: self.inner.queues[&vendor].1.clone(),
            broker: self.clone(),
        }
    }

    /// Messages waiting in a vendor's queue.
    pub fn len(&self, vendor: Vendor) -> usize {
        self.inner.queues[&vendor].0.len()
    }

    pub fn is_empty(&self) -> bool {
        Vendor::ALL.into_iter().all(|v| self.len(v) == 0)
    }

    /// Closes every queue: consumers end once the queues are drained.
    pub fn close(&self) {
        for (tx, _) in self.inner.queues.values() {
            tx.close();
        }
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.inner.dead.lock().expect("dead-letter lock").clone()
    }
}

#[derive(Debug)]
pub struct MemoryConsumer {
    vendor: Vendor,
    rx: async_channel::Receiver<Message>,
    broker: MemoryBroker,
}

impl MemoryConsumer {
    pub(crate) async fn next(&mut self) -> Option<Delivery> {
        let m = self.rx.recv().await.ok()?;
        Some(Delivery {
            payload: m.payload,
            message_id: Some(m.message_id),
            delivery_count: m.delivery_count,
            headers: m.headers,
            handle: DeliveryHandle::Memory(MemoryDeliveryHandle {
                vendor: self.vendor,
                broker: self.broker.clone(),
            }),
        })
    }
}

#[derive(Debug)]
pub(crate) struct MemoryDeliveryHandle {
    vendor: Vendor,
    broker: MemoryBroker,
}

impl MemoryDeliveryHandle {
    pub(crate) fn requeue(
        self,
        payload: Vec<u8>,
        message_id: Option<String>,
        headers: JobHeaders,
    ) -> Result<()> {
        // Republished, as the AMQP side does: a fresh message with the job's counters.
        self.broker.push_with(
            self.vendor,
            message_id.unwrap_or_default(),
            payload,
            0,
            headers,
        )
    }

    pub(crate) fn delay(
        self,
        payload: Vec<u8>,
        message_id: Option<String>,
        wait: std::time::Duration,
        headers: JobHeaders,
    ) {
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = self.broker.push_with(
                self.vendor,
                message_id.unwrap_or_default(),
                payload,
                0,
                headers,
            );
        });
    }

    pub(crate) fn dead_letter(&self, payload: Vec<u8>, message_id: Option<String>, reason: String) {
        self.broker
            .inner
            .dead
            .lock()
            .expect("dead-letter lock")
            .push(DeadLetter {
                message_id,
                reason,
                payload,
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Broker, OutMessage};

    #[tokio::test]
    async fn requeued_messages_come_back_with_their_counters() {
        let broker = Broker::memory();
        let p = broker.publisher().await.unwrap();
        p.publish_confirmed(&[OutMessage {
            vendor: Vendor::Huawei,
            message_id: "j1".into(),
            payload: b"{}".to_vec(),
        }])
        .await
        .unwrap();
        let mut c = broker.consume(Vendor::Huawei, 1).await.unwrap();
        let d = c.next().await.unwrap().unwrap();
        assert_eq!(d.headers, JobHeaders::default());
        d.requeue(3).await.unwrap();
        let d = c.next().await.unwrap().unwrap();
        assert_eq!(
            d.headers,
            JobHeaders {
                attempts: 3,
                requeues: 1,
                deferrals: 0
            }
        );
        d.dead_letter("poison: not JSON").await.unwrap();
        let Broker::Memory(m) = &broker else {
            unreachable!()
        };
        assert_eq!(m.dead_letters()[0].reason, "poison: not JSON");
        assert_eq!(m.dead_letters()[0].message_id.as_deref(), Some("j1"));
    }
}
