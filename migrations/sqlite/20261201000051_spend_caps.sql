-- Spend caps (`KYC_SPEND_CAPS`): a worker counts a capped vendor's spend in the current
-- window (a Beijing day by default) from the ledger, by vendor and start time, hence the
-- index; Baidu's charges are counted from the entries its result/getall reported, by when
-- we learned of them. A job deferred to the next window because its vendor's cap was
-- reached gets one row here (how many times it was sent round the delay queue, when first
-- and last), so `kyc status` and the run summary can say how many jobs a cap held back.
-- Version 20261201000051: the assigned 000050 was already taken by
-- call_reference_dead_letter_owed. Keep in step with the other backend's folder.
CREATE INDEX vendor_calls_vendor_started ON vendor_calls (vendor, started_at_ms);
CREATE INDEX vendor_charge_entries_vendor_recorded ON vendor_charge_entries (vendor, recorded_at_ms);
CREATE TABLE cap_deferrals (
    job_id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL,
    vendor TEXT NOT NULL,
    times BIGINT NOT NULL,
    first_at_ms BIGINT NOT NULL,
    last_at_ms BIGINT NOT NULL
);
CREATE INDEX cap_deferrals_batch ON cap_deferrals (batch_id);
