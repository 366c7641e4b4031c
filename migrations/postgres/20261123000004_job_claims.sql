-- One live delivery per job: a worker claims a job before touching the vendor and renews the
-- claim before every call; a second delivery of the same job (a duplicate message) waits until
-- the claim is released or expires. Keep in step with ../sqlite/.
CREATE TABLE job_claims (
    job_id    TEXT PRIMARY KEY,
    owner     TEXT NOT NULL,
    until_ms  BIGINT NOT NULL
);
