//! Names and arguments of the broker objects. A prefix keeps environments (and tests) apart
//! on one broker.

use kyc_schemas::Vendor;

/// RabbitMQ's delivery limit is the backstop against a message that crashes every worker
/// that touches it: after this many redeliveries the broker dead-letters it by itself.
/// RabbitMQ 3.10 has no default limit, so it is always set explicitly.
pub const DELIVERY_LIMIT: i64 = 20;

/// Header carrying the reason a message was dead-lettered by a worker.
pub const REASON_HEADER: &str = "x-kyc-dead-reason";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub prefix: String,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            prefix: "kyc".into(),
        }
    }
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// Work queue of one vendor: `kyc.jobs.huawei`.
    pub fn work_queue(&self, vendor: Vendor) -> String {
        format!("{}.jobs.{}", self.prefix, vendor.as_str())
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
    }
}
