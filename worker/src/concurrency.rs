//! How many jobs a vendor's consumer works on at once: a limit that follows the quota, so the
//! operator sets the quota and never a concurrency number.
//!
//! Little's law says a quota of Q calls a second at a latency of L seconds needs Q × L calls in
//! flight: 16 jobs in flight reach 16 QPS at 1 s latency, a third of a 50 QPS quota. Latency
//! changes by the minute, so the limit is not computed once but steered by the signal that
//! says whether it is big enough: **the limiter's queue**. While some of the vendor's calls wait
//! for a slot, the quota (not the limit) bounds the calls and a bigger limit would only hold
//! more deliveries; when no call waits and the consumer could take more deliveries, slots go by
//! unused and the limit grows. Growth is multiplicative (a quarter per step, so 16 → 64 in
//! about three seconds) and shrinking is gentle (a sixteenth per step) once the queue holds more
//! than half a second of calls: the queue absorbs latency spikes, so no slot goes unused, yet
//! stays short, so few deliveries (and their images) wait. This is AIMD turned round, as in
//! Vector's adaptive request concurrency, with the limiter's queue in place of the round-trip
//! time: a vendor's latency says nothing of its quota, the queue says both.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::limiter::Limiters;
use crate::SharedContext;

/// How often the controller looks at the queue, and how many looks make one decision.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
const SAMPLES_PER_STEP: usize = 3;
/// The queue the controller aims for, in seconds of an API's quota (at least [`MIN_QUEUE`]).
const QUEUE_SECONDS: f64 = 0.5;
const MIN_QUEUE: usize = 4;
/// Latency the ceiling allows for: a quota of Q keeps at most Q × this many jobs in flight.
const CEILING_SECONDS: f64 = 8.0;
pub const FLOOR: usize = 4;
/// The most jobs in flight per vendor whatever the quota: 256 jobs keep a 250 QPS quota busy
/// at 1 s latency, and their images (a few hundred KB each) stay within the material budget.
const MAX_CEILING: usize = 256;

/// Where a vendor's limit starts and the most it may reach, from the vendor's quotas: the
/// ceiling allows [`CEILING_SECONDS`] of latency at the sum of its quotas; a vendor with no
/// quota gets a fixed 64 (nothing to follow).
pub fn bounds(limiters: &Limiters, vendor: &str) -> (usize, usize) {
    let qps: f64 = limiters.queued(vendor).iter().map(|(_, q, _)| q).sum();
    if qps <= 0.0 {
        return (16, 64);
    }
    let ceiling = ((qps * CEILING_SECONDS).ceil() as usize).clamp(16, MAX_CEILING);
    (16.min(ceiling), ceiling)
}

/// The gate a consumer passes before taking a delivery.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<State>,
    freed: Notify,
    floor: usize,
    ceiling: usize,
}

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    /// The consumer is waiting at the gate: it could take more deliveries than the limit lets.
    blocked: bool,
    /// Jobs finished since the controller last looked, and their summed time in flight.
    finished: usize,
    time_in_flight: Duration,
}

/// One job in flight; dropping it lets the next delivery in.
#[derive(Debug)]
pub struct Pass(Arc<Gate>, std::time::Instant);

impl Drop for Pass {
    fn drop(&mut self) {
        {
            let mut s = self.0.state.lock().expect("gate lock");
            s.in_flight -= 1;
            s.finished += 1;
            s.time_in_flight += self.1.elapsed();
        }
        self.0.freed.notify_one();
    }
}

impl Gate {
    /// A limit that stays where it is put (`--concurrency` given).
    pub fn fixed(limit: usize) -> Arc<Self> {
        Self::new(limit.max(1), limit.max(1), limit.max(1))
    }

    pub fn new(initial: usize, floor: usize, ceiling: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                limit: initial.clamp(floor, ceiling),
                in_flight: 0,
                blocked: false,
                finished: 0,
                time_in_flight: Duration::ZERO,
            }),
            freed: Notify::new(),
            floor,
            ceiling,
        })
    }

    pub fn limit(&self) -> usize {
        self.state.lock().expect("gate lock").limit
    }

    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// Waits until fewer than `limit` jobs are in flight.
    pub async fn enter(self: &Arc<Self>) -> Pass {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a pass dropped in between is not missed.
            freed.as_mut().enable();
            {
                let mut s = self.state.lock().expect("gate lock");
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    s.blocked = false;
                    return Pass(self.clone(), std::time::Instant::now());
                }
                s.blocked = true;
            }
            freed.await;
        }
    }

    fn set_limit(&self, limit: usize) {
        let limit = limit.clamp(self.floor, self.ceiling);
        let raised = {
            let mut s = self.state.lock().expect("gate lock");
            let raised = limit > s.limit;
            s.limit = limit;
            raised
        };
        if raised {
            self.freed.notify_one();
        }
    }

    fn blocked(&self) -> bool {
        self.state.lock().expect("gate lock").blocked
    }

    /// Jobs finished since the last call, and their mean time in flight.
    fn take_finished(&self) -> (usize, Option<Duration>) {
        let mut s = self.state.lock().expect("gate lock");
        let n = std::mem::take(&mut s.finished);
        let t = std::mem::take(&mut s.time_in_flight);
        (n, (n > 0).then(|| t / n as u32))
    }
}

/// What the controller saw over one step.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Step {
    /// Looks at which the consumer was held at the gate.
    pub blocked: usize,
    /// Looks at which some API of the vendor had no call waiting for a slot: its next slot
    /// may go by unused.
    pub idle_quota: usize,
    /// Looks at which some API's queue was longer than its target.
    pub long_queue: usize,
    pub looks: usize,
    /// Whether any job finished during the step: jobs stuck elsewhere (a stalled database)
    /// also leave the limiter's queue empty, and more of them would not help.
    pub progress: bool,
}

/// The next limit after a step. Shrink while some queue was longer than its target at every
/// look (enough calls wait to use every slot; more deliveries would only wait too). Grow when
/// the consumer was held back at every look and some API's queue ran empty at any look (a
/// slot may have gone unused for want of jobs in flight). Otherwise stay: every queue held
/// calls, none too many.
pub fn next_limit(limit: usize, step: Step) -> usize {
    if step.looks == 0 {
        return limit;
    }
    if step.long_queue == step.looks {
        limit - (limit / 16).max(1).min(limit)
    } else if step.blocked == step.looks && step.idle_quota > 0 && step.progress {
        limit + (limit / 4).max(1)
    } else {
        limit
    }
}

/// The time in flight the gradient steers to, as a multiple of its lowest recent mean: a
/// little queueing inside this process keeps its CPU busy; more only holds deliveries (and
/// their images) longer. The limit moves in proportion to how far the gradient is from it,
/// by at most a quarter up and an eighth down per step: proportional steps settle where
/// fixed ones (grow below one threshold, shrink above another) swung between them, and the
/// swings' peaks were the worker's peak memory.
const TARGET_GRADIENT: f64 = 1.15;
const MAX_GROWTH: f64 = 1.25;
const MAX_SHRINK: f64 = 0.875;
/// How fast the lowest mean forgets (per step), so that a vendor slowing down for good is
/// taken as the new normal within a minute or so.
const MIN_DRIFT: f64 = 1.01;
/// Below this lowest mean time in flight (seconds) the gradient applies: the vendor answers
/// fast and the time is mostly this process's own (the real vendors take 0.4–1.6 s).
const QUICK_JOBS_S: f64 = 0.15;

/// The next limit given the quota rules' choice (`next`) and the gradient, when it applies:
/// above [`TARGET_GRADIENT`] the limit shrinks in proportion, whatever the queue rules say;
/// below it, growth the queue rules allow is held to the proportion.
pub fn follow_gradient(limit: usize, next: usize, gradient: Option<f64>) -> usize {
    let Some(g) = gradient else { return next };
    let scale = (TARGET_GRADIENT / g.max(1e-6)).clamp(MAX_SHRINK, MAX_GROWTH);
    let scaled = (limit as f64 * scale).round() as usize;
    if scale < 1.0 {
        scaled.min(limit.saturating_sub(1)).max(1)
    } else {
        next.min(scaled.max(limit))
    }
}

/// Steers `gate` for `vendor` until the task is aborted.
///
/// Without a binding quota (none configured, or a large one) the limiter's queue is always
/// empty and would let the limit grow to its ceiling, although past the machine's capacity
/// more jobs in flight only wait longer inside this process and hold more memory. So the
/// limit also follows a gradient, as in Netflix's concurrency-limits: the jobs' mean time in
/// flight against its lowest recent value. A vendor's latency is the same at any limit; time
/// spent queueing here grows with it.
pub async fn control(gate: Arc<Gate>, ctx: SharedContext, vendor: &'static str) {
    let (limiters, metrics) = (&ctx.limiters, &ctx.metrics);
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut step = Step::default();
    let mut lowest: Option<f64> = None;
    let mut smoothed: Option<f64> = None;
    metrics.concurrency_limit(vendor, gate.limit());
    loop {
        tick.tick().await;
        let queues = limiters.queued(vendor);
        step.looks += 1;
        if gate.blocked() {
            step.blocked += 1;
        }
        if queues.iter().any(|(_, _, n)| *n == 0) {
            step.idle_quota += 1;
        }
        if queues
            .iter()
            .any(|(_, qps, n)| *n > ((qps * QUEUE_SECONDS).ceil() as usize).max(MIN_QUEUE))
        {
            step.long_queue += 1;
        }
        if step.looks < SAMPLES_PER_STEP {
            continue;
        }
        let (finished, mean) = gate.take_finished();
        step.progress = finished > 0;
        // Smoothed over steps: a few stalled calls in one step are not congestion.
        let gradient = mean.map(|t| {
            let t = smoothed.map_or(t.as_secs_f64(), |s| 0.7 * s + 0.3 * t.as_secs_f64());
            smoothed = Some(t);
            let low = lowest.map_or(t, |l| (l * MIN_DRIFT).min(t));
            lowest = Some(low);
            t / low.max(1e-6)
        });
        // Only while no call waited for a slot: time spent in the limiter's queue is the
        // quota's doing, which the queue rules above already steer.
        // And only while jobs are quick: a vendor answering in a second or more dominates
        // the time in flight, its spread (the first jobs back are the fastest) would read as
        // congestion, and queueing here cannot be told from it.
        let gradient = gradient.filter(|_| {
            step.idle_quota == step.looks
                && step.long_queue == 0
                && lowest.is_some_and(|l| l < QUICK_JOBS_S)
        });
        for (key, _, n) in &queues {
            let api = key.split_once('.').map_or(*key, |(_, a)| a);
            metrics.limiter_queue(vendor, api, *n);
        }
        let limit = gate.limit();
        let next = follow_gradient(limit, next_limit(limit, step), gradient);
        if next != limit {
            gate.set_limit(next);
            tracing::debug!(
                vendor,
                limit = gate.limit(),
                gradient = gradient.map(|g| format!("{g:.2}")),
                "concurrency limit changed"
            );
        }
        metrics.concurrency_limit(vendor, gate.limit());
        step = Step::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(blocked: usize, idle: usize, long: usize) -> Step {
        Step {
            blocked,
            idle_quota: idle,
            long_queue: long,
            looks: 3,
            progress: true,
        }
    }

    #[test]
    fn the_limit_grows_only_when_held_back_with_slots_unused() {
        assert_eq!(next_limit(16, step(3, 3, 0)), 20);
        assert_eq!(next_limit(16, step(3, 1, 0)), 20);
        assert_eq!(next_limit(4, step(3, 3, 0)), 5);
        // Calls waited for every API's slots at every look: the quota was the bound.
        assert_eq!(next_limit(16, step(3, 0, 0)), 16);
        // Not held back: there were no more deliveries to take.
        assert_eq!(next_limit(16, step(2, 3, 0)), 16);
        // A long queue wins: one API's calls wait, more deliveries would wait with them.
        assert_eq!(next_limit(16, step(3, 3, 3)), 15);
        // Nothing finished: the jobs are stuck elsewhere, not short of company.
        let stuck = Step {
            progress: false,
            ..step(3, 3, 0)
        };
        assert_eq!(next_limit(16, stuck), 16);
    }

    #[test]
    fn the_gradient_scales_the_limit_towards_its_target() {
        let t = TARGET_GRADIENT;
        let scaled = |limit: usize, g: f64| (limit as f64 * t / g).round() as usize;
        // Far below the target: growth as the queue rules allow, at most a quarter.
        assert_eq!(follow_gradient(64, 80, Some(t / 1.5)), 80);
        // Nearer the target: growth held to the proportion.
        assert_eq!(follow_gradient(64, 80, Some(t / 1.1)), scaled(64, t / 1.1));
        assert!(scaled(64, t / 1.1) < 80);
        // The queue rules say stay: the gradient does not grow the limit on its own.
        assert_eq!(follow_gradient(64, 64, Some(1.0)), 64);
        // Above the target: a shrink in proportion, at most an eighth, whatever the rules say.
        assert_eq!(follow_gradient(64, 80, Some(t * 1.1)), scaled(64, t * 1.1));
        assert_eq!(follow_gradient(64, 64, Some(t * 3.0)), 56);
        assert_eq!(follow_gradient(4, 4, Some(t * 1.05)), 3);
        // No gradient (a binding quota, slow jobs): the quota rules alone.
        assert_eq!(follow_gradient(64, 80, None), 80);
    }

    #[test]
    fn the_limit_shrinks_gently_while_the_queue_is_long() {
        assert_eq!(next_limit(64, step(3, 0, 3)), 60);
        assert_eq!(next_limit(5, step(3, 0, 3)), 4);
        assert_eq!(next_limit(64, step(3, 0, 2)), 64);
    }

    #[tokio::test]
    async fn the_gate_holds_the_limit_and_lets_in_when_raised() {
        let gate = Gate::new(2, 1, 8);
        let a = gate.enter().await;
        let _b = gate.enter().await;
        let g = gate.clone();
        let third = tokio::spawn(async move { g.enter().await });
        // Wait until the third is held at the gate, then free a place.
        while !gate.blocked() {
            tokio::task::yield_now().await;
        }
        drop(a);
        let _c = third.await.unwrap();
        let g = gate.clone();
        let fourth = tokio::spawn(async move { g.enter().await });
        while !gate.blocked() {
            tokio::task::yield_now().await;
        }
        gate.set_limit(3);
        let _d = fourth.await.unwrap();
        assert_eq!(gate.limit(), 3);
        gate.set_limit(100);
        assert_eq!(gate.limit(), 8, "clamped to the ceiling");
    }
}
