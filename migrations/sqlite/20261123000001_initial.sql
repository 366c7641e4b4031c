-- kyc-batch initial schema (SQLite). Keep in step with ../postgres/.
CREATE TABLE batches (
    batch_id        TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    rows_read       INTEGER NOT NULL DEFAULT 0,
    rows_published  INTEGER NOT NULL DEFAULT 0,
    rows_rejected   INTEGER NOT NULL DEFAULT 0,
    rows_skipped    INTEGER NOT NULL DEFAULT 0,
    finished_at_ms  INTEGER
);

CREATE TABLE jobs (
    job_id            TEXT PRIMARY KEY,
    batch_id          TEXT NOT NULL REFERENCES batches (batch_id),
    source_row        INTEGER NOT NULL,
    -- Same person + operation twice in one batch is refused by this key.
    dedup_key         TEXT NOT NULL,
    customer_ref      TEXT,
    vendor            TEXT NOT NULL,
    operation         TEXT NOT NULL,
    subject_name      TEXT,
    subject_id_number TEXT,
    payload           TEXT NOT NULL,
    created_at_ms     INTEGER NOT NULL,
    -- NULL until the broker confirmed the message: a re-run publishes exactly these.
    published_at_ms   INTEGER,
    UNIQUE (batch_id, dedup_key)
);
CREATE INDEX jobs_batch_unpublished ON jobs (batch_id) WHERE published_at_ms IS NULL;

CREATE TABLE outcomes (
    job_id            TEXT PRIMARY KEY,
    batch_id          TEXT NOT NULL,
    vendor            TEXT NOT NULL,
    operation         TEXT NOT NULL,
    status            TEXT NOT NULL,
    reason            TEXT NOT NULL,
    vendor_code       TEXT,
    vendor_message    TEXT,
    similarity        REAL,
    liveness_score    REAL,
    vendor_request_id TEXT,
    vendor_ref        TEXT,
    attempts          INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    billed            INTEGER NOT NULL,
    completed_at_ms   INTEGER NOT NULL
);
CREATE INDEX outcomes_batch ON outcomes (batch_id);
CREATE INDEX outcomes_completed ON outcomes (completed_at_ms);

-- The ledger: a row is opened *before* each vendor call and completed after it. A row still
-- 'open' after its worker died is turned 'unknown' on recovery: the vendor may have billed it.
CREATE TABLE vendor_calls (
    call_id           TEXT PRIMARY KEY,
    job_id            TEXT NOT NULL,
    vendor            TEXT NOT NULL,
    api               TEXT NOT NULL,
    product           TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('open', 'done', 'unknown')),
    started_at_ms     INTEGER NOT NULL,
    finished_at_ms    INTEGER,
    http_status       INTEGER,
    vendor_code       TEXT,
    vendor_request_id TEXT,
    billable          INTEGER NOT NULL DEFAULT 0,
    day               TEXT NOT NULL
);
CREATE INDEX vendor_calls_job ON vendor_calls (job_id);
CREATE INDEX vendor_calls_open ON vendor_calls (state) WHERE state <> 'done';

CREATE TABLE billing_counters (
    vendor          TEXT NOT NULL,
    product         TEXT NOT NULL,
    day             TEXT NOT NULL,
    billable_calls  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (vendor, product, day)
);
