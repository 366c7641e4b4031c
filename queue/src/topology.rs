//! Names and arguments of the broker objects. A prefix keeps environments (and tests) apart
//! on one broker.

use kyc_schemas::Vendor;

/// RabbitMQ's delivery limit is the backstop against a message that crashes every worker
/// that touches it: after this many redeliveries the broker dead-letters it by itself.
/// RabbitMQ 3.10 has no default limit, so it is always set explicitly.
pub const DELIVERY_LIMIT: i64 = 20;

/// Header carrying the reason a message was dead-lettered by a worker.
pub const REASON_HEADER: &str = "x-kyc-dead-reason";

/// Header with the time (ms since the epoch) a worker dead-lettered the message, for
/// `kyc dlq list` (broker-made dead letters carry `x-death` instead).
pub const DEAD_AT_HEADER: &str = "x-kyc-dead-at";

/// Header counting how many times a job went through a delay queue.
pub const DEFERRALS_HEADER: &str = "x-kyc-deferrals";

/// Header counting the vendor calls a job has made so far (its attempt budget travels with
/// it, across requeues and delay queues, whatever the broker's own delivery count does).
pub const ATTEMPTS_HEADER: &str = "x-kyc-attempts";

/// Header counting how many times a worker handed the job back for a local failure
/// (database, storage): counted by us, not by the broker's `x-delivery-count`, whose
/// behaviour after a `nack` RabbitMQ has changed between releases.
pub const REQUEUES_HEADER: &str = "x-kyc-requeues";

/// How long a dead letter is kept by default before the broker drops it: long enough for an
/// operator to look at a bad night's failures after a weekend, short enough that the copies
/// (sealed, but still personal data) do not outlive their use.
pub const DEFAULT_DEAD_LETTER_TTL: std::time::Duration =
    std::time::Duration::from_secs(14 * 24 * 3600);

/// Delay queues, by wait in seconds. Each has one queue-level TTL, so a long wait never sits
/// in front of a short one (RabbitMQ expires messages only at the head of a queue).
pub const DELAY_BUCKETS: [u64; 4] = [5, 30, 120, 600];

/// The smallest bucket that waits at least `delay` (the largest if none does).
pub fn delay_bucket(delay: std::time::Duration) -> u64 {
    let secs = delay.as_secs_f64().ceil() as u64;
    DELAY_BUCKETS
        .into_iter()
        .find(|b| *b >= secs)
        .unwrap_or(DELAY_BUCKETS[DELAY_BUCKETS.len() - 1])
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub prefix: String,
    /// `x-message-ttl` of the dead-letter queue: dead letters older than this are dropped
    /// by the broker. Part of the queue's declaration, so changing it on an existing queue
    /// is refused by RabbitMQ (see [`crate::QueueError::QueueArguments`]).
    pub dead_letter_ttl: std::time::Duration,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new("kyc")
    }
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            dead_letter_ttl: DEFAULT_DEAD_LETTER_TTL,
        }
    }

    pub fn with_dead_letter_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.dead_letter_ttl = ttl;
        self
    }

    /// Work queue of one vendor: `kyc.jobs.huawei`.
    pub fn work_queue(&self, vendor: Vendor) -> String {
        format!("{}.jobs.{}", self.prefix, vendor.as_str())
    }

    /// Delay queue of one vendor and wait: expired messages go back to the work queue.
    pub fn delay_queue(&self, vendor: Vendor, bucket_secs: u64) -> String {
        format!("{}.delay.{}.{bucket_secs}s", self.prefix, vendor.as_str())
    }

    /// Exchange receiving messages the broker dead-letters (delivery limit exceeded).
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// Queue where every dead letter ends, whoever sent it there.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_vendor() {
        let t = Topology::new("test1");
        assert_eq!(t.work_queue(Vendor::Huawei), "test1.jobs.huawei");
        assert_eq!(t.dead_letter_queue(), "test1.dead");
        assert_eq!(t.delay_queue(Vendor::Huawei, 30), "test1.delay.huawei.30s");
    }

    #[test]
    fn delays_round_up_to_a_bucket() {
        use std::time::Duration;
        assert_eq!(delay_bucket(Duration::from_millis(4200)), 5);
        assert_eq!(delay_bucket(Duration::from_secs(6)), 30);
        assert_eq!(delay_bucket(Duration::from_secs(3600)), 600);
    }
}
