-- Dead letters and retries (`kyc dlq replay`, `kyc retry`). Keep in step with ../sqlite/.
--
-- A job's queue message, as the producer published it (version 2: the personal fields sealed
-- with the data key, bound to the job id), so that `kyc retry` can publish the job again
-- without the input file. Nothing in it is in clear but ids, the operation and vendor
-- references; `kyc purge` empties it with the job's other personal data.
ALTER TABLE jobs ADD COLUMN message_sealed TEXT;

-- Outcomes a retry or a replay superseded. `outcomes` keeps one row per job (the newest:
-- what reports show and what a redelivery checks); the old ones move here, unchanged, with
-- when, by which audited action, and as which generation (1 = the first outcome superseded).
CREATE TABLE outcome_history (
    job_id            TEXT NOT NULL,
    generation        BIGINT NOT NULL,
    batch_id          TEXT NOT NULL,
    vendor            TEXT NOT NULL,
    operation         TEXT NOT NULL,
    status            TEXT NOT NULL,
    reason            TEXT NOT NULL,
    vendor_code       TEXT,
    vendor_message    TEXT,
    similarity        DOUBLE PRECISION,
    liveness_score    DOUBLE PRECISION,
    vendor_request_id TEXT,
    vendor_ref        TEXT,
    attempts          BIGINT NOT NULL,
    latency_ms        BIGINT NOT NULL,
    billed            BIGINT NOT NULL,
    completed_at_ms   BIGINT NOT NULL,
    superseded_at_ms  BIGINT NOT NULL,
    superseded_by     TEXT NOT NULL,
    PRIMARY KEY (job_id, generation)
);
CREATE INDEX outcome_history_batch ON outcome_history (batch_id);

-- A fresh attempt budget given by an operator: the worker counts only the job's ledger calls
-- beyond `calls_before` (the ledger keeps every call; the budget starts again). The job's
-- new message is confirmed by the broker when `republished_at_ms` is set; a retry cut short
-- before that is picked up by the next `kyc retry` of the batch.
CREATE TABLE job_budget_resets (
    job_id            TEXT PRIMARY KEY,
    generation        BIGINT NOT NULL,
    calls_before      BIGINT NOT NULL,
    reset_at_ms       BIGINT NOT NULL,
    audit_id          TEXT NOT NULL,
    republished_at_ms BIGINT
);

-- Operator actions on jobs and dead letters: who (`--by` / KYC_OPERATOR, else the OS
-- account), what, with which filter, how many matched and how many were done. Written before
-- the action starts (done -1, finished_at_ms NULL) and completed after it.
CREATE TABLE operator_audit (
    audit_id        TEXT PRIMARY KEY,
    at_ms           BIGINT NOT NULL,
    action          TEXT NOT NULL,
    operator        TEXT NOT NULL,
    operator_source TEXT NOT NULL,
    filter          TEXT NOT NULL,
    matched         BIGINT NOT NULL DEFAULT -1,
    done            BIGINT NOT NULL DEFAULT -1,
    finished_at_ms  BIGINT
);
