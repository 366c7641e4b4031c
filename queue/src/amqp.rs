//! RabbitMQ through lapin. Publishing pipelines confirms per window; consuming uses manual
//! acks so that a message is only removed once its job's effects are committed. [`connect`]
//! opens every connection, so an `amqps://` broker is always verified the same way.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kyc_schemas::Vendor;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties,
    DefaultConnectionBuilder, ExchangeKind,
};

use crate::topology::{
    delay_bucket, ATTEMPTS_HEADER, DEAD_AT_HEADER, DEFERRALS_HEADER, DELAY_BUCKETS, DELIVERY_LIMIT,
    REASON_HEADER, REQUEUES_HEADER,
};
use crate::{Delivery, DeliveryHandle, JobHeaders, OutMessage, QueueError, Result, Topology};

/// How long broker operations may wait for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmqpTimeouts {
    /// Opening the connection (TCP, TLS and the AMQP handshake).
    pub connect: Duration,
    /// A publish until the broker's confirm: a window of the producer's, a worker's copy to a
    /// delay or dead-letter queue.
    pub confirm: Duration,
}

/// 30 s each: a healthy broker answers in milliseconds; one that blocks publishers (a memory
/// alarm) can stay blocked for good.
impl Default for AmqpTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            confirm: Duration::from_secs(30),
        }
    }
}

/// Runs `op`, failing with [`QueueError::Timeout`] naming `what` if it takes longer than
/// `after`.
pub(crate) async fn within<T>(
    after: Duration,
    what: &'static str,
    op: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(after, op)
        .await
        .unwrap_or(Err(QueueError::Timeout { what, after }))
}

/// [`connect`], given up after `timeout` (a server that accepts the connection and never
/// answers would otherwise hold the caller forever).
pub async fn connect_within(
    url: &str,
    ca_pem: Option<&str>,
    timeout: Duration,
) -> Result<Connection> {
    within(timeout, "accept the connection", connect(url, ca_pem)).await
}

/// Opens a connection to the broker at `url`. An `amqps://` broker's certificate is always
/// verified, against the system's roots plus `ca_pem` (PEM certificates, for a private CA);
/// lapin has no switch to turn verification off, and none is offered here. A CA with a plain
/// `amqp://` URL is refused: whoever set it expected an encrypted connection.
pub async fn connect(url: &str, ca_pem: Option<&str>) -> Result<Connection> {
    if ca_pem.is_some() && !url.starts_with("amqps://") {
        return Err(QueueError::CaWithoutTls);
    }
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: ca_pem.map(str::to_string),
    };
    Ok(DefaultConnectionBuilder::new()?
        .with_uri_str(url.to_string())
        .with_properties(ConnectionProperties::default())
        .with_tls_config(tls)
        .connect()
        .await?)
}

#[derive(Debug, Clone)]
pub struct AmqpBroker {
    pub(crate) conn: Arc<Connection>,
    topology: Topology,
    timeouts: AmqpTimeouts,
}

impl AmqpBroker {
    pub(crate) async fn connect(
        url: &str,
        ca_pem: Option<&str>,
        topology: Topology,
        timeouts: AmqpTimeouts,
    ) -> Result<Self> {
        let conn = connect_within(url, ca_pem, timeouts.connect).await?;
        Ok(Self {
            conn: Arc::new(conn),
            topology,
            timeouts,
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn timeouts(&self) -> AmqpTimeouts {
        self.timeouts
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.conn.status().connected()
    }

    pub(crate) async fn close(&self) {
        // Bounded: the close handshake can wait forever on a busy broker, and a process that
        // is done must not hang on its way out (unacked deliveries go back either way).
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.conn.close(200, "bye".into()),
        )
        .await;
    }

    pub(crate) async fn declare(&self) -> Result<()> {
        let ch = self.conn.create_channel().await?;
        let t = &self.topology;
        ch.exchange_declare(
            t.dead_letter_exchange().as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
        // Dead letters expire: they are copies of jobs, kept for an operator to inspect, not
        // an archive. The TTL is a queue argument, so an existing queue declared without it
        // (or with another value) makes RabbitMQ refuse this declaration; say what to do.
        let mut dead_args = quorum_args(None);
        dead_args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(t.dead_letter_ttl.as_millis().min(i64::MAX as u128) as i64),
        );
        ch.queue_declare(
            t.dead_letter_queue().as_str().into(),
            QueueDeclareOptions::durable(),
            dead_args,
        )
        .await
        .map_err(|e| {
            if e.to_string().contains("PRECONDITION_FAILED") {
                QueueError::QueueArguments {
                    queue: t.dead_letter_queue(),
                }
            } else {
                e.into()
            }
        })?;
        ch.queue_bind(
            t.dead_letter_queue().as_str().into(),
            t.dead_letter_exchange().as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        for vendor in Vendor::ALL {
            ch.queue_declare(
                t.work_queue(vendor).as_str().into(),
                QueueDeclareOptions::durable(),
                quorum_args(Some(&t.dead_letter_exchange())),
            )
            .await?;
            for bucket in DELAY_BUCKETS {
                // A replicated queue with one TTL; expired messages are dead-lettered through the
                // default exchange straight back to the vendor's work queue, at least once
                // (RabbitMQ's default is at most once, which could drop a parked job).
                let mut args = FieldTable::default();
                args.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString("quorum".into()),
                );
                args.insert(
                    "x-message-ttl".into(),
                    AMQPValue::LongLongInt((bucket * 1000) as i64),
                );
                args.insert(
                    "x-dead-letter-exchange".into(),
                    AMQPValue::LongString("".into()),
                );
                args.insert(
                    "x-dead-letter-routing-key".into(),
                    AMQPValue::LongString(t.work_queue(vendor).as_str().into()),
                );
                args.insert(
                    "x-dead-letter-strategy".into(),
                    AMQPValue::LongString("at-least-once".into()),
                );
                // At-least-once dead-lettering requires this overflow mode.
                args.insert(
                    "x-overflow".into(),
                    AMQPValue::LongString("reject-publish".into()),
                );
                ch.queue_declare(
                    t.delay_queue(vendor, bucket).as_str().into(),
                    QueueDeclareOptions::durable(),
                    args,
                )
                .await?;
            }
        }
        let _ = ch.close(200, "declared".into()).await;
        Ok(())
    }

    pub(crate) async fn publisher(&self) -> Result<AmqpPublisher> {
        let channel = self.conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(AmqpPublisher {
            channel,
            topology: self.topology.clone(),
            confirm_timeout: self.timeouts.confirm,
        })
    }

    /// (ready messages, consumers) of a vendor's work queue, by a passive declare: it creates
    /// nothing and fails if the queue does not exist.
    pub(crate) async fn work_queue_state(&self, vendor: Vendor) -> Result<(u32, u32)> {
        let ch = self.conn.create_channel().await?;
        let q = ch
            .queue_declare(
                self.topology.work_queue(vendor).as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let _ = ch.close(200, "ok".into()).await;
        Ok((q.message_count(), q.consumer_count()))
    }

    pub(crate) async fn consume(&self, vendor: Vendor, prefetch: u16) -> Result<AmqpConsumer> {
        let channel = self.conn.create_channel().await?;
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await?;
        // Confirms on the consuming channel make dead-letter copies reliable: the original is
        // acked only after the broker confirmed the copy.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                self.topology.work_queue(vendor).as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(AmqpConsumer {
            consumer,
            channel,
            topology: self.topology.clone(),
            vendor,
            confirm_timeout: self.timeouts.confirm,
        })
    }
}

fn quorum_args(dead_letter_exchange: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(dlx) = dead_letter_exchange {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
    }
    args
}

pub(crate) fn properties(message_id: &str, headers: Option<FieldTable>) -> BasicProperties {
    let p = BasicProperties::default()
        .with_message_id(message_id.into())
        .with_content_type("application/json".into())
        // 2 = persistent: the message survives a broker restart.
        .with_delivery_mode(2);
    match headers {
        Some(h) => p.with_headers(h),
        None => p,
    }
}

#[derive(Debug)]
pub struct AmqpPublisher {
    channel: Channel,
    topology: Topology,
    confirm_timeout: Duration,
}

impl AmqpPublisher {
    pub(crate) async fn publish(&self, messages: &[OutMessage]) -> Result<crate::Pending> {
        let mut pending = Vec::with_capacity(messages.len());
        for m in messages {
            // `mandatory` makes an unroutable message come back instead of vanishing. Sending
            // is bounded too: a blocked connection stops taking frames.
            let confirm = within(self.confirm_timeout, "take a published message", async {
                Ok(self
                    .channel
                    .basic_publish(
                        "".into(),
                        self.topology.work_queue(m.vendor).as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &m.payload,
                        properties(&m.message_id, None),
                    )
                    .await?)
            })
            .await?;
            pending.push((m.message_id.clone(), confirm));
        }
        Ok(crate::Pending {
            confirms: pending,
            timeout: Some(self.confirm_timeout),
        })
    }
}

pub(crate) async fn wait_confirms(pending: Vec<(String, lapin::PublisherConfirm)>) -> Result<()> {
    for (message_id, confirm) in pending {
        check_confirmed(confirm.await?, &message_id)?;
    }
    Ok(())
}

pub(crate) fn check_confirmed(c: Confirmation, message_id: &str) -> Result<()> {
    match c {
        Confirmation::Ack(None) => Ok(()),
        _ => Err(QueueError::NotConfirmed {
            message_id: message_id.to_string(),
        }),
    }
}

#[derive(Debug)]
pub struct AmqpConsumer {
    consumer: lapin::Consumer,
    channel: Channel,
    topology: Topology,
    vendor: Vendor,
    confirm_timeout: Duration,
}

impl AmqpConsumer {
    pub(crate) async fn next(&mut self) -> Option<Result<Delivery>> {
        // `None`: the consumer was cancelled. `Err` is always followed by `None`.
        let d = match self.consumer.next().await? {
            Ok(d) => d,
            Err(e) => return Some(Err(e.into())),
        };
        let header = |name: &str| {
            d.properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(name).cloned())
                .and_then(|v| match v {
                    AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
                    AMQPValue::LongInt(n) => u32::try_from(n).ok(),
                    AMQPValue::LongUInt(n) => Some(n),
                    AMQPValue::ShortInt(n) => u32::try_from(n).ok(),
                    _ => None,
                })
        };
        let delivery_count = header("x-delivery-count").unwrap_or(u32::from(d.redelivered));
        let headers = JobHeaders {
            attempts: header(ATTEMPTS_HEADER).unwrap_or(0),
            requeues: header(REQUEUES_HEADER).unwrap_or(0),
            deferrals: header(DEFERRALS_HEADER).unwrap_or(0),
        };
        Some(Ok(Delivery {
            message_id: d.properties.message_id().as_ref().map(|s| s.to_string()),
            delivery_count,
            headers,
            payload: d.data,
            handle: DeliveryHandle::Amqp(Box::new(AmqpDeliveryHandle {
                acker: d.acker,
                channel: self.channel.clone(),
                topology: self.topology.clone(),
                vendor: self.vendor,
                confirm_timeout: self.confirm_timeout,
            })),
        }))
    }
}

#[derive(Debug)]
pub(crate) struct AmqpDeliveryHandle {
    acker: lapin::Acker,
    channel: Channel,
    topology: Topology,
    vendor: Vendor,
    /// Bounds the copy to a delay or dead-letter queue (publish and confirm).
    confirm_timeout: Duration,
}

impl AmqpDeliveryHandle {
    pub(crate) async fn ack(self) -> Result<()> {
        self.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Hands the message back as it was (no counters updated): the fallback when a
    /// republish fails.
    async fn nack_requeue(self) -> Result<()> {
        self.acker
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await?;
        Ok(())
    }

    /// Republishes the message to its work queue with the job's counters (confirmed), then
    /// acks the original.
    pub(crate) async fn requeue(
        self,
        payload: &[u8],
        message_id: Option<&str>,
        headers: JobHeaders,
    ) -> Result<()> {
        let queue = self.topology.work_queue(self.vendor);
        self.move_to(&queue, payload, message_id, table(headers))
            .await
    }

    /// Parks the message in a delay queue (confirmed), then acks it: it comes back to the
    /// work queue after the bucket's wait, with the job's counters in its headers.
    pub(crate) async fn delay(
        self,
        payload: &[u8],
        message_id: Option<&str>,
        wait: std::time::Duration,
        headers: JobHeaders,
    ) -> Result<()> {
        let queue = self.topology.delay_queue(self.vendor, delay_bucket(wait));
        self.move_to(&queue, payload, message_id, table(headers))
            .await
    }

    pub(crate) async fn dead_letter(
        self,
        payload: &[u8],
        message_id: Option<&str>,
        reason: &str,
        headers: JobHeaders,
    ) -> Result<()> {
        let queue = self.topology.dead_letter_queue();
        self.move_to(&queue, payload, message_id, dead_table(reason, headers))
            .await
    }

    /// Publishes a copy to the dead-letter queue and waits for the broker's confirm; the
    /// delivery itself stays unsettled.
    pub(crate) async fn copy_to_dead_letter(
        &self,
        payload: &[u8],
        message_id: Option<&str>,
        reason: &str,
        headers: JobHeaders,
    ) -> Result<()> {
        let queue = self.topology.dead_letter_queue();
        self.publish_confirmed(&queue, payload, message_id, dead_table(reason, headers))
            .await
    }

    /// Publishes to `queue` and waits (at most the confirm timeout) for the broker's confirm.
    async fn publish_confirmed(
        &self,
        queue: &str,
        payload: &[u8],
        message_id: Option<&str>,
        headers: FieldTable,
    ) -> Result<()> {
        let id = message_id.unwrap_or("unknown");
        within(
            self.confirm_timeout,
            "confirm a copy to another queue",
            async {
                let confirm = self
                    .channel
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        payload,
                        properties(id, Some(headers)),
                    )
                    .await?;
                check_confirmed(confirm.await?, id)
            },
        )
        .await
    }

    /// Publishes a copy to `queue` with `headers`, waits for the broker's confirm, and only
    /// then acks the original: the message is never in neither place.
    async fn move_to(
        self,
        queue: &str,
        payload: &[u8],
        message_id: Option<&str>,
        headers: FieldTable,
    ) -> Result<()> {
        match self
            .publish_confirmed(queue, payload, message_id, headers)
            .await
        {
            Ok(()) => self.ack().await,
            Err(e) => {
                // No copy: hand the original back rather than leave it unacked on the channel
                // (bounded too: a blocked connection may not take the nack either; then the
                // original returns to the queue when the channel closes).
                let after = self.confirm_timeout;
                let _ = tokio::time::timeout(after, self.nack_requeue()).await;
                Err(e)
            }
        }
    }
}

/// The job's counters as message headers.
fn table(h: JobHeaders) -> FieldTable {
    let mut t = FieldTable::default();
    for (name, n) in [
        (ATTEMPTS_HEADER, h.attempts),
        (REQUEUES_HEADER, h.requeues),
        (DEFERRALS_HEADER, h.deferrals),
    ] {
        t.insert(
            ShortString::from(name),
            AMQPValue::LongLongInt(i64::from(n)),
        );
    }
    t
}

/// A dead letter's headers: the reason, and the counters (an operator sees what was spent).
fn dead_table(reason: &str, h: JobHeaders) -> FieldTable {
    let mut t = table(h);
    t.insert(
        ShortString::from(REASON_HEADER),
        AMQPValue::LongString(LongString::from(reason)),
    );
    t.insert(
        ShortString::from(DEAD_AT_HEADER),
        AMQPValue::LongLongInt(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        ),
    );
    t
}
