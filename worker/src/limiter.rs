//! Rate limits per vendor × API. A token is taken before every vendor call, retries included,
//! so our own traffic never exceeds the account's quota; waiting for one is normal flow.
//!
//! Two stages:
//! 1. governor (GCRA) in the process: smooths this replica's own bursts;
//! 2. in server mode, the account quota shared by every replica through the database
//!    ([`kyc_store::Store::reserve_rate_slots`]): each replica leases ~100 ms of slots at a
//!    time, so the database sees a few round trips per second, not one per call.
//!
//! A throttle answer holds the shared quota for everyone until the vendor's `Retry-After`, and
//! halves this replica's rate for that API (adaptive back-off: the quota we were given can be
//! more than the vendor grants); quiet periods double it back up to the configured rate.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota as GQuota, RateLimiter};
use kyc_store::{Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::vendors::Api;

/// A limit: `qps` calls per second with bursts of up to `burst`, and at most `max_in_flight`
/// calls waiting for an answer at once (for the account: shared by every replica in server
/// mode, like the quota).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub qps: f64,
    pub burst: u32,
    pub max_in_flight: Option<u32>,
}

impl Quota {
    pub fn qps(qps: f64, burst: u32) -> Self {
        Self {
            qps,
            burst,
            max_in_flight: None,
        }
    }

    fn interval_us(&self) -> i64 {
        (1_000_000.0 / self.qps).round().max(1.0) as i64
    }
}

/// Held while a call is in flight; dropping it frees the slot.
#[derive(Debug)]
pub struct CallPermit {
    _in_flight: Option<OwnedSemaphorePermit>,
    /// The account-wide in-flight token (server mode, an API with `max_in_flight`).
    _account: Option<AccountToken>,
    pub waited: Duration,
    /// When the slot came up (or, for a shared slot, when the caller was woken to prepare
    /// for it, up to [`MAX_LEAD`] before it).
    granted: Instant,
    /// The slot's moment: the call goes out at this instant, not before (see
    /// [`CallPermit::until_slot`]).
    send_at: Instant,
    /// How late after `granted` the call may still go out (see [`CallPermit::is_fresh`]).
    grace: Duration,
    /// Slots reserved for this call that had gone by when the reservation returned (a
    /// database that stalled) and were dropped.
    pub dropped_slots: u32,
}

impl CallPermit {
    /// Whether the call may still use this slot. A slot is spent within its instant or
    /// dropped: work done between taking the slot and sending (the ledger row, a claim
    /// renewal) can stall on the database, and calls that waited there would otherwise all
    /// go out together when it returns, a burst the vendor throttles.
    pub fn is_fresh(&self) -> bool {
        Instant::now() <= self.send_at.max(self.granted) + self.grace
    }

    /// Sleeps until the slot's moment. A shared slot wakes its caller a little early, by about
    /// the time its ledger row takes to commit, so that the call goes out on its slot rather
    /// than a commit after it: calls late by up to a grace put more than Q + 1 calls into
    /// some second.
    pub async fn until_slot(&self) {
        // Not through the timer when the moment has come: a timer entry fires at the timer's
        // next tick, up to a millisecond later, on every call.
        if self.send_at > Instant::now() {
            tokio::time::sleep_until(self.send_at.into()).await;
        }
    }
}

/// How long an in-flight token lasts if its worker dies holding it: longer than any call.
pub const IN_FLIGHT_LEASE: Duration = Duration::from_secs(120);

/// One of the account's in-flight tokens of an API, handed back when dropped (the call is
/// answered or abandoned). A worker that dies holding it loses it after [`IN_FLIGHT_LEASE`].
#[derive(Debug)]
struct AccountToken {
    store: Store,
    key: String,
    token: String,
    handed_back: Arc<tokio::sync::Notify>,
}

impl Drop for AccountToken {
    fn drop(&mut self) {
        let (store, key, token) = (
            self.store.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        let handed_back = self.handed_back.clone();
        // A failed hand-back only keeps the token until its lease lapses.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if store.release_in_flight(&key, &token).await.is_ok() {
                    handed_back.notify_waiters();
                }
            });
        }
    }
}

/// The most a caller is woken before its slot to write its ledger row.
pub const MAX_LEAD: Duration = Duration::from_millis(25);

/// How late a slot may be used: half its interval, at least [`MIN_GRACE`]. Calls go out
/// between their slot and its grace, so a second holds the slots of a second plus those of
/// one grace: half an interval keeps that to the quota + 1, jitter included (a 25 ms grace at
/// 50 QPS let 52 calls into one second). Callers are woken ahead of their slot by the time
/// their ledger row takes ([`CallPermit::until_slot`]), so a commit does not eat the grace;
/// a stall is seconds, and its slots are dropped.
fn grace_of(q: Option<&Quota>) -> Duration {
    match q {
        Some(q) => Duration::from_micros((q.interval_us().max(0) / 2) as u64).max(MIN_GRACE),
        None => MIN_GRACE,
    }
}

/// The least grace, for quotas above 100 QPS: below it, the timer's own jitter would drop
/// slots.
const MIN_GRACE: Duration = Duration::from_millis(5);

/// How late a slot may come back from its reservation and still be used: a round trip on a
/// busy database takes that long, and dropping every such slot at a high quota would cost a
/// reservation per call. A stall is seconds.
const RESERVATION_GRACE: Duration = Duration::from_millis(25);
/// Slots one call may drop before it takes a late one: a database slow for good (not stalled)
/// makes every reservation late, and dropping them all would stop the calls instead.
const MAX_DROPS: u32 = 3;

/// The most slots one reservation leases (at a very large quota, 100 ms of slots would be
/// thousands; the waiting tasks bound it first anyway).
const MAX_LEASE: u32 = 256;

#[derive(Debug)]
struct Shared {
    store: Store,
    // std Mutex: held only to pop or push slots, never across an await.
    leases: Mutex<HashMap<String, VecDeque<i64>>>,
    /// Adaptive back-off per API: the factor by which this replica spaces its reservations
    /// (1 = the configured rate). Each throttle answer doubles it; every quiet
    /// [`RECOVERY`] halves it again.
    slowdown: Mutex<HashMap<String, (f64, Instant)>>,
    /// When each API was last throttled: a slot reserved before that is not used.
    throttled_at: Mutex<HashMap<String, Instant>>,
    /// Tasks waiting for a slot per API: the size of the next lease.
    waiting: Mutex<HashMap<String, usize>>,
    /// How fast callers come for each API's slots: the next lease also holds slots for those
    /// that arrive while its slots are fresh.
    arrivals: Mutex<HashMap<String, Arrivals>>,
    /// One reservation at a time per API in this replica: tasks that arrive while one is on
    /// its way take the slots it leases for them, instead of each leasing slots for all the
    /// waiting tasks (more slots than tasks: the rest would go by unused, wasting quota).
    reserving: HashMap<String, tokio::sync::Mutex<()>>,
    /// One grant attempt at a time per API for the account-wide in-flight cap: the others
    /// wait here instead of each asking the database.
    granting: HashMap<String, tokio::sync::Mutex<()>>,
    /// Woken when this replica hands an in-flight token back.
    handed_back: Arc<tokio::sync::Notify>,
}

/// Quiet time after which a throttled API's rate is raised again (halving the slowdown).
const RECOVERY: Duration = Duration::from_secs(5);
const MAX_SLOWDOWN: f64 = 32.0;

impl Shared {
    /// The current slowdown of `key`, halved once for every quiet [`RECOVERY`] since the last
    /// change.
    fn slowdown(&self, key: &str) -> f64 {
        let mut m = self.slowdown.lock().expect("slowdown lock");
        match m.get_mut(key) {
            Some((factor, since)) => {
                let halvings = (since.elapsed().as_secs_f64() / RECOVERY.as_secs_f64()).floor();
                if halvings >= 1.0 && *factor > 1.0 {
                    *factor = (*factor / 2f64.powf(halvings)).max(1.0);
                    *since = Instant::now();
                }
                *factor
            }
            None => 1.0,
        }
    }

    /// A throttle answer: double the slowdown, at most once a second (the answers to one
    /// burst of concurrent calls are one signal, not many).
    fn slow_down(&self, key: &str) {
        let mut m = self.slowdown.lock().expect("slowdown lock");
        let (factor, since) = m
            .entry(key.to_string())
            .or_insert((1.0, Instant::now() - RECOVERY));
        if since.elapsed() >= Duration::from_secs(1) {
            *factor = (*factor * 2.0).min(MAX_SLOWDOWN);
            *since = Instant::now();
        }
        self.throttled_at
            .lock()
            .expect("throttle lock")
            .insert(key.to_string(), Instant::now());
    }
}

#[derive(Debug, Default)]
pub struct Limiters {
    quotas: HashMap<String, Quota>,
    /// Tasks inside [`Limiters::acquire`] per API, in every mode: the signal that a vendor's
    /// quota, not the number of jobs in flight, bounds its calls (read by the concurrency
    /// controller).
    queued: HashMap<String, Arc<AtomicUsize>>,
    local: HashMap<String, Arc<DefaultDirectRateLimiter>>,
    in_flight: HashMap<String, Arc<Semaphore>>,
    shared: Option<Shared>,
    /// The recent time (µs) from permit to ledger row committed, a moving average: callers
    /// are woken that much ahead of their shared slot, and half again (see
    /// [`Limiters::lead_us`]).
    prep_us: AtomicI64,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Limiters {
    /// In-process limits only (embedded mode: one process is the whole account).
    pub fn new(quotas: &HashMap<String, Quota>) -> Self {
        Self::with_local_burst(quotas, 1)
    }

    /// `min_burst`: the least burst of the in-process stage (see [`Limiters::shared`]).
    fn with_local_burst(quotas: &HashMap<String, Quota>, min_burst: u32) -> Self {
        let quotas: HashMap<String, Quota> = quotas
            .iter()
            .filter(|(_, q)| q.qps > 0.0)
            .map(|(k, q)| (k.clone(), *q))
            .collect();
        let local = quotas
            .iter()
            .map(|(k, q)| {
                let period = Duration::from_secs_f64(1.0 / q.qps);
                let burst =
                    NonZeroU32::new(q.burst.max(min_burst).max(1)).expect("max(1) is non-zero");
                let quota = GQuota::with_period(period)
                    .expect("positive period")
                    .allow_burst(burst);
                (k.clone(), Arc::new(RateLimiter::direct(quota)))
            })
            .collect();
        let in_flight = quotas
            .iter()
            .filter_map(|(k, q)| {
                q.max_in_flight
                    .map(|n| (k.clone(), Arc::new(Semaphore::new(n.max(1) as usize))))
            })
            .collect();
        let queued = quotas
            .keys()
            .map(|k| (k.clone(), Arc::new(AtomicUsize::new(0))))
            .collect();
        Self {
            quotas,
            queued,
            local,
            in_flight,
            shared: None,
            prep_us: AtomicI64::new(0),
        }
    }

    /// A caller took `took` from its permit to being ready to send (its ledger row
    /// committed): callers are woken about that much before their slots from now on.
    pub fn prepared(&self, took: Duration) {
        let took = took.as_micros().min(1_000_000) as i64;
        let old = self.prep_us.load(Ordering::Relaxed);
        // An eighth of each new figure: one slow commit moves it little.
        let avg = old + (took - old) / 8;
        self.prep_us.store(avg, Ordering::Relaxed);
    }

    /// How long before its shared slot a caller is woken (µs): 1.5 × the recent preparation
    /// time, at most [`MAX_LEAD`].
    fn lead_us(&self) -> i64 {
        (self.prep_us.load(Ordering::Relaxed) * 3 / 2).min(MAX_LEAD.as_micros() as i64)
    }

    /// In-process limits plus the account quota shared through the database (server mode).
    ///
    /// The in-process stage gets a burst of at least 2 here. With 1, a waiter woken a little
    /// late (the timer's millisecond) pushed every later token back by as much, and a replica
    /// alone on a quota fell short of it: 49–50 calls in every second at 50 QPS, a steady
    /// utilisation of 0.989 (`kyc bench quota --workers 1 --qps 50`). One token of credit
    /// catches a late wake up; the shared slots, spaced by the configured burst, still decide
    /// when calls go out.
    pub fn shared(quotas: &HashMap<String, Quota>, store: Store) -> Self {
        Self {
            shared: Some(Shared {
                store,
                leases: Mutex::new(HashMap::new()),
                slowdown: Mutex::new(HashMap::new()),
                throttled_at: Mutex::new(HashMap::new()),
                waiting: Mutex::new(HashMap::new()),
                arrivals: Mutex::new(HashMap::new()),
                reserving: quotas
                    .keys()
                    .map(|k| (k.clone(), tokio::sync::Mutex::new(())))
                    .collect(),
                granting: quotas
                    .keys()
                    .map(|k| (k.clone(), tokio::sync::Mutex::new(())))
                    .collect(),
                handed_back: Arc::new(tokio::sync::Notify::new()),
            }),
            ..Self::with_local_burst(quotas, 2)
        }
    }

    pub fn key(api: &Api) -> String {
        format!("{}.{}", api.vendor.as_str(), api.name)
    }

    /// The quota of every limited API of `vendor` with the number of tasks waiting for one
    /// of its slots right now.
    pub fn queued(&self, vendor: &str) -> Vec<(&str, f64, usize)> {
        self.queued
            .iter()
            .filter(|(k, _)| k.split('.').next() == Some(vendor))
            .map(|(k, n)| {
                let qps = self.quotas.get(k).map_or(0.0, |q| q.qps);
                (k.as_str(), qps, n.load(Ordering::Relaxed))
            })
            .collect()
    }

    /// Waits for this API's next slot (and an in-flight permit).
    pub async fn acquire(&self, api: &Api) -> Result<CallPermit, StoreError> {
        let key = Self::key(api);
        let _queued = self.queued.get(&key).map(|n| Queued::new(n.clone()));
        let start = Instant::now();
        let mut dropped_slots = 0;
        let mut send_at = None;
        let mut grace = grace_of(self.quotas.get(&key));
        let in_flight = match self.in_flight.get(&key) {
            Some(s) => Some(
                s.clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore never closed"),
            ),
            None => None,
        };
        // The account's cap on calls in flight, shared by every replica: the replica's own
        // semaphore above keeps each replica within it too.
        let account = match (
            &self.shared,
            self.quotas.get(&key).and_then(|q| q.max_in_flight),
        ) {
            (Some(shared), Some(max)) => Some(self.account_token(shared, &key, max).await?),
            _ => None,
        };
        if let Some(l) = self.local.get(&key) {
            l.until_ready().await;
        }
        if let (Some(shared), Some(q)) = (&self.shared, self.quotas.get(&key)) {
            shared
                .arrivals
                .lock()
                .expect("arrivals lock")
                .entry(key.clone())
                .or_insert_with(Arrivals::new)
                .record(Instant::now());
            *shared
                .waiting
                .lock()
                .expect("waiting lock")
                .entry(key.clone())
                .or_default() += 1;
            let result = self.wait_for_slot(shared, &key, q).await;
            if let Ok((n, at, anticipated)) = result {
                dropped_slots = n;
                send_at = Some(at);
                // A slot already due when it was reserved (the quota does not bind) could not
                // be prepared for: its ledger row is written after it, and a database round
                // trip is not a stall.
                if !anticipated {
                    grace = grace.max(RESERVATION_GRACE);
                }
            }
            *shared
                .waiting
                .lock()
                .expect("waiting lock")
                .entry(key.clone())
                .or_default() -= 1;
            result?;
        }
        Ok(CallPermit {
            _in_flight: in_flight,
            _account: account,
            waited: start.elapsed(),
            granted: Instant::now(),
            send_at: send_at.unwrap_or_else(Instant::now),
            grace,
            dropped_slots,
        })
    }

    /// Waits for one of the account's `max` in-flight tokens of `key`. While all are taken,
    /// it asks again when this replica hands one back, or after a back-off (10 ms doubling to
    /// 200 ms) for the other replicas' hand-backs.
    async fn account_token(
        &self,
        shared: &Shared,
        key: &str,
        max: u32,
    ) -> Result<AccountToken, StoreError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut wait = Duration::from_millis(10);
        loop {
            let handed_back = shared.handed_back.notified();
            {
                let _turn = match shared.granting.get(key) {
                    Some(turn) => Some(turn.lock().await),
                    None => None,
                };
                if shared
                    .store
                    .grant_in_flight(key, &token, max, IN_FLIGHT_LEASE.as_millis() as i64)
                    .await?
                {
                    return Ok(AccountToken {
                        store: shared.store.clone(),
                        key: key.to_string(),
                        token,
                        handed_back: shared.handed_back.clone(),
                    });
                }
            }
            tokio::select! {
                _ = handed_back => {}
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_millis(200));
        }
    }

    /// Sleeps until a shared slot comes up (less the lead, see [`Limiters::prepared`]);
    /// returns how many slots it dropped, the slot's instant, and whether the caller was woken
    /// ahead of it (a slot already due could not be: see [`CallPermit`]). A slot reserved before a
    /// throttle answer is given up and another reserved: the pause must stop calls already
    /// waiting, too.
    async fn wait_for_slot(
        &self,
        shared: &Shared,
        key: &str,
        q: &Quota,
    ) -> Result<(u32, Instant, bool), StoreError> {
        let mut dropped = 0;
        // A reservation is a database round trip (in a group commit): one that took less than
        // RESERVATION_GRACE is not a stall, and its slot is kept.
        let grace = grace_of(Some(q)).max(RESERVATION_GRACE).as_micros() as i64;
        loop {
            let reserved_at = Instant::now();
            let asked = now_us();
            let slot = self.shared_slot(shared, key, q).await?;
            let now = now_us();
            // How late the slot is beyond what was asked for (a burst slot lies before `asked`
            // on purpose and is late only by the time the reservation took).
            let late = now - slot.max(asked);
            if late > grace && dropped < MAX_DROPS {
                // The reservation itself waited on the database, so its slot has gone by:
                // used now, it would go out with every other call that waited there.
                // Dropped; the next reservation starts from the present.
                dropped += 1;
                continue;
            }
            let wait = slot - now;
            let send_at = Instant::now() + Duration::from_micros(wait.max(0) as u64);
            let lead = self.lead_us();
            let anticipated = wait > lead;
            if anticipated {
                tokio::time::sleep(Duration::from_micros((wait - lead) as u64)).await;
            }
            let throttled_since = shared
                .throttled_at
                .lock()
                .expect("throttle lock")
                .get(key)
                .is_some_and(|t| *t > reserved_at);
            if !throttled_since {
                return Ok((dropped, send_at, anticipated));
            }
        }
    }

    async fn shared_slot(&self, shared: &Shared, key: &str, q: &Quota) -> Result<i64, StoreError> {
        let _turn = match shared.reserving.get(key) {
            Some(turn) => Some(turn.lock().await),
            None => None,
        };
        let slowdown = shared.slowdown(key);
        let interval = (q.interval_us() as f64 * slowdown) as i64;
        let now = now_us();
        {
            let mut leases = shared.leases.lock().expect("lease lock");
            let queue = leases.entry(key.to_string()).or_default();
            // A slot that has gone by unused (beyond the grace a reserved slot gets) is
            // dropped: using it late would add a burst.
            let grace = grace_of(Some(q)).max(RESERVATION_GRACE).as_micros() as i64;
            while let Some(slot) = queue.pop_front() {
                if slot >= now - grace {
                    return Ok(slot);
                }
            }
        }
        // As many slots as tasks are waiting, plus those expected while the slots are fresh
        // (see `Arrivals`), up to about 100 ms of them: slots leased for nobody would be
        // dropped unused and wasted. The lease is not bounded by the burst: its slots are
        // spaced an interval apart from the first, so a lease never goes out faster than the
        // quota, and a round trip per slot would cost a commit per call.
        let waiting = shared
            .waiting
            .lock()
            .expect("waiting lock")
            .get(key)
            .copied()
            .unwrap_or(1);
        let coming = shared
            .arrivals
            .lock()
            .expect("arrivals lock")
            .get(key)
            .filter(|a| a.roomy && a.per_s * FAR_FROM_BINDING <= q.qps)
            .map_or(0, |a| a.expected(grace_of(Some(q)).max(RESERVATION_GRACE)));
        let most = ((q.qps / slowdown / 10.0).round() as u32).clamp(1, MAX_LEASE);
        let lease = (waiting as u32 + coming).clamp(1, most);
        // The burst window is measured in the configured interval: a slowed-down replica gets
        // no larger burst than any other.
        let first = shared
            .store
            .reserve_rate_slots(
                key,
                q.interval_us(),
                q.burst,
                i64::from(lease) * interval,
                now,
            )
            .await?;
        if let Some(a) = shared.arrivals.lock().expect("arrivals lock").get_mut(key) {
            a.roomy = first <= now;
        }
        let mut leases = shared.leases.lock().expect("lease lock");
        let queue = leases.entry(key.to_string()).or_default();
        for i in 1..i64::from(lease) {
            queue.push_back(first + i * interval);
        }
        Ok(first)
    }

    /// The vendor throttled us: hold this API for everyone sharing the quota until
    /// `retry_after` from now, and drop slots leased before the answer.
    pub async fn throttled(&self, api: &Api, retry_after: Duration) -> Result<(), StoreError> {
        let key = Self::key(api);
        if let Some(shared) = &self.shared {
            shared.leases.lock().expect("lease lock").remove(&key);
            shared.slow_down(&key);
            shared
                .store
                .hold_rate_until(
                    &key,
                    now_us() + retry_after.min(Duration::from_secs(3600)).as_micros() as i64,
                )
                .await?;
        }
        Ok(())
    }
}

/// Callers coming for an API's shared slots, per second, smoothed over windows of
/// [`ARRIVAL_WINDOW`], and whether the quota had room at the last reservation.
///
/// Why: a lease sized to the tasks waiting at the moment it is reserved leaves every caller
/// that comes during the round trip to wait for the next one; at a quota the calls do not
/// reach (the throughput benchmark's), that was a round trip in every few calls, 11 ms of each
/// job's time in flight and most of the database's statements. Slots for the callers
/// expected while a lease's slots are fresh cost nothing when the quota does not bind, and
/// when it does the callers are waiting anyway. So only while the quota has room (the last
/// reservation's first slot was already due) and this replica's callers come at a quarter of
/// it or less ([`FAR_FROM_BINDING`]): where it binds, a slot for a caller still to come
/// could be taken up to a reservation's grace late, crowding a second that other replicas
/// fill.
#[derive(Debug)]
struct Arrivals {
    since: Instant,
    count: u32,
    per_s: f64,
    roomy: bool,
}

const ARRIVAL_WINDOW: Duration = Duration::from_millis(100);

/// Slots for callers still to come are leased only while this replica's own callers come at
/// no more than 1 / this of the quota (and the quota had room).
const FAR_FROM_BINDING: f64 = 4.0;

impl Arrivals {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            count: 0,
            per_s: 0.0,
            roomy: false,
        }
    }

    /// One caller came at `now`.
    fn record(&mut self, now: Instant) {
        self.count += 1;
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= ARRIVAL_WINDOW {
            let rate = f64::from(self.count) / elapsed.as_secs_f64();
            self.per_s = 0.5 * self.per_s + 0.5 * rate;
            self.count = 0;
            self.since = now;
        }
    }

    /// Callers expected within `horizon`.
    fn expected(&self, horizon: Duration) -> u32 {
        (self.per_s * horizon.as_secs_f64()).round() as u32
    }
}

/// Counts a task as waiting for a slot until dropped (also when its future is cancelled).
struct Queued(Arc<AtomicUsize>);

impl Queued {
    fn new(n: Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kyc_schemas::Vendor;

    const API: Api = Api {
        vendor: Vendor::Huawei,
        name: "ivs-standard",
        product: "ivs-standard",
    };

    #[test]
    fn a_slot_is_used_late_by_at_most_half_an_interval_so_no_second_holds_more_than_q_plus_1() {
        let grace = |qps: f64| grace_of(Some(&Quota::qps(qps, 1))).as_millis();
        // Half an interval, at least 5 ms.
        assert_eq!((grace(10.0), grace(20.0), grace(50.0)), (50, 25, 10));
        assert_eq!((grace(100.0), grace(1000.0)), (5, 5));
    }

    #[test]
    fn arrivals_are_a_smoothed_rate_and_leases_expect_what_comes_while_fresh() {
        let t0 = Instant::now();
        let mut a = Arrivals::new();
        a.since = t0;
        // 40 callers in the first 100 ms: 400/s, half-smoothed in from 0.
        for i in 1..=40u64 {
            a.record(t0 + Duration::from_micros(i * 2_500));
        }
        assert_eq!(a.per_s.round(), 200.0);
        assert_eq!(a.expected(Duration::from_millis(25)), 5);
        // The next 100 ms at the same rate: the estimate closes in on it.
        for i in 41..=80u64 {
            a.record(t0 + Duration::from_micros(i * 2_500));
        }
        assert_eq!(a.per_s.round(), 300.0);
        // Nobody for a second: one caller then brings it down.
        a.record(t0 + Duration::from_millis(1_300));
        assert!(a.per_s < 151.0, "{}", a.per_s);
    }

    #[tokio::test]
    async fn unlisted_apis_are_not_limited() {
        let l = Limiters::new(&HashMap::new());
        assert!(l.acquire(&API).await.unwrap().waited < Duration::from_millis(40));
    }

    #[tokio::test]
    async fn tokens_beyond_the_burst_wait_for_the_rate() {
        let quotas = HashMap::from([("huawei.ivs-standard".to_string(), Quota::qps(10.0, 2))]);
        let l = Limiters::new(&quotas);
        assert!(l.acquire(&API).await.unwrap().waited < Duration::from_millis(40));
        assert!(l.acquire(&API).await.unwrap().waited < Duration::from_millis(40));
        let waited = l.acquire(&API).await.unwrap().waited;
        assert!(waited >= Duration::from_millis(50), "waited {waited:?}");
    }

    #[tokio::test]
    async fn limiters_sharing_a_database_split_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(
            &format!("sqlite://{}", dir.path().join("q.db").display()),
            2,
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let quotas = HashMap::from([("huawei.ivs-standard".to_string(), Quota::qps(20.0, 1))]);
        let a = Limiters::shared(&quotas, store.clone());
        let b = Limiters::shared(&quotas, store.clone());
        // 20 calls through two replicas at 20 QPS with no burst take about a second, not half.
        let start = Instant::now();
        let run = |l: &'static str| {
            let limiter = if l == "a" { &a } else { &b };
            async move {
                for _ in 0..10 {
                    limiter.acquire(&API).await.unwrap();
                }
            }
        };
        tokio::join!(run("a"), run("b"));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(850),
            "20 calls at 20 QPS took {took:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_sharing_a_database_never_exceed_the_accounts_calls_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("f.db").display());
        // Two replicas: each its own connection pool and group commit, one database.
        let store_a = Store::connect(&url, 2).await.unwrap();
        store_a.migrate().await.unwrap();
        let store_b = Store::connect(&url, 2).await.unwrap();
        let quotas = HashMap::from([(
            "huawei.ivs-standard".to_string(),
            Quota {
                qps: 1000.0,
                burst: 1,
                max_in_flight: Some(3),
            },
        )]);
        let a = Arc::new(Limiters::shared(&quotas, store_a.clone()));
        let b = Arc::new(Limiters::shared(&quotas, store_b));
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let l = if i % 2 == 0 { a.clone() } else { b.clone() };
                let (now, peak) = (now.clone(), peak.clone());
                tokio::spawn(async move {
                    let permit = l.acquire(&API).await.unwrap();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // Each replica alone allows 3: 6 at once without the account's cap.
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        // Every token was handed back.
        let deadline = Instant::now() + Duration::from_secs(5);
        while store_a.in_flight_held("huawei.ivs-standard").await.unwrap() > 0 {
            assert!(Instant::now() < deadline, "tokens not handed back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_token_whose_worker_died_lapses_and_frees_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        let store = Store::connect(&url, 2).await.unwrap();
        store.migrate().await.unwrap();
        let key = "huawei.ivs-standard";
        // A dead worker's token, already lapsed; a live one's, not.
        assert!(store.grant_in_flight(key, "dead", 2, -1).await.unwrap());
        assert!(store.grant_in_flight(key, "live", 2, 60_000).await.unwrap());
        assert!(store.grant_in_flight(key, "next", 2, 60_000).await.unwrap());
        assert!(!store.grant_in_flight(key, "over", 2, 60_000).await.unwrap());
    }
}
