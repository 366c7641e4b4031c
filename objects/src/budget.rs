//! The memory budget for materials in flight: every material a worker holds (and the
//! request bodies built from it) is paid for out of one byte budget per process, so that a
//! burst of jobs with large images makes jobs *wait* instead of the pod being killed for
//! memory (an OOM kill turns every call in flight into an `unknown`, redelivered and billed
//! again).
//!
//! A job opens its materials (requests made, answers begun), then reserves in one go what
//! their sources announced (Content-Length, a file's length; the object size limit for one
//! that announced nothing) before reading the bodies, and gives back what they did not need
//! once read; what stays reserved is the materials' size times [`BODY_FACTOR`], held until the
//! job drops the bytes. One reservation per job: a job never holds part of the budget while
//! waiting for the rest, so jobs cannot each hold a part and wait for one another. Reserving
//! the size limit for every fetch before it started let only eight 100 KiB images be fetched
//! at once under the default 512 MiB (16 MiB × 3.7 each), which bounded a worker at about
//! 220 jobs/s with the machine half idle.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a material of `n` bytes costs while a job holds it: the bytes themselves, their
/// base64 text inside the JSON or form body (4/3), and room for the body's own buffer while
/// it is sent (another 4/3, rounded up): about 3.7 × the raw size.
pub const BODY_FACTOR: f64 = 1.0 + 4.0 / 3.0 + 4.0 / 3.0;

/// Units of the semaphore: KiB, so that a budget of many GiB fits its permit count.
const UNIT: u64 = 1024;

/// A byte budget shared by every fetch of one [`crate::ObjectStore`] (and its clones).
#[derive(Debug, Clone)]
pub struct MaterialBudget {
    sem: Arc<Semaphore>,
    units: u32,
}

/// Bytes held against the budget; given back when dropped. The default holds nothing.
#[derive(Debug, Default)]
pub struct Reservation(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Reservation {
    /// Holds nothing (no budget configured).
    pub fn none() -> Self {
        Reservation(None)
    }
}

impl MaterialBudget {
    pub fn new(bytes: u64) -> Self {
        let units = (bytes / UNIT).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Self {
            sem: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    /// The budget in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// Bytes not reserved right now.
    pub fn available(&self) -> u64 {
        self.sem.available_permits() as u64 * UNIT
    }

    fn units_for(&self, raw_bytes: u64) -> u32 {
        let cost = (raw_bytes as f64 * BODY_FACTOR / UNIT as f64).ceil() as u64;
        // Never more than the whole budget: a single object larger than the budget still
        // runs, alone, instead of waiting for ever.
        cost.clamp(1, u64::from(self.units)) as u32
    }

    /// Waits until `max_bytes` (the worst case of what is about to be fetched) fits.
    pub async fn reserve(&self, max_bytes: u64) -> Reservation {
        let n = self.units_for(max_bytes);
        let permit = Arc::clone(&self.sem)
            .acquire_many_owned(n)
            .await
            .expect("the budget's semaphore is never closed");
        Reservation(Some(permit))
    }

    /// Keeps only what `actual_bytes` costs out of `r` and gives the rest back at once.
    pub fn settle(&self, mut r: Reservation, actual_bytes: u64) -> Reservation {
        let keep = self.units_for(actual_bytes) as usize;
        if let Some(permit) = r.0.as_mut() {
            let held = permit.num_permits();
            if held > keep {
                drop(permit.split(held - keep));
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reservation_gives_back_what_the_object_did_not_need() {
        let b = MaterialBudget::new(100 * 1024 * 1024);
        let r = b.reserve(16 * 1024 * 1024).await;
        // The worst case (16 MiB × 3.7 ≈ 58.7 MiB) is held while the object is fetched…
        assert!(b.available() < 100 * 1024 * 1024 - 58 * 1024 * 1024);
        // …and only ≈ 3.7 MiB once it turns out to be 1 MiB.
        let r = b.settle(r, 1024 * 1024);
        let held = 100 * 1024 * 1024 - b.available();
        assert!((3 * 1024 * 1024..4 * 1024 * 1024).contains(&held), "{held}");
        drop(r);
        assert_eq!(b.available(), 100 * 1024 * 1024);
    }

    #[tokio::test]
    async fn a_full_budget_makes_the_next_fetch_wait_until_bytes_are_given_back() {
        let b = MaterialBudget::new(64 * 1024 * 1024);
        let first = b.reserve(16 * 1024 * 1024).await; // ~59 MiB of 64
                                                       // A second worst case (~59 MiB) does not fit in what is left…
        assert!(b.available() < 58 * 1024 * 1024);
        let b2 = b.clone();
        let waiting = tokio::spawn(async move { b2.reserve(16 * 1024 * 1024).await });
        // …and is granted once the first object turns out small.
        let _first = b.settle(first, 10 * 1024);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("granted once bytes came back")
            .unwrap();
        drop(second);
    }

    #[tokio::test]
    async fn an_object_larger_than_the_budget_still_runs_alone() {
        let b = MaterialBudget::new(1024 * 1024);
        let r = b.reserve(16 * 1024 * 1024).await;
        assert_eq!(b.available(), 0);
        drop(r);
        assert_eq!(b.available(), 1024 * 1024);
    }
}
