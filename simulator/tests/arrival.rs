//! Quotas are counted when a call arrives, as a vendor's gateway counts them, not when the
//! simulator answers after its injected latency; the ledger keeps both moments.

mod common;

use std::time::Duration;

use kyc_simulator::{FaultConfig, Simulator};
use serde_json::{json, Value};

const GENERATE: &str = "verifyToken/generate";

use common::{answer, baidu};

fn generate(http: &reqwest::Client, sim: &Simulator, access: &str) -> reqwest::RequestBuilder {
    http.post(format!(
        "{}/rpc/2.0/brain/solution/faceprint/{GENERATE}?access_token={access}",
        sim.base_url()
    ))
    .json(&json!({"plan_id": "sim-authority"}))
}

/// The ledger's `verifyToken/generate` calls, in the order they were answered.
fn generated(sim: &Simulator) -> Vec<kyc_simulator::LedgerEntry> {
    sim.ledger()
        .entries
        .into_iter()
        .filter(|e| e.api == GENERATE)
        .collect()
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("gave up waiting: {what}");
}

/// One call a minute, answered after 1 s: a second call arriving while the first is still
/// waiting for its answer is throttled at once (the first took the token when it arrived),
/// and the first is answered after its latency with its arrival time in the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_admitted_or_throttled_by_its_arrival_not_its_answer() {
    let (sim, http, access) = baidu().await;
    let mut faults = FaultConfig::default();
    faults.baidu.api_qps.insert(GENERATE.into(), 1.0 / 60.0);
    faults.baidu.burst = Some(1.0);
    faults.baidu.latency_ms = 1000;
    sim.set_faults(faults);

    let first = tokio::spawn(generate(&http, &sim, &access).send());
    until("the first call arrives", || sim.in_flight() == 1).await;
    let second = answer(generate(&http, &sim, &access)).await;
    assert_eq!(second["error_code"], 18, "{second}");
    // Refused on arrival: the first call is still waiting for its answer.
    let calls = generated(&sim);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].throttled);
    assert_eq!(sim.in_flight(), 1);

    let first: Value = first.await.unwrap().unwrap().json().await.unwrap();
    assert!(first["result"]["verify_token"].is_string(), "{first}");
    let calls = generated(&sim);
    let (throttled, admitted) = (&calls[0], &calls[1]);
    assert!(!admitted.throttled);
    assert!(admitted.arrived_us < throttled.arrived_us);
    assert!(throttled.answered_us < admitted.answered_us);
    // The injected second lies between the admitted call's arrival and its answer.
    assert!(
        admitted.answered_us - admitted.arrived_us >= 1_000_000,
        "{admitted:?}"
    );
    assert_eq!(admitted.at_ms, admitted.answered_us.div_euclid(1000));
    assert_eq!(sim.in_flight(), 0);
    sim.stop().await;
}
