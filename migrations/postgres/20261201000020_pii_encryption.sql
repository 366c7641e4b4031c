-- Personal data minimised and sealed (issue 10). Keep in step with ../sqlite/.
--
-- jobs.payload (the whole job as JSON, with mobile number and material URIs) is dropped:
-- nothing read it (a re-run reads the CSV again and publishes from that).
-- Names and ID numbers are stored sealed (AES-256-GCM envelopes `v1.<kid>.<nonce>.<ct>`,
-- sealed by the binary with the data keys), plus the masked forms the default report shows,
-- so a masked report needs no key.
-- Rows written by an older version keep their clear subject_name / subject_id_number until
-- the binary seals them (`kyc migrate`, `kyc produce` and `kyc run` do, when a key is
-- configured), which sets the clear columns to NULL. Nothing writes the clear columns any more.
ALTER TABLE jobs DROP COLUMN payload;
ALTER TABLE jobs ADD COLUMN subject_name_sealed TEXT;
ALTER TABLE jobs ADD COLUMN subject_id_number_sealed TEXT;
ALTER TABLE jobs ADD COLUMN subject_name_masked TEXT;
ALTER TABLE jobs ADD COLUMN subject_id_number_masked TEXT;
-- Set by `kyc purge` when the job's personal data was removed after the retention period.
ALTER TABLE jobs ADD COLUMN purged_at_ms BIGINT;
CREATE INDEX jobs_clear_subject ON jobs (job_id) WHERE subject_name IS NOT NULL OR subject_id_number IS NOT NULL;
CREATE INDEX jobs_created ON jobs (created_at_ms) WHERE purged_at_ms IS NULL;
