-- Re-verification policy (`kyc produce --skip-verified-within`): a row whose person and
-- operation already have a `passed` outcome within the window is not published again. The
-- look-up goes by dedup key (HMAC of operation and person) across batches, hence the index;
-- the batch row counts the rows skipped this way. Keep in step with ../postgres/.
CREATE INDEX jobs_dedup_key ON jobs (dedup_key);
ALTER TABLE batches ADD COLUMN rows_verified_recently BIGINT NOT NULL DEFAULT 0;
