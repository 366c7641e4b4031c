//! The run loop: one consumer per vendor queue, each with its own concurrency bound, so a
//! throttled vendor never takes slots from the others. Shutdown is a future passed in: when
//! it resolves, consumers stop taking deliveries, in-flight jobs get `shutdown_grace` to
//! commit and ack, and whatever is left unacked goes back to the broker for redelivery.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kyc_queue::{Broker, Delivery};
use kyc_schemas::Vendor;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::concurrency::{self, Gate};
use crate::process::{process, Disposition};
use crate::SharedContext;

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub vendors: Vec<Vendor>,
    /// Jobs in flight per vendor; `None` lets the limit follow the quota (see
    /// [`crate::concurrency`]).
    pub concurrency: Option<usize>,
    /// Unacked deliveries the broker may push ahead, per vendor; `None`: the most jobs the
    /// vendor's limit may reach, so the broker never holds the limit back.
    pub prefetch: Option<u16>,
    pub shutdown_grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            vendors: Vendor::ALL.to_vec(),
            concurrency: None,
            prefetch: None,
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

/// Consumes until `shutdown` resolves (or every queue closes), then drains.
pub async fn run(
    ctx: SharedContext,
    broker: Broker,
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), kyc_queue::QueueError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut vendors = JoinSet::new();
    for vendor in settings.vendors.clone() {
        let gate = match settings.concurrency {
            Some(n) => Gate::fixed(n),
            None => {
                let (initial, ceiling) = concurrency::bounds(&ctx.limiters, vendor.as_str());
                Gate::new(initial, concurrency::FLOOR.min(ceiling), ceiling)
            }
        };
        // Quorum queues take no change of prefetch on a live consumer, so the broker may
        // push ahead as many deliveries as the limit may ever reach; the gate, not the
        // prefetch, decides how many are worked on.
        let prefetch = settings
            .prefetch
            .unwrap_or_else(|| u16::try_from(gate.ceiling()).unwrap_or(u16::MAX));
        let consumer = broker.consume(vendor, prefetch).await?;
        vendors.spawn(consume_vendor(
            ctx.clone(),
            consumer,
            vendor,
            gate,
            settings.concurrency.is_none(),
            settings.clone(),
            stop_rx.clone(),
        ));
    }
    let mut failure = None;
    tokio::select! {
        _ = shutdown => {
            tracing::info!("shutdown requested: no new deliveries, draining in-flight jobs");
            let _ = stop_tx.send(true);
        }
        // A consumer that ends by itself (error, cancellation or panic) lost its broker: stop
        // the others too, so the process exits non-zero and its orchestrator restarts it.
        Some(ended) = vendors.join_next() => {
            failure = Some(match ended {
                Ok(Err(e)) => e,
                _ => kyc_queue::QueueError::Closed,
            });
            let _ = stop_tx.send(true);
        }
    }
    while let Some(r) = vendors.join_next().await {
        if let Ok(Err(e)) = r {
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

async fn consume_vendor(
    ctx: SharedContext,
    mut consumer: kyc_queue::Consumer,
    vendor: Vendor,
    gate: Arc<Gate>,
    adaptive: bool,
    settings: WorkerSettings,
    mut stop: watch::Receiver<bool>,
) -> Result<(), kyc_queue::QueueError> {
    let mut failure = None;
    let controller = adaptive.then(|| {
        tokio::spawn(concurrency::control(
            gate.clone(),
            ctx.clone(),
            vendor.as_str(),
        ))
    });
    ctx.metrics.concurrency_limit(vendor.as_str(), gate.limit());
    let mut tasks = JoinSet::new();
    loop {
        // Pass the gate first, so a delivery is only pulled when it can start at once.
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = gate.enter() => p,
        };
        let next = tokio::select! {
            _ = stop.changed() => break,
            d = consumer.next() => d,
        };
        match next {
            // The consumer was cancelled or the queue closed.
            None => break,
            Some(Err(e)) => {
                tracing::error!(vendor = vendor.as_str(), error = %e, "consumer failed");
                failure = Some(e);
                break;
            }
            Some(Ok(delivery)) => {
                let ctx = ctx.clone();
                ctx.metrics.in_flight(1);
                ctx.metrics.progress.took(vendor.as_str());
                tasks.spawn(async move {
                    // Settled on every way out, also when the task is aborted at the end of
                    // the grace period: the watermark must not count a delivery forever.
                    let _held = Held(ctx.clone(), vendor);
                    handle(&ctx, vendor, delivery).await;
                    drop(permit);
                });
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    if let Some(c) = controller {
        c.abort();
    }
    let drained = tokio::time::timeout(settings.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // Dropping the unacked deliveries hands them back to the broker with the channel.
        tracing::warn!(
            vendor = vendor.as_str(),
            left = tasks.len(),
            "grace period over; abandoning in-flight jobs for redelivery"
        );
        tasks.abort_all();
    }
    failure.map_or(Ok(()), Err)
}

/// A delivery this consumer holds: counted in flight and in the progress watermark until
/// dropped.
struct Held(SharedContext, Vendor);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.metrics.in_flight(-1);
        self.0.metrics.progress.settled(self.1.as_str());
    }
}

async fn handle(ctx: &crate::Context, vendor: Vendor, delivery: Delivery) {
    let message_id = delivery.message_id.clone().unwrap_or_default();
    let result = match process(ctx, &delivery.payload, delivery.headers).await {
        // Ack only now: the outcome (and ledger, and counter) are committed.
        Disposition::Ack(_) => delivery.ack().await,
        Disposition::Requeue { reason, attempts } => {
            let reason = kyc_schemas::scrub(&reason);
            let requeues = delivery.headers.requeues;
            tracing::warn!(message_id, reason, requeues, "requeueing job");
            // A growing pause (counted in the message, not by the broker) keeps an outage
            // from becoming a hot redelivery loop.
            let pause = Duration::from_secs(1u64 << requeues.min(5)).min(Duration::from_secs(30));
            tokio::time::sleep(pause).await;
            delivery.requeue(attempts).await
        }
        Disposition::Delay { wait, attempts } => {
            // Acked only once the delay queue's copy is confirmed.
            delivery.delay(wait, attempts).await
        }
        Disposition::Park(wait) => {
            // Another live delivery holds the job: park this one instead of holding a slot
            // while it waits. Not a retry, so the job's counters are untouched.
            tracing::info!(message_id, "job claimed by another live delivery; parked");
            delivery.park(wait).await
        }
        Disposition::CapDeferred(wait) => {
            // The vendor's spend cap is reached (worker/src/spend.rs): not a retry, so the
            // job's counters stay; it looks again after `wait`, in the delay queue.
            delivery.park(wait).await
        }
        Disposition::DeadLetterAfterOutcome {
            job_id,
            reason,
            attempts,
        } => {
            // Reasons are built from codes and kinds; scrubbed anyway, as they are stored.
            let reason = kyc_schemas::scrub(&reason);
            settle_dead_letter_copy(ctx, vendor, delivery, &job_id, &reason, attempts).await
        }
        Disposition::DeadLetter(reason) => {
            let reason = kyc_schemas::scrub(&reason);
            let sent = delivery.dead_letter(&reason).await;
            if sent.is_ok() {
                tracing::error!(
                    message_id,
                    reason,
                    "poison message sent to the dead-letter queue"
                );
                ctx.metrics.dead_letter(vendor.as_str());
            }
            sent
        }
    };
    if let Err(e) = result {
        tracing::error!(message_id, error = %e, "could not settle delivery; the broker will redeliver it");
    }
}

/// The copy owed by a job that gave up: published and confirmed, then the database's "copy
/// owed" mark cleared, then the delivery acked. Any failure leaves the mark and hands the
/// message back, so the next delivery (which finds the outcome) tries again: the copy may
/// arrive twice, never not at all.
async fn settle_dead_letter_copy(
    ctx: &crate::Context,
    vendor: Vendor,
    delivery: Delivery,
    job_id: &kyc_schemas::JobId,
    reason: &str,
    spent: u32,
) -> Result<(), kyc_queue::QueueError> {
    let message_id = delivery.message_id.clone().unwrap_or_default();
    let attempts = delivery.headers.attempts;
    if let Err(e) = delivery.copy_to_dead_letter(reason, spent).await {
        tracing::error!(message_id, error = %e, "dead-letter copy of a job that gave up failed; it stays owed and is settled on the next delivery");
        ctx.metrics.dead_letter_copy_failed(vendor.as_str());
        return delivery.requeue(attempts).await;
    }
    tracing::warn!(
        message_id,
        reason,
        "job gave up; copy sent to the dead-letter queue"
    );
    ctx.metrics.dead_letter(vendor.as_str());
    if let Err(e) = ctx.store.dead_letter_sent(job_id).await {
        tracing::warn!(message_id, error = %e, "could not clear the dead-letter copy's owed mark; handing the job back (its copy may be sent twice)");
        return delivery.requeue(attempts).await;
    }
    delivery.ack().await
}
