//! Spend caps on the real services: a cap of 3 Huawei calls a day with 6 jobs makes exactly 3
//! billable calls; the other 3 jobs wait in the delay queue (not in a worker) and keep being
//! deferred while the window lasts; when the next window comes they finish, and no job is
//! billed twice. The billing report then prices what was billed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kyc_schemas::money::{PriceTable, SpendCaps};
use kyc_schemas::Vendor;
use kyc_worker::spend::{SpendGuard, SpendSettings};
use kyc_worker::Context;

use crate::helpers::{spawn_app, wait_until};

/// Billable calls the simulated vendor recorded, per reference (Huawei's `meta.uuid` is the
/// job id).
fn billed_by_job(app: &crate::helpers::TestApp) -> HashMap<String, usize> {
    let mut by_job = HashMap::new();
    for e in app.sim.ledger().entries.iter().filter(|e| e.billable) {
        *by_job
            .entry(e.reference.clone().unwrap_or_default())
            .or_default() += 1;
    }
    by_job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_cap_defers_jobs_to_the_next_window_and_bills_none_twice() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let guard = SpendGuard::new(SpendSettings {
        caps: SpendCaps::parse("huawei=3calls").unwrap(),
        // Deferred jobs look again every 5 s (the smallest delay queue) instead of 10 min.
        recheck: Duration::from_secs(5),
        ..Default::default()
    });
    // Start at the beginning of a (Beijing) day, so the first half cannot cross midnight.
    guard.skip_to_next_window();
    let ctx = Arc::new(Context {
        spend: guard.clone(),
        ..Arc::into_inner(app.context()).unwrap()
    });
    app.produce_extension_jobs("capped", 6, dir.path()).await;
    let (stop, worker) = app.spawn_worker_with(ctx.clone()).await;

    // The window's budget: 3 jobs decided, 3 deferred by the cap.
    let store = &app.store;
    wait_until(
        "3 outcomes and 3 jobs deferred",
        Duration::from_secs(60),
        || async {
            let deferred: i64 = store
                .cap_deferrals(Some("capped"))
                .await
                .unwrap()
                .iter()
                .map(|d| d.jobs)
                .sum();
            store.outcome_count("capped").await.unwrap() == 3 && deferred == 3
        },
    )
    .await;
    let metrics = ctx.metrics.render();
    assert!(
        metrics.contains("kyc_spend_remaining{vendor=\"huawei\",unit=\"calls\"} 0\n")
            && metrics.contains("kyc_spend_cap{vendor=\"huawei\",unit=\"calls\"} 3\n"),
        "{metrics}"
    );
    // Deferred, not held: the three wait in the delay queue, not in a worker's hands.
    let delay_queue = app.topology.delay_queue(Vendor::Huawei, 5);
    wait_until(
        "the 3 deferred jobs parked in the 5 s delay queue",
        Duration::from_secs(60),
        || async { delay_queue_depth(&app, &delay_queue).await == 3 },
    )
    .await;
    // Back from the delay queue within the same window, they are deferred again, and the
    // vendor is not called: still exactly 3 billable calls.
    wait_until(
        "every deferred job deferred a second time",
        Duration::from_secs(60),
        || async {
            let rows = store.cap_deferrals(Some("capped")).await.unwrap();
            rows.iter().map(|d| d.times).sum::<i64>() >= 6
        },
    )
    .await;
    assert_eq!(billed_by_job(&app).values().sum::<usize>(), 3);
    assert_eq!(
        store.outcome_count("capped").await.unwrap(),
        3,
        "no outcome while the cap holds"
    );

    // The next day: the deferred jobs finish, each billed once.
    guard.skip_to_next_window();
    app.wait_for_outcomes("capped", 6, Duration::from_secs(60))
        .await;
    let billed = billed_by_job(&app);
    assert_eq!(billed.len(), 6, "{billed:?}");
    assert!(
        billed.values().all(|n| *n == 1),
        "a job billed twice: {billed:?}"
    );
    // The cap's deferrals spent none of the jobs' attempt budget.
    let outcomes = app.outcomes("capped").await;
    assert!(
        outcomes
            .values()
            .all(|(status, _, attempts)| status == "passed" && *attempts == 1),
        "{outcomes:?}"
    );
    let deferred = store.cap_deferrals(Some("capped")).await.unwrap();
    assert_eq!(
        (
            deferred.len(),
            deferred[0].vendor.as_str(),
            deferred[0].jobs,
            deferred[0].waiting
        ),
        (1, "huawei", 3, 0)
    );
    assert!(ctx
        .metrics
        .render()
        .contains("kyc_spend_remaining{vendor=\"huawei\",unit=\"calls\"} 0\n"));

    // The billing report prices the calls: 6 × 0.80 CNY.
    let prices = PriceTable::parse("huawei.ivs-idcard-extention=0.80 CNY").unwrap();
    let mut out = Vec::new();
    kyc_report::write_billing(store, &prices, None, None, Some("huawei"), false, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with("huawei,ivs-idcard-extention,"))
        .unwrap_or_else(|| panic!("no priced row in {text}"));
    assert!(row.ends_with(",6,6,0,,,0.80,CNY,4.80,"), "{row}");

    let _ = stop.send(());
    worker.await.unwrap();
    app.cleanup().await;
}

/// Messages in a queue, read without taking them.
async fn delay_queue_depth(app: &crate::helpers::TestApp, queue: &str) -> u32 {
    app.queue_state(queue).await.0
}
