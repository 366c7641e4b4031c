//! Is each consumer still moving? A per-vendor watermark: how many deliveries the consumer
//! holds, and when it last made progress (took or settled a delivery, finished a vendor call,
//! tried a commit). Every wait on the network is bounded, so a consumer that holds deliveries
//! and has not moved for longer than the liveness bound is stuck (a bug, a wait we failed to
//! bound), and `/healthz` says so, so that the orchestrator restarts the pod. A consumer
//! holding nothing is idle, never stuck; an outage that every job waits out with bounded
//! retries still moves the watermark on each try.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Progress {
    // std Mutex: held for a map update, never across an await.
    vendors: Mutex<BTreeMap<String, Watermark>>,
}

#[derive(Debug, Clone, Copy)]
struct Watermark {
    held: i64,
    last: Instant,
}

/// A consumer that holds deliveries and has not moved for longer than the bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    pub vendor: String,
    pub held: i64,
    pub idle: Duration,
}

impl Progress {
    fn update(&self, vendor: &str, delta: i64) {
        let mut map = self.vendors.lock().expect("progress lock");
        let w = map.entry(vendor.to_string()).or_insert(Watermark {
            held: 0,
            last: Instant::now(),
        });
        w.held += delta;
        w.last = Instant::now();
    }

    /// The consumer of `vendor` took a delivery.
    pub fn took(&self, vendor: &str) {
        self.update(vendor, 1);
    }

    /// The consumer of `vendor` settled (or abandoned) a delivery.
    pub fn settled(&self, vendor: &str) {
        self.update(vendor, -1);
    }

    /// A job of `vendor` moved on (a vendor call ended, a commit was tried).
    pub fn touch(&self, vendor: &str) {
        self.update(vendor, 0);
    }

    /// Consumers holding deliveries that have not moved for longer than `bound`.
    pub fn stuck(&self, bound: Duration) -> Vec<Stuck> {
        self.vendors
            .lock()
            .expect("progress lock")
            .iter()
            .filter(|(_, w)| w.held > 0 && w.last.elapsed() > bound)
            .map(|(v, w)| Stuck {
                vendor: v.clone(),
                held: w.held,
                idle: w.last.elapsed(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_consumer_holding_deliveries_without_moving_is_stuck() {
        let p = Progress::default();
        p.took("huawei");
        p.took("baidu");
        p.settled("baidu");
        std::thread::sleep(Duration::from_millis(30));
        let stuck = p.stuck(Duration::from_millis(10));
        assert_eq!(stuck.len(), 1, "{stuck:?}");
        assert_eq!((stuck[0].vendor.as_str(), stuck[0].held), ("huawei", 1));
        p.touch("huawei");
        assert!(p.stuck(Duration::from_millis(10)).is_empty());
    }
}
