//! `docs/design.md` states the claim lease, its heartbeat and the park of a duplicate in
//! seconds; this holds those figures to the constants the worker uses, so the two cannot
//! drift apart.

#[test]
fn the_design_notes_state_the_claim_lease_heartbeat_and_park_the_code_uses() {
    // Where the package is now (cargo sets it for the run): a test binary built from another
    // checkout of the same sources is reused as is, and would read that checkout instead.
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../docs/design.md");
    let text = std::fs::read_to_string(&path).unwrap();
    // Lines are wrapped: compare with runs of white space folded to one space.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let lease = kyc_worker::call::CLAIM_LEASE_MS / 1000;
    let beat = kyc_worker::call::CLAIM_RENEW_EVERY.as_secs();
    let park = kyc_worker::process::PARK.as_secs();
    for claim in [
        format!("a {lease} s lease (`worker::call::CLAIM_LEASE_MS`)"),
        format!("renewed by a heartbeat every {beat} s (`worker::call::CLAIM_RENEW_EVERY`)"),
        format!("parked in the {park} s delay queue (`worker::process::PARK`"),
    ] {
        assert!(
            text.contains(&claim),
            "docs/design.md does not say {claim:?}"
        );
    }
    // A park is the smallest delay bucket: a longer one would keep the job waiting past its
    // lease for nothing.
    assert_eq!(park, kyc_queue::topology::DELAY_BUCKETS[0]);
    // Whole seconds, as the notes state them.
    assert_eq!(kyc_worker::call::CLAIM_LEASE_MS % 1000, 0);
    assert_eq!(kyc_worker::call::CLAIM_RENEW_EVERY.subsec_millis(), 0);
}
