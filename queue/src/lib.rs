//! The job queue between producer and workers: RabbitMQ in server mode, an in-process
//! channel in embedded mode, behind one small API so the stages do not care which.
//!
//! # Layout
//! - [`topology`]: queue names, arguments and headers (one durable quorum queue per vendor,
//!   a dead-letter exchange and queue, a delivery limit as the poison-message backstop, the
//!   job's own counters: [`JobHeaders`])
//! - [`amqp`]: lapin: publishing with pipelined confirms, consuming with manual acks
//! - [`memory`]: the embedded in-process queue with the same semantics
//! - [`verify`]: does the broker hold the queues this version declares, with its arguments
//!   (`kyc doctor`), and how many messages each holds (`kyc status`)
//! - [`dead_letters`]: reading the dead-letter queue without losing messages; replaying
//!   (confirmed, fresh counters) and removing single dead letters
//!
//! One queue per vendor means a throttled vendor's backlog never blocks the others' jobs.
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod amqp;
pub mod dead_letters;
pub mod memory;
pub mod topology;
pub mod verify;

use kyc_schemas::Vendor;

pub use amqp::AmqpTimeouts;
pub use topology::Topology;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("a CA certificate is configured for the broker, but its URL is not amqps://")]
    CaWithoutTls,
    #[error("the broker refused message {message_id} (nack or unroutable)")]
    NotConfirmed { message_id: String },
    #[error("dead letter {message_id} was already replayed or removed by this reader")]
    AlreadySettled { message_id: String },
    #[error("the in-process queue is closed")]
    Closed,
    /// The broker did not answer in time (a hung server, a memory or disk alarm blocking
    /// publishers): `what` was abandoned after `after`.
    #[error("the broker did not {what} within {after:?} (KYC_AMQP_TIMEOUT)")]
    Timeout {
        what: &'static str,
        after: std::time::Duration,
    },
    #[error("queue {queue} exists with other arguments than this version declares (a dead-letter TTL was added or changed, KYC_DEAD_LETTER_TTL); move its messages elsewhere if you need them, delete it (rabbitmqctl delete_queue {queue}) and start again: it is declared anew")]
    QueueArguments { queue: String },
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// A message to publish.
#[derive(Debug, Clone)]
pub struct OutMessage {
    pub vendor: Vendor,
    /// The job id; brokers and logs show it, and it carries no PII.
    pub message_id: String,
    pub payload: Vec<u8>,
}

/// Either broker. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Broker {
    Amqp(amqp::AmqpBroker),
    Memory(memory::MemoryBroker),
}

impl Broker {
    /// Connects to RabbitMQ; `ca_pem` adds trusted CA certificates for an `amqps://` broker
    /// (see [`amqp::connect`]).
    pub async fn connect_amqp(url: &str, ca_pem: Option<&str>, topology: Topology) -> Result<Self> {
        Self::connect_amqp_with(url, ca_pem, topology, AmqpTimeouts::default()).await
    }

    /// Like [`Broker::connect_amqp`], with the connect and confirm bounds given.
    pub async fn connect_amqp_with(
        url: &str,
        ca_pem: Option<&str>,
        topology: Topology,
        timeouts: AmqpTimeouts,
    ) -> Result<Self> {
        Ok(Broker::Amqp(
            amqp::AmqpBroker::connect(url, ca_pem, topology, timeouts).await?,
        ))
    }

    pub fn memory() -> Self {
        Broker::Memory(memory::MemoryBroker::default())
    }

    /// Declares queues and exchanges; idempotent, called by every producer and worker.
    pub async fn declare(&self) -> Result<()> {
        match self {
            Broker::Amqp(b) => {
                amqp::within(b.timeouts().connect, "declare the queues", b.declare()).await
            }
            Broker::Memory(_) => Ok(()),
        }
    }

    pub async fn publisher(&self) -> Result<Publisher> {
        match self {
            Broker::Amqp(b) => Ok(Publisher::Amqp(
                amqp::within(
                    b.timeouts().connect,
                    "open a publishing channel",
                    b.publisher(),
                )
                .await?,
            )),
            Broker::Memory(b) => Ok(Publisher::Memory(b.clone())),
        }
    }

    /// Starts consuming one vendor's queue with at most `prefetch` unacked deliveries.
    pub async fn consume(&self, vendor: Vendor, prefetch: u16) -> Result<Consumer> {
        match self {
            Broker::Amqp(b) => Ok(Consumer::Amqp(Box::new(
                amqp::within(
                    b.timeouts().connect,
                    "start a consumer",
                    b.consume(vendor, prefetch),
                )
                .await?,
            ))),
            Broker::Memory(b) => Ok(Consumer::Memory(b.consume(vendor))),
        }
    }

    /// (ready messages, consumers) of a vendor's work queue (the in-process queue has no
    /// consumer count: 0).
    pub async fn work_queue_state(&self, vendor: Vendor) -> Result<(u32, u32)> {
        match self {
            Broker::Amqp(b) => {
                amqp::within(
                    b.timeouts().connect,
                    "read a queue's state",
                    b.work_queue_state(vendor),
                )
                .await
            }
            Broker::Memory(b) => Ok((b.len(vendor) as u32, 0)),
        }
    }

    /// Readiness probe.
    pub fn is_connected(&self) -> bool {
        match self {
            Broker::Amqp(b) => b.is_connected(),
            Broker::Memory(_) => true,
        }
    }

    pub async fn close(&self) {
        if let Broker::Amqp(b) = self {
            b.close().await;
        }
    }
}

/// Publishes messages and waits for the broker to take responsibility for them.
#[derive(Debug)]
pub enum Publisher {
    Amqp(amqp::AmqpPublisher),
    Memory(memory::MemoryBroker),
}

impl Publisher {
    /// Publishes a window of messages back to back, then waits for every confirm: one round
    /// trip per window rather than per message. Returns once all are confirmed; an error
    /// names the first message the broker refused.
    pub async fn publish_confirmed(&self, messages: &[OutMessage]) -> Result<()> {
        self.publish(messages).await?.confirmed().await
    }

    /// Publishes a window without waiting for the broker's confirms; the caller awaits
    /// [`Pending::confirmed`] later, and can do other work (the next window's database
    /// writes) in the meantime.
    pub async fn publish(&self, messages: &[OutMessage]) -> Result<Pending> {
        match self {
            Publisher::Amqp(p) => p.publish(messages).await,
            Publisher::Memory(b) => {
                for m in messages {
                    b.push(m.vendor, m.message_id.clone(), m.payload.clone(), 0)?;
                }
                Ok(Pending {
                    confirms: Vec::new(),
                    timeout: None,
                })
            }
        }
    }
}

/// Confirms still to come for a published window.
#[derive(Debug)]
#[must_use = "a window is only safe once its confirms have arrived"]
pub struct Pending {
    confirms: Vec<(String, lapin::PublisherConfirm)>,
    /// How long the whole window's confirms may take.
    timeout: Option<std::time::Duration>,
}

impl Pending {
    /// Waits until the broker has taken responsibility for every message of the window, or
    /// fails with [`QueueError::Timeout`]: a broker that blocks publishers (memory or disk
    /// alarm) must stop the producer loudly, not hang it.
    pub async fn confirmed(self) -> Result<()> {
        match self.timeout {
            Some(after) => {
                amqp::within(after, "confirm a published window", async {
                    amqp::wait_confirms(self.confirms).await
                })
                .await
            }
            None => amqp::wait_confirms(self.confirms).await,
        }
    }
}

/// A stream of deliveries from one vendor's queue.
#[derive(Debug)]
pub enum Consumer {
    // Boxed: lapin's consumer is ten times the size of the in-process one.
    Amqp(Box<amqp::AmqpConsumer>),
    Memory(memory::MemoryConsumer),
}

impl Consumer {
    /// The next delivery; `None` when the consumer was cancelled or the queue closed.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        match self {
            Consumer::Amqp(c) => c.next().await,
            Consumer::Memory(c) => c.next().await.map(Ok),
        }
    }
}

/// The job's own counters, carried in the message's headers: a worker that hands a job back
/// (requeue, delay queue) republishes it with them, so they survive whatever the broker does
/// with its delivery count. A message from a worker killed mid-job comes back as it was;
/// the ledger's count of the job's calls covers that case (see the worker's `process`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobHeaders {
    /// Vendor calls made for the job by earlier deliveries.
    pub attempts: u32,
    /// Times a worker handed the job back for a local failure (database, storage).
    pub requeues: u32,
    /// Times the job went through a delay queue.
    pub deferrals: u32,
}

/// One delivered message. Exactly one of `ack`, `requeue`, `delay` or `dead_letter` must be
/// called; a delivery dropped without any of them is redelivered when the channel closes.
#[derive(Debug)]
pub struct Delivery {
    pub payload: Vec<u8>,
    pub message_id: Option<String>,
    /// How many times the broker says it delivered this message before (0 on first
    /// delivery). Informational: decisions use [`Delivery::headers`].
    pub delivery_count: u32,
    pub headers: JobHeaders,
    handle: DeliveryHandle,
}

#[derive(Debug)]
enum DeliveryHandle {
    // Boxed: a channel, an acker and the topology make it ten times the in-process handle.
    Amqp(Box<amqp::AmqpDeliveryHandle>),
    Memory(memory::MemoryDeliveryHandle),
}

impl Delivery {
    /// Acknowledge: the job's effects are committed and the message can go.
    pub async fn ack(self) -> Result<()> {
        match self.handle {
            DeliveryHandle::Amqp(h) => h.ack().await,
            DeliveryHandle::Memory(_) => Ok(()),
        }
    }

    /// Give the message back for another worker after a transient local failure, with
    /// `requeues` one higher and `attempts` (the job's vendor calls so far) in its headers:
    /// republished to the work queue (confirmed), then acked. If the republish fails the
    /// original is `nack`ed back as it was.
    pub async fn requeue(self, attempts: u32) -> Result<()> {
        let headers = JobHeaders {
            attempts,
            requeues: self.headers.requeues + 1,
            ..self.headers
        };
        match self.handle {
            DeliveryHandle::Amqp(h) => {
                h.requeue(&self.payload, self.message_id.as_deref(), headers)
                    .await
            }
            DeliveryHandle::Memory(h) => h.requeue(self.payload, self.message_id, headers),
        }
    }

    /// Park the message for at least `wait` (rounded up to a delay bucket) without holding a
    /// worker slot; it then comes back with `deferrals` one higher and `attempts` (the job's
    /// vendor calls so far) in its headers.
    pub async fn delay(self, wait: std::time::Duration, attempts: u32) -> Result<()> {
        let headers = JobHeaders {
            attempts,
            deferrals: self.headers.deferrals + 1,
            ..self.headers
        };
        match self.handle {
            DeliveryHandle::Amqp(h) => {
                h.delay(&self.payload, self.message_id.as_deref(), wait, headers)
                    .await
            }
            DeliveryHandle::Memory(h) => {
                h.delay(self.payload, self.message_id, wait, headers);
                Ok(())
            }
        }
    }

    /// Publishes a copy of the message to the dead-letter queue with a reason header and
    /// waits for the broker's confirm, leaving this delivery unsettled: the caller records
    /// that the copy exists, then acks. The reason must not contain PII.
    ///
    /// `attempts`: the vendor calls the job spent in all, for the copy's attempts header
    /// (this delivery's header counts only what earlier deliveries spent).
    pub async fn copy_to_dead_letter(&self, reason: &str, attempts: u32) -> Result<()> {
        match &self.handle {
            DeliveryHandle::Amqp(h) => {
                h.copy_to_dead_letter(
                    &self.payload,
                    self.message_id.as_deref(),
                    reason,
                    JobHeaders {
                        attempts,
                        ..self.headers
                    },
                )
                .await
            }
            DeliveryHandle::Memory(h) => {
                h.dead_letter(
                    self.payload.clone(),
                    self.message_id.clone(),
                    reason.to_string(),
                );
                Ok(())
            }
        }
    }

    /// Park the message like [`Delivery::delay`], keeping all its counters: it is not a
    /// retry of the job, only a wait for another delivery that holds the job.
    pub async fn park(self, wait: std::time::Duration) -> Result<()> {
        let headers = self.headers;
        match self.handle {
            DeliveryHandle::Amqp(h) => {
                h.delay(&self.payload, self.message_id.as_deref(), wait, headers)
                    .await
            }
            DeliveryHandle::Memory(h) => {
                h.delay(self.payload, self.message_id, wait, headers);
                Ok(())
            }
        }
    }

    /// Move the message to the dead-letter queue with a reason header, then ack it.
    /// The reason must not contain PII: callers pass error kinds and field names only.
    pub async fn dead_letter(self, reason: &str) -> Result<()> {
        match self.handle {
            DeliveryHandle::Amqp(h) => {
                h.dead_letter(
                    &self.payload,
                    self.message_id.as_deref(),
                    reason,
                    self.headers,
                )
                .await
            }
            DeliveryHandle::Memory(h) => {
                h.dead_letter(self.payload, self.message_id, reason.to_string());
                Ok(())
            }
        }
    }
}
