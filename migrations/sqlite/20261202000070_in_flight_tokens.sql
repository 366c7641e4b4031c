-- The account-wide cap on calls in flight (`KYC_QUOTAS` …/max_in_flight), shared by every
-- replica like the quota: one row per call in flight, with the moment it lapses if its worker
-- died without handing it back. The row with an empty token is the key's lock: a grant
-- upserts it first, so two replicas' grants for one key never count at the same time.
-- Keep in step with the other backend's folder.
CREATE TABLE in_flight_tokens (
    limit_key TEXT NOT NULL,
    token TEXT NOT NULL,
    until_ms BIGINT NOT NULL,
    PRIMARY KEY (limit_key, token)
);
